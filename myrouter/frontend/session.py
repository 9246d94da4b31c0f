"""One client session: handshake, authentication, then the command loop.

One Trio task per client. The command loop handles one request and then its
whole response before reading the next request; responses from the backend
are forwarded as raw bytes while a ``ResponseTracker`` finds where they end.
No task, channel or cancel scope is created per statement on the hot path.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import re
import time
from typing import TYPE_CHECKING

import trio

from ..backend.connection import BackendConnection, BackendState, open_backend
from ..net.stream import ConnectionLost, PacketStream
from ..protocol import errors as E
from ..protocol.auth import BackendSecret, ServerAuth, new_scramble
from ..protocol.constants import DEFAULT_CHARSET, Capability, Command, Status
from ..protocol.errors import MalformedPacket, MySQLError, PacketTooLarge, SequenceError
from ..protocol.messages import (
    OK,
    ChangeUser,
    HandshakeResponse41,
    HandshakeV10,
    SSL_REQUEST_LENGTH,
    error_payload,
)
from ..protocol.packets import frame
from ..protocol.response import ResponseKind, ResponseTracker, response_kind

if TYPE_CHECKING:
    from ..app import Proxy

log = logging.getLogger("myrouter.session")

C = Capability

# What the proxy offers clients. Not offered: SSL, compression, query
# attributes and optional result-set metadata (they change packet layouts).
SERVER_CAPABILITIES = (
    C.LONG_PASSWORD | C.FOUND_ROWS | C.LONG_FLAG | C.CONNECT_WITH_DB | C.NO_SCHEMA | C.ODBC | C.LOCAL_FILES
    | C.IGNORE_SPACE | C.PROTOCOL_41 | C.INTERACTIVE | C.IGNORE_SIGPIPE | C.TRANSACTIONS | C.SECURE_CONNECTION
    | C.MULTI_STATEMENTS | C.MULTI_RESULTS | C.PS_MULTI_RESULTS | C.PLUGIN_AUTH | C.CONNECT_ATTRS
    | C.PLUGIN_AUTH_LENENC_CLIENT_DATA | C.CAN_HANDLE_EXPIRED_PASSWORDS | C.SESSION_TRACK
)

_KILL_RE = re.compile(rb"\s*kill\s+(?:(query|connection)\s+)?(\d+)\s*;?\s*\Z", re.I)

# Commands that never reach a backend through the proxy.
_REFUSED_COMMANDS = frozenset(
    (
        Command.SLEEP, Command.CONNECT, Command.TIME, Command.DELAYED_INSERT, Command.DAEMON,
        Command.SHUTDOWN, Command.REFRESH, Command.DEBUG, Command.CREATE_DB, Command.DROP_DB,
        Command.BINLOG_DUMP, Command.BINLOG_DUMP_GTID, Command.TABLE_DUMP, Command.CONNECT_OUT,
        Command.REGISTER_SLAVE,
    )
)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


class SessionState(enum.Enum):
    HANDSHAKE = "handshake"
    IDLE = "idle"  # waiting for the client's next command
    BUSY = "busy"  # running a command
    CLOSING = "closing"


class CloseSession(Exception):
    """End this session (the reply, if any, has been sent)."""


class ClientSession:
    def __init__(self, app: Proxy, stream: PacketStream, peer: tuple) -> None:
        self.app = app
        self.id = app.next_session_id()
        self.client = stream
        self.client_addr = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.client_host = peer[0] if peer else "?"
        self.client_is_loopback = _is_loopback(self.client_host)
        self.state = SessionState.HANDSHAKE
        self.username = ""
        self.secret: BackendSecret | None = None
        self.default_hostgroup = 0
        self.capabilities = 0
        self.charset = DEFAULT_CHARSET
        self.schema: str | None = None
        self.attrs: dict[str, str] = {}
        self.status = int(Status.AUTOCOMMIT)
        self.scramble = new_scramble()
        self.backend: BackendConnection | None = None
        self.scope: trio.CancelScope | None = None
        self._idle_scope: trio.CancelScope | None = None
        self.killed = False
        self.command: int | None = None
        self.info: bytes = b""
        self.command_started = 0.0
        self.connected_at = time.time()

    def __repr__(self) -> str:
        return f"<ClientSession {self.id} {self.username!r}@{self.client_addr} {self.state.value}>"

    # ------------------------------------------------------------------ run

    async def run(self) -> None:
        try:
            if await self._handshake():
                await self._command_loop()
        except CloseSession:
            pass
        except ConnectionLost as exc:
            log.debug("session %d: client connection lost: %s", self.id, exc)
        except MySQLError as exc:
            log.info("session %d: closing after error %s", self.id, exc)
            await self._try_send_err(exc, 1 if self.state is not SessionState.HANDSHAKE else 2)
        finally:
            self.state = SessionState.CLOSING
            self._drop_backend(quit=not self.killed)
            self.client.close()

    # ------------------------------------------------------------ handshake

    async def _handshake(self) -> bool:
        app = self.app
        v = app.vars
        if app.draining:
            await self._try_send_err(E.server_shutdown(), 0)
            return False
        if len(app.sessions) > v.max_connections:
            log.warning("session %d from %s refused: max_connections=%d reached", self.id, self.client_addr,
                        v.max_connections)
            await self._try_send_err(E.too_many_connections(), 0)
            return False
        server_caps = SERVER_CAPABILITIES
        if v.enable_client_deprecate_eof:
            server_caps |= C.DEPRECATE_EOF
        greeting = HandshakeV10(
            server_version=app.server_version,
            connection_id=self.id,
            auth_data=self.scramble,
            capabilities=server_caps,
            charset=DEFAULT_CHARSET,
            status=Status.AUTOCOMMIT,
            auth_plugin=v.default_authentication_plugin,
        )
        timeout = v.connect_timeout_client / 1000
        try:
            with trio.fail_after(timeout):
                await self.client.send_packet(greeting.encode(), 0)
                self.client.decoder.expect_seq = 1
                pkt = await self.client.read_packet()
                payload = pkt.payload
                if len(payload) == SSL_REQUEST_LENGTH and int.from_bytes(payload[:4], "little") & C.SSL:
                    raise E.MySQLError(E.ER_HANDSHAKE_ERROR, "Bad handshake: SSL is not enabled on this proxy", "08S01")
                try:
                    resp = HandshakeResponse41.parse(payload)
                except MalformedPacket as exc:
                    raise E.bad_handshake() from exc
                self.capabilities = resp.capabilities & server_caps
                auth = ServerAuth(
                    scramble=self.scramble,
                    lookup=app.lookup_credential,
                    default_plugin=v.default_authentication_plugin,
                    rsa=app.rsa,
                    sha2_cache=app.sha2_cache,
                    client_host=self.client_host,
                    cleartext_ok=self.client_is_loopback,
                )
                step = auth.start(resp.username, resp.auth_response, resp.auth_plugin)
                seq = (pkt.seq + 1) & 0xFF
                while True:
                    for out in step.send:
                        seq = await self.client.send_packet(out, seq)
                    if step.done:
                        break
                    self.client.decoder.expect_seq = seq
                    pkt = await self.client.read_packet()
                    seq = (pkt.seq + 1) & 0xFF
                    step = auth.receive(pkt.payload)
        except trio.TooSlowError:
            log.info("session %d from %s: handshake timed out after %.1fs", self.id, self.client_addr, timeout)
            app.counters.client_connections_aborted += 1
            await self._try_send_err(E.MySQLError(E.ER_HANDSHAKE_ERROR, "Bad handshake: timeout", "08S01"), 2)
            return False
        except SequenceError:
            app.counters.client_connections_aborted += 1
            await self._try_send_err(E.packets_out_of_order(), 2)
            return False
        except PacketTooLarge:
            app.counters.client_connections_aborted += 1
            await self._try_send_err(E.packet_too_large(), 2)
            return False
        except MalformedPacket:
            app.counters.client_connections_aborted += 1
            await self._try_send_err(E.bad_handshake(), 2)
            return False
        finally:
            self.client.decoder.expect_seq = None
        if step.error is not None:
            log.info("session %d: access denied for user %r from %s", self.id, resp.username, self.client_addr)
            app.counters.access_denied += 1
            await self._try_send_err(step.error, seq)
            return False
        user = app.user(resp.username)
        assert user is not None and auth.secret is not None
        self.username = resp.username
        self.secret = auth.secret
        self.default_hostgroup = user.default_hostgroup
        self.charset = resp.charset
        self.attrs = resp.attrs
        self.schema = resp.database or user.default_schema or None
        await self.client.send_packet(OK(status=self.status).encode(self.capabilities), seq)
        self.state = SessionState.IDLE
        log.info("session %d: user %r connected from %s", self.id, self.username, self.client_addr)
        return True

    # --------------------------------------------------------- command loop

    async def _command_loop(self) -> None:
        app = self.app
        counters = app.counters
        handlers = self._handlers
        while True:
            pkt = await self._read_command()
            if pkt is None:
                return
            payload = pkt.payload
            if pkt.seq != 0:
                await self._send_err(E.packets_out_of_order(), (pkt.seq + 1) & 0xFF)
                return
            if not payload:
                await self._send_err(E.malformed_packet("empty command"))
                continue
            cmd = payload[0]
            self.command = cmd
            self.command_started = time.monotonic()
            counters.questions += 1
            handler = handlers.get(cmd)
            try:
                if handler is None:
                    await self._send_err(E.unknown_command(cmd))
                else:
                    await handler(self, payload)
            except MalformedPacket as exc:
                await self._send_err(E.malformed_packet(str(exc)))
            except MySQLError as exc:
                await self._send_err(exc)
            self.command = None
            if app.draining or self.killed:
                return

    async def _read_command(self):
        """The next command packet, or None when the session should end (after any reply)."""
        try:
            pkt = self.client.packet_nowait()
            if pkt is not None:
                self.state = SessionState.BUSY
                return pkt
            return await self._wait_command()
        except PacketTooLarge:
            log.info("session %d: client sent a packet larger than max_allowed_packet; closing", self.id)
            await self._try_send_err(E.packet_too_large(), 1)
        except SequenceError:
            log.info("session %d: client sent packets out of order; closing", self.id)
            await self._try_send_err(E.packets_out_of_order(), 1)
        return None

    async def _wait_command(self):
        client = self.client
        v = self.app.vars
        self.state = SessionState.IDLE
        idle_deadline = trio.current_time() + v.wait_timeout / 1000
        partial_since: float | None = None
        while True:
            if self.app.draining or self.killed:
                return None
            if client.decoder.buffered:
                if partial_since is None:
                    partial_since = trio.current_time()
                deadline = min(idle_deadline, partial_since + v.client_packet_timeout / 1000)
            else:
                deadline = idle_deadline
            with trio.CancelScope(deadline=deadline) as scope:
                self._idle_scope = scope
                await client.wait_readable()
            self._idle_scope = None
            if scope.cancelled_caught:
                if self.app.draining or self.killed:
                    return None
                if client.decoder.buffered:
                    log.info("session %d: client sent an incomplete packet and stopped; closing", self.id)
                    await self._try_send_err(E.read_timeout(), 1)
                else:
                    log.info("session %d: idle for wait_timeout=%dms; closing", self.id, v.wait_timeout)
                return None
            pkt = client.packet_nowait()
            if pkt is not None:
                self.state = SessionState.BUSY
                return pkt

    def cancel_if_idle(self) -> None:
        """Used by the drain: end the session now if it waits for its client."""
        if self._idle_scope is not None:
            self._idle_scope.cancel()

    def kill(self) -> None:
        """KILL CONNECTION from another session: end this one."""
        self.killed = True
        if self.scope is not None:
            self.scope.cancel()

    # ------------------------------------------------------------- replies

    async def _send_err(self, err: MySQLError, seq: int = 1) -> None:
        await self.client.send_packet(error_payload(err, self.capabilities or C.PROTOCOL_41), seq)

    async def _try_send_err(self, err: MySQLError, seq: int) -> None:
        """Send an error on a connection that is about to close; a dead peer is fine."""
        try:
            await self.client.send_packet(error_payload(err, self.capabilities or C.PROTOCOL_41), seq)
        except ConnectionLost as exc:
            log.debug("session %d: could not send error %s: %s", self.id, err, exc)

    async def _send_ok(self, seq: int = 1, *, affected: int = 0, insert_id: int = 0, info: str = "") -> None:
        ok = OK(affected_rows=affected, last_insert_id=insert_id, status=self.status, info=info)
        await self.client.send_packet(ok.encode(self.capabilities), seq)

    # ------------------------------------------------------------ backends

    async def _get_backend(self) -> BackendConnection:
        be = self.backend
        if be is not None and not be.closed:
            return be
        assert self.secret is not None
        server = self.app.pick_server(self.default_hostgroup)
        be = await open_backend(
            server,
            username=self.username,
            secret=self.secret,
            database=self.schema,
            client_capabilities=self.capabilities,
            charset=self.charset,
            attrs=self.attrs,
            connect_timeout=self.app.vars.connect_timeout_server / 1000,
            max_packet=self.app.vars.max_allowed_packet,
        )
        self.app.backend_opened(be)
        self.backend = be
        self.status = be.status
        return be

    def _drop_backend(self, *, quit: bool = False) -> None:
        be = self.backend
        if be is None:
            return
        self.backend = None
        if quit and be.state is BackendState.IDLE:
            self.app.retire_backend(be)
        else:
            be.close()
        self.app.backend_closed(be)

    def _lost_backend(self, be: BackendConnection, exc: Exception) -> MySQLError:
        self._drop_backend()
        self.app.counters.backend_errors += 1
        log.warning("session %d: lost backend %s (hostgroup %d): %s", self.id, be.server, be.server.hostgroup, exc)
        self.status &= ~(Status.IN_TRANS | Status.IN_TRANS_READONLY)
        return MySQLError(
            E.ER_NET_READ_ERROR,
            f"Lost connection to backend {be.server} (hostgroup {be.server.hostgroup}) during query: {exc}",
            "08S01",
        )

    async def _forward(self, payload: bytes, kind: ResponseKind, *, cursor: bool = False) -> ResponseTracker | None:
        """Send a command to the session's backend and relay the response to the client."""
        be = await self._get_backend()
        be.state = BackendState.ACTIVE
        try:
            await be.stream.send_all(frame(payload, 0))
        except ConnectionLost as exc:
            err = self._lost_backend(be, exc)
            if kind is not ResponseKind.NONE:
                await self._send_err(err)
            return None
        if kind is ResponseKind.NONE:
            be.state = BackendState.IDLE
            return None
        tracker = ResponseTracker(kind, be.capabilities, cursor=cursor)
        bstream = be.stream
        client = self.client
        sent = False
        while True:
            try:
                data = await bstream.recv_some()
            except ConnectionLost as exc:
                err = self._lost_backend(be, exc)
                if tracker.in_packet:
                    # The client holds part of a packet: no clean reply is possible.
                    raise CloseSession from exc
                await self._send_err(err, tracker.next_seq if sent else 1)
                return None
            n = tracker.feed(data)
            await client.send_all(data if n == len(data) else data[:n])
            sent = True
            if tracker.done:
                break
            if tracker.local_infile:
                await self._relay_local_infile(be, tracker)
                if be.closed:
                    return None
        if n != len(data):
            log.error("session %d: backend %s sent %d bytes past the end of a response; dropping it",
                      self.id, be.server, len(data) - n)
            self._drop_backend()
        else:
            be.state = BackendState.IDLE
        be.last_used = time.monotonic()
        if tracker.status_seen:
            self.status = tracker.status
        return tracker

    async def _relay_local_infile(self, be: BackendConnection, tracker: ResponseTracker) -> None:
        """Relay the client's file (packets ended by an empty one) to the backend."""
        client = self.client
        v = self.app.vars
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

    # ------------------------------------------------------------ commands

    async def _com_query(self, payload: bytes) -> None:
        head = payload[1:32].lstrip()
        if head[:4].lower() == b"kill":
            m = _KILL_RE.match(payload, 1)
            if m is not None:
                query_only = (m.group(1) or b"").lower() == b"query"
                await self._kill(int(m.group(2)), query_only)
                return
        self.info = payload
        await self._forward(payload, ResponseKind.RESULT)

    async def _com_init_db(self, payload: bytes) -> None:
        tracker = await self._forward(payload, ResponseKind.SIMPLE)
        if tracker is not None and tracker.error is None:
            self.schema = payload[1:].decode("utf-8", "surrogateescape")

    async def _com_ping(self, payload: bytes) -> None:
        await self._send_ok()

    async def _com_quit(self, payload: bytes) -> None:
        raise CloseSession

    async def _com_simple(self, payload: bytes) -> None:
        await self._forward(payload, response_kind(payload[0]))

    async def _com_stmt_execute(self, payload: bytes) -> None:
        if len(payload) < 10:
            raise MalformedPacket("COM_STMT_EXECUTE shorter than its fixed header")
        await self._forward(payload, ResponseKind.RESULT, cursor=bool(payload[5] & 0x0F))

    async def _com_no_reply(self, payload: bytes) -> None:
        # COM_STMT_CLOSE / COM_STMT_SEND_LONG_DATA: no response. Without a backend
        # the statement cannot exist, so there is nothing to forward.
        if len(payload) < 5:
            return
        if self.backend is not None and not self.backend.closed:
            await self._forward(payload, ResponseKind.NONE)

    async def _com_refused(self, payload: bytes) -> None:
        name = Command(payload[0]).name
        await self._send_err(MySQLError(E.ER_UNKNOWN_COM_ERROR, f"Command COM_{name} is not supported by myrouter", "08S01"))

    async def _com_process_kill(self, payload: bytes) -> None:
        if len(payload) < 5:
            raise MalformedPacket("COM_PROCESS_KILL without a connection id")
        await self._kill(int.from_bytes(payload[1:5], "little"), query_only=False)

    async def _com_reset_connection(self, payload: bytes) -> None:
        if self.backend is not None and not self.backend.closed:
            tracker = await self._forward(payload, ResponseKind.SIMPLE)
            if tracker is None or tracker.error is not None:
                return
        else:
            await self._send_ok()
        self.status = int(Status.AUTOCOMMIT)

    async def _com_change_user(self, payload: bytes) -> None:
        app = self.app
        v = app.vars
        req = ChangeUser.parse(payload, self.capabilities)
        auth = ServerAuth(
            scramble=self.scramble,
            lookup=app.lookup_credential,
            default_plugin=v.default_authentication_plugin,
            rsa=app.rsa,
            sha2_cache=app.sha2_cache,
            client_host=self.client_host,
            cleartext_ok=self.client_is_loopback,
        )
        step = auth.start(req.username, req.auth_response, req.auth_plugin)
        seq = 1
        try:
            with trio.fail_after(v.connect_timeout_client / 1000):
                while True:
                    for out in step.send:
                        seq = await self.client.send_packet(out, seq)
                    if step.done:
                        break
                    pkt = await self.client.read_packet()
                    seq = (pkt.seq + 1) & 0xFF
                    step = auth.receive(pkt.payload)
        except trio.TooSlowError:
            raise CloseSession from None
        if step.error is not None:
            log.info("session %d: COM_CHANGE_USER to %r denied", self.id, req.username)
            app.counters.access_denied += 1
            await self._send_err(step.error, seq)
            raise CloseSession
        user = app.user(req.username)
        assert user is not None and auth.secret is not None
        # The old user's backend state (transaction, variables, temporary tables) ends here.
        self._drop_backend(quit=True)
        self.username = req.username
        self.secret = auth.secret
        self.default_hostgroup = user.default_hostgroup
        self.schema = req.database or user.default_schema or None
        if req.charset:
            self.charset = req.charset
        if req.attrs:
            self.attrs = req.attrs
        self.status = int(Status.AUTOCOMMIT)
        await self._send_ok(seq)

    async def _kill(self, target_id: int, query_only: bool) -> None:
        target = self.app.sessions.get(target_id)
        if target is None:
            raise MySQLError(E.ER_NO_SUCH_THREAD, f"Unknown thread id: {target_id}", "HY000")
        if target.username != self.username:
            raise MySQLError(E.ER_KILL_DENIED_ERROR, f"You are not owner of thread {target_id}", "HY000")
        if target is self:
            if query_only:
                await self._send_ok()  # nothing of ours is running while we ask
                return
            await self._send_err(MySQLError(E.ER_QUERY_INTERRUPTED, "Query execution was interrupted", "70100"))
            raise CloseSession
        await self.app.kill_session_work(target, query_only=query_only)
        await self._send_ok()

    _handlers = {
        Command.QUERY: _com_query,
        Command.INIT_DB: _com_init_db,
        Command.PING: _com_ping,
        Command.QUIT: _com_quit,
        Command.FIELD_LIST: _com_simple,
        Command.STATISTICS: _com_simple,
        Command.SET_OPTION: _com_simple,
        Command.PROCESS_INFO: _com_simple,
        Command.STMT_PREPARE: _com_simple,
        Command.STMT_EXECUTE: _com_stmt_execute,
        Command.STMT_FETCH: _com_simple,
        Command.STMT_RESET: _com_simple,
        Command.STMT_CLOSE: _com_no_reply,
        Command.STMT_SEND_LONG_DATA: _com_no_reply,
        Command.PROCESS_KILL: _com_process_kill,
        Command.RESET_CONNECTION: _com_reset_connection,
        Command.CHANGE_USER: _com_change_user,
    }


ClientSession._handlers.update({c: ClientSession._com_refused for c in _REFUSED_COMMANDS})
