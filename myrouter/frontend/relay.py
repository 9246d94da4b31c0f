"""Relaying a command to a backend and its response to the client (``RelayMixin._forward``).

The response's bytes are forwarded as they arrive while a ``ResponseTracker`` finds where it ends;
retries before any byte reached the client, statement timeouts, LOCAL INFILE, and what the
response's final OK packet tells (status, session tracking, insert ids) are handled here.
"""

from __future__ import annotations

import dataclasses

import trio

from ..backend import pins as P
from ..backend.connection import BackendConnection, BackendState
from ..net.stream import ConnectionLost
from ..protocol.constants import SessionTrack
from ..protocol.errors import MalformedPacket, MySQLError
from ..protocol.messages import (
    OK,
    parse_err,
)
from ..protocol.codec import Reader
from ..protocol.packets import frame
from ..protocol.response import ResponseKind, ResponseTracker
from ..runtime.services import SessionServices
from .decisions import TRX_KEEPS
from .common import (
    CloseSession,
    ER_QUERY_TIMEOUT,
    _PROTOCOL_41,
    _SESSION_TRACK,
    _STATE_CHANGED,
    _TRACKING_CAPS,
    _wait_readable,
    log,
)


def _strip_session_state(chunk: bytes, ok: bytes | None, keep=None) -> bytes:
    """``chunk`` with its final OK packet (payload ``ok``) rewritten without session-state data,
    for a client without CLIENT_SESSION_TRACK; with ``keep``, only without the entries ``keep``
    refuses (``_not_gtid``: mysql-client_session_track_gtid=false). Unchanged if the OK is not
    wholly in ``chunk``."""
    if ok is None:
        return chunk
    start = len(chunk) - 4 - len(ok)
    if start < 0 or chunk[start + 4:] != ok:
        return chunk
    try:
        parsed = OK.parse(ok, _TRACKING_CAPS)
        state = b"" if keep is None else _filter_session_state(parsed.session_state, keep)
    except MalformedPacket:
        return chunk
    if state == parsed.session_state:
        return chunk
    status = parsed.status if state else parsed.status & ~_STATE_CHANGED
    stripped = dataclasses.replace(parsed, status=status, session_state=state)
    caps = _PROTOCOL_41 if keep is None else _TRACKING_CAPS
    return chunk[:start] + frame(stripped.encode(caps, header=ok[0]), chunk[start + 3])


def _filter_session_state(state: bytes, keep) -> bytes:
    """Session-state data with only the entries (type, body) that ``keep(type, body)`` accepts."""
    kept = []
    r = Reader(state)
    while not r.at_end():
        begin = r.pos
        kind = r.u8()
        body = r.lenenc_bytes()
        if keep(kind, body):
            kept.append(state[begin:r.pos])
    return b"".join(kept)


def _not_gtid(kind: int, body: bytes) -> bool:
    """False for a GTID entry: SESSION_TRACK_GTIDS, or MariaDB's last_gtid system variable."""
    if kind == SessionTrack.GTIDS:
        return False
    if kind == SessionTrack.SYSTEM_VARIABLES:
        return Reader(body).lenenc_bytes().lower() != b"last_gtid"
    return True


def _ok_insert_id(ok: bytes) -> int:
    """last_insert_id of an OK packet payload (0 if none or malformed)."""
    try:
        r = Reader(ok)
        r.u8()
        r.lenenc_int()
        return r.lenenc_int()
    except MalformedPacket:
        return 0


class RelayMixin:
    """The relay of one command and its response (a part of ``ClientSession``)."""

    services: SessionServices

    async def _forward(
        self,
        payload: bytes,
        kind: ResponseKind,
        *,
        hostgroup: int | None = None,
        cursor: bool = False,
        timeout_ms: int | None = None,
        capture: list[bytes] | None = None,
        retries: int = 0,
        prepare=None,
        trx_effect: int = 1,
    ) -> ResponseTracker | None:
        """Send a command to the session's backend in ``hostgroup`` and relay the response.

        ``timeout_ms``: kill the statement on the backend after that long.
        ``capture``: a list that receives the raw response bytes (query cache).
        ``retries``: reconnect and resend this many times if the backend fails
        before any byte of the response reached the client (safe statements only).
        ``prepare``: ``async (connection) -> payload | None`` builds the payload for the
        borrowed connection (prepared statements); None means it already answered the client.
        ``trx_effect``: what the command does to an autocommit-off session's transaction (``TRX_OPENS``,
        ``TRX_KEEPS``, ``TRX_ENDS``; see ``_track_transaction``).
        """
        hg, be = await self._borrow_or_fall_back(self.default_hostgroup if hostgroup is None else hostgroup)
        if self.next_trx_sets and trx_effect != TRX_KEEPS:
            await self._run_next_transaction_sets(be)
        if prepare is not None:
            payload = await prepare(be)
            if payload is None:
                return None
        be.state = BackendState.ACTIVE
        bstream = be.stream
        try:
            rest = bstream.send_nowait(frame(payload, 0))
            if rest is not None:
                await bstream.send_all(rest)
        except ConnectionLost as exc:
            err = self._lost_backend(be, exc)
            if retries > 0:
                return await self._forward(payload, kind, hostgroup=hg, cursor=cursor, timeout_ms=timeout_ms,
                                           capture=capture, retries=retries - 1, prepare=prepare, trx_effect=trx_effect)
            if kind is not ResponseKind.NONE:
                await self._send_err(err)
            return None
        if kind is ResponseKind.NONE:
            be.state = BackendState.RESERVED
            return None
        tracker = ResponseTracker(kind, be.capabilities, cursor=cursor)
        return await self._relay(be, tracker, hg, payload, kind, sent=False, cursor=cursor, timeout_ms=timeout_ms,
                                 capture=capture, retries=retries, prepare=prepare, trx_effect=trx_effect)

    async def _relay(self, be: BackendConnection, tracker: ResponseTracker, hg: int, payload: bytes,
                     kind: ResponseKind, *, sent: bool, cursor: bool = False, timeout_ms: int | None = None,
                     capture: list[bytes] | None = None, retries: int = 0, prepare=None,
                     trx_effect: int = 1) -> ResponseTracker | None:
        """Relay the response to the command ``payload`` sent on ``be`` (its ``tracker`` fed with what came
        so far; ``sent``: bytes of it reached the client already) to its end, then ``_response_done``.
        Also where the data plane hands a response over when it needs to wait (``dataplane``)."""
        # The proxy reads session tracking from every backend; a client that did not ask for it
        # gets its final OK packet without it.
        client = self.client
        bstream = be.stream
        deadline = trio.current_time() + timeout_ms / 1000 if timeout_ms else None
        while True:
            try:
                if deadline is None:
                    if sent:
                        data = await bstream.recv_some()
                    else:
                        # The first read right after the request would fail: wait for the reply first.
                        data = bstream.buffered_now()
                        if data is None:
                            try:
                                await _wait_readable(bstream.sock)
                            except trio.ClosedResourceError as exc:
                                raise ConnectionLost("backend socket closed while waiting") from exc
                            data = bstream.recv_nowait()
                            if data is None:
                                data = await bstream.recv_some()
                else:
                    data = None
                    with trio.move_on_at(deadline):
                        data = await bstream.recv_some()
                    if data is None:
                        deadline = None
                        if await self._statement_timed_out(be, tracker, sent, timeout_ms):
                            return None
                        continue
            except ConnectionLost as exc:
                err = self._lost_backend(be, exc)
                if tracker.in_packet:
                    # The client holds part of a packet: no clean reply is possible.
                    raise CloseSession from exc
                if not sent and retries > 0:
                    log.info("session %d: retrying on another connection after: %s", self.id, exc)
                    return await self._forward(payload, kind, hostgroup=hg, cursor=cursor, timeout_ms=timeout_ms,
                                               capture=capture, retries=retries - 1, prepare=prepare, trx_effect=trx_effect)
                await self._send_err(err, tracker.next_seq if sent else 1)
                return None
            try:
                n = tracker.feed(data)
            except MalformedPacket as exc:
                # The backend's bytes make no sense: the connection cannot be trusted again.
                err = self._lost_backend(be, exc)
                if sent:
                    raise CloseSession from exc  # the client is somewhere inside a response
                await self._send_err(err)
                return None
            chunk = self._client_chunk(tracker, data, n)
            rest = client.send_nowait(chunk)
            if rest is not None:
                await client.send_all(rest)
            if capture is not None:
                capture.append(chunk)
            sent = True
            if tracker.done:
                break
            if tracker.local_infile:
                await self._local_infile(be, tracker)
                if be.closed:
                    return None
        self._response_done(be, tracker, hg, kind, trx_effect, len(data) - n)
        return tracker

    def _client_chunk(self, tracker: ResponseTracker, data: bytes, n: int) -> bytes:
        """What the client gets of ``data``, of which the response's first ``n`` bytes are: its final OK
        without the session-state data the client did not ask for (all of it without CLIENT_SESSION_TRACK,
        the GTIDs with mysql-client_session_track_gtid=false)."""
        chunk = data if n == len(data) else data[:n]
        if tracker.done and tracker.status & _STATE_CHANGED:
            if self.services.registry.peers is not None:
                self._publish_written_gtid(tracker.last_ok)  # before the client has the OK (workers)
            if not self.capabilities & _SESSION_TRACK:
                return _strip_session_state(chunk, tracker.last_ok)
            if not self.services.vars.client_session_track_gtid:
                return _strip_session_state(chunk, tracker.last_ok, keep=_not_gtid)
        return chunk

    async def _local_infile(self, be: BackendConnection, tracker: ResponseTracker) -> None:
        """The server asked for the client's file (LOAD DATA LOCAL INFILE): relay it."""
        self.services.pin_counters.started(P.LOCAL_INFILE)
        await self._relay_local_infile(be, tracker)

    def _response_done(self, be: BackendConnection, tracker: ResponseTracker, hg: int, kind: ResponseKind,
                       trx_effect: int, extra: int) -> None:
        """A response has been relayed whole (``extra``: bytes the backend sent past its end): what it
        changed for the connection and the session (status, transaction, session state, insert id)."""
        if extra:
            log.error("session %d: backend %s sent %d bytes past the end of a response; dropping it",
                      self.id, be.server, extra)
            self._drop_backend(be)
        else:
            be.state = BackendState.RESERVED
        srv = be.server_ref
        if srv is not None:
            srv.queries += 1
        if tracker.status_seen:
            st = tracker.status
            be.status = st
            self.status = st
        if trx_effect != TRX_KEEPS and self.next_trx_sets:
            self.next_trx_sets = []  # they applied to the transaction this command opened
            self.next_trx_read_only = False
        be.in_trx = self._track_transaction(hg, trx_effect, be.in_trx)
        if tracker.status_seen:
            ok = tracker.last_ok
            if ok is not None:
                if st & _STATE_CHANGED:
                    self._absorb_state(be, ok)
                if not tracker.columns and kind is ResponseKind.RESULT:
                    insert_id = _ok_insert_id(ok)
                    if insert_id:
                        self.last_insert_id = insert_id
                        self.last_insert_hg = hg
                        delay = self.services.vars.auto_increment_delay_multiplex
                        if delay:
                            self.autoinc_left = delay + 1
                            self.hold[hg] = self.hold.get(hg, 0) | P.AUTO_INCREMENT
        self.last_hg = hg

    async def _run_next_transaction_sets(self, be: BackendConnection) -> None:
        """Run the held SET TRANSACTION statements on ``be``, right before the statement that opens the
        transaction they are for (kept until that statement succeeds: a retry runs them again)."""
        for sql in self.next_trx_sets:
            try:
                tracker = await be.simple_query(sql)
            except (ConnectionLost, MalformedPacket) as exc:
                raise self._lost_backend(be, exc) from exc
            if tracker.error is not None:
                self.next_trx_sets = []  # refused, as the server would have refused it when it was sent
                self.next_trx_read_only = False
                err = parse_err(tracker.error)
                raise MySQLError(err.code, err.message, err.sqlstate)  # the server's own answer to it

    async def _statement_timed_out(self, be: BackendConnection, tracker: ResponseTracker, sent: bool,
                                   timeout_ms: int | None) -> bool:
        """A rule's timeout passed: kill the statement on the backend.

        If nothing reached the client yet, drain the killed statement's response
        and answer with ER_QUERY_TIMEOUT (returns True); otherwise keep relaying:
        the backend ends the response with its own error (returns False).
        """
        log.info("session %d: statement exceeded its %d ms timeout on %s; killing it", self.id, timeout_ms,
                 be.server)
        self.services.counters.query_timeouts += 1
        await self.services.kill_backend_query(be, self.username, self.secret)
        if sent:
            return False
        try:
            while not tracker.done:
                data = await be.stream.recv_some()
                tracker.feed(data)
                if tracker.local_infile:
                    raise ConnectionLost("LOCAL INFILE request while draining a killed statement")
            be.state = BackendState.RESERVED
            if tracker.status_seen:
                be.status = tracker.status
        except ConnectionLost as exc:
            self._lost_backend(be, exc)
        await self._send_err(MySQLError(
            ER_QUERY_TIMEOUT,
            f"Query execution was interrupted, maximum statement execution time exceeded ({timeout_ms} ms)",
            "HY000"))
        return True

    async def _relay_local_infile(self, be: BackendConnection, tracker: ResponseTracker) -> None:
        """Relay the client's file (packets ended by an empty one) to the backend."""
        client = self.client
        v = self.services.vars
        backend_ok = True
        while True:
            try:
                pkt = await client.read_packet(timeout=v.wait_timeout / 1000)
            except trio.TooSlowError:
                raise CloseSession from None
            if backend_ok:
                try:
                    await be.stream.send_all(frame(pkt.payload, pkt.seq))
                except ConnectionLost as exc:
                    backend_ok = False
                    err = self._lost_backend(be, exc)
            if not pkt.payload:
                break
        if not backend_ok:
            await self._send_err(err, (pkt.seq + 1) & 0xFF)
            return
        tracker.resume_after_local_infile()
