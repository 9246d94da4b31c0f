"""Loading rules from TOML files and rows; the shipped rule files."""

from __future__ import annotations

from pathlib import Path

import pytest

from myrouter.errors import ConfigError
from myrouter.routing.classifier import Classifier
from myrouter.routing.digest import digest
from myrouter.routing.rules import (
    COLUMNS,
    QueryRule,
    RuleContext,
    RuleSet,
    load_rules,
    parse_rules_file,
    rules_from_rows,
)

SHIPPED = Path(__file__).resolve().parents[2] / "rules"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def route(rs: RuleSet, sql: str, *, username: str = "app", schemaname: str = "shop", default: int = 0):
    text, h = digest(sql)
    cls = Classifier().classify(sql, h)
    d = rs.evaluate(RuleContext(username, schemaname, "127.0.0.1", None, None, 0, h, text, sql, cls))
    return d, d.hostgroup(default)


# --- the shipped files -------------------------------------------------------


def test_shipped_rules_load_with_the_writer_and_reader_hostgroups() -> None:
    rs = load_rules(SHIPPED, {0, 1})
    assert [r.rule_id for r in rs.active_rules] == [100, 110, 115, 120]
    assert all(r.comment for r in rs.rules), "every shipped rule is commented"


def test_examples_are_all_inactive_and_valid() -> None:
    rules = parse_rules_file(SHIPPED / "90-examples.toml")
    assert len(rules) >= 5
    assert all(r.active == 0 for r in rules)
    RuleSet(rules)  # compiles: regexes and rewrites are valid


@pytest.mark.parametrize(
    "sql, hostgroup, rule",
    [
        ("SELECT c FROM sbtest1 WHERE id=4711", 1, 120),
        ("select * from t", 1, 120),
        ("/* app */ SELECT * FROM t", 1, 120),
        ("WITH x AS (SELECT 1) SELECT * FROM x", 1, 120),
        ("(SELECT 1) UNION (SELECT 2)", 1, 120),
        ("SELECT * FROM t FOR UPDATE", 0, 100),
        ("SELECT * FROM t LOCK IN SHARE MODE", 0, 100),
        ("SELECT LAST_INSERT_ID()", 0, 110),
        ("SELECT FOUND_ROWS()", 0, 110),
        ("SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 10", 0, 110),
        ("SELECT GET_LOCK('x', 1)", 0, 110),
        ("SELECT @x", 0, 110),
        ("SELECT @n := @n + 1 FROM t", 0, 110),
        ("SELECT a INTO @a FROM t", 0, 110),
        ("SELECT * FROM t INTO OUTFILE '/tmp/t'", 0, 110),
        ("SELECT NEXTVAL(s)", 0, 110),
        ("SELECT @@warning_count", 0, 110),
        ("SELECT SLEEP(1)", 1, 120),  # harmless anywhere
        ("SELECT @@version", 1, 120),  # a system variable, not a user variable
        ("INSERT INTO t VALUES (1)", 0, None),
        ("UPDATE t SET a = 1", 0, None),
        ("SET autocommit = 0", 0, None),
        ("BEGIN", 0, None),
        ("START TRANSACTION READ ONLY", 1, 115),  # the whole transaction, on one reader
        ("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY", 1, 115),
        ("START TRANSACTION READ WRITE", 0, None),
        ("SHOW TABLES", 0, None),
        ("CALL p()", 0, None),
        ("garbage !!", 0, None),
        ("SELECT 1; DELETE FROM t", 0, None),
    ],
)
def test_shipped_read_write_split(sql: str, hostgroup: int, rule: int | None) -> None:
    rs = load_rules(SHIPPED, {0, 1})
    d, got = route(rs, sql)
    assert got == hostgroup
    assert d.matched_rules == ((rule,) if rule else ())


def _activated_examples() -> RuleSet:
    rows = [dict(r.to_row(), active=1) for r in parse_rules_file(SHIPPED / "90-examples.toml")]
    return rules_from_rows(rows + [r.to_row() for r in load_rules(SHIPPED).rules if r.rule_id >= 100], "examples")


def test_examples_do_what_their_comments_say() -> None:
    rs = _activated_examples()
    d, hg = route(rs, "SELECT amount FROM payments WHERE id = 1")
    assert hg == 0 and d.matched_rules == (50,)
    d, _ = route(rs, "DELETE FROM sessions")
    assert d.error_msg and d.matched_rules == (10,)
    d, _ = route(rs, "DELETE FROM sessions WHERE id = 3")
    assert d.error_msg is None
    d, hg = route(rs, "SELECT * FROM old_orders o JOIN old_orders p ON 1")
    assert d.rewritten_query == "SELECT * FROM orders o JOIN orders p ON 1" and hg == 1
    d, hg = route(rs, "SELECT option_value FROM wp_options WHERE option_name = 'siteurl' LIMIT 1")
    assert (d.cache_ttl, hg, d.matched_rules) == (5000, 1, (30,))
    d, _ = route(rs, "INSERT INTO audit_log VALUES (1, 'x')")
    assert d.mirror_hostgroup == 2
    d, hg = route(rs, "SELECT * FROM big_report", username="reporting")
    assert (d.matched_rules, hg, d.timeout) == ((60, 61), 1, 10000)


def test_a_file_of_comments_and_inactive_rules_loads(tmp_path: Path) -> None:
    write(tmp_path, "00-empty.toml", "# nothing here\n\n# [[mysql_query_rules]]\n# rule_id = 1\n")
    write(tmp_path, "10-inactive.toml", "[[mysql_query_rules]]\nrule_id = 5\nmatch_kind = 'read'\n")
    rs = load_rules(tmp_path, {0})
    assert len(rs) == 1 and rs.active_rules == ()


def test_files_are_read_in_name_order_but_rules_run_by_rule_id(tmp_path: Path) -> None:
    write(tmp_path, "20-b.toml", "[[mysql_query_rules]]\nrule_id = 1\nactive = 1\ndestination_hostgroup = 2\n")
    write(tmp_path, "10-a.toml", "[[mysql_query_rules]]\nrule_id = 2\nactive = 1\ndestination_hostgroup = 1\n")
    write(tmp_path, "notes.txt", "not a rules file")
    rs = load_rules(tmp_path, None)
    assert [r.rule_id for r in rs] == [1, 2]
    assert rs.rule(1).source == str(tmp_path / "20-b.toml") and rs.rule(1).line == 1
    d, _ = route(rs, "SELECT 1")
    assert d.matched_rules == (1, 2) and d.destination_hostgroup == 1


def test_list_values_and_all_columns_from_toml(tmp_path: Path) -> None:
    write(tmp_path, "r.toml", """
[[mysql_query_rules]]
rule_id = 9
active = true
username = "app"
schemaname = "shop"
flagIN = 0
client_addr = "10.%"
proxy_addr = "10.0.0.1"
proxy_port = 6033
digest = "0x00000000000000FF"
match_digest = 'a'
match_pattern = '(b)'
negate_match_pattern = 0
re_modifiers = "CASELESS"
flagOUT = 3
replace_pattern = '\\1'
destination_hostgroup = 1
cache_ttl = 100
cache_empty_result = 1
cache_timeout = 10
reconnect = 0
timeout = 5
retries = 1
delay = 2
next_query_flagIN = 4
mirror_flagOUT = 5
mirror_hostgroup = 1
error_msg = "e"
OK_msg = "o"
sticky_conn = 1
multiplex = 2
gtid_from_hostgroup = 0
log = 1
apply = 0
attributes = '{"k": 1}'
comment = "every column"
match_kind = ["read", "LOCKING_READ"]
match_tables = ["Shop.Orders", "payments"]
match_flags = "side_effect, locking"
causal_reads = "Session"
""")
    (rule,) = load_rules(tmp_path, {0, 1}).rules
    assert rule.active == 1 and rule.digest == 0xFF and rule.replace_pattern == "\\1"
    assert rule.match_kind == ("read", "locking_read")
    assert rule.match_tables == ("shop.orders", "payments")
    assert rule.match_flags == ("side_effect", "locking")
    assert rule.causal_reads == "session"
    assert set(rule.to_row()) == set(COLUMNS)


# --- load errors: file, line, key and rule_id --------------------------------


def load_error(tmp_path: Path, text: str, known: set[int] | None = None, name: str = "50-bad.toml") -> ConfigError:
    path = write(tmp_path, name, text)
    with pytest.raises(ConfigError) as info:
        load_rules(tmp_path, known)
    err = info.value
    assert err.file == str(path)
    return err


GOOD_HEAD = "[[mysql_query_rules]]\nrule_id = 1\nactive = 1\n\n"


def test_invalid_regex_names_file_line_key_and_rule_id(tmp_path: Path) -> None:
    err = load_error(tmp_path, GOOD_HEAD + "[[mysql_query_rules]]\nrule_id = 7\nactive = 1\nmatch_pattern = '(unclosed'\n")
    assert "rule_id 7" in err.message and "invalid regular expression" in err.message
    assert err.line == 8
    assert err.key == "mysql_query_rules[1].match_pattern"
    assert str(err).startswith(f"{err.file}:8: mysql_query_rules[1].match_pattern: rule_id 7:")


def test_unknown_column_suggests_the_right_one(tmp_path: Path) -> None:
    err = load_error(tmp_path, "[[mysql_query_rules]]\nrule_id = 3\ndestination_hostgrp = 1\n")
    assert "rule_id 3" in err.message and "unknown column 'destination_hostgrp'" in err.message
    assert "did you mean 'destination_hostgroup'" in err.message
    assert err.line == 3


def test_column_names_are_case_insensitive_like_sql(tmp_path: Path) -> None:
    write(tmp_path, "r.toml", "[[mysql_query_rules]]\nrule_id = 3\nactive = 1\nflagin = 0\nflagout = 2\n")
    (rule,) = load_rules(tmp_path).rules
    assert rule.flagOUT == 2
    err = load_error(tmp_path, "[[mysql_query_rules]]\nrule_id = 4\nflagOUT = 1\nflagout = 2\n", name="s.toml")
    assert "given twice" in err.message


@pytest.mark.parametrize(
    "line, message",
    [
        ('destination_hostgroup = "1"', "destination_hostgroup must be an integer, not a string"),
        ("destination_hostgroup = true", "must be an integer, not a boolean"),
        ("destination_hostgroup = -1", "must not be negative"),
        ("active = 2", "active must be 0 or 1"),
        ("apply = 'yes'", "apply must be an integer"),
        ("multiplex = 3", "multiplex must be 0, 1 or 2"),
        ("retries = 1001", "retries must be between 0 and 1000"),
        ("cache_ttl = 0", "cache_ttl must be a positive"),
        ("proxy_port = 70000", "proxy_port must be between 1 and 65535"),
        ("digest = 'abc'", "digest: not a digest"),
        ("match_pattern = 5", "match_pattern must be a string"),
        ("match_kind = 'reads'", "match_kind: unknown kind 'reads'"),
        ("match_kind = ['read', 3]", "match_kind must be a list of strings"),
        ("match_kind = []", "match_kind is empty"),
        ("match_flags = ['locked']", "match_flags: unknown flag 'locked'"),
        ("match_tables = ['a.b.c']", "is not a table name"),
        ("causal_reads = 'always'", "causal_reads must be one of off, session, global"),
        ("re_modifiers = 'CASELESS,DOTALL'", "unknown modifier 'DOTALL'"),
        ("attributes = '{not json'", "attributes must be JSON"),
        ("replace_pattern = 'x'", "replace_pattern needs a match_pattern"),
        ("comment = ['a']", "comment must be a string"),
        ("flagIN = 1.5", "flagIN must be an integer"),
    ],
)
def test_wrong_values(tmp_path: Path, line: str, message: str) -> None:
    active = "" if line.startswith("active") else "active = 1"
    err = load_error(tmp_path, f"[[mysql_query_rules]]\nrule_id = 12\n{active}\n{line}\n")
    assert "rule_id 12" in err.message
    assert message in err.message
    assert err.line == 4


def test_unknown_hostgroups_are_refused_for_active_rules(tmp_path: Path) -> None:
    err = load_error(tmp_path, "[[mysql_query_rules]]\nrule_id = 5\nactive = 1\ndestination_hostgroup = 7\n", {0, 1})
    assert "rule_id 5" in err.message and "destination_hostgroup 7 is not a configured hostgroup" in err.message
    assert err.line == 4 and err.key == "mysql_query_rules[0].destination_hostgroup"
    err = load_error(tmp_path, "[[mysql_query_rules]]\nrule_id = 5\nactive = 1\nmirror_hostgroup = 9\n", {0, 1})
    assert "mirror_hostgroup 9" in err.message
    # without known hostgroups, or for an inactive rule, there is nothing to check against
    write(tmp_path, "50-bad.toml", "[[mysql_query_rules]]\nrule_id = 5\nactive = 0\ndestination_hostgroup = 7\n")
    assert len(load_rules(tmp_path, {0, 1})) == 1
    assert len(load_rules(tmp_path, None)) == 1


def test_duplicate_rule_id_across_files_names_both(tmp_path: Path) -> None:
    first = write(tmp_path, "10-a.toml", "[[mysql_query_rules]]\nrule_id = 3\n")
    err = load_error(tmp_path, "# x\n[[mysql_query_rules]]\nrule_id = 3\n", name="20-b.toml")
    assert "rule_id 3 is defined twice" in err.message
    assert f"{first}:1" in err.message
    assert err.line == 3 and err.key == "mysql_query_rules[0].rule_id"


def test_missing_rule_id(tmp_path: Path) -> None:
    err = load_error(tmp_path, GOOD_HEAD + "[[mysql_query_rules]]\nactive = 1\n")
    assert "needs a rule_id" in err.message and err.line == 5


def test_bad_rule_id(tmp_path: Path) -> None:
    err = load_error(tmp_path, "[[mysql_query_rules]]\nrule_id = 0\n")
    assert "rule_id must be a positive integer" in err.message


def test_unknown_table_and_wrong_shape(tmp_path: Path) -> None:
    err = load_error(tmp_path, "[[mysql_query_rule]]\nrule_id = 1\n")
    assert "unknown table or key 'mysql_query_rule'" in err.message and err.line == 1
    err = load_error(tmp_path, "[mysql_query_rules]\nrule_id = 1\n")
    assert "write [[mysql_query_rules]]" in err.message


def test_invalid_toml_has_a_line(tmp_path: Path) -> None:
    err = load_error(tmp_path, GOOD_HEAD + "rule_id = = 3\n")
    assert "invalid TOML" in err.message and err.line == 5


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_rules(tmp_path / "nope")


# --- rows (admin interface) ---------------------------------------------------


def test_rules_from_rows_accepts_nulls_and_text_forms() -> None:
    rows = [
        {"rule_id": 1, "active": 1, "username": None, "match_kind": "read,locking_read", "digest": None,
         "destination_hostgroup": 1, "apply": 1, "match_tables": None},
    ]
    rs = rules_from_rows(rows, "runtime")
    rule = rs.rule(1)
    assert rule.match_kind == ("read", "locking_read") and rule.username is None and rule.source == "runtime"


def test_rules_from_rows_errors_name_source_and_rule_id() -> None:
    with pytest.raises(ConfigError) as info:
        rules_from_rows([{"rule_id": 1}, {"rule_id": 2, "match_digest": "("}], "admin:mysql_query_rules")
    err = info.value
    assert err.file == "admin:mysql_query_rules"
    assert "rule_id 2" in err.message and err.key == "mysql_query_rules[1].match_digest"
    with pytest.raises(ConfigError, match="not a configured hostgroup"):
        rules_from_rows([{"rule_id": 1, "active": 1, "destination_hostgroup": 3}], "x", {0})
    with pytest.raises(ConfigError, match="must be a table of columns"):
        rules_from_rows(["rule_id=1"], "x")  # type: ignore[list-item]


def test_rows_round_trip() -> None:
    rs = load_rules(SHIPPED)
    again = rules_from_rows(rs.rows(), "copy")
    strip = lambda r: {k: v for k, v in r.to_row().items()}  # noqa: E731
    assert [strip(r) for r in again.rules] == [strip(r) for r in rs.rules]
    digest_rule = QueryRule(rule_id=1, digest=0xAB)
    assert rules_from_rows([digest_rule.to_row()], "x").rule(1).digest == 0xAB
