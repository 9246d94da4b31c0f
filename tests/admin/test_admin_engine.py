"""The admin engine (SQLite tables, commands, layers) driven directly, without sockets or backends.

A Proxy is built from a TOML file written here; nothing connects to a server.
The wire protocol and the real test bed are covered by tests/integration/test_admin.py.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from myrouter.admin.core import Admin, AdminSession, OkResult, ResultSet
from myrouter.admin.users import runtime_users
from myrouter.app import Proxy, load_rules_for
from myrouter.config import load_config
from myrouter.protocol.auth import native_hash_text
from myrouter.protocol.errors import MySQLError

REPO = Path(__file__).resolve().parents[2]

CONFIG = """\
# Operator's config: every comment here must survive SAVE ... TO DISK.
rules_dir = "rules"

[mysql_variables]
interfaces = "127.0.0.1:16033"
server_version = "10.11.6-MariaDB"   # what clients see
max_connections = 300                # raised for the batch jobs

[admin_variables]
mysql_ifaces = "127.0.0.1:16032"
restapi_port = 16070

# --- the writer
[[mysql_servers]]
hostgroup_id = 0
hostname = "127.0.0.1"
port = 3306
comment = "primary"

# --- the readers
[[mysql_servers]]
hostgroup_id = 1
address = "127.0.0.1"   # ProxySQL's spelling
port = 3307
weight = 2

[[mysql_servers]]
hostgroup_id = 1
hostname = "127.0.0.1"
port = 3308

# application account
[[mysql_users]]
username = "app"
password = "app"
default_hostgroup = 0
default_schema = "test"
transaction_persistent = 1   # keep transactions on the writer
"""


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "rules").mkdir()
    shutil.copy(REPO / "rules" / "00-read-write-split.toml", tmp_path / "rules")
    path = tmp_path / "myrouter.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def proxy(files: Path) -> Proxy:
    return Proxy(load_config(files))


@pytest.fixture
def admin(proxy: Proxy) -> Admin:
    return proxy.admin


def admin_without_rules(tmp_path: Path) -> Admin:
    """The admin of a proxy with CONFIG and an empty rules directory (no query rules)."""
    (tmp_path / "rules").mkdir()
    path = tmp_path / "myrouter.toml"
    path.write_text(CONFIG)
    return Proxy(load_config(path)).admin


ADMIN = AdminSession(1, "admin", "127.0.0.1", read_only=False)
STATS = AdminSession(2, "stats", "127.0.0.1", read_only=True)


async def q(admin: Admin, sql: str, sess: AdminSession = ADMIN):
    result = await admin.execute(sess, sql)
    return result.rows if isinstance(result, ResultSet) else result


async def error(admin: Admin, sql: str, sess: AdminSession = ADMIN) -> MySQLError:
    with pytest.raises(MySQLError) as info:
        await admin.execute(sess, sql)
    return info.value


async def test_memory_runtime_and_disk_start_equal(admin: Admin) -> None:
    for table in ("mysql_servers", "mysql_users", "mysql_query_rules", "mysql_replication_hostgroups",
                  "global_variables"):
        order = "ORDER BY 1, 2" if table != "mysql_query_rules" else "ORDER BY 1"
        memory = await q(admin, f"SELECT * FROM {table} {order}")
        runtime = memory
        if table == "mysql_users":  # admin-hash_passwords: the runtime holds the hashes
            runtime = [(r[0], native_hash_text(r[1].encode()), *r[2:]) for r in memory]
            assert all(r[1] != m[1] and r[1].startswith("*") for r, m in zip(runtime, memory))
        assert runtime == await q(admin, f"SELECT * FROM runtime_{table} {order}"), table
        assert memory == await q(admin, f"SELECT * FROM disk.{table} {order}"), table
    assert (await q(admin, "SELECT count(*) FROM mysql_servers")) == [(3,)]
    assert (await q(admin, "SELECT variable_value FROM global_variables WHERE variable_name='mysql-max_connections'")
            ) == [("300",)]


async def test_session_statements_guis_send(admin: Admin) -> None:
    assert await q(admin, "select @@version_comment limit 1") == [("(myrouter Admin Module)",)]
    assert await q(admin, "SELECT @@version, DATABASE(), USER()") == [("10.11.6-MariaDB", "main", "admin@127.0.0.1")]
    assert isinstance(await q(admin, "SET NAMES utf8mb4"), OkResult)
    assert isinstance(await q(admin, "SET autocommit=1"), OkResult)
    assert (await q(admin, "SHOW VARIABLES LIKE 'lower_case_table_names'")) == [("lower_case_table_names", 0)]
    assert ("stats",) in [(r[1],) for r in await q(admin, "SHOW DATABASES")]
    tables = [r[0] for r in await q(admin, "SHOW TABLES")]
    assert {"mysql_servers", "runtime_mysql_servers", "global_variables", "mysql_query_rules"} <= set(tables)
    assert "stats_mysql_query_digest" in [r[0] for r in await q(admin, "SHOW TABLES FROM stats")]
    create = await q(admin, "SHOW CREATE TABLE mysql_query_rules")
    assert create[0][0] == "mysql_query_rules" and "match_kind VARCHAR" in create[0][1]
    assert (await error(admin, "SELECT @@no_such_thing")).code == 1193
    assert (await error(admin, "USE nowhere")).code == 1049
    sess = AdminSession(9, "admin", "127.0.0.1", read_only=False)
    await q(admin, "USE stats", sess)
    assert "stats_mysql_global" in [r[0] for r in await q(admin, "SHOW TABLES", sess)]


async def test_mysql_syntax_is_translated(admin: Admin) -> None:
    rows = await q(admin, "SELECT IF(port = 3306, 'writer', 'reader') FROM mysql_servers ORDER BY port")
    assert [r[0] for r in rows] == ["writer", "reader", "reader"]
    rows = await q(admin, 'SELECT hostname FROM mysql_servers WHERE comment = "primary"')
    assert rows == [("127.0.0.1",)]
    assert (await q(admin, "SELECT CONCAT(hostname, ':', port) FROM mysql_servers WHERE port = 3306")) == [
        ("127.0.0.1:3306",)]


async def test_sql_errors_become_mysql_errors(admin: Admin) -> None:
    assert (await error(admin, "SELEC 1")).code == 1064
    assert (await error(admin, "SELECT * FROM nosuch")).code == 1146
    assert (await error(admin, "SELECT nosuch FROM mysql_servers")).code == 1054
    dup = await error(admin, "INSERT INTO mysql_servers (hostgroup_id, hostname, port) VALUES (0, '127.0.0.1', 3306)")
    assert dup.code == 1062
    check = await error(admin, "UPDATE mysql_servers SET weight = -1")
    assert check.code == 4025 and "CHECK constraint failed" in check.message
    assert (await error(admin, "INSERT INTO mysql_servers (hostgroup_id) VALUES (5)")).code == 1048


async def test_read_only_layers_and_protected_tables(admin: Admin) -> None:
    for sql in ("INSERT INTO disk.mysql_servers (hostgroup_id, hostname) VALUES (5, 'x')",
                "UPDATE runtime_mysql_servers SET weight = 9",
                "DELETE FROM stats_mysql_global"):
        assert (await error(admin, sql)).code == 1036, sql
    for sql in ("DROP TABLE mysql_servers", "ALTER TABLE mysql_users ADD COLUMN x INT",
                "ATTACH DATABASE '/tmp/x.db' AS x", "VACUUM", "PRAGMA writable_schema = 1"):
        assert (await error(admin, sql)).code == 1227, sql
    # the operator's own scratch tables are fine
    await q(admin, "CREATE TABLE main.scratch AS SELECT * FROM mysql_servers")
    await q(admin, "DROP TABLE main.scratch")


async def test_stats_account_is_read_only_and_sees_stats_only(admin: Admin) -> None:
    assert await q(admin, "SELECT Variable_Value FROM stats_mysql_global WHERE Variable_Name = 'Questions'",
                   STATS) == [("0",)]
    assert (await error(admin, "SELECT * FROM mysql_servers", STATS)).code == 1142
    assert (await error(admin, "INSERT INTO mysql_users (username) VALUES ('x')", STATS)).code == 1142
    assert (await error(admin, "LOAD MYSQL SERVERS TO RUNTIME", STATS)).code == 1227
    assert (await error(admin, "SET mysql-max_connections = 5", STATS)).code == 1227
    assert (await error(admin, "SHOW ADMIN VARIABLES", STATS)).code == 1142  # admin-admin_credentials stays hidden
    assert not [r for r in await q(admin, "SHOW VARIABLES", STATS) if r[0].startswith("admin-")]
    assert (await error(admin, "EXPLAIN ROUTING 'SELECT 1'", STATS)).code == 1227


async def test_load_servers_keeps_live_server_objects(admin: Admin, proxy: Proxy) -> None:
    primary = proxy.hostgroups.find(0, "127.0.0.1", 3306)
    replica = proxy.hostgroups.find(1, "127.0.0.1", 3308)
    primary.connections_created = 41  # a live counter
    await q(admin, "UPDATE mysql_servers SET weight = 7, max_connections = 50 WHERE port = 3306")
    await q(admin, "DELETE FROM mysql_servers WHERE port = 3308")
    await q(admin, "INSERT INTO mysql_servers (hostgroup_id, hostname, port, status) VALUES (2, '10.0.0.9', 3306, "
                   "'OFFLINE_SOFT')")
    await q(admin, "LOAD MYSQL SERVERS TO RUNTIME")
    same = proxy.hostgroups.find(0, "127.0.0.1", 3306)
    assert same is primary and (same.weight, same.max_connections, same.connections_created) == (7, 50, 41)
    assert proxy.hostgroups.find(1, "127.0.0.1", 3308) is None
    assert proxy.hostgroups.find(2, "10.0.0.9", 3306).status == "OFFLINE_SOFT"
    assert replica not in proxy.hostgroups.servers()
    runtime = await q(admin, "SELECT hostgroup_id, hostname, port, status, weight FROM runtime_mysql_servers "
                             "ORDER BY hostgroup_id, port")
    assert runtime == [(0, "127.0.0.1", 3306, "ONLINE", 7), (1, "127.0.0.1", 3307, "ONLINE", 2),
                       (2, "10.0.0.9", 3306, "OFFLINE_SOFT", 1)]


async def test_invalid_rules_refused_as_a_whole(admin: Admin, proxy: Proxy) -> None:
    before = proxy.rules
    runtime = await q(admin, "SELECT * FROM runtime_mysql_query_rules")
    await q(admin, "INSERT INTO mysql_query_rules (rule_id, active, match_digest, destination_hostgroup, apply) "
                   "VALUES (5, 1, '^SELECT', 1, 1)")
    await q(admin, "INSERT INTO mysql_query_rules (rule_id, active, match_digest, destination_hostgroup, apply) "
                   "VALUES (6, 1, '^SELECT (', 1, 1)")
    err = await error(admin, "LOAD MYSQL QUERY RULES TO RUNTIME")
    assert "rule_id=6" in err.message and "match_digest" in err.message and "nothing changed" in err.message
    assert proxy.rules is before
    await q(admin, "UPDATE mysql_query_rules SET match_digest = '^SELECT x', destination_hostgroup = 42 "
                   "WHERE rule_id = 6")
    err = await error(admin, "LOAD MYSQL QUERY RULES TO RUNTIME")
    assert "rule_id=6" in err.message and "destination_hostgroup 42" in err.message
    assert proxy.rules is before
    assert await q(admin, "SELECT * FROM runtime_mysql_query_rules") == runtime
    await q(admin, "DELETE FROM mysql_query_rules WHERE rule_id = 6")
    await q(admin, "LOAD MYSQL QUERY RULES TO RUNTIME")
    assert proxy.rules is not before and 5 in proxy.rules.hits()


async def test_load_all_is_atomic(admin: Admin, proxy: Proxy) -> None:
    config, rules = proxy.config, proxy.rules
    await q(admin, "UPDATE mysql_servers SET weight = 9")
    await q(admin, "UPDATE global_variables SET variable_value = '999' WHERE variable_name = 'mysql-max_connections'")
    await q(admin, "UPDATE mysql_query_rules SET match_kind = 'reed' WHERE rule_id = 120")
    err = await error(admin, "LOAD ALL TO RUNTIME")
    assert "rule_id=120" in err.message and "match_kind" in err.message
    assert proxy.config is config and proxy.rules is rules
    assert all(s.weight != 9 for s in proxy.hostgroups.servers())


async def test_hostgroup_in_use_cannot_disappear(admin: Admin, proxy: Proxy) -> None:
    await q(admin, "DELETE FROM mysql_servers WHERE hostgroup_id = 1")
    err = await error(admin, "LOAD MYSQL SERVERS TO RUNTIME")
    assert "rule_id=115" in err.message or "rule_id=120" in err.message  # the split sends reads to hostgroup 1
    await q(admin, "DELETE FROM mysql_servers WHERE hostgroup_id = 0")
    err = await error(admin, "LOAD MYSQL SERVERS TO RUNTIME")
    assert "mysql_users row (username='app')" in err.message and "default_hostgroup" in err.message


async def test_users_and_variables(admin: Admin, proxy: Proxy) -> None:
    await q(admin, "INSERT INTO mysql_users (username, password, default_hostgroup) VALUES ('rep', 'x', 1)")
    await q(admin, "LOAD MYSQL USERS TO RUNTIME")
    assert proxy.user("rep") is not None and proxy.lookup_credential("rep") is not None
    await q(admin, "SET mysql-max_connections = '0'")
    err = await error(admin, "LOAD MYSQL VARIABLES TO RUNTIME")
    assert "mysql-max_connections" in err.message and "out of range" in err.message
    await q(admin, "SET mysql-max_connections = 123")
    await q(admin, "UPDATE global_variables SET variable_value = 'false' WHERE variable_name = 'mysql-multiplexing'")
    await q(admin, "LOAD MYSQL VARIABLES TO RUNTIME")
    assert proxy.vars.max_connections == 123 and proxy.vars.multiplexing is False
    await q(admin, "UPDATE global_variables SET variable_value = 'maybe' WHERE variable_name = 'mysql-multiplexing'")
    assert "expected true or false" in (await error(admin, "LOAD MYSQL VARIABLES TO RUNTIME")).message
    await q(admin, "INSERT INTO global_variables VALUES ('mysql-no_such_variable', '1')")
    await q(admin, "UPDATE global_variables SET variable_value = 'true' WHERE variable_name = 'mysql-multiplexing'")
    assert "unknown variable" in (await error(admin, "LOAD MYSQL VARIABLES TO RUNTIME")).message
    assert (await error(admin, "SET mysql-nope = 1")).code == 1193
    # SAVE ... TO MEMORY brings the runtime back
    await q(admin, "SAVE MYSQL VARIABLES TO MEMORY")
    assert await q(admin, "SELECT count(*) FROM global_variables WHERE variable_name = 'mysql-no_such_variable'") == [
        (0,)]


async def test_default_credentials_never_on_a_public_address(admin: Admin, proxy: Proxy) -> None:
    await q(admin, "SET admin-mysql_ifaces = '0.0.0.0:6032'")
    err = await error(admin, "LOAD ADMIN VARIABLES TO RUNTIME")
    assert "non-loopback" in err.message and "admin-admin_credentials" in err.message
    assert proxy.config.admin_variables.mysql_ifaces == "127.0.0.1:16032"
    await q(admin, "SET admin-admin_credentials = 'ops:Secr3t-long'")
    result = await q(admin, "LOAD ADMIN VARIABLES TO RUNTIME")
    assert "restarts" in result.info  # a new listener address needs a restart
    assert proxy.config.admin_variables.mysql_ifaces == "0.0.0.0:6032"


async def test_admin_credentials_change_at_runtime(admin: Admin) -> None:
    assert admin.lookup_credential("radmin") is None
    await q(admin, "SET admin-admin_credentials = 'admin:admin;radmin:s3cret'")
    await q(admin, "LOAD ADMIN VARIABLES TO RUNTIME")
    assert admin.lookup_credential("radmin") is not None and not admin.is_read_only("radmin")
    assert admin.is_read_only("stats")


async def test_save_to_disk_keeps_comments_and_reloads_the_same(admin: Admin, proxy: Proxy, files: Path) -> None:
    original = files.read_text()
    rules_file = files.parent / "rules" / "00-read-write-split.toml"
    original_rules = rules_file.read_text()
    await q(admin, "UPDATE mysql_servers SET weight = 5 WHERE port = 3307")
    await q(admin, "INSERT INTO mysql_servers (hostgroup_id, hostname, port, comment) VALUES (1, '127.0.0.1', 3309, "
                   "'replica 3')")
    await q(admin, "DELETE FROM mysql_servers WHERE port = 3308")
    await q(admin, "INSERT INTO mysql_replication_hostgroups (writer_hostgroup, reader_hostgroup) VALUES (0, 1)")
    await q(admin, "UPDATE mysql_users SET transaction_persistent = 0")
    await q(admin, "SET mysql-max_connections = 400")
    await q(admin, "UPDATE mysql_query_rules SET comment = 'reads to the readers' WHERE rule_id = 120")
    await q(admin, "INSERT INTO mysql_query_rules (rule_id, active, match_pattern, replace_pattern, apply) "
                   "VALUES (7, 1, '\\bFROM t1\\b', 'FROM t2', 0)")
    await q(admin, "LOAD ALL TO RUNTIME")
    result = await q(admin, "SAVE ALL TO DISK")
    assert "myrouter.toml" in result.info
    text = files.read_text()
    for line in original.splitlines():
        if line.lstrip().startswith("#"):
            assert line in text, line
    assert 'port = 3307\nweight = 5' in text
    assert 'address = "127.0.0.1"   # ProxySQL\'s spelling' in text
    assert "server_version = \"10.11.6-MariaDB\"   # what clients see" in text
    assert "max_connections = 400                # raised for the batch jobs" in text
    assert "transaction_persistent = 0   # keep transactions on the writer" in text
    assert "3308" not in text
    new_rules = rules_file.read_text()
    assert new_rules.replace('comment = "reads to the readers"', 'comment = "plain reads (SELECT, WITH ... SELECT, '
                             'TABLE, VALUES) go to the readers"') == original_rules  # the multi-line array intact
    admin_rules = (files.parent / "rules" / "admin.toml").read_text()
    assert "match_pattern = '\\bFROM t1\\b'" in admin_rules  # a regex is written as a literal string
    # the files now give the same runtime
    config = load_config(files)
    assert config.mysql_servers == proxy.config.mysql_servers
    assert runtime_users(config).mysql_users == proxy.config.mysql_users
    assert config.mysql_replication_hostgroups == proxy.config.mysql_replication_hostgroups
    assert config.mysql_variables == proxy.config.mysql_variables
    assert load_rules_for(config).rows() == proxy.rules.rows()
    assert await q(admin, "SELECT * FROM disk.mysql_servers ORDER BY 1, 3") == await q(
        admin, "SELECT * FROM runtime_mysql_servers ORDER BY 1, 3")
    # nothing left to write the second time
    assert "already hold" in (await q(admin, "SAVE ALL TO DISK")).info


async def test_save_refuses_what_the_proxy_could_not_start_from(admin: Admin, files: Path) -> None:
    before = files.read_text()
    await q(admin, "UPDATE mysql_users SET default_hostgroup = 77")
    err = await error(admin, "SAVE MYSQL USERS TO DISK")
    assert "nothing changed" in err.message and "default_hostgroup 77" in err.message
    assert files.read_text() == before


async def test_load_from_disk_reads_edited_files(admin: Admin, files: Path) -> None:
    files.write_text(files.read_text().replace("weight = 2", "weight = 6"))
    await q(admin, "LOAD MYSQL SERVERS FROM DISK")
    assert await q(admin, "SELECT weight FROM mysql_servers WHERE port = 3307") == [(6,)]
    assert await q(admin, "SELECT weight FROM disk.mysql_servers WHERE port = 3307") == [(6,)]
    files.write_text(files.read_text().replace("port = 3307", "port = 99999"))
    err = await error(admin, "LOAD MYSQL SERVERS FROM CONFIG")
    assert "myrouter.toml:" in err.message and "mysql_servers[1].port" in err.message


async def test_explain_routing(admin: Admin) -> None:
    rows = dict(await q(admin, "EXPLAIN ROUTING FOR USER 'app' 'SELECT c FROM sbtest1 WHERE id = 7 FOR UPDATE'"))
    assert rows["user"] == "app" and rows["schema"] == "test"
    assert rows["kind"] == "locking_read" and rows["hostgroup"] == "0 (rules)"
    assert rows["digest_text"] == "SELECT c FROM sbtest1 WHERE id = ? FOR UPDATE"
    assert rows["rule 100"].startswith("destination_hostgroup=0")
    rows = dict(await q(admin, "EXPLAIN ROUTING SELECT 1"))
    assert rows["hostgroup"] == "1 (rules)"
    assert (await error(admin, "EXPLAIN ROUTING FOR USER 'ghost' 'SELECT 1'")).code == 1105


async def test_stats_tables_from_snapshots(admin: Admin, proxy: Proxy) -> None:
    proxy.digest_stats.record(1, "test", "app", "127.0.0.1", 0x1234, "SELECT ?", 150, 0, 1)
    proxy.digest_stats.record(1, "test", "app", "127.0.0.1", 0x1234, "SELECT ?", 50, 0, 1)
    proxy.command_counters.record("SELECT", 150)
    rows = await q(admin, "SELECT hostgroup, digest, digest_text, count_star, sum_time, min_time, max_time, "
                          "sum_rows_sent FROM stats_mysql_query_digest")
    assert rows == [(1, "0x0000000000001234", "SELECT ?", 2, 200, 50, 150, 2)]
    assert (await q(admin, "SELECT count_star FROM stats_mysql_query_digest_reset")) == [(2,)]
    assert await q(admin, "SELECT count(*) FROM stats_mysql_query_digest") == [(0,)]
    assert await q(admin, "SELECT Total_cnt, cnt_500us FROM stats_mysql_commands_counters WHERE Command = 'SELECT'"
                   ) == [(1, 1)]
    assert await q(admin, "SELECT rule_id, hits FROM stats_mysql_query_rules") == [(100, 0), (110, 0), (115, 0), (120, 0)]
    pool = await q(admin, "SELECT hostgroup, srv_port, status, ConnUsed FROM stats_mysql_connection_pool "
                          "ORDER BY srv_port")
    assert pool == [(0, 3306, "ONLINE", 0), (1, 3307, "ONLINE", 0), (1, 3308, "ONLINE", 0)]
    assert await q(admin, "SELECT * FROM stats_mysql_users") == [("app", 0, 10000)]
    status = dict(await q(admin, "SHOW MYSQL STATUS"))
    assert status["Client_Connections_connected"] == 0 and "Query_Cache_Entries" in status
    assert await q(admin, "SELECT * FROM stats_mysql_processlist") == []


async def test_statement_time_limit(admin: Admin, monkeypatch) -> None:
    monkeypatch.setattr("myrouter.admin.core.STATEMENT_TIME_LIMIT", 0.2)
    err = await error(admin, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c")
    assert err.code == 1317
    assert await q(admin, "SELECT 1") == [(1,)]
    time.sleep(0.3)  # the limit applies to the statement running, not to what follows it
    assert "mysql_servers" in [r[0] for r in await q(admin, "SHOW TABLES")]
    assert isinstance(await q(admin, "SAVE MYSQL SERVERS TO MEMORY"), OkResult)


async def test_proxysql_helpers(admin: Admin, proxy: Proxy) -> None:
    proxy.query_cache.put(("app", "test", "SELECT 1"), b"x", 1000)
    result = await q(admin, "PROXYSQL FLUSH QUERY CACHE")
    assert result.affected_rows == 1 and len(proxy.query_cache) == 0
    assert isinstance(await q(admin, "PROXYSQL FLUSH LOGS"), OkResult)
    assert (await error(admin, "KILL 4242")).code == 1094


async def test_metrics_exposition_from_the_same_snapshots(admin: Admin, proxy: Proxy) -> None:
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    for us in (50, 300, 300, 20_000_000):
        proxy.command_counters.record("SELECT", us)
    proxy.counters.questions += 4
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(admin.metrics_registry).decode())}
    assert families["myrouter_questions"].type == "counter"
    assert [s.value for s in families["myrouter_questions"].samples if s.name == "myrouter_questions_total"] == [4]
    hist = {(s.name, s.labels.get("le")): s.value for s in families["myrouter_command_duration_seconds"].samples
            if s.labels["command"] == "SELECT"}
    assert hist[("myrouter_command_duration_seconds_bucket", "0.0001")] == 1
    assert hist[("myrouter_command_duration_seconds_bucket", "0.0005")] == 3
    assert hist[("myrouter_command_duration_seconds_bucket", "10.0")] == 3
    assert hist[("myrouter_command_duration_seconds_bucket", "+Inf")] == 4
    assert hist[("myrouter_command_duration_seconds_count", None)] == 4
    assert abs(hist[("myrouter_command_duration_seconds_sum", None)] - 20.00065) < 1e-9
    status = {s.labels["server"]: s.labels["status"] for s in families["myrouter_server_status"].samples}
    assert status == {"127.0.0.1:3306": "ONLINE", "127.0.0.1:3307": "ONLINE", "127.0.0.1:3308": "ONLINE"}
    assert {s.labels["rule_id"] for s in families["myrouter_query_rule_hits"].samples} == {"100", "110", "115", "120"}


async def test_admin_statements_reach_the_debug_log_without_their_literals(admin: Admin, caplog) -> None:
    # SQLite refuses MySQL's ON DUPLICATE KEY UPDATE: the statement is retried as sqlglot translates it,
    # and both attempts are logged at debug level, as digests
    caplog.set_level("DEBUG", logger="myrouter")
    sql = ("INSERT INTO mysql_users (username, password) VALUES ('dbg', 'TopSecret-1') "
           "ON DUPLICATE KEY UPDATE password = 'TopSecret-1'")
    err = await error(admin, sql)  # the translation fails too: SQLite's first error is the answer
    assert err.code == 1064
    assert "retrying" in caplog.text or "could not translate" in caplog.text  # the logging path was taken
    assert "TopSecret-1" not in caplog.text
