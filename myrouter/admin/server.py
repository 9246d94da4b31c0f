"""The admin interface on the wire: MySQL protocol on ``admin_variables.mysql_ifaces``.

One Trio task per admin client: handshake with :class:`ServerAuth` over the
``admin_credentials`` and ``stats_credentials`` accounts (a wrong password
gets ERR 1045), then a command loop answering COM_QUERY with text-protocol
result sets or OK packets. Any error is answered with an ERR packet; an
unexpected exception ends that admin connection only (logged), never the
proxy. The same nursery serves ``/metrics`` (:mod:`myrouter.admin.metrics`)
and runs the sweeper releasing connections to offline servers.
"""

from __future__ import annotations

import functools
import itertools
import logging
import socket
import time
from typing import TYPE_CHECKING, Any

import trio

from myrouter.config import AdminVariables, is_loopback_host
from myrouter.net.listen import accept_loop, close_listener, listen
from myrouter.frontend.handshake import TLSFailed, accept_login
from myrouter.net.stream import ConnectionLost, PacketStream
from myrouter.protocol import errors as E
from myrouter.protocol.auth import ServerAuth, new_scramble
from myrouter.protocol.codec import lenenc_int
from myrouter.protocol.constants import DEFAULT_CHARSET, Capability, Command, Status
from myrouter.protocol.errors import MalformedPacket, MySQLError, PacketTooLarge, SequenceError
from myrouter.protocol.messages import (
    OK,
    HandshakeV10,
    column_definition,
    encode_eof,
    error_payload,
    text_row,
)
from myrouter.protocol.packets import frame
from myrouter.stats import auditlog as A

from .metrics import serve_metrics_client
from .results import AdminSession, OkResult, ResultSet
from .runtime import release_connections
from .sqltext import split_statements

if TYPE_CHECKING:
    from .core import Admin

log = logging.getLogger("myrouter.admin")

__all__ = ["bind_admin", "serve_admin", "exposure_warnings", "ADMIN_CAPABILITIES"]

C = Capability
ADMIN_CAPABILITIES = (
    C.LONG_PASSWORD | C.FOUND_ROWS | C.LONG_FLAG | C.CONNECT_WITH_DB | C.NO_SCHEMA | C.ODBC | C.IGNORE_SPACE
    | C.PROTOCOL_41 | C.INTERACTIVE | C.IGNORE_SIGPIPE | C.TRANSACTIONS | C.SECURE_CONNECTION | C.MULTI_STATEMENTS
    | C.MULTI_RESULTS | C.PS_MULTI_RESULTS | C.PLUGIN_AUTH | C.CONNECT_ATTRS | C.PLUGIN_AUTH_LENENC_CLIENT_DATA
)
HANDSHAKE_TIMEOUT = 10.0
MAX_PACKET = 64 * 1024 * 1024
SWEEP_INTERVAL = 1.0
#: a result set with more rows is encoded in a worker thread (50,000 rows take a third of a second)
ENCODE_IN_THREAD_ROWS = 1000

MYSQL_TYPE_DOUBLE = 5
MYSQL_TYPE_LONGLONG = 8
MYSQL_TYPE_VAR_STRING = 253
NUM_FLAG = 32768
BINARY_CHARSET = 63
ER_HOST_IS_BLOCKED = 1129
_ids = itertools.count(1)


def bind_admin(admin: Admin) -> list[socket.socket]:
    """Bind the admin listeners (``admin-mysql_ifaces``) and /metrics (``admin-restapi_port``, on the
    host of the first admin interface: loopback by default). OSError names the address on failure."""
    av = admin.app.config.admin_variables
    sockets: list[socket.socket] = []
    what = "admin interface (admin-mysql_ifaces)"
    host, port = "", 0
    try:
        for host, port in av.listen_addresses():
            sockets.append(listen(host, port))
        admin.listen_addresses = [s.getsockname()[:2] for s in sockets]
        admin.metrics_address = None
        if av.restapi_enabled:
            what = "Prometheus metrics (admin-restapi_port)"
            host, port = av.listen_addresses()[0][0], av.restapi_port
            sockets.append(listen(host, port))
            admin.metrics_address = sockets[-1].getsockname()[:2]
    except OSError as exc:
        for s in sockets:
            close_listener(s)
        raise OSError(exc.errno, f"cannot listen on {host}:{port} for the {what}: {exc.strerror or exc}") from exc
    log.info("admin interface listening on %s%s",
             ", ".join(f"{h}:{p}" for h, p in admin.listen_addresses),
             f"; Prometheus metrics on http://{admin.metrics_address[0]}:{admin.metrics_address[1]}/metrics"
             if admin.metrics_address else "")
    for warning in exposure_warnings(av, av.listen_addresses()):
        log.warning("%s", warning)
    return sockets


def exposure_warnings(av: AdminVariables, addresses: list[tuple[str, int]]) -> list[str]:
    """What is unsafe about an admin interface on ``addresses`` beyond loopback: the default
    accounts (admin:admin is refused by the config loader; stats:stats is allowed) and no TLS."""
    exposed = [f"{h}:{p}" for h, p in addresses if not is_loopback_host(h)]
    if not exposed:
        return []
    where = ", ".join(exposed)
    out = []
    defaults = [f"{u}:{p}" for u, p in av.admin_accounts() + av.stats_accounts()
                if (u, p) in (("admin", "admin"), ("stats", "stats"))]
    if defaults:
        out.append(f"SECURITY WARNING: the admin interface listens beyond loopback ({where}) and accepts the "
                   f"default account(s) {' and '.join(defaults)}: anyone who can reach it can log in (the stats "
                   "schema shows statements, users and client addresses); set admin-admin_credentials and "
                   "admin-stats_credentials")
    if not av.have_ssl:
        out.append(f"SECURITY WARNING: the admin interface listens beyond loopback ({where}) without TLS: admin "
                   "statements and results travel in clear text; set admin-have_ssl = true")
    return out


async def serve_admin(admin: Admin, sockets: list[socket.socket], *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve the bound admin listeners (and /metrics, the last socket when enabled) until cancelled."""
    n_admin = len(admin.listen_addresses)
    try:
        async with trio.open_nursery() as nursery:
            for s in sockets[:n_admin]:
                nursery.start_soon(accept_loop, s, nursery, functools.partial(_admin_client, admin), "admin")
            for s in sockets[n_admin:]:
                nursery.start_soon(accept_loop, s, nursery, functools.partial(serve_metrics_client, admin), "metrics")
            nursery.start_soon(_sweeper, admin)
            task_status.started()
    finally:
        for s in sockets:
            close_listener(s)


async def _sweeper(admin: Admin) -> None:
    """Release connections to OFFLINE_SOFT/OFFLINE_HARD/removed servers once their sessions allow it."""
    while True:
        await trio.sleep(SWEEP_INTERVAL)
        soft, hard = admin.app.topology.offline_servers()
        if soft or hard:
            release_connections(admin.app, soft, hard)


async def _admin_client(admin: Admin, conn: socket.socket, addr: Any) -> None:
    stream = PacketStream(conn, max_payload=MAX_PACKET)
    client = _AdminClient(admin, stream, addr)
    try:
        await client.run()
    except ConnectionLost as exc:
        log.debug("admin session %d: connection lost: %s", client.id, exc)
    except Exception:
        log.exception("admin session %d: unexpected error; connection closed", client.id)
    finally:
        client.audit_close()
        stream.close()


class _AdminClient:
    def __init__(self, admin: Admin, stream: PacketStream, addr: Any) -> None:
        self.admin = admin
        self.app = admin.app
        self.stream = stream
        self.id = next(_ids)
        self.host = addr[0] if addr else "?"
        self.addr = f"{addr[0]}:{addr[1]}" if addr else "?"
        self.caps = 0
        self.tls = False  # the connection switched to TLS (admin-have_ssl)
        self.authenticated = False  # the password was right (failed logins count per address otherwise)
        self.session: AdminSession | None = None
        # audit log (myrouter/stats/auditlog.py): Admin_Connect_OK/ERR, Admin_Quit, Admin_Close
        self.logged_in = False
        self.quit = False
        self.tried: tuple[str, str | None] = ("", None)  # (username, why refused) once auth is decided
        self.connected_at = time.time()
        try:
            host, port = stream.sock.getsockname()[:2]
            self.proxy_addr: str | None = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        except OSError:
            self.proxy_addr = None

    def _audit(self, event: str, username: str, **fields) -> None:
        audit = self.app.audit_log
        if audit is None:
            return
        schema = self.session.schema if self.session is not None and self.logged_in else ""
        audit.event(event, thread_id=self.id, username=username, schemaname=schema, client_addr=self.addr,
                    proxy_addr=self.proxy_addr, **fields)

    def _denied_reason(self, username: str, err: MySQLError) -> str:
        if err.code != E.ER_ACCESS_DENIED_ERROR:
            return err.message
        if self.admin.lookup_credential(username) is None:
            return f"unknown admin user {username!r}"
        return "no password given" if err.message.endswith("(using password: NO)") else "wrong password"

    def audit_close(self) -> None:
        """Admin_Quit (COM_QUIT) and Admin_Close for a client that logged in."""
        if not self.logged_in:
            return
        now = time.time()
        username = self.session.username if self.session is not None else ""
        if self.quit:
            self._audit(A.ADMIN_QUIT, username, now=now)
        self._audit(A.ADMIN_CLOSE, username, now=now, extra_info="client sent COM_QUIT" if self.quit
                    else "connection closed", **A.close_fields(self.connected_at, now),
                    bytes_received=self.stream.bytes_in, bytes_sent=self.stream.bytes_out)

    async def run(self) -> None:
        if not await self._handshake():
            return
        while True:
            try:
                pkt = await self.stream.read_packet(timeout=self.app.vars.wait_timeout / 1000)
            except trio.TooSlowError:
                log.info("admin session %d: idle for wait_timeout; closing", self.id)
                return
            except (SequenceError, PacketTooLarge, MalformedPacket) as exc:
                await self._try_err(E.malformed_packet(str(exc)), 1)
                return
            if pkt.seq != 0:
                await self._try_err(E.packets_out_of_order(), (pkt.seq + 1) & 0xFF)
                return
            payload = pkt.payload
            if not payload:
                await self._send_err(E.malformed_packet("empty command"))
                continue
            if payload[0] == Command.QUIT:
                self.quit = True
                return
            try:
                await self._dispatch(payload)
            except MySQLError as exc:
                await self._send_err(exc)
            except MalformedPacket as exc:
                await self._send_err(E.malformed_packet(str(exc)))

    # ------------------------------------------------------------ handshake

    async def _handshake(self) -> bool:
        if await self._refuse_blocked_host():
            return False
        ok = await self._login()
        if self.authenticated:  # (a wrong default schema is no failed login)
            self.admin.host_errors.succeeded(self.host)
        else:
            self._count_failed_login()
        return ok

    async def _refuse_blocked_host(self) -> bool:
        """ERR 1129 instead of the greeting for an address blocked after failed logins (hostblock.py)."""
        av = self.app.config.admin_variables
        errors = self.admin.host_errors
        left = errors.blocked_for(self.host, av.client_host_error_counts, av.client_host_block_time_ms / 1000)
        if not left:
            return False
        errors.refused += 1
        reason = (f"Host '{self.host}' is blocked because of {av.client_host_error_counts} failed admin logins; "
                  f"retry in {left:.0f} s or run 'PROXYSQL FLUSH MYSQL CLIENT HOSTS'")
        log.info("admin session %d from %s refused: address blocked after failed logins", self.id, self.addr)
        self.tried = ("", reason)
        await self._try_err(MySQLError(ER_HOST_IS_BLOCKED, reason, "HY000"), 0)
        return True

    def _count_failed_login(self) -> None:
        av = self.app.config.admin_variables
        if av.client_host_error_counts <= 0:
            return
        count = self.admin.host_errors.failed(self.host, av.client_host_block_time_ms / 1000)
        if count == av.client_host_error_counts:
            log.warning("admin: %d failed logins from %s: the address is refused (ERR 1129) for %d ms, or until "
                        "PROXYSQL FLUSH MYSQL CLIENT HOSTS", count, self.host, av.client_host_block_time_ms)

    async def _login(self) -> bool:
        admin = self.admin
        scramble = new_scramble()
        tls_context = self.app.tls_context if self.app.config.admin_variables.have_ssl else None
        server_caps = ADMIN_CAPABILITIES | (C.SSL if tls_context is not None else 0)
        greeting = HandshakeV10(
            server_version=self.app.server_version, connection_id=self.id, auth_data=scramble,
            capabilities=server_caps, charset=DEFAULT_CHARSET, status=Status.AUTOCOMMIT,
            auth_plugin="mysql_native_password",
        )
        try:
            with trio.fail_after(HANDSHAKE_TIMEOUT):
                login = await accept_login(
                    self.stream, greeting, tls_context=tls_context,
                    no_tls_message="Bad handshake: SSL is not enabled on the admin interface (admin-have_ssl)",
                    make_auth=functools.partial(self._new_auth, scramble))
        except trio.TooSlowError:
            log.info("admin session %d from %s: handshake timed out", self.id, self.addr)
            await self._try_err(MySQLError(E.ER_HANDSHAKE_ERROR, "Bad handshake: timeout", "08S01"), 2)
            return False
        except TLSFailed as exc:
            log.info("admin session %d from %s: %s", self.id, self.addr, exc)
            return False
        except (SequenceError, MalformedPacket, PacketTooLarge) as exc:
            log.info("admin session %d from %s: bad handshake: %s", self.id, self.addr, exc)
            await self._try_err(E.bad_handshake(), 2)
            return False
        except MySQLError as exc:  # TLS asked for but not enabled; an unreadable HandshakeResponse41
            log.info("admin session %d from %s: %s", self.id, self.addr, exc.message)
            await self._try_err(exc, 2)
            return False
        resp, step, seq = login.response, login.step, login.seq
        self.caps = login.capabilities
        self.tried = (resp.username, self._denied_reason(resp.username, step.error) if step.error else None)
        if step.error is not None:
            log.warning("admin: access denied for user %r from %s", resp.username, self.addr)
            await self._try_err(step.error, seq)
            return False
        self.authenticated = True
        self.session = AdminSession(self.id, resp.username, self.host, admin.is_read_only(resp.username))
        if resp.database:
            try:
                admin.use(self.session, resp.database)
            except MySQLError as exc:
                await self._try_err(exc, seq)
                return False
        await self.stream.send_packet(OK(status=Status.AUTOCOMMIT).encode(self.caps), seq)
        self.logged_in = True
        self._audit(A.ADMIN_CONNECT_OK, resp.username, extra_info="read-only (stats)" if self.session.read_only
                    else None)
        log.info("admin session %d: user %r connected from %s%s", self.id, resp.username, self.addr,
                 " (read-only)" if self.session.read_only else "")
        return True

    def _new_auth(self, scramble: bytes, tls: bool) -> ServerAuth:
        """The auth machine for the admin accounts (``tls``: the connection switched to TLS)."""
        self.tls = tls
        return ServerAuth(
            scramble=scramble, lookup=self.admin.lookup_credential, default_plugin="mysql_native_password",
            rsa=self.app.rsa, sha2_cache=self.admin._sha2_cache, client_host=self.host, secure_transport=tls,
            cleartext_ok=is_loopback_host(self.host.split("%")[0]),
        )

    # ------------------------------------------------------------ commands

    async def _dispatch(self, payload: bytes) -> None:
        cmd = payload[0]
        sess = self.session
        assert sess is not None
        if cmd == Command.QUERY:
            await self._query(payload[1:].decode("utf-8", "replace"))
        elif cmd == Command.PING:
            await self._send_ok(OkResult())
        elif cmd == Command.INIT_DB:
            self.admin.use(sess, payload[1:].decode("utf-8", "replace"))
            await self._send_ok(OkResult())
        elif cmd == Command.FIELD_LIST:
            await self._field_list(payload[1:])
        elif cmd == Command.STATISTICS:
            tables = await self.admin.stats_tables(frozenset({"stats_mysql_global"}))  # every worker's
            status = dict(tables["stats_mysql_global"])
            text = (f"Uptime: {int(time.time() - self.admin.started)}  Threads: {status['Client_Connections_connected']}"
                    f"  Questions: {status['Questions']}  Slow queries: {status['Slow_queries']}")
            await self.stream.send_packet(text.encode(), 1)
        elif cmd == Command.SET_OPTION:
            await self.stream.send_packet(encode_eof(Status.AUTOCOMMIT), 1)
        elif cmd == Command.RESET_CONNECTION:
            sess.schema = "main"
            await self._send_ok(OkResult())
        elif cmd == Command.PROCESS_KILL:
            if len(payload) < 5:
                raise MalformedPacket("COM_PROCESS_KILL without a session id")
            result = await self.admin.execute(sess, f"KILL {int.from_bytes(payload[1:5], 'little')}")
            await self._send_ok(result)
        else:
            try:
                name = "COM_" + Command(cmd).name
            except ValueError:
                name = f"command 0x{cmd:02x}"
            raise MySQLError(E.ER_UNKNOWN_COM_ERROR, f"{name} is not supported by the admin interface", "08S01")

    async def _query(self, sql: str) -> None:
        statements = split_statements(sql)
        if not statements:
            raise MySQLError(1065, "Query was empty", "42000")
        if len(statements) > 1 and not self.caps & C.MULTI_STATEMENTS:
            raise MySQLError(1064, "You have an error in your SQL syntax: several statements in one query "
                             "(the client did not enable multi-statements)", "42000")
        seq = 1
        out: list[bytes] = []
        for i, statement in enumerate(statements):
            more = i + 1 < len(statements)
            try:
                result = await self.admin.execute(self.session, statement)
            except MySQLError as exc:
                out.append(frame(error_payload(exc, self.caps), seq))
                break
            except Exception as exc:  # a bug in the admin code: answer, log, keep the connection
                log.exception("admin session %d: statement failed unexpectedly: %.200s", self.id, statement)
                out.append(frame(error_payload(MySQLError(1105, f"internal error in the admin interface: "
                                                                f"{type(exc).__name__}: {exc}", "HY000"),
                                               self.caps), seq))
                break
            status = Status.AUTOCOMMIT | (Status.MORE_RESULTS_EXISTS if more else 0)
            if isinstance(result, ResultSet) and len(result.rows) > ENCODE_IN_THREAD_ROWS:
                data, seq = await trio.to_thread.run_sync(_encode_result, result, self.caps, int(status), seq)
            else:
                data, seq = _encode_result(result, self.caps, int(status), seq)
            out.append(data)
        await self.stream.send_all(b"".join(out))

    async def _field_list(self, data: bytes) -> None:
        table = data.split(b"\0", 1)[0].decode("utf-8", "replace")
        sess = self.session
        columns = await self.admin.table_columns(sess.schema, table)
        if not columns:
            raise MySQLError(1146, f"Table '{table}' doesn't exist", "42S02")
        seq = 1
        out = []
        for name in columns:
            out.append(frame(column_definition(name, table=table, schema=sess.schema) + b"\xfb", seq))
            seq += 1
        out.append(frame(encode_eof(Status.AUTOCOMMIT), seq))
        await self.stream.send_all(b"".join(out))

    # ------------------------------------------------------------ replies

    async def _send_ok(self, result, seq: int = 1) -> None:
        data, _ = _encode_result(result, self.caps, int(Status.AUTOCOMMIT), seq)
        await self.stream.send_all(data)

    async def _send_err(self, err: MySQLError, seq: int = 1) -> None:
        await self.stream.send_packet(error_payload(err, self.caps or C.PROTOCOL_41), seq)

    async def _try_err(self, err: MySQLError, seq: int) -> None:
        if not self.logged_in:  # every ERR of the handshake is the Admin_Connect_ERR of this client
            username, reason = self.tried
            self._audit(A.ADMIN_CONNECT_ERR, username, extra_info=reason or err.message, **A.error_fields(err))
        try:
            await self._send_err(err, seq)
        except ConnectionLost as exc:
            log.debug("admin session %d: could not send error %s: %s", self.id, err, exc)


def _column_kind(rows: list, i: int) -> str:
    kind = None
    for row in rows:
        v = row[i]
        if v is None:
            continue
        if isinstance(v, int):
            k = "int"
        elif isinstance(v, float):
            k = "float"
        elif isinstance(v, bytes):
            k = "bytes"
        else:
            return "str"
        if kind is None:
            kind = k
        elif kind != k:
            if {kind, k} == {"int", "float"}:
                kind = "float"
            else:
                return "str"
    return kind or "str"


def _encode_result(result, caps: int, status: int, seq: int) -> tuple[bytes, int]:
    """Frame an OK packet or a text result set; returns the bytes and the next sequence id."""
    if isinstance(result, OkResult):
        ok = OK(affected_rows=result.affected_rows, last_insert_id=result.last_insert_id, status=status,
                warnings=result.warnings, info=result.info)
        return frame(ok.encode(caps), seq), (seq + 1) & 0xFF
    assert isinstance(result, ResultSet)
    parts = [frame(lenenc_int(len(result.columns)), seq)]
    seq += 1
    for i, name in enumerate(result.columns):
        kind = _column_kind(result.rows, i)
        if kind == "int":
            col = column_definition(name, type_code=MYSQL_TYPE_LONGLONG, charset=BINARY_CHARSET, length=20,
                                    flags=NUM_FLAG)
        elif kind == "float":
            col = column_definition(name, type_code=MYSQL_TYPE_DOUBLE, charset=BINARY_CHARSET, length=22,
                                    flags=NUM_FLAG, decimals=31)
        elif kind == "bytes":
            col = column_definition(name, charset=BINARY_CHARSET)
        else:
            col = column_definition(name)
        parts.append(frame(col, seq & 0xFF))
        seq += 1
    parts.append(frame(encode_eof(status), seq & 0xFF))
    seq += 1
    for row in result.rows:
        parts.append(frame(text_row([_text(v) for v in row]), seq & 0xFF))
        seq += 1
    parts.append(frame(encode_eof(status), seq & 0xFF))
    seq += 1
    return b"".join(parts), seq & 0xFF


def _text(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v)
    return v
