"""SQL text helpers: statement splitting, @@variable substitution, MySQL -> SQLite translation."""

from __future__ import annotations

import sqlite3

import pytest

from myrouter.admin.sqltext import UnknownVariable, split_statements, sql_literal, substitute_variables, translate


def test_split_statements_respects_quotes_and_comments() -> None:
    sql = ("INSERT INTO t VALUES ('a;b', \"c;d\", `e;f`); -- comment; here\n"
           "SELECT 1;; /* x; y */ SELECT 'it''s;' ; # tail; comment\n  ")
    assert split_statements(sql) == [
        "INSERT INTO t VALUES ('a;b', \"c;d\", `e;f`)",
        "-- comment; here\nSELECT 1",
        "/* x; y */ SELECT 'it''s;'",
        "# tail; comment",
    ]


def test_split_statements_backslash_escapes_and_unterminated() -> None:
    assert split_statements(r"SELECT 'a\';b'; SELECT 2") == [r"SELECT 'a\';b'", "SELECT 2"]
    assert split_statements("SELECT 'open; SELECT 2") == ["SELECT 'open; SELECT 2"]
    assert split_statements("  ;  ") == []


VARS = {"version": "10.11.6-MariaDB", "version_comment": "(myrouter Admin Module)", "max_allowed_packet": 67108864,
        "autocommit": 1, "sql_mode": None}


def lookup(name: str):
    if name not in VARS:
        raise UnknownVariable(name)
    return VARS[name]


@pytest.mark.parametrize(("sql", "expected"), [
    ("select @@version_comment limit 1", "select '(myrouter Admin Module)' AS \"@@version_comment\" limit 1"),
    ("SELECT @@session.max_allowed_packet, @@GLOBAL.autocommit AS ac",
     "SELECT 67108864 AS \"@@session.max_allowed_packet\", 1 AS ac"),
    ("SELECT IFNULL(@@sql_mode, '')", "SELECT IFNULL(NULL, '')"),
    ("SELECT '@@version', @@version FROM t", "SELECT '@@version', '10.11.6-MariaDB' AS \"@@version\" FROM t"),
    ("SELECT @@version + 0", "SELECT '10.11.6-MariaDB' + 0"),
    ("SELECT 1", "SELECT 1"),
])
def test_substitute_variables(sql: str, expected: str) -> None:
    assert substitute_variables(sql, lookup) == expected


def test_substituted_statement_runs_on_sqlite_with_mysql_column_names() -> None:
    sql = substitute_variables("SELECT @@version, @@autocommit", lookup)
    cur = sqlite3.connect(":memory:").execute(sql)
    assert [d[0] for d in cur.description] == ["@@version", "@@autocommit"]
    assert cur.fetchall() == [("10.11.6-MariaDB", 1)]


def test_unknown_variable() -> None:
    with pytest.raises(UnknownVariable) as info:
        substitute_variables("SELECT @@nope", lookup)
    assert info.value.args[0] == "nope"


def test_sql_literal() -> None:
    assert [sql_literal(v) for v in (None, True, 3, 1.5, "it's")] == ["NULL", "1", "3", "1.5", "'it''s'"]


@pytest.mark.parametrize(("mysql", "sqlite_fragment"), [
    ('SELECT * FROM mysql_servers WHERE hostname = "127.0.0.1"', "hostname = '127.0.0.1'"),
    ("SELECT IF(status = 'ONLINE', 1, 0) FROM mysql_servers", "IIF(status = 'ONLINE', 1, 0)"),
    ("SELECT * FROM mysql_servers LIMIT 2, 5", "LIMIT 5 OFFSET 2"),
    ("SELECT GROUP_CONCAT(hostname SEPARATOR ';') FROM mysql_servers", "GROUP_CONCAT(hostname, ';')"),
])
def test_translate_mysql_to_sqlite(mysql: str, sqlite_fragment: str) -> None:
    out = translate(mysql)
    assert out is not None and sqlite_fragment in out


def test_translated_statements_run_on_sqlite() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE mysql_servers (hostgroup_id INT, hostname VARCHAR, port INT, status VARCHAR)")
    db.execute("INSERT INTO mysql_servers VALUES (0, '127.0.0.1', 3306, 'ONLINE'), (1, '10.0.0.1', 3306, 'SHUNNED')")
    for mysql in ("SELECT IF(status = 'ONLINE', 1, 0) AS up FROM mysql_servers ORDER BY hostgroup_id",
                  "SELECT GROUP_CONCAT(hostname SEPARATOR ';') FROM mysql_servers"):
        with pytest.raises(sqlite3.OperationalError):
            db.execute(mysql)
        translated = translate(mysql)
        assert translated is not None
        db.execute(translated).fetchall()


def test_translate_gives_up_cleanly() -> None:
    assert translate("SELECT 1") is None  # nothing to change
    assert translate("SELECT FROM WHERE (((") is None  # sqlglot cannot parse it either
    assert translate("SELECT 1; SELECT 2") is None  # several statements
