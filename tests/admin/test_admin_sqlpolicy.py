"""The admin SQL allow-list (myrouter/admin/sqlpolicy.py) through the admin engine: what SQLite could do
beyond ProxySQL's tables is refused with ERR 1227 before it runs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from test_admin_engine import admin_without_rules, error, q

from myrouter.admin.core import Admin
from myrouter.admin.sqlpolicy import ALLOWED_FUNCTIONS, refusal


@pytest.fixture
def admin(tmp_path: Path) -> Admin:
    return admin_without_rules(tmp_path)


async def test_fts3_tokenizer_sequence_is_refused_before_it_runs(admin: Admin) -> None:
    # the crash: register a tokenizer at a made-up address, then use it
    err = await error(admin, "SELECT fts3_tokenizer('t', x'4141414141414141')")
    assert err.code == 1227 and "fts3_tokenizer" in err.message
    err = await error(admin, "CREATE VIRTUAL TABLE v USING fts3(a, tokenize=t)")
    assert err.code == 1227 and "VIRTUAL TABLE" in err.message
    # the one-argument form disclosed a process address
    assert (await error(admin, "SELECT hex(fts3_tokenizer('simple'))")).code == 1227
    assert (await error(admin, "select HEX(FTS3_TOKENIZER('simple'))")).code == 1227
    # still usable afterwards
    assert await q(admin, "SELECT COUNT(*) FROM mysql_servers") == [(3,)]


@pytest.mark.parametrize("sql", [
    "CREATE VIRTUAL TABLE v5 USING fts5(a)",
    "CREATE VIRTUAL TABLE r USING rtree(id, a, b)",
    "SELECT load_extension('/tmp/x.so')",
    "SELECT sqlite_compileoption_get(0)",
    "ATTACH DATABASE '/tmp/myrouter-admin-x.db' AS x",
    "/* a comment first */ VACUUM INTO '/tmp/myrouter-admin-x.db'",
    "VACUUM",
    "PRAGMA writable_schema = 1",
    "PRAGMA temp_store_directory = '/tmp'",
    "PRAGMA main.journal_mode",
    "ANALYZE",
    "SAVEPOINT a",
    "BEGIN IMMEDIATE",
    "CREATE TRIGGER t AFTER INSERT ON mysql_servers BEGIN SELECT 1; END",
    "CREATE TEMP TRIGGER t AFTER INSERT ON main.mysql_servers BEGIN SELECT 1; END",
    "SELECT * FROM mysql_servers WHERE fts3_tokenizer('simple') IS NOT NULL",
    "SELECT * FROM dbstat",
    "SELECT sql FROM sqlite_stmt",
    "SELECT * FROM pragma_compile_options",
])
async def test_outside_the_allow_list_is_refused(admin: Admin, sql: str) -> None:
    err = await error(admin, sql)
    assert err.code == 1227, (sql, err)
    assert not Path("/tmp/myrouter-admin-x.db").exists()


async def test_a_view_cannot_smuggle_a_refused_function(admin: Admin) -> None:
    await q(admin, "CREATE VIEW leak AS SELECT 1 AS one")
    assert await q(admin, "SELECT one FROM leak") == [(1,)]
    # the body is checked where the view is used (by SQLite itself, or the allow-list): refused there
    await q(admin, "CREATE VIEW leak2 AS SELECT hex(fts3_tokenizer('simple')) AS a")
    err = await error(admin, "SELECT * FROM leak2")
    assert err.code in (1105, 1227) and "fts3_tokenizer" in err.message


async def test_what_operators_and_guis_use_still_works(admin: Admin) -> None:
    rows = await q(admin, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5) "
                          "SELECT group_concat(x), max(x), upper('a'), json_valid('{}'), round(2.5), "
                          "datetime(0, 'unixepoch'), hex('A') FROM c")
    assert rows == [("1,2,3,4,5", 5, "A", 1, 3.0, "1970-01-01 00:00:00", "41")]
    assert (await q(admin, "SELECT CONCAT('a', 'b'), DATABASE(), CONNECTION_ID()")) == [("ab", "main", 1)]
    assert await q(admin, "SELECT name FROM pragma_table_info('mysql_servers') WHERE name = 'hostname'") == [
        ("hostname",)]
    assert len(await q(admin, "PRAGMA table_info(mysql_servers)")) > 5
    assert await q(admin, "SELECT value FROM json_each('[7, 8]')") == [(7,), (8,)]
    await q(admin, "CREATE TABLE scratch (a INT)")
    await q(admin, "CREATE INDEX scratch_a ON scratch (a)")
    await q(admin, "INSERT INTO scratch VALUES (1)")
    await q(admin, "DROP TABLE scratch")


async def test_values_are_bounded(admin: Admin) -> None:
    err = await error(admin, "SELECT length(randomblob(1000000000))")
    assert err.code == 1105 and "too big" in err.message
    assert await q(admin, "SELECT length(printf('%.*c', 100000000, 'x'))") == [(None,)]  # too big: NULL
    # a result set is bounded too (a recursive CTE makes millions of rows within the time limit)
    err = await error(admin, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000) "
                             "SELECT x, zeroblob(1000) FROM c")
    assert err.code == 1104 and "MiB" in err.message
    assert len(await q(admin, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000) "
                              "SELECT x, zeroblob(1000) FROM c")) == 10000


def test_registered_functions_are_allowed_and_unknown_ones_are_not() -> None:
    db = sqlite3.connect(":memory:")
    known = {r[0] for r in db.execute("PRAGMA function_list")}
    assert {"fts3_tokenizer", "load_extension", "fts5", "rtreenode"} <= known - ALLOWED_FUNCTIONS
    assert refusal(sqlite3.SQLITE_FUNCTION, None, "FTS3_TOKENIZER") is not None
    assert refusal(sqlite3.SQLITE_FUNCTION, None, "Upper") is None
    assert refusal(sqlite3.SQLITE_TRANSACTION, "BEGIN", None) is not None
    assert refusal(sqlite3.SQLITE_TRANSACTION, "BEGIN", None, internal=True) is None
    assert refusal(sqlite3.SQLITE_CREATE_VTABLE, "v", "fts3", internal=True) is not None


async def test_stats_account_counts_stats_rows_but_not_others(admin: Admin) -> None:
    from test_admin_engine import STATS

    # SQLite names no schema for COUNT(*): the stats tables are still the stats account's
    assert (await q(admin, "SELECT COUNT(*) > 10 FROM stats_mysql_global", STATS)) == [(1,)]
    assert (await error(admin, "SELECT COUNT(*) FROM mysql_servers", STATS)).code == 1142
    assert (await error(admin, "SELECT COUNT(*) FROM main.mysql_users", STATS)).code == 1142
