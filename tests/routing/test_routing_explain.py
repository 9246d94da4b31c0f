"""explain(): digest, classification and the rules' decision for one statement."""

from __future__ import annotations

from pathlib import Path

from myrouter.routing.classifier import Classifier
from myrouter.routing.digest import digest, format_digest
from myrouter.routing.explain import explain, format_explain
from myrouter.routing.rules import QueryRule, RuleSet, load_rules

SHIPPED = Path(__file__).resolve().parents[2] / "rules"


def test_explain_a_plain_read() -> None:
    rules = load_rules(SHIPPED, {0, 1})
    r = explain("SELECT c FROM sbtest1 WHERE id=4711", username="app", schemaname="sbtest",
                rules=rules, classifier=Classifier(), default_hostgroup=0)
    assert r.digest_text == "SELECT c FROM sbtest1 WHERE id=?"
    assert r.digest_hex == format_digest(digest("SELECT c FROM sbtest1 WHERE id=1")[1])
    assert r.classification.kind.label == "read"
    assert [m.rule_id for m in r.matched_rules] == [120]
    assert r.matched_rules[0].actions == {"destination_hostgroup": 1, "apply": 1}
    assert r.final_hostgroup == 1 and r.outcome == "route"
    text = format_explain(r)
    assert "digest_text: SELECT c FROM sbtest1 WHERE id=?" in text
    assert "kind:        read" in text
    assert "rule 120 [" in text and "00-read-write-split.toml" in text
    assert "hostgroup:   1 (from rules)" in text


def test_explain_does_not_count_hits() -> None:
    rules = load_rules(SHIPPED, {0, 1})
    explain("SELECT 1", username="app", schemaname=None, rules=rules, default_hostgroup=0)
    assert rules.hits() == {100: 0, 110: 0, 115: 0, 120: 0}


def test_explain_default_hostgroup_and_flags() -> None:
    rules = load_rules(SHIPPED, {0, 1})
    r = explain("INSERT INTO t (id) VALUES (LAST_INSERT_ID())", username="app", schemaname="shop",
                rules=rules, default_hostgroup=0)
    assert r.matched_rules == () and r.final_hostgroup == 0
    text = format_explain(r)
    assert "matched rules: none" in text
    assert "flags:       last_insert_id" in text
    assert "hostgroup:   0 (user's default_hostgroup)" in text


def test_explain_error_rewrite_and_set() -> None:
    rules = RuleSet([
        QueryRule(rule_id=1, active=1, match_pattern="old_t", replace_pattern="new_t", comment="rename"),
        QueryRule(rule_id=2, active=1, match_digest="^DROP", error_msg="no drops", apply=1),
    ])
    r = explain("SELECT * FROM old_t", username="u", schemaname=None, rules=rules, default_hostgroup=3)
    assert r.decision.rewritten_query == "SELECT * FROM new_t"
    text = format_explain(r)
    assert "rewritten:   SELECT * FROM new_t" in text and "# rename" in text
    r = explain("DROP TABLE t", username="u", schemaname=None, rules=rules, default_hostgroup=3)
    assert r.outcome == "error"
    assert "ERROR returned to the client: no drops" in format_explain(r)
    r = explain("SET time_zone = '+00:00'", username="u", schemaname=None, rules=rules, default_hostgroup=3)
    assert "set:         session time_zone = '+00:00'" in format_explain(r)


def test_rows_for_the_admin_interface() -> None:
    rules = load_rules(SHIPPED, {0, 1})
    r = explain("SELECT * FROM t FOR UPDATE", username="app", schemaname=None, rules=rules, default_hostgroup=0)
    rows = dict(r.rows())
    assert rows["kind"] == "locking_read"
    assert rows["tables"] == "t" and rows["flags"] == "locking"
    assert rows["rule 100"].startswith("destination_hostgroup=0")
    assert rows["hostgroup"] == "0 (rules)"
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in r.rows())
