"""proxyids: reading KILL, CONNECTION_ID() and PROCESSLIST in statement text (pure)."""

from __future__ import annotations

import pytest

from myrouter.frontend.proxyids import (
    Kill,
    check_dynamic_kill,
    ProcessRow,
    global_privileges,
    host_matches,
    mask_sql,
    parse_kill,
    processlist_table,
    rewrite_connection_id,
    rewrite_processlist,
    show_processlist,
)
from myrouter.protocol.errors import MySQLError


@pytest.mark.parametrize("sql, expected", [
    ("KILL 5", Kill(False, thread_id=5)),
    ("/* c */ KILL 5 -- trailing", Kill(False, thread_id=5)),
    ("kill hard connection 5;", Kill(False, thread_id=5)),
    ("KILL SOFT QUERY 5 /* t */", Kill(True, thread_id=5)),
    ("# c\nKILL QUERY 5", Kill(True, thread_id=5)),
    ("KILL USER app", Kill(False, user="app")),
    ("KILL QUERY USER 'app'", Kill(True, user="app")),
    ("KILL CONNECTION USER 'app'@'%'", Kill(False, user="app", host="%")),
    ("KILL USER `a``b`@localhost", Kill(False, user="a`b", host="localhost")),
    ("KILL USER CURRENT_USER()", Kill(False, current_user=True)),
])
def test_kill_forms(sql, expected):
    assert parse_kill(sql) == expected


@pytest.mark.parametrize("sql", ["KILL QUERY ID 7", "SELECT 1; KILL 5", "KILL 5; KILL 6", "/*!KILL 5*/", "KILL foo",
                                 "KILL 5 6"])
def test_kill_forms_refused(sql):
    with pytest.raises(MySQLError) as ei:
        parse_kill(sql)
    assert ei.value.code == 1235


def test_host_patterns():
    assert host_matches(None, "10.0.0.1") and host_matches("%", "10.0.0.1")
    assert host_matches("10.0.0.%", "10.0.0.1") and not host_matches("10.0.0.%", "10.0.1.1")
    assert host_matches("LOCALHOST", "localhost")


def test_mask_keeps_positions_and_blanks_literals_and_comments():
    sql = "SELECT 'CONNECTION_ID()', \"x\" /* CONNECTION_ID() */ -- y\n, `CONNECTION_ID`"
    masked = mask_sql(sql)
    assert len(masked) == len(sql) and "CONNECTION_ID()" not in masked and "`CONNECTION_ID`" in masked


@pytest.mark.parametrize("sql, expected", [
    ("SELECT CONNECTION_ID()", "SELECT 7 AS `CONNECTION_ID()`"),
    ("select connection_id() as c, now()", "select (7) as c, now()"),
    ("SELECT CONNECTION_ID()c", "SELECT (7)c"),
    ("SELECT 'CONNECTION_ID()', CONNECTION_ID() + 1 FROM t WHERE id = CONNECTION_ID()",
     "SELECT 'CONNECTION_ID()', (7) + 1 FROM t WHERE id = (7)"),
    ("SELECT CONCAT('a', CONNECTION_ID()), (SELECT CONNECTION_ID()) FROM dual",
     "SELECT CONCAT('a', (7)), (SELECT 7 AS `CONNECTION_ID()`) FROM dual"),
    ("SELECT DISTINCT CONNECTION_ID() FROM t", "SELECT DISTINCT 7 AS `CONNECTION_ID()` FROM t"),
    ("SELECT /* CONNECTION_ID() */ 1", None),
])
def test_connection_id_rewrite(sql, expected):
    assert rewrite_connection_id(sql, 7) == expected


def test_show_processlist():
    assert show_processlist("/* a */ SHOW full PROCESSLIST;") is True
    assert show_processlist("show processlist") is False
    assert show_processlist("SHOW PROCESSLIST; SELECT 1") is None


@pytest.mark.parametrize("sql, schema, expected", [
    ("SELECT * FROM information_schema.PROCESSLIST WHERE ID = 5", "test",
     "SELECT * FROM (T) AS PROCESSLIST WHERE ID = 5"),
    ("SELECT p.ID FROM `information_schema`.`PROCESSLIST` p", "test", "SELECT p.ID FROM (T) p"),
    ("SELECT 1 FROM t JOIN information_schema.processlist AS x ON 1", "test", "SELECT 1 FROM t JOIN (T) AS x ON 1"),
    ("SELECT * FROM PROCESSLIST", "information_schema", "SELECT * FROM (T) AS PROCESSLIST"),
    ("SELECT * FROM PROCESSLIST", "test", None),  # test.PROCESSLIST: a table of the user's own
    ("SHOW COLUMNS FROM information_schema.PROCESSLIST", "test", None),
    ("SELECT 'information_schema.PROCESSLIST'", "test", None),
])
def test_processlist_rewrite(sql, schema, expected):
    assert rewrite_processlist(sql, "(T)", schema) == expected


def test_show_processlist_among_statements_becomes_a_select():
    out = rewrite_processlist("SHOW FULL PROCESSLIST; SELECT 1", "(T)", None)
    assert out.startswith(" SELECT ID AS Id,") and "FROM (T) AS PROCESSLIST ORDER BY ID; SELECT 1" in out


@pytest.mark.parametrize("sql", ["CREATE VIEW v AS SELECT * FROM information_schema.PROCESSLIST",
                                 "INSERT INTO t SELECT ID FROM information_schema.PROCESSLIST"])
def test_processlist_in_other_statements_is_refused(sql):
    with pytest.raises(MySQLError) as ei:
        rewrite_processlist(sql, "(T)", "test")
    assert ei.value.code == 1235


def test_processlist_table_uses_hex_literals():
    table = processlist_table([ProcessRow(3, "app", "h:1", "test", "Query", 1500, "executing", "SELECT 'x\\'"),
                               ProcessRow(4, "app", "h:2", None, "Sleep", 0, "", None)])
    assert "'x" not in table and table.startswith("(SELECT 3 AS `ID`,") and " UNION ALL SELECT 4, " in table


def test_global_privileges():
    grants = ["GRANT ALL PRIVILEGES ON *.* TO `app`@`%` IDENTIFIED BY PASSWORD '*0'",
              "GRANT SELECT ON `test`.* TO `x`@`%`", "GRANT PROCESS, CONNECTION ADMIN ON *.* TO `a`@`%`",
              "GRANT USAGE ON *.* TO `b`@`%`"]
    assert global_privileges(grants) == {"ALL PRIVILEGES", "PROCESS", "CONNECTION ADMIN", "USAGE"}
    assert global_privileges(grants[1:2]) == frozenset()


@pytest.mark.parametrize("sql", ["PREPARE s FROM 'KILL 5'", "EXECUTE IMMEDIATE \"/* x */ kill user app\""])
def test_kill_in_dynamic_sql_is_refused(sql):
    with pytest.raises(MySQLError) as ei:
        check_dynamic_kill(sql)
    assert ei.value.code == 1235


def test_other_dynamic_sql_passes():
    check_dynamic_kill("PREPARE s FROM 'SELECT skill FROM t'")
    check_dynamic_kill("EXECUTE IMMEDIATE CONCAT('KI', 'LL 5')")  # not visible in the text: documented
