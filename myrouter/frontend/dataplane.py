"""A session's data plane: plain statements served by fd callbacks of the host loop.

The process's main loop is the engine's ``HostLoop`` (a raw epoll loop) and Trio runs as its
guest. A session that waits for its client's next command while nothing bends its routing (no
connection held, no transaction, nothing sticky: ``ClientSession._between_transactions``; with
autocommit off, its next statement opens a transaction where ``_route`` sends it, unless it opens a
read-only one, which the Trio path places), or while it holds only the connection of its open
transaction (or of its autocommit-off session's: ``ClientSession._holds_only_its_transaction``),
parks its Trio task here (``DataPlane.park``) and the host loop watches the client socket. What
comes next is handled by plain callbacks, in the host thread, with no task switch:

* a COM_QUERY whose digest the session has a plain plan for (``query._Plan.plain_hg``), with an
  idle pooled connection of that hostgroup whose state already matches the session's: sent at
  once; the backend's readable events feed the ``ResponseTracker`` and the bytes go on to the
  client as they come; at the end, the same bookkeeping as the Trio path (``_response_done``,
  ``_plain_done``, ``_release_free``) and the connection goes back to its pool;
* in a transaction, the same statement (or a COM_STMT_EXECUTE) when the Trio path would send it to
  the transaction's connection with no other effect (``_connection``: routed there, not
  a write in a read-only transaction): sent on that connection, never retried elsewhere, which
  stays with the session afterwards (``_release_free``); SAVEPOINT, XA and the rest go to the Trio
  task, and the session comes back here after them while it is parkable;
* a lone BEGIN / START TRANSACTION / COMMIT / ROLLBACK that no rule acts on (``_Plan.plain_trx``),
  where ``_route`` sends it, with the effect on the transaction ``_transaction_effect`` gives it (as
  the general path of ``_com_query``); not a read-only transaction's start (the Trio path chooses
  its reader), nor under pool_mode=statement (refused there);
* a COM_PING: answered at once.

Anything else hands the session back to its Trio task with what it has got so far
(``_hand_over``): the packet to handle as a new command, a command started here that now needs to
wait (``Resume``: a retry, an error to send, LOAD DATA LOCAL INFILE), an exception to raise in the
command loop, or nothing (the session is no longer plain, or it must end: drain, KILL). Trio's
callbacks run in the same thread, so the hand-over is ``trio.lowlevel.reschedule``: no lock, no
queue. A cancelled park (KILL, drain, the idle reaper) stops watching every descriptor first; the
session's end then gives back or drops what it holds as on the Trio path (an open transaction's
connection is reset or closed, never pooled as it is: ``_drop_all_backends``). While a parked session
holds its transaction's connection, nobody follows that connection's events: if its server closes
it, ``BackendWatch`` takes it out of the loop and the next statement gets the error the Trio path gives.

Backpressure: when the client's socket does not take a chunk whole, the backend is not read again
until the rest has gone (the client's descriptor is watched for writability meanwhile), so a slow
reader holds at most one chunk of a result, however large, as on the Trio path.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import outcome
import trio

from ..backend.connection import BackendConnection, BackendState
from ..backend.stmts import execute_for_backend
from ..net.stream import ConnectionLost, PacketStream
from ..protocol.constants import Command
from ..protocol.errors import MalformedPacket, MySQLError, PacketTooLarge, SequenceError
from ..protocol.messages import OK
from ..protocol.packets import Packet, frame
from ..protocol.response import ResponseKind, ResponseTracker
from .common import CloseSession, SessionState, _AUTOCOMMIT, _MAYBE_KILL, _STATE_CHANGED, log
from .decisions import TRX_OPENS

if TYPE_CHECKING:
    from ..backend.stmts import ClientStmt
    from .query import _Plan
    from .session import ClientSession

_COM_QUERY = int(Command.QUERY)
_COM_PING = int(Command.PING)
_COM_STMT_EXECUTE = int(Command.STMT_EXECUTE)
_RESULT = ResponseKind.RESULT
_PREPARE = ResponseKind.PREPARE
_ACTIVE = BackendState.ACTIVE
_RESERVED = BackendState.RESERVED
_PINNED = BackendState.PINNED
_IDLE = SessionState.IDLE
_BUSY = SessionState.BUSY

# A COM_STMT_EXECUTE whose statement its connection does not have is prepared there on the data plane
# when the statement's text is at most this long (an idle connection's socket takes it whole); a longer
# one goes to the Trio path.
PREPARE_HERE_MAX = 4096
COMMAND_BATCH = 16  # pipelined commands served in one callback before the loop's other descriptors get a turn


class Resume:
    """A command the data plane started and the Trio task finishes: ``await fn()`` in the command
    loop, as the command's handler (its counters are counted already)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], Awaitable[None]]) -> None:
        self.fn = fn


PARTIAL = object()  # handed over: part of a packet has arrived; the rest must come within client_packet_timeout


async def _send_then_raise(be: BackendConnection, closes: bytes, exc: Exception) -> None:
    """On the Trio path: send ``be`` what it must be told (statements closed), then raise ``exc`` (the
    command loop sends it to the client as an ERR)."""
    if closes:
        await be.stream.send_all(closes)
    raise exc


class BackendWatch:
    """A backend connection's socket in the host loop. Registered the first time the data plane runs
    a statement on the connection, it stays registered between statements while the connection
    sits in its pool or goes to another parked session: changing hands sets who ``follows`` its
    events, no system call and no change to the loop's tables. An event while nobody follows (the
    Trio path uses the connection, or the server closed it while idle) takes it out of the loop
    (a stray event); the stream's ``close`` takes it out too (``PacketStream.watched_by``)."""

    __slots__ = ("loop", "stream", "fd", "registered", "follower")

    def __init__(self, loop, stream: PacketStream) -> None:
        self.loop = loop
        self.stream = stream
        self.fd = stream.sock.fileno()
        self.registered = False
        self.follower: Callable[[], None] | None = None

    def follow(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the socket is readable (a statement of the data plane runs on it)."""
        self.follower = callback
        if not self.registered:
            self.loop.add_reader(self.fd, self._readable)
            self.stream.watched_by = self.loop
            self.registered = True

    def release(self) -> None:
        """The statement ended: stay registered, with nobody following."""
        self.follower = None

    def stop(self) -> None:
        """Out of the loop (backpressure, a hand-over to Trio, a failed connection)."""
        self.follower = None
        if self.registered:
            self.registered = False
            self.stream.watched_by = None
            self.loop.remove(self.fd)

    def _readable(self) -> None:
        follower = self.follower
        if follower is None:
            self.stop()  # a stray event
        else:
            follower()


class DataPlane:
    """The data-plane driver of one ``ClientSession`` (see the module docstring)."""

    __slots__ = ("session", "loop", "client", "client_sock", "client_fd", "task", "reading_client", "busy", "pending",
                 "be", "watch", "tracker", "hg", "sent", "extra", "raw", "request", "plan", "dtext", "dhash", "stmt",
                 "retries", "vars", "trx_effect", "execute_wire", "prepare_raw")

    def __init__(self, session: ClientSession, loop) -> None:
        self.session = session
        self.loop = loop
        self.client: PacketStream = session.client
        self.client_sock = session.client.sock
        self.client_fd = self.client_sock.fileno()
        self.task = None  # the session's Trio task while it is parked here
        self.reading_client = False  # the client's descriptor is watched for readability
        self.busy = False  # a command is running on the data plane
        self.pending: memoryview | None = None  # what the client's socket has not taken yet
        self.be: BackendConnection | None = None  # the running statement's connection, its descriptor...
        self.watch: BackendWatch | None = None  # ... and its BackendWatch
        self.tracker: ResponseTracker | None = None
        self.hg = 0
        # the running statement: the client's request; a COM_QUERY's plan and digest, or a COM_STMT_EXECUTE's
        # statement; how many times it may be retried elsewhere if its connection fails first
        self.raw: bytes | None = None  # the client's bytes of the command being served, if exactly its packet
        self.request = b""
        self.plan: _Plan | None = None
        self.dtext = ""
        self.dhash = 0
        self.stmt: ClientStmt | None = None
        self.retries: int | None = 0  # None: the plan's, under ``vars`` (see _retries_left)
        self.vars = None  # the mysql_variables in force when the running COM_QUERY started
        self.sent = False  # bytes of the response reached the client
        self.trx_effect = TRX_OPENS  # what the running command does to the transaction (_response_done)
        # a COM_STMT_EXECUTE whose statement is prepared on its connection first (_prepare_first): the
        # execution to send once it is, and the bytes of the PREPARE response so far
        self.execute_wire: bytes | None = None
        self.prepare_raw: list[bytes] | None = None
        self.extra = 0  # bytes the backend sent past the end of the response

    def __repr__(self) -> str:
        where = "parked" if self.task is not None else "on trio"
        return f"<DataPlane session={self.session.id} {where}{' busy' if self.busy else ''}>"

    # -- the Trio side -----------------------------------------------------------------------------

    async def park(self):
        """Give the session to the data plane until it hands it back; return what it hands back
        (a ``Packet``, a ``Resume``, ``PARTIAL`` or None) or raise the exception it hands back."""
        self.task = trio.lowlevel.current_task()
        if not self.reading_client:
            self.loop.add_reader(self.client_fd, self._client_readable)
            self.client.watched_by = self.loop
            self.reading_client = True
        return await trio.lowlevel.wait_task_rescheduled(self._abort)

    def _abort(self, raise_cancel) -> trio.lowlevel.Abort:
        """The parked task is cancelled (KILL, drain, idle reaper): stop watching everything. A
        statement running here stays as it is (its connection ``ACTIVE``): the session's end drops it."""
        self._unwatch()
        self.task = None
        self.busy = False
        return trio.lowlevel.Abort.SUCCEEDED

    def _hand_over(self, value: object) -> None:
        """The Trio task takes the session again, with ``value`` (an exception: raised in it)."""
        self._unwatch()
        self.busy = False
        if type(value) is Packet or type(value) is Resume:
            self.session.services.counters.data_plane_handovers += 1
        task, self.task = self.task, None
        result = outcome.Error(value) if isinstance(value, BaseException) else outcome.Value(value)
        trio.lowlevel.reschedule(task, result)

    def _unwatch(self) -> None:
        loop = self.loop
        if self.reading_client or self.pending is not None:
            loop.remove(self.client_fd)
            self.client.watched_by = None
            self.reading_client = False
        self.pending = None
        self._stop_watching_backend()

    def _stop_watching_backend(self) -> None:
        watch = self.watch
        if watch is not None:
            self.watch = None
            watch.stop()

    # -- commands ----------------------------------------------------------------------------------

    def _client_readable(self) -> None:
        if self.busy:  # bytes (or a close) from the client while its command runs: read them after it
            self.loop.remove_reader(self.client_fd)
            self.reading_client = False
            return
        try:
            self._serve_commands()
        except Exception as exc:
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        """A bug of the data plane: the session's Trio task gets the exception (and, as for any
        exception that escapes a session, logs it and closes the connection); the loop goes on."""
        if self.task is not None:
            self._hand_over(exc)
        else:
            log.error("session %d: data plane failed after its task left: %r", self.session.id, exc)
            self._unwatch()

    def _serve_commands(self) -> None:
        """Serve the client's commands while they complete at once (PING, pipelined); return when one
        is running, or has been handed over, or nothing more is there."""
        client = self.client
        decoder = client.decoder
        for _ in range(COMMAND_BATCH):
            raw = None
            try:
                if decoder.buffered:
                    pkt = decoder.next_packet()
                else:
                    raw = client.read_now()  # nothing is buffered
                    pkt = decoder.receive(raw) if raw is not None else None
            except (ConnectionLost, PacketTooLarge, SequenceError) as exc:
                self._hand_over(exc)
                return
            if pkt is None:
                if decoder.buffered:
                    self._hand_over(PARTIAL)
                return  # a spurious wake-up, or every command served
            # the client's bytes, when they are exactly this packet: a COM_QUERY goes on unchanged
            payload = pkt.payload
            self.raw = raw if raw is not None and len(raw) == 4 + len(payload) else None
            # as _serve, without a call for the usual command
            if payload and payload[0] == _COM_QUERY and pkt.seq == 0:
                if not self._query(pkt):
                    return
            elif not self._serve(pkt):
                return
        if not self.reading_client:  # more may be buffered: come back on the loop's next turn
            self.loop.add_reader(self.client_fd, self._client_readable)
            self.reading_client = True

    def _serve(self, pkt: Packet) -> bool:
        """Serve one command; True if it completed already (the next may follow at once)."""
        payload = pkt.payload
        if pkt.seq == 0 and payload:
            cmd = payload[0]
            if cmd == _COM_QUERY:
                return self._query(pkt)
            if cmd == _COM_STMT_EXECUTE:
                return self._execute(pkt)
            if cmd == _COM_PING:
                return self._ping()
        self._hand_over(pkt)
        return False

    def _begin(self, command: int, now: float | None = None) -> None:
        s = self.session
        s.state = _BUSY
        s.command = command
        s.command_started = time.monotonic() if now is None else now
        s.services.counters.questions += 1
        s.statements += 1
        self.busy = True

    def _ping(self) -> bool:
        s = self.session
        self._begin(_COM_PING)
        ok = frame(OK(status=s.status).encode(s.capabilities), 1)
        if not self._to_client(ok):
            return False
        return self._command_done()

    def _query(self, pkt: Packet) -> bool:
        s = self.session
        rt = s.services
        payload = pkt.payload
        if payload[1:2] in _MAYBE_KILL or not rt.plain_statements:
            self._hand_over(pkt)
            return False
        sql = payload[1:].decode("utf-8", "surrogateescape")
        digester = rt.digester
        dtext, dhash = digester(sql)
        plan = s._plans.get(dhash)
        if plan is None or plan.rules is not rt.rules or plan.flag_in != s.flag_in or plan.schema != s.schema \
                or digester.capped(sql):
            return self._hand_over_digested(pkt, dtext, dhash)
        cls = plan.cls
        hg = plan.plain_hg
        autocommit = s.status & _AUTOCOMMIT
        if hg is not None:
            trx_effect = TRX_OPENS  # what _transaction_effect gives a read or write
            if not autocommit and s._opens_read_only_transaction(cls, sql):
                return self._hand_over_digested(pkt, dtext, dhash)  # the Trio path chooses its reader
        elif plan.plain_trx and not s.statement_mode and not s._opens_read_only_transaction(cls, sql):
            # BEGIN, COMMIT...: the general path of _com_query does no more for them than this
            trx_effect = s._transaction_effect(cls, sql)
        else:
            return self._hand_over_digested(pkt, dtext, dhash)
        now = time.monotonic()  # the statement's start, if it stays here
        in_trx = bool(s.backends)  # parked holding its open transaction's connection
        if in_trx or hg is None or not autocommit:
            # in a transaction, a transaction statement, or an autocommit-off session's next transaction:
            # routed as the general path routes it
            hg = s._route(plan.decision, cls)
        be = self._connection(hg, cls, now)
        if be is None:
            return self._hand_over_digested(pkt, dtext, dhash)
        # the statement is the data plane's from here: the same effects as _plain_query
        self.trx_effect = trx_effect
        self._begin(_COM_QUERY, now)
        s.info = payload
        if plan.positions:
            rt.rules.count_hits(plan.positions)
        rt.classifier.count_hit()
        s.flag_in = 0
        self.plan, self.dtext, self.dhash, self.stmt = plan, dtext, dhash, None
        # plan.retries(rt.vars), worked out if the connection fails (_retries_left); none in a transaction
        # (or when the statement opens one: autocommit off)
        self.retries = None if autocommit and not in_trx else 0
        self.vars = rt.vars
        raw = self.raw
        self._start(be, hg, raw if raw is not None else frame(payload, 0), payload)
        return False

    def _hand_over_digested(self, pkt: Packet, dtext: str, dhash: int) -> bool:
        """Hand a COM_QUERY over with its digest, which the Trio path then does not work out again."""
        self.session.digested = (pkt.payload, dtext, dhash)
        self._hand_over(pkt)
        return False

    def _execute(self, pkt: Packet) -> bool:
        """COM_STMT_EXECUTE of a statement without a cursor or long data, on an idle connection (or its
        transaction's) in line with the session, that has it prepared already or prepares it first
        (``_prepare_first``): as ``PreparedStatements._com_stmt_execute`` does it."""
        s = self.session
        payload = pkt.payload
        prepared = s.prepared
        st = prepared.stmts.get(int.from_bytes(payload[1:5], "little")) if len(payload) >= 10 else None
        if st is None or st.cursor is not None or st.long_data or payload[5] & 0x0F or not s.services.plain_statements:
            self._hand_over(pkt)
            return False
        rt = s.services
        hg = s._route(st.decision, st.classification)
        now = time.monotonic()  # the statement's start, if it stays here
        be = self._connection(hg, st.classification, now)
        key = st.meta.key
        bid = None if be is None else be.stmts.get(key)
        if be is None or (bid is None and len(st.meta.sql) > PREPARE_HERE_MAX):
            self._hand_over(pkt)  # the Trio path finds a connection, or prepares a long text
            return False
        try:
            wire = execute_for_backend(payload, 0 if bid is None else bid, st)
        except MalformedPacket:
            self._hand_over(pkt)  # the Trio path answers it
            return False
        self._begin(_COM_STMT_EXECUTE, now)
        self.trx_effect = TRX_OPENS  # as PreparedStatements._com_stmt_execute sends it
        self.plan, self.stmt = None, st
        self.retries = rt.vars.query_retries_on_failure if prepared.retries_allowed(st, False) else 0
        if bid is None:  # not prepared on this connection (a new one, or evicted there)
            self._prepare_first(be, hg, wire, payload)
            return False
        be.stmts.move_to_end(key)
        self._start(be, hg, frame(wire, 0), payload)
        return False

    def _prepare_first(self, be: BackendConnection, hg: int, wire: bytes, request: bytes) -> None:
        """A COM_STMT_EXECUTE (``wire``: rewritten for the backend, statement id to fill in) of a statement
        ``be`` does not have: COM_STMT_PREPARE it there first, its response read here and not relayed
        (``_prepare_chunk``), then the execution goes on as any other (``_prepared``), as
        ``PreparedStatements._backend_stmt_id`` does it on the Trio path."""
        self.hg = hg
        self.request = request
        self.be = be
        self.execute_wire = wire
        self.prepare_raw = []
        self.tracker = ResponseTracker(_PREPARE, be.capabilities)
        self.sent = False
        be.state = _ACTIVE
        bstream = be.stream
        try:
            rest = bstream.send_nowait(frame(b"\x16" + self.stmt.meta.sql, 0))
        except ConnectionLost as exc:
            self._backend_failed(exc)
            return
        if rest is not None:  # not expected of a short text on an idle connection, but the Trio path copes
            self._resume(self._prepare_rest_on_trio(be, rest))
            return
        self._watch(be).follow(self._prepare_readable)
        if bstream.decoder.buffered:
            self._prepare_chunk()

    def _prepare_readable(self) -> None:
        try:
            self._prepare_chunk()
        except Exception as exc:
            self._failed(exc)

    def _prepare_chunk(self) -> None:
        be, tracker = self.be, self.tracker
        try:
            data = be.stream.recv_nowait()
            if data is None:
                return  # a spurious wake-up
            n = tracker.feed(data)
            if n != len(data) or tracker.local_infile:
                raise MalformedPacket("backend sent bytes after the end of a PREPARE response")
        except (ConnectionLost, MalformedPacket) as exc:
            self._backend_failed(exc)
            return
        self.prepare_raw.append(data)
        if tracker.done:
            self._prepared()

    def _prepared(self) -> None:
        """The PREPARE response is in: record the statement on the connection and execute it, or hand the
        server's error (or the statement's changed shape, 1615) to the Trio task to send."""
        s = self.session
        be, tracker, st = self.be, self.tracker, self.stmt
        raw, self.prepare_raw = self.prepare_raw, None
        be.status = tracker.status  # as BackendConnection.run_command
        if tracker.error is not None:
            be.state = _RESERVED  # nothing runs on it: the command's end gives it back
            self._resume(functools.partial(s.client.send_packet, tracker.error, 1))
            return
        meta, closes = s.prepared.prepared_on(be, st.meta.key, st.meta.sql, raw)
        try:
            s.prepared.check_shape(st, meta)
        except MySQLError as exc:
            be.state = _RESERVED
            self._resume(functools.partial(_send_then_raise, be, closes, exc))
            return
        wire = self.execute_wire
        self.execute_wire = None
        bid = be.stmts[st.meta.key]
        self._start(be, self.hg, closes + frame(wire[:1] + bid.to_bytes(4, "little") + wire[5:], 0), self.request)

    def _prepare_rest_on_trio(self, be: BackendConnection, rest):
        s, request, st = self.session, self.request, self.stmt

        async def prepare_rest_then_execute() -> None:
            try:
                await be.stream.send_all(rest)
            except ConnectionLost as exc:
                raise s._lost_backend(be, exc) from exc
            result = await s.prepared.prepare_response(be, st.meta.key, st.meta.sql)
            be.state = _RESERVED
            if await s.prepared.use_prepared(be, st, result) is not None:
                await s.prepared._com_stmt_execute(request)  # prepared there now: it executes there

        return prepare_rest_then_execute

    def _connection(self, hg: int, cls, now: float) -> BackendConnection | None:
        """The connection a statement of class ``cls`` routed to ``hg`` runs on here, or None (the Trio path
        serves it). In a transaction, the one the session holds (``_holds_only_its_transaction``), if the
        statement would run there with no other effect and nothing runs on it now; else an idle pooled
        connection of ``hg``, the session's from now, if one is there. Either way its state must already
        be the session's (schema, variables) and its bytes go to the socket as they are: the Trio path
        brings a connection in line first (round trips)."""
        s = self.session
        if s.backends:
            if not s._stays_in_transaction(hg, cls):
                return None
            be = s.backends.get(hg)
            if be is None or be.state is not _PINNED:
                return None
        else:
            rt = s.services
            be = rt.pools.take_idle(rt.hostgroups, hg, s.pool_key, now)
            if be is None:
                return None
            s.backends[hg] = be
        if be.vars != s.vars or (s.schema and be.schema != s.schema) or type(be.stream) is not PacketStream:
            return None
        return be

    def _start(self, be: BackendConnection, hg: int, wire: bytes, request: bytes) -> None:
        """Send ``wire`` (the command, framed) on ``be`` (the session's connection to ``hg`` now) and relay
        its response as it comes (``_relay_chunk``); ``request``: the client's command."""
        self.hg = hg
        self.request = request  # kept for a retry on the Trio path
        self.be = be
        tracker = self.tracker = ResponseTracker(_RESULT, be.capabilities)
        self.sent = False
        be.state = _ACTIVE
        bstream = be.stream
        try:
            rest = bstream.send_nowait(wire)
        except ConnectionLost as exc:
            self._backend_failed(exc)
            return
        if rest is not None:  # a command larger than the socket takes at once: the Trio path sends the rest
            self._resume(self._send_rest_on_trio(be, tracker, rest))
            return
        self._watch(be).follow(self._backend_readable)
        if bstream.decoder.buffered:  # bytes of this response came with the end of the previous one
            self._relay_chunk()

    def _watch(self, be: BackendConnection) -> BackendWatch:
        """``be``'s BackendWatch (made the first time the data plane runs a command on it), the running
        command's from now."""
        watch = be.watch
        if watch is None:
            watch = be.watch = BackendWatch(self.loop, be.stream)
        self.watch = watch
        return watch

    def _finish(self, tracker: ResponseTracker, be: BackendConnection, now: float | None = None) -> None:
        """The statement's accounting, as on the Trio path (``now``: its end, if read already)."""
        plan = self.plan
        if plan is not None:
            self.session._plain_done(plan, self.hg, self.dtext, self.dhash, tracker, now)
        else:
            st = self.stmt
            st.long_data.clear()
            self.session.prepared.executed(st, be, self.hg, False, tracker, now)

    def _retries_left(self) -> int:
        """How many times the running statement may be retried on another connection (a COM_QUERY's
        is worked out only when its connection fails: the common statement never needs it)."""
        retries = self.retries
        if retries is None:
            retries = self.retries = self.plan.retries(self.vars)
        return retries

    def _retry_on_trio(self) -> Callable[[], Awaitable[None]]:
        """The Trio path's retry of the running statement, whose connection failed before any byte of
        the response reached the client: one attempt less than the statement was allowed."""
        s, payload, hg, retries = self.session, self.request, self.hg, self._retries_left()
        plan, dtext, dhash = self.plan, self.dtext, self.dhash
        if plan is None:
            return functools.partial(s.prepared._com_stmt_execute, payload, retried=True)

        async def retry() -> None:
            tracker = await s._forward(payload, _RESULT, hostgroup=hg, retries=retries - 1)
            if tracker is not None:
                s._plain_done(plan, hg, dtext, dhash, tracker)

        return retry

    # -- the response --------------------------------------------------------------------------------

    def _backend_readable(self) -> None:
        try:
            self._relay_chunk()
        except Exception as exc:
            self._failed(exc)

    def _relay_chunk(self) -> None:
        be = self.be
        tracker = self.tracker
        try:
            data = be.stream.recv_nowait()
            if data is None:
                return  # a spurious wake-up
            n = tracker.feed(data)
        except (ConnectionLost, MalformedPacket) as exc:
            self._backend_failed(exc)
            return
        if n == len(data) and not tracker.status & _STATE_CHANGED:
            chunk = data  # the usual read: what _client_chunk gives for it, without the call
        else:
            chunk = self.session._client_chunk(tracker, data, n)
        self.extra = len(data) - n
        self.sent = True
        if not self._to_client(chunk):
            if self.watch is not None:  # not read again until the client has taken this chunk
                self.watch.stop()
            return
        if tracker.done:
            self._statement_done()
        else:
            self._after_chunk()

    def _after_chunk(self) -> None:
        tracker = self.tracker
        if tracker.done:
            self._statement_done()
        elif tracker.local_infile:
            self._resume(self._local_infile_on_trio(self.be, tracker))
        elif not self.watch.registered:  # relaying goes on: watch the backend again
            self.watch.follow(self._backend_readable)
        elif self.be.stream.decoder.buffered:
            self._relay_chunk()

    def _to_client(self, data: bytes) -> bool:
        """Send ``data`` to the client; False if the socket did not take it all (the rest is sent
        when it becomes writable, then the command goes on) or the client is gone (handed over)."""
        try:
            sent = self.client_sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._hand_over(ConnectionLost(str(exc)))
            return False
        self.client.bytes_out += sent
        if sent == len(data):
            return True
        self.pending = memoryview(data)[sent:]
        self.loop.add_writer(self.client_fd, self._client_writable)
        return False

    def _client_writable(self) -> None:
        try:
            self._send_pending()
        except Exception as exc:
            self._failed(exc)

    def _send_pending(self) -> None:
        try:
            rest = self.client.send_nowait(self.pending)
        except ConnectionLost as exc:
            self._hand_over(exc)
            return
        if rest is not None:
            self.pending = rest
            return
        self.pending = None
        self.loop.remove_writer(self.client_fd)
        if self.tracker is None:  # a reply of the proxy's own (PING) has gone
            if self._command_done():
                self._serve_commands()
            return
        self._after_chunk()

    def _statement_done(self) -> None:
        s = self.session
        be, tracker = self.be, self.tracker
        self.watch.release()  # it stays in the loop while the connection waits in its pool
        self.be = self.tracker = self.watch = None
        s._response_done(be, tracker, self.hg, _RESULT, self.trx_effect, self.extra)
        now = time.monotonic()  # the statement's end
        self._finish(tracker, be, now)
        if self._command_done(now) and s.client.decoder.buffered:
            self._serve_commands()  # pipelined commands

    def _command_done(self, now: float | None = None) -> bool:
        """After a command (that ended at ``now``, if read already): give back the connections nothing
        pins; True if the session stays here."""
        s = self.session
        if s.backends:
            s._release_free()
        s.command = None
        self.busy = False
        s.services.counters.data_plane_commands += 1
        if s.services.draining or s.killed or not s._parkable():
            self._hand_over(None)
            return False
        s.state = _IDLE
        s.idle_since = time.monotonic() if now is None else now
        if not self.reading_client:
            self.loop.add_reader(self.client_fd, self._client_readable)
            self.reading_client = True
        return True

    # -- what the Trio task finishes -----------------------------------------------------------------

    def _resume(self, fn: Callable[[], Awaitable[None]]) -> None:
        self._stop_watching_backend()  # the Trio path reads it now
        self.be = self.tracker = None
        self._hand_over(Resume(fn))

    def _backend_failed(self, exc: Exception) -> None:
        """The statement's connection failed: as on the Trio path, a read nothing of which reached the
        client is retried on another connection; otherwise the client gets an error (or, in the middle
        of a packet or of a response that makes no sense, the session closes)."""
        s = self.session
        be, tracker = self.be, self.tracker
        self._stop_watching_backend()
        self.be = self.tracker = None
        err = s._lost_backend(be, exc)
        if self.sent and (tracker.in_packet or isinstance(exc, MalformedPacket)):
            self._hand_over(CloseSession())
            return
        if not self.sent and self._retries_left() > 0:
            log.info("session %d: retrying on another connection after: %s", s.id, exc)
            self._hand_over(Resume(self._retry_on_trio()))
            return
        seq = tracker.next_seq if self.sent else 1

        async def fail() -> None:
            await s._send_err(err, seq)

        self._hand_over(Resume(fail))

    def _send_rest_on_trio(self, be: BackendConnection, tracker: ResponseTracker, rest):
        s, hg, trx_effect = self.session, self.hg, self.trx_effect

        async def send_rest_and_relay() -> None:
            try:
                await be.stream.send_all(rest)
            except ConnectionLost as exc:
                err = s._lost_backend(be, exc)
                await s._send_err(err)
                return
            done = await s._relay(be, tracker, hg, b"", _RESULT, sent=False, trx_effect=trx_effect)
            if done is not None:
                self._finish(done, be)

        return send_rest_and_relay

    def _local_infile_on_trio(self, be: BackendConnection, tracker: ResponseTracker):
        s, hg, trx_effect = self.session, self.hg, self.trx_effect

        async def relay_file_and_rest() -> None:
            await s._local_infile(be, tracker)
            if be.closed:
                return
            done = await s._relay(be, tracker, hg, b"", _RESULT, sent=True, trx_effect=trx_effect)
            if done is not None:
                self._finish(done, be)

        return relay_file_and_rest
