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
from ..config import MySQLVariables
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
    parse_err,
)
from ..protocol.packets import frame
from ..protocol.response import ResponseKind, ResponseTracker, response_kind
from ..routing.classifier import Classification, StatementFlag as _F, StatementKind
from ..routing.digest import digest, format_digest
from ..stats.digests import affected_rows
from ..stats.querylog import now_us
from ..routing.rules import RuleContext

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

_MAYBE_KILL = frozenset((b"k", b"K", b" ", b"\t", b"\n", b"\r"))  # a cheap first test before the regex
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


ER_QUERY_TIMEOUT = 3024
# default_query_timeout at its default means "no deadline": no cancel scope per statement
_DEFAULT_QUERY_TIMEOUT = MySQLVariables().default_query_timeout
# Statements whose result depends on the connection they run on: never retried elsewhere.
_STATEFUL = (_F.SIDE_EFFECT | _F.USER_VARIABLE_ASSIGN | _F.USER_VARIABLE_READ | _F.DIAGNOSTICS
             | _F.SQL_CALC_FOUND_ROWS | _F.SELECT_INTO | _F.LOCKING).value
# Flag tests on the hot path use plain ints: enum.Flag operators allocate and cost ~0.4 us each.
_LOCK_TABLES = _F.LOCK_TABLES.value
_UNLOCK_TABLES = _F.UNLOCK_TABLES.value
_GET_LOCK = _F.GET_LOCK.value
_RELEASE_LOCK = _F.RELEASE_LOCK.value
_CREATE_TEMP = _F.CREATE_TEMPORARY_TABLE.value
_DROP_TEMP = _F.DROP_TEMPORARY_TABLE.value
_UV_ASSIGN = _F.USER_VARIABLE_ASSIGN.value
_UV_READ = _F.USER_VARIABLE_READ.value
_DIAGNOSTICS = _F.DIAGNOSTICS.value
_CHANGE_SCHEMA = _F.CHANGE_SCHEMA.value
_SET_GLOBAL = _F.SET_GLOBAL_VARIABLE.value
_SET_LOGGED = (_F.SET_SESSION_VARIABLE | _F.SET_AUTOCOMMIT | _F.USER_VARIABLE_ASSIGN).value
_IN_TRANS = int(Status.IN_TRANS)
_AUTOCOMMIT = int(Status.AUTOCOMMIT)
# Flags _after_query acts on; a statement with none of them (and not a SET/USE) skips it.
_AFTER_MASK = _LOCK_TABLES | _UNLOCK_TABLES | _GET_LOCK | _RELEASE_LOCK | _CREATE_TEMP | _DROP_TEMP | _UV_ASSIGN


def _state_error(be: BackendConnection, what: str, err_payload: bytes) -> MySQLError:
    err = parse_err(err_payload)
    return MySQLError(err.code, f"while restoring session state ({what}) on {be.server}: {err.message}",
                      err.sqlstate)


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
        # Routing state. One backend connection per hostgroup the session has used.
        self.backends: dict[int, BackendConnection] = {}
        self.fast_forward = False
        self.transaction_persistent = True
        self.trx_hg: int | None = None  # hostgroup where a transaction is open
        self.sticky_hg: int | None = None  # locks or a rule keep the session on this hostgroup
        self.table_lock = False
        self.named_locks = 0
        self.rule_sticky = False
        self.temp_tables: dict[str, int] = {}  # temporary table -> hostgroup that has it
        self.var_hg: int | None = None  # hostgroup where user variables were assigned by a query
        self.last_hg: int | None = None
        self.set_log: list[bytes] = []  # session SET statements, replayed on the other connections
        self.flag_in = 0
        try:
            sockname = stream.sock.getsockname()
            self.proxy_host, self.proxy_port = sockname[0], sockname[1]
        except OSError:
            self.proxy_host, self.proxy_port = None, None
        self.scope: trio.CancelScope | None = None
        self.idle_since = time.monotonic()
        self.killed = False
        self.counted_user = False  # counted in app.user_sessions under self.username
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
            self._drop_all_backends(quit=not self.killed)
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
                auth = self._new_auth()
                step = auth.start(resp.username, resp.auth_response, resp.auth_plugin)
                step, seq = await self._auth_exchange(auth, step, (pkt.seq + 1) & 0xFF, check_seq=True)
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
        app.audit.login(self, resp.username, resp.database, step.error)  # structured logs (audit)
        if step.error is not None:
            log.info("session %d: access denied for user %r from %s", self.id, resp.username, self.client_addr)
            app.counters.access_denied += 1
            await self._try_send_err(step.error, seq)
            return False
        user = app.user(resp.username)
        assert user is not None and auth.secret is not None
        if app.user_sessions.get(resp.username, 0) >= user.max_connections:
            log.warning("session %d: user %r has reached its max_connections=%d", self.id, resp.username,
                        user.max_connections)
            await self._try_send_err(MySQLError(
                E.ER_USER_LIMIT_REACHED,
                f"User '{resp.username}' has exceeded the 'max_connections' resource (current value: "
                f"{user.max_connections})", "42000"), seq)
            return False
        app.user_sessions[resp.username] = app.user_sessions.get(resp.username, 0) + 1
        self.counted_user = True
        self.username = resp.username
        self.secret = auth.secret
        self._apply_user(user)
        self.charset = resp.charset
        self.attrs = resp.attrs
        self.schema = resp.database or user.default_schema or None
        await self.client.send_packet(OK(status=self.status).encode(self.capabilities), seq)
        self.state = SessionState.IDLE
        app.audit.connected(self)  # structured logs (audit)
        log.info("session %d: user %r connected from %s", self.id, self.username, self.client_addr)
        return True

    def _new_auth(self) -> ServerAuth:
        app = self.app
        return ServerAuth(
            scramble=self.scramble,
            lookup=app.lookup_credential,
            default_plugin=app.vars.default_authentication_plugin,
            rsa=app.rsa,
            sha2_cache=app.sha2_cache,
            client_host=self.client_host,
            cleartext_ok=self.client_is_loopback,
        )

    async def _auth_exchange(self, auth: ServerAuth, step, seq: int, *, check_seq: bool):
        """Send what the auth machine asks for and feed it the client's answers until it is done."""
        while True:
            for out in step.send:
                seq = await self.client.send_packet(out, seq)
            if step.done:
                return step, seq
            if check_seq:
                self.client.decoder.expect_seq = seq
            pkt = await self.client.read_packet()
            seq = (pkt.seq + 1) & 0xFF
            step = auth.receive(pkt.payload)

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
        """The next command packet, or None when the session should end (after any reply).

        The client sends its next command only after our reply, so a read now
        would fail: wait for readability first. While waiting, the session is
        IDLE: the drain and the idle reaper end it by cancelling its scope.
        """
        client = self.client
        try:
            pkt = client.decoder.next_packet()  # pipelined commands already received
            if pkt is None:
                self.state = SessionState.IDLE
                self.idle_since = time.monotonic()
                await client.wait_readable()
                pkt = client.packet_nowait()
                if pkt is None:
                    pkt = await self._wait_rest_of_packet()
                    if pkt is None:
                        return None
            self.state = SessionState.BUSY
            return pkt
        except PacketTooLarge:
            log.info("session %d: client sent a packet larger than max_allowed_packet; closing", self.id)
            await self._try_send_err(E.packet_too_large(), 1)
        except SequenceError:
            log.info("session %d: client sent packets out of order; closing", self.id)
            await self._try_send_err(E.packets_out_of_order(), 1)
        return None

    async def _wait_rest_of_packet(self):
        """Part of a packet has arrived: the rest must follow within client_packet_timeout."""
        client = self.client
        timeout = self.app.vars.client_packet_timeout / 1000
        with trio.move_on_after(timeout):
            while True:
                await client.wait_readable()
                pkt = client.packet_nowait()
                if pkt is not None:
                    return pkt
        log.info("session %d: client sent an incomplete packet and stopped for %.1fs; closing", self.id, timeout)
        await self._try_send_err(E.read_timeout(), 1)
        return None

    def cancel_if_idle(self) -> bool:
        """End the session now if it waits for its client's next command (drain, idle reaper)."""
        if self.state is SessionState.IDLE and self.scope is not None:
            self.scope.cancel()
            return True
        return False

    @property
    def backend_capabilities(self) -> int:
        """The client's capabilities as passed on to backends (LOCAL INFILE only if enabled)."""
        if self.app.vars.enable_load_data_local_infile:
            return self.capabilities
        return self.capabilities & ~C.LOCAL_FILES

    def _apply_user(self, user) -> None:
        self.default_hostgroup = user.default_hostgroup
        self.fast_forward = bool(user.fast_forward)
        self.transaction_persistent = bool(user.transaction_persistent)

    def _reset_session_state(self) -> None:
        """What COM_RESET_CONNECTION and COM_CHANGE_USER forget."""
        self.trx_hg = None
        self._unstick()
        self.temp_tables.clear()
        self.var_hg = None
        self.last_hg = None
        self.set_log.clear()
        self.flag_in = 0

    def kill(self) -> None:
        """KILL CONNECTION from another session: end this one."""
        self.killed = True
        if self.scope is not None:
            self.scope.cancel()

    # ------------------------------------------------------------- replies

    async def _send_err(self, err: MySQLError, seq: int = 1) -> None:
        self.app.audit.error(self, err)  # structured logs (audit)
        await self.client.send_packet(error_payload(err, self.capabilities or C.PROTOCOL_41), seq)

    async def _try_send_err(self, err: MySQLError, seq: int) -> None:
        """Send an error on a connection that is about to close; a dead peer is fine."""
        self.app.audit.error(self, err)  # structured logs (audit)
        try:
            await self.client.send_packet(error_payload(err, self.capabilities or C.PROTOCOL_41), seq)
        except ConnectionLost as exc:
            log.debug("session %d: could not send error %s: %s", self.id, err, exc)

    async def _send_ok(self, seq: int = 1, *, affected: int = 0, insert_id: int = 0, info: str = "") -> None:
        ok = OK(affected_rows=affected, last_insert_id=insert_id, status=self.status, info=info)
        await self.client.send_packet(ok.encode(self.capabilities), seq)

    # ------------------------------------------------------------ backends

    async def _get_backend(self, hostgroup: int) -> BackendConnection:
        """The session's connection to ``hostgroup``, opened on first use."""
        be = self.backends.get(hostgroup)
        if be is not None:
            return be
        assert self.secret is not None
        app = self.app
        server = app.hostgroups.choose(hostgroup)
        try:
            be = await open_backend(
                server.address,
                username=self.username,
                secret=self.secret,
                database=self.schema,
                client_capabilities=self.backend_capabilities,
                charset=self.charset,
                attrs=self.attrs,
                connect_timeout=app.vars.connect_timeout_server / 1000,
                max_packet=app.vars.max_allowed_packet,
            )
        except MySQLError:
            server.connect_errors += 1
            raise
        be.schema = self.schema
        be.server_ref = server
        app.backend_opened(be)
        self.backends[hostgroup] = be
        return be

    async def _sync_backend(self, be: BackendConnection) -> None:
        """Bring a connection in line with the session: current schema, then SET statements it missed."""
        try:
            if self.schema and be.schema != self.schema:
                tracker = await be.run_command(b"\x02" + self.schema.encode("utf-8", "surrogateescape"),
                                               ResponseKind.SIMPLE)
                if tracker.error is not None:
                    raise _state_error(be, "USE " + self.schema, tracker.error)
                be.schema = self.schema
            log_ = self.set_log
            while be.applied_sets < len(log_):
                tracker = await be.simple_query(log_[be.applied_sets])
                if tracker.error is not None:
                    raise _state_error(be, log_[be.applied_sets].decode("utf-8", "replace"), tracker.error)
                be.applied_sets += 1
        except (ConnectionLost, MalformedPacket) as exc:
            raise self._lost_backend(be, exc) from exc

    def _drop_backend(self, be: BackendConnection, *, quit: bool = False) -> None:
        for hg, b in list(self.backends.items()):
            if b is be:
                del self.backends[hg]
                if self.trx_hg == hg:
                    self.trx_hg = None
                if self.sticky_hg == hg:
                    self._unstick()
        if quit and be.state is BackendState.IDLE:
            self.app.retire_backend(be)
        else:
            be.close()
        self.app.backend_closed(be)

    def _drop_all_backends(self, *, quit: bool = False) -> None:
        for be in list(self.backends.values()):
            self._drop_backend(be, quit=quit)

    def _lost_backend(self, be: BackendConnection, exc: Exception) -> MySQLError:
        self._drop_backend(be)
        self.app.counters.backend_errors += 1
        log.warning("session %d: lost backend %s (hostgroup %d): %s", self.id, be.server, be.server.hostgroup, exc)
        self.status &= ~(Status.IN_TRANS | Status.IN_TRANS_READONLY)
        return MySQLError(
            E.ER_NET_READ_ERROR,
            f"Lost connection to backend {be.server} (hostgroup {be.server.hostgroup}) during query: {exc}",
            "08S01",
        )

    def _unstick(self) -> None:
        self.sticky_hg = None
        self.table_lock = False
        self.named_locks = 0
        self.rule_sticky = False

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
    ) -> ResponseTracker | None:
        """Send a command to the session's backend in ``hostgroup`` and relay the response.

        ``timeout_ms``: kill the statement on the backend after that long.
        ``capture``: a list that receives the raw response bytes (query cache).
        ``retries``: reconnect and resend this many times if the backend fails
        before any byte of the response reached the client (safe statements only).
        """
        hg = self.default_hostgroup if hostgroup is None else hostgroup
        be = self.backends.get(hg)  # closed connections are removed from the map when dropped
        if be is None:
            be = await self._get_backend(hg)
        if be.applied_sets < len(self.set_log) or (self.schema and be.schema != self.schema):
            await self._sync_backend(be)
        be.state = BackendState.ACTIVE
        try:
            await be.stream.send_all(frame(payload, 0))
        except ConnectionLost as exc:
            err = self._lost_backend(be, exc)
            if retries > 0:
                return await self._forward(payload, kind, hostgroup=hg, cursor=cursor, timeout_ms=timeout_ms,
                                           capture=capture, retries=retries - 1)
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
        deadline = trio.current_time() + timeout_ms / 1000 if timeout_ms else None
        while True:
            try:
                if deadline is None:
                    # The first read right after the request would fail: wait for the reply first.
                    data = await (bstream.recv_some() if sent else bstream.recv_after_wait())
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
                                               capture=capture, retries=retries - 1)
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
            chunk = data if n == len(data) else data[:n]
            await client.send_all(chunk)
            if capture is not None:
                capture.append(chunk)
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
            self._drop_backend(be)
        else:
            be.state = BackendState.IDLE
        be.last_used = time.monotonic()
        srv = be.server_ref
        if srv is not None:
            srv.queries += 1
        if tracker.status_seen:
            st = tracker.status
            be.status = st
            if st & _IN_TRANS:
                self.trx_hg = hg
            elif self.trx_hg == hg:
                self.trx_hg = None
            self.status = st
        self.last_hg = hg
        return tracker

    async def _statement_timed_out(self, be: BackendConnection, tracker: ResponseTracker, sent: bool,
                                   timeout_ms: int | None) -> bool:
        """A rule's timeout passed: kill the statement on the backend.

        If nothing reached the client yet, drain the killed statement's response
        and answer with ER_QUERY_TIMEOUT (returns True); otherwise keep relaying:
        the backend ends the response with its own error (returns False).
        """
        log.info("session %d: statement exceeded its %d ms timeout on %s; killing it", self.id, timeout_ms,
                 be.server)
        self.app.counters.query_timeouts += 1
        await self.app.kill_backend_query(be, self.username, self.secret)
        if sent:
            return False
        try:
            while not tracker.done:
                data = await be.stream.recv_some()
                tracker.feed(data)
                if tracker.local_infile:
                    raise ConnectionLost("LOCAL INFILE request while draining a killed statement")
            be.state = BackendState.IDLE
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
        if payload[1:2] in _MAYBE_KILL and payload[1:32].lstrip()[:4].lower() == b"kill":
            m = _KILL_RE.match(payload, 1)
            if m is not None:
                query_only = (m.group(1) or b"").lower() == b"query"
                await self._kill(int(m.group(2)), query_only)
                return
        self.info = payload
        if self.fast_forward:
            await self._forward(payload, ResponseKind.RESULT)
            return
        app = self.app
        sql = payload[1:].decode("utf-8", "surrogateescape")
        dtext, dhash = digest(sql)
        cls = app.classifier.classify(sql, dhash)
        decision = app.rules.evaluate(RuleContext(
            self.username, self.schema, self.client_host, self.proxy_host, self.proxy_port, self.flag_in,
            dhash, dtext, sql, cls,
        ))
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
        hg = self._route(decision, cls)
        cache_key = None
        if decision.cache_ttl and cls.kind is StatementKind.READ:
            cache_key = (self.username, self.schema, sql)
            cached = app.query_cache.get(cache_key)
            if cached is not None:
                await self.client.send_all(cached)
                return
        if decision.delay:
            await trio.sleep(decision.delay / 1000)
        if decision.mirror_hostgroup is not None:
            app.mirror(self, payload, decision.mirror_hostgroup)
        safe_to_retry = (cls.kind is StatementKind.READ and not cls.bits & _STATEFUL
                         and self.trx_hg is None and self.status & _AUTOCOMMIT)
        retries = (decision.retries if decision.retries is not None else app.vars.query_retries_on_failure)
        timeout = decision.timeout
        if timeout is None and app.vars.default_query_timeout < _DEFAULT_QUERY_TIMEOUT:
            timeout = app.vars.default_query_timeout
        capture: list[bytes] | None = [] if cache_key is not None else None
        started = now_us() if app.query_log is not None else 0
        tracker = await self._forward(payload, ResponseKind.RESULT, hostgroup=hg, timeout_ms=timeout,
                                      capture=capture, retries=retries if safe_to_retry else 0)
        if tracker is not None:
            us = int((time.monotonic() - self.command_started) * 1_000_000)
            app.digest_stats.record(hg, self.schema or "", self.username, self.client_host, dhash, dtext, us,
                                    affected_rows(tracker.last_ok), tracker.rows)
            app.command_counters.record(cls.command, us)
        if started and (decision.log or (decision.log is None and app.vars.eventslog_default_log)):
            self._log_query(started, hg, dtext, dhash, sql, tracker)
        if tracker is None or tracker.error is not None:
            return
        if capture is not None and tracker.results == 1 and (tracker.rows or decision.cache_empty_result != 0):
            app.query_cache.put(cache_key, b"".join(capture), decision.cache_ttl)
        self._after_query(hg, cls, decision, payload)

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
        self.app.query_log.write(event)

    def _route(self, decision, cls: Classification) -> int:
        """The hostgroup for a statement: rules first, then what keeps the session correct."""
        hg = decision.destination_hostgroup
        if hg is None:
            hg = self.default_hostgroup
        if self.sticky_hg is not None:
            return self.sticky_hg  # LOCK TABLES, GET_LOCK, sticky_conn, multiplex=0
        if self.trx_hg is not None and self.transaction_persistent:
            return self.trx_hg  # an open transaction stays where it started
        if not self.status & _AUTOCOMMIT:
            return self.default_hostgroup  # autocommit=0: every statement opens a transaction
        flags = cls.bits
        if flags & _UV_READ and self.var_hg is not None:
            return self.var_hg
        if flags & _DIAGNOSTICS and self.last_hg is not None:
            return self.last_hg
        if self.temp_tables and cls.tables:
            for t in cls.tables:
                where = self.temp_tables.get(t)
                if where is not None:
                    return where
        return hg

    def _after_query(self, hg: int, cls: Classification, decision, payload: bytes) -> None:
        """Update what the session must remember after a statement succeeded."""
        flags = cls.bits
        if not flags & _AFTER_MASK and cls.kind is not StatementKind.SESSION \
                and not (decision.sticky_conn or decision.multiplex == 0):
            return
        if flags & _LOCK_TABLES:
            self.table_lock = True
            self.sticky_hg = hg
        if flags & _UNLOCK_TABLES:
            self.table_lock = False
        if flags & _GET_LOCK:
            self.named_locks += 1
            self.sticky_hg = hg
        if flags & _RELEASE_LOCK and self.named_locks:
            self.named_locks -= 1
        if decision.sticky_conn or decision.multiplex == 0:
            self.rule_sticky = True
            self.sticky_hg = hg
        if self.sticky_hg is not None and not (self.table_lock or self.named_locks or self.rule_sticky):
            self.sticky_hg = None
        if flags & _CREATE_TEMP:
            for t in cls.tables:
                self.temp_tables[t] = hg
        if flags & _DROP_TEMP:
            for t in cls.tables:
                self.temp_tables.pop(t, None)
        if flags & _UV_ASSIGN and cls.kind is not StatementKind.SESSION:
            self.var_hg = hg
        if cls.kind is StatementKind.SESSION:
            if flags & _CHANGE_SCHEMA and cls.schema:
                self.schema = cls.schema
                be = self.backends.get(hg)
                if be is not None:
                    be.schema = cls.schema
            if flags & _SET_LOGGED and not flags & _SET_GLOBAL:
                # Replayed on the session's other connections before their next statement.
                self.set_log.append(payload[1:])
                be = self.backends.get(hg)
                if be is not None and be.applied_sets == len(self.set_log) - 1:
                    be.applied_sets = len(self.set_log)

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
        if self.backends.get(self.default_hostgroup) is not None:
            await self._forward(payload, ResponseKind.NONE)

    async def _com_refused(self, payload: bytes) -> None:
        name = Command(payload[0]).name
        await self._send_err(MySQLError(E.ER_UNKNOWN_COM_ERROR, f"Command COM_{name} is not supported by myrouter", "08S01"))

    async def _com_process_kill(self, payload: bytes) -> None:
        if len(payload) < 5:
            raise MalformedPacket("COM_PROCESS_KILL without a connection id")
        await self._kill(int.from_bytes(payload[1:5], "little"), query_only=False)

    async def _com_reset_connection(self, payload: bytes) -> None:
        # Connections other than the default hostgroup's are simply closed: reset is their end.
        default = self.backends.get(self.default_hostgroup)
        for be in list(self.backends.values()):
            if be is not default:
                self._drop_backend(be, quit=True)
        self._reset_session_state()
        if default is not None:
            default.applied_sets = 0
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
        auth = self._new_auth()
        step = auth.start(req.username, req.auth_response, req.auth_plugin)
        try:
            with trio.fail_after(v.connect_timeout_client / 1000):
                step, seq = await self._auth_exchange(auth, step, 1, check_seq=False)
        except trio.TooSlowError:
            raise CloseSession from None
        app.audit.change_user(self, req.username, req.database, step.error)  # structured logs (audit)
        if step.error is not None:
            log.info("session %d: COM_CHANGE_USER to %r denied", self.id, req.username)
            app.counters.access_denied += 1
            await self._send_err(step.error, seq)
            raise CloseSession
        user = app.user(req.username)
        assert user is not None and auth.secret is not None
        # The old user's backend state (transaction, variables, temporary tables) ends here.
        self._drop_all_backends(quit=True)
        self._reset_session_state()
        if self.counted_user:
            app.user_sessions[self.username] -= 1
        app.user_sessions[req.username] = app.user_sessions.get(req.username, 0) + 1
        self.counted_user = True
        self.username = req.username
        self.secret = auth.secret
        self._apply_user(user)
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
