"""The evaluation engine: :class:`RuleSet`, an immutable compiled snapshot of rules.

:meth:`RuleSet.evaluate` walks the active rules for one statement (the semantics are in
:mod:`myrouter.routing.rules`) and returns a :class:`RouteDecision`; ``evaluate_for_session``
also says whether a session may reuse the decision, and ``count_hits`` counts a reused one.
Digest-level filter results are cached per digest, and the decisions of walks that looked at
nothing but the digest per (flag, digest mask).
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from typing import Any, Iterable

from myrouter.errors import ConfigError

from ..classify.classification import Classification, StatementFlag
from .compiled import _Compiled, _prefixed, _Reporter
from .row import QueryRule, RouteDecision, RuleContext

_READ_ONLY_TRANSACTION = StatementFlag.READ_ONLY_TRANSACTION.value
_NO_DECISION_VALUES = tuple(RouteDecision())


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
                lambda message, key, rule_id, _r=rule: ConfigError(
                    _prefixed(message, rule_id), file=_r.source, line=_r.line, key=key),
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

    def __reduce__(self) -> tuple:
        """Pickled as its rules (a worker process compiles them again; hit counters start at 0)."""
        return (_rebuilt, (self._rules, self.iterations, self._mask_capacity))

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
        """Walk the rules for one statement (see the docstring of :mod:`myrouter.routing.rules`).

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


def _rebuilt(rules: tuple[QueryRule, ...], iterations: int, digest_cache_size: int) -> RuleSet:
    return RuleSet(rules, iterations=iterations, digest_cache_size=digest_cache_size)


def _no_decision(flag: int) -> RouteDecision:
    d = _NO_DECISIONS.get(flag)
    if d is None:
        d = RouteDecision(final_flag=flag)
        if len(_NO_DECISIONS) < 1024:
            _NO_DECISIONS[flag] = d
    return d
