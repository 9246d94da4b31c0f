"""Connection pools and multiplexing against the real test bed.

Most tests cap the writer at one or two backend connections, so that every
client session really shares them and any state leaking from one client to
another would show.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import mysql.connector
import pymysql
import pytest

from myrouter_testbed.mariadb import Cluster

from conftest import wait_for, writer_only

REPO = Path(__file__).resolve().parents[2]


def one(conn, sql: str, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        row = cur.fetchone()
        return row[0] if row is not None else None


def pool(rp, hostgroup: int = 0):
    """(used, free) connections of the first server of ``hostgroup``."""
    for p in rp.call(rp.proxy.pools.statistics):
        if p.hostgroup == hostgroup:
            return p.used, p.free
    raise AssertionError(f"no server in hostgroup {hostgroup}")


def pins(rp) -> dict[str, int]:
    return rp.call(lambda: dict(rp.proxy.pin_counters.counts))


def backend_threads(cluster: Cluster, user: str = "app") -> int:
    rows = cluster.primary.query(f"SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE USER = '{user}'")
    return rows[0]["n"]


@pytest.fixture
def table(cluster):
    with cluster.primary.connect("app", "app", database="test") as c, c.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS pool_t (id INT AUTO_INCREMENT PRIMARY KEY, who INT, v VARCHAR(20))")
        cur.execute("TRUNCATE pool_t")
    yield "pool_t"


def test_many_sessions_share_one_connection(proxy_factory, cluster):
    rp = proxy_factory(servers=writer_only(cluster, 1))
    conns = [rp.connect(autocommit=True) for _ in range(20)]
    for _ in range(3):
        for c in conns:
            assert one(c, "SELECT 1") == 1
    assert pool(rp) == (0, 1)  # one backend connection, idle between statements
    # the server's count: threads of an earlier test's proxy, closed, may linger a moment
    wait_for("one backend thread on the server", lambda: backend_threads(cluster) == 1)
    for c in conns:
        c.close()
    st = rp.wait_idle()
    assert st.backend_connections_in_use == 0 and st.backend_connections_idle == 1


def test_session_state_follows_each_client_across_shared_connections(proxy_factory, cluster, table):
    rp = proxy_factory(servers=writer_only(cluster, 2))
    cluster.primary.query("CREATE DATABASE IF NOT EXISTS other")
    settings = [
        dict(db="test", sql_mode="STRICT_ALL_TABLES", tz="+01:00", charset="utf8mb4", autocommit=True),
        dict(db="other", sql_mode="", tz="+05:30", charset="latin1", autocommit=True),
        dict(db="test", sql_mode="ANSI_QUOTES", tz="SYSTEM", charset="utf8mb4", autocommit=False),
        dict(db="mysql", sql_mode="NO_ENGINE_SUBSTITUTION", tz="-03:00", charset="utf8mb3", autocommit=True),
    ] * 3
    clients = []
    for s in settings:
        c = pymysql.connect(host="127.0.0.1", port=rp.port, user="app", password="app", database=s["db"],
                            charset=s["charset"], autocommit=s["autocommit"])
        with c.cursor() as cur:
            cur.execute(f"SET sql_mode = '{s['sql_mode']}', time_zone = '{s['tz']}'")
        clients.append((c, s))
    for _ in range(4):  # interleaved: every statement may run on either backend connection
        for c, s in clients:
            with c.cursor() as cur:
                cur.execute("SELECT DATABASE(), @@sql_mode, @@time_zone, @@character_set_client, @@autocommit")
                db, mode, tz, cs, ac = cur.fetchone()
            assert db == s["db"]
            assert mode == s["sql_mode"]
            assert tz == s["tz"]
            assert cs == s["charset"]
            assert ac == int(s["autocommit"])
            if not s["autocommit"]:
                c.commit()  # autocommit=0: every statement opens a transaction, which pins until COMMIT
    # behaviour, not just variables: a strict sql_mode refuses a too-long value, a lax one truncates
    strict, lax = clients[0][0], clients[1][0]
    with pytest.raises(pymysql.err.DataError):
        with strict.cursor() as cur:
            cur.execute("INSERT INTO test.pool_t (who, v) VALUES (1, REPEAT('x', 50))")
    with lax.cursor() as cur:
        cur.execute("INSERT INTO test.pool_t (who, v) VALUES (2, REPEAT('x', 50))")
    assert one(lax, "SELECT LENGTH(v) FROM test.pool_t WHERE who = 2") == 20
    assert pool(rp)[0] + pool(rp)[1] <= 2
    for c, _ in clients:
        c.close()


def test_state_set_where_the_parser_cannot_see_it_is_tracked(proxy_factory, cluster):
    rp = proxy_factory(servers=writer_only(cluster, 1))
    cluster.primary.query("DROP PROCEDURE IF EXISTS test.set_tz")
    cluster.primary.query("CREATE PROCEDURE test.set_tz() SET time_zone = '+07:00'")
    a = rp.connect(autocommit=True)
    b = rp.connect(autocommit=True)
    with a.cursor() as cur:
        cur.execute("CALL set_tz()")  # session tracking reports the change
        cur.execute("SET @@session.sql_mode = CONCAT(@@sql_mode, ',NO_ZERO_DATE')")  # an expression
    assert one(b, "SELECT @@time_zone") == "SYSTEM"  # b borrowed the same connection: reset for it
    assert one(a, "SELECT @@time_zone") == "+07:00"
    assert "NO_ZERO_DATE" in one(a, "SELECT @@sql_mode")
    assert "NO_ZERO_DATE" not in one(b, "SELECT @@sql_mode")
    assert pool(rp) == (0, 1)  # neither pinned: the state was restorable
    a.close()
    b.close()


def test_pin_reasons_pin_and_unpin(proxy_factory, cluster, table):
    rp = proxy_factory(servers=writer_only(cluster, 4))
    c = rp.connect(autocommit=True)
    other = rp.connect(autocommit=True)
    cases = [  # (statements that pin, reason, statements that unpin or None)
        (["BEGIN", "SELECT 1"], "transaction", ["COMMIT"]),
        (["LOCK TABLES pool_t READ"], "lock_tables", ["UNLOCK TABLES"]),
        (["SELECT GET_LOCK('pool_lock', 1)"], "get_lock", ["SELECT RELEASE_LOCK('pool_lock')"]),
        (["CREATE TEMPORARY TABLE tmp_p (x INT)"], "temporary_tables", ["DROP TEMPORARY TABLE tmp_p"]),
        (["SELECT SQL_CALC_FOUND_ROWS * FROM pool_t LIMIT 1"], "found_rows", ["SELECT FOUND_ROWS()"]),
        (["PREPARE s1 FROM 'SELECT 1'"], "text_prepare", ["DEALLOCATE PREPARE s1"]),
        (["BEGIN", "SAVEPOINT sp1"], "savepoint", ["COMMIT"]),
        (["SET sql_log_bin = 0"], "sql_log_bin", ["SET sql_log_bin = 1"]),
        (["SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"], "next_transaction", ["SELECT 1"]),
        (["SET @v = 1"], "user_variables", None),
    ]
    for pin_sql, reason, unpin_sql in cases:
        before = pins(rp)[reason]
        with c.cursor() as cur:
            for sql in pin_sql:
                cur.execute(sql)
        assert pins(rp)[reason] == before + 1, reason
        assert pool(rp)[0] == 1, reason  # c keeps its connection between statements
        assert one(other, "SELECT 2") == 2  # other sessions still get a connection
        if unpin_sql is None:
            continue
        with c.cursor() as cur:
            for sql in unpin_sql:
                cur.execute(sql)
        assert pool(rp)[0] == 0, f"{reason} did not unpin"
    c.close()
    other.close()


def test_temporary_tables_and_user_variables_survive_across_statements(proxy_factory, cluster):
    rp = proxy_factory(servers=writer_only(cluster, 3))
    c = rp.connect(autocommit=True)
    noise = [rp.connect(autocommit=True) for _ in range(5)]
    with c.cursor() as cur:
        cur.execute("CREATE TEMPORARY TABLE t_keep (x INT)")
        cur.execute("INSERT INTO t_keep VALUES (1), (2)")
        cur.execute("SET @total = 40")
    for n in noise:
        assert one(n, "SELECT 1") == 1
    with c.cursor() as cur:
        cur.execute("SELECT @total + SUM(x) FROM t_keep")
        assert cur.fetchone()[0] == 43
    for n in noise:
        n.close()
    c.close()


def test_last_insert_id_with_50_concurrent_inserters(proxy_factory, cluster, table):
    rp = proxy_factory(servers=writer_only(cluster, 3), variables={"auto_increment_delay_multiplex": 0})
    errors = []

    def worker(i: int) -> None:
        try:
            c = rp.connect(autocommit=True)
            for _ in range(10):
                with c.cursor() as cur:
                    cur.execute("INSERT INTO pool_t (who) VALUES (%s)", (i,))
                    cur.execute("SELECT LAST_INSERT_ID()")
                    lid = cur.fetchone()[0]
                    cur.execute("SELECT who FROM pool_t WHERE id = %s", (lid,))
                    if cur.fetchone()[0] != i:
                        errors.append(f"client {i}: LAST_INSERT_ID() {lid} is not its row")
                    cur.execute("SELECT ROW_COUNT()")
                    if cur.fetchone()[0] != -1:
                        errors.append(f"client {i}: ROW_COUNT() after a SELECT is not -1")
            c.close()
        except Exception as exc:  # reported below
            errors.append(f"client {i}: {exc!r}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert cluster.primary.query("SELECT COUNT(*) AS n FROM test.pool_t")[0]["n"] == 500


def test_last_insert_id_is_answered_without_pinning(proxy_factory, cluster, table):
    rp = proxy_factory(servers=writer_only(cluster, 2), variables={"auto_increment_delay_multiplex": 0})
    c = rp.connect(autocommit=True)
    with c.cursor() as cur:
        cur.execute("INSERT INTO pool_t (who) VALUES (7)")
        lid = cur.lastrowid
        assert pool(rp)[0] == 0  # not pinned by the insert
        cur.execute("SELECT LAST_INSERT_ID() AS id")
        assert cur.fetchone()[0] == lid
        assert cur.description[0][0] == "id"
        cur.execute("UPDATE pool_t SET v = 'x' WHERE who = 7")
        cur.execute("SELECT ROW_COUNT()")
        assert cur.fetchone()[0] == 1
    c.close()


def test_pool_exhaustion_waits_then_times_out_and_recovers(proxy_factory, cluster):
    rp = proxy_factory(servers=writer_only(cluster, 2), variables={"connect_timeout_server_max": 1500, "connect_timeout_server": 1000})
    holders = [rp.connect(autocommit=True) for _ in range(2)]
    for h in holders:
        with h.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SELECT 1")
    results = []

    def waiter() -> None:
        c = rp.connect()
        started = time.monotonic()
        try:
            one(c, "SELECT 1")
            results.append(("ok", time.monotonic() - started))
        except pymysql.err.MySQLError as exc:
            results.append((exc.args[0], time.monotonic() - started, exc.args[1]))
        c.close()

    threads = [threading.Thread(target=waiter) for _ in range(18)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 18
    for r in results:
        assert r[0] == 9001, r
        assert 1.4 <= r[1] < 15, r  # loose upper bound: a shared, loaded machine
        assert "hostgroup 0 after 1500ms" in r[2]
    assert rp.stats().sessions_waiting_for_connection == 0
    for h in holders:
        h.commit()
    # everything recovers once the transactions end, and waiters are served in order
    served = []
    blocked = rp.connect(autocommit=True)
    with holders[0].cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT 1")
    with holders[1].cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT 1")
    t = threading.Thread(target=lambda: served.append(one(blocked, "SELECT 42")))
    t.start()
    time.sleep(0.3)
    assert served == []  # waiting for a connection
    holders[0].commit()
    t.join(5)
    assert served == [42]
    holders[1].commit()
    for h in holders + [blocked]:
        h.close()
    st = rp.wait_idle()
    assert st.backend_connections_in_use == 0 and st.backend_connections_connected <= 2


def test_pool_mode_statement_refuses_transactions(proxy_factory, cluster):
    users = [{"username": "app", "password": "app", "default_hostgroup": 0, "default_schema": "test",
              "pool_mode": "statement"}]
    rp = proxy_factory(servers=writer_only(cluster, 2), users=users)
    c = rp.connect(autocommit=True)
    for sql in ("BEGIN", "START TRANSACTION", "SET autocommit = 0", "LOCK TABLES mysql.user READ",
                "SELECT GET_LOCK('x', 1)", "CREATE TEMPORARY TABLE tt (x INT)"):
        with pytest.raises(pymysql.err.MySQLError) as info:
            one(c, sql)
        assert info.value.args[0] == 1235, sql
        assert "pool_mode=statement" in info.value.args[1]
    assert one(c, "SELECT 1") == 1
    assert pool(rp) == (0, 1)
    c.close()


def test_pool_mode_session_keeps_one_connection(proxy_factory, cluster):
    users = [{"username": "app", "password": "app", "default_hostgroup": 0, "default_schema": "test",
              "pool_mode": "session"}]
    rp = proxy_factory(servers=writer_only(cluster, 3), users=users)
    a = rp.connect(autocommit=True)
    b = rp.connect(autocommit=True)
    ta, tb = one(a, "SELECT @@pseudo_thread_id"), one(b, "SELECT @@pseudo_thread_id")
    assert ta != tb
    assert one(a, "SELECT @@pseudo_thread_id") == ta
    assert pool(rp) == (2, 0)
    before = pins(rp)["pool_mode_session"]
    a.close()
    b.close()
    rp.wait_idle()
    assert before == 2


def test_reset_connection_and_change_user_need_no_backend(proxy_factory, cluster):
    rp = proxy_factory(servers=writer_only(cluster, 2))
    c = mysql.connector.connect(host="127.0.0.1", port=rp.port, user="app", password="app", database="test",
                                use_pure=True, autocommit=True)
    cur = c.cursor()
    cur.execute("SET time_zone = '+02:00'")
    cur.execute("SET @x = 5")
    assert pool(rp)[0] == 1  # the user variable pins
    created = rp.stats().backend_connections_created
    c.cmd_reset_connection()
    deadline = time.monotonic() + 5
    while pool(rp)[0] != 0:  # the session let it go; the pool resets it in the background
        assert time.monotonic() < deadline, pool(rp)
        time.sleep(0.02)
    cur = c.cursor()
    cur.execute("SELECT @x, @@time_zone")
    assert cur.fetchone() == (None, "SYSTEM")
    c.cmd_change_user(username="app", password="app", database="test")
    cur = c.cursor()
    cur.execute("SELECT 1")
    cur.fetchall()
    # the pinned connection was reset (COM_RESET_CONNECTION) and reused, not closed and opened anew
    assert rp.stats().backend_connections_created == created
    assert rp.call(lambda: rp.proxy.counters.backend_resets) == 1
    c.close()


def _counter(rp, name: str) -> int:
    return rp.call(lambda: getattr(rp.proxy.counters, name))


# @@pseudo_thread_id: the backend connection's thread id (CONNECTION_ID() is the proxy's session id)
STATE = "SELECT @@pseudo_thread_id, @x, @@character_set_client, @@sql_mode, @@autocommit, @@in_transaction"


def test_pinned_connection_is_reset_and_reused_when_its_session_ends(proxy_factory, cluster, table):
    rp = proxy_factory(servers=writer_only(cluster, 1))
    fresh = rp.connect(autocommit=True)
    with fresh.cursor() as cur:
        cur.execute(STATE)
        clean = cur.fetchone()
    fresh.close()
    rp.wait_idle()
    created = rp.stats().backend_connections_created

    c = rp.connect(autocommit=True)
    with c.cursor() as cur:
        cur.execute("SET @x = 5")  # pins
        cur.execute("SET NAMES latin1")
        cur.execute("SET SESSION sql_mode = ''")
        cur.execute("CREATE TEMPORARY TABLE t_gone (a INT)")
        cur.execute("BEGIN")
        cur.execute(f"INSERT INTO {table} (v) VALUES ('never committed')")
        cur.execute(STATE)
        used = cur.fetchone()
    assert used[0] == clean[0] and used[1:] == (5, "latin1", "", 1, 1)
    c.close()  # the session ends inside its transaction, holding all of the above
    st = rp.wait_idle()
    assert st.backend_connections_connected == st.backend_connections_idle == 1
    assert _counter(rp, "backend_resets") == 1 and _counter(rp, "backend_reset_failures") == 0

    d = rp.connect(autocommit=True)
    with d.cursor() as cur:
        cur.execute(STATE)
        assert cur.fetchone() == clean  # the same backend thread, with nothing of the last session left
        cur.execute(f"SELECT COUNT(*) FROM {table} WHERE v = 'never committed'")
        assert cur.fetchone()[0] == 0  # rolled back
        with pytest.raises(pymysql.err.ProgrammingError):
            cur.execute("SELECT * FROM t_gone")
        # session tracking still works on the reset connection: this session's change is seen and
        # undone for the next session sharing the connection
        cur.execute("SET time_zone = '+03:00'")
        e = rp.connect(autocommit=True)
        assert one(e, "SELECT @@time_zone") == "SYSTEM"
        assert one(d, "SELECT @@time_zone") == "+03:00"
        e.close()
    d.close()
    assert rp.stats().backend_connections_created == created


def test_pinned_connection_whose_reset_fails_is_closed_not_pooled(proxy_factory, cluster):
    rp = proxy_factory(servers=writer_only(cluster, 1))
    c = rp.connect(autocommit=True)
    with c.cursor() as cur:
        cur.execute("SET @x = 5")  # pins
    tid = one(c, "SELECT @@pseudo_thread_id")
    cluster.primary.query(f"KILL {int(tid)}")  # the server ends that connection behind the proxy's back
    c.close()
    deadline = time.monotonic() + 10
    while _counter(rp, "backend_reset_failures") != 1:
        assert time.monotonic() < deadline, "the failed reset was not counted"
        time.sleep(0.02)
    st = rp.wait_idle()
    assert st.backend_connections_connected == 0 and st.backend_connections_in_use == 0  # closed, not leaked
    assert _counter(rp, "backend_resets") == 0
    d = rp.connect(autocommit=True)
    assert one(d, "SELECT @@pseudo_thread_id") != tid and one(d, "SELECT @x") is None
    d.close()


def test_pinned_connection_is_closed_when_resets_are_off(proxy_factory, cluster):
    rp = proxy_factory(servers=writer_only(cluster, 1), variables={"connpoll_reset_queue_length": 0})
    c = rp.connect(autocommit=True)
    first = one(c, "SELECT @@pseudo_thread_id")
    with c.cursor() as cur:
        cur.execute("SET @x = 5")
    c.close()
    rp.wait_idle()
    d = rp.connect(autocommit=True)
    assert one(d, "SELECT @@pseudo_thread_id") != first
    assert one(d, "SELECT @x") is None
    d.close()
    assert _counter(rp, "backend_resets") == 0


def test_idle_in_transaction_timeout(proxy_factory, cluster, table):
    rp = proxy_factory(servers=writer_only(cluster, 2), variables={"max_transaction_idle_time": 1000})
    c = rp.connect(autocommit=True)
    with c.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("INSERT INTO pool_t (who) VALUES (99)")
    time.sleep(2.5)
    with pytest.raises(pymysql.err.OperationalError):
        one(c, "SELECT 1")
    assert cluster.primary.query("SELECT COUNT(*) AS n FROM test.pool_t WHERE who = 99")[0]["n"] == 0
    idle = rp.connect(autocommit=True)  # an idle session without a transaction is left alone
    time.sleep(2.5)
    assert one(idle, "SELECT 1") == 1
    idle.close()
    assert rp.call(lambda: rp.proxy.counters.transactions_ended) == 1


def test_prepared_statements_are_shared_and_capped(proxy_factory, cluster, table):
    cap = 3
    rp = proxy_factory(servers=writer_only(cluster, 4), variables={"max_stmts_per_connection": cap})
    cluster.primary.query("INSERT INTO test.pool_t (who, v) VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    texts = [f"SELECT v, {i} FROM pool_t WHERE who = ?" for i in range(6)]
    errors = []
    peak = []

    def watch() -> None:
        while not done.is_set():
            per_conn = rp.call(lambda: [len(be.stmts) for be in rp.proxy.backends])
            peak.append(max(per_conn, default=0))
            time.sleep(0.01)

    def client(i: int) -> None:
        try:
            c = mysql.connector.connect(host="127.0.0.1", port=rp.port, user="app", password="app",
                                        database="test", use_pure=True, autocommit=True)
            cur = c.cursor(prepared=True)
            for k in range(3):
                text = texts[(i + k) % len(texts)]
                cur.execute(text, ((i % 3) + 1,))
                row = cur.fetchone()
                if row is None or row[0] != "abc"[i % 3] or row[1] != (i + k) % len(texts):
                    errors.append(f"client {i}: {text} -> {row}")
            c.close()
        except Exception as exc:
            errors.append(f"client {i}: {exc!r}")

    done = threading.Event()
    w = threading.Thread(target=watch)
    w.start()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    w.join()
    assert errors == []
    assert max(peak) <= cap
    registry = rp.proxy.stmt_registry
    assert len(registry) == len(texts)  # one shared preparation per text
    # concurrent first PREPAREs of a text may each miss; all later ones are answered from the registry
    assert registry.hits + registry.misses == 200 * 3 and registry.hits > 200 * 3 // 2
    status = cluster.primary.query("SHOW GLOBAL STATUS LIKE 'Prepared_stmt_count'")[0]
    assert int(status["Value"]) <= cap * 4


def test_prepared_statement_survives_a_recycled_connection(proxy_factory, cluster, table):
    rp = proxy_factory(servers=writer_only(cluster, 2))
    cluster.primary.query("INSERT INTO test.pool_t (who, v) VALUES (5, 'five')")
    c = mysql.connector.connect(host="127.0.0.1", port=rp.port, user="app", password="app", database="test",
                                use_pure=True, autocommit=True)
    cur = c.cursor(prepared=True)
    cur.execute("SELECT v FROM pool_t WHERE who = ?", (5,))
    assert cur.fetchall() == [("five",)]
    # the pooled connection that holds the preparation goes away
    for t in cluster.primary.query("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'app'"):
        cluster.primary.query(f"KILL {t['ID']}")
    time.sleep(1.5)  # the pool notices the dead idle connection
    cur.execute("SELECT v FROM pool_t WHERE who = ?", (5,))
    assert cur.fetchall() == [("five",)]
    cur.execute("SELECT v FROM pool_t WHERE who = ?", (6,))
    assert cur.fetchall() == []
    c.close()


def test_prepared_cursor_pins_until_closed(proxy_factory, cluster, table):
    rp = proxy_factory(servers=writer_only(cluster, 2))
    cluster.primary.query("INSERT INTO test.pool_t (who, v) VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    c = mysql.connector.connect(host="127.0.0.1", port=rp.port, user="app", password="app", database="test",
                                use_pure=True, autocommit=True)
    cur = c.cursor(prepared=True)
    # mysql-connector's prepared cursor opens a server-side cursor and fetches in COM_STMT_FETCH batches
    cur.execute("SELECT v FROM pool_t ORDER BY id")
    assert cur.fetchone() == ("a",)
    assert cur.fetchall() == [("b",), ("c",)]
    cur.close()
    c.close()
    st = rp.wait_idle()
    assert st.backend_connections_in_use == 0


def test_2000_concurrent_clients_on_pools_of_10(proxy_factory, cluster, table):
    """2,000 clients connected at once, each running a transaction and reads, through pools capped
    at 10 connections per server: all succeed, and no server ever has more than 10 of the proxy's."""
    import trio

    from myrouter.backend.connection import ServerAddress, open_backend
    from myrouter.protocol.auth import BackendSecret
    from myrouter.protocol.constants import Capability as C

    cap, n_clients = 10, 2000
    servers = [{"hostgroup_id": 0, "hostname": "127.0.0.1", "port": cluster.primary.port, "max_connections": cap}]
    servers += [{"hostgroup_id": 1, "hostname": "127.0.0.1", "port": r.port, "max_connections": cap}
                for r in cluster.replicas]
    rp = proxy_factory(servers=servers, rules_dir=REPO / "rules",
                       variables={"max_connections": n_clients + 100, "connect_timeout_server_max": 120000})
    backends = [cluster.primary] + list(cluster.replicas)
    caps = int(C.PROTOCOL_41 | C.SECURE_CONNECTION | C.PLUGIN_AUTH | C.TRANSACTIONS | C.MULTI_RESULTS
               | C.DEPRECATE_EOF)
    proxy_addr = ServerAddress(0, "127.0.0.1", rp.port)
    peak = [0] * len(backends)
    failures: list[str] = []
    connected = 0
    all_connected = trio.Event()

    async def client(i: int) -> None:
        nonlocal connected
        try:
            be = await open_backend(proxy_addr, username="app", secret=BackendSecret(plain=b"app"), database="test",
                                    client_capabilities=caps, connect_timeout=60)
        except Exception as exc:  # reported below
            failures.append(f"client {i} connect: {exc!r}")
            connected += 1
            if connected == n_clients:
                all_connected.set()
            return
        connected += 1
        if connected == n_clients:
            all_connected.set()
        await all_connected.wait()
        try:
            for sql in ("BEGIN", f"INSERT INTO pool_t (who) VALUES ({i})", "COMMIT", "SELECT 1",
                        f"SELECT COUNT(*) FROM pool_t WHERE who = {i}", "SELECT @@server_id"):
                tracker = await be.simple_query(sql)
                if tracker.error is not None:
                    failures.append(f"client {i} {sql}: {tracker.error[9:]!r}")
                    break
        except Exception as exc:  # reported below
            failures.append(f"client {i}: {exc!r}")
        finally:
            await be.aclose()

    async def sample(k: int, server, stop: trio.Event) -> None:
        # the proxy's connections as the server counts them (the proxy logs in as 'app')
        probe = await open_backend(ServerAddress(0, "127.0.0.1", server.port), username="root",
                                   secret=BackendSecret(plain=b"root"), database=None, client_capabilities=caps)
        sql = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'app'"
        while not stop.is_set():
            peak[k] = max(peak[k], int((await probe.query_rows(sql))[0][0]))
            await trio.sleep(0.02)
        await probe.aclose()

    async def main() -> None:
        stop = trio.Event()
        async with trio.open_nursery() as samplers:
            for k, server in enumerate(backends):
                samplers.start_soon(sample, k, server, stop)
            async with trio.open_nursery() as clients:
                for i in range(n_clients):
                    clients.start_soon(client, i)
            stop.set()

    trio.run(main)
    assert failures == [], failures[:10]
    assert cluster.primary.query("SELECT COUNT(*) AS n FROM test.pool_t")[0]["n"] == n_clients
    assert all(0 < p <= cap for p in peak), peak
    st = rp.wait_idle(30)
    assert st.client_connections_connected == 0 and st.backend_connections_in_use == 0
    assert st.backend_connections_connected <= cap * len(backends)


def test_prepared_statements_follow_the_read_write_split(proxy_factory, cluster, table):
    rp = proxy_factory(rules_dir=REPO / "rules")
    primary = cluster.primary.query("SELECT @@server_id AS s")[0]["s"]
    replicas = {r.query("SELECT @@server_id AS s")[0]["s"] for r in cluster.replicas}
    c = mysql.connector.connect(host="127.0.0.1", port=rp.port, user="app", password="app", database="test",
                                use_pure=True, autocommit=True)
    cur = c.cursor(prepared=True)
    cur.execute("SELECT @@server_id + ?", (0,))
    assert cur.fetchall()[0][0] in replicas  # a read: prepared and executed on a replica
    cur.execute("INSERT INTO pool_t (who, v) VALUES (?, CAST(@@server_id AS CHAR))", (77,))
    assert cluster.primary.query("SELECT v FROM test.pool_t WHERE who = 77")[0]["v"] == str(primary)
    c.start_transaction()
    cur.execute("SELECT @@server_id + ?", (0,))
    assert cur.fetchall()[0][0] == primary  # inside a transaction: where the transaction is
    c.commit()
    digests = rp.call(lambda: [r.digest_text for r in rp.proxy.digest_stats.snapshot()])
    assert any("@@server_id" in d for d in digests)
    c.close()


def test_pool_maintenance_idle_timeout_min_idle_ping_and_max_age(proxy_factory, cluster):
    rp = proxy_factory(servers=writer_only(cluster, 10), variables={
        "pool_idle_timeout_ms": 1000, "free_connections_pct": 0, "ping_interval_server_msec": 1000})
    holders = [rp.connect(autocommit=True) for _ in range(3)]
    for h in holders:
        with h.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SELECT 1")
    for h in holders:
        h.commit()
    assert pool(rp) == (0, 3)
    time.sleep(2.5)  # idle past pool_idle_timeout_ms, above free_connections_pct: closed
    assert pool(rp) == (0, 0)
    wait_for("no backend thread on the server", lambda: backend_threads(cluster) == 0)
    for h in holders:
        h.close()

    # a connection idle longer than ping_interval_server_msec is pinged before reuse (its own
    # proxy: with pool_idle_timeout_ms above, maintenance could close it first and the next
    # statement would open a new connection instead)
    pinged = proxy_factory(servers=writer_only(cluster, 10), variables={"ping_interval_server_msec": 1000})
    c = pinged.connect(autocommit=True)
    assert one(c, "SELECT 1") == 1
    assert [p.latency_us for p in pinged.call(pinged.proxy.pools.statistics) if p.hostgroup == 0][0] == 0
    time.sleep(1.2)
    assert one(c, "SELECT 1") == 1
    latency = [p.latency_us for p in pinged.call(pinged.proxy.pools.statistics) if p.hostgroup == 0][0]
    assert latency > 0
    c.close()

    aged = proxy_factory(servers=writer_only(cluster, 10), variables={
        "connection_max_age_ms": 1000, "pool_min_idle": 2})
    c = aged.connect(autocommit=True)
    first = one(c, "SELECT @@pseudo_thread_id")
    time.sleep(2.5)
    assert pool(aged)[1] >= 2  # kept warm
    assert one(c, "SELECT @@pseudo_thread_id") != first  # the old connection was retired after its max age
    c.close()
