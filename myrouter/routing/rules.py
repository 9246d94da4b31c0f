"""Query rules with ProxySQL's ``mysql_query_rules`` semantics.

A :class:`RuleSet` is an immutable, pre-compiled snapshot of rules (only its
hit counters change).  :meth:`RuleSet.evaluate` walks the active rules for one
statement and returns a :class:`RouteDecision`.

Semantics (taken from ProxySQL's documentation and its query processor):

* Only ``active = 1`` rules are evaluated (``active`` defaults to 0, as in
  ProxySQL: a rule without ``active = 1`` is kept but never used), in
  ``rule_id`` order.
* The walk starts with flag ``ctx.flag_in`` (0, or the session's
  ``next_query_flagIN``); a rule is considered only if its ``flagIN`` equals
  the current flag.  A matching rule with ``flagOUT`` set changes the current
  flag, and the walk *continues with the following rules* (by rule_id), now
  considering those whose ``flagIN`` is the new flag.  With ``iterations > 0``
  (ProxySQL's ``mysql-query_processor_iterations``, default 0) the walk
  instead restarts from the first rule after a flagOUT change, at most that
  many times.
* A rule matches when every filter it sets matches: ``username`` and
  ``schemaname`` (exact); ``client_addr`` (exact, or with ``%`` wildcards);
  ``proxy_addr`` (exact); ``proxy_port``; ``digest`` (the statement's digest
  hash); ``match_digest`` (regex, searched in the digest text);
  ``match_pattern`` (regex, searched in the query text, or in the query as
  rewritten by an earlier rule); and myrouter's own ``match_kind``,
  ``match_tables`` and ``match_flags`` (against the classification).
  ``negate_match_pattern = 1`` inverts both regex matches, as ProxySQL does.
  ProxySQL quirks kept on purpose: a ``client_addr``/``proxy_addr`` filter
  passes when the session's address is unknown (``None``), and ``digest`` /
  ``match_digest`` pass when no digest is known.
* On a match, the rule's hit counter is incremented and each action it sets
  overrides the value set by earlier matching rules: ``destination_hostgroup``,
  ``cache_ttl``, ``cache_empty_result``, ``cache_timeout``, ``reconnect``,
  ``timeout``, ``retries``, ``delay``, ``next_query_flagIN``,
  ``mirror_flagOUT``, ``mirror_hostgroup``, ``error_msg``, ``OK_msg``,
  ``sticky_conn``, ``multiplex``, ``gtid_from_hostgroup``, ``log``,
  ``causal_reads``.  ``replace_pattern`` rewrites the query with the
  ``match_pattern`` regex (first occurrence, or all with the ``GLOBAL``
  modifier); ``\\1``..``\\9`` are group references and ``\\0`` the whole match
  (RE2 rewrite syntax, which ProxySQL documents), ``\\\\`` a backslash.
  ``apply = 1`` stops the walk.
* ``destination_hostgroup`` of ``None`` in the decision means "no rule chose
  one": the caller uses the user's ``default_hostgroup``.

Regexes use Python's ``re`` (ProxySQL uses PCRE or RE2: the common syntax is
the same); ``re_modifiers`` is ``CASELESS`` (default), ``GLOBAL``, both
(comma-separated), or empty.  Regexes are compiled when the rules are loaded
and an invalid one refuses the whole rule set.

Rules come from TOML files (:func:`load_rules`: ``rules_dir/*.toml`` in file
name order, each with ``[[mysql_query_rules]]`` tables) or from dict rows
(:func:`rules_from_rows`, for the admin interface); both share one
validation, which raises :class:`myrouter.errors.ConfigError` naming the file,
the line when known, the column and the rule_id.
"""

from __future__ import annotations

import bisect
import json
import re
from collections import OrderedDict
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

from myrouter.errors import ConfigError
from myrouter.tomlutil import TomlDoc, load_toml

from .classifier import Classification, StatementFlag, StatementKind
from .digest import format_digest, parse_digest

__all__ = [
    "QueryRule",
    "RuleContext",
    "RouteDecision",
    "RuleSet",
    "load_rules",
    "rules_from_rows",
    "COLUMNS",
    "KIND_NAMES",
    "FLAG_NAMES",
]

TABLE = "mysql_query_rules"

#: ``match_kind`` names -> kinds
KIND_NAMES: dict[str, StatementKind] = {k.label: k for k in StatementKind}
#: ``match_flags`` names -> flags (including the ``side_effect`` group)
FLAG_NAMES: dict[str, StatementFlag] = {
    name.lower(): member for name, member in StatementFlag.__members__.items() if member.value
}
CAUSAL_READS = ("off", "session", "global")


@dataclass(frozen=True, slots=True)
class QueryRule:
    """One row of ``mysql_query_rules`` (ProxySQL's columns, plus myrouter's).

    ``None`` is SQL NULL (column not set).  ``source``/``line`` say where the
    rule was defined (for messages); they are not columns.
    """

    rule_id: int
    active: int = 0
    username: str | None = None
    schemaname: str | None = None
    flagIN: int = 0  # noqa: N815 - ProxySQL's column name
    client_addr: str | None = None
    proxy_addr: str | None = None
    proxy_port: int | None = None
    digest: int | None = None
    match_digest: str | None = None
    match_pattern: str | None = None
    negate_match_pattern: int = 0
    re_modifiers: str = "CASELESS"
    flagOUT: int | None = None  # noqa: N815
    replace_pattern: str | None = None
    destination_hostgroup: int | None = None
    cache_ttl: int | None = None
    cache_empty_result: int | None = None
    cache_timeout: int | None = None
    reconnect: int | None = None
    timeout: int | None = None
    retries: int | None = None
    delay: int | None = None
    next_query_flagIN: int | None = None  # noqa: N815
    mirror_flagOUT: int | None = None  # noqa: N815
    mirror_hostgroup: int | None = None
    error_msg: str | None = None
    OK_msg: str | None = None  # noqa: N815
    sticky_conn: int | None = None
    multiplex: int | None = None
    gtid_from_hostgroup: int | None = None
    log: int | None = None
    apply: int = 0
    attributes: str | None = None
    comment: str | None = None
    # myrouter's own columns
    match_kind: tuple[str, ...] | None = None
    match_tables: tuple[str, ...] | None = None
    match_flags: tuple[str, ...] | None = None
    causal_reads: str | None = None
    # provenance (not a column)
    source: str | None = None
    line: int | None = None

    def to_row(self) -> dict[str, Any]:
        """The rule as a ``mysql_query_rules`` row: column -> value (None = NULL).

        ``digest`` is ``'0x...'`` text and the list columns are comma-joined,
        as the admin interface stores them; :func:`rules_from_rows` reads
        this back.
        """
        row: dict[str, Any] = {}
        for name in COLUMNS:
            value = getattr(self, name)
            if name == "digest" and value is not None:
                value = format_digest(value)
            elif isinstance(value, tuple):
                value = ",".join(value)
            row[name] = value
        return row

    def actions(self) -> dict[str, Any]:
        """The actions this rule sets (for explain output), in column order."""
        return {name: getattr(self, name) for name in _ACTION_COLUMNS if getattr(self, name) is not None} | (
            {"apply": 1} if self.apply else {}
        )

    def where(self) -> str:
        """``file:line`` (or the source) where the rule was defined."""
        if self.source and self.line:
            return f"{self.source}:{self.line}"
        return self.source or "?"


#: all columns, in ProxySQL's order followed by myrouter's
COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(QueryRule) if f.name not in ("source", "line"))
_COLUMN_BY_LOWER = {c.lower(): c for c in COLUMNS}

# Actions that override the decision field of the same name.
_ACTION_COLUMNS = (
    "flagOUT",
    "replace_pattern",
    "destination_hostgroup",
    "cache_ttl",
    "cache_empty_result",
    "cache_timeout",
    "reconnect",
    "timeout",
    "retries",
    "delay",
    "next_query_flagIN",
    "mirror_flagOUT",
    "mirror_hostgroup",
    "error_msg",
    "OK_msg",
    "sticky_conn",
    "multiplex",
    "gtid_from_hostgroup",
    "log",
    "causal_reads",
)


class RuleContext(NamedTuple):
    """What a rule can look at for one statement."""

    username: str | None = None
    schemaname: str | None = None
    client_addr: str | None = None
    proxy_addr: str | None = None
    proxy_port: int | None = None
    flag_in: int = 0
    digest_hash: int | None = None
    digest_text: str | None = None
    query: str = ""
    classification: Classification | None = None


class RouteDecision(NamedTuple):
    """The outcome of the rules for one statement (``None`` = not set by any rule).

    ``destination_hostgroup`` ``None`` means the user's default hostgroup.
    ``rewritten_query`` is set when a ``replace_pattern`` rule matched.  When
    ``error_msg`` is set the proxy answers with that error; when ``OK_msg`` is
    set it answers OK; the statement is then not sent to a backend.
    """

    destination_hostgroup: int | None = None
    matched_rules: tuple[int, ...] = ()
    rewritten_query: str | None = None
    cache_ttl: int | None = None
    cache_empty_result: int | None = None
    cache_timeout: int | None = None
    reconnect: int | None = None
    timeout: int | None = None
    retries: int | None = None
    delay: int | None = None
    next_query_flagIN: int | None = None  # noqa: N815
    mirror_flagOUT: int | None = None  # noqa: N815
    mirror_hostgroup: int | None = None
    error_msg: str | None = None
    OK_msg: str | None = None  # noqa: N815
    sticky_conn: int | None = None
    multiplex: int | None = None
    gtid_from_hostgroup: int | None = None
    log: int | None = None
    causal_reads: str | None = None
    #: the flag the walk ended with (ProxySQL's final flagIN)
    final_flag: int = 0

    def hostgroup(self, default_hostgroup: int) -> int:
        """The hostgroup to use: the decision's, else ``default_hostgroup``."""
        return default_hostgroup if self.destination_hostgroup is None else self.destination_hostgroup


_DECISION_INDEX = {name: i for i, name in enumerate(RouteDecision._fields)}
_READ_ONLY_TRANSACTION = StatementFlag.READ_ONLY_TRANSACTION.value
_NO_DECISION_VALUES = tuple(RouteDecision())


# ---------------------------------------------------------------------------
# Validation


class _Reporter:
    """Builds ConfigErrors for one rule: ``rule_id N: message`` at file/line/key."""

    def __init__(self, error: Callable[[str, str | None], ConfigError], rule_id: Any) -> None:
        self._error = error
        self.rule_id = rule_id

    def __call__(self, message: str, key: str | None = None) -> ConfigError:
        prefix = f"rule_id {self.rule_id}: " if self.rule_id is not None else ""
        return self._error(prefix + message, key)


_FLAG01 = ("active", "negate_match_pattern", "apply", "cache_empty_result", "reconnect", "sticky_conn", "log")
_NONNEG_INT = (
    "flagIN",
    "flagOUT",
    "destination_hostgroup",
    "cache_timeout",
    "timeout",
    "delay",
    "next_query_flagIN",
    "mirror_flagOUT",
    "mirror_hostgroup",
    "gtid_from_hostgroup",
)
_STRINGS = (
    "username",
    "schemaname",
    "client_addr",
    "proxy_addr",
    "match_digest",
    "match_pattern",
    "replace_pattern",
    "error_msg",
    "OK_msg",
    "attributes",
    "comment",
)
_HOSTGROUP_COLUMNS = ("destination_hostgroup", "mirror_hostgroup", "gtid_from_hostgroup")


def _check_int(value: Any, key: str, report: _Reporter) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise report(f"{key} must be an integer, not {_describe(value)}", key)
    return value


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return f"{type(value).__name__} ({value!r})"


def _name_list(value: Any, key: str, report: _Reporter) -> tuple[str, ...]:
    """A list of names, or one string with comma-separated names."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, (list, tuple)):
        items = []
        for v in value:
            if not isinstance(v, str):
                raise report(f"{key} must be a list of strings, found {_describe(v)}", key)
            items.append(v.strip())
    else:
        raise report(f"{key} must be a string or a list of strings, not {_describe(value)}", key)
    items = [v.lower() for v in items if v]
    if not items:
        raise report(f"{key} is empty", key)
    return tuple(dict.fromkeys(items))


def _validate_row(row: dict[str, Any], report: _Reporter) -> dict[str, Any]:
    """Check and normalize a row's values; return QueryRule keyword arguments."""
    out: dict[str, Any] = {}
    for raw_key, value in row.items():
        if not isinstance(raw_key, str):
            raise report(f"column names must be strings, not {_describe(raw_key)}")
        key = _COLUMN_BY_LOWER.get(raw_key.lower())
        if key is None:
            hint = _close_column(raw_key)
            raise report(
                f"unknown column {raw_key!r}" + (f" (did you mean {hint!r}?)" if hint else ""), raw_key
            )
        if key in out:
            raise report(f"column {key!r} is given twice", raw_key)
        if value is None:  # SQL NULL from the admin tables; TOML has no null
            continue
        if key == "rule_id":
            value = _check_int(value, key, report)
            if value <= 0:
                raise report("rule_id must be a positive integer", key)
        elif key in _FLAG01:
            if isinstance(value, bool):
                value = int(value)
            value = _check_int(value, key, report)
            if value not in (0, 1):
                raise report(f"{key} must be 0 or 1, not {value}", key)
        elif key == "multiplex":
            if isinstance(value, bool):
                value = int(value)
            value = _check_int(value, key, report)
            if value not in (0, 1, 2):
                raise report(f"multiplex must be 0, 1 or 2, not {value}", key)
        elif key in _NONNEG_INT:
            value = _check_int(value, key, report)
            if value < 0:
                raise report(f"{key} must not be negative", key)
        elif key == "cache_ttl":
            value = _check_int(value, key, report)
            if value <= 0:
                raise report("cache_ttl must be a positive number of milliseconds", key)
        elif key == "retries":
            value = _check_int(value, key, report)
            if not 0 <= value <= 1000:
                raise report("retries must be between 0 and 1000", key)
        elif key == "proxy_port":
            value = _check_int(value, key, report)
            if not 1 <= value <= 65535:
                raise report("proxy_port must be between 1 and 65535", key)
        elif key == "digest":
            try:
                value = parse_digest(value)
            except (TypeError, ValueError) as e:
                raise report(f"digest: {e}", key) from e
        elif key in _STRINGS or key == "re_modifiers":
            if not isinstance(value, str):
                raise report(f"{key} must be a string, not {_describe(value)}", key)
            if key == "attributes" and value.strip():
                try:
                    json.loads(value)
                except ValueError as e:
                    raise report(f"attributes must be JSON: {e}", key) from e
        elif key == "match_kind":
            value = _name_list(value, key, report)
            bad = [v for v in value if v not in KIND_NAMES]
            if bad:
                raise report(
                    f"match_kind: unknown kind {bad[0]!r} (known: {', '.join(KIND_NAMES)})", key
                )
        elif key == "match_tables":
            value = _name_list(value, key, report)
            for name in value:
                if not re.fullmatch(r"[^.\s`]+(?:\.[^.\s`]+)?", name):
                    raise report(
                        f"match_tables: {name!r} is not a table name ('table' or 'schema.table', unquoted)",
                        key,
                    )
        elif key == "match_flags":
            value = _name_list(value, key, report)
            bad = [v for v in value if v not in FLAG_NAMES]
            if bad:
                raise report(
                    f"match_flags: unknown flag {bad[0]!r} (known: {', '.join(FLAG_NAMES)})", key
                )
        elif key == "causal_reads":
            if not isinstance(value, str) or value.lower() not in CAUSAL_READS:
                raise report(f"causal_reads must be one of {', '.join(CAUSAL_READS)}", key)
            value = value.lower()
        else:  # pragma: no cover - every column is handled above
            raise AssertionError(key)
        out[key] = value
    if "rule_id" not in out:
        raise report("a rule needs a rule_id", None)
    return out


def _close_column(name: str) -> str | None:
    import difflib  # lazy: only for the "did you mean" of a configuration error

    found = difflib.get_close_matches(name.lower(), list(_COLUMN_BY_LOWER), n=1, cutoff=0.75)
    return _COLUMN_BY_LOWER[found[0]] if found else None


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


# ---------------------------------------------------------------------------
# The rule set


class RuleSet:
    """An immutable, compiled set of query rules (plus per-rule hit counters)."""

    __slots__ = (
        "_rules", "_active", "_by_flag", "_positions", "_hits", "_by_id", "iterations",
        "_masks", "_mask_capacity", "_plans",
    )

    def __init__(
        self, rules: Iterable[QueryRule] = (), *, iterations: int = 0, digest_cache_size: int = 10000
    ) -> None:
        """Compile ``rules`` (any order; they are sorted by rule_id).

        Raises :class:`ConfigError` for an invalid regex, modifier or
        rewrite, or a duplicate rule_id.  ``iterations`` is ProxySQL's
        ``mysql-query_processor_iterations``.  ``digest_cache_size`` bounds the
        per-digest cache of digest-level filter results (an LRU).
        """
        if iterations < 0:
            raise ValueError("iterations must not be negative")
        self.iterations = iterations
        ordered = sorted(rules, key=lambda r: r.rule_id)
        by_id: dict[int, QueryRule] = {}
        for rule in ordered:
            if rule.rule_id in by_id:
                other = by_id[rule.rule_id]
                raise ConfigError(
                    f"rule_id {rule.rule_id} is defined twice: here and at {other.where()}",
                    file=rule.source,
                    line=rule.line,
                    key="rule_id",
                )
            by_id[rule.rule_id] = rule
        self._rules = tuple(ordered)
        self._by_id = by_id
        active: list[_Compiled] = []
        for rule in ordered:
            report = _Reporter(
                lambda message, key, _r=rule: ConfigError(message, file=_r.source, line=_r.line, key=key),
                rule.rule_id,
            )
            compiled = _Compiled(rule, len(active), report)  # validates inactive rules too
            if rule.active:
                active.append(compiled)
        self._active = tuple(active)
        by_flag: dict[int, list[_Compiled]] = {}
        for c in active:
            by_flag.setdefault(c.flag_in, []).append(c)
        self._by_flag = {f: tuple(cs) for f, cs in by_flag.items()}
        self._positions = {f: [c.position for c in cs] for f, cs in by_flag.items()}
        self._hits = [0] * len(active)
        # digest hash -> (its classification, bitmask by rule position of the rules whose
        # digest-level filters pass for that digest)
        self._masks: OrderedDict[int, tuple[Classification, int]] = OrderedDict()
        self._mask_capacity = max(1, digest_cache_size)
        # (flag_in, digest mask) -> (decision, positions of the rules that matched), for walks
        # that only met rules without session-level filters or rewrites: such a walk depends
        # on nothing else, so its decision is reused and only the hit counters are bumped
        self._plans: dict[tuple[int, int], tuple[RouteDecision, tuple[int, ...]]] = {}

    # -- inspection --------------------------------------------------------

    @property
    def rules(self) -> tuple[QueryRule, ...]:
        """All rules, active or not, by rule_id."""
        return self._rules

    @property
    def active_rules(self) -> tuple[QueryRule, ...]:
        return tuple(c.rule for c in self._active)

    def rule(self, rule_id: int) -> QueryRule:
        """The rule with ``rule_id`` (KeyError if there is none)."""
        return self._by_id[rule_id]

    def __len__(self) -> int:
        return len(self._rules)

    def __iter__(self):  # noqa: ANN204
        return iter(self._rules)

    def __repr__(self) -> str:
        return f"<RuleSet rules={len(self._rules)} active={len(self._active)} flags={sorted(self._by_flag)}>"

    def rows(self) -> list[dict[str, Any]]:
        """All rules as ``mysql_query_rules`` rows."""
        return [r.to_row() for r in self._rules]

    def hits(self) -> dict[int, int]:
        """Hit counters of the active rules: rule_id -> hits (``stats_mysql_query_rules``)."""
        return {c.rule_id: self._hits[c.position] for c in self._active}

    def reset_hits(self) -> None:
        self._hits = [0] * len(self._active)

    # -- evaluation --------------------------------------------------------

    def _digest_mask(self, ctx: RuleContext) -> int:
        """Bitmask of the rules whose digest-level filters pass for this statement.

        Cached per digest hash when the context has the digest hash, text and
        classification, for that very classification object: the classifier hands out one
        object per digest, except for a statement whose digest stands for a prefix only
        (``query_digests_max_query_length``), which is classified afresh, so a statement that
        shares a capped digest with another is never judged by the other's classification.
        """
        h = ctx.digest_hash
        cls = ctx.classification
        cacheable = h is not None and ctx.digest_text is not None and cls is not None
        if cacheable and cls.bits & _READ_ONLY_TRANSACTION:
            h = (h, _READ_ONLY_TRANSACTION)  # the session marks a digest's statement as opening one
        if cacheable:
            masks = self._masks
            entry = masks.get(h)  # type: ignore[arg-type]
            if entry is not None and entry[0] is cls:
                masks.move_to_end(h)  # type: ignore[arg-type]
                return entry[1]
        mask = 0
        for c in self._active:
            if c.dmatch is None or c.dmatch(ctx):
                mask |= 1 << c.position
        if cacheable:
            masks[h] = (cls, mask)  # type: ignore[index]
            if len(masks) > self._mask_capacity:
                masks.popitem(last=False)
        return mask

    def evaluate(self, ctx: RuleContext, *, count_hits: bool = True) -> RouteDecision:
        """Walk the rules for one statement (see the module docstring).

        ``count_hits=False`` leaves the hit counters alone (for ``explain``).
        """
        return self._evaluate(ctx, count_hits)[0]

    def evaluate_for_session(self, ctx: RuleContext) -> tuple[RouteDecision, tuple[int, ...] | None]:
        """``evaluate`` (hits counted), and whether its decision holds for every statement of the same
        session with the same digest, flag and schema: then the rule positions to pass to
        ``count_hits`` when the session reuses it, else None (a rule read the query text)."""
        decision, positions, per_session = self._evaluate(ctx, True)
        return decision, positions if per_session else None

    def count_hits(self, positions: tuple[int, ...]) -> None:
        """Count a reused decision's matched rules (see ``evaluate_for_session``)."""
        hits = self._hits
        for position in positions:
            hits[position] += 1

    def _evaluate(self, ctx: RuleContext, count_hits: bool) -> tuple[RouteDecision, tuple[int, ...], bool]:
        flag = ctx.flag_in
        seq = self._by_flag.get(flag)
        if seq is None:
            return _no_decision(flag), (), True
        mask = self._digest_mask(ctx)
        key = (flag, mask)
        plan = self._plans.get(key)
        if plan is not None:
            if count_hits:
                hits = self._hits
                for position in plan[1]:
                    hits[position] += 1
            return plan[0], plan[1], True
        per_session = True  # no rule of the walk looked at the query text
        query = ctx.query
        values: list[Any] | None = None
        matched: list[int] = []
        positions: list[int] = []
        reusable = True  # no rule of the walk looked at anything but the digest
        new_query: str | None = None
        iterations = self.iterations
        hits = self._hits
        k = 0
        while k < len(seq):
            c = seq[k]
            k += 1
            if not (mask >> c.position) & 1:
                continue
            smatch = c.smatch
            if smatch is not None:
                reusable = False
                if c.reads_query:
                    per_session = False
                if not smatch(ctx, query if new_query is None else new_query):
                    continue
            if count_hits:
                hits[c.position] += 1
            matched.append(c.rule_id)
            positions.append(c.position)
            if values is None:
                values = list(_NO_DECISION_VALUES)
            for index, value in c.actions:
                values[index] = value
            if c.rewrite is not None:
                reusable = False
                regex, template, count = c.rewrite
                new_query = regex.sub(template, query if new_query is None else new_query, count)
            if c.flag_out is not None:
                flag = c.flag_out
            if c.apply:
                break
            if c.flag_out is not None:
                seq = self._by_flag.get(flag, ())
                if iterations > 0:
                    iterations -= 1
                    k = 0  # restart from the first rule with the new flag
                else:
                    # continue after the current rule, among rules with the new flag
                    k = bisect.bisect_right(self._positions.get(flag, ()), c.position)
        if values is None:
            decision = _no_decision(flag)
        else:
            values[1] = tuple(matched)
            values[2] = new_query
            values[-1] = flag
            decision = RouteDecision._make(values)
        done = tuple(positions)
        if reusable:
            plans = self._plans
            if len(plans) >= _MAX_PLANS:
                plans.clear()
            plans[key] = (decision, done)
        return decision, done, per_session


_MAX_PLANS = 4096


_NO_DECISIONS: dict[int, RouteDecision] = {}


def _no_decision(flag: int) -> RouteDecision:
    d = _NO_DECISIONS.get(flag)
    if d is None:
        d = RouteDecision(final_flag=flag)
        if len(_NO_DECISIONS) < 1024:
            _NO_DECISIONS[flag] = d
    return d


# ---------------------------------------------------------------------------
# Loading


def _rule_from_row(
    row: Any, error: Callable[[str, str | None], ConfigError], source: str | None, line: int | None
) -> QueryRule:
    if not isinstance(row, dict):
        raise error(f"a rule must be a table of columns, not {_describe(row)}", None)
    rule_id = row.get("rule_id")
    if rule_id is None:
        for k, v in row.items():
            if isinstance(k, str) and k.lower() == "rule_id":
                rule_id = v
    report = _Reporter(error, rule_id if isinstance(rule_id, int) and not isinstance(rule_id, bool) else None)
    values = _validate_row(row, report)
    rule = QueryRule(**values, source=source, line=line)
    _Compiled(rule, 0, report)  # regexes, modifiers, rewrite: reported at the column's line
    return rule


_ErrorFn = Callable[[str, "str | None"], ConfigError]


def _check_hostgroups(rule: QueryRule, known: set[int], error: _ErrorFn) -> None:
    if not rule.active:
        return  # inactive rules are not loaded into the runtime (as in ProxySQL)
    for key in _HOSTGROUP_COLUMNS:
        hg = getattr(rule, key)
        if hg is not None and hg not in known:
            raise error(
                f"rule_id {rule.rule_id}: {key} {hg} is not a configured hostgroup "
                f"(known: {', '.join(map(str, sorted(known))) or 'none'})",
                key,
            )


def _checked_ruleset(
    entries: list[tuple[QueryRule, _ErrorFn]], known: set[int] | None, iterations: int
) -> RuleSet:
    """The RuleSet of validated rules, after the checks that look at all of them (duplicate
    rule_id, unknown hostgroups), each reported at its rule's file, line and column."""
    seen: dict[int, QueryRule] = {}
    for rule, error in entries:
        other = seen.get(rule.rule_id)
        if other is not None:
            raise error(f"rule_id {rule.rule_id} is defined twice: here and at {other.where()}", "rule_id")
        seen[rule.rule_id] = rule
        if known is not None:
            _check_hostgroups(rule, known, error)
    return RuleSet([rule for rule, _ in entries], iterations=iterations)


def parse_rules_file(path: Path) -> list[QueryRule]:
    """Read one rules file: ``[[mysql_query_rules]]`` tables only."""
    return [rule for rule, _ in _rules_of_doc(load_toml(path), only_rules=True)]


def _rules_of_doc(doc: TomlDoc, *, only_rules: bool) -> list[tuple[QueryRule, _ErrorFn]]:
    """The ``[[mysql_query_rules]]`` of a TOML document, each with the builder of its errors.
    ``only_rules``: the document is a rules file, where nothing else may be."""
    data = doc.data
    path = doc.path
    for key in data if only_rules else ():
        if key != TABLE:
            raise ConfigError(
                f"unknown table or key {key!r} (a rules file holds [[{TABLE}]] tables)",
                file=str(path),
                line=doc.line_of(key, 0) or doc.line_of(key) or doc.line_of("", None, key),
                key=key,
            )
    rows = data.get(TABLE, [])
    if not isinstance(rows, list):
        raise doc.error(f"{TABLE} must be an array of tables: write [[{TABLE}]]", "", None, TABLE)
    out = []
    for index, row in enumerate(rows):
        line = doc.line_of(TABLE, index)

        def error(message: str, key: str | None, _i: int = index) -> ConfigError:
            return doc.error(message, TABLE, _i, key)

        out.append((_rule_from_row(row, error, str(path), line), error))
    return out


def load_rules(
    rules_dir: Path | str | None,
    known_hostgroups: set[int] | None = None,
    *,
    iterations: int = 0,
    config_file: Path | str | None = None,
) -> RuleSet:
    """Load ``rules_dir/*.toml`` (in sorted file name order) into a RuleSet.

    ``config_file``: the ``[[mysql_query_rules]]`` of the main configuration file come first
    (its other tables are the config loader's); ``rules_dir`` None: no rules directory.
    Raises :class:`ConfigError` naming the file, line, column and rule_id for
    an invalid regex, unknown column, wrong type, unknown hostgroup (when
    ``known_hostgroups`` is given; checked for active rules only), duplicate
    rule_id (also across files) or invalid ``match_kind``/``match_flags``.
    """
    entries: list[tuple[QueryRule, _ErrorFn]] = []
    if config_file is not None:
        entries += _rules_of_doc(load_toml(config_file), only_rules=False)
    if rules_dir is not None:
        rules_dir = Path(rules_dir)
        if not rules_dir.is_dir():
            raise ConfigError("rules directory does not exist or is not a directory", file=str(rules_dir))
        for path in sorted(rules_dir.glob("*.toml"), key=lambda p: p.name):
            if path.is_file():
                entries += _rules_of_doc(load_toml(path), only_rules=True)
    return _checked_ruleset(entries, known_hostgroups, iterations)


def rules_from_rows(
    rows: Iterable[dict[str, Any]],
    source: str,
    known_hostgroups: set[int] | None = None,
    *,
    iterations: int = 0,
) -> RuleSet:
    """Build a RuleSet from ``mysql_query_rules`` rows (column -> value, None = NULL).

    Same validation as :func:`load_rules`; errors name ``source`` and the
    rule_id.  ``match_kind``/``match_tables``/``match_flags`` may be lists or
    comma-separated strings; ``digest`` an int or ``'0x...'`` text.
    """
    entries = []
    for index, row in enumerate(rows):

        def error(message: str, key: str | None, _i: int = index) -> ConfigError:
            return ConfigError(message, file=source, key=f"{TABLE}[{_i}].{key}" if key else f"{TABLE}[{_i}]")

        entries.append((_rule_from_row(row, error, source, None), error))
    return _checked_ruleset(entries, known_hostgroups, iterations)
