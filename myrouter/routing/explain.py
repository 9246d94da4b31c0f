"""Explain how a statement would be routed: digest, classification, rules.

Used by ``myrouter explain --config PATH "SQL"`` (text via
:func:`format_explain`) and, later, by the admin interface
(:meth:`ExplainResult.rows`).  Explaining never changes rule hit counters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .classifier import Classification, Classifier
from .digest import Digester, format_digest
from .rules import QueryRule, RouteDecision, RuleContext, RuleSet

__all__ = ["ExplainResult", "MatchedRule", "explain", "format_explain"]


@dataclass(frozen=True, slots=True)
class MatchedRule:
    """A rule that matched, in evaluation order, with the actions it set."""

    rule_id: int
    actions: dict[str, Any]
    comment: str | None
    where: str


@dataclass(frozen=True, slots=True)
class ExplainResult:
    sql: str
    digest: int
    digest_text: str
    classification: Classification
    matched_rules: tuple[MatchedRule, ...]
    decision: RouteDecision
    default_hostgroup: int
    username: str | None
    schemaname: str | None

    @property
    def digest_hex(self) -> str:
        return format_digest(self.digest)

    @property
    def final_hostgroup(self) -> int:
        """Where the statement goes: the rules' choice or the default hostgroup."""
        return self.decision.hostgroup(self.default_hostgroup)

    @property
    def outcome(self) -> str:
        """``route``, ``error`` (error_msg) or ``ok`` (OK_msg)."""
        if self.decision.error_msg is not None:
            return "error"
        if self.decision.OK_msg is not None:
            return "ok"
        return "route"

    def rows(self) -> list[tuple[str, str]]:
        """(field, value) rows, for an admin-interface result set."""
        c = self.classification
        out = [
            ("digest", self.digest_hex),
            ("digest_text", self.digest_text),
            ("kind", c.kind.label),
            ("command", c.command),
            ("tables", ",".join(sorted(c.tables))),
            ("flags", ",".join(c.flag_names())),
            ("statement_count", str(c.statement_count)),
            ("unparsable", "1" if c.is_unparsable else "0"),
        ]
        if c.parse_error:
            out.append(("parse_error", c.parse_error))
        if c.set_variables is None:
            out.append(("set_variables", "(not understood)"))
        elif c.set_variables:
            out.append(
                ("set_variables", "; ".join(f"{v.scope} {v.name} = {v.value}" for v in c.set_variables))
            )
        if c.schema:
            out.append(("use_schema", c.schema))
        for m in self.matched_rules:
            actions = ", ".join(f"{k}={v!r}" for k, v in m.actions.items())
            out.append((f"rule {m.rule_id}", actions + (f"  # {m.comment}" if m.comment else "")))
        d = self.decision
        if d.rewritten_query is not None:
            out.append(("rewritten_query", d.rewritten_query))
        for name in ("cache_ttl", "timeout", "retries", "delay", "mirror_hostgroup", "mirror_flagOUT",
                     "next_query_flagIN", "multiplex", "sticky_conn", "log", "causal_reads"):
            value = getattr(d, name)
            if value is not None:
                out.append((name, str(value)))
        if d.error_msg is not None:
            out.append(("error_msg", d.error_msg))
        if d.OK_msg is not None:
            out.append(("OK_msg", d.OK_msg))
        source = "rules" if d.destination_hostgroup is not None else "default_hostgroup"
        out.append(("outcome", self.outcome))
        out.append(("hostgroup", f"{self.final_hostgroup} ({source})"))
        return out


def explain(
    sql: str,
    *,
    username: str | None,
    schemaname: str | None,
    rules: RuleSet,
    classifier: Classifier | None = None,
    default_hostgroup: int,
    client_addr: str | None = "127.0.0.1",
    proxy_addr: str | None = None,
    proxy_port: int | None = None,
    flag_in: int = 0,
    digester: Digester | None = None,
) -> ExplainResult:
    """Digest (with ``digester``: the proxy's mysql-query_digests_* limits), classify and
    evaluate ``sql`` as a session would, without side effects on the rule hit counters."""
    digester = digester or Digester()
    text, h = digester(sql)
    cls = (classifier or Classifier(cache_size=1)).classify(sql, h, remember=not digester.capped(sql))
    ctx = RuleContext(
        username=username,
        schemaname=schemaname,
        client_addr=client_addr,
        proxy_addr=proxy_addr,
        proxy_port=proxy_port,
        flag_in=flag_in,
        digest_hash=h,
        digest_text=text,
        query=sql,
        classification=cls,
    )
    decision = rules.evaluate(ctx, count_hits=False)
    matched = tuple(_matched(rules.rule(rid)) for rid in decision.matched_rules)
    return ExplainResult(
        sql=sql,
        digest=h,
        digest_text=text,
        classification=cls,
        matched_rules=matched,
        decision=decision,
        default_hostgroup=default_hostgroup,
        username=username,
        schemaname=schemaname,
    )


def _matched(rule: QueryRule) -> MatchedRule:
    return MatchedRule(rule_id=rule.rule_id, actions=rule.actions(), comment=rule.comment, where=rule.where())


def format_explain(result: ExplainResult) -> str:
    """Human-readable text for the CLI."""
    c = result.classification
    lines = [
        f"statement:   {_one_line(result.sql)}",
        f"user:        {result.username or '-'}   schema: {result.schemaname or '-'}",
        f"digest:      {result.digest_hex}",
        f"digest_text: {result.digest_text}",
        f"kind:        {c.kind.label}" + (f"   command: {c.command}" if c.command else ""),
        f"tables:      {', '.join(sorted(c.tables)) or '-'}",
        f"flags:       {', '.join(c.flag_names()) or '-'}",
    ]
    if c.statement_count > 1:
        lines.append(f"statements:  {c.statement_count}")
    if c.is_unparsable:
        lines.append("unparsable:  yes (classified as a write)")
    if c.parse_error:
        lines.append(f"parse error: {c.parse_error}")
    if c.set_variables is None:
        lines.append("set:         (not understood: session state unknown)")
    else:
        for v in c.set_variables:
            lines.append(f"set:         {v.scope} {v.name} = {v.value}")
    if c.schema:
        lines.append(f"use schema:  {c.schema}")
    if result.matched_rules:
        lines.append("matched rules (in order):")
        for m in result.matched_rules:
            actions = ", ".join(f"{k}={v!r}" for k, v in m.actions.items()) or "(no actions)"
            lines.append(f"  rule {m.rule_id} [{m.where}]: {actions}")
            if m.comment:
                lines.append(f"      # {m.comment}")
    else:
        lines.append("matched rules: none")
    d = result.decision
    if d.rewritten_query is not None:
        lines.append(f"rewritten:   {_one_line(d.rewritten_query)}")
    extras = [
        f"{name}={getattr(d, name)!r}"
        for name in ("cache_ttl", "cache_empty_result", "timeout", "retries", "delay", "mirror_hostgroup",
                     "mirror_flagOUT", "next_query_flagIN", "multiplex", "sticky_conn", "log", "causal_reads")
        if getattr(d, name) is not None
    ]
    if extras:
        lines.append("settings:    " + ", ".join(extras))
    if d.error_msg is not None:
        lines.append(f"result:      ERROR returned to the client: {d.error_msg}")
    elif d.OK_msg is not None:
        lines.append(f"result:      OK returned to the client: {d.OK_msg}")
    source = "from rules" if d.destination_hostgroup is not None else "user's default_hostgroup"
    lines.append(f"hostgroup:   {result.final_hostgroup} ({source})")
    return "\n".join(lines)


def _one_line(sql: str) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= 200 else text[:197] + "..."
