"""COM_QUERY: the plan memo, the plain path, and the general path (rule actions, read-only
transactions, causal reads, the query cache, mirroring, statement timeouts, the query log).
"""

from __future__ import annotations

import dataclasses
import time

import trio

from ..backend.gtid import parse_gtids
from ..backend.connection import BackendConnection
from ..net.stream import ConnectionLost
from ..protocol.errors import MalformedPacket, MySQLError
from ..protocol.response import ResponseKind, ResponseTracker
from ..routing.classifier import Classification, StatementFlag as _F, StatementKind
from ..routing.digest import format_digest
from ..stats.digests import affected_rows
from ..stats.querylog import now_us
from ..routing.rules import RouteDecision, RuleContext
from ..runtime.services import SessionServices
from . import proxyids
from .decisions import (
    SCHEMA_CHANGED,
    VARS_CHANGED,
)
from .common import (
    ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION,
    ER_NOT_SUPPORTED_YET,
    _ACTING,
    _AUTOCOMMIT,
    _CONNECTION_ID,
    _DEFAULT_QUERY_TIMEOUT,
    _DYNAMIC_SQL,
    _KILL,
    _KILL_RE,
    _KILL_WORD,
    _LOCAL_ANSWERS,
    _MAYBE_KILL,
    _NOT_PLAIN,
    _PROCESSLIST,
    _READ_ONLY_TRANSACTION,
    _SESSION_IDS,
    _SESSION_PLANS,
    _STATEFUL,
    _STATEMENT_MODE_REFUSED,
    log,
)

from .backends import _state_error


# Transaction statements the data plane may run (see _Plan.plain_trx): not SAVEPOINT, XA, LOCK TABLES...
_PLAIN_TRANSACTION_COMMANDS = frozenset(("BEGIN", "START TRANSACTION", "COMMIT", "ROLLBACK"))


def _plain_decision(decision: RouteDecision) -> bool:
    return all(decision[i] is None for i in _ACTING)


class _Plan:
    """What a session remembers of a digest (``ClientSession._plan``): valid while the rules object,
    flagIN and schema are the ones it was made with."""

    __slots__ = ("rules", "flag_in", "schema", "cls", "decision", "positions", "plain_hg", "plain_trx", "retry_reads")

    def __init__(self, rules, flag_in: int, schema: str | None, cls: Classification, decision: RouteDecision,
                 positions: tuple[int, ...], plain_hg: int | None, retry_reads: bool, plain_trx: bool = False) -> None:
        self.rules = rules
        self.flag_in = flag_in
        self.schema = schema
        self.cls = cls
        self.decision = decision
        self.positions = positions  # rule hit counters to bump on reuse
        self.plain_hg = plain_hg  # the hostgroup when the statement is plain (see _plain_query), else None
        # a lone BEGIN / START TRANSACTION / COMMIT / ROLLBACK that no rule acts on beyond a hostgroup: the data
        # plane runs it where _route sends it, with _transaction_effect worked out as it runs
        self.plain_trx = plain_trx
        self.retry_reads = retry_reads  # a failed read may be retried on another connection

    def retries(self, v) -> int:
        """How many times the statement may be retried on another connection when its own fails
        before any byte reached the client: the rule's ``retries``, else mysql-query_retries_on_failure
        (``v``); none for a statement that is not a stateless read."""
        if not self.retry_reads:
            return 0
        retries = self.decision.retries
        return retries if retries is not None else v.query_retries_on_failure


class QueryMixin:
    """COM_QUERY (a part of ``ClientSession``)."""

    services: SessionServices

    async def _com_query(self, payload: bytes) -> None:
        if payload[1:2] in _MAYBE_KILL and payload[1:32].lstrip()[:4].lower() == b"kill":
            m = _KILL_RE.match(payload, 1)
            if m is not None:
                query_only = (m.group(1) or b"").lower() == b"query"
                await self.local.kill(int(m.group(2)), query_only)
                return
        self.info = payload
        if self.fast_forward:
            if _KILL_WORD.search(payload) and proxyids.mentions_kill(payload[1:].decode("utf-8", "surrogateescape")):
                await self.local.kill_statement(payload[1:].decode("utf-8", "surrogateescape"))
                return
            await self._forward(payload, ResponseKind.RESULT)
            return
        rt = self.services
        sql = payload[1:].decode("utf-8", "surrogateescape")
        digested = self.digested
        if digested is not None and digested[0] is payload:  # the data plane digested it before handing it over
            self.digested = None
            dtext, dhash = digested[1], digested[2]
        else:
            dtext, dhash = rt.digester(sql)
        rules = rt.rules
        plan = self._plans.get(dhash)
        if plan is not None and plan.rules is rules and plan.flag_in == self.flag_in and plan.schema == self.schema \
                and not rt.digester.capped(sql):
            cls = plan.cls
            decision = plan.decision
            rules.count_hits(plan.positions)
            rt.classifier.count_hit()
            if plan.plain_hg is not None and rt.plain_statements and self._routing_is_plain():
                await self._plain_query(payload, plan, dtext, dhash)
                return
        else:
            cls, decision = self._plan(sql, dtext, dhash)
        if cls.bits & _KILL:
            await self.local.kill_statement(sql)  # every KILL form: carried out on proxy sessions, or refused
            return
        if cls.bits & _DYNAMIC_SQL and _KILL_WORD.search(payload):
            proxyids.check_dynamic_kill(sql)
        self.flag_in = decision.next_query_flagIN or 0
        if decision.error_msg is not None:
            await self._send_err(MySQLError(1148, decision.error_msg, "42000"))
            return
        if decision.OK_msg is not None:
            await self._send_ok(info=decision.OK_msg)
            return
        if decision.rewritten_query is not None:
            payload = b"\x03" + decision.rewritten_query.encode("utf-8", "surrogateescape")
            sql = decision.rewritten_query
        flags = cls.bits
        if flags & _LOCAL_ANSWERS and await self.local.local_answer(sql, flags):
            return
        if flags & (_PROCESSLIST | _CONNECTION_ID):
            text = await self.local.session_ids_sql(sql, flags)
            if text is None:
                return  # answered
            payload = b"\x03" + text.encode("utf-8", "surrogateescape")
        if self.statement_mode and (cls.kind is StatementKind.TRANSACTION or flags & _STATEMENT_MODE_REFUSED
                                    or (flags & _F.SET_AUTOCOMMIT.value and not self._autocommit_on(cls))):
            raise MySQLError(ER_NOT_SUPPORTED_YET, f"pool_mode=statement (user '{self.username}') does not support "
                             f"statements that keep state on the backend connection, such as {cls.command or 'this'}:"
                             f" each statement may run on a different connection", "42000")
        if cls.kind is StatementKind.SESSION:
            if self._hold_next_transaction_set(cls, sql):
                await self._send_ok()
                return
            if not self.backends and await self._set_locally(cls):
                return
        read_only_start = self._opens_read_only_transaction(cls, sql)
        if read_only_start:
            hg = self._read_only_hostgroup(cls, decision, sql, dtext, dhash)
        else:
            if self.trx_read_only and cls.kind >= StatementKind.WRITE and not cls.is_unparsable \
                    and self.trx_hg != self.default_hostgroup and not any(t in self.temp_tables for t in cls.tables):
                # what the server says to a write in a read-only transaction (a replica would say 1290)
                raise MySQLError(ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION,
                                 "Cannot execute statement in a READ ONLY transaction", "25006")
            hg = self._route(decision, cls)
        causal = decision.causal_reads or self.causal_reads
        if (causal != "off" and (cls.kind is StatementKind.READ or read_only_start) and hg != self.default_hostgroup
                and hg not in self.backends and self.trx_hg is None):
            gtid = self.last_gtid if causal == "session" else rt.global_gtid()
            if gtid:
                hg = await self._causal_hostgroup(hg, gtid)
        cache_key = None
        if decision.cache_ttl and cls.kind is StatementKind.READ and not flags & _SESSION_IDS:
            cache_key = (self.username, self.schema, sql)
            cached = rt.query_cache.get(cache_key)
            if cached is not None:
                await self.client.send_all(cached)
                return
        if decision.delay:
            await trio.sleep(decision.delay / 1000)
        if decision.mirror_hostgroup is not None:
            rt.mirror(self, payload, decision.mirror_hostgroup)
        stateless_read = cls.kind is StatementKind.READ and not cls.bits & _STATEFUL
        safe_to_retry = stateless_read and self.trx_hg is None and self.status & _AUTOCOMMIT
        prepare = None
        restart = self.ro_restart
        if restart is not None:
            self.ro_restart = None  # only the first statement after START TRANSACTION READ ONLY
            if stateless_read and hg == self.trx_hg:
                safe_to_retry = True
                prepare = self._reopening_read_only(restart, payload)
        if read_only_start and (stateless_read or cls.kind is StatementKind.TRANSACTION):
            safe_to_retry = True  # nothing of the transaction has reached the client yet
        held_sets = self.next_trx_sets[:] if read_only_start else None
        retries = (decision.retries if decision.retries is not None else rt.vars.query_retries_on_failure)
        timeout = decision.timeout
        if timeout is None and rt.vars.default_query_timeout < _DEFAULT_QUERY_TIMEOUT:
            timeout = rt.vars.default_query_timeout
        capture: list[bytes] | None = [] if cache_key is not None else None
        started = now_us() if rt.query_log is not None else 0
        tracker = await self._forward(payload, ResponseKind.RESULT, hostgroup=hg, timeout_ms=timeout,
                                      capture=capture, retries=retries if safe_to_retry else 0, prepare=prepare,
                                      trx_effect=self._transaction_effect(cls, sql))
        if read_only_start and tracker is not None and tracker.error is None:
            self._read_only_started(cls, sql, held_sets)
        if tracker is not None:
            self._account(hg, cls, dtext, dhash, tracker)
        if started and (decision.log or (decision.log is None and rt.vars.eventslog_default_log)):
            self._log_query(started, hg, dtext, dhash, sql, tracker)
        if tracker is None or tracker.error is not None:
            return
        if capture is not None and tracker.results == 1 and (tracker.rows or decision.cache_empty_result != 0):
            rt.query_cache.put(cache_key, b"".join(capture), decision.cache_ttl)
        be = self.backends.get(hg)
        changes = self._after_query(hg, cls, decision, payload, be is not None and be.tracks_variables)
        if changes and be is not None:  # the connection is in the session's new schema / variables
            if changes & SCHEMA_CHANGED:
                be.schema = self.schema
            if changes & VARS_CHANGED:
                be.vars = dict(self.vars)

    def _read_only_hostgroup(self, cls: Classification, decision: RouteDecision, sql: str, dtext: str,
                             dhash: int) -> int:
        """Where a read-only transaction runs, as a whole: what the rules say of its first statement
        with the ``read_only_transaction`` flag (the shipped rules: the readers)."""
        if not cls.bits & _READ_ONLY_TRANSACTION:
            cls = dataclasses.replace(cls, flags=cls.flags | _F.READ_ONLY_TRANSACTION)
            decision, _ = self.services.rules.evaluate_for_session(RuleContext(
                self.username, self.schema, self.client_host, self.proxy_host, self.proxy_port, self.flag_in,
                dhash, dtext, sql, cls,
            ))
        hg = decision.destination_hostgroup
        return self.default_hostgroup if hg is None else hg

    def _read_only_started(self, cls: Classification, sql: str, held_sets: list[str] | None) -> None:
        """A read-only transaction is open on ``trx_hg``: count it by destination; until its first result,
        remember how to open it again on another reader (``_reopening_read_only``)."""
        hg = self.trx_hg
        if hg is None:
            return  # the server did not open one (a read-write SET TRANSACTION followed, an error...)
        self.trx_read_only = True
        counters = self.services.counters
        if hg == self.default_hostgroup:
            counters.read_only_trx_writer += 1
        else:
            counters.read_only_trx_readers += 1
            if cls.kind is StatementKind.TRANSACTION:
                self.ro_restart = [*(held_sets or ()), sql]

    def _reopening_read_only(self, restart: list[str], payload: bytes):
        """A ``prepare`` for ``_forward``: on a retry (the reader failed before the transaction's first
        result), open the read-only transaction again on the new connection first."""
        first: list[BackendConnection] = []

        async def prepare(be: BackendConnection) -> bytes:
            if not first:
                first.append(be)
            elif be is not first[0]:
                for sql in restart:
                    try:
                        tracker = await be.simple_query(sql)
                    except (ConnectionLost, MalformedPacket) as exc:
                        raise self._lost_backend(be, exc) from exc
                    if tracker.error is not None:
                        raise _state_error(be, sql, tracker.error)
                be.in_trx = True
                self.trx_read_only = True
            return payload

        return prepare

    def _plan(self, sql: str, dtext: str, dhash: int):
        """Classify and route a statement; remember both for the session's next statements with the
        same digest when they hold for them (same rules, flag and schema; see ``_com_query``)."""
        rt = self.services
        rules = rt.rules
        capped = rt.digester.capped(sql)  # the digest stands for a prefix only: nothing is remembered by it
        cls = rt.classifier.classify(sql, dhash, remember=not capped)
        decision, positions = rules.evaluate_for_session(RuleContext(
            self.username, self.schema, self.client_host, self.proxy_host, self.proxy_port, self.flag_in,
            dhash, dtext, sql, cls,
        ))
        if positions is not None and rt.classifier.reusable(cls) and not capped:
            plans = self._plans
            if len(plans) >= _SESSION_PLANS:
                plans.clear()
            plain_hg = None
            if (cls.kind is StatementKind.READ or cls.kind is StatementKind.WRITE) \
                    and not cls.bits & _NOT_PLAIN and _plain_decision(decision):
                plain_hg = self.default_hostgroup if decision.destination_hostgroup is None \
                    else decision.destination_hostgroup
            plain_trx = (cls.kind is StatementKind.TRANSACTION and cls.command in _PLAIN_TRANSACTION_COMMANDS
                         and cls.statement_count == 1 and not cls.bits & (_NOT_PLAIN | _READ_ONLY_TRANSACTION)
                         and _plain_decision(decision))
            retry = cls.kind is StatementKind.READ and not cls.bits & _STATEFUL
            plans[dhash] = _Plan(rules, self.flag_in, self.schema, cls, decision, positions, plain_hg, retry,
                                 plain_trx)
        return cls, decision

    async def _plain_query(self, payload: bytes, plan: _Plan, dtext: str, dhash: int) -> None:
        """The common statement, decided from the session's plan memo: a read or write that no rule
        acts on beyond a hostgroup, run by a session that holds no connection, in autocommit, with
        nothing that bends routing (transaction, stickiness, temporary tables, causal reads, rule or
        default timeouts, query log). Same effects as the general path of ``_com_query``."""
        self.flag_in = 0
        tracker = await self._forward(payload, ResponseKind.RESULT, hostgroup=plan.plain_hg,
                                      retries=plan.retries(self.services.vars))
        if tracker is not None:
            self._plain_done(plan, plan.plain_hg, dtext, dhash, tracker)

    def _plain_done(self, plan: _Plan, hg: int, dtext: str, dhash: int, tracker: ResponseTracker,
                    now: float | None = None) -> None:
        """After a plain statement's response (here or on the data plane), run on ``hg``: its accounting
        (``now``: see ``_account``)."""
        self._account(hg, plan.cls, dtext, dhash, tracker, now)
        if plan.cls.kind is not StatementKind.READ and tracker.error is None:
            self.found_rows = 0  # as _after_query

    def _account(self, hg: int, cls: Classification, dtext: str, dhash: int, tracker: ResponseTracker,
                 now: float | None = None) -> None:
        """After a statement's response: digest and command statistics; ROW_COUNT()/FOUND_ROWS().
        ``now``: ``time.monotonic()`` at the response's end, if the caller has read it already."""
        rt = self.services
        us = int(((time.monotonic() if now is None else now) - self.command_started) * 1_000_000)
        affected = affected_rows(tracker.last_ok)
        rt.digest_stats.record(hg, self.schema or "", self.username, self.client_host, dhash, dtext, us, affected,
                                tracker.rows)
        rt.command_counters.record(cls.command, us)
        if tracker.error is not None:
            return
        if tracker.columns:
            self.row_count = -1
            self.found_rows = tracker.rows
        else:
            self.row_count = affected

    async def _causal_hostgroup(self, hg: int, gtid: str) -> int:
        """``hg`` if the replica this read would use has applied ``gtid`` (known, or after waiting up
        to causal_reads_timeout_ms with MASTER_GTID_WAIT); else the writer (default hostgroup)."""
        rt = self.services
        need = parse_gtids(gtid)
        if not need:
            return hg
        serving, be = await self._borrow_or_fall_back(hg)
        if serving != hg:  # no reader can serve: the writer it fell back to has every write
            rt.counters.causal_fallbacks += 1
            return serving
        srv = be.server_ref
        applied = rt.topology.gtid_applied.get(srv)
        if applied is not None and all(applied.get(d, -1) >= n for d, (_, n) in need.items()):
            return hg
        now = time.monotonic()
        ok = False
        if rt.topology.gtid_lagging.get(srv, 0.0) <= now:
            rt.counters.causal_waits += 1
            wait = rt.vars.causal_reads_timeout_ms / 1000
            text = ",".join(f"{d}-{s}-{n}" for d, (s, n) in need.items())
            try:
                with trio.fail_after(wait + rt.vars.connect_timeout_server / 1000):
                    rows = await be.query_rows(f"SELECT MASTER_GTID_WAIT('{text}', {wait:.3f})")
                ok = bool(rows) and rows[0][0] == "0"
            except MySQLError as exc:
                log.info("session %d: causal read: MASTER_GTID_WAIT on %s failed: %s", self.id, be.server, exc)
            except (ConnectionLost, MalformedPacket, trio.TooSlowError) as exc:
                self._lost_backend(be, exc)
                rt.counters.causal_fallbacks += 1
                return self.default_hostgroup
            if ok:
                known = rt.topology.gtid_applied.setdefault(srv, {})
                for d, (_, n) in need.items():
                    if known.get(d, -1) < n:
                        known[d] = n
                return hg
            rt.topology.gtid_lagging[srv] = time.monotonic() + 1.0  # reads needing new writes skip it for a second
        rt.counters.causal_fallbacks += 1
        del self.backends[hg]
        rt.pools.release(be)
        return self.default_hostgroup

    def _log_query(self, started: int, hg: int, dtext: str, dhash: int, sql: str,
                   tracker: ResponseTracker | None) -> None:
        be = self.backends.get(hg)
        event = {
            "event": "COM_QUERY",
            "thread_id": self.id,
            "username": self.username,
            "schemaname": self.schema or "",
            "client": self.client_addr,
            "hostgroup_id": hg,
            "server": str(be.server) if be is not None else "",
            "digest": format_digest(dhash),
            "digest_text": dtext,
            "query": sql,
            "starttime_timestamp_us": started,
            "endtime_timestamp_us": now_us(),
            "duration_us": now_us() - started,
            "rows_sent": tracker.rows if tracker is not None else 0,
        }
        if tracker is None or tracker.error is not None:
            event["error"] = True
        self.services.query_log.write(event)

    async def _set_locally(self, cls: Classification) -> bool:
        """``SET autocommit = ...`` or ``SET NAMES ...`` alone, with no connection held: recorded and
        answered by the proxy (``StatementState._record_set``). True if answered."""
        charsets = self.services.charsets
        if not self._record_set(cls, self.charset, charsets.collations, charsets.collation_charset,
                                charsets.default_collation):
            return False
        await self._send_ok()
        return True
