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

This module holds that loading and the validation of a row; the rest is in
:mod:`myrouter.routing.query_rules`: the rule row, context and decision (``row``), a
rule compiled for evaluation (``compiled``) and the evaluation engine (``ruleset``:
:class:`RuleSet`). Every public name is importable from here.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Callable, Iterable

from myrouter.errors import ConfigError
from myrouter.schema import SchemaError
from myrouter.tomlutil import TomlDoc, load_toml

from .query_rules.columns import FLAG_NAMES, KIND_NAMES, build_rule, describe
from .query_rules.compiled import _Compiled, _ErrorFn, _prefixed, _Reporter
from .query_rules.row import _COLUMN_BY_LOWER, COLUMNS, TABLE, QueryRule, RouteDecision, RuleContext
from .query_rules.ruleset import RuleSet

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


# ---------------------------------------------------------------------------
# Validation


_HOSTGROUP_COLUMNS = ("destination_hostgroup", "mirror_hostgroup", "gtid_from_hostgroup")


def _validate_row(row: dict[str, Any], report: _Reporter, source: str | None, line: int | None) -> QueryRule:
    """The rule a row describes: column names matched case-insensitively (as SQL does), NULLs left
    out, each value checked by the schema; the first problem reported at its column."""
    values: dict[str, Any] = {}
    for raw_key, value in row.items():
        if not isinstance(raw_key, str):
            raise report(f"column names must be strings, not {describe(raw_key)}")
        key = _COLUMN_BY_LOWER.get(raw_key.lower())
        if key is None:
            hint = _close_column(raw_key)
            raise report(
                f"unknown column {raw_key!r}" + (f" (did you mean {hint!r}?)" if hint else ""), raw_key
            )
        if key in values:
            raise report(f"column {key!r} is given twice", raw_key)
        values[key] = value
    columns = {key: value for key, value in values.items() if value is not None}  # SQL NULL: not set
    try:
        return build_rule(QueryRule, columns, source=source, line=line)
    except SchemaError as exc:
        raise report(exc.message, exc.key) from None


def _close_column(name: str) -> str | None:
    found = difflib.get_close_matches(name.lower(), list(_COLUMN_BY_LOWER), n=1, cutoff=0.75)
    return _COLUMN_BY_LOWER[found[0]] if found else None


# ---------------------------------------------------------------------------
# Loading


def _rule_from_row(row: Any, error: _ErrorFn, source: str | None, line: int | None) -> QueryRule:
    if not isinstance(row, dict):
        raise error(f"a rule must be a table of columns, not {describe(row)}", None, None)
    rule_id = row.get("rule_id")
    if rule_id is None:
        for k, v in row.items():
            if isinstance(k, str) and k.lower() == "rule_id":
                rule_id = v
    report = _Reporter(error, rule_id if isinstance(rule_id, int) and not isinstance(rule_id, bool) else None)
    rule = _validate_row(row, report, source, line)
    _Compiled(rule, 0, report)  # regexes, modifiers, rewrite: reported at the column's line
    return rule


def _check_hostgroups(rule: QueryRule, known: set[int], error: _ErrorFn) -> None:
    if not rule.active:
        return  # inactive rules are not loaded into the runtime (as in ProxySQL)
    for key in _HOSTGROUP_COLUMNS:
        hg = getattr(rule, key)
        if hg is not None and hg not in known:
            raise error(
                f"{key} {hg} is not a configured hostgroup (known: {', '.join(map(str, sorted(known))) or 'none'})",
                key, rule.rule_id,
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
            raise error(f"rule_id {rule.rule_id} is defined twice: here and at {other.where()}", "rule_id", None)
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

        def error(message: str, key: str | None, rule_id: Any, _i: int = index) -> ConfigError:
            return doc.error(_prefixed(message, rule_id), TABLE, _i, key)

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
    error: Callable[[int, str, str | None, Any], Exception] | None = None,
) -> RuleSet:
    """Build a RuleSet from ``mysql_query_rules`` rows (column -> value, None = NULL).

    Same validation as :func:`load_rules`; errors name ``source`` and the
    rule_id.  ``match_kind``/``match_tables``/``match_flags`` may be lists or
    comma-separated strings; ``digest`` an int or ``'0x...'`` text.
    ``error(row index, message, column, rule_id)`` builds the exception to raise
    instead of a ConfigError (the admin interface names the row by its key columns).
    """
    entries = []
    for index, row in enumerate(rows):

        def row_error(message: str, key: str | None, rule_id: Any, _i: int = index) -> Exception:
            if error is not None:
                return error(_i, message, key, rule_id)
            return ConfigError(_prefixed(message, rule_id), file=source,
                               key=f"{TABLE}[{_i}].{key}" if key else f"{TABLE}[{_i}]")

        entries.append((_rule_from_row(row, row_error, source, None), row_error))
    return _checked_ruleset(entries, known_hostgroups, iterations)
