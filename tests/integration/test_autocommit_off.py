"""Sessions with autocommit off (PyMySQL's and SQLAlchemy's default) against the real test bed.

Such a session is in a transaction from its first statement until COMMIT/ROLLBACK, whatever the
server's IN_TRANS flag says: MariaDB does not set it after SAVEPOINT, nor after a read of no table.
The transaction's savepoints and snapshot live on one backend connection, which must stay the
session's until the transaction ends. The writer is capped at two connections so that a connection
given back too early would really be taken by the other session.
"""

from __future__ import annotations

import pymysql
import pytest

from conftest import wait_for, writer_only


def run(conn, sql: str):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def used(rp) -> int:
    """Connections of the writer handed to sessions now."""
    return next(p.used for p in rp.call(rp.proxy.pools.statistics) if p.hostgroup == 0)


def counter(rp, name: str) -> int:
    return rp.call(lambda: getattr(rp.proxy.counters, name))


@pytest.fixture
def snap_table(cluster):
    with cluster.primary.connect("app", "app", database="test") as c, c.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS ac_off_t (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB")
        cur.execute("REPLACE INTO ac_off_t VALUES (1, 'first')")
    yield "ac_off_t"


def test_savepoint_survives_another_sessions_rollback(proxy_factory, cluster):
    # the sequence SQLAlchemy's test_super_abusive_nesting runs into
    rp = proxy_factory(servers=writer_only(cluster, 2))
    a = rp.connect(autocommit=False)
    b = rp.connect(autocommit=False)
    run(a, "SAVEPOINT s1")
    assert used(rp) == 1  # a keeps its connection: the savepoint lives there
    run(b, "ROLLBACK")
    run(a, "ROLLBACK TO SAVEPOINT s1")  # 1305 "SAVEPOINT s1 does not exist" if b had rolled it back
    run(a, "RELEASE SAVEPOINT s1")
    a.rollback()
    assert used(rp) == 0  # the transaction ended: the connection is back in the pool
    a.close()
    b.close()


def test_snapshot_of_an_autocommit_off_session_is_kept(proxy_factory, cluster, snap_table):
    rp = proxy_factory(servers=writer_only(cluster, 2))
    a = rp.connect(autocommit=False)
    b = rp.connect(autocommit=False)  # same settings: a's connection would suit b as it is
    assert run(a, f"SELECT v FROM {snap_table} WHERE id = 1") == (("first",),)
    run(b, f"UPDATE {snap_table} SET v = 'second' WHERE id = 1")
    b.commit()
    # REPEATABLE READ: a's transaction still sees the value of its first read
    assert run(a, f"SELECT v FROM {snap_table} WHERE id = 1") == (("first",),)
    a.commit()
    assert run(a, f"SELECT v FROM {snap_table} WHERE id = 1") == (("second",),)
    a.commit()
    a.close()
    b.close()


def test_transaction_without_in_trans_flag_pins_and_commit_unpins(proxy_factory, cluster):
    rp = proxy_factory(servers=writer_only(cluster, 2))
    a = rp.connect(autocommit=False)
    before = rp.call(lambda: rp.proxy.pin_counters.counts["transaction"])
    run(a, "SET SESSION sql_mode = 'ANSI_QUOTES', time_zone = '+01:00'")  # SET opens no transaction
    assert used(rp) == 0
    run(a, "SELECT 1")  # touches no table: the server reports no transaction
    assert used(rp) == 1
    assert rp.call(lambda: rp.proxy.pin_counters.counts["transaction"]) == before + 1
    run(a, "COMMIT")
    assert used(rp) == 0
    run(a, "SELECT 2")  # the next transaction starts with the next statement
    assert used(rp) == 1
    run(a, "CREATE TABLE IF NOT EXISTS ac_off_ddl (a INT)")  # DDL commits implicitly
    assert used(rp) == 0
    run(a, "SELECT 3")
    run(a, "COMMIT AND CHAIN")  # a new transaction starts at once
    assert used(rp) == 1
    run(a, "ROLLBACK AND NO CHAIN")
    assert used(rp) == 0
    a.close()


def test_completion_type_chain_keeps_the_transaction_open(proxy_factory, cluster):
    rp = proxy_factory(servers=writer_only(cluster, 2))
    a = rp.connect(autocommit=False)
    run(a, "SET SESSION completion_type = 'CHAIN'")
    run(a, "SAVEPOINT s1")
    run(a, "COMMIT")  # chained: the server opens the next transaction at once
    assert used(rp) == 1
    run(a, "SET SESSION completion_type = 'NO_CHAIN'")
    run(a, "COMMIT")
    assert used(rp) == 0
    a.close()


def test_session_ending_inside_such_a_transaction_resets_its_connection(proxy_factory, cluster):
    rp = proxy_factory(servers=writer_only(cluster, 1))
    a = rp.connect(autocommit=False)
    run(a, "SAVEPOINT s1")
    resets = counter(rp, "backend_resets")
    a.close()  # never committed: the connection is reset (rolled back), not handed on as it is
    wait_for("the reset", lambda: counter(rp, "backend_resets") == resets + 1)
    b = rp.connect(autocommit=False)
    with pytest.raises(pymysql.err.OperationalError) as err:
        run(b, "ROLLBACK TO SAVEPOINT s1")
    assert err.value.args[0] == 1305  # a's savepoint is gone with a's transaction
    b.close()


def test_autocommit_false_is_transaction_off_trusts_the_server_flag(proxy_factory, cluster):
    rp = proxy_factory(servers=writer_only(cluster, 2), variables={"autocommit_false_is_transaction": False})
    a = rp.connect(autocommit=False)
    run(a, "SELECT 1")
    assert used(rp) == 0  # ProxySQL's default: no IN_TRANS, no pin
    run(a, "CREATE TEMPORARY TABLE IF NOT EXISTS ac_tmp (a INT) ENGINE=InnoDB")
    run(a, "INSERT INTO ac_tmp VALUES (1)")  # a transactional table: the server sets IN_TRANS
    assert used(rp) == 1
    a.rollback()
    a.close()


def test_autocommit_false_not_reusable_closes_the_connection(proxy_factory, cluster):
    rp = proxy_factory(servers=writer_only(cluster, 2), variables={"autocommit_false_not_reusable": True})
    a = rp.connect(autocommit=False)
    run(a, "SELECT 1")
    created = rp.stats().backend_connections_created
    a.commit()
    wait_for("the connection to close", lambda: rp.stats().backend_connections_connected == 0)
    run(a, "SELECT 1")
    assert rp.stats().backend_connections_created == created + 1  # a new one: the old was not reused
    a.commit()
    a.close()
    on = rp.connect(autocommit=True)  # autocommit on: connections are reused as usual
    run(on, "SELECT 1")
    run(on, "SELECT 1")
    on.close()
    assert rp.wait_idle().backend_connections_connected == 1
