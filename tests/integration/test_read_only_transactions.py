"""Read-only transactions run as a whole on one reader, with the shipped read/write split rules.

Where each statement ran is told by ``@@server_id`` (the primary is 1, the replicas 2 and 3); that a
transaction kept one connection is told by its REPEATABLE READ snapshot, kept while the writer
commits a change that reached the replicas.
"""

from __future__ import annotations

from pathlib import Path

import pymysql
import pytest
import sqlalchemy
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from conftest import admin_sql, wait_for

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "rules"


def one(conn, sql: str):
    with conn.cursor() as cur:
        cur.execute(sql)
        row = cur.fetchone()
        return row[0] if row is not None else None


def run(conn, sql: str) -> None:
    with conn.cursor() as cur:
        cur.execute(sql)


def replica_ids(cluster) -> set[int]:
    return {r.server_id for r in cluster.replicas}


@pytest.fixture
def ro_table(cluster):
    one_row_table(cluster, "ro_t")
    yield "ro_t"


def one_row_table(cluster, name: str) -> None:
    """test.<name> with the row (1, 1), on every server."""
    cluster.primary.query(f"CREATE TABLE IF NOT EXISTS test.{name} (id INT PRIMARY KEY, v INT) ENGINE=InnoDB")
    cluster.primary.query(f"REPLACE INTO test.{name} VALUES (1, 1)")
    cluster.wait_replication()


def bump(cluster, value: int) -> None:
    """The writer commits a change; wait until every replica has it."""
    cluster.primary.query(f"UPDATE test.ro_t SET v = {value} WHERE id = 1")
    cluster.wait_replication()


@pytest.mark.parametrize("start", ["START TRANSACTION READ ONLY",
                                   "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"])
def test_start_transaction_read_only_runs_on_one_reader(proxy_factory, cluster, ro_table, start):
    rp = proxy_factory(rules_dir=RULES)
    c = rp.connect(autocommit=True)
    run(c, start)
    where = one(c, "SELECT @@server_id")
    assert where in replica_ids(cluster)
    assert one(c, "SELECT v FROM ro_t WHERE id = 1") == 1
    bump(cluster, 2)
    for _ in range(5):  # same connection, same snapshot, same replica
        assert one(c, "SELECT v FROM ro_t WHERE id = 1") == 1
        assert one(c, "SELECT @@server_id") == where
    run(c, "COMMIT")
    assert one(c, "SELECT v FROM ro_t WHERE id = 1") == 2
    bump(cluster, 1)
    c.close()
    rows = dict(admin_sql(rp, "SELECT Variable_Name, Variable_Value FROM stats_mysql_global "
                              "WHERE Variable_Name LIKE 'ReadOnly_transactions_%'"))
    assert rows == {"ReadOnly_transactions_readers": "1", "ReadOnly_transactions_writer": "0"}


def test_set_transaction_read_only_applies_to_the_next_transaction_only(proxy_factory, cluster, ro_table):
    rp = proxy_factory(rules_dir=RULES)
    c = rp.connect(autocommit=True)
    run(c, "SET TRANSACTION READ ONLY")
    run(c, "BEGIN")
    assert one(c, "SELECT @@server_id") in replica_ids(cluster)
    with pytest.raises(pymysql.err.OperationalError) as err:
        run(c, "UPDATE ro_t SET v = 5 WHERE id = 1")
    assert err.value.args[0] == 1792  # as the server says, not the replica's read_only 1290
    run(c, "COMMIT")
    run(c, "BEGIN")  # the next one is read-write again: on the writer
    assert one(c, "SELECT @@server_id") == cluster.primary.server_id
    run(c, "UPDATE ro_t SET v = 1 WHERE id = 1")
    run(c, "COMMIT")
    c.close()


def test_autocommit_off_session_after_set_transaction_read_only(proxy_factory, cluster, ro_table):
    rp = proxy_factory(rules_dir=RULES)
    c = rp.connect(autocommit=False)
    run(c, "SET TRANSACTION READ ONLY")
    assert one(c, "SELECT v FROM ro_t WHERE id = 1") == 1  # opens the read-only transaction
    assert one(c, "SELECT @@server_id") in replica_ids(cluster)
    c.commit()
    assert one(c, "SELECT @@server_id") == cluster.primary.server_id  # the next is read-write
    c.commit()
    c.close()


def test_session_read_only_sends_every_transaction_to_a_reader(proxy_factory, cluster, ro_table):
    rp = proxy_factory(rules_dir=RULES)
    # MariaDB before 11.1 knows transaction_read_only as tx_read_only
    for setting in ("SET SESSION TRANSACTION READ ONLY", "SET SESSION tx_read_only = 1"):
        c = rp.connect(autocommit=False)
        run(c, setting)
        for _ in range(3):
            assert one(c, "SELECT v FROM ro_t WHERE id = 1") == 1
            where = one(c, "SELECT @@server_id")
            assert where in replica_ids(cluster)
            bump(cluster, 2)
            assert one(c, "SELECT v FROM ro_t WHERE id = 1") == 1  # its snapshot, on one connection
            assert one(c, "SELECT @@server_id") == where
            with pytest.raises(pymysql.err.OperationalError) as err:
                run(c, "INSERT INTO ro_t VALUES (7, 7)")
            assert err.value.args[0] == 1792
            c.commit()
            bump(cluster, 1)
        run(c, "SET SESSION TRANSACTION READ WRITE")
        assert one(c, "SELECT @@server_id") == cluster.primary.server_id
        c.commit()
        c.close()


def test_read_write_transactions_stay_on_the_writer(proxy_factory, cluster, ro_table):
    rp = proxy_factory(rules_dir=RULES)
    c = rp.connect(autocommit=True)
    for begin in ("BEGIN", "START TRANSACTION", "START TRANSACTION READ WRITE"):
        run(c, begin)
        assert one(c, "SELECT @@server_id") == cluster.primary.server_id
        run(c, "COMMIT")
    assert one(c, "SELECT @@server_id") in replica_ids(cluster)  # a read in autocommit: the split
    c.close()
    off = rp.connect(autocommit=False)
    assert one(off, "SELECT @@server_id") == cluster.primary.server_id
    off.commit()
    # a read-only session whose transaction starts with a statement bound to the writer keeps it there
    run(off, "SET SESSION TRANSACTION READ ONLY")
    assert one(off, "SELECT @@server_id, LAST_INSERT_ID()") == cluster.primary.server_id
    assert one(off, "SELECT @@server_id") == cluster.primary.server_id
    off.commit()
    off.close()
    rows = dict(admin_sql(rp, "SELECT Variable_Name, Variable_Value FROM stats_mysql_global "
                              "WHERE Variable_Name LIKE 'ReadOnly_transactions_%'"))
    assert rows == {"ReadOnly_transactions_readers": "0", "ReadOnly_transactions_writer": "1"}


def test_explain_routing_shows_the_read_only_transaction_rule(proxy_factory, cluster):
    rp = proxy_factory(rules_dir=RULES)
    rows = admin_sql(rp, "EXPLAIN ROUTING START TRANSACTION READ ONLY")
    flat = " ".join(str(v) for row in rows for v in row)
    assert "115" in flat and "read_only_transaction" in flat


def test_sqlalchemy_read_engine_with_session_read_only(proxy_factory, cluster, ro_table):
    """The README's recipe: a read engine whose connect event makes every transaction read-only."""
    rp = proxy_factory(rules_dir=RULES)
    url = f"mysql+pymysql://app:app@127.0.0.1:{rp.port}/test"
    reader = sqlalchemy.create_engine(url, pool_size=2)

    @event.listens_for(reader, "connect")
    def read_only(dbapi_connection, connection_record):
        cursor = dbapi_connection.cursor()
        cursor.execute("SET SESSION TRANSACTION READ ONLY")
        cursor.close()

    writer = sqlalchemy.create_engine(url, pool_size=2)
    try:
        for _ in range(3):
            with reader.connect() as conn:
                assert conn.execute(text("SELECT @@server_id")).scalar() in replica_ids(cluster)
                assert conn.execute(text("SELECT v FROM ro_t WHERE id = 1")).scalar() == 1
            with Session(reader) as session:
                assert session.execute(text("SELECT @@server_id")).scalar() in replica_ids(cluster)
            with Session(writer) as session:
                assert session.execute(text("SELECT @@server_id")).scalar() == cluster.primary.server_id
                session.execute(text("UPDATE ro_t SET v = 1 WHERE id = 1"))
                session.commit()
    finally:
        reader.dispose()
        writer.dispose()


def test_causal_reads_send_a_read_only_transaction_to_the_writer_when_readers_lag(proxy_factory, own_cluster):
    cluster = own_cluster
    one_row_table(cluster, "ro_causal")
    users = [{"username": "app", "password": "app", "default_hostgroup": 0, "default_schema": "test",
              "causal_reads": "session"}]
    rp = proxy_factory(cluster=cluster, rules_dir=RULES, users=users,
                       variables={"causal_reads_timeout_ms": 200})
    c = rp.connect(autocommit=True)
    run(c, "UPDATE ro_causal SET v = 2 WHERE id = 1")
    cluster.wait_replication()
    run(c, "START TRANSACTION READ ONLY")  # the replicas have the session's write: a reader
    assert one(c, "SELECT @@server_id") in replica_ids(cluster)
    run(c, "COMMIT")
    for r in cluster.replicas:
        r.stop_sql_thread()
    try:
        run(c, "UPDATE ro_causal SET v = 3 WHERE id = 1")
        run(c, "START TRANSACTION READ ONLY")
        assert one(c, "SELECT @@server_id") == cluster.primary.server_id
        assert one(c, "SELECT v FROM ro_causal WHERE id = 1") == 3  # the session sees its own write
        run(c, "COMMIT")
    finally:
        for r in cluster.replicas:
            r.start_sql_thread()
        cluster.wait_replication()
    c.close()


def test_a_reader_killed_between_transactions_costs_no_error(proxy_factory, own_cluster):
    cluster = own_cluster
    one_row_table(cluster, "ro_kill")
    rp = proxy_factory(cluster=cluster, rules_dir=RULES)
    c = rp.connect(autocommit=False)
    run(c, "SET SESSION TRANSACTION READ ONLY")
    seen = set()
    for _ in range(6):  # both readers get some transactions, so each holds pooled connections
        seen.add(one(c, "SELECT @@server_id"))
        c.commit()
    victim = cluster.replicas[0]
    victim.kill()
    try:
        for _ in range(20):
            assert one(c, "SELECT v FROM ro_kill WHERE id = 1") == 1
            assert one(c, "SELECT @@server_id") == cluster.replicas[1].server_id
            c.commit()
    finally:
        victim.start()
        cluster.wait_replication()
    c.close()
    wait_for("the session to close cleanly", lambda: rp.stats().client_connections_connected == 0)


def _reader_port(rp) -> int:
    """The port of the reader the only client session holds now."""
    def find():
        (session,) = rp.proxy.sessions.values()
        return session.backends[1].server.port
    return rp.call(find)


def test_a_reader_lost_before_the_first_result_is_replaced_after_it_is_an_error(proxy_factory, own_cluster):
    cluster = own_cluster
    one_row_table(cluster, "ro_lost")
    rp = proxy_factory(cluster=cluster, rules_dir=RULES)
    by_port = {r.port: r for r in cluster.replicas}
    c = rp.connect(autocommit=True)
    run(c, "START TRANSACTION READ ONLY")
    victim = by_port[_reader_port(rp)]
    victim.kill()
    try:
        # nothing of the transaction reached the client but its OK: opened again on the other reader
        assert one(c, "SELECT v FROM ro_lost WHERE id = 1") == 1
        survivor = one(c, "SELECT @@server_id")
        assert survivor in replica_ids(cluster) and survivor != victim.server_id
        run(c, "COMMIT")
        victim.start()
        cluster.wait_replication()
        run(c, "START TRANSACTION READ ONLY")
        assert one(c, "SELECT v FROM ro_lost WHERE id = 1") == 1  # a result reached the client
        second = by_port[_reader_port(rp)]
        second.kill()
        with pytest.raises(pymysql.err.OperationalError) as err:
            one(c, "SELECT v FROM ro_lost WHERE id = 1")
        assert err.value.args[0] == 1158  # never a silent retry mid-transaction
        assert one(c, "SELECT 1") == 1  # the session is usable again
        second.start()
    finally:
        for r in cluster.replicas:
            if not r.running:
                r.start()
        cluster.wait_replication()
    c.close()
