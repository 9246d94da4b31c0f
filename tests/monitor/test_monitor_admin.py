"""The monitor inside a Proxy, driven through the admin engine (no sockets, no servers):
the monitor schema, LOAD MYSQL SERVERS TO RUNTIME keeping the monitor's decisions, and
Proxy.server_status_changed for every status change."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from myrouter.admin.core import Admin, AdminSession, ResultSet
from myrouter.app import Proxy
from myrouter.config import load_config
from myrouter.monitor.logs import PING, READ_ONLY, REPLICATION_LAG
from myrouter.protocol.errors import MySQLError

CONFIG = """\
[mysql_variables]
interfaces = "127.0.0.1:16033"
server_version = "10.11.6-MariaDB"
shun_on_failures = 3
reader_fallback_to_writer = false

[admin_variables]
mysql_ifaces = "127.0.0.1:16032"
restapi_port = 16070

[[mysql_servers]]
hostgroup_id = 0
hostname = "127.0.0.1"
port = 3306

[[mysql_servers]]
hostgroup_id = 1
hostname = "127.0.0.1"
port = 3307

[[mysql_servers]]
hostgroup_id = 1
hostname = "127.0.0.1"
port = 3308

[[mysql_replication_hostgroups]]
writer_hostgroup = 0
reader_hostgroup = 1

[[mysql_users]]
username = "app"
password = "app"
"""

REFUSED = "cannot connect to 127.0.0.1:3308: Connection refused"
ADMIN = AdminSession(1, "admin", "127.0.0.1", read_only=False)
STATS = AdminSession(2, "stats", "127.0.0.1", read_only=True)


@pytest.fixture
def proxy(tmp_path: Path) -> Proxy:
    (tmp_path / "rules").mkdir()
    path = tmp_path / "myrouter.toml"
    path.write_text(CONFIG)
    return Proxy(load_config(path))


async def q(admin: Admin, sql: str, sess: AdminSession = ADMIN):
    result = await admin.execute(sess, sql)
    return result.rows if isinstance(result, ResultSet) else result


def layout(proxy: Proxy) -> list[tuple[int, int, str]]:
    return sorted((s.hostgroup, s.port, s.status) for s in proxy.hostgroups.servers())


async def test_variables_reach_the_hostgroups(proxy: Proxy) -> None:
    policy = proxy.hostgroups.policy
    assert (policy.shun_on_failures, policy.reader_fallback) == (3, False)
    await q(proxy.admin, "UPDATE global_variables SET variable_value = '7' WHERE variable_name = 'mysql-shun_on_failures'")
    await q(proxy.admin, "UPDATE global_variables SET variable_value = 'true' "
                         "WHERE variable_name = 'mysql-reader_fallback_to_writer'")
    await q(proxy.admin, "LOAD MYSQL VARIABLES TO RUNTIME")
    assert (policy.shun_on_failures, policy.reader_fallback) == (7, True)
    names = dict(await q(proxy.admin, "SELECT variable_name, variable_value FROM global_variables "
                                      "WHERE variable_name LIKE 'mysql-monitor_h%' OR variable_name LIKE '%fallback%'"))
    assert names == {"mysql-monitor_history": "600000", "mysql-monitor_heartbeat_write_interval": "0",
                     "mysql-reader_fallback_to_writer": "true"}


async def test_monitor_schema_shows_the_logs_and_is_read_only(proxy: Proxy) -> None:
    logs = proxy.monitor.logs
    logs.add(PING, "127.0.0.1", 3307, 1_700_000_000_000_000, 250, None)
    logs.add(PING, "127.0.0.1", 3308, 1_700_000_000_000_100, 0, REFUSED)
    logs.add(READ_ONLY, "127.0.0.1", 3307, 1_700_000_000_000_000, 300, 1, None)
    logs.add(REPLICATION_LAG, "127.0.0.1", 3307, 1_700_000_000_000_000, 400, 2, None, 1500)
    admin = proxy.admin
    assert await q(admin, "SELECT hostname, port, ping_success_time_us, ping_error FROM monitor.mysql_server_ping_log "
                          "ORDER BY port") == [("127.0.0.1", 3307, 250, None),
                                               ("127.0.0.1", 3308, 0, REFUSED)]
    assert await q(admin, "SELECT read_only FROM mysql_server_read_only_log") == [(1,)]
    assert await q(admin, "SELECT repl_lag, repl_lag_ms FROM monitor.mysql_server_replication_lag_log") == [(2, 1500)]
    tables = {r[0] for r in await q(admin, "SHOW TABLES FROM monitor")}
    assert tables == {"mysql_server_connect_log", "mysql_server_ping_log", "mysql_server_read_only_log",
                      "mysql_server_replication_lag_log"}
    # (the refresh before each statement runs this same DELETE internally: a cached prepared copy of it
    # must not let the operator's statement skip the authorizer; the same goes for the stats tables)
    for table in ("monitor.mysql_server_ping_log", "stats.stats_mysql_global"):
        with pytest.raises(MySQLError) as err:
            await q(admin, f"DELETE FROM {table}")
        assert err.value.code == 1036, table
    with pytest.raises(MySQLError) as err:
        await q(admin, "SELECT * FROM monitor.mysql_server_ping_log", STATS)  # stats accounts: stats schema only
    assert err.value.code == 1142


async def test_load_servers_keeps_moves_and_shuns_and_reports_status_changes(proxy: Proxy, caplog) -> None:
    caplog.set_level(logging.INFO, logger="myrouter")
    hg = proxy.hostgroups
    monitor = proxy.monitor
    # what the monitor found: 3307 promoted (read_only OFF), 3306 read_only ON, 3308 down
    for port, ro in ((3306, True), (3307, False), (3308, True)):
        monitor._health(("127.0.0.1", port)).read_only = ro
        monitor._place(("127.0.0.1", port), {"read_only": ro})
    h = monitor._health(("127.0.0.1", 3308))
    for t in (1.0, 2.0, 3.0):
        h.failed(t, "refused", 3)
    from myrouter.monitor.state import apply_health

    apply_health(hg, h)
    assert layout(proxy) == [(0, 3307, "ONLINE"), (1, 3306, "ONLINE"), (1, 3307, "ONLINE"), (1, 3308, "SHUNNED")]
    assert "127.0.0.1:3306 (hostgroup 0): ONLINE -> OFFLINE_HARD" in caplog.text  # the old writer's entry
    assert "127.0.0.1:3308 (hostgroup 1): ONLINE -> SHUNNED (failed health checks)" in caplog.text
    live = hg.find(1, "127.0.0.1", 3306)
    # the operator reloads the configuration (3306 as writer) and takes 3306 OFFLINE_SOFT: the monitor's
    # placement applies to the configured rows (3306's row now describes its reader entry)
    caplog.clear()
    await q(proxy.admin, "UPDATE mysql_servers SET status = 'OFFLINE_SOFT' WHERE port = 3306")
    await q(proxy.admin, "LOAD MYSQL SERVERS TO RUNTIME")
    assert layout(proxy) == [(0, 3307, "ONLINE"), (1, 3306, "OFFLINE_SOFT"), (1, 3307, "ONLINE"),
                             (1, 3308, "SHUNNED")]
    assert proxy.hostgroups.find(1, "127.0.0.1", 3306) is live
    assert "127.0.0.1:3306 (hostgroup 1): ONLINE -> OFFLINE_SOFT" in caplog.text
    assert "SHUNNED" not in caplog.text and "3307" not in caplog.text  # no flapping
    rows = await q(proxy.admin, "SELECT hostgroup_id, port, status FROM runtime_mysql_servers ORDER BY 1, 2")
    assert rows == [(0, 3307, "ONLINE"), (1, 3306, "OFFLINE_SOFT"), (1, 3307, "ONLINE"), (1, 3308, "SHUNNED")]
    # a server removed from the configuration becomes OFFLINE_HARD
    caplog.clear()
    gone = proxy.hostgroups.find(1, "127.0.0.1", 3308)
    await q(proxy.admin, "DELETE FROM mysql_servers WHERE port = 3308")
    await q(proxy.admin, "LOAD MYSQL SERVERS TO RUNTIME")
    assert gone.status == "OFFLINE_HARD" and "127.0.0.1:3308 (hostgroup 1): SHUNNED -> OFFLINE_HARD" in caplog.text
    assert ("127.0.0.1", 3308) not in monitor.health
