"""mysql_query_rules semantics: filters, chains, actions, rewriting, hit counters."""

from __future__ import annotations

import pytest

from myrouter.errors import ConfigError
from myrouter.routing.classifier import classify_statement
from myrouter.routing.digest import digest, format_digest
from myrouter.routing.rules import QueryRule, RouteDecision, RuleContext, RuleSet, rules_from_rows


def R(rule_id: int, **kw) -> QueryRule:  # noqa: N802
    kw.setdefault("active", 1)
    return QueryRule(rule_id=rule_id, **kw)


def ctx(sql: str, *, classified: bool = True, **kw) -> RuleContext:
    text, h = digest(sql)
    values = dict(
        username="app", schemaname="shop", client_addr="10.0.0.5", proxy_addr="10.0.0.1", proxy_port=6033,
        flag_in=0, digest_hash=h, digest_text=text, query=sql,
        classification=classify_statement(sql) if classified else None,
    )
    values.update(kw)
    return RuleContext(**values)


def hg(rules: list[QueryRule], sql: str, **kw) -> int | None:
    return RuleSet(rules).evaluate(ctx(sql, **kw)).destination_hostgroup


# --- order, active, apply ----------------------------------------------------


def test_rules_run_in_rule_id_order_and_later_actions_override() -> None:
    rs = RuleSet([R(20, destination_hostgroup=2), R(10, destination_hostgroup=1)])
    d = rs.evaluate(ctx("SELECT 1"))
    assert d.matched_rules == (10, 20)
    assert d.destination_hostgroup == 2


def test_unset_actions_do_not_override() -> None:
    rs = RuleSet([R(1, destination_hostgroup=1, timeout=100), R(2, retries=3)])
    d = rs.evaluate(ctx("SELECT 1"))
    assert (d.destination_hostgroup, d.timeout, d.retries) == (1, 100, 3)


def test_inactive_rules_are_ignored_and_active_defaults_to_0() -> None:
    rs = RuleSet([QueryRule(rule_id=1, destination_hostgroup=5), R(2, active=0, destination_hostgroup=6)])
    d = rs.evaluate(ctx("SELECT 1"))
    assert d == RouteDecision()
    assert rs.active_rules == ()
    assert len(rs) == 2


def test_apply_stops_the_walk() -> None:
    rs = RuleSet([R(1, destination_hostgroup=1, apply=1), R(2, destination_hostgroup=2)])
    d = rs.evaluate(ctx("SELECT 1"))
    assert (d.matched_rules, d.destination_hostgroup) == ((1,), 1)


def test_no_match_gives_the_empty_decision_and_default_hostgroup() -> None:
    d = RuleSet([R(1, username="other", destination_hostgroup=3)]).evaluate(ctx("SELECT 1"))
    assert d == RouteDecision()
    assert d.matched_rules == () and d.destination_hostgroup is None
    assert d.hostgroup(0) == 0
    assert RouteDecision(destination_hostgroup=4).hostgroup(0) == 4


def test_empty_ruleset() -> None:
    assert RuleSet().evaluate(ctx("SELECT 1")) == RouteDecision()


# --- flagIN / flagOUT ------------------------------------------------------


def test_flag_chain_continues_with_following_rules_of_the_new_flag() -> None:
    rules = [
        R(1, flagOUT=5),
        R(2, destination_hostgroup=9),  # flagIN 0: skipped once the flag is 5
        R(3, flagIN=5, destination_hostgroup=3),
    ]
    d = RuleSet(rules).evaluate(ctx("SELECT 1"))
    assert d.matched_rules == (1, 3)
    assert d.destination_hostgroup == 3
    assert d.final_flag == 5


def test_flag_chain_does_not_go_back_to_earlier_rules() -> None:
    rules = [R(3, flagIN=7, destination_hostgroup=3), R(10, flagOUT=7), R(20, flagIN=7, timeout=1)]
    d = RuleSet(rules).evaluate(ctx("SELECT 1"))
    assert d.matched_rules == (10, 20)
    assert d.destination_hostgroup is None


def test_iterations_restart_from_the_first_rule() -> None:
    rules = [R(3, flagIN=7, destination_hostgroup=3), R(10, flagOUT=7), R(20, flagIN=7, timeout=1)]
    d = RuleSet(rules, iterations=1).evaluate(ctx("SELECT 1"))
    assert d.matched_rules == (10, 3, 20)
    assert d.destination_hostgroup == 3


def test_iterations_are_bounded() -> None:
    # a rule that keeps setting the same flag: restarts at most `iterations` times
    rules = [R(1, flagOUT=0, timeout=1)]
    d = RuleSet(rules, iterations=3).evaluate(ctx("SELECT 1"))
    assert d.matched_rules == (1, 1, 1, 1)
    d0 = RuleSet(rules).evaluate(ctx("SELECT 1"))
    assert d0.matched_rules == (1,)


def test_walk_starts_at_the_session_flag() -> None:
    rules = [R(1, destination_hostgroup=1), R(2, flagIN=42, destination_hostgroup=2)]
    rs = RuleSet(rules)
    assert rs.evaluate(ctx("SELECT 1", flag_in=42)).matched_rules == (2,)
    d = rs.evaluate(ctx("SELECT 1", flag_in=99))
    assert d.matched_rules == () and d.final_flag == 99


def test_flag_out_with_apply_sets_the_final_flag_and_stops() -> None:
    rules = [R(1, flagOUT=3, apply=1), R(2, flagIN=3, destination_hostgroup=2)]
    d = RuleSet(rules).evaluate(ctx("SELECT 1"))
    assert (d.matched_rules, d.final_flag, d.destination_hostgroup) == ((1,), 3, None)


def test_next_query_flag_in_is_carried() -> None:
    d = RuleSet([R(1, next_query_flagIN=8)]).evaluate(ctx("SELECT 1"))
    assert d.next_query_flagIN == 8


# --- filters ---------------------------------------------------------------


def test_username_and_schemaname() -> None:
    rules = [R(1, username="app", schemaname="shop", destination_hostgroup=1)]
    assert hg(rules, "SELECT 1") == 1
    assert hg(rules, "SELECT 1", username="other") is None
    assert hg(rules, "SELECT 1", schemaname="other") is None
    assert hg(rules, "SELECT 1", username=None) is None


def test_client_addr_exact_wildcard_and_unknown() -> None:
    exact = [R(1, client_addr="10.0.0.5", destination_hostgroup=1)]
    assert hg(exact, "SELECT 1") == 1
    assert hg(exact, "SELECT 1", client_addr="10.0.0.6") is None
    wild = [R(1, client_addr="10.0.%", destination_hostgroup=1)]
    assert hg(wild, "SELECT 1", client_addr="10.0.3.4") == 1
    assert hg(wild, "SELECT 1", client_addr="10.1.3.4") is None
    # ProxySQL: the filter does not apply when the client address is unknown
    assert hg(exact, "SELECT 1", client_addr=None) == 1


def test_proxy_addr_and_port() -> None:
    rules = [R(1, proxy_addr="10.0.0.1", proxy_port=6033, destination_hostgroup=1)]
    assert hg(rules, "SELECT 1") == 1
    assert hg(rules, "SELECT 1", proxy_addr="10.0.0.2") is None
    assert hg(rules, "SELECT 1", proxy_port=6034) is None
    assert hg(rules, "SELECT 1", proxy_addr=None) == 1  # unknown address: not filtered (ProxySQL)
    assert hg(rules, "SELECT 1", proxy_port=None) is None


def test_digest_matches_the_hash() -> None:
    _, h = digest("SELECT c FROM sbtest1 WHERE id=1")
    rs = rules_from_rows([{"rule_id": 1, "active": 1, "digest": format_digest(h), "destination_hostgroup": 1}], "t")
    assert rs.evaluate(ctx("SELECT c FROM sbtest1 WHERE id=12345")).destination_hostgroup == 1
    assert rs.evaluate(ctx("SELECT c FROM sbtest2 WHERE id=1")).destination_hostgroup is None
    assert rs.evaluate(ctx("SELECT c FROM sbtest2 WHERE id=1", digest_hash=None)).destination_hostgroup == 1


def test_match_digest_is_a_regex_on_the_digest_text() -> None:
    rules = [R(1, match_digest=r"^SELECT c FROM sbtest1 WHERE id=\?$", destination_hostgroup=1)]
    assert hg(rules, "SELECT c FROM sbtest1 WHERE id=5") == 1
    assert hg(rules, "SELECT c FROM sbtest1 WHERE id=5 OR id=6") is None
    # searched, not anchored
    assert hg([R(1, match_digest="sbtest1", destination_hostgroup=1)], "SELECT c FROM sbtest1 WHERE id=5") == 1


def test_match_pattern_is_a_regex_on_the_query_text() -> None:
    rules = [R(1, match_pattern=r"^SELECT .* FOR UPDATE$", destination_hostgroup=0, apply=1),
             R(2, match_pattern=r"^SELECT", destination_hostgroup=1, apply=1)]
    assert hg(rules, "SELECT * FROM t FOR UPDATE") == 0
    assert hg(rules, "SELECT * FROM t") == 1
    assert hg(rules, "UPDATE t SET a = 1") is None
    # literal values are visible to match_pattern, not to match_digest
    assert hg([R(1, match_pattern="id = 42", destination_hostgroup=7)], "SELECT * FROM t WHERE id = 42") == 7
    assert hg([R(1, match_digest="id = 42", destination_hostgroup=7)], "SELECT * FROM t WHERE id = 42") is None


def test_re_modifiers_caseless_is_the_default() -> None:
    assert hg([R(1, match_pattern="^select", destination_hostgroup=1)], "SELECT 1") == 1
    assert hg([R(1, match_digest="^select", destination_hostgroup=1)], "SELECT 1") == 1
    assert hg([R(1, match_pattern="^select", re_modifiers="", destination_hostgroup=1)], "SELECT 1") is None
    assert hg([R(1, match_pattern="^select", re_modifiers="GLOBAL", destination_hostgroup=1)], "SELECT 1") is None


def test_negate_match_pattern_inverts_both_regexes() -> None:
    p = [R(1, match_pattern="^SELECT", negate_match_pattern=1, destination_hostgroup=0)]
    assert hg(p, "SELECT 1") is None
    assert hg(p, "UPDATE t SET a = 1") == 0
    d = [R(1, match_digest="^SELECT", negate_match_pattern=1, destination_hostgroup=0)]
    assert hg(d, "SELECT 1") is None
    assert hg(d, "DELETE FROM t") == 0


def test_match_kind() -> None:
    rules = [R(1, match_kind=("read",), destination_hostgroup=1)]
    assert hg(rules, "SELECT 1 FROM t") == 1
    assert hg(rules, "SELECT 1 FROM t FOR UPDATE") is None
    assert hg(rules, "INSERT INTO t VALUES (1)") is None
    several = [R(1, match_kind=("write", "ddl"), destination_hostgroup=0)]
    assert hg(several, "INSERT INTO t VALUES (1)") == 0
    assert hg(several, "DROP TABLE t") == 0
    assert hg(several, "SELECT 1") is None
    # without a classification, a match_kind rule cannot match
    assert hg(rules, "SELECT 1 FROM t", classified=False) is None
    # unknown is a kind too (EXECUTE)
    assert hg([R(1, match_kind=("unknown",), destination_hostgroup=0)], "EXECUTE s") == 0


def test_match_tables_bare_and_qualified() -> None:
    bare = [R(1, match_tables=("payments",), destination_hostgroup=0)]
    assert hg(bare, "SELECT * FROM payments") == 0
    assert hg(bare, "SELECT * FROM billing.payments") == 0  # a bare name matches any schema
    assert hg(bare, "SELECT * FROM `Payments` p JOIN x ON 1") == 0
    assert hg(bare, "SELECT * FROM payment") is None
    qualified = [R(1, match_tables=("billing.payments",), destination_hostgroup=0)]
    assert hg(qualified, "SELECT * FROM billing.payments") == 0
    assert hg(qualified, "SELECT * FROM other.payments") is None
    # an unqualified reference while the session's schema is billing
    assert hg(qualified, "SELECT * FROM payments", schemaname="billing") == 0
    assert hg(qualified, "SELECT * FROM payments", schemaname="shop") is None
    assert hg(qualified, "SELECT * FROM payments", schemaname=None) is None
    mixed = [R(1, match_tables=("audit", "billing.payments"), destination_hostgroup=0)]
    assert hg(mixed, "INSERT INTO audit VALUES (1)") == 0
    assert hg(mixed, "SELECT * FROM billing.payments") == 0
    assert hg(mixed, "SELECT * FROM orders") is None
    assert hg(mixed, "SELECT * FROM audit", classified=False) is None


def test_match_flags() -> None:
    rules = [R(1, match_flags=("side_effect",), destination_hostgroup=0)]
    assert hg(rules, "SELECT LAST_INSERT_ID()") == 0
    assert hg(rules, "SELECT GET_LOCK('a', 1)") == 0
    assert hg(rules, "SELECT 1") is None
    specific = [R(1, match_flags=("user_variable_read", "found_rows"), destination_hostgroup=0)]
    assert hg(specific, "SELECT @x") == 0
    assert hg(specific, "SELECT FOUND_ROWS()") == 0
    assert hg(specific, "SELECT LAST_INSERT_ID()") is None


def test_all_filters_must_match() -> None:
    rules = [R(1, username="app", match_kind=("read",), match_digest="FROM t\\b", destination_hostgroup=1)]
    assert hg(rules, "SELECT * FROM t") == 1
    assert hg(rules, "SELECT * FROM t", username="x") is None
    assert hg(rules, "DELETE FROM t") is None
    assert hg(rules, "SELECT * FROM u") is None


def test_digest_level_cache_does_not_mix_sessions_or_digests() -> None:
    rs = RuleSet([R(1, username="a", match_digest="FROM t\\b", destination_hostgroup=1)])
    assert rs.evaluate(ctx("SELECT * FROM t", username="b")).destination_hostgroup is None
    assert rs.evaluate(ctx("SELECT * FROM t", username="a")).destination_hostgroup == 1
    assert rs.evaluate(ctx("SELECT * FROM u", username="a")).destination_hostgroup is None
    assert rs.evaluate(ctx("SELECT * FROM t WHERE x = 1", username="a")).destination_hostgroup == 1


def test_context_without_digest_text_or_classification_is_not_cached() -> None:
    rs = RuleSet([R(1, match_kind=("read",), destination_hostgroup=1)])
    assert rs.evaluate(ctx("SELECT 1", classified=False)).destination_hostgroup is None
    assert rs.evaluate(ctx("SELECT 1")).destination_hostgroup == 1


# --- actions ---------------------------------------------------------------


def test_every_action_is_carried_to_the_decision() -> None:
    rule = R(
        1, destination_hostgroup=3, cache_ttl=5000, cache_empty_result=0, cache_timeout=200, reconnect=1,
        timeout=1000, retries=2, delay=50, next_query_flagIN=4, mirror_flagOUT=6, mirror_hostgroup=7,
        multiplex=2, sticky_conn=1, log=1, gtid_from_hostgroup=0, causal_reads="session",
    )
    d = RuleSet([rule]).evaluate(ctx("SELECT 1"))
    assert d == RouteDecision(
        destination_hostgroup=3, matched_rules=(1,), cache_ttl=5000, cache_empty_result=0, cache_timeout=200,
        reconnect=1, timeout=1000, retries=2, delay=50, next_query_flagIN=4, mirror_flagOUT=6,
        mirror_hostgroup=7, multiplex=2, sticky_conn=1, log=1, gtid_from_hostgroup=0, causal_reads="session",
    )


@pytest.mark.parametrize(
    "column, first, second",
    [
        ("destination_hostgroup", 1, 2), ("cache_ttl", 10, 20), ("timeout", 1, 2), ("retries", 1, 2),
        ("delay", 1, 2), ("mirror_hostgroup", 1, 2), ("mirror_flagOUT", 1, 2), ("multiplex", 0, 1),
        ("sticky_conn", 0, 1), ("log", 0, 1), ("causal_reads", "session", "global"), ("error_msg", "a", "b"),
        ("OK_msg", "a", "b"), ("cache_empty_result", 0, 1), ("reconnect", 0, 1), ("next_query_flagIN", 1, 2),
    ],
)
def test_later_rules_override_each_action(column: str, first, second) -> None:
    d = RuleSet([R(1, **{column: first}), R(2, **{column: second})]).evaluate(ctx("SELECT 1"))
    assert getattr(d, column) == second
    d = RuleSet([R(1, **{column: first}), R(2)]).evaluate(ctx("SELECT 1"))
    assert getattr(d, column) == first


def test_error_msg_and_ok_msg() -> None:
    d = RuleSet([R(1, match_digest="^DELETE FROM \\S+$", error_msg="no unbounded deletes", apply=1)]).evaluate(
        ctx("DELETE FROM t")
    )
    assert d.error_msg == "no unbounded deletes" and d.OK_msg is None
    assert RuleSet([R(1, match_digest="^DELETE FROM \\S+$", error_msg="x")]).evaluate(
        ctx("DELETE FROM t WHERE id = 1")).error_msg is None
    ok = RuleSet([R(1, match_pattern="^SET sql_notes", OK_msg="")]).evaluate(ctx("SET sql_notes = 0"))
    assert ok.OK_msg == ""


# --- rewriting -------------------------------------------------------------


def test_replace_pattern_with_backreferences() -> None:
    rule = R(1, match_pattern=r"^SELECT (.*) FROM users WHERE id = (\d+)$",
             replace_pattern=r"SELECT \1 FROM customers WHERE user_id = \2")
    d = RuleSet([rule]).evaluate(ctx("SELECT a, b FROM users WHERE id = 42"))
    assert d.rewritten_query == "SELECT a, b FROM customers WHERE user_id = 42"


def test_replace_first_occurrence_or_all_with_global() -> None:
    sql = "SELECT * FROM old_t JOIN old_t2 ON 1 WHERE x IN (SELECT y FROM old_t)"
    first = R(1, match_pattern=r"\bold_t\b", replace_pattern="new_t")
    assert RuleSet([first]).evaluate(ctx(sql)).rewritten_query == (
        "SELECT * FROM new_t JOIN old_t2 ON 1 WHERE x IN (SELECT y FROM old_t)"
    )
    every = R(1, match_pattern=r"\bold_t\b", replace_pattern="new_t", re_modifiers="CASELESS,GLOBAL")
    assert RuleSet([every]).evaluate(ctx(sql)).rewritten_query == (
        "SELECT * FROM new_t JOIN old_t2 ON 1 WHERE x IN (SELECT y FROM new_t)"
    )


def test_replace_whole_match_and_literal_backslash() -> None:
    rule = R(1, match_pattern="t1", replace_pattern=r"[\0]\\")
    assert RuleSet([rule]).evaluate(ctx("SELECT * FROM t1")).rewritten_query == "SELECT * FROM [t1]\\"


def test_later_rules_match_the_rewritten_query_but_the_original_digest() -> None:
    rules = [
        R(1, match_pattern="old_orders", replace_pattern="orders"),
        R(2, match_pattern="FROM orders", destination_hostgroup=5),
        R(3, match_digest="old_orders", timeout=9),
    ]
    d = RuleSet(rules).evaluate(ctx("SELECT * FROM old_orders"))
    assert d.rewritten_query == "SELECT * FROM orders"
    assert d.matched_rules == (1, 2, 3)
    assert (d.destination_hostgroup, d.timeout) == (5, 9)


def test_chained_rewrites() -> None:
    rules = [R(1, match_pattern="a", replace_pattern="b"), R(2, match_pattern="b", replace_pattern="c")]
    assert RuleSet(rules).evaluate(ctx("SELECT a")).rewritten_query == "SELECT c"


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(match_pattern="(x)", replace_pattern=r"\2"), "refers to a group"),
        (dict(match_pattern="x", replace_pattern=r"\x"), "invalid escape"),
        (dict(match_pattern="x", replace_pattern="y\\"), "trailing backslash"),
        (dict(replace_pattern="y"), "needs a match_pattern"),
        (dict(match_pattern="(unclosed"), "invalid regular expression"),
        (dict(match_digest="[z-a]"), "invalid regular expression"),
        (dict(re_modifiers="CASELESS,MULTILINE"), "unknown modifier"),
    ],
)
def test_invalid_rules_are_refused(kw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        RuleSet([R(7, **kw)])
    assert message in str(info.value)
    assert "rule_id 7" in str(info.value)


def test_inactive_rules_are_validated_too() -> None:
    with pytest.raises(ConfigError, match="rule_id 3"):
        RuleSet([R(3, active=0, match_pattern="(")])


def test_duplicate_rule_ids_are_refused() -> None:
    with pytest.raises(ConfigError, match="rule_id 4 is defined twice"):
        RuleSet([R(4), R(4, active=0)])


# --- hit counters ----------------------------------------------------------


def test_hit_counters() -> None:
    rs = RuleSet([R(1, match_kind=("read",)), R(2, match_kind=("write",)), R(3, active=0)])
    for sql in ("SELECT 1", "SELECT 2", "DELETE FROM t"):
        rs.evaluate(ctx(sql))
    assert rs.hits() == {1: 2, 2: 1}  # active rules only, like stats_mysql_query_rules
    rs.evaluate(ctx("SELECT 3"), count_hits=False)
    assert rs.hits() == {1: 2, 2: 1}
    rs.reset_hits()
    assert rs.hits() == {1: 0, 2: 0}


def test_reused_walks_count_hits_and_session_filters_are_evaluated_each_time() -> None:
    # a walk through digest-level rules only is remembered per (flag, digest mask) and reused;
    # hit counters still count every statement, and a walk that meets a session-level filter
    # or a rewrite is redone for every statement
    rs = RuleSet([
        R(1, match_kind=("read",), flagOUT=5),
        R(2, flagIN=5, username="a", destination_hostgroup=1, apply=1),
        R(3, flagIN=5, match_pattern="^SELECT 9", replace_pattern="SELECT 8", destination_hostgroup=3),
        R(4, match_kind=("write",), destination_hostgroup=2, apply=1),
    ])
    for _ in range(3):
        assert rs.evaluate(ctx("DELETE FROM t")).matched_rules == (4,)
    assert rs.evaluate(ctx("SELECT 1", username="a")).destination_hostgroup == 1
    assert rs.evaluate(ctx("SELECT 1", username="b")).matched_rules == (1,)
    d = rs.evaluate(ctx("SELECT 9", username="b"))
    assert (d.destination_hostgroup, d.rewritten_query) == (3, "SELECT 8")
    assert rs.evaluate(ctx("SELECT 7", username="b")).rewritten_query is None
    rs.evaluate(ctx("DELETE FROM t"), count_hits=False)
    assert rs.hits() == {1: 4, 2: 1, 3: 1, 4: 3}


def test_hits_snapshot_is_a_copy() -> None:
    rs = RuleSet([R(1)])
    snapshot = rs.hits()
    rs.evaluate(ctx("SELECT 1"))
    assert snapshot == {1: 0} and rs.hits() == {1: 1}


def test_rule_lookup_and_rows() -> None:
    rs = RuleSet([R(2, match_kind=("read", "locking_read"), comment="c"), R(1)])
    assert [r.rule_id for r in rs] == [1, 2]
    assert rs.rule(2).comment == "c"
    row = rs.rows()[1]
    assert row["rule_id"] == 2 and row["match_kind"] == "read,locking_read" and row["digest"] is None
    assert "flagIN" in row and "OK_msg" in row and "source" not in row
