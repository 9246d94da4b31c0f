"""A query rule compiled for evaluation, and how a problem with one rule is reported.

``_Compiled`` holds a rule's regexes, rewrite template and actions, and two generated functions
testing exactly the filters it sets: ``dmatch`` (what depends on the statement's digest alone)
and ``smatch`` (the rest). ``_Reporter`` builds the error of one rule, at its column.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from .columns import FLAG_NAMES, KIND_NAMES

from ..classify.classification import Classification
from .row import _ACTION_COLUMNS, QueryRule, RouteDecision, RuleContext

_DECISION_INDEX = {name: i for i, name in enumerate(RouteDecision._fields)}


#: Builds the exception for a problem of one rule: ``(message, column or None, rule_id or None)``.
_ErrorFn = Callable[[str, "str | None", Any], Exception]


def _prefixed(message: str, rule_id: Any) -> str:
    """``rule_id N: message``, as the messages of rule files say which rule they are about."""
    return f"rule_id {rule_id}: {message}" if rule_id is not None else message


class _Reporter:
    """Builds the errors of one rule (its rule_id known, when it is)."""

    def __init__(self, error: _ErrorFn, rule_id: Any) -> None:
        self._error = error
        self.rule_id = rule_id

    def __call__(self, message: str, key: str | None = None) -> Exception:
        return self._error(message, key, self.rule_id)


# ---------------------------------------------------------------------------
# Compilation


def _re_flags(modifiers: str, report: _Reporter) -> tuple[int, bool]:
    flags = 0
    global_ = False
    for part in modifiers.split(","):
        p = part.strip().upper()
        if not p:
            continue
        if p == "CASELESS":
            flags |= re.IGNORECASE
        elif p == "GLOBAL":
            global_ = True
        else:
            raise report(f"re_modifiers: unknown modifier {part.strip()!r} (known: CASELESS, GLOBAL)", "re_modifiers")
    return flags, global_


def _compile_regex(pattern: str, flags: int, key: str, report: _Reporter) -> re.Pattern[str]:
    try:
        return re.compile(pattern, flags)
    except (re.error, RecursionError, OverflowError) as e:
        raise report(f"{key}: invalid regular expression {pattern!r}: {e}", key) from e


def _rewrite_template(replace: str, groups: int, report: _Reporter) -> str:
    """RE2-style rewrite (``\\0``..``\\9``, ``\\\\``) -> a Python ``re.sub`` template."""
    out: list[str] = []
    i = 0
    n = len(replace)
    while i < n:
        ch = replace[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= n:
            raise report("replace_pattern: a trailing backslash (write \\\\ for a backslash)", "replace_pattern")
        nxt = replace[i + 1]
        if nxt.isdigit():
            g = int(nxt)
            if g > groups:
                raise report(
                    f"replace_pattern: \\{g} refers to a group that match_pattern does not have "
                    f"(it has {groups})",
                    "replace_pattern",
                )
            out.append(f"\\g<{g}>")
        elif nxt == "\\":
            out.append("\\\\")
        else:
            raise report(
                f"replace_pattern: invalid escape \\{nxt} (only \\0..\\9 and \\\\ are allowed)",
                "replace_pattern",
            )
        i += 2
    return "".join(out)


def _wildcard_regex(pattern: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "%" else re.escape(c) for c in pattern) + r"\Z")


class _Compiled:
    """A rule prepared for evaluation.

    Its filters are split in two generated functions: ``dmatch`` tests what
    depends only on the statement's digest (``digest``, ``match_digest``,
    ``match_kind``, ``match_flags``, unqualified ``match_tables``) and is
    cached per digest by the RuleSet; ``smatch`` tests the rest (user,
    schema, addresses, port, qualified ``match_tables``, ``match_pattern``).
    Either is ``None`` when the rule has no such filter.
    """

    __slots__ = ("rule", "position", "flag_in", "dmatch", "smatch", "actions", "flag_out", "apply", "rewrite", "rule_id",
                 "reads_query")

    def __init__(self, rule: QueryRule, position: int, report: _Reporter) -> None:
        self.rule = rule
        self.rule_id = rule.rule_id
        self.position = position
        self.flag_in = rule.flagIN
        self.flag_out = rule.flagOUT
        self.apply = bool(rule.apply)
        re_flags, global_ = _re_flags(rule.re_modifiers, report)
        digest_re = (
            _compile_regex(rule.match_digest, re_flags, "match_digest", report) if rule.match_digest else None
        )
        pattern_re = (
            _compile_regex(rule.match_pattern, re_flags, "match_pattern", report) if rule.match_pattern else None
        )
        self.rewrite: tuple[re.Pattern[str], str, int] | None = None
        if rule.replace_pattern is not None:
            if pattern_re is None:
                raise report("replace_pattern needs a match_pattern (the regex it replaces)", "replace_pattern")
            template = _rewrite_template(rule.replace_pattern, pattern_re.groups, report)
            self.rewrite = (pattern_re, template, 0 if global_ else 1)
        self.actions = tuple(
            (_DECISION_INDEX[name], getattr(rule, name))
            for name in _ACTION_COLUMNS
            if name in _DECISION_INDEX and getattr(rule, name) is not None
        )
        self.dmatch, self.smatch = _build_matchers(rule, digest_re, pattern_re)
        self.reads_query = pattern_re is not None  # match_pattern / replace_pattern: the text, not the digest


def _build_matchers(
    rule: QueryRule, digest_re: re.Pattern[str] | None, pattern_re: re.Pattern[str] | None
) -> tuple[Callable[[RuleContext], Any] | None, Callable[[RuleContext, str], Any] | None]:
    """Generate the functions testing exactly the filters this rule sets.

    Generated code keeps per-rule evaluation to the checks that matter (a rule
    that only sets ``match_kind`` costs one comparison).  Rule values are
    passed in through the functions' namespace, never pasted into the source.
    The functions return something truthy or falsy.
    """
    ns: dict[str, Any] = {"__builtins__": {}}
    dconds: list[str] = []  # digest-level
    sconds: list[str] = []  # session-level
    if rule.username:
        ns["USERNAME"] = rule.username
        sconds.append("ctx.username == USERNAME")
    if rule.schemaname:
        ns["SCHEMANAME"] = rule.schemaname
        sconds.append("ctx.schemaname == SCHEMANAME")
    if rule.client_addr:
        if "%" in rule.client_addr:
            ns["CLIENT_RE"] = _wildcard_regex(rule.client_addr).match
            sconds.append("(ctx.client_addr is None or CLIENT_RE(ctx.client_addr) is not None)")
        else:
            ns["CLIENT_ADDR"] = rule.client_addr
            sconds.append("(ctx.client_addr is None or ctx.client_addr == CLIENT_ADDR)")
    if rule.proxy_addr:
        ns["PROXY_ADDR"] = rule.proxy_addr
        sconds.append("(ctx.proxy_addr is None or ctx.proxy_addr == PROXY_ADDR)")
    if rule.proxy_port is not None:
        ns["PROXY_PORT"] = rule.proxy_port
        sconds.append("ctx.proxy_port == PROXY_PORT")
    if rule.digest is not None:
        ns["DIGEST"] = rule.digest
        dconds.append("(ctx.digest_hash is None or ctx.digest_hash == DIGEST)")
    if rule.match_kind:
        mask = 0
        for name in rule.match_kind:
            mask |= 1 << int(KIND_NAMES[name])
        ns["KIND_MASK"] = mask
        dconds.append("cls is not None and (KIND_MASK >> cls.kind) & 1")
    if rule.match_flags:
        mask = 0
        for name in rule.match_flags:
            mask |= FLAG_NAMES[name].value
        ns["FLAG_MASK"] = mask
        dconds.append("cls is not None and cls.flags.value & FLAG_MASK")
    if rule.match_tables:
        bare = frozenset(t for t in rule.match_tables if "." not in t)
        qualified = tuple(tuple(t.split(".", 1)) for t in rule.match_tables if "." in t)
        if not qualified:
            ns["BARE_TABLES"] = bare
            dconds.append("cls is not None and not BARE_TABLES.isdisjoint(cls.table_keys)")
        else:
            # qualified names depend on the session's schema: all session-level
            ns["TABLES_MATCH"] = _table_matcher(bare, qualified)
            sconds.append("TABLES_MATCH(ctx.schemaname, ctx.classification)")
    negate = bool(rule.negate_match_pattern)
    if digest_re is not None:
        ns["DIGEST_SEARCH"] = digest_re.search
        test = "DIGEST_SEARCH(ctx.digest_text) is None" if negate else "DIGEST_SEARCH(ctx.digest_text) is not None"
        dconds.append(f"(ctx.digest_text is None or {test})")
    if pattern_re is not None:
        ns["PATTERN_SEARCH"] = pattern_re.search
        sconds.append("PATTERN_SEARCH(query) is None" if negate else "PATTERN_SEARCH(query) is not None")
    src = ""
    if dconds:
        uses_cls = any("cls" in c for c in dconds)
        src += "def dmatch(ctx):\n"
        if uses_cls:
            src += "    cls = ctx.classification\n"
        src += "    return " + " and ".join(dconds) + "\n"
    if sconds:
        src += "def smatch(ctx, query):\n    return " + " and ".join(sconds) + "\n"
    exec(compile(src, f"<rule {rule.rule_id}>", "exec"), ns)  # noqa: S102 - source built from fixed fragments
    return ns.get("dmatch"), ns.get("smatch")


def _table_matcher(
    bare: frozenset[str], qualified: tuple[tuple[str, ...], ...]
) -> Callable[[str | None, Classification | None], bool]:
    """``match_tables`` with ``schema.table`` entries: a bare entry matches the
    table in any schema; a qualified one matches a qualified reference to it,
    or an unqualified reference while that schema is the session's schema."""
    full = frozenset(f"{s}.{t}" for s, t in qualified)

    def match(schemaname: str | None, cls: Classification | None) -> bool:
        if cls is None:
            return False
        if bare and not bare.isdisjoint(cls.table_keys):
            return True
        if not full.isdisjoint(cls.tables):
            return True
        if schemaname is None:
            return False
        current = schemaname.lower()
        return any(s == current and t in cls.tables for s, t in qualified)

    return match
