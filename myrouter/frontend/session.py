"""One client session: handshake, authentication, then the command loop.

One Trio task per client. The command loop handles one request and then its
whole response before reading the next request; responses from the backend
are forwarded as raw bytes while a ``ResponseTracker`` finds where they end.
No task, channel or cancel scope is created per statement on the hot path.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import logging
import re
import time
from typing import TYPE_CHECKING

import trio

from ..backend import pins as P
from ..backend.gtid import parse_gtids
from ..backend.connection import BackendConnection, BackendState, open_backend
from ..backend.pool import KEY_CAPABILITIES, Login, PoolKey
from ..backend.stmts import ClientStmt, StmtMeta, execute_for_backend
from ..backend.connection import split_payloads
from ..config import MySQLVariables
from ..net.stream import ConnectionLost, PacketStream, start_compression
from ..protocol import errors as E
from ..protocol.auth import BackendSecret, ServerAuth, new_scramble
from ..protocol.constants import DEFAULT_CHARSET, Capability, Command, SessionTrack, Status
from ..protocol.errors import MalformedPacket, MySQLError, PacketTooLarge, SequenceError
from ..protocol.messages import (
    MYSQL_TYPE_LONGLONG,
    OK,
    ChangeUser,
    HandshakeV10,
    PrepareOK,
    column_definition,
    encode_result_set,
    error_payload,
    parse_err,
    parse_session_state,
    text_row,
)
from ..protocol.codec import Reader
from ..protocol.packets import frame
from ..protocol.response import ResponseKind, ResponseTracker, response_kind
from ..routing.classifier import Classification, StatementFlag as _F, StatementKind
from ..routing.digest import format_digest
from ..routing.hostgroups import ONLINE
from ..stats.digests import affected_rows
from ..stats.logsafe import clip
from ..stats.querylog import now_us
from ..routing.rules import RouteDecision, RuleContext
from . import proxyids
from .decisions import (
    AFTER_MASK as _AFTER_MASK,
    SCHEMA_CHANGED,
    TRX_KEEPS,
    VAR_ALIASES as _VAR_ALIASES,
    VARS_CHANGED,
    StatementState,
)
from .handshake import TLSFailed, accept_login, auth_exchange

if TYPE_CHECKING:
    from ..app import Proxy

log = logging.getLogger("myrouter.session")

C = Capability

# What the proxy offers clients. Not offered: query attributes and optional result-set
# metadata (they change packet layouts). SSL and COMPRESS (zlib) are added when have_ssl /
# have_compress allow; zstd (MySQL 8's ZSTD_COMPRESSION_ALGORITHM) is not offered.
SERVER_CAPABILITIES = (
    C.LONG_PASSWORD | C.FOUND_ROWS | C.LONG_FLAG | C.CONNECT_WITH_DB | C.NO_SCHEMA | C.ODBC | C.LOCAL_FILES
    | C.IGNORE_SPACE | C.PROTOCOL_41 | C.INTERACTIVE | C.IGNORE_SIGPIPE | C.TRANSACTIONS | C.SECURE_CONNECTION
    | C.MULTI_STATEMENTS | C.MULTI_RESULTS | C.PS_MULTI_RESULTS | C.PLUGIN_AUTH | C.CONNECT_ATTRS
    | C.PLUGIN_AUTH_LENENC_CLIENT_DATA | C.CAN_HANDLE_EXPIRED_PASSWORDS | C.SESSION_TRACK
)

_COM_QUERY = int(Command.QUERY)
# digests whose classification and routing a session remembers (per session: they depend on its user,
# addresses and schema)
_SESSION_PLANS = 64
_wait_readable = trio.lowlevel.wait_readable
_MAYBE_KILL = frozenset((b"k", b"K", b" ", b"\t", b"\n", b"\r"))  # a cheap first test before the regex
_KILL_RE = re.compile(rb"\s*kill\s+(?:(query|connection)\s+)?(\d+)\s*;?\s*\Z", re.I)
# The largest packet a client may send before it has logged in. A HandshakeResponse41 is a
# few hundred bytes plus its connection attributes, which MySQL caps at 64 KiB; the rest
# (user, auth data, schema, plugin names) fits in 4 KiB. A header announcing more is refused
# at once (ERR 1153), before any of its payload is buffered.
MAX_HANDSHAKE_PACKET = 65535 + 4096

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
_IN_TRANS = int(Status.IN_TRANS)
_AUTOCOMMIT = int(Status.AUTOCOMMIT)
_STATE_CHANGED = int(Status.SESSION_STATE_CHANGED)
_SESSION_TRACK = int(C.SESSION_TRACK)
_PROTOCOL_41 = int(C.PROTOCOL_41)
_TRACKING_CAPS = int(C.PROTOCOL_41 | C.SESSION_TRACK)
_CURSOR_EXISTS = int(Status.CURSOR_EXISTS)
_LAST_ROW_SENT = int(Status.LAST_ROW_SENT)
_SQL_CALC_FOUND_ROWS = _F.SQL_CALC_FOUND_ROWS.value
_FOUND_ROWS_FN = _F.FOUND_ROWS.value
_TEXT_PREPARE = _F.TEXT_PREPARE.value
_DYNAMIC_SQL = (_F.TEXT_PREPARE | _F.TEXT_EXECUTE).value  # PREPARE s FROM '...', EXECUTE IMMEDIATE '...'
_DEALLOCATE = _F.DEALLOCATE.value
_SAVEPOINT = _F.SAVEPOINT.value
_IMPLICIT_COMMIT = _F.IMPLICIT_COMMIT.value
_READ_ONLY_TRANSACTION = _F.READ_ONLY_TRANSACTION.value
ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION = 1792
_HANDLER = _F.HANDLER.value
_XA = _F.XA.value
_LOCAL_ANSWERS = (_F.LAST_INSERT_ID | _F.ROW_COUNT | _F.FOUND_ROWS | _F.CONNECTION_ID).value
# Ids a client sees are the proxy's session ids (see proxyids): statements that show or use them.
_CONNECTION_ID = _F.CONNECTION_ID.value
_PROCESSLIST = _F.PROCESSLIST.value
_KILL = _F.KILL.value
_SESSION_IDS = _CONNECTION_ID | _PROCESSLIST | _KILL
_KILL_WORD = re.compile(rb"kill", re.I)  # fast_forward sessions: a cheap test before proxyids.mentions_kill
# What pool_mode=statement refuses: anything that needs the connection after the statement.
_STATEMENT_MODE_REFUSED = (_LOCK_TABLES | _GET_LOCK | _CREATE_TEMP | _UV_ASSIGN | _SQL_CALC_FOUND_ROWS
                           | _TEXT_PREPARE | _SAVEPOINT | _HANDLER | _XA)
# Classification flags that take a statement off the plain path (_plain_query): what _route,
# _after_query, the local answers or pool_mode=statement act on, and every SET.
_NOT_PLAIN = (_LOCAL_ANSWERS | _AFTER_MASK | _UV_READ | _DIAGNOSTICS | _STATEMENT_MODE_REFUSED | _SET_GLOBAL
              | _SESSION_IDS | _F.SET_AUTOCOMMIT.value | _F.SET_SESSION_VARIABLE.value | _F.SET_SQL_LOG_BIN.value)
# Rule actions the general path of _com_query acts on (besides the hostgroup and retries): a
# decision that sets none of them is plain.
_ACTING = tuple(RouteDecision._fields.index(name) for name in (
    "rewritten_query", "cache_ttl", "timeout", "delay", "next_query_flagIN", "mirror_flagOUT", "mirror_hostgroup",
    "error_msg", "OK_msg", "sticky_conn", "multiplex", "log", "causal_reads"))


def _plain_decision(decision: RouteDecision) -> bool:
    return all(decision[i] is None for i in _ACTING)


class _Plan:
    """What a session remembers of a digest (``ClientSession._plan``): valid while the rules object,
    flagIN and schema are the ones it was made with."""

    __slots__ = ("rules", "flag_in", "schema", "cls", "decision", "positions", "plain_hg", "retry_reads")

    def __init__(self, rules, flag_in: int, schema: str | None, cls: Classification, decision: RouteDecision,
                 positions: tuple[int, ...], plain_hg: int | None, retry_reads: bool) -> None:
        self.rules = rules
        self.flag_in = flag_in
        self.schema = schema
        self.cls = cls
        self.decision = decision
        self.positions = positions  # rule hit counters to bump on reuse
        self.plain_hg = plain_hg  # the hostgroup when the statement is plain (see _plain_query), else None
        self.retry_reads = retry_reads  # a failed read may be retried on another connection


# SELECT LAST_INSERT_ID() / ROW_COUNT() / FOUND_ROWS() answered by the proxy when the
# connection that ran the previous statement is no longer the session's.
_LOCAL_FN_RE = re.compile(
    r"\s*SELECT\s+(LAST_INSERT_ID\s*\(\s*\)|@@IDENTITY|@@LAST_INSERT_ID|ROW_COUNT\s*\(\s*\)|FOUND_ROWS\s*\(\s*\)"
    r"|CONNECTION_ID\s*\(\s*\))"
    r"(?:\s+(?:AS\s+)?(`[^`]+`|'[^']*'|\"[^\"]*\"|\w+))?\s*;?\s*\Z", re.I)

_NAMES_PARTS_RE = re.compile(
    r"""\s*('[^']*'|"[^"]*"|`[^`]*`|\w+)(?:\s+COLLATE\s+('[^']*'|"[^"]*"|`[^`]*`|\w+))?\s*\Z""", re.I)
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?\Z")
_CHARSET_VARS = frozenset(("names", "charset", "character_set_client", "character_set_connection",
                           "character_set_results", "collation_connection"))
_CHARSET_ORDER = ("names", "charset", "character_set_client", "character_set_connection", "character_set_results",
                  "collation_connection")
# Tracked variables that are not session state to restore.
_NOT_RESTORED = frozenset(("last_gtid", "session_track_system_variables", "session_track_schema",
                           "session_track_state_change", "session_track_transaction_info",
                           "session_track_gtids", "timestamp", "rand_seed1", "rand_seed2", "insert_id",
                           "last_insert_id", "identity", "warning_count", "error_count", "sql_log_bin"))
ER_UNKNOWN_STMT_HANDLER = 1243
ER_STMT_HAS_NO_OPEN_CURSOR = 1421
ER_NOT_SUPPORTED_YET = 1235


def _sql_literal(value: str, no_backslash_escapes: bool = False) -> str:
    """A session variable's value (as session tracking reports it) as SQL text."""
    if _NUMBER_RE.match(value):
        return value
    if not no_backslash_escapes:
        value = value.replace("\\", "\\\\")
    return "'" + value.replace("'", "''") + "'"


def _keep_after_statement(be: BackendConnection) -> bool:
    """Whether connection_delay_multiplex_ms may keep ``be`` with its session: not when its server
    is draining (OFFLINE_SOFT, SHUNNED...) or it is to be retired."""
    srv = be.server_ref
    return srv is not None and srv.status == ONLINE and not be.retire and not be.broken


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


def _state_error(be: BackendConnection, what: str, err_payload: bytes) -> MySQLError:
    err = parse_err(err_payload)
    return MySQLError(err.code, f"while restoring session state ({what}) on {be.server}: {err.message}",
                      err.sqlstate)


def _server_var(be: BackendConnection, name: str) -> str:
    """A session variable's name as ``be``'s server spells it (MariaDB before 11.1: tx_isolation)."""
    if name.startswith("transaction_") and be.legacy_tx_names:
        return "tx_" + name[len("transaction_"):]
    return name


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


class ClientSession(StatementState):
    def __init__(self, app: Proxy, stream: PacketStream, peer: tuple) -> None:
        StatementState.__init__(self)
        self.app = app
        self.id = app.next_session_id()
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
        self.stmts: dict[int, ClientStmt] = {}  # client statement id -> statement
        self.next_stmt_id = 1
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
        self.privileges: frozenset[str] | None = None  # the user's global privileges on the backend, once asked
        self.counted_user = False  # counted in app.user_sessions under self.username
        self.command: int | None = None
        self.info: bytes = b""
        self.command_started = 0.0
        self.connected_at = time.time()
        self._handshake_scope: trio.CancelScope | None = None  # cancelled to end the handshake early
        self.handshake_evicted = False  # ended to make room for newer handshakes

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
                self.app.log_throttle.log(log, logging.INFO, "handshakes refused", "session %d from %s: closing "
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
        app = self.app
        v = app.vars
        if app.draining:
            await self._try_send_err(E.server_shutdown(), 0)
            return False
        if app.logged_in_sessions >= v.max_connections:  # connections still in the handshake are not counted
            app.log_throttle.log(log, logging.WARNING, "connections refused: max_connections reached",
                                 "session %d from %s refused: max_connections=%d reached", self.id,
                                 self.client_addr, v.max_connections)
            await self._try_send_err(E.too_many_connections(), 0)
            return False
        server_caps = SERVER_CAPABILITIES
        if v.enable_client_deprecate_eof:
            server_caps |= C.DEPRECATE_EOF
        tls_context = app.tls_context if v.have_ssl else None
        if tls_context is not None:
            server_caps |= C.SSL
        if v.have_compress:
            server_caps |= C.COMPRESS
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
        for other in app.handshakes.admit(self, self.client_host, limit=v.max_connections_in_handshake,
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
            app.counters.client_connections_aborted += 1
            if self.handshake_evicted:
                app.log_throttle.log(log, logging.INFO, "handshakes ended for newer connections",
                                     "session %d from %s: handshake ended to make room for newer connections "
                                     "(max_connections_in_handshake=%d, per host %d)", self.id, self.client_addr,
                                     v.max_connections_in_handshake, v.max_connections_in_handshake_per_host)
                await self._try_send_err(E.too_many_connections(), 2)
                return False
            app.log_throttle.log(log, logging.INFO, "handshakes timed out",
                                 "session %d from %s: handshake timed out after %.1fs", self.id, self.client_addr,
                                 timeout)
            await self._try_send_err(E.MySQLError(E.ER_HANDSHAKE_ERROR, "Bad handshake: timeout", "08S01"), 2)
            return False
        except SequenceError:
            app.counters.client_connections_aborted += 1
            await self._try_send_err(E.packets_out_of_order(), 2)
            return False
        except PacketTooLarge as exc:
            app.counters.client_connections_aborted += 1
            app.log_throttle.log(log, logging.INFO, "oversized handshake packets",
                                 "session %d from %s: handshake packet refused: %s", self.id, self.client_addr, exc)
            await self._try_send_err(E.packet_too_large(), 2)
            return False
        except MalformedPacket:
            app.counters.client_connections_aborted += 1
            await self._try_send_err(E.bad_handshake(), 2)
            return False
        except TLSFailed as exc:
            app.log_throttle.log(log, logging.INFO, "TLS handshakes failed", "session %d from %s: %s",
                                 self.id, self.client_addr, exc)
            app.counters.client_connections_aborted += 1
            return False
        finally:
            self._handshake_scope = None
            app.handshakes.release(self, self.client_host)
        app.audit.login(self, resp.username, resp.database, error)  # structured logs (audit)
        if error is not None:
            app.log_throttle.log(log, logging.INFO, "logins denied", "session %d: access denied for user %r from %s",
                                 self.id, clip(resp.username), self.client_addr)
            app.counters.access_denied += 1
            await self._try_send_err(error, seq)
            return False
        if app.logged_in_sessions >= v.max_connections:  # others logged in meanwhile
            app.log_throttle.log(log, logging.WARNING, "connections refused: max_connections reached",
                                 "session %d from %s refused after authentication: max_connections=%d reached",
                                 self.id, self.client_addr, v.max_connections)
            await self._try_send_err(E.too_many_connections(), seq)
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
        app.logged_in_sessions += 1
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
        app.audit.connected(self)  # structured logs (audit)
        log.info("session %d: user %r connected from %s", self.id, self.username, self.client_addr)
        return True

    def end_handshake(self) -> None:
        """End this session's handshake now to make room for newer ones (``Proxy.handshakes``):
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
        scope = trio.move_on_after(self.app.vars.connect_timeout_client / 1000)
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
                    self.app.pools.release(be)
        return None

    def _new_auth(self, tls: bool | None = None) -> ServerAuth:
        """The auth machine for this client (``tls``: the connection just switched to TLS)."""
        app = self.app
        if tls:
            self.tls = True
        return ServerAuth(
            scramble=self.scramble,
            lookup=app.lookup_credential,
            default_plugin=app.vars.default_authentication_plugin,
            rsa=app.rsa,
            sha2_cache=app.sha2_cache,
            client_host=self.client_host,
            secure_transport=self.tls,
            cleartext_ok=self.client_is_loopback,
        )

    def _tls_refusal(self, username: str) -> MySQLError | None:
        """mysql_users.use_ssl: a user who must use TLS is refused on a plain connection, with
        the same 1045 as a wrong password (as ProxySQL does); the log says why."""
        if self.tls:
            return None
        user = self.app.user(username)
        if user is None or not user.use_ssl:
            return None
        log.info("session %d: user %r has use_ssl=1 and connected without TLS", self.id, username)
        return E.access_denied(username, self.client_host, True)

    # --------------------------------------------------------- command loop

    async def _command_loop(self) -> None:
        app = self.app
        counters = app.counters
        handlers = self._handlers
        client = self.client
        decoder = client.decoder
        monotonic = time.monotonic
        while True:
            # Pipelined commands may be buffered already; else the client sends its next command
            # only after our reply, so a read now would fail: wait for readability first. While
            # waiting, the session is IDLE: the drain and the idle reaper end it by cancelling it.
            try:
                pkt = decoder.next_packet() if decoder.buffered else None
                if pkt is None:
                    self.state = SessionState.IDLE
                    self.idle_since = monotonic()
                    if self.release_at:  # connection_delay_multiplex_ms: kept connections go back then
                        with trio.move_on_at(self.release_at) as delay_scope:
                            await _wait_readable(client.sock)
                        if delay_scope.cancelled_caught:
                            self.release_delayed()
                            await _wait_readable(client.sock)
                    else:
                        await _wait_readable(client.sock)
                    pkt = client.packet_nowait()
            except trio.ClosedResourceError as exc:
                raise ConnectionLost("client socket closed while waiting") from exc
            except (PacketTooLarge, SequenceError) as exc:
                await self._bad_client_packet(exc)
                return
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
                if cmd == _COM_QUERY:
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
            if app.draining or self.killed:
                return

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
        timeout = self.app.vars.client_packet_timeout / 1000
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
        limit = self.app.vars.wait_timeout
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
        return self.app.vars.autocommit_false_is_transaction

    @property
    def backend_capabilities(self) -> int:
        """The client's capabilities as passed on to backends (LOCAL INFILE only if enabled)."""
        if self.app.vars.enable_load_data_local_infile:
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
        elif not self.app.vars.multiplexing:
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
        self.stmts.clear()

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

    def _borrow_now(self, hg: int) -> BackendConnection | None:
        """``_borrow`` when it needs no await (the usual case): the connection to ``hg`` the session
        holds, else an idle one from the pool, if it is in line with the session; else None."""
        be = self.backends.get(hg)
        if be is None:
            app = self.app
            be = app.pools.take_idle(app.hostgroups, hg, self.pool_key)
            if be is None:
                return None
            self.backends[hg] = be
        if be.vars != self.vars or (self.schema and be.schema != self.schema):
            return None
        return be

    async def _borrow(self, hg: int) -> BackendConnection:
        """The session's connection to ``hg``: the one it holds, else one from the pool, in line with the session."""
        be = self._borrow_now(hg)
        if be is not None:
            return be
        be = self.backends.get(hg)
        if be is None:
            app = self.app
            be = await app.pools.acquire(app.hostgroups, hg, self.pool_key, self.login, self.schema)
            self.backends[hg] = be
        await self._sync_backend(be)
        return be

    async def _sync_backend(self, be: BackendConnection) -> None:
        """Bring a borrowed connection in line with the session: schema, then session variables, one round trip each."""
        what = ""
        try:
            if self.schema and be.schema != self.schema:
                what = "USE " + self.schema
                tracker = await be.run_command(b"\x02" + self.schema.encode("utf-8", "surrogateescape"),
                                               ResponseKind.SIMPLE)
                if tracker.error is not None:
                    raise _state_error(be, what, tracker.error)
                be.schema = self.schema
            if be.vars != self.vars:
                sql = await self._set_statement(be)
                what = sql
                if sql:
                    tracker = await be.simple_query(sql)
                    if tracker.error is not None:
                        be.broken = True  # some of the assignments may have run
                        raise _state_error(be, sql, tracker.error)
                be.vars = dict(self.vars)
        except (ConnectionLost, MalformedPacket) as exc:
            raise self._lost_backend(be, exc) from exc
        except MySQLError:
            if be.broken:
                self._drop_backend(be)
            raise

    async def _set_statement(self, be: BackendConnection) -> str:
        """One SET statement that turns ``be``'s session variables into the session's."""
        want, have = self.vars, be.vars
        charset_items: list[str] = []
        items: list[str] = []
        reset_names = any(name in _CHARSET_VARS and name not in want for name in have)
        if reset_names:
            cs, coll = await self.app.charset_names(be, self.charset)
            charset_items.append(f"NAMES {cs} COLLATE {coll}")
        for name in have:
            if name not in want and name not in _CHARSET_VARS:
                items.append(f"@@session.{_server_var(be, name)}=DEFAULT")
        charset_changed = reset_names
        for name, value in want.items():
            if name in _CHARSET_VARS:
                charset_changed |= have.get(name) != value
            elif have.get(name) != value:
                items.append(f"@@session.{_server_var(be, name)}={value}")
        if charset_changed:
            # in an order where none undoes another: NAMES first, collation after character sets
            for name in _CHARSET_ORDER:
                value = want.get(name)
                if value is None:
                    continue
                if name == "names":
                    charset_items.append(f"NAMES {value}")
                elif name == "charset":
                    charset_items.append(f"CHARACTER SET {value}")
                else:
                    charset_items.append(f"@@session.{name}={value}")
        items = charset_items + items
        return "SET " + ", ".join(items) if items else ""

    def _release_free(self) -> None:
        """After a command: give back every held connection nothing pins; count the pins that started."""
        backends = self.backends
        delay = self.app.vars.connection_delay_multiplex_ms
        if delay:  # kept for that long after the statement (see release_delayed)
            self.release_at = trio.current_time() + delay / 1000
        if len(backends) == 1 and not self.hold and not self.mode_pins:
            # the common case: one connection, nothing pinned so far
            for be in backends.values():
                if be.in_trx or be.state is BackendState.CLOSED:
                    break
                be.pins = 0
                if not (delay and _keep_after_statement(be)):
                    backends.clear()
                    if not self.status & _AUTOCOMMIT:
                        self._autocommit_off_released(be)
                    self.app.pools.release(be)
                return
        for hg in list(backends):
            be = backends[hg]
            if be.state is BackendState.CLOSED:
                del backends[hg]
                continue
            pins = self._pins_after_command(hg, be.in_trx)
            if pins:
                started = pins & ~be.pins
                if started:
                    self.app.pin_counters.started(started)
                be.pins = pins
                be.state = BackendState.PINNED
                continue
            be.pins = 0
            if not (delay and _keep_after_statement(be)):
                del backends[hg]
                if not self.status & _AUTOCOMMIT:
                    self._autocommit_off_released(be)
                self.app.pools.release(be)

    def release_delayed(self) -> None:
        """``connection_delay_multiplex_ms`` after the last statement: the connections the session kept
        only for that delay (nothing pins them) go back to the pool."""
        self.release_at = 0.0
        for hg, be in list(self.backends.items()):
            if be.pins:  # pinned since (_release_free set the pins after the last statement)
                continue
            del self.backends[hg]
            if be.state is not BackendState.CLOSED:
                if not self.status & _AUTOCOMMIT:
                    self._autocommit_off_released(be)
                self.app.pools.release(be)

    def _autocommit_off_released(self, be: BackendConnection) -> None:
        """autocommit_false_not_reusable: a connection an autocommit-off session used is closed when
        the session gives it back, instead of serving other sessions (ProxySQL's semantics)."""
        if self.app.vars.autocommit_false_not_reusable:
            be.retire = True

    def _drop_backend(self, be: BackendConnection, *, quit: bool = False) -> None:
        """Stop using ``be`` and close it: its state is lost (or unwanted) with it."""
        for hg, b in list(self.backends.items()):
            if b is be:
                del self.backends[hg]
                self._forget_connection_state(hg)
        if quit and be.state is not BackendState.ACTIVE:
            be.retire = True
        else:
            be.broken = True
        if be.server_ref is not None:
            self.app.pools.discard(be)
        else:
            be.close()

    def _forget_connection_state(self, hg: int) -> None:
        """What lived in the session's connection to ``hg`` is gone with it."""
        self._forget_hostgroup_state(hg)
        for st in self.stmts.values():
            if st.cursor_hg == hg:
                st.cursor = None
                st.cursor_hg = None

    def _drop_all_backends(self, *, quit: bool = False) -> None:
        """The session ends (or resets): free connections go back to the pool; pinned ones carry state of
        this session (variables, temporary tables, a transaction...): they are reset with
        COM_RESET_CONNECTION first (``Pools.reset_and_release``), or closed when that cannot be done.
        ``quit=False`` (the session was killed: so were its backend threads): every held connection is closed."""
        pools = self.app.pools
        for hg, be in list(self.backends.items()):
            pins = self.hold.get(hg, 0) | (P.TRANSACTION if be.in_trx else 0)
            if be.state is BackendState.ACTIVE or not quit or (pins and not pools.reset_and_release(be)):
                self._drop_backend(be, quit=quit)
                continue
            del self.backends[hg]
            if pins:
                self._forget_connection_state(hg)  # being reset by the pool
            else:
                pools.release(be)

    def _lost_backend(self, be: BackendConnection, exc: Exception) -> MySQLError:
        self._drop_backend(be)
        if be.server_ref is not None:
            self.app.pools.check_idle(be.server_ref)  # its siblings may be dead too (a crash)
        self.app.counters.backend_errors += 1
        self.app.log_backend_error(be.server, be.server.hostgroup, exc, session=self, during="query")
        log.warning("session %d: lost backend %s (hostgroup %d): %s", self.id, be.server, be.server.hostgroup, exc)
        self.status &= ~(Status.IN_TRANS | Status.IN_TRANS_READONLY)
        return MySQLError(
            E.ER_NET_READ_ERROR,
            f"Lost connection to backend {be.server} (hostgroup {be.server.hostgroup}) during query: {exc}",
            "08S01",
        )

    def _absorb_state(self, be: BackendConnection, ok: bytes) -> None:
        """Session-state changes a backend reported in an OK packet: the source of truth for variables and schema."""
        try:
            state = OK.parse(ok, be.capabilities).session_state
            changes = parse_session_state(state) if state else ()
        except MalformedPacket as exc:
            log.warning("session %d: unreadable session-state data from %s: %s", self.id, be.server, exc)
            return
        nbe = "NO_BACKSLASH_ESCAPES" in self.vars.get("sql_mode", "").upper()
        for kind, value in changes:
            if kind == SessionTrack.SYSTEM_VARIABLES:
                name, val = value
                name = _VAR_ALIASES.get(name.lower(), name.lower())
                if name == "last_gtid":
                    if val:
                        self.last_gtid = val
                        self.app.note_written_gtid(val)
                    continue
                if name in _NOT_RESTORED:
                    continue
                if name == "character_set_results" and val == "":
                    self.vars[name] = "NULL"
                else:
                    self.vars[name] = _sql_literal(val, nbe)
                if name == "sql_mode":
                    nbe = "NO_BACKSLASH_ESCAPES" in val.upper()
            elif kind == SessionTrack.SCHEMA:
                self.schema = value or None
                be.schema = self.schema
        be.vars = dict(self.vars)

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
        hg = self.default_hostgroup if hostgroup is None else hostgroup
        try:
            be = self._borrow_now(hg)  # a plain call: no coroutine in the usual case
            if be is None:
                be = await self._borrow(hg)
        except MySQLError as exc:
            # every reader unusable: reads fall back to the writer (reader_fallback_to_writer)
            fallback = self.app.hostgroups.fallback_for(hg) if exc.code == E.PROXYSQL_ER_HOSTGROUP_TIMEOUT else None
            if fallback is None or fallback == hg:
                raise
            hg = fallback
            be = await self._borrow(hg)
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
        # The proxy reads session tracking from every backend; a client that did not ask for it
        # gets its final OK packet without it.
        strip_state = not self.capabilities & _SESSION_TRACK
        strip_gtids = not strip_state and not self.app.vars.client_session_track_gtid
        client = self.client
        sent = False
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
            chunk = data if n == len(data) else data[:n]
            if strip_state and tracker.done and tracker.status & _STATE_CHANGED:
                chunk = _strip_session_state(chunk, tracker.last_ok)
            elif strip_gtids and tracker.done and tracker.status & _STATE_CHANGED:
                chunk = _strip_session_state(chunk, tracker.last_ok, keep=_not_gtid)
            rest = client.send_nowait(chunk)
            if rest is not None:
                await client.send_all(rest)
            if capture is not None:
                capture.append(chunk)
            sent = True
            if tracker.done:
                break
            if tracker.local_infile:
                self.app.pin_counters.started(P.LOCAL_INFILE)
                await self._relay_local_infile(be, tracker)
                if be.closed:
                    return None
        if n != len(data):
            log.error("session %d: backend %s sent %d bytes past the end of a response; dropping it",
                      self.id, be.server, len(data) - n)
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
                        delay = self.app.vars.auto_increment_delay_multiplex
                        if delay:
                            self.autoinc_left = delay + 1
                            self.hold[hg] = self.hold.get(hg, 0) | P.AUTO_INCREMENT
        self.last_hg = hg
        return tracker

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
            if _KILL_WORD.search(payload) and proxyids.mentions_kill(payload[1:].decode("utf-8", "surrogateescape")):
                await self._kill_statement(payload[1:].decode("utf-8", "surrogateescape"))
                return
            await self._forward(payload, ResponseKind.RESULT)
            return
        app = self.app
        sql = payload[1:].decode("utf-8", "surrogateescape")
        dtext, dhash = app.digester(sql)
        rules = app.rules
        plan = self._plans.get(dhash)
        if plan is not None and plan.rules is rules and plan.flag_in == self.flag_in and plan.schema == self.schema \
                and not app.digester.capped(sql):
            cls = plan.cls
            decision = plan.decision
            rules.count_hits(plan.positions)
            app.classifier.count_hit()
            if plan.plain_hg is not None and not self.backends and self.trx_hg is None and self.sticky_hg is None \
                    and self.status & _AUTOCOMMIT and not self.temp_tables and self.causal_reads == "off" \
                    and app.query_log is None and app.vars.default_query_timeout >= _DEFAULT_QUERY_TIMEOUT:
                await self._plain_query(payload, plan, dtext, dhash)
                return
        else:
            cls, decision = self._plan(sql, dtext, dhash)
        if cls.bits & _KILL:
            await self._kill_statement(sql)  # every KILL form: carried out on proxy sessions, or refused
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
        if flags & _LOCAL_ANSWERS and await self._local_answer(sql, flags):
            return
        if flags & (_PROCESSLIST | _CONNECTION_ID):
            text = await self._session_ids_sql(sql, flags)
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
            gtid = self.last_gtid if causal == "session" else app.global_gtid()
            if gtid:
                hg = await self._causal_hostgroup(hg, gtid)
        cache_key = None
        if decision.cache_ttl and cls.kind is StatementKind.READ and not flags & _SESSION_IDS:
            cache_key = (self.username, self.schema, sql)
            cached = app.query_cache.get(cache_key)
            if cached is not None:
                await self.client.send_all(cached)
                return
        if decision.delay:
            await trio.sleep(decision.delay / 1000)
        if decision.mirror_hostgroup is not None:
            app.mirror(self, payload, decision.mirror_hostgroup)
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
        retries = (decision.retries if decision.retries is not None else app.vars.query_retries_on_failure)
        timeout = decision.timeout
        if timeout is None and app.vars.default_query_timeout < _DEFAULT_QUERY_TIMEOUT:
            timeout = app.vars.default_query_timeout
        capture: list[bytes] | None = [] if cache_key is not None else None
        started = now_us() if app.query_log is not None else 0
        tracker = await self._forward(payload, ResponseKind.RESULT, hostgroup=hg, timeout_ms=timeout,
                                      capture=capture, retries=retries if safe_to_retry else 0, prepare=prepare,
                                      trx_effect=self._transaction_effect(cls, sql))
        if read_only_start and tracker is not None and tracker.error is None:
            self._read_only_started(cls, sql, held_sets)
        if tracker is not None:
            self._account(hg, cls, dtext, dhash, tracker)
        if started and (decision.log or (decision.log is None and app.vars.eventslog_default_log)):
            self._log_query(started, hg, dtext, dhash, sql, tracker)
        if tracker is None or tracker.error is not None:
            return
        if capture is not None and tracker.results == 1 and (tracker.rows or decision.cache_empty_result != 0):
            app.query_cache.put(cache_key, b"".join(capture), decision.cache_ttl)
        be = self.backends.get(hg)
        changes = self._after_query(hg, cls, decision, payload, be is not None and be.tracks_variables)
        if changes and be is not None:  # the connection is in the session's new schema / variables
            if changes & SCHEMA_CHANGED:
                be.schema = self.schema
            if changes & VARS_CHANGED:
                be.vars = dict(self.vars)

    # ------------------------------------------------------ read-only transactions

    def _read_only_hostgroup(self, cls: Classification, decision: RouteDecision, sql: str, dtext: str,
                             dhash: int) -> int:
        """Where a read-only transaction runs, as a whole: what the rules say of its first statement
        with the ``read_only_transaction`` flag (the shipped rules: the readers)."""
        if not cls.bits & _READ_ONLY_TRANSACTION:
            cls = dataclasses.replace(cls, flags=cls.flags | _F.READ_ONLY_TRANSACTION)
            decision, _ = self.app.rules.evaluate_for_session(RuleContext(
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
        counters = self.app.counters
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
        app = self.app
        rules = app.rules
        capped = app.digester.capped(sql)  # the digest stands for a prefix only: nothing is remembered by it
        cls = app.classifier.classify(sql, dhash, remember=not capped)
        decision, positions = rules.evaluate_for_session(RuleContext(
            self.username, self.schema, self.client_host, self.proxy_host, self.proxy_port, self.flag_in,
            dhash, dtext, sql, cls,
        ))
        if positions is not None and app.classifier.reusable(cls) and not capped:
            plans = self._plans
            if len(plans) >= _SESSION_PLANS:
                plans.clear()
            plain_hg = None
            if (cls.kind is StatementKind.READ or cls.kind is StatementKind.WRITE) \
                    and not cls.bits & _NOT_PLAIN and _plain_decision(decision):
                plain_hg = self.default_hostgroup if decision.destination_hostgroup is None \
                    else decision.destination_hostgroup
            retry = cls.kind is StatementKind.READ and not cls.bits & _STATEFUL
            plans[dhash] = _Plan(rules, self.flag_in, self.schema, cls, decision, positions, plain_hg, retry)
        return cls, decision

    async def _plain_query(self, payload: bytes, plan: _Plan, dtext: str, dhash: int) -> None:
        """The common statement, decided from the session's plan memo: a read or write that no rule
        acts on beyond a hostgroup, run by a session that holds no connection, in autocommit, with
        nothing that bends routing (transaction, stickiness, temporary tables, causal reads, rule or
        default timeouts, query log). Same effects as the general path of ``_com_query``."""
        self.flag_in = 0
        decision = plan.decision
        retries = 0
        if plan.retry_reads:
            retries = decision.retries if decision.retries is not None else self.app.vars.query_retries_on_failure
        tracker = await self._forward(payload, ResponseKind.RESULT, hostgroup=plan.plain_hg, retries=retries)
        if tracker is not None:
            self._account(plan.plain_hg, plan.cls, dtext, dhash, tracker)
            if plan.cls.kind is not StatementKind.READ and tracker.error is None:
                self.found_rows = 0  # as _after_query

    def _account(self, hg: int, cls: Classification, dtext: str, dhash: int, tracker: ResponseTracker) -> None:
        """After a statement's response: digest and command statistics; ROW_COUNT()/FOUND_ROWS()."""
        app = self.app
        us = int((time.monotonic() - self.command_started) * 1_000_000)
        affected = affected_rows(tracker.last_ok)
        app.digest_stats.record(hg, self.schema or "", self.username, self.client_host, dhash, dtext, us, affected,
                                tracker.rows)
        app.command_counters.record(cls.command, us)
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
        app = self.app
        need = parse_gtids(gtid)
        if not need:
            return hg
        be = await self._borrow(hg)
        srv = be.server_ref
        applied = app.gtid_applied.get(srv)
        if applied is not None and all(applied.get(d, -1) >= n for d, (_, n) in need.items()):
            return hg
        now = time.monotonic()
        ok = False
        if app.gtid_lagging.get(srv, 0.0) <= now:
            app.counters.causal_waits += 1
            wait = app.vars.causal_reads_timeout_ms / 1000
            text = ",".join(f"{d}-{s}-{n}" for d, (s, n) in need.items())
            try:
                with trio.fail_after(wait + app.vars.connect_timeout_server / 1000):
                    rows = await be.query_rows(f"SELECT MASTER_GTID_WAIT('{text}', {wait:.3f})")
                ok = bool(rows) and rows[0][0] == "0"
            except MySQLError as exc:
                log.info("session %d: causal read: MASTER_GTID_WAIT on %s failed: %s", self.id, be.server, exc)
            except (ConnectionLost, MalformedPacket, trio.TooSlowError) as exc:
                self._lost_backend(be, exc)
                app.counters.causal_fallbacks += 1
                return self.default_hostgroup
            if ok:
                known = app.gtid_applied.setdefault(srv, {})
                for d, (_, n) in need.items():
                    if known.get(d, -1) < n:
                        known[d] = n
                return hg
            app.gtid_lagging[srv] = time.monotonic() + 1.0  # reads needing new writes skip it for a second
        app.counters.causal_fallbacks += 1
        del self.backends[hg]
        app.pools.release(be)
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
        self.app.query_log.write(event)

    async def _set_locally(self, cls: Classification) -> bool:
        """``SET autocommit = ...`` or ``SET NAMES ...`` alone, with no connection held: recorded and
        answered by the proxy (drivers send them on connect, so connecting costs no backend round
        trip); the next borrowed connection gets them with the other session variables."""
        sv = cls.set_variables
        if not sv or len(sv) != 1 or sv[0].scope != "session":
            return False
        name, value = sv[0].name, sv[0].value
        if name == "autocommit":
            v = value.strip("'\"").upper()
            if v in ("1", "ON", "TRUE"):
                self.vars.pop("autocommit", None)
                self.status |= _AUTOCOMMIT
            elif v in ("0", "OFF", "FALSE"):
                self.vars["autocommit"] = "0"
                self.status &= ~_AUTOCOMMIT
            else:
                return False
        elif name == "names":
            m = _NAMES_PARTS_RE.match(value)
            app = self.app
            if m is None or not app.collations:
                return False
            cs = m.group(1).strip("'\"`").lower()
            coll = (m.group(2) or "").strip("'\"`").lower()
            if cs == "utf8" and "utf8" not in app.default_collation:
                cs = "utf8mb3"  # MariaDB's name for it (old_mode UTF8_IS_UTF8MB3)
            if coll:
                if coll == "default":
                    coll = app.default_collation.get(cs, "")
                if app.collation_charset.get(coll) != cs:
                    return False  # unknown or mismatched: the server gives the right error
            else:
                coll = app.default_collation.get(cs, "")
            if not coll:
                return False
            for k in ("names", "charset"):
                self.vars.pop(k, None)
            if app.collations.get(self.charset) == (cs, coll):
                for k in _CHARSET_VARS:  # what the handshake set: nothing to apply anywhere
                    self.vars.pop(k, None)
            else:
                for k in ("character_set_client", "character_set_connection", "character_set_results"):
                    self.vars[k] = f"'{cs}'"
                self.vars["collation_connection"] = f"'{coll}'"
        else:
            return False
        await self._send_ok()
        return True

    async def _local_answer(self, sql: str, flags: int) -> bool:
        """Answer SELECT LAST_INSERT_ID() / ROW_COUNT() / FOUND_ROWS() from what the proxy saw, when the
        connection that ran the previous statement is no longer the session's. True if answered."""
        m = _LOCAL_FN_RE.match(sql)
        if m is None:
            return False
        fn = m.group(1).upper().replace(" ", "")
        if fn.startswith("CONNECTION_ID"):
            value = self.id  # the session's id, never a pooled backend's thread id (see proxyids)
        elif fn.startswith(("LAST_INSERT_ID", "@@")):
            if self.last_insert_hg is not None and self.last_insert_hg in self.backends:
                return False  # the connection that made the id is still ours: it knows best
            value = self.last_insert_id
        else:
            if self.last_hg is not None and self.last_hg in self.backends:
                return False
            value = self.row_count if fn.startswith("ROW_COUNT") else self.found_rows
        name = m.group(2)
        if name is None:
            name = m.group(1)
        elif name[:1] in ("`", "'", '"'):
            name = name[1:-1]
        col = column_definition(name, type_code=MYSQL_TYPE_LONGLONG, charset=63, length=21,
                                flags=0x81 if value >= 0 else 0x01)
        await self.client.send_all(encode_result_set([col], [text_row([value])], self.capabilities,
                                                     self.status & ~_STATE_CHANGED))
        self.row_count = -1
        return True

    async def _com_init_db(self, payload: bytes) -> None:
        tracker = await self._forward(payload, ResponseKind.SIMPLE)
        schema = payload[1:].decode("utf-8", "surrogateescape")
        if tracker is not None:
            self.app.audit.init_db(self, schema, parse_err(tracker.error) if tracker.error is not None else None)
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
        app = self.app
        sql = payload[1:]
        text = sql.decode("utf-8", "surrogateescape")
        dtext, dhash = app.digester(text)
        cls = app.classifier.classify(text, dhash, remember=not app.digester.capped(text))
        decision = app.rules.evaluate(RuleContext(
            self.username, self.schema, self.client_host, self.proxy_host, self.proxy_port, 0,
            dhash, dtext, text, cls,
        ))
        if decision.error_msg is not None:
            raise MySQLError(1148, decision.error_msg, "42000")
        if cls.bits & _SESSION_IDS:
            raise MySQLError(ER_NOT_SUPPORTED_YET, "KILL, CONNECTION_ID() and PROCESSLIST are answered by myrouter "
                             "with its own session ids, in text statements only, not in prepared statements",
                             "42000")
        key = (self.schema, sql, bool(self.capabilities & C.DEPRECATE_EOF))
        meta = app.stmt_registry.get(key)
        if meta is None:
            hg = self._route(decision, cls)
            be = await self._borrow(hg)
            meta = app.stmt_registry.peek(key)  # prepared by another session meanwhile?
        if meta is None:
            result = await self._prepare_on(be, key, sql)
            if isinstance(result, bytes):
                await self.client.send_packet(result, 1)  # the server's ERR, unchanged
                return
            meta = result
            app.stmt_registry.put(meta)
        sid = self.next_stmt_id
        self.next_stmt_id = sid + 1 if sid < 0xFFFFFFFF else 1
        self.stmts[sid] = ClientStmt(sid, meta, cls, decision, (dtext, dhash))
        await self.client.send_all(meta.client_response(sid))

    async def _prepare_on(self, be: BackendConnection, key, sql: bytes) -> StmtMeta | bytes:
        """Prepare ``sql`` on ``be`` (closing its least recently used statements beyond the cap).

        Returns the statement's metadata, or the server's ERR payload.
        """
        raw: list[bytes] = []
        try:
            tracker = await be.run_command(b"\x16" + sql, ResponseKind.PREPARE, raw)
            if tracker.error is not None:
                return tracker.error
            packets = split_payloads(b"".join(raw))
            ok = PrepareOK.parse(packets[0])
            old = be.stmts.pop(key, None)
            if old is not None:  # prepared here before (its metadata changed): one copy only
                await be.stream.send_all(frame(b"\x19" + old.to_bytes(4, "little"), 0))
            be.stmts[key] = ok.statement_id
            cap = self.app.vars.max_stmts_per_connection
            if len(be.stmts) > cap:
                await self._evict_statements(be, cap)
        except (ConnectionLost, MalformedPacket) as exc:
            raise self._lost_backend(be, exc) from exc
        return StmtMeta(key, sql, ok.num_params, ok.num_columns, ok.warnings, packets[1:])

    async def _evict_statements(self, be: BackendConnection, cap: int) -> None:
        """Close ``be``'s least recently used statements on the server until it holds ``cap``."""
        busy = {st.meta.key for st in self.stmts.values() if st.cursor is be}
        for key in list(be.stmts):
            if len(be.stmts) <= cap:
                break
            if key in busy:
                continue
            old = be.stmts.pop(key)
            await be.stream.send_all(frame(b"\x19" + old.to_bytes(4, "little"), 0))  # COM_STMT_CLOSE: no reply
            self.app.counters.stmts_evicted += 1

    async def _backend_stmt_id(self, be: BackendConnection, st: ClientStmt) -> int | None:
        """``st``'s id on ``be``, preparing it there first if needed; None after sending the client an ERR."""
        meta = st.meta
        bid = be.stmts.get(meta.key)
        if bid is not None:
            be.stmts.move_to_end(meta.key)
            return bid
        result = await self._prepare_on(be, meta.key, meta.sql)
        if isinstance(result, bytes):
            await self.client.send_packet(result, 1)
            return None
        if result.num_params != meta.num_params or result.num_columns != meta.num_columns:
            self.app.stmt_registry.put(result)  # the table changed: later PREPAREs get the new shape
            raise MySQLError(1615, "Prepared statement needs to be re-prepared", "HY000")
        return be.stmts[meta.key]

    def _set_cursor(self, st: ClientStmt, be: BackendConnection | None, hg: int | None) -> None:
        """Open (be, hg) or close (None) ``st``'s cursor; a cursor pins its connection until closed."""
        old_hg = st.cursor_hg
        st.cursor, st.cursor_hg = be, hg
        for h in {old_hg, hg} - {None}:
            open_here = any(s.cursor_hg == h for s in self.stmts.values())
            cur = self.hold.get(h, 0)
            self.hold[h] = cur | P.CURSOR if open_here else cur & ~P.CURSOR

    async def _com_stmt_execute(self, payload: bytes) -> None:
        if len(payload) < 10:
            raise MalformedPacket("COM_STMT_EXECUTE shorter than its fixed header")
        st = self._stmt(payload, "execute")
        cls = st.classification
        if st.cursor is not None:
            hg = st.cursor_hg  # a new execution replaces the open cursor, on its connection
        else:
            hg = self._route(st.decision, cls)
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
                    raise self._lost_backend(be, exc) from exc
            used.append(be)
            return execute_for_backend(payload, bid, st)

        safe = (cls.kind is StatementKind.READ and not cls.bits & _STATEFUL and not cursor and st.cursor is None
                and self.trx_hg is None and self.status & _AUTOCOMMIT)
        retries = self.app.vars.query_retries_on_failure if safe else 0
        tracker = await self._forward(b"", ResponseKind.RESULT, hostgroup=hg, cursor=cursor, retries=retries,
                                      prepare=for_connection)
        if tracker is None:
            return
        st.long_data.clear()
        be = used[-1]
        hg = be.server_ref.hostgroup if be.server_ref is not None else hg
        app = self.app
        us = int((time.monotonic() - self.command_started) * 1_000_000)
        dtext, dhash = st.digest
        app.digest_stats.record(hg, self.schema or "", self.username, self.client_host, dhash, dtext, us,
                                affected_rows(tracker.last_ok), tracker.rows)
        app.command_counters.record(st.classification.command, us)
        if cursor and tracker.error is None and tracker.status & _CURSOR_EXISTS:
            self._set_cursor(st, be, hg)
        elif st.cursor is not None:
            self._set_cursor(st, None, None)
        if tracker.error is None:
            if tracker.columns:
                self.row_count = -1
                self.found_rows = tracker.rows
            else:
                self.row_count = affected_rows(tracker.last_ok)

    async def _com_stmt_fetch(self, payload: bytes) -> None:
        st = self._stmt(payload, "fetch")
        if st.cursor is None or st.cursor.closed:
            raise MySQLError(ER_STMT_HAS_NO_OPEN_CURSOR, f"The statement ({st.id}) has no open cursor.", "HY000")
        bid = st.cursor.stmts.get(st.meta.key)
        if bid is None:  # the statement is gone from that connection: so is its cursor
            self._set_cursor(st, None, None)
            raise MySQLError(ER_STMT_HAS_NO_OPEN_CURSOR, f"The statement ({st.id}) has no open cursor.", "HY000")
        tracker = await self._forward(payload[:1] + bid.to_bytes(4, "little") + payload[5:], ResponseKind.FETCH,
                                      hostgroup=st.cursor_hg)
        if tracker is None or tracker.error is not None or tracker.status & _LAST_ROW_SENT:
            self._set_cursor(st, None, None)

    async def _com_stmt_reset(self, payload: bytes) -> None:
        st = self._stmt(payload, "reset")
        st.long_data.clear()
        if st.cursor is None:
            await self._send_ok()
            return
        bid = st.cursor.stmts.get(st.meta.key)
        hg = st.cursor_hg
        self._set_cursor(st, None, None)
        if bid is None:
            await self._send_ok()
            return
        await self._forward(payload[:1] + bid.to_bytes(4, "little"), ResponseKind.SIMPLE, hostgroup=hg)

    async def _com_stmt_close(self, payload: bytes) -> None:
        # No reply. The backend preparation stays (shared); an open cursor is closed.
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
                log.info("session %d: closing a cursor on %s failed: %s", self.id, be.server,
                         parse_err(tracker.error))
                self._drop_backend(be)
        except (ConnectionLost, MalformedPacket) as exc:
            self._lost_backend(be, exc)

    async def _com_stmt_send_long_data(self, payload: bytes) -> None:
        # No reply: kept until the next COM_STMT_EXECUTE, which may run on another connection.
        if len(payload) < 7:
            return
        st = self.stmts.get(int.from_bytes(payload[1:5], "little"))
        if st is not None:
            st.long_data.append(payload[5:])

    async def _com_refused(self, payload: bytes) -> None:
        name = Command(payload[0]).name
        await self._send_err(MySQLError(E.ER_UNKNOWN_COM_ERROR, f"Command COM_{name} is not supported by myrouter", "08S01"))

    async def _com_process_info(self, payload: bytes) -> None:
        await self._send_processlist(full=False)  # COM_PROCESS_INFO: SHOW PROCESSLIST of the proxy's sessions

    async def _com_process_kill(self, payload: bytes) -> None:
        if len(payload) < 5:
            raise MalformedPacket("COM_PROCESS_KILL without a connection id")
        await self._kill(int.from_bytes(payload[1:5], "little"), query_only=False)

    async def _com_reset_connection(self, payload: bytes) -> None:
        # Handled by the proxy: free connections go back to the pool, pinned ones are reset (or closed)
        # (their transaction, locks and temporary tables end with them). No backend round trip.
        self._drop_all_backends(quit=True)
        self._reset_session_state()
        await self._send_ok()

    async def _com_change_user(self, payload: bytes) -> None:
        app = self.app
        v = app.vars
        req = ChangeUser.parse(payload, self.capabilities)
        auth = self._new_auth()
        step = auth.start(req.username, req.auth_response, req.auth_plugin)
        try:
            with trio.fail_after(v.connect_timeout_client / 1000):
                step, seq = await auth_exchange(self.client, auth, step, 1, check_seq=False)
        except trio.TooSlowError:
            raise CloseSession from None
        error = step.error or self._tls_refusal(req.username)
        app.audit.change_user(self, req.username, req.database, error)  # structured logs (audit)
        if error is not None:
            log.info("session %d: COM_CHANGE_USER to %r denied", self.id, clip(req.username))
            app.counters.access_denied += 1
            await self._send_err(error, seq)
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
        self.privileges = None
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

    async def _kill(self, target_id: int, query_only: bool) -> None:
        target = self.app.sessions.get(target_id)
        if target is None or target.state is SessionState.HANDSHAKE:
            raise MySQLError(E.ER_NO_SUCH_THREAD, f"Unknown thread id: {target_id}", "HY000")
        if target.username != self.username and not await self._has_privilege(proxyids.MAY_KILL_OTHERS):
            raise MySQLError(E.ER_KILL_DENIED_ERROR, f"You are not owner of thread {target_id}", "HY000")
        if target is self:
            if query_only:
                await self._send_ok()  # nothing of ours is running while we ask
                return
            await self._send_err(MySQLError(E.ER_QUERY_INTERRUPTED, "Query execution was interrupted", "70100"))
            raise CloseSession
        await self.app.kill_session_work(target, query_only=query_only)
        await self._send_ok()

    async def _kill_statement(self, sql: str) -> None:
        """A KILL the fast test at the top of ``_com_query`` did not read (comments, HARD/SOFT, USER...)."""
        k = proxyids.parse_kill(sql)  # MySQLError 1235 for the forms the proxy does not carry out
        if k.thread_id is not None:
            await self._kill(k.thread_id, k.query_only)
            return
        user = self.username if k.current_user else k.user
        targets = [s for s in list(self.app.sessions.values())
                   if s.username == user and s.state is not SessionState.HANDSHAKE
                   and proxyids.host_matches(k.host, s.client_host)]
        if targets and user != self.username and not await self._has_privilege(proxyids.MAY_KILL_OTHERS):
            raise MySQLError(E.ER_KILL_DENIED_ERROR, f"Operation KILL USER failed for {user}@{k.host or '%'}", "HY000")
        for target in targets:
            if target is not self:
                await self.app.kill_session_work(target, query_only=k.query_only)
        if self in targets and not k.query_only:
            await self._send_err(MySQLError(E.ER_QUERY_INTERRUPTED, "Query execution was interrupted", "70100"))
            raise CloseSession
        await self._send_ok(affected=len(targets))

    async def _has_privilege(self, any_of: frozenset[str]) -> bool:
        """Whether the user has one of ``any_of`` globally on the backend: SHOW GRANTS on a connection of
        its default hostgroup, asked once per session (and again after COM_CHANGE_USER)."""
        if self.privileges is None:
            self.privileges = proxyids.global_privileges(await self._show_grants())
        return bool(self.privileges & any_of)

    async def _show_grants(self) -> list[str]:
        """SHOW GRANTS as the session's user: on the connection it holds or an idle one of its default
        hostgroup, else on a connection of its own (as KILL's), so that a full pool never blocks a KILL."""
        app = self.app
        hg = self.default_hostgroup
        be = self.backends.get(hg)
        if be is None:
            be = app.pools.take_idle(app.hostgroups, hg, self.pool_key)
            if be is not None:
                self.backends[hg] = be  # given back after the command, as any borrowed connection
        if be is not None:
            try:
                rows = await be.query_rows("SHOW GRANTS")
            except (ConnectionLost, MalformedPacket) as exc:
                raise self._lost_backend(be, exc) from exc
            return [r[0] or "" for r in rows if r]
        online = [s for s in app.hostgroups.by_hostgroup.get(hg, ()) if s.status == "ONLINE"]
        if not online:
            raise MySQLError(9001, f"cannot check the privileges of '{self.username}': hostgroup {hg} has no "
                             "ONLINE server", "HY000")
        timeout = app.vars.connect_timeout_server / 1000
        conn = await open_backend(online[0].address, username=self.username, secret=self.secret, database=None,
                                  client_capabilities=0, connect_timeout=timeout, tls=app.backend_tls)
        try:
            with trio.fail_after(timeout):
                rows = await conn.query_rows("SHOW GRANTS")
        except (ConnectionLost, MalformedPacket, trio.TooSlowError) as exc:
            raise MySQLError(1158, f"cannot check the privileges of '{self.username}' on {online[0].address}: "
                             f"{exc}", "08S01") from exc
        finally:
            await conn.aclose()
        return [r[0] or "" for r in rows if r]

    async def _visible_processes(self) -> list[proxyids.ProcessRow]:
        """The proxy's sessions this one may see, as PROCESSLIST rows: its user's, or all with PROCESS."""
        from ..admin.stats import _command_name  # one naming of commands for both processlists

        sessions = [s for s in list(self.app.sessions.values()) if s.state is not SessionState.HANDSHAKE]
        if any(s.username != self.username for s in sessions) \
                and not await self._has_privilege(proxyids.MAY_SEE_OTHERS):
            sessions = [s for s in sessions if s.username == self.username]
        now = time.monotonic()
        rows = []
        for s in sessions:
            busy = s.state is SessionState.BUSY and s.command is not None
            info = s.info[1:].decode("utf-8", "replace") if busy and s.info and s.command == _COM_QUERY else None
            rows.append(proxyids.ProcessRow(
                s.id, s.username, s.client_addr, s.schema, _command_name(s),
                int((now - (s.command_started if busy else s.idle_since)) * 1000), "executing" if busy else "", info))
        return rows

    async def _send_processlist(self, full: bool) -> None:
        """SHOW [FULL] PROCESSLIST from the proxy's sessions, with MariaDB's columns."""
        rows = proxyids.show_rows(await self._visible_processes(), full)
        cols = [column_definition("Id", type_code=MYSQL_TYPE_LONGLONG, charset=63, length=21, flags=0x21),
                *(column_definition(n, length=256) for n in ("User", "Host", "db", "Command")),
                column_definition("Time", type_code=3, charset=63, length=7, flags=0x01),
                column_definition("State", length=120),
                column_definition("Info", length=100 if not full else 4096),
                column_definition("Progress", type_code=246, charset=63, length=7, flags=0x01, decimals=3)]
        await self.client.send_all(encode_result_set(cols, [text_row(r) for r in rows], self.capabilities,
                                                     self.status & ~_STATE_CHANGED))

    async def _session_ids_sql(self, sql: str, flags: int) -> str | None:
        """``sql`` with CONNECTION_ID() and PROCESSLIST turned into the proxy's sessions (see proxyids);
        None when answered here (SHOW PROCESSLIST alone)."""
        if flags & _PROCESSLIST:
            full = proxyids.show_processlist(sql)
            if full is not None:
                await self._send_processlist(full)
                return None
            if proxyids.reads_processlist(sql, self.schema):
                table = proxyids.processlist_table(await self._visible_processes())
                sql = proxyids.rewrite_processlist(sql, table, self.schema) or sql
        if flags & _CONNECTION_ID:
            sql = proxyids.rewrite_connection_id(sql, self.id) or sql
        return sql

    _handlers = {
        Command.QUERY: _com_query,
        Command.INIT_DB: _com_init_db,
        Command.PING: _com_ping,
        Command.QUIT: _com_quit,
        Command.FIELD_LIST: _com_simple,
        Command.STATISTICS: _com_simple,
        Command.SET_OPTION: _com_set_option,
        Command.PROCESS_INFO: _com_process_info,
        Command.STMT_PREPARE: _com_stmt_prepare,
        Command.STMT_EXECUTE: _com_stmt_execute,
        Command.STMT_FETCH: _com_stmt_fetch,
        Command.STMT_RESET: _com_stmt_reset,
        Command.STMT_CLOSE: _com_stmt_close,
        Command.STMT_SEND_LONG_DATA: _com_stmt_send_long_data,
        Command.PROCESS_KILL: _com_process_kill,
        Command.RESET_CONNECTION: _com_reset_connection,
        Command.CHANGE_USER: _com_change_user,
    }


ClientSession._handlers.update({c: ClientSession._com_refused for c in _REFUSED_COMMANDS})
