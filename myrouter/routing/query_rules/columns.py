"""The schema of a ``mysql_query_rules`` row: every column with its type and range, written once
(with the field types of :mod:`myrouter.schema`; here, beside the rules, because the columns
``match_kind`` and ``match_flags`` name the classifier's kinds and flags).

:class:`QueryRuleColumns` is the base of :class:`myrouter.routing.rules.QueryRule` (which adds
where the rule was defined and what the query processor needs). ``None`` is SQL NULL (column
not set). What the schema checks here is each column on its own (types, ranges, names in
``match_kind``/``match_flags``/``match_tables``, JSON ``attributes``); what needs the whole rule
(regexes compile, ``re_modifiers``, the rewrite template, hostgroups exist, unique rule_id) is
the query rules' (:mod:`myrouter.routing.rules`).

Messages follow the rules' style (``rule_id 7: destination_hostgroup must not be negative``):
:func:`build_rule` turns the first refused column into a :class:`SchemaError` naming it.
"""

import json
import re
from functools import partial
from typing import Annotated, Any

from annotated_types import Ge, Le
from pydantic import AfterValidator, BeforeValidator, Strict, ValidationError
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError

from myrouter.schema.fields import Int, SchemaError, bounds

from ..classify.classification import StatementFlag, StatementKind
from ..digest import parse_digest

__all__ = ["QueryRuleColumns", "build_rule", "KIND_NAMES", "FLAG_NAMES", "CAUSAL_READS", "describe"]

#: ``match_kind`` names -> kinds
KIND_NAMES: dict[str, StatementKind] = {k.label: k for k in StatementKind}
#: ``match_flags`` names -> flags (including the ``side_effect`` group)
FLAG_NAMES: dict[str, StatementFlag] = {
    name.lower(): member for name, member in StatementFlag.__members__.items() if member.value
}
CAUSAL_READS = ("off", "session", "global")
_TABLE_NAME_RE = re.compile(r"[^.\s`]+(?:\.[^.\s`]+)?")


def describe(value: Any) -> str:
    """How a rule message names a value of the wrong type: ``a string ('1')``, ``a boolean (true)``..."""
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return f"{type(value).__name__} ({value!r})"


def _refuse(message: str) -> PydanticCustomError:
    return PydanticCustomError("rule", message.replace("{", "{{").replace("}", "}}"))


def _flag_int(value: Any) -> Any:
    """0/1 (and 0/1/2) columns take TOML booleans as 0/1."""
    return int(value) if isinstance(value, bool) else value


def _digest(value: Any) -> int:
    try:
        return parse_digest(value)
    except (TypeError, ValueError) as e:
        raise _refuse(f"digest: {e}") from None


def _names(key: str, known: Any, value: Any) -> tuple[str, ...]:
    """A list of names, or one string with comma-separated names; lower case, without repeats."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, (list, tuple)):
        items = []
        for v in value:
            if not isinstance(v, str):
                raise _refuse(f"{key} must be a list of strings, found {describe(v)}")
            items.append(v.strip())
    else:
        raise _refuse(f"{key} must be a string or a list of strings, not {describe(value)}")
    names = tuple(dict.fromkeys(v.lower() for v in items if v))
    if not names:
        raise _refuse(f"{key} is empty")
    for name in names:
        if known == "tables":
            if not _TABLE_NAME_RE.fullmatch(name):
                raise _refuse(f"match_tables: {name!r} is not a table name ('table' or 'schema.table', unquoted)")
        elif name not in known:
            what = "kind" if key == "match_kind" else "flag"
            raise _refuse(f"{key}: unknown {what} {name!r} (known: {', '.join(known)})")
    return names


def _causal_reads(value: Any) -> str:
    if not isinstance(value, str) or value.lower() not in CAUSAL_READS:
        raise _refuse(f"causal_reads must be one of {', '.join(CAUSAL_READS)}")
    return value.lower()


def _json(value: str) -> str:
    if value.strip():
        try:
            json.loads(value)
        except ValueError as e:
            raise _refuse(f"attributes must be JSON: {e}") from None
    return value


Flag01 = Annotated[int, BeforeValidator(_flag_int), Strict(), Ge(0), Le(1)]
Multiplex = Annotated[int, BeforeValidator(_flag_int), Strict(), Ge(0), Le(2)]
Text = Annotated[str, Strict()]


def _names_field(key: str, known: Any) -> Any:
    return Annotated[tuple[str, ...], BeforeValidator(partial(_names, key, known))]


MatchKind = _names_field("match_kind", KIND_NAMES)
MatchTables = _names_field("match_tables", "tables")
MatchFlags = _names_field("match_flags", FLAG_NAMES)


@dataclass(frozen=True, slots=True)
class QueryRuleColumns:
    """The columns of ``mysql_query_rules`` (ProxySQL's, then myrouter's own), with their defaults."""

    rule_id: Int(1)
    active: Flag01 = 0
    username: Text | None = None
    schemaname: Text | None = None
    flagIN: Int(0) = 0  # noqa: N815 - ProxySQL's column name
    client_addr: Text | None = None
    proxy_addr: Text | None = None
    proxy_port: Int(1, 65535) | None = None
    digest: Annotated[int, BeforeValidator(_digest)] | None = None
    match_digest: Text | None = None
    match_pattern: Text | None = None
    negate_match_pattern: Flag01 = 0
    re_modifiers: Text = "CASELESS"
    flagOUT: Int(0) | None = None  # noqa: N815
    replace_pattern: Text | None = None
    destination_hostgroup: Int(0) | None = None
    cache_ttl: Int(1) | None = None
    cache_empty_result: Flag01 | None = None
    cache_timeout: Int(0) | None = None
    reconnect: Flag01 | None = None
    timeout: Int(0) | None = None
    retries: Int(0, 1000) | None = None
    delay: Int(0) | None = None
    next_query_flagIN: Int(0) | None = None  # noqa: N815
    mirror_flagOUT: Int(0) | None = None  # noqa: N815
    mirror_hostgroup: Int(0) | None = None
    error_msg: Text | None = None
    OK_msg: Text | None = None  # noqa: N815
    sticky_conn: Flag01 | None = None
    multiplex: Multiplex | None = None
    gtid_from_hostgroup: Int(0) | None = None
    log: Flag01 | None = None
    apply: Flag01 = 0
    attributes: Annotated[str, Strict(), AfterValidator(_json)] | None = None
    comment: Text | None = None
    # myrouter's own columns
    match_kind: MatchKind | None = None
    match_tables: MatchTables | None = None
    match_flags: MatchFlags | None = None
    causal_reads: Annotated[str, BeforeValidator(_causal_reads)] | None = None


def _range_message(key: str, lo: int | None, hi: int | None, value: Any) -> str:
    if hi is None:
        return f"{key} must be a positive integer" if lo == 1 else f"{key} must not be negative"
    if (lo, hi) == (0, 1):
        return f"{key} must be 0 or 1, not {value}"
    if (lo, hi) == (0, 2):
        return f"{key} must be 0, 1 or 2, not {value}"
    return f"{key} must be between {lo} and {hi}"


def _message(cls: type, key: str, error: dict[str, Any]) -> str:
    kind, value = error["type"], error.get("input")
    if kind in ("missing", "missing_argument"):
        return f"a rule needs a {key}"
    if kind == "int_type":
        return f"{key} must be an integer, not {describe(value)}"
    if kind == "string_type":
        return f"{key} must be a string, not {describe(value)}"
    if kind in ("greater_than_equal", "less_than_equal"):
        return _range_message(key, *bounds(cls, key), value)
    return error["msg"]


def build_rule(cls: type, columns: dict[str, Any], **extra: Any) -> Any:
    """``cls(**columns, **extra)`` (a QueryRuleColumns); SchemaError naming the first refused column."""
    try:
        return cls(**columns, **extra)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    order = {name: i for i, name in enumerate(cls.__dataclass_fields__)}
    first = min(errors, key=lambda e: order.get(str(e["loc"][0]) if e["loc"] else "", len(order)))
    key = str(first["loc"][0]) if first["loc"] else ""
    missing = first["type"] in ("missing", "missing_argument")
    raise SchemaError(_message(cls, key, first), None if missing else key) from None
