"""Statements inside a transaction on the data plane (myrouter/frontend/dataplane.py).

A session that holds only the connection of its open transaction (BEGIN ... COMMIT, or an
autocommit-off session) is parked on the data plane, which serves its plain statements on that
connection, and a lone BEGIN / COMMIT / ROLLBACK too; SAVEPOINT and the rest go to the session's
Trio task. Each test runs twice, as in test_data_plane.py: under the engine's host loop and under a bare ``trio.run`` (every
command on the Trio path), with the same expectations; ``Data_plane_commands`` says which plane
served the statements, so a data-plane test cannot pass on the Trio path by accident.
"""

from __future__ import annotations

import contextlib
import socket

import mysql.connector
import pymysql
import pytest
import sqlalchemy
from sqlalchemy import text
from sqlalchemy.orm import Session
from conftest import REPO, admin_sql, assert_no_leaks, wait_for, writer_only
from rawclient import RawClient

from myrouter.protocol.packets import frame

PLANES = pytest.mark.parametrize("data_plane", [True, False], ids=["data-plane", "trio"])


def served_on_data_plane(rp) -> int:
    rows = admin_sql(rp, "SELECT Variable_Value FROM stats_mysql_global WHERE Variable_Name = 'Data_plane_commands'")
    return int(rows[0][0])


def one(conn, sql: str, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()


def error_code(conn, sql: str) -> int:
    with pytest.raises(pymysql.MySQLError) as info:
        one(conn, sql)
    return info.value.args[0]


class Served:
    """Counts the commands the data plane served over a block: ``with Served(rp, data_plane, n):`` expects
    exactly ``n`` on the data plane (none on the Trio path)."""

    def __init__(self, rp, data_plane: bool, expected: int) -> None:
        self.rp, self.data_plane, self.expected = rp, data_plane, expected

    def __enter__(self):
        self.before = served_on_data_plane(self.rp)
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            served = served_on_data_plane(self.rp) - self.before
            assert served == (self.expected if self.data_plane else 0)


def fresh_table(rp, name: str) -> None:
    """test.<name> (id, v) with the rows (1, 10) and (2, 20), made by a session of its own (the tests'
    sessions plan their statements themselves)."""
    conn = rp.connect(autocommit=True)
    one(conn, f"CREATE TABLE IF NOT EXISTS {name} (id INT PRIMARY KEY, v INT) ENGINE=InnoDB")
    one(conn, f"DELETE FROM {name}")
    one(conn, f"INSERT INTO {name} VALUES (1, 10), (2, 20)")
    conn.close()


def primary_value(cluster, table: str, row: int = 1):
    """v of a row as a new connection to the primary sees it (committed data)."""
    rows = cluster.primary.query(f"SELECT v FROM test.{table} WHERE id = {row}")
    return rows[0]["v"] if rows else None


def open_transactions(cluster) -> list:
    """The primary's open transactions that hold row locks (the test's own: tests run one at a time).
    InnoDB refreshes this table only when it was last read more than 0.1 s ago: poll it slower."""
    return cluster.primary.query("SELECT trx_mysql_thread_id AS id FROM information_schema.innodb_trx "
                                 "WHERE trx_rows_locked > 0")


@PLANES
def test_begin_select_update_commit(proxy_factory, cluster, data_plane):
    rp = proxy_factory(data_plane=data_plane)
    conn = rp.connect(autocommit=True)
    other = rp.connect(autocommit=True)
    fresh_table(rp, "dpt_commit")
    for i in range(1, 6):
        one(conn, "BEGIN")  # the first of each digest plans it on the Trio path; the same ones after, here
        with Served(rp, data_plane, 3 if i > 1 else 1):
            assert one(conn, "SELECT v FROM dpt_commit WHERE id = 1") == (10 + i - 1,)
            one(conn, "UPDATE dpt_commit SET v = v + 1 WHERE id = 1")
            assert one(conn, "SELECT v FROM dpt_commit WHERE id = 1") == (10 + i,)  # its own write
        assert one(other, "SELECT v FROM dpt_commit WHERE id = 1") == (10 + i - 1,)  # not committed yet
        assert primary_value(cluster, "dpt_commit") == 10 + i - 1
        one(conn, "COMMIT")
        assert one(other, "SELECT v FROM dpt_commit WHERE id = 1") == (10 + i,)
    with Served(rp, data_plane, 1):  # autocommit, after the transaction: plain, as before
        assert one(conn, "SELECT v FROM dpt_commit WHERE id = 1") == (15,)
    assert one(conn, "SELECT @@in_transaction") == (0,)
    conn.close()
    other.close()
    assert_no_leaks(rp)


@PLANES
def test_rollback_undoes_what_ran_on_the_data_plane(proxy_factory, cluster, data_plane):
    rp = proxy_factory(data_plane=data_plane)
    conn = rp.connect(autocommit=True)
    fresh_table(rp, "dpt_rollback")
    for i in range(3):
        one(conn, "START TRANSACTION")
        with Served(rp, data_plane, 3 if i else 0):
            one(conn, "UPDATE dpt_rollback SET v = v * 2 WHERE id = %s", (1,))
            one(conn, "DELETE FROM dpt_rollback WHERE id = 2")
            assert one(conn, "SELECT COUNT(*), SUM(v) FROM dpt_rollback") == (1, 20)
        one(conn, "ROLLBACK")
        assert one(conn, "SELECT COUNT(*), SUM(v) FROM dpt_rollback") == (2, 30)
    assert primary_value(cluster, "dpt_rollback", 2) == 20
    conn.close()
    assert_no_leaks(rp)


@PLANES
def test_autocommit_off_session_reads_writes_and_commits(proxy_factory, cluster, data_plane):
    rp = proxy_factory(data_plane=data_plane)
    fresh_table(rp, "dpt_orm")
    conn = rp.connect()  # PyMySQL's default: autocommit off, as an ORM session
    other = rp.connect(autocommit=True)
    for i in range(1, 5):
        # the statement that opens the transaction (on the data plane too once planned: counted elsewhere)
        assert one(conn, "SELECT v FROM dpt_orm WHERE id = 2") == (20,)
        with Served(rp, data_plane, 4 if i > 1 else 2):
            assert one(conn, "SELECT v FROM dpt_orm WHERE id = 1") == (10 * i,)
            one(conn, "UPDATE dpt_orm SET v = %s WHERE id = 1", (10 * (i + 1),))
            assert one(conn, "SELECT v FROM dpt_orm WHERE id = 1") == (10 * (i + 1),)
            assert one(conn, "SELECT @@in_transaction") == (1,)
        assert one(other, "SELECT v FROM dpt_orm WHERE id = 1") == (10 * i,)
        conn.commit()
        assert one(other, "SELECT v FROM dpt_orm WHERE id = 1") == (10 * (i + 1),)
    conn.rollback()
    conn.close()
    other.close()
    assert_no_leaks(rp)


@PLANES
def test_savepoints_go_to_trio_and_the_session_comes_back(proxy_factory, cluster, data_plane):
    rp = proxy_factory(data_plane=data_plane)
    fresh_table(rp, "dpt_savepoint")
    conn = rp.connect(autocommit=True)
    for i in range(3):
        one(conn, "BEGIN")
        one(conn, "INSERT INTO dpt_savepoint VALUES (%s, 1)", (10 + i,))
        one(conn, "SAVEPOINT s1")
        with Served(rp, data_plane, 2 if i else 1):  # back on the data plane after the savepoint
            one(conn, "INSERT INTO dpt_savepoint VALUES (%s, 2)", (20 + i,))
            assert one(conn, "SELECT COUNT(*) FROM dpt_savepoint") == (4 + i,)
        one(conn, "ROLLBACK TO SAVEPOINT s1")
        with Served(rp, data_plane, 1):  # and after ROLLBACK TO
            assert one(conn, "SELECT COUNT(*) FROM dpt_savepoint") == (3 + i,)
        one(conn, "RELEASE SAVEPOINT s1")
        one(conn, "COMMIT")
    assert one(conn, "SELECT GROUP_CONCAT(id ORDER BY id) FROM dpt_savepoint") == ("1,2,10,11,12",)
    conn.close()
    assert_no_leaks(rp)


@PLANES
def test_read_only_transaction_stays_on_its_reader(proxy_factory, cluster, data_plane):
    rp = proxy_factory(rules_dir=REPO / "rules", data_plane=data_plane)
    replicas = {r.server_id for r in cluster.replicas}
    fresh_table(rp, "dpt_ro")
    conn = rp.connect(autocommit=True)
    cluster.wait_replication()
    for i in range(3):
        one(conn, "START TRANSACTION READ ONLY")
        where = one(conn, "SELECT @@server_id")[0]  # the first statement: the Trio path (it may be retried)
        assert where in replicas
        with Served(rp, data_plane, 4 if i else 2):
            assert one(conn, "SELECT @@server_id") == (where,)
            assert one(conn, "SELECT v FROM dpt_ro WHERE id = 1") == (10,)
            assert one(conn, "SELECT SUM(v) FROM dpt_ro") == (30,)
            assert one(conn, "SELECT @@server_id") == (where,)
        # a write inside: refused as before (1792), the transaction goes on where it was
        assert error_code(conn, "UPDATE dpt_ro SET v = 0 WHERE id = 1") == 1792
        with Served(rp, data_plane, 1):
            assert one(conn, "SELECT @@server_id") == (where,)
        one(conn, "COMMIT")
    assert primary_value(cluster, "dpt_ro") == 10
    conn.close()
    assert_no_leaks(rp)


@PLANES
def test_prepared_statements_inside_a_transaction(proxy_factory, cluster, data_plane):
    rp = proxy_factory(servers=writer_only(cluster, 1), data_plane=data_plane)  # one connection: prepared there
    fresh_table(rp, "dpt_ps")
    conn = mysql.connector.connect(host="127.0.0.1", port=rp.port, user="app", password="app", database="test",
                                   autocommit=True)
    cur = conn.cursor(prepared=True)
    cur.execute("SELECT v FROM dpt_ps WHERE id = ?", (1,))  # prepared (and its plan made) outside
    assert cur.fetchall() == [(10,)]
    update = conn.cursor(prepared=True)
    update.execute("UPDATE dpt_ps SET v = v + ? WHERE id = ?", (0, 1))
    for i in range(1, 4):
        conn.start_transaction()
        with Served(rp, data_plane, 3):
            update.execute("UPDATE dpt_ps SET v = v + ? WHERE id = ?", (1, 1))
            cur.execute("SELECT v FROM dpt_ps WHERE id = ?", (1,))
            assert cur.fetchall() == [(10 + i,)]
            cur.execute("SELECT v FROM dpt_ps WHERE id = ?", (2,))
            assert cur.fetchall() == [(20,)]
        assert primary_value(cluster, "dpt_ps") == 10 + i - 1  # not yet
        conn.commit()
        assert primary_value(cluster, "dpt_ps") == 10 + i
    cur.close()
    update.close()
    conn.close()
    assert_no_leaks(rp)


@PLANES
def test_same_results_and_statistics_on_both_planes(proxy_factory, cluster, data_plane):
    """With reads sent to the replicas by the rules: a read inside a transaction runs on the
    transaction's connection (the writer) and is counted there, on both planes."""
    rp = proxy_factory(rules_dir=REPO / "rules", data_plane=data_plane)
    fresh_table(rp, "dpt_stats")
    conn = rp.connect(autocommit=True)
    primary = cluster.primary.server_id
    one(conn, "SELECT 1")  # its digest's row below: on a replica, outside a transaction
    for i in range(4):
        one(conn, "BEGIN")
        assert one(conn, "SELECT @@server_id") == (primary,)
        assert one(conn, "SELECT v FROM dpt_stats WHERE id = 2") == (20 + i,)
        one(conn, "UPDATE dpt_stats SET v = v + 1 WHERE id = 2")
        one(conn, "COMMIT")
    rows = admin_sql(rp, "SELECT hostgroup, digest_text, count_star, sum_rows_affected, sum_rows_sent "
                         "FROM stats_mysql_query_digest WHERE digest_text NOT LIKE '%dpt_stats VALUES%' "
                         "AND digest_text NOT LIKE 'CREATE%' AND digest_text NOT LIKE 'DELETE%' "
                         "ORDER BY digest_text")
    assert [tuple(r) for r in rows] == [
        (0, "BEGIN", 4, 0, 0),
        (0, "COMMIT", 4, 0, 0),
        (1, "SELECT ?", 1, 0, 1),
        (0, "SELECT @@server_id", 4, 0, 4),
        (0, "SELECT v FROM dpt_stats WHERE id = ?", 4, 0, 4),
        (0, "UPDATE dpt_stats SET v = v + ? WHERE id = ?", 4, 4, 0),
    ]
    conn.close()
    assert_no_leaks(rp)


@PLANES
def test_backend_killed_while_parked_in_a_transaction(proxy_factory, cluster, data_plane):
    rp = proxy_factory(servers=writer_only(cluster, 2), data_plane=data_plane)
    fresh_table(rp, "dpt_dead")
    conn = rp.connect(autocommit=True)
    for _ in range(2):  # the digests' plans: the next ones are plain
        one(conn, "BEGIN")
        one(conn, "UPDATE dpt_dead SET v = 10 WHERE id = 1")
        one(conn, "SELECT v FROM dpt_dead WHERE id = 1")
        one(conn, "COMMIT")
    one(conn, "BEGIN")
    with Served(rp, data_plane, 2):
        one(conn, "UPDATE dpt_dead SET v = 99 WHERE id = 1")
        assert one(conn, "SELECT v FROM dpt_dead WHERE id = 1") == (99,)
    # the session waits for its next statement, holding its transaction's connection: kill that on the server
    trx = open_transactions(cluster)
    assert len(trx) == 1
    cluster.primary.query(f"KILL CONNECTION {trx[0]['id']}")
    wait_for("the transaction to end on the server", lambda: not open_transactions(cluster), step=0.25)
    errors = rp.stats().backend_errors
    with Served(rp, data_plane, 0):  # an error, never a silent success on another connection
        assert error_code(conn, "SELECT v FROM dpt_dead WHERE id = 1") == 1158
    assert rp.stats().backend_errors == errors + 1
    assert primary_value(cluster, "dpt_dead") == 10  # rolled back with its connection
    # the session goes on, out of any transaction, on a good connection
    assert one(conn, "SELECT @@in_transaction, v FROM dpt_dead WHERE id = 1") == (0, 10)
    with Served(rp, data_plane, 1):
        assert one(conn, "SELECT v FROM dpt_dead WHERE id = 1") == (10,)
    # the dead connection did not go back to the pool: every later statement finds a good one
    other = rp.connect(autocommit=True)
    for _ in range(5):
        one(conn, "BEGIN")
        assert one(conn, "SELECT v FROM dpt_dead WHERE id = 1") == (10,)
        one(conn, "COMMIT")
        assert one(other, "SELECT v FROM dpt_dead WHERE id = 2") == (20,)
    assert rp.stats().backend_errors == errors + 1
    conn.close()
    other.close()
    assert_no_leaks(rp)


@PLANES
def test_kill_of_a_session_parked_in_a_transaction(proxy_factory, cluster, data_plane):
    rp = proxy_factory(data_plane=data_plane)
    fresh_table(rp, "dpt_kill")
    victim = rp.connect(autocommit=True)
    killer = rp.connect(autocommit=True)
    victim_id = one(victim, "SELECT CONNECTION_ID()")[0]
    one(victim, "BEGIN")  # the digests' plans
    one(victim, "UPDATE dpt_kill SET v = 77 WHERE id = 1")
    one(victim, "SELECT v FROM dpt_kill WHERE id = 1")
    one(victim, "ROLLBACK")
    one(victim, "BEGIN")
    with Served(rp, data_plane, 2):
        one(victim, "UPDATE dpt_kill SET v = 77 WHERE id = 1")
        assert one(victim, "SELECT v FROM dpt_kill WHERE id = 1") == (77,)
    one(killer, f"KILL QUERY {victim_id}")  # nothing runs: the session and its transaction go on
    with Served(rp, data_plane, 1):
        assert one(victim, "SELECT v FROM dpt_kill WHERE id = 1") == (77,)
    one(killer, f"KILL {victim_id}")
    wait_for("the victim's session to end", lambda: rp.stats().client_connections_connected == 1)
    with pytest.raises(pymysql.err.OperationalError):
        one(victim, "SELECT 1")
    # its transaction rolled back: its write is gone and its row lock released
    one(killer, "SET SESSION innodb_lock_wait_timeout = 5")
    assert one(killer, "SELECT v FROM dpt_kill WHERE id = 1") == (10,)
    one(killer, "UPDATE dpt_kill SET v = 11 WHERE id = 1")
    assert primary_value(cluster, "dpt_kill") == 11
    killer.close()
    assert_no_leaks(rp)


def raw_query(raw: RawClient, sql: str) -> list[bytes]:
    """Run ``sql`` on a RawClient (no CLIENT_DEPRECATE_EOF); its rows' payloads (a result set) or []."""
    first = raw.command(b"\x03" + sql.encode())
    assert first[:1] != b"\xff", first
    if first[:1] == b"\x00":
        return []
    while raw.read_packet().payload[:1] != b"\xfe":  # column definitions, then EOF
        pass
    rows = []
    while (pkt := raw.read_packet().payload)[:1] != b"\xfe":
        rows.append(pkt)
    return rows


@PLANES
@pytest.mark.parametrize("how", ["quit", "drop"])
def test_client_gone_while_parked_in_a_transaction(proxy_factory, cluster, data_plane, how):
    """COM_QUIT, or the client's socket closed: the transaction rolls back, and its connection comes
    back to the pool clean (one backend connection only: the next session gets that one)."""
    rp = proxy_factory(servers=writer_only(cluster, 1), data_plane=data_plane)
    fresh_table(rp, "dpt_gone")
    raw = RawClient(rp.port)
    assert raw.login()[:1] == b"\x00"
    for first in (True, False):
        raw_query(raw, "BEGIN")
        before = served_on_data_plane(rp)
        raw_query(raw, "UPDATE dpt_gone SET v = v + 1 WHERE id = 1")
        rows = raw_query(raw, "SELECT v FROM dpt_gone WHERE id = 1")
        if first:
            raw_query(raw, "COMMIT")  # 11, committed
    assert rows == [b"\x0212"]  # its own write, in the open transaction
    if data_plane:  # the second time, with the plans made the first time
        assert served_on_data_plane(rp) - before == 2
    assert len(open_transactions(cluster)) == 1
    if how == "quit":
        raw.send(frame(b"\x01", 0))
    else:
        raw.sock.shutdown(socket.SHUT_RDWR)
    raw.close()
    wait_for("the session to end", lambda: rp.stats().client_connections_connected == 0)
    wait_for("the transaction to end on the server", lambda: not open_transactions(cluster), step=0.25)
    conn = rp.connect(autocommit=True)
    assert one(conn, "SELECT @@in_transaction, v FROM dpt_gone WHERE id = 1") == (0, 11)
    one(conn, "SET SESSION innodb_lock_wait_timeout = 5")
    one(conn, "UPDATE dpt_gone SET v = 12 WHERE id = 1")  # its row lock is gone too
    assert rp.stats().backend_connections_connected == 1
    conn.close()
    assert_no_leaks(rp)


def park_in_a_transaction(rp, cluster, conn, data_plane: bool, row: int) -> None:
    """Leave ``conn`` idle in a transaction that has added 100 to v of ``row`` (on the data plane)."""
    one(conn, "BEGIN")  # the plan of the UPDATE
    one(conn, "UPDATE dpt_idle SET v = v + 100 WHERE id = %s", (row,))
    one(conn, "ROLLBACK")
    one(conn, "BEGIN")
    with Served(rp, data_plane, 1):
        one(conn, "UPDATE dpt_idle SET v = v + 100 WHERE id = %s", (row,))
    assert len(open_transactions(cluster)) == 1


@PLANES
def test_idle_reaper_ends_a_session_parked_in_a_transaction(proxy_factory, cluster, data_plane):
    rp = proxy_factory(variables={"wait_timeout": 2000}, data_plane=data_plane)
    fresh_table(rp, "dpt_idle")
    conn = rp.connect(autocommit=True)
    park_in_a_transaction(rp, cluster, conn, data_plane, 1)
    wait_for("the idle session to be reaped", lambda: rp.stats().client_connections_connected == 0, timeout=10)
    wait_for("its transaction to end on the server", lambda: not open_transactions(cluster), step=0.25)
    assert primary_value(cluster, "dpt_idle", 1) == 10
    with pytest.raises(pymysql.err.OperationalError):
        one(conn, "SELECT 1")
    assert_no_leaks(rp)


@PLANES
def test_drain_ends_a_session_parked_in_a_transaction(proxy_factory, cluster, data_plane):
    rp = proxy_factory(data_plane=data_plane)
    fresh_table(rp, "dpt_idle")
    conn = rp.connect(autocommit=True)
    park_in_a_transaction(rp, cluster, conn, data_plane, 2)
    rp.stop()  # drain_and_stop, as on SIGTERM: the idle session ends, its transaction rolls back
    wait_for("its transaction to end on the server", lambda: not open_transactions(cluster), step=0.25)
    assert primary_value(cluster, "dpt_idle", 2) == 20
    with pytest.raises(pymysql.err.OperationalError):
        one(conn, "SELECT 1")


@PLANES
def test_insert_with_an_auto_increment_id_inside_a_transaction(proxy_factory, cluster, data_plane):
    """An insert id keeps the connection for auto_increment_delay_multiplex statements: inside a
    transaction, which keeps it anyway, the session stays on the data plane."""
    rp = proxy_factory(data_plane=data_plane)
    setup = rp.connect(autocommit=True)
    one(setup, "CREATE TABLE IF NOT EXISTS dpt_autoinc (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
    one(setup, "DELETE FROM dpt_autoinc")
    setup.close()
    conn = rp.connect(autocommit=True)
    ids = []
    for i in range(3):
        one(conn, "BEGIN")
        with Served(rp, data_plane, 3 if i else 0):
            with conn.cursor() as cur:
                cur.execute("INSERT INTO dpt_autoinc (v) VALUES (%s)", (i,))
                ids.append(cur.lastrowid)
            assert one(conn, "SELECT v FROM dpt_autoinc WHERE id = %s", (ids[-1],)) == (i,)
            assert one(conn, "SELECT COUNT(*) FROM dpt_autoinc WHERE v >= %s", (0,)) == (i + 1,)
        assert one(conn, "SELECT LAST_INSERT_ID()") == (ids[-1],)  # answered by the proxy
        one(conn, "COMMIT")
    assert ids[0] > 0 and ids == list(range(ids[0], ids[0] + 3))
    conn.close()
    assert_no_leaks(rp)


@PLANES
def test_a_transaction_pinned_by_more_than_itself_stays_on_trio(proxy_factory, cluster, data_plane):
    """A user variable (or a temporary table) pins the transaction's connection for more than the
    transaction: its statements stay on the Trio path, as before."""
    rp = proxy_factory(data_plane=data_plane)
    fresh_table(rp, "dpt_pinned")
    for setup in ("SET @mark = 1", "CREATE TEMPORARY TABLE dpt_tmp (id INT)"):
        conn = rp.connect(autocommit=True)
        one(conn, "BEGIN")
        assert one(conn, "SELECT v FROM dpt_pinned WHERE id = 1") == (10,)
        with Served(rp, data_plane, 1):
            assert one(conn, "SELECT v FROM dpt_pinned WHERE id = 1") == (10,)
        one(conn, setup)
        with Served(rp, data_plane, 0):
            assert one(conn, "SELECT v FROM dpt_pinned WHERE id = 1") == (10,)
            one(conn, "UPDATE dpt_pinned SET v = v WHERE id = 2")
        one(conn, "COMMIT")
        if setup.startswith("SET"):
            assert one(conn, "SELECT @mark") == (1,)
        conn.close()
    assert_no_leaks(rp)


@PLANES
def test_reads_leave_a_transaction_without_transaction_persistent(proxy_factory, cluster, data_plane):
    """transaction_persistent=0: the rules send a transaction's reads to the replicas (the Trio path, on
    another connection), its writes go on on the transaction's connection (the data plane)."""
    users = [{"username": "app", "password": "app", "default_hostgroup": 0, "default_schema": "test",
              "transaction_persistent": 0}]
    rp = proxy_factory(users=users, rules_dir=REPO / "rules", data_plane=data_plane)
    replicas = {r.server_id for r in cluster.replicas}
    fresh_table(rp, "dpt_split")
    cluster.wait_replication()
    conn = rp.connect(autocommit=True)
    for i in range(3):
        one(conn, "BEGIN")
        one(conn, "UPDATE dpt_split SET v = v + 1 WHERE id = 1")
        with Served(rp, data_plane, 1):
            assert one(conn, "SELECT @@server_id")[0] in replicas
            one(conn, "UPDATE dpt_split SET v = v + 1 WHERE id = 2")
        assert one(conn, "SELECT v FROM dpt_split WHERE id = 1 FOR UPDATE") == (11 + i,)  # the writer's
        one(conn, "COMMIT")
    conn.close()
    assert_no_leaks(rp)


@PLANES
def test_sqlalchemy_session(proxy_factory, cluster, data_plane):
    """An ORM's unit of work (SQLAlchemy over PyMySQL: autocommit off, reads then writes, commit), with
    the shipped rules: once the first transaction has planned its statements, every statement of the
    next ones runs on the data plane, the one that opens the transaction included."""
    rp = proxy_factory(rules_dir=REPO / "rules", data_plane=data_plane)
    fresh_table(rp, "dpt_orm_sa")
    engine = sqlalchemy.create_engine(f"mysql+pymysql://app:app@127.0.0.1:{rp.port}/test", pool_size=1)
    try:
        for i in range(5):
            # SELECT, UPDATE, SELECT, INSERT, COMMIT, and the ROLLBACK of SQLAlchemy's pool when the
            # connection comes back to it (reset on return); one proxy session throughout
            with Served(rp, data_plane, 6) if i else contextlib.nullcontext(), Session(engine) as session:
                assert session.execute(text("SELECT v FROM dpt_orm_sa WHERE id = 2")).scalar() == 20 + i
                session.execute(text("UPDATE dpt_orm_sa SET v = v + 1 WHERE id = :id"), {"id": 2})
                assert session.execute(text("SELECT v FROM dpt_orm_sa WHERE id = :id"), {"id": 2}).scalar() == 21 + i
                session.execute(text("INSERT INTO dpt_orm_sa VALUES (:id, :v)"), {"id": 10 + i, "v": i})
                session.commit()
            assert primary_value(cluster, "dpt_orm_sa", 2) == 21 + i
            assert primary_value(cluster, "dpt_orm_sa", 10 + i) == i
    finally:
        engine.dispose()
    assert_no_leaks(rp)


def active_transactions(rp) -> int:
    rows = admin_sql(rp, "SELECT Variable_Value FROM stats_mysql_global WHERE Variable_Name = 'Active_Transactions'")
    return int(rows[0][0])


@PLANES
def test_begin_commit_and_rollback_run_on_the_data_plane(proxy_factory, cluster, data_plane):
    """A lone BEGIN / START TRANSACTION / COMMIT / ROLLBACK that no rule acts on runs on the data plane
    once its digest is planned: the transaction opens on a pooled connection, stays on it, and the
    connection goes back to the pool when it ends, as on the Trio path."""
    rp = proxy_factory(servers=writer_only(cluster, 1), data_plane=data_plane)  # one backend connection
    conn = rp.connect(autocommit=True)
    other = rp.connect(autocommit=True)
    fresh_table(rp, "dpt_begin")
    for sql in ("BEGIN", "UPDATE dpt_begin SET v = v + 0 WHERE id = 1", "COMMIT", "START TRANSACTION",
                "DELETE FROM dpt_begin WHERE id = 2", "ROLLBACK"):  # plan each digest (on the Trio path)
        one(conn, sql)
    for i in range(1, 4):
        with Served(rp, data_plane, 2):
            one(conn, "BEGIN")
            one(conn, "UPDATE dpt_begin SET v = v + 1 WHERE id = 1")
        assert active_transactions(rp) == 1
        assert primary_value(cluster, "dpt_begin") == 10 + i - 1  # not committed yet
        with Served(rp, data_plane, 1):
            one(conn, "COMMIT")
        assert active_transactions(rp) == 0
        assert primary_value(cluster, "dpt_begin") == 10 + i
        assert one(other, "SELECT @@in_transaction, v FROM dpt_begin WHERE id = 1") == (0, 10 + i)  # the same connection
        with Served(rp, data_plane, 3):
            one(conn, "START TRANSACTION")
            one(conn, "DELETE FROM dpt_begin WHERE id = 2")
            one(conn, "ROLLBACK")
        assert primary_value(cluster, "dpt_begin", 2) == 20
    assert one(other, "SELECT @@in_transaction") == (0,)
    conn.close()
    other.close()
    assert_no_leaks(rp)


@PLANES
def test_commit_and_chain_keeps_the_transaction_on_its_connection(proxy_factory, cluster, data_plane):
    rp = proxy_factory(data_plane=data_plane)
    conn = rp.connect(autocommit=True)
    fresh_table(rp, "dpt_chain")
    for i in range(2):  # the second time, every statement's digest is planned
        one(conn, "BEGIN")
        one(conn, "UPDATE dpt_chain SET v = v + 1 WHERE id = 1")
        one(conn, "COMMIT AND CHAIN")  # commits, and opens the next transaction at once
        assert one(conn, "SELECT @@in_transaction") == (1,)
        one(conn, "UPDATE dpt_chain SET v = v + 100 WHERE id = 1")
        one(conn, "ROLLBACK")  # only the second update
        assert primary_value(cluster, "dpt_chain") == 11 + i
        assert one(conn, "SELECT @@in_transaction") == (0,)
    conn.close()
    assert_no_leaks(rp)


@PLANES
def test_begin_of_a_session_declared_read_only_opens_on_a_reader(proxy_factory, cluster, data_plane):
    """BEGIN planned while the session was read-write opens a read-only transaction on a reader once the
    session is declared read-only (the Trio path decides that, not the remembered plan)."""
    rp = proxy_factory(rules_dir=REPO / "rules", data_plane=data_plane)
    primary = cluster.primary.server_id
    replicas = {r.server_id for r in cluster.replicas}
    conn = rp.connect(autocommit=True)
    for _ in range(2):
        one(conn, "BEGIN")
        assert one(conn, "SELECT @@server_id FOR UPDATE") == (primary,)
        one(conn, "COMMIT")
    one(conn, "SET SESSION TRANSACTION READ ONLY")
    one(conn, "BEGIN")
    assert one(conn, "SELECT @@server_id")[0] in replicas
    assert error_code(conn, "UPDATE dpt_never SET v = 1") == 1792
    one(conn, "COMMIT")
    one(conn, "SET SESSION TRANSACTION READ WRITE")
    one(conn, "BEGIN")
    assert one(conn, "SELECT @@server_id FOR UPDATE") == (primary,)
    one(conn, "COMMIT")
    conn.close()
    assert_no_leaks(rp)


@PLANES
def test_pool_mode_statement_refuses_a_planned_begin(proxy_factory, cluster, data_plane):
    users = [{"username": "app", "password": "app", "default_hostgroup": 0, "default_schema": "test",
              "pool_mode": "statement"}]
    rp = proxy_factory(servers=writer_only(cluster, 2), users=users, data_plane=data_plane)
    conn = rp.connect(autocommit=True)
    for _ in range(3):  # planned by the first refusal: still refused
        assert error_code(conn, "BEGIN") == 1235
        assert one(conn, "SELECT @@in_transaction") == (0,)
    conn.close()
    assert_no_leaks(rp)


@PLANES
def test_autocommit_off_session_declared_read_only_reads_on_a_reader(proxy_factory, cluster, data_plane):
    """An autocommit-off session between two transactions is parked too; once it declares itself read-only,
    the read that opens its next transaction goes to a reader (the Trio path chooses it), not to the
    writer the remembered plan and the autocommit-off routing would give."""
    rp = proxy_factory(rules_dir=REPO / "rules", data_plane=data_plane)
    primary = cluster.primary.server_id
    replicas = {r.server_id for r in cluster.replicas}
    conn = rp.connect()  # autocommit off
    for i in range(3):
        with Served(rp, data_plane, 2 if i else 0):  # planned the first time, here after
            assert one(conn, "SELECT @@server_id") == (primary,)  # opens a transaction on the writer
            one(conn, "COMMIT")
    one(conn, "SET SESSION TRANSACTION READ ONLY")
    for _ in range(3):
        assert one(conn, "SELECT @@server_id")[0] in replicas
        one(conn, "COMMIT")
    one(conn, "SET SESSION TRANSACTION READ WRITE")
    with Served(rp, data_plane, 2):
        assert one(conn, "SELECT @@server_id") == (primary,)
        one(conn, "COMMIT")
    conn.close()
    assert_no_leaks(rp)
