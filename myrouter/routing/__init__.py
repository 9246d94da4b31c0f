"""The pure routing layer: digest, classification, query rules, explain.

No I/O beyond reading rule files, no trio.  Typical use per statement::

    text, h = digest(sql)
    cls = classifier.classify(sql, h)
    decision = ruleset.evaluate(RuleContext(username, schemaname, client_addr,
                                            proxy_addr, proxy_port, flag_in,
                                            h, text, sql, cls))
    hostgroup = decision.hostgroup(user_default_hostgroup)
"""

from .classifier import (
    Classification,
    Classifier,
    ClassifierStatistics,
    SetVariable,
    StatementFlag,
    StatementKind,
    classify_statement,
    parse_set_statement,
)
from .digest import digest, digest_hash, digest_text, format_digest, parse_digest, split_statements
from .explain import ExplainResult, MatchedRule, explain, format_explain
from .rules import (
    QueryRule,
    RouteDecision,
    RuleContext,
    RuleSet,
    load_rules,
    rules_from_rows,
)

__all__ = [
    "Classification",
    "Classifier",
    "ClassifierStatistics",
    "ExplainResult",
    "MatchedRule",
    "QueryRule",
    "RouteDecision",
    "RuleContext",
    "RuleSet",
    "SetVariable",
    "StatementFlag",
    "StatementKind",
    "classify_statement",
    "digest",
    "digest_hash",
    "digest_text",
    "explain",
    "format_digest",
    "format_explain",
    "load_rules",
    "parse_digest",
    "parse_set_statement",
    "rules_from_rows",
    "split_statements",
]
