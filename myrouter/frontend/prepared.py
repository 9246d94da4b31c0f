"""Prepared statements (binary protocol): COM_STMT_PREPARE/EXECUTE/FETCH/RESET/CLOSE/SEND_LONG_DATA,
with statements shared between connections (see myrouter/backend/stmts.py) and cursors pinning theirs.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING


from ..backend import pins as P
from ..backend.connection import BackendConnection
from ..backend.stmts import ClientStmt, StmtMeta, execute_for_backend
from ..backend.connection import split_payloads
from ..net.stream import ConnectionLost
from ..protocol.constants import Command
from ..protocol.errors import MalformedPacket, MySQLError
from ..protocol.messages import (
    PrepareOK,
    parse_err,
)
from ..protocol.packets import frame
from ..protocol.response import ResponseKind
from ..routing.classifier import StatementKind
from ..stats.digests import affected_rows
from ..routing.rules import RuleContext
from .common import (
    C,
    ER_NOT_SUPPORTED_YET,
    ER_STMT_HAS_NO_OPEN_CURSOR,
    ER_UNKNOWN_STMT_HANDLER,
    _AUTOCOMMIT,
    _CURSOR_EXISTS,
    _LAST_ROW_SENT,
    _SESSION_IDS,
    _STATEFUL,
    log,
)

if TYPE_CHECKING:
    from .session import ClientSession


class PreparedStatements:
    """The client's prepared statements (its ids -> ``ClientStmt``) and the COM_STMT_* commands of one session."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session
        self.stmts: dict[int, ClientStmt] = {}  # client statement id -> statement
        self.next_stmt_id = 1

    def _stmt(self, payload: bytes, what: str) -> ClientStmt:
        if len(payload) < 5:
            raise MalformedPacket(f"COM_STMT_{what.upper()} without a statement id")
        sid = int.from_bytes(payload[1:5], "little")
        st = self.stmts.get(sid)
        if st is None:
            raise MySQLError(ER_UNKNOWN_STMT_HANDLER,
                             f"Unknown prepared statement handler ({sid}) given to mysqld_stmt_{what}", "HY000")
        return st

    async def _com_stmt_prepare(self, payload: bytes) -> None:
        session = self.session
        rt = session.services
        sql = payload[1:]
        text = sql.decode("utf-8", "surrogateescape")
        dtext, dhash = rt.digester(text)
        cls = rt.classifier.classify(text, dhash, remember=not rt.digester.capped(text))
        decision = rt.rules.evaluate(RuleContext(
            session.username, session.schema, session.client_host, session.proxy_host, session.proxy_port, 0,
            dhash, dtext, text, cls,
        ))
        if decision.error_msg is not None:
            raise MySQLError(1148, decision.error_msg, "42000")
        if cls.bits & _SESSION_IDS:
            raise MySQLError(ER_NOT_SUPPORTED_YET, "KILL, CONNECTION_ID() and PROCESSLIST are answered by myrouter "
                             "with its own session ids, in text statements only, not in prepared statements",
                             "42000")
        key = (session.schema, sql, bool(session.capabilities & C.DEPRECATE_EOF))
        meta = rt.stmt_registry.get(key)
        if meta is None:
            _, be = await session._borrow_or_fall_back(session._route(decision, cls))
            meta = rt.stmt_registry.peek(key)  # prepared by another session meanwhile?
        if meta is None:
            result = await self._prepare_on(be, key, sql)
            if isinstance(result, bytes):
                await session.client.send_packet(result, 1)  # the server's ERR, unchanged
                return
            meta = result
            rt.stmt_registry.put(meta)
        sid = self.next_stmt_id
        self.next_stmt_id = sid + 1 if sid < 0xFFFFFFFF else 1
        self.stmts[sid] = ClientStmt(sid, meta, cls, decision, (dtext, dhash))
        await session.client.send_all(meta.client_response(sid))

    async def _prepare_on(self, be: BackendConnection, key, sql: bytes) -> StmtMeta | bytes:
        """Prepare ``sql`` on ``be`` (closing its least recently used statements beyond the cap).

        Returns the statement's metadata, or the server's ERR payload.
        """
        try:
            await be.stream.send_all(frame(b"\x16" + sql, 0))
        except ConnectionLost as exc:
            raise self.session._lost_backend(be, exc) from exc
        return await self.prepare_response(be, key, sql)

    async def prepare_response(self, be: BackendConnection, key, sql: bytes) -> StmtMeta | bytes:
        """The response to a COM_STMT_PREPARE of ``sql`` sent on ``be`` (``_prepare_on``, or the data plane
        when the socket did not take it whole): recorded there (``prepared_on``); the statement's
        metadata, or the server's ERR payload."""
        raw: list[bytes] = []
        try:
            tracker = await be.read_response(ResponseKind.PREPARE, raw)
            if tracker.error is not None:
                return tracker.error
            meta, closes = self.prepared_on(be, key, sql, raw)
            if closes:
                await be.stream.send_all(closes)
        except (ConnectionLost, MalformedPacket) as exc:
            raise self.session._lost_backend(be, exc) from exc
        return meta

    def prepared_on(self, be: BackendConnection, key, sql: bytes, raw: list[bytes]) -> tuple[StmtMeta, bytes]:
        """``sql`` was prepared on ``be`` (``raw``: the bytes of the server's PREPARE_OK response): record its
        id there. Returns its metadata, and the COM_STMT_CLOSE packets ``be`` must be sent (they get no reply):
        its earlier copy there, if any (its metadata changed), and the least recently used statements
        beyond ``max_stmts_per_connection`` (not one with an open cursor). On both planes."""
        packets = split_payloads(b"".join(raw))
        ok = PrepareOK.parse(packets[0])
        closes = []
        old = be.stmts.pop(key, None)
        if old is not None:  # prepared here before: one copy only
            closes.append(frame(b"\x19" + old.to_bytes(4, "little"), 0))
        be.stmts[key] = ok.statement_id
        cap = self.session.services.vars.max_stmts_per_connection
        if len(be.stmts) > cap:
            busy = {st.meta.key for st in self.stmts.values() if st.cursor is be}
            for victim in list(be.stmts):
                if len(be.stmts) <= cap:
                    break
                if victim in busy:
                    continue
                closes.append(frame(b"\x19" + be.stmts.pop(victim).to_bytes(4, "little"), 0))
                self.session.services.counters.stmts_evicted += 1
        return StmtMeta(key, sql, ok.num_params, ok.num_columns, ok.warnings, packets[1:]), b"".join(closes)

    def check_shape(self, st: ClientStmt, prepared: StmtMeta) -> None:
        """The statement, prepared again on another connection, has the shape the client knows; else (the
        table changed) 1615, and later PREPAREs of its text get the new shape."""
        meta = st.meta
        if prepared.num_params != meta.num_params or prepared.num_columns != meta.num_columns:
            self.session.services.stmt_registry.put(prepared)
            raise MySQLError(1615, "Prepared statement needs to be re-prepared", "HY000")

    async def _backend_stmt_id(self, be: BackendConnection, st: ClientStmt) -> int | None:
        """``st``'s id on ``be``, preparing it there first if needed; None after sending the client an ERR."""
        meta = st.meta
        bid = be.stmts.get(meta.key)
        if bid is not None:
            be.stmts.move_to_end(meta.key)
            return bid
        return await self.use_prepared(be, st, await self._prepare_on(be, meta.key, meta.sql))

    async def use_prepared(self, be: BackendConnection, st: ClientStmt, result: StmtMeta | bytes) -> int | None:
        """``st`` was prepared again on ``be`` (``result``: what ``prepare_response`` gave): its id there, or
        None after sending the client the server's ERR; 1615 if its shape changed (``check_shape``)."""
        if isinstance(result, bytes):
            await self.session.client.send_packet(result, 1)
            return None
        self.check_shape(st, result)
        return be.stmts[st.meta.key]

    def _set_cursor(self, st: ClientStmt, be: BackendConnection | None, hg: int | None) -> None:
        """Open (be, hg) or close (None) ``st``'s cursor; a cursor pins its connection until closed."""
        session = self.session
        old_hg = st.cursor_hg
        st.cursor, st.cursor_hg = be, hg
        for h in {old_hg, hg} - {None}:
            open_here = any(s.cursor_hg == h for s in self.stmts.values())
            cur = session.hold.get(h, 0)
            session.hold[h] = cur | P.CURSOR if open_here else cur & ~P.CURSOR

    async def _com_stmt_execute(self, payload: bytes, retried: bool = False) -> None:
        session = self.session
        if len(payload) < 10:
            raise MalformedPacket("COM_STMT_EXECUTE shorter than its fixed header")
        st = self._stmt(payload, "execute")
        cls = st.classification
        if st.cursor is not None:
            hg = st.cursor_hg  # a new execution replaces the open cursor, on its connection
        else:
            hg = session._route(st.decision, cls)
        cursor = bool(payload[5] & 0x0F)
        used: list[BackendConnection] = []

        async def for_connection(be: BackendConnection) -> bytes | None:
            bid = await self._backend_stmt_id(be, st)
            if bid is None:
                return None
            if st.long_data:
                head = b"\x18" + bid.to_bytes(4, "little")
                try:
                    await be.stream.send_all(b"".join(frame(head + d, 0) for d in st.long_data))
                except ConnectionLost as exc:
                    raise session._lost_backend(be, exc) from exc
            used.append(be)
            return execute_for_backend(payload, bid, st)

        retries = session.services.vars.query_retries_on_failure if self.retries_allowed(st, cursor) else 0
        if retried and retries:
            retries -= 1  # the data plane's attempt was the first
        tracker = await session._forward(b"", ResponseKind.RESULT, hostgroup=hg, cursor=cursor, retries=retries,
                                      prepare=for_connection)
        if tracker is None:
            return
        st.long_data.clear()
        self.executed(st, used[-1], hg, cursor, tracker)

    def retries_allowed(self, st: ClientStmt, cursor: bool) -> bool:
        """Whether an execution of ``st`` may be retried on another connection if its own fails before
        any byte of the response reached the client: a stateless read, no cursor, no transaction."""
        session = self.session
        cls = st.classification
        return bool(cls.kind is StatementKind.READ and not cls.bits & _STATEFUL and not cursor and st.cursor is None
                    and session.trx_hg is None and session.status & _AUTOCOMMIT)

    def executed(self, st: ClientStmt, be: BackendConnection, hg: int, cursor: bool, tracker,
                 now: float | None = None) -> None:
        """After an execution's response (on the Trio path or the data plane): statistics, the cursor
        it opened or closed, ROW_COUNT() and FOUND_ROWS(). ``now``: ``time.monotonic()`` at the
        response's end, if the caller has read it already."""
        session = self.session
        hg = be.server_ref.hostgroup if be.server_ref is not None else hg
        rt = session.services
        us = int(((time.monotonic() if now is None else now) - session.command_started) * 1_000_000)
        dtext, dhash = st.digest
        rt.digest_stats.record(hg, session.schema or "", session.username, session.client_host, dhash, dtext, us,
                                affected_rows(tracker.last_ok), tracker.rows)
        rt.command_counters.record(st.classification.command, us)
        if cursor and tracker.error is None and tracker.status & _CURSOR_EXISTS:
            self._set_cursor(st, be, hg)
        elif st.cursor is not None:
            self._set_cursor(st, None, None)
        if tracker.error is None:
            if tracker.columns:
                session.row_count = -1
                session.found_rows = tracker.rows
            else:
                session.row_count = affected_rows(tracker.last_ok)

    async def _com_stmt_fetch(self, payload: bytes) -> None:
        session = self.session
        st = self._stmt(payload, "fetch")
        if st.cursor is None or st.cursor.closed:
            raise MySQLError(ER_STMT_HAS_NO_OPEN_CURSOR, f"The statement ({st.id}) has no open cursor.", "HY000")
        bid = st.cursor.stmts.get(st.meta.key)
        if bid is None:  # the statement is gone from that connection: so is its cursor
            self._set_cursor(st, None, None)
            raise MySQLError(ER_STMT_HAS_NO_OPEN_CURSOR, f"The statement ({st.id}) has no open cursor.", "HY000")
        tracker = await session._forward(payload[:1] + bid.to_bytes(4, "little") + payload[5:], ResponseKind.FETCH,
                                      hostgroup=st.cursor_hg)
        if tracker is None or tracker.error is not None or tracker.status & _LAST_ROW_SENT:
            self._set_cursor(st, None, None)

    async def _com_stmt_reset(self, payload: bytes) -> None:
        session = self.session
        st = self._stmt(payload, "reset")
        st.long_data.clear()
        if st.cursor is None:
            await session._send_ok()
            return
        bid = st.cursor.stmts.get(st.meta.key)
        hg = st.cursor_hg
        self._set_cursor(st, None, None)
        if bid is None:
            await session._send_ok()
            return
        await session._forward(payload[:1] + bid.to_bytes(4, "little"), ResponseKind.SIMPLE, hostgroup=hg)

    async def _com_stmt_close(self, payload: bytes) -> None:
        # No reply. The backend preparation stays (shared); an open cursor is closed.
        session = self.session
        if len(payload) < 5:
            return
        st = self.stmts.pop(int.from_bytes(payload[1:5], "little"), None)
        if st is None or st.cursor is None:
            return
        be = st.cursor
        self._set_cursor(st, None, None)
        bid = be.stmts.get(st.meta.key)
        if bid is None or be.closed:
            return
        try:
            tracker = await be.run_command(b"\x1a" + bid.to_bytes(4, "little"), ResponseKind.SIMPLE)
            if tracker.error is not None:
                log.info("session %d: closing a cursor on %s failed: %s", session.id, be.server,
                         parse_err(tracker.error))
                session._drop_backend(be)
        except (ConnectionLost, MalformedPacket) as exc:
            session._lost_backend(be, exc)

    async def _com_stmt_send_long_data(self, payload: bytes) -> None:
        # No reply: kept until the next COM_STMT_EXECUTE, which may run on another connection.
        if len(payload) < 7:
            return
        st = self.stmts.get(int.from_bytes(payload[1:5], "little"))
        if st is not None:
            st.long_data.append(payload[5:])

    #: the COM_STMT_* commands, by command byte (``ClientSession._com_prepared``)
    commands = {
        Command.STMT_PREPARE: _com_stmt_prepare,
        Command.STMT_EXECUTE: _com_stmt_execute,
        Command.STMT_FETCH: _com_stmt_fetch,
        Command.STMT_RESET: _com_stmt_reset,
        Command.STMT_CLOSE: _com_stmt_close,
        Command.STMT_SEND_LONG_DATA: _com_stmt_send_long_data,
    }

    def forget_cursors(self, hg: int) -> None:
        """The session's connection to ``hg`` is gone: so are the cursors open on it."""
        for st in self.stmts.values():
            if st.cursor_hg == hg:
                st.cursor = None
                st.cursor_hg = None
