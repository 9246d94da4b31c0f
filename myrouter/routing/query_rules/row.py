"""A query rule as a row, and what the rules see and decide for one statement.

:class:`QueryRule` (one ``mysql_query_rules`` row; its columns' types, ranges and defaults are
the schema's), ``COLUMNS`` (their names and order), :class:`RuleContext` (what a rule can look
at for one statement) and :class:`RouteDecision` (the outcome of the rules for it).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, NamedTuple

from pydantic.dataclasses import dataclass

from .columns import QueryRuleColumns

from ..classify.classification import Classification
from ..digest import format_digest

TABLE = "mysql_query_rules"


@dataclass(frozen=True, slots=True)
class QueryRule(QueryRuleColumns):
    """One row of ``mysql_query_rules`` (ProxySQL's columns, plus myrouter's: their types, ranges and
    defaults are the schema's, :class:`myrouter.routing.query_rules.columns.QueryRuleColumns`).

    ``None`` is SQL NULL (column not set).  ``source``/``line`` say where the
    rule was defined (for messages); they are not columns.
    """

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
