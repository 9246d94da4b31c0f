"""One client session: handshake, authentication, then the command loop.

One Trio task per client. The command loop handles one request and then its
whole response before reading the next request; responses from the backend
are forwarded as raw bytes while a ``ResponseTracker`` finds where they end.
No task, channel or cancel scope is created per statement on the hot path.

The session's parts, one module each (``myrouter/frontend/``):

- ``handshake``: the connection phase, shared with the admin port;
- ``decisions`` (``StatementState``): the sans-I/O state and decisions (route, transaction,
  pins, what a statement leaves behind), unit-tested without sockets;
- ``query`` (``QueryMixin``): COM_QUERY, its plan memo and plain path;
- ``relay`` (``RelayMixin``): one command to a backend and its response to the client;
- ``backends`` (``BackendsMixin``): borrowing, state replay and giving back of connections;
- ``prepared`` (``PreparedStatements``) and ``local`` (``LocalAnswers``): components with
  their own state for COM_STMT_* and for what the proxy answers itself (KILL, PROCESSLIST).

The mixins share the session's attributes (the per-statement path stays free of extra
indirections); the components are reached as ``session.prepared`` and ``session.local``.
"""

from __future__ import annotations

import logging
import time

import trio

from ..backend import pins as P
from ..backend.connection import BackendConnection
from ..backend.pool import KEY_CAPABILITIES, Login, PoolKey
from ..net.stream import ConnectionLost, PacketStream, start_compression
from ..protocol import errors as E
from ..protocol.auth import BackendSecret, ServerAuth, new_scramble
from ..protocol.constants import DEFAULT_CHARSET, Command, Status
from ..protocol.errors import MalformedPacket, MySQLError, PacketTooLarge, SequenceError
from ..protocol.messages import (
    OK,
    ChangeUser,
    HandshakeV10,
    error_payload,
    parse_err,
)
from ..protocol.response import ResponseKind, response_kind
from ..runtime.services import SessionServices
from ..stats.logsafe import clip
from .dataplane import PARTIAL, DataPlane, Resume
from .decisions import StatementState
from .handshake import TLSFailed, accept_login, auth_exchange
from .common import (
    C,
    CloseSession,
    MAX_HANDSHAKE_PACKET,
    SERVER_CAPABILITIES,
    SessionState,
    _AUTOCOMMIT,
    _COM_QUERY,
    _REFUSED_COMMANDS,
    _is_loopback,
    _wait_readable,
    log,
)

from .backends import BackendsMixin, _sql_literal  # noqa: F401 (_sql_literal: tests)
from .local import LocalAnswers
from .prepared import PreparedStatements
from .query import QueryMixin, _Plan
from .relay import RelayMixin, _ok_insert_id, _strip_session_state  # noqa: F401 (tests)

# Pins that keep nothing an open transaction does not keep already: a savepoint lives in the
# transaction; the auto_increment_delay_multiplex countdown goes on in _release_free on either plane.
_REDUNDANT_IN_TRANSACTION = P.SAVEPOINT | P.AUTO_INCREMENT


class ClientSession(QueryMixin, RelayMixin, BackendsMixin, StatementState):
    """One client: the Trio driver of the session (handshake, command loop, replies, COM_CHANGE_USER
    and COM_RESET_CONNECTION) over its parts (see the module docstring)."""

    def __init__(self, services: SessionServices, stream: PacketStream, peer: tuple) -> None:
        StatementState.__init__(self)
        self.services = services
        self.id = services.registry.next_session_id()
        self.client = stream
        self.client_addr = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.client_host = peer[0] if peer else "?"
        self.client_is_loopback = _is_loopback(self.client_host)
        self.state = SessionState.HANDSHAKE
        self.username = ""
        self.secret: BackendSecret | None = None
        self.capabilities = 0
        self.charset = DEFAULT_CHARSET
        self.attrs: dict[str, str] = {}
        self.scramble = new_scramble()
        # Backend connections the session holds now, by hostgroup: during a statement, or
        # between statements while something pins them (self.hold, a transaction).
        self.backends: dict[int, BackendConnection] = {}
        self.pool_key: PoolKey | None = None
        self.login: Login | None = None
        self.statement_mode = False  # pool_mode=statement
        self.last_insert_id = 0
        self.last_insert_hg: int | None = None
        self.row_count = -1
        self.last_gtid = ""  # GTID of the session's last write (session tracking of last_gtid)
        self.causal_reads = "off"
        self.prepared = PreparedStatements(self)  # COM_STMT_*
        self.fast_forward = False
        self.tls = False  # the client connection is encrypted (it sent an SSLRequest)
        self.flag_in = 0
        self._plans: dict[int, _Plan] = {}  # digest hash -> what _plan decided
        self.release_at = 0.0  # connection_delay_multiplex_ms: trio time when kept connections go back (0: none)
        try:
            sockname = stream.sock.getsockname()
            self.proxy_host, self.proxy_port = sockname[0], sockname[1]
        except OSError:
            self.proxy_host, self.proxy_port = None, None
        self.scope: trio.CancelScope | None = None
        self.idle_since = time.monotonic()
        self.killed = False
        self.local = LocalAnswers(self)  # KILL, PROCESSLIST, local functions
        self.counted_user = False  # counted in the registry's user_sessions under self.username
        self.command: int | None = None
        self.info: bytes = b""
        self.command_started = 0.0
        self.connected_at = time.time()
        self._handshake_scope: trio.CancelScope | None = None  # cancelled to end the handshake early
        self.handshake_evicted = False  # ended to make room for newer handshakes
        # the data-plane driver when the process runs a host loop (``dataplane``); set after login
        self.data_plane: DataPlane | None = None
        self.digested: tuple[bytes, str, int] | None = None  # (payload, digest text, hash) the data plane computed

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
            if self.state is SessionState.HANDSHAKE:  # any client can repeat this: rate-limited
                self.services.log_throttle.log(log, logging.INFO, "handshakes refused", "session %d from %s: closing "
                                          "after error %s", self.id, self.client_addr, exc)
            else:
                log.info("session %d: closing after error %s", self.id, exc)
            await self._try_send_err(exc, 1 if self.state is not SessionState.HANDSHAKE else 2)
        finally:
            self.state = SessionState.CLOSING
            self._drop_all_backends(quit=not self.killed)
            self.client.close()

    # ------------------------------------------------------------ handshake

    async def _handshake(self) -> bool:
        rt = self.services
        v = rt.vars
        if rt.draining:
            await self._try_send_err(E.server_shutdown(), 0)
            return False
        if rt.registry.logged_in_sessions >= v.max_connections:  # connections still in the handshake are not counted
            rt.log_throttle.log(log, logging.WARNING, "connections refused: max_connections reached",
                                 "session %d from %s refused: max_connections=%d reached", self.id,
                                 self.client_addr, v.max_connections)
            await self._try_send_err(E.too_many_connections(), 0)
            return False
        server_caps = SERVER_CAPABILITIES
        if v.enable_client_deprecate_eof:
            server_caps |= C.DEPRECATE_EOF
        tls_context = rt.tls_context if v.have_ssl else None
        if tls_context is not None:
            server_caps |= C.SSL
        if v.have_compress:
            server_caps |= C.COMPRESS
        greeting = HandshakeV10(
            server_version=rt.runtime_config.server_version,
            connection_id=self.id,
            auth_data=self.scramble,
            capabilities=server_caps,
            charset=DEFAULT_CHARSET,
            status=Status.AUTOCOMMIT,
            auth_plugin=v.default_authentication_plugin,
        )
        timeout = v.connect_timeout_client / 1000
        for other in rt.registry.handshakes.admit(self, self.client_host, limit=v.max_connections_in_handshake,
                                          per_source=v.max_connections_in_handshake_per_host):
            other.end_handshake()
        try:
            with trio.fail_after(timeout) as self._handshake_scope:
                login = await accept_login(self.client, greeting, tls_context=tls_context,
                                           no_tls_message="Bad handshake: SSL is not enabled on this proxy",
                                           make_auth=self._new_auth, max_packet=MAX_HANDSHAKE_PACKET)
                resp, auth, step, seq = login.response, login.auth, login.step, login.seq
                self.capabilities = login.capabilities
                error = step.error or self._tls_refusal(resp.username)
        except trio.TooSlowError:
            rt.counters.client_connections_aborted += 1
            if self.handshake_evicted:
                rt.log_throttle.log(log, logging.INFO, "handshakes ended for newer connections",
                                     "session %d from %s: handshake ended to make room for newer connections "
                                     "(max_connections_in_handshake=%d, per host %d)", self.id, self.client_addr,
                                     v.max_connections_in_handshake, v.max_connections_in_handshake_per_host)
                await self._try_send_err(E.too_many_connections(), 2)
                return False
            rt.log_throttle.log(log, logging.INFO, "handshakes timed out",
                                 "session %d from %s: handshake timed out after %.1fs", self.id, self.client_addr,
                                 timeout)
            await self._try_send_err(E.MySQLError(E.ER_HANDSHAKE_ERROR, "Bad handshake: timeout", "08S01"), 2)
            return False
        except SequenceError:
            rt.counters.client_connections_aborted += 1
            await self._try_send_err(E.packets_out_of_order(), 2)
            return False
        except PacketTooLarge as exc:
            rt.counters.client_connections_aborted += 1
            rt.log_throttle.log(log, logging.INFO, "oversized handshake packets",
                                 "session %d from %s: handshake packet refused: %s", self.id, self.client_addr, exc)
            await self._try_send_err(E.packet_too_large(), 2)
            return False
        except MalformedPacket:
            rt.counters.client_connections_aborted += 1
            await self._try_send_err(E.bad_handshake(), 2)
            return False
        except TLSFailed as exc:
            rt.log_throttle.log(log, logging.INFO, "TLS handshakes failed", "session %d from %s: %s",
                                 self.id, self.client_addr, exc)
            rt.counters.client_connections_aborted += 1
            return False
        finally:
            self._handshake_scope = None
            rt.registry.handshakes.release(self, self.client_host)
        rt.audit.login(self, resp.username, resp.database, error)  # structured logs (audit)
        if error is not None:
            rt.log_throttle.log(log, logging.INFO, "logins denied", "session %d: access denied for user %r from %s",
                                 self.id, clip(resp.username), self.client_addr)
            rt.counters.access_denied += 1
            await self._try_send_err(error, seq)
            return False
        user = rt.runtime_config.user(resp.username)
        assert user is not None and auth.secret is not None
        refusal = await rt.registry.admit(resp.username, user.max_connections, v.max_connections)
        if refusal == "max_connections":  # others logged in meanwhile (in any worker)
            rt.log_throttle.log(log, logging.WARNING, "connections refused: max_connections reached",
                                 "session %d from %s refused after authentication: max_connections=%d reached",
                                 self.id, self.client_addr, v.max_connections)
            await self._try_send_err(E.too_many_connections(), seq)
            return False
        if refusal is not None:
            log.warning("session %d: user %r has reached its max_connections=%d", self.id, resp.username,
                        user.max_connections)
            await self._try_send_err(MySQLError(
                E.ER_USER_LIMIT_REACHED,
                f"User '{resp.username}' has exceeded the 'max_connections' resource (current value: "
                f"{user.max_connections})", "42000"), seq)
            return False
        self.counted_user = True
        self.username = resp.username
        self.secret = auth.secret
        self._apply_user(user)
        self.charset = resp.charset
        self.attrs = resp.attrs
        self.schema = resp.database or user.default_schema or None
        self._new_login()
        error = await self._schema_refusal()
        if error is not None:
            await self._try_send_err(error, seq)
            return False
        await self.client.send_packet(OK(status=self.status).encode(self.capabilities), seq)
        if self.capabilities & C.COMPRESS:
            start_compression(self.client, client_side=False)  # from the packet after that OK
        self.state = SessionState.IDLE
        if rt.host_loop is not None:
            self.data_plane = DataPlane(self, rt.host_loop)
        rt.audit.connected(self)  # structured logs (audit)
        log.info("session %d: user %r connected from %s", self.id, self.username, self.client_addr)
        return True

    def end_handshake(self) -> None:
        """End this session's handshake now to make room for newer ones (``SessionRegistry.handshakes``):
        it gets ERR 1040 and is closed."""
        self.handshake_evicted = True
        if self._handshake_scope is not None:
            self._handshake_scope.cancel()

    async def _schema_refusal(self) -> MySQLError | None:
        """The error MariaDB gives at login for a schema that does not exist (1049) or that the user may
        not use (1044), checked on a connection of the default hostgroup, which then goes back to the
        pool in that schema (the session's first statement usually gets it again). A check that cannot
        be made now (no server reachable in time) does not refuse the login: statements will say why."""
        if not self.schema:
            return None
        hg = self.default_hostgroup
        scope = trio.move_on_after(self.services.vars.connect_timeout_client / 1000)
        try:
            with scope:
                await self._borrow(hg)
        except MySQLError as exc:
            if exc.code == E.ER_BAD_DB_ERROR:
                return MySQLError(exc.code, f"Unknown database '{self.schema}'", "42000")
            if exc.code == E.ER_DBACCESS_DENIED_ERROR:
                return MySQLError(exc.code, f"Access denied for user '{self.username}'@'{self.client_host}' to "
                                  f"database '{self.schema}'", "42000")
            log.info("session %d: schema %r not checked at login: %s", self.id, self.schema, exc)
        finally:
            if scope.cancelled_caught:  # a connection cut off mid-command is not given back to the pool
                log.info("session %d: schema %r not checked at login: no connection in time", self.id, self.schema)
                for be in list(self.backends.values()):
                    self._drop_backend(be)
            else:
                for hg, be in list(self.backends.items()):  # no statement ran: back at once, no delay
                    del self.backends[hg]
                    self.services.pools.release(be)
        return None

    def _new_auth(self, tls: bool | None = None) -> ServerAuth:
        """The auth machine for this client (``tls``: the connection just switched to TLS)."""
        rt = self.services
        if tls:
            self.tls = True
        return ServerAuth(
            scramble=self.scramble,
            lookup=rt.runtime_config.lookup_credential,
            default_plugin=rt.vars.default_authentication_plugin,
            rsa=rt.rsa,
            sha2_cache=rt.runtime_config.sha2_cache,
            client_host=self.client_host,
            secure_transport=self.tls,
            cleartext_ok=self.client_is_loopback,
        )

    def _tls_refusal(self, username: str) -> MySQLError | None:
        """mysql_users.use_ssl: a user who must use TLS is refused on a plain connection, with
        the same 1045 as a wrong password (as ProxySQL does); the log says why."""
        if self.tls:
            return None
        user = self.services.runtime_config.user(username)
        if user is None or not user.use_ssl:
            return None
        log.info("session %d: user %r has use_ssl=1 and connected without TLS", self.id, username)
        return E.access_denied(username, self.client_host, True)

    # --------------------------------------------------------- command loop

    async def _command_loop(self) -> None:
        rt = self.services
        counters = rt.counters
        handlers = self._handlers
        client = self.client
        decoder = client.decoder
        monotonic = time.monotonic
        while True:
            # Pipelined commands may be buffered already; else the client sends its next command
            # only after our reply, so a read now would fail: wait for readability first. While
            # waiting, the session is IDLE: the drain and the idle reaper end it by cancelling it.
            # A plain session, or one that holds only its open transaction's connection, waits on
            # the data plane (``dataplane``), which serves what it can and hands the rest back.
            resume = None
            try:
                pkt = decoder.next_packet() if decoder.buffered else None
                if pkt is None:
                    self.state = SessionState.IDLE
                    self.idle_since = monotonic()
                    if self.data_plane is not None and self._parkable():
                        got = await self.data_plane.park()
                        if got is None:  # no longer plain, or it must end
                            if rt.draining or self.killed:
                                return
                            continue
                        if got is PARTIAL:
                            pkt = None
                        elif type(got) is Resume:
                            resume = got
                        else:
                            pkt = got
                    elif self.release_at:  # connection_delay_multiplex_ms: kept connections go back then
                        with trio.move_on_at(self.release_at) as delay_scope:
                            await _wait_readable(client.sock)
                        if delay_scope.cancelled_caught:
                            self.release_delayed()
                            await _wait_readable(client.sock)
                        pkt = client.packet_nowait()
                    else:
                        await _wait_readable(client.sock)
                        pkt = client.packet_nowait()
            except trio.ClosedResourceError as exc:
                raise ConnectionLost("client socket closed while waiting") from exc
            except (PacketTooLarge, SequenceError) as exc:
                await self._bad_client_packet(exc)
                return
            if resume is None:
                if pkt is None:  # part of a packet arrived
                    pkt = await self._wait_rest_of_packet()
                    if pkt is None:
                        return
                self.state = SessionState.BUSY
                payload = pkt.payload
                if pkt.seq != 0:
                    await self._send_err(E.packets_out_of_order(), (pkt.seq + 1) & 0xFF)
                    return
                if not payload:
                    await self._send_err(E.malformed_packet("empty command"))
                    continue
                cmd = payload[0]
                self.command = cmd
                self.command_started = monotonic()
                counters.questions += 1
                self.statements += 1
            try:
                if resume is not None:  # a command the data plane started
                    await resume.fn()
                elif cmd == _COM_QUERY:
                    await self._com_query(payload)
                else:
                    handler = handlers.get(cmd)
                    if handler is None:
                        await self._send_err(E.unknown_command(cmd))
                    else:
                        await handler(self, payload)
            except MalformedPacket as exc:
                await self._send_err(E.malformed_packet(str(exc)))
            except MySQLError as exc:
                await self._send_err(exc)
            finally:
                if self.backends:
                    self._release_free()  # multiplexing: unpinned connections go back to the pool
            self.command = None
            if rt.draining or self.killed:
                return

    def _nothing_bends_routing(self) -> bool:
        """No stickiness (locks, a rule), temporary tables, causal reads, nor a read-only transaction to
        reopen elsewhere on a retry: what every plain statement, in a transaction or not, needs."""
        return self.sticky_hg is None and not self.temp_tables and self.causal_reads == "off" \
            and self.ro_restart is None

    def _between_transactions(self) -> bool:
        """The session holds no connection, has no transaction open and nothing bends its routing: in
        autocommit its next statement is plain (``_routing_is_plain``); with autocommit off it opens a
        transaction where ``_route`` sends it (the default hostgroup), as the data plane can do too."""
        return not self.backends and self.trx_hg is None and self._nothing_bends_routing()

    def _routing_is_plain(self) -> bool:
        """In autocommit, between transactions: what ``_plain_query`` needs of the session."""
        return bool(self.status & _AUTOCOMMIT) and self._between_transactions()

    def _holds_only_its_transaction(self) -> bool:
        """The session holds one connection, that of its open transaction (or of its autocommit-off
        session's), and for that reason only: no other pin (hold bits, pool_mode=session, multiplexing
        off) but those that keep nothing the transaction does not keep already, and nothing bends its
        routing; the connection's bytes go to its socket as they are (no TLS, no compression). The data
        plane serves the session's next statement on that connection when the Trio path would send it
        there too (``DataPlane._connection``)."""
        hg = self.trx_hg
        if hg is None or len(self.backends) != 1:
            return False
        be = self.backends.get(hg)
        return bool(be is not None and be.in_trx and be.stream.plain
                    and be.pins & ~_REDUNDANT_IN_TRANSACTION == P.TRANSACTION
                    and not any(pins for h, pins in self.hold.items() if h != hg)
                    and self._nothing_bends_routing())

    def _parkable(self) -> bool:
        """Whether the session's next command may be served on the data plane: it is between transactions
        (autocommit on or off) or holds only its open transaction's connection; nothing waits to run
        before the next statement (a delayed release, held SET TRANSACTION); its client connection is
        neither fast_forward nor TLS nor compressed; and the data plane serves statements at all (not
        while the query log or default_query_timeout apply to every one: parked, each would only be
        handed back)."""
        return ((self._between_transactions() or self._holds_only_its_transaction()) and not self.release_at
                and not self.next_trx_sets and not self.fast_forward and self.client.plain
                and self.services.plain_statements)

    async def _bad_client_packet(self, exc: Exception) -> None:
        if isinstance(exc, PacketTooLarge):
            log.info("session %d: client sent a packet larger than max_allowed_packet; closing", self.id)
            await self._try_send_err(E.packet_too_large(), 1)
        else:
            log.info("session %d: client sent packets out of order; closing", self.id)
            await self._try_send_err(E.packets_out_of_order(), 1)

    async def _wait_rest_of_packet(self):
        """Part of a packet has arrived: the rest must follow within client_packet_timeout."""
        client = self.client
        timeout = self.services.vars.client_packet_timeout / 1000
        try:
            with trio.move_on_after(timeout):
                while True:
                    await client.wait_readable()
                    pkt = client.packet_nowait()
                    if pkt is not None:
                        return pkt
        except (PacketTooLarge, SequenceError) as exc:
            await self._bad_client_packet(exc)
            return None
        log.info("session %d: client sent an incomplete packet and stopped for %.1fs; closing", self.id, timeout)
        await self._try_send_err(E.read_timeout(), 1)
        return None

    def wait_timeout_ms(self) -> int:
        """How long this session may wait for its client's next command: mysql-wait_timeout, or the
        client's own ``SET [SESSION] wait_timeout`` (seconds, as the server counts it) if shorter."""
        limit = self.services.vars.wait_timeout
        own = self.vars.get("wait_timeout")
        if own is not None:
            try:
                seconds = float(own.strip("'\""))
            except ValueError:
                return limit  # not a number the server accepted: it refused the SET, nothing recorded
            if seconds > 0:
                limit = min(limit, int(seconds * 1000))
        return limit

    def cancel_if_idle(self) -> bool:
        """End the session now if it waits for its client's next command (drain, idle reaper)."""
        if self.state is SessionState.IDLE and self.scope is not None:
            self.scope.cancel()
            return True
        return False

    @property
    def autocommit_false_is_transaction(self) -> bool:  # the live mysql-autocommit_false_is_transaction
        return self.services.vars.autocommit_false_is_transaction

    @property
    def backend_capabilities(self) -> int:
        """The client's capabilities as passed on to backends (LOCAL INFILE only if enabled)."""
        if self.services.vars.enable_load_data_local_infile:
            return self.capabilities
        return self.capabilities & ~C.LOCAL_FILES

    def _apply_user(self, user) -> None:
        self._plans = {}  # they depend on the user (rules with a username filter)
        self.default_hostgroup = user.default_hostgroup
        self.fast_forward = bool(user.fast_forward)
        self.transaction_persistent = bool(user.transaction_persistent)
        mode = user.pool_mode
        self.mode_pins = 0
        if mode == "session" or self.fast_forward:
            self.mode_pins = P.POOL_MODE_SESSION
        elif not self.services.vars.multiplexing:
            self.mode_pins = P.MULTIPLEXING_OFF
        self.statement_mode = mode == "statement" and not self.mode_pins
        self.causal_reads = user.causal_reads

    def _new_login(self) -> None:
        """The pool key and login for this session's user, capabilities and character set."""
        assert self.secret is not None
        caps = self.backend_capabilities
        self.pool_key = PoolKey(self.username, caps & KEY_CAPABILITIES, self.charset)
        self.login = Login(self.secret, caps, self.attrs)

    def _reset_session_state(self) -> None:
        """What COM_RESET_CONNECTION and COM_CHANGE_USER forget (connections are given back first)."""
        self._reset_statement_state()
        self.flag_in = 0
        self.last_insert_id = 0
        self.last_insert_hg = None
        self.row_count = -1
        self.prepared.stmts.clear()

    def kill(self) -> None:
        """KILL CONNECTION from another session: end this one."""
        self.killed = True
        if self.scope is not None:
            self.scope.cancel()

    # ------------------------------------------------------------- replies

    async def _send_err(self, err: MySQLError, seq: int = 1) -> None:
        self.services.audit.error(self, err)  # structured logs (audit)
        await self.client.send_packet(error_payload(err, self.capabilities or C.PROTOCOL_41), seq)

    async def _try_send_err(self, err: MySQLError, seq: int) -> None:
        """Send an error on a connection that is about to close; a dead peer is fine."""
        self.services.audit.error(self, err)  # structured logs (audit)
        try:
            await self.client.send_packet(error_payload(err, self.capabilities or C.PROTOCOL_41), seq)
        except ConnectionLost as exc:
            log.debug("session %d: could not send error %s: %s", self.id, err, exc)

    async def _send_ok(self, seq: int = 1, *, affected: int = 0, insert_id: int = 0, info: str = "") -> None:
        ok = OK(affected_rows=affected, last_insert_id=insert_id, status=self.status, info=info)
        await self.client.send_packet(ok.encode(self.capabilities), seq)

    # ------------------------------------------------------------ backends

    # ------------------------------------------------------------ commands

    # ------------------------------------------------------ read-only transactions

    async def _com_init_db(self, payload: bytes) -> None:
        tracker = await self._forward(payload, ResponseKind.SIMPLE)
        schema = payload[1:].decode("utf-8", "surrogateescape")
        if tracker is not None:
            self.services.audit.init_db(self, schema, parse_err(tracker.error) if tracker.error is not None else None)
        if tracker is not None and tracker.error is None:
            self.schema = payload[1:].decode("utf-8", "surrogateescape")
            be = self.backends.get(self.default_hostgroup)
            if be is not None:
                be.schema = self.schema

    async def _com_ping(self, payload: bytes) -> None:
        await self._send_ok()

    async def _com_quit(self, payload: bytes) -> None:
        raise CloseSession

    async def _com_simple(self, payload: bytes) -> None:
        await self._forward(payload, response_kind(payload[0]))

    async def _com_set_option(self, payload: bytes) -> None:
        # Multi-statements on or off for this connection: state the pool key does not cover.
        tracker = await self._forward(payload, ResponseKind.SIMPLE)
        if tracker is not None and tracker.error is None:
            hg = self.default_hostgroup
            self.hold[hg] = self.hold.get(hg, 0) | P.SESSION_STATE

    # -- prepared statements (see myrouter/backend/stmts.py) -----------------

    async def _com_refused(self, payload: bytes) -> None:
        name = Command(payload[0]).name
        await self._send_err(MySQLError(E.ER_UNKNOWN_COM_ERROR, f"Command COM_{name} is not supported by myrouter", "08S01"))

    async def _com_reset_connection(self, payload: bytes) -> None:
        # Handled by the proxy: free connections go back to the pool, pinned ones are reset (or closed)
        # (their transaction, locks and temporary tables end with them). No backend round trip.
        self._drop_all_backends(quit=True)
        self._reset_session_state()
        await self._send_ok()

    async def _com_change_user(self, payload: bytes) -> None:
        rt = self.services
        v = rt.vars
        req = ChangeUser.parse(payload, self.capabilities)
        auth = self._new_auth()
        step = auth.start(req.username, req.auth_response, req.auth_plugin)
        try:
            with trio.fail_after(v.connect_timeout_client / 1000):
                step, seq = await auth_exchange(self.client, auth, step, 1, check_seq=False)
        except trio.TooSlowError:
            raise CloseSession from None
        error = step.error or self._tls_refusal(req.username)
        rt.audit.change_user(self, req.username, req.database, error)  # structured logs (audit)
        if error is not None:
            log.info("session %d: COM_CHANGE_USER to %r denied", self.id, clip(req.username))
            rt.counters.access_denied += 1
            await self._send_err(error, seq)
            raise CloseSession
        user = rt.runtime_config.user(req.username)
        assert user is not None and auth.secret is not None
        # The old user's backend state (transaction, variables, temporary tables) ends here.
        self._drop_all_backends(quit=True)
        self._reset_session_state()
        if self.counted_user:
            rt.registry.change_user(self.username, req.username)
        else:
            rt.registry.count_login(req.username)
            self.counted_user = True
        self.username = req.username
        self.secret = auth.secret
        self.local.privileges = None
        self._apply_user(user)
        self.schema = req.database or user.default_schema or None
        if req.charset:
            self.charset = req.charset
        if req.attrs:
            self.attrs = req.attrs
        self._new_login()
        error = await self._schema_refusal()
        if error is not None:  # as a failed login: the old user is gone already
            await self._send_err(error, seq)
            raise CloseSession
        await self._send_ok(seq)

    async def _com_prepared(self, payload: bytes) -> None:
        """COM_STMT_*: the session's prepared statements."""
        prepared = self.prepared
        await prepared.commands[payload[0]](prepared, payload)

    async def _com_process_info(self, payload: bytes) -> None:
        await self.local.send_processlist(full=False)  # COM_PROCESS_INFO: SHOW PROCESSLIST of the proxy's sessions

    async def _com_process_kill(self, payload: bytes) -> None:
        if len(payload) < 5:
            raise MalformedPacket("COM_PROCESS_KILL without a connection id")
        await self.local.kill(int.from_bytes(payload[1:5], "little"), query_only=False)

    _handlers = {
        Command.QUERY: QueryMixin._com_query,
        Command.INIT_DB: _com_init_db,
        Command.PING: _com_ping,
        Command.QUIT: _com_quit,
        Command.FIELD_LIST: _com_simple,
        Command.STATISTICS: _com_simple,
        Command.SET_OPTION: _com_set_option,
        Command.PROCESS_INFO: _com_process_info,
        Command.STMT_PREPARE: _com_prepared,
        Command.STMT_EXECUTE: _com_prepared,
        Command.STMT_FETCH: _com_prepared,
        Command.STMT_RESET: _com_prepared,
        Command.STMT_CLOSE: _com_prepared,
        Command.STMT_SEND_LONG_DATA: _com_prepared,
        Command.PROCESS_KILL: _com_process_kill,
        Command.RESET_CONNECTION: _com_reset_connection,
        Command.CHANGE_USER: _com_change_user,
    }


ClientSession._handlers.update({c: ClientSession._com_refused for c in _REFUSED_COMMANDS})
