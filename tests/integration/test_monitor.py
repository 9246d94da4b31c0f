"""The monitor against real MariaDB servers: shunning, lag (heartbeat), promotion, fallback.

These tests stop servers, stop replication and promote replicas, so they use
clusters of their own (``own_cluster`` for the module, a fresh one for the
promotion), never the session's shared ``cluster``. Check intervals are short
(hundreds of milliseconds) so each test takes a few seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import mysql.connector
from conftest import REPO, RunningProxy, admin_sql, wait_for

from myrouter.backend.connection import ServerAddress, open_backend, query_rows
from myrouter.monitor.checks import Checker, Credentials
from myrouter.protocol.auth import BackendSecret
from myrouter.protocol.errors import MySQLError
from myrouter_testbed.mariadb import Cluster, ensure_packages, free_ports, start_cluster

FAST = {
    "monitor_connect_interval": 500,
    "monitor_connect_timeout": 300,
    "monitor_ping_interval": 200,
    "monitor_ping_timeout": 300,
    "monitor_ping_max_failures": 3,
    "monitor_read_only_interval": 300,
    "monitor_read_only_timeout": 300,
    "monitor_replication_lag_interval": 200,
    "monitor_replication_lag_timeout": 300,
    "shun_recovery_time_sec": 2,
}


@pytest.fixture
def start_proxy(proxy_factory, tmp_path: Path) -> Callable[..., RunningProxy]:
    """Start a proxy in front of a cluster: hostgroup 0 the primary, 1 the replicas,
    ``mysql_replication_hostgroups`` (0, 1) unless ``pairs=[]``."""
    rules = tmp_path / "rules"
    rules.mkdir()

    def start(cluster: Cluster, *, variables: dict | None = None, replica_options: dict | None = None,
              pairs=((0, 1),), users: list[dict] | None = None) -> RunningProxy:
        servers = [{"hostgroup_id": 0, "hostname": "127.0.0.1", "port": cluster.primary.port}]
        servers += [{"hostgroup_id": 1, "hostname": "127.0.0.1", "port": r.port, **(replica_options or {})}
                    for r in cluster.replicas]
        return proxy_factory(cluster=cluster, variables={**FAST, **(variables or {})}, servers=servers, users=users,
                             rules_dir=rules, replication_hostgroups=tuple(pairs))

    return start




def layout(rp: RunningProxy) -> dict[tuple[int, int], str]:
    """(hostgroup, port) -> status, read inside the proxy's event loop."""
    return rp.call(lambda: {(s.hostgroup, s.port): s.status for s in rp.proxy.hostgroups.servers()})



def server_id(server) -> int:
    return server.query("SELECT @@server_id AS s")[0]["s"]


def served_by(conn) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT @@server_id")
        return cur.fetchone()[0]


# -- the monitor's connections ------------------------------------------------------------


async def test_query_rows_decodes_text_results_and_errors(own_cluster):
    primary = own_cluster.primary
    conn = await open_backend(ServerAddress(0, primary.host, primary.port), username="monitor",
                              secret=BackendSecret(plain=b"monitor"), database=None, client_capabilities=0)
    try:
        assert await query_rows(conn, "SELECT 1 AS a, NULL AS b, 'x\u00e9' AS c, @@read_only AS ro") == (
            ["a", "b", "c", "ro"], [("1", None, "x\u00e9", "0")])
        assert await query_rows(conn, "SELECT 1 FROM DUAL WHERE 0") == (["1"], [])
        assert await query_rows(conn, "DO 1") == ([], [])
        with pytest.raises(MySQLError) as err:
            await query_rows(conn, "SELECT * FROM mysql.nope")
        assert err.value.code in (1142, 1146)
        assert (await query_rows(conn, "SHOW SLAVE STATUS"))[1] == []  # the primary replicates from nobody
        assert await query_rows(conn, "SELECT 2") == (["2"], [("2",)])  # still usable after the error
    finally:
        await conn.aclose()


async def test_checks_on_a_replica_and_a_dead_port(own_cluster):
    replica = own_cluster.replicas[0]
    creds = Credentials("monitor", "monitor")
    checker = Checker()
    ep = (replica.host, replica.port)
    ro = await checker.read_only(ep, creds, 1, 1, ["read_only", "innodb_read_only", "read_only&innodb_read_only"])
    assert ro.ok and ro.value == {"read_only": True, "innodb_read_only": False, "read_only&innodb_read_only": False}
    lag = await checker.replication_lag(ep, creds, 1, 1, lag_when_null_s=60)
    assert lag.ok and lag.value == 0
    assert checker._replica_sql[ep] == "SHOW REPLICA STATUS"  # MariaDB 10.11 speaks it
    sro = await checker.read_only(ep, creds, 1, 1, ["super_read_only"])  # MySQL only
    assert not sro.ok and not sro.timeout and "1193" in sro.error
    assert checker.pool.idle_count() == 1  # one connection served all four checks
    dead = ("127.0.0.1", free_ports(1)[0])
    for result in (await checker.connect(dead, creds, 1), await checker.ping(dead, creds, 1, 1)):
        assert not result.ok and not result.not_health and "refused" in result.error.lower()
    await checker.pool.aclose()
    denied = await Checker().ping(ep, Credentials("monitor", "wrong"), 1, 1)  # (the monitor drops its pool on
    assert not denied.ok and denied.not_health and "1045" in denied.error   # a change of credentials)


# -- health ---------------------------------------------------------------------------


def test_stopped_replica_is_shunned_then_back_after_the_recovery_delay(own_cluster, start_proxy, caplog):
    caplog.set_level(logging.INFO)
    cluster = own_cluster
    down, other = cluster.replicas
    rp = start_proxy(cluster, users=[{"username": "app", "password": "app", "default_hostgroup": 1,
                                      "default_schema": "test"}])
    wait_for("the first checks", lambda: len(rp.proxy.monitor.logs.rows("mysql_server_ping_log")) >= 6)
    assert set(layout(rp).values()) == {"ONLINE"}
    down.stop()
    try:
        wait_for("SHUNNED", lambda: layout(rp)[(1, down.port)] == "SHUNNED", timeout=10)
        rows = admin_sql(rp, "SELECT hostgroup_id, port, status FROM runtime_mysql_servers ORDER BY hostgroup_id, port")
        assert (1, down.port, "SHUNNED") in rows and (1, other.port, "ONLINE") in rows
        assert (0, cluster.primary.port, "ONLINE") in rows
        # monitor_ping_max_failures (3) connect/ping checks in a row failed: both logs show them
        pings = admin_sql(rp, f"SELECT ping_success_time_us, ping_error FROM monitor.mysql_server_ping_log "
                              f"WHERE port = {down.port} AND ping_error IS NOT NULL")
        connects = admin_sql(rp, f"SELECT connect_success_time_us, connect_error FROM "
                                 f"monitor.mysql_server_connect_log WHERE port = {down.port} AND connect_error IS NOT NULL")
        assert pings and len(pings) + len(connects) >= 3 and all(t == 0 for t, _ in pings + connects)
        assert all("refused" in e.lower() or "lost" in e.lower() for _, e in pings + connects), pings + connects
        assert admin_sql(rp, f"SELECT COUNT(*) FROM monitor.mysql_server_ping_log WHERE port = {other.port} "
                             "AND ping_error IS NULL AND ping_success_time_us > 0")[0][0] >= 3
        wait_for("a failed connect check", lambda: admin_sql(
            rp, f"SELECT COUNT(*) FROM monitor.mysql_server_connect_log WHERE port = {down.port} "
                "AND connect_error IS NOT NULL")[0][0] >= 1, timeout=5)
        # a shun is not configuration: saving the runtime to memory keeps the configured status
        assert admin_sql(rp, "SAVE MYSQL SERVERS FROM RUNTIME",
                         f"SELECT status FROM mysql_servers WHERE port = {down.port}") == [("ONLINE",)]
        # no new traffic goes to it: reads of hostgroup 1 go to the other replica
        conn = rp.connect(autocommit=True)
        assert {served_by(conn) for _ in range(5)} == {server_id(other)}
        conn.close()
    finally:
        down.start()
    back = wait_for("ONLINE again", lambda: layout(rp)[(1, down.port)] == "ONLINE", timeout=15)
    last_failure_us = admin_sql(rp, f"SELECT MAX(time_start_us) FROM monitor.mysql_server_ping_log "
                                    f"WHERE port = {down.port} AND ping_error IS NOT NULL")[0][0]
    # back only after shun_recovery_time_sec (2 s) without a failure
    assert time.time() - (time.monotonic() - back) - last_failure_us / 1e6 >= 2.0 - 0.05
    assert "SHUNNED" in caplog.text and "SHUNNED -> ONLINE" in caplog.text
    cluster.wait_replication()


def test_wrong_monitor_password_is_logged_but_shuns_nothing(own_cluster, start_proxy, caplog):
    caplog.set_level(logging.INFO)
    rp = start_proxy(own_cluster, variables={"monitor_password": "not-the-Password-42"})
    wait_for("failed connect checks", lambda: len([
        r for r in rp.proxy.monitor.logs.rows("mysql_server_connect_log") if r[4]]) >= 3)
    time.sleep(1.0)  # 5 ping rounds: far more than monitor_ping_max_failures
    assert set(layout(rp).values()) == {"ONLINE"}
    errors = admin_sql(rp, "SELECT DISTINCT connect_error FROM monitor.mysql_server_connect_log")
    assert errors and all("1045" in e and "Access denied" in e for (e,) in errors), errors
    assert "not-the-Password-42" not in caplog.text  # passwords are never logged
    assert "mysql-monitor_password" in caplog.text


# -- replication lag --------------------------------------------------------------------


def test_heartbeat_lag_shuns_a_replica_whose_sql_thread_stopped(own_cluster, start_proxy):
    cluster = own_cluster
    cluster.primary.query("GRANT CREATE, INSERT, UPDATE, SELECT ON myrouter_hb.* TO 'monitor'@'%'")
    lagging, healthy = cluster.replicas
    rp = start_proxy(cluster, replica_options={"max_replication_lag": 1}, variables={
        "monitor_replication_lag_use_percona_heartbeat": "myrouter_hb.heartbeat",
        "monitor_heartbeat_write_interval": 100, "shun_recovery_time_sec": 1},
        users=[{"username": "app", "password": "app", "default_hostgroup": 1, "default_schema": "test"}])
    try:
        # the monitor creates the table on the writer; the replicas soon report sub-second lag
        def lag_rows(port):
            return admin_sql(rp, f"SELECT repl_lag, repl_lag_ms, error FROM monitor.mysql_server_replication_lag_log "
                                 f"WHERE port = {port} AND error IS NULL")

        wait_for("heartbeat lag on both replicas", lambda: all(len(lag_rows(r.port)) >= 3 for r in cluster.replicas))
        assert all(0 <= ms < 1000 and lag == round(ms / 1000) for lag, ms, _ in lag_rows(healthy.port)[-3:])
        assert cluster.primary.query("SELECT COUNT(*) AS n FROM myrouter_hb.heartbeat")[0]["n"] == 1
        lagging.stop_sql_thread()
        try:
            cluster.primary.query("CREATE TABLE IF NOT EXISTS test.monitor_lag (id INT PRIMARY KEY AUTO_INCREMENT)")
            started = time.monotonic()
            while layout(rp)[(1, lagging.port)] != "SHUNNED":  # write on the primary until it is shunned
                cluster.primary.query("INSERT INTO test.monitor_lag VALUES ()")
                assert time.monotonic() - started < 10, "not shunned for lag"
                time.sleep(0.05)
            lag_ms = rp.call(lambda: rp.proxy.hostgroups.find(1, "127.0.0.1", lagging.port).repl_lag_ms)
            assert lag_ms > 1000
            assert layout(rp)[(1, healthy.port)] == "ONLINE" and layout(rp)[(0, cluster.primary.port)] == "ONLINE"
            logged = admin_sql(rp, f"SELECT MAX(repl_lag_ms) FROM monitor.mysql_server_replication_lag_log "
                                   f"WHERE port = {lagging.port}")[0][0]
            assert logged > 1000
            # no read reaches the lagging replica while it is shunned
            reader = rp.connect(autocommit=True)
            assert {served_by(reader) for _ in range(20)} == {server_id(healthy)}
            reader.close()
            # Seconds_Behind_Master says nothing useful meanwhile (NULL: the SQL thread is stopped)
            assert lagging.slave_status()["Seconds_Behind_Master"] is None
        finally:
            lagging.start_sql_thread()
        wait_for("ONLINE after catching up", lambda: layout(rp)[(1, lagging.port)] == "ONLINE", timeout=10)
    finally:
        rp.stop()
        cluster.primary.query("DROP DATABASE IF EXISTS myrouter_hb")
        cluster.primary.query("DROP TABLE IF EXISTS test.monitor_lag")
        cluster.primary.query("REVOKE ALL PRIVILEGES ON myrouter_hb.* FROM 'monitor'@'%'")
        cluster.wait_replication()


def test_replica_status_lag_when_null(own_cluster, start_proxy):
    """Without a heartbeat table: SHOW REPLICA STATUS; a stopped SQL thread gives NULL, which
    counts as monitor_slave_lag_when_null seconds."""
    cluster = own_cluster
    lagging = cluster.replicas[0]
    rp = start_proxy(cluster, replica_options={"max_replication_lag": 5}, variables={"monitor_slave_lag_when_null": 30})
    wait_for("lag checks", lambda: len(rp.proxy.monitor.logs.rows("mysql_server_replication_lag_log")) >= 4)
    assert admin_sql(rp, f"SELECT repl_lag, repl_lag_ms FROM monitor.mysql_server_replication_lag_log "
                         f"WHERE port = {lagging.port} ORDER BY time_start_us DESC LIMIT 1")[0] == (0, 0)
    lagging.stop_sql_thread()
    try:
        wait_for("SHUNNED for lag", lambda: layout(rp)[(1, lagging.port)] == "SHUNNED", timeout=5)
        assert admin_sql(rp, f"SELECT repl_lag FROM monitor.mysql_server_replication_lag_log "
                             f"WHERE port = {lagging.port} ORDER BY time_start_us DESC LIMIT 1")[0][0] == 30
    finally:
        lagging.start_sql_thread()
    wait_for("ONLINE", lambda: layout(rp)[(1, lagging.port)] == "ONLINE", timeout=10)
    cluster.wait_replication()


# -- fallback ---------------------------------------------------------------------------


def test_fallback_to_the_writer_when_every_reader_is_shunned(own_cluster, start_proxy):
    cluster = own_cluster
    rp = start_proxy(cluster)
    fallback = lambda: rp.call(rp.proxy.hostgroups.fallback_for, 1)
    wait_for("first pings", lambda: len(rp.proxy.monitor.logs.rows("mysql_server_ping_log")) >= 3)
    assert fallback() is None
    first, second = cluster.replicas
    first.kill()
    try:
        wait_for("one reader shunned", lambda: layout(rp)[(1, first.port)] == "SHUNNED", timeout=10)
        assert fallback() is None  # the other reader still serves
        second.kill()
        try:
            wait_for("both readers shunned", lambda: layout(rp)[(1, second.port)] == "SHUNNED", timeout=10)
            assert fallback() == 0
            admin_sql(rp, "UPDATE global_variables SET variable_value = 'false' "
                          "WHERE variable_name = 'mysql-reader_fallback_to_writer'",
                      "LOAD MYSQL VARIABLES TO RUNTIME")
            assert fallback() is None
            admin_sql(rp, "UPDATE global_variables SET variable_value = 'true' "
                          "WHERE variable_name = 'mysql-reader_fallback_to_writer'",
                      "LOAD MYSQL VARIABLES TO RUNTIME")
            assert fallback() == 0
        finally:
            second.start()
    finally:
        first.start()
    wait_for("readers back", lambda: set(layout(rp).values()) == {"ONLINE"}, timeout=15)
    assert fallback() is None
    cluster.wait_replication()


def test_reads_of_every_kind_fall_back_to_the_writer_when_every_reader_is_down(own_cluster, proxy_factory):
    """The shipped rules send reads to the readers; with both down, a text read, a server-side prepared
    read (PREPARE borrows a connection of its own) and a causal read after a write are all served by
    the primary (mysql-reader_fallback_to_writer), never refused with 9001."""
    cluster = own_cluster
    servers = [{"hostgroup_id": 0, "hostname": "127.0.0.1", "port": cluster.primary.port}]
    servers += [{"hostgroup_id": 1, "hostname": "127.0.0.1", "port": r.port} for r in cluster.replicas]
    users = [{"username": "app", "password": "app", "default_hostgroup": 0, "default_schema": "test",
              "causal_reads": "session"}]
    rp = proxy_factory(cluster=cluster, variables=FAST, servers=servers, users=users, rules_dir=REPO / "rules",
                       replication_hostgroups=((0, 1),))
    primary = server_id(cluster.primary)
    cluster.primary.query("CREATE TABLE IF NOT EXISTS test.fallback_t (id INT AUTO_INCREMENT PRIMARY KEY)")
    cluster.wait_replication()
    wait_for("first pings", lambda: len(rp.proxy.monitor.logs.rows("mysql_server_ping_log")) >= 3)
    for replica in cluster.replicas:
        replica.kill()
    try:
        wait_for("both readers shunned", lambda: {status for (hg, _), status in layout(rp).items() if hg == 1}
                 == {"SHUNNED"}, timeout=10)
        text = rp.connect(autocommit=True)
        assert served_by(text) == primary
        prepared = mysql.connector.connect(host="127.0.0.1", port=rp.port, user="app", password="app",
                                           database="test", autocommit=True)
        cur = prepared.cursor(prepared=True)
        cur.execute("SELECT @@server_id")
        assert cur.fetchall() == [(primary,)]
        prepared.close()
        fallbacks = rp.proxy.counters.causal_fallbacks
        with text.cursor() as c:
            c.execute("INSERT INTO fallback_t VALUES ()")
            c.execute("SELECT id, @@server_id FROM fallback_t WHERE id = %s", (c.lastrowid,))
            assert c.fetchone()[1] == primary
        assert rp.proxy.counters.causal_fallbacks == fallbacks + 1
        text.close()
    finally:
        for replica in cluster.replicas:
            replica.start()
    wait_for("readers back", lambda: set(layout(rp).values()) == {"ONLINE"}, timeout=15)
    cluster.primary.query("DROP TABLE test.fallback_t")
    cluster.wait_replication()


# -- writer/reader discovery ------------------------------------------------------------


def test_promotion_moves_writes_to_the_new_primary(start_proxy, caplog):
    caplog.set_level(logging.INFO)
    ensure_packages()
    with start_cluster(replicas=2) as cluster:
        old, new, other = cluster.primary, cluster.replicas[0], cluster.replicas[1]
        old_id, new_id = server_id(old), server_id(new)
        interval = FAST["monitor_read_only_interval"] / 1000
        rp = start_proxy(cluster)
        old.query("CREATE TABLE test.promo (id INT PRIMARY KEY, sid INT)")
        wait_for("read_only checks", lambda: len(rp.proxy.monitor.logs.rows("mysql_server_read_only_log")) >= 6)
        assert layout(rp) == {(0, old.port): "ONLINE", (1, new.port): "ONLINE", (1, other.port): "ONLINE"}
        session = rp.connect(autocommit=True)
        with session.cursor() as cur:
            cur.execute("INSERT INTO promo VALUES (1, @@server_id)")
        assert served_by(session) == old_id

        cluster.promote(new)  # old primary read_only=ON; new: STOP SLAVE, RESET SLAVE ALL, read_only=OFF
        promoted = time.monotonic()
        moved = wait_for("the writer moves", lambda: [hg_port for hg_port in layout(rp) if hg_port[0] == 0]
                         == [(0, new.port)], timeout=10, step=0.01)
        assert moved - promoted <= 2 * interval  # within two read_only check intervals
        assert layout(rp) == {(0, new.port): "ONLINE", (1, new.port): "ONLINE", (1, old.port): "ONLINE",
                              (1, other.port): "ONLINE"}  # monitor_writer_is_also_reader
        rows = admin_sql(rp, "SELECT hostgroup_id, port, status FROM runtime_mysql_servers ORDER BY hostgroup_id, port")
        assert rows == sorted([(0, new.port, "ONLINE"), (1, new.port, "ONLINE"), (1, old.port, "ONLINE"),
                               (1, other.port, "ONLINE")])
        read_only = dict(admin_sql(rp, f"SELECT port, read_only FROM monitor.mysql_server_read_only_log "
                                       f"WHERE time_start_us > {int((time.time() - 0.3) * 1e6)} AND error IS NULL"))
        assert read_only[new.port] == 0 and read_only[old.port] == 1

        # a new client writes on the new primary, with no change on its side
        fresh = rp.connect(autocommit=True)
        with fresh.cursor() as cur:
            cur.execute("INSERT INTO promo VALUES (2, @@server_id)")
        assert served_by(fresh) == new_id
        fresh.close()
        # the old session's idle connection to the old writer is released: it follows too
        wait_for("the old session moves", lambda: served_by(session) == new_id, timeout=5, step=0.2)
        with session.cursor() as cur:
            cur.execute("INSERT INTO promo VALUES (3, @@server_id)")
        session.close()
        cluster.wait_replication()
        for server in cluster.servers:
            assert server.query("SELECT id, sid FROM test.promo ORDER BY id") == [
                {"id": 1, "sid": old_id}, {"id": 2, "sid": new_id}, {"id": 3, "sid": new_id}]

        # reloading the configured servers (the old primary as writer) keeps the monitor's view
        admin_sql(rp, "LOAD MYSQL SERVERS TO RUNTIME")
        assert [k for k in layout(rp) if k[0] == 0] == [(0, new.port)]
        # and saving the runtime makes the new topology the configuration
        assert admin_sql(rp, "SAVE MYSQL SERVERS FROM RUNTIME",
                         "SELECT hostgroup_id, port FROM mysql_servers ORDER BY 1, 2") == sorted(
            [(0, new.port), (1, new.port), (1, old.port), (1, other.port)])
        admin_sql(rp, "LOAD MYSQL SERVERS TO RUNTIME")
        assert [k for k in layout(rp) if k[0] == 0] == [(0, new.port)]
        time.sleep(3 * interval)
        assert [k for k in layout(rp) if k[0] == 0] == [(0, new.port)]
        assert "removed from hostgroup 0" in caplog.text
        rp.stop()
