"""The admin command parser: ProxySQL's LOAD/SAVE grammar with its synonyms, and the other admin statements."""

from __future__ import annotations

import pytest

from myrouter.admin.commands import (
    MODULES,
    CommandError,
    ExplainRouting,
    Kill,
    LoadSave,
    ProxySQLCommand,
    SetIgnored,
    SetVariable,
    Show,
    TransactionNoop,
    Use,
    parse_command,
    parse_string_literal,
)

# (statement, source layer, target layer), the synonyms as ProxySQL documents them
DIRECTIONS = [
    ("LOAD MYSQL USERS TO RUNTIME", "memory", "runtime"),
    ("LOAD MYSQL USERS TO RUN", "memory", "runtime"),
    ("LOAD MYSQL USERS FROM MEMORY", "memory", "runtime"),
    ("LOAD MYSQL USERS FROM MEM", "memory", "runtime"),
    ("SAVE MYSQL USERS TO DISK", "memory", "disk"),
    ("SAVE MYSQL USERS FROM MEMORY", "memory", "disk"),
    ("SAVE MYSQL USERS FROM MEM", "memory", "disk"),
    ("SAVE MYSQL USERS TO MEMORY", "runtime", "memory"),
    ("SAVE MYSQL USERS TO MEM", "runtime", "memory"),
    ("SAVE MYSQL USERS FROM RUNTIME", "runtime", "memory"),
    ("SAVE MYSQL USERS FROM RUN", "runtime", "memory"),
    ("LOAD MYSQL USERS TO MEMORY", "disk", "memory"),
    ("LOAD MYSQL USERS TO MEM", "disk", "memory"),
    ("LOAD MYSQL USERS FROM DISK", "disk", "memory"),
    ("LOAD MYSQL USERS FROM CONFIG", "disk", "memory"),
]


@pytest.mark.parametrize(("sql", "source", "target"), DIRECTIONS)
def test_load_save_directions_and_synonyms(sql: str, source: str, target: str) -> None:
    cmd = parse_command(sql)
    assert isinstance(cmd, LoadSave)
    assert (cmd.modules, cmd.source, cmd.target) == (("MYSQL USERS",), source, target)


@pytest.mark.parametrize("module", list(MODULES))
def test_every_module(module: str) -> None:
    cmd = parse_command(f"LOAD {module} TO RUNTIME")
    assert isinstance(cmd, LoadSave) and cmd.modules == (module,)


def test_case_whitespace_semicolon_and_comments_do_not_matter() -> None:
    cmd = parse_command("  /* deploy */ load   mysql\n query \t rules   to runtime ;  ")
    assert isinstance(cmd, LoadSave)
    assert cmd.modules == ("MYSQL QUERY RULES",) and (cmd.source, cmd.target) == ("memory", "runtime")
    assert cmd.text == "LOAD MYSQL QUERY RULES TO RUNTIME"


def test_all_covers_every_module() -> None:
    load = parse_command("LOAD ALL TO RUNTIME")
    save = parse_command("SAVE ALL TO DISK")
    assert isinstance(load, LoadSave) and isinstance(save, LoadSave)
    assert set(load.modules) == set(MODULES) == set(save.modules)
    assert (save.source, save.target) == ("memory", "disk")


@pytest.mark.parametrize(("sql", "fragment"), [
    ("LOAD MYSQL FOO TO RUNTIME", "unknown module"),
    ("LOAD MYSQL USERS TO DISK", "not a valid direction"),
    ("SAVE MYSQL USERS FROM DISK", "not a valid direction"),
    ("SAVE MYSQL USERS TO RUNTIME", "not a valid direction"),
    ("LOAD MYSQL USERS", "expected LOAD|SAVE"),
    ("SAVE", "expected LOAD|SAVE"),
])
def test_bad_load_save_is_an_error_not_sql(sql: str, fragment: str) -> None:
    with pytest.raises(CommandError, match=fragment):
        parse_command(sql)


def test_load_data_is_left_to_sqlite() -> None:
    assert parse_command("LOAD DATA INFILE 'x' INTO TABLE t") is None


@pytest.mark.parametrize("sql", [
    "SELECT * FROM mysql_servers",
    "INSERT INTO mysql_query_rules (rule_id) VALUES (1)",
    "UPDATE global_variables SET variable_value='1'",
    "DELETE FROM mysql_users",
    "EXPLAIN QUERY PLAN SELECT 1",
    "EXPLAIN SELECT 1",
    "SAVEPOINT a",
    "",
    "  ;  ",
])
def test_plain_sql_is_not_a_command(sql: str) -> None:
    assert parse_command(sql) is None


def test_explain_routing_quoted() -> None:
    cmd = parse_command("EXPLAIN ROUTING 'SELECT * FROM t WHERE a = ''x'''")
    assert cmd == ExplainRouting("SELECT * FROM t WHERE a = 'x'", None, None)


def test_explain_routing_with_user_and_schema() -> None:
    cmd = parse_command("explain routing for user 'app' schema 'shop' \"SELECT 1 FOR UPDATE\";")
    assert cmd == ExplainRouting("SELECT 1 FOR UPDATE", "app", "shop")
    assert parse_command("EXPLAIN ROUTING USER app SCHEMA `my db` SELECT 1") == ExplainRouting("SELECT 1", "app", "my db")


def test_explain_routing_unquoted_statement() -> None:
    assert parse_command("EXPLAIN ROUTING SELECT c FROM sbtest1 WHERE id=1") == ExplainRouting(
        "SELECT c FROM sbtest1 WHERE id=1")


@pytest.mark.parametrize(("sql", "fragment"), [
    ("EXPLAIN ROUTING", "needs a statement"),
    ("EXPLAIN ROUTING FOR USER 'app'", "needs a statement"),
    ("EXPLAIN ROUTING 'SELECT 1", "unterminated"),
    ("EXPLAIN ROUTING 'SELECT 1' extra", "unexpected text"),
    ("EXPLAIN ROUTING ''", "empty"),
])
def test_explain_routing_errors(sql: str, fragment: str) -> None:
    with pytest.raises(CommandError, match=fragment):
        parse_command(sql)


def test_proxysql_helpers() -> None:
    assert parse_command("PROXYSQL FLUSH QUERY CACHE") == ProxySQLCommand("FLUSH QUERY CACHE")
    assert parse_command("proxysql  flush logs;") == ProxySQLCommand("FLUSH LOGS")
    with pytest.raises(CommandError, match="not supported"):
        parse_command("PROXYSQL RESTART")


def test_kill() -> None:
    assert parse_command("KILL 12") == Kill(12, False)
    assert parse_command("kill connection 12") == Kill(12, False)
    assert parse_command("KILL QUERY 7") == Kill(7, True)
    with pytest.raises(CommandError):
        parse_command("KILL everyone")


@pytest.mark.parametrize(("sql", "expected"), [
    ("SHOW TABLES", Show("tables")),
    ("show tables from stats", Show("tables", schema="stats")),
    ("SHOW TABLES IN `disk` LIKE 'mysql%'", Show("tables", schema="disk", like="mysql%")),
    ("SHOW DATABASES", Show("databases")),
    ("SHOW SCHEMAS", Show("databases")),
    ("SHOW CREATE TABLE mysql_servers", Show("create_table", table="mysql_servers")),
    ("SHOW CREATE TABLE disk.`mysql_servers`", Show("create_table", schema="disk", table="mysql_servers")),
    ("SHOW FULL PROCESSLIST", Show("processlist", full=True)),
    ("SHOW PROCESSLIST", Show("processlist")),
    ("SHOW MYSQL VARIABLES", Show("mysql_variables")),
    ("SHOW ADMIN VARIABLES", Show("admin_variables")),
    ("SHOW MYSQL STATUS", Show("mysql_status")),
    ("SHOW VARIABLES LIKE 'lower_case_%'", Show("variables", like="lower_case_%")),
    ("SHOW SESSION VARIABLES LIKE \"sql_mode\"", Show("variables", like="sql_mode")),
    ("SHOW GLOBAL STATUS", Show("status")),
    ("SHOW WARNINGS", Show("warnings")),
    ("SHOW WARNINGS LIMIT 1", Show("warnings")),
    ("SHOW ENGINES", Show("engines")),
    ("SHOW CHARACTER SET LIKE 'utf8%'", Show("charset", like="utf8%")),
    ("SHOW COLLATION", Show("collation")),
])
def test_show(sql: str, expected: Show) -> None:
    assert parse_command(sql) == expected


def test_unknown_show_is_an_error() -> None:
    with pytest.raises(CommandError, match="unsupported SHOW"):
        parse_command("SHOW SLAVE STATUS")


def test_set() -> None:
    assert parse_command("SET mysql-max_connections = 100") == SetVariable("mysql-max_connections", "100")
    assert parse_command("SET admin-admin_credentials='admin:x;radmin:y'") == SetVariable(
        "admin-admin_credentials", "admin:x;radmin:y")
    assert parse_command("SET MYSQL-Multiplexing = \"false\"") == SetVariable("mysql-multiplexing", "false")
    for sql in ("SET NAMES utf8mb4", "SET autocommit=1", "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
                "SET character_set_results = NULL", "set @a = 1"):
        assert parse_command(sql) == SetIgnored(), sql
    with pytest.raises(CommandError, match="quote the value"):
        parse_command("SET mysql-server_version = 8.0 foo")


def test_use_and_transactions() -> None:
    assert parse_command("USE stats") == Use("stats")
    assert parse_command("use `disk`;") == Use("disk")
    assert parse_command("BEGIN") == TransactionNoop("BEGIN")
    assert parse_command("start transaction") == TransactionNoop("START TRANSACTION")
    assert parse_command("ROLLBACK TO SAVEPOINT a") is None


def test_string_literals() -> None:
    assert parse_string_literal(r"'a\'b''c\n'") == ("a'b'c\n", 11)
    assert parse_string_literal('"x""y" tail') == ('x"y', 6)
    with pytest.raises(CommandError):
        parse_string_literal("'open")
