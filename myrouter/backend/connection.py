"""One connection from the proxy to a backend MariaDB/MySQL server.

``open_backend`` connects, reads the greeting and logs in with a client's
credentials (``ClientAuth``). The connection object then offers raw access to
its ``PacketStream`` for forwarding, plus ``simple_query`` for the proxy's own
statements (KILL, session fix-ups), whose results are drained and decoded.
"""

from __future__ import annotations

import collections
import enum
import itertools
import logging
import os
import ssl
import time

import trio

from ..net.address import ServerAddress  # where a connection goes (re-exported: routing names it too)
from ..net.keepalive import apply_keepalive
from ..net.stream import ConnectionLost, PacketStream, open_stream, start_compression, start_tls
from ..protocol.auth import BackendSecret, ClientAuth
from ..protocol.codec import Reader
from ..protocol.constants import DEFAULT_CHARSET, Capability, Command
from ..protocol.errors import MalformedPacket, MySQLError, PROXYSQL_ER_HOSTGROUP_TIMEOUT
from ..protocol.messages import SSL_REQUEST_LENGTH, HandshakeResponse41, HandshakeV10, parse_err
from ..protocol.packets import frame
from ..protocol.response import ResponseKind, ResponseTracker, ok_status

log = logging.getLogger("myrouter.backend")

C = Capability

# What the proxy may ask of a backend. Query attributes and optional metadata change packet
# layouts the proxy does not translate. SSL and COMPRESS are the server row's choice (use_ssl,
# compression), never the client's: the stream under the packets handles them.
BACKEND_CAPABILITIES = (
    C.LONG_PASSWORD | C.FOUND_ROWS | C.LONG_FLAG | C.CONNECT_WITH_DB | C.NO_SCHEMA | C.ODBC | C.LOCAL_FILES
    | C.IGNORE_SPACE | C.PROTOCOL_41 | C.INTERACTIVE | C.IGNORE_SIGPIPE | C.TRANSACTIONS | C.SECURE_CONNECTION
    | C.MULTI_STATEMENTS | C.MULTI_RESULTS | C.PS_MULTI_RESULTS | C.PLUGIN_AUTH | C.CONNECT_ATTRS
    | C.PLUGIN_AUTH_LENENC_CLIENT_DATA | C.SESSION_TRACK | C.DEPRECATE_EOF
)
# Always requested: the proxy relies on them.
# SESSION_TRACK: the proxy reads state changes from every backend (and strips them
# from the OK packets of clients that did not ask for them).
REQUIRED_CAPABILITIES = (
    C.PROTOCOL_41 | C.SECURE_CONNECTION | C.PLUGIN_AUTH | C.TRANSACTIONS | C.MULTI_RESULTS | C.PS_MULTI_RESULTS
    | C.LONG_PASSWORD | C.SESSION_TRACK
)


class BackendState(enum.Enum):
    NEW = "new"  # connecting / authenticating
    IDLE = "idle"  # in its pool, free
    RESERVED = "reserved"  # handed to a session, no statement running yet
    ACTIVE = "active"  # a statement is running
    PINNED = "pinned"  # held by a session between statements (transaction, lock, ...)
    CLOSED = "closed"


_ids = itertools.count(1)


class BackendConnection:
    def __init__(
        self,
        stream: PacketStream,
        server: ServerAddress,
        username: str,
        greeting: HandshakeV10,
        capabilities: int,
        status: int,
    ) -> None:
        self.id = next(_ids)
        self.stream = stream
        self.server = server
        self.username = username
        self.thread_id = greeting.connection_id
        self.server_version = greeting.server_version
        # MariaDB before 11.1 names transaction_isolation / transaction_read_only tx_isolation / tx_read_only
        self.legacy_tx_names = _legacy_tx_names(greeting.server_version)
        self.capabilities = int(capabilities)  # an int: IntFlag operators are slow on the hot path
        self.status = status
        self.state = BackendState.IDLE
        self.created = time.monotonic()
        self.last_used = self.created
        # Session state this connection carries (brought in line by each session that borrows it):
        self.schema: str | None = None
        self.vars: dict[str, str] = {}  # session variables set here: name -> SQL value text
        self.stmts: collections.OrderedDict = collections.OrderedDict()  # prepared: key -> backend stmt id (LRU)
        self.tracks_variables = False  # the server reports every session variable change (session tracking)
        self.server_ref = None  # the runtime Server it belongs to (counters, status)
        self.key = None  # the PoolKey of the clients that may share it
        self.pins = 0  # why the holding session keeps it (bit mask of Pin reasons)
        self.broken = False  # its state is unknown (a failed statement of the proxy's own, a protocol error)
        self.retire = False  # close instead of returning it to the pool
        # A transaction is open here: the server's IN_TRANS flag, or (autocommit_false_is_transaction)
        # an autocommit-off session ran a statement here since its last COMMIT/ROLLBACK. Set by the
        # session after each response; a connection with it set is never given to another session.
        self.in_trx = False
        self.watch = None  # the data plane's BackendWatch of its socket, once the data plane used it

    def __repr__(self) -> str:
        return (
            f"<BackendConnection #{self.id} {self.server} hg={self.server.hostgroup} user={self.username!r} "
            f"thread={self.thread_id} {self.state.value}>"
        )

    @property
    def closed(self) -> bool:
        return self.state is BackendState.CLOSED

    async def simple_query(self, sql: str | bytes) -> ResponseTracker:
        """Run a statement of the proxy's own and read (and drop) its whole response.

        Returns the finished tracker (``error`` holds an ERR payload if the
        server refused). Raises ``ConnectionLost`` if the connection fails.
        """
        if isinstance(sql, str):
            sql = sql.encode()
        return await self.run_command(bytes((Command.QUERY,)) + sql, ResponseKind.RESULT)

    async def run_command(self, payload: bytes, kind: ResponseKind,
                          capture: list[bytes] | None = None) -> ResponseTracker:
        """Send one command payload and read its response without forwarding it.

        ``capture`` receives the response's raw bytes if given.
        """
        await self.stream.send_all(frame(payload, 0))
        return await self.read_response(kind, capture)

    async def read_response(self, kind: ResponseKind, capture: list[bytes] | None = None) -> ResponseTracker:
        """Read the response to a command sent already, without forwarding it (see ``run_command``)."""
        tracker = ResponseTracker(kind, self.capabilities)
        while not tracker.done:
            data = await self.stream.recv_some()
            n = tracker.feed(data)
            if capture is not None:
                capture.append(data)
            if tracker.local_infile:
                raise MalformedPacket("unexpected LOCAL INFILE request for an internal statement")
            if n != len(data):
                raise MalformedPacket("backend sent bytes after the end of a response")
        self.status = tracker.status
        return tracker

    async def query_rows(self, sql: str) -> list[list[str | None]]:
        """Run a statement of the proxy's own and decode its (small) text result set: the rows.

        For the proxy's bookkeeping queries only, never for client traffic. Raises the
        server's error as MySQLError (the connection stays usable and keeps its state).
        """
        state = self.state
        try:
            _, rows = await query_rows(self, sql)
        finally:
            if self.state is not BackendState.CLOSED:
                self.state = state
        return [list(r) for r in rows]

    def close(self) -> None:
        """Close at once (no COM_QUIT): for broken or abandoned connections."""
        if self.state is BackendState.CLOSED:
            return
        self.state = BackendState.CLOSED
        self.stream.close()

    async def aclose(self) -> None:
        """Say COM_QUIT if the connection is healthy, then close."""
        if self.state is not BackendState.CLOSED and self.state is not BackendState.ACTIVE and not self.broken:
            with trio.move_on_after(1):
                try:
                    await self.stream.send_all(frame(bytes((Command.QUIT,)), 0))
                except ConnectionLost:
                    pass  # closing anyway: the server already went away
        self.close()


def _legacy_tx_names(version: str) -> bool:
    if "mariadb" not in version.lower():
        return False
    v = version[6:] if version.startswith("5.5.5-") else version
    try:
        major, minor = (int(x) for x in v.split("-")[0].split(".")[:2])
    except ValueError:
        return True
    return (major, minor) < (11, 1)


def split_payloads(data: bytes) -> list[bytes]:
    """The payloads of a run of whole packets."""
    out = []
    pos = 0
    n = len(data)
    while pos < n:
        if n - pos < 4:
            raise MalformedPacket("truncated packet header")
        end = pos + 4 + (data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16)
        if end > n:
            raise MalformedPacket("truncated packet")
        out.append(data[pos + 4:end])
        pos = end
    return out


def backend_capabilities(client_capabilities: int, server_capabilities: int) -> int:
    """The flags to ask of a backend for a client with these capabilities."""
    wanted = (client_capabilities & BACKEND_CAPABILITIES) | REQUIRED_CAPABILITIES
    return wanted & server_capabilities | (wanted & C.LONG_PASSWORD)


async def open_backend(
    server: ServerAddress,
    *,
    username: str,
    secret: BackendSecret,
    database: str | None,
    client_capabilities: int,
    charset: int = DEFAULT_CHARSET,
    attrs: dict[str, str] | None = None,
    connect_timeout: float = 3.0,
    max_packet: int = 64 * 1024 * 1024,
    tls: ssl.SSLContext | None = None,
    tcp_keepalive: bool = True,
    tcp_keepalive_time: int = 0,
) -> BackendConnection:
    """Connect and authenticate; raises ``MySQLError`` with a clear reply on failure.

    A server with ``use_ssl`` is logged in to over TLS with the ``tls`` context (the proxy
    passes its ``backend_tls``; without one: encrypted, the certificate not checked).
    ``tcp_keepalive``/``tcp_keepalive_time``: see :func:`myrouter.net.keepalive.apply_keepalive`."""
    try:
        stream = await open_stream(server.host, server.port, timeout=connect_timeout)
    except ConnectionLost as exc:
        raise MySQLError(
            PROXYSQL_ER_HOSTGROUP_TIMEOUT,
            f"Cannot connect to backend {server} in hostgroup {server.hostgroup}: {exc}",
            "HY000",
        ) from exc
    except trio.TooSlowError as exc:
        raise MySQLError(
            PROXYSQL_ER_HOSTGROUP_TIMEOUT,
            f"Max connect timeout reached while reaching hostgroup {server.hostgroup} "
            f"(backend {server}) after {int(connect_timeout * 1000)}ms",
            "HY000",
        ) from exc
    try:
        apply_keepalive(stream.sock, tcp_keepalive, tcp_keepalive_time)
    except OSError as exc:  # the server reset the connection already
        stream.close()
        raise MySQLError(
            PROXYSQL_ER_HOSTGROUP_TIMEOUT,
            f"Lost connection to backend {server} in hostgroup {server.hostgroup}: {exc.strerror or exc}",
            "HY000",
        ) from exc
    try:
        with trio.fail_after(connect_timeout):
            return await _login(stream, server, username, secret, database, client_capabilities, charset,
                                attrs or {}, max_packet, (tls or backend_tls_context()) if server.use_ssl else None)
    except trio.TooSlowError as exc:
        stream.close()
        raise MySQLError(
            PROXYSQL_ER_HOSTGROUP_TIMEOUT,
            f"Timeout logging in to backend {server} in hostgroup {server.hostgroup} after "
            f"{int(connect_timeout * 1000)}ms",
            "HY000",
        ) from exc
    except (ConnectionLost, MalformedPacket) as exc:
        stream.close()
        raise MySQLError(
            PROXYSQL_ER_HOSTGROUP_TIMEOUT,
            f"Lost connection to backend {server} in hostgroup {server.hostgroup} during login: {exc}",
            "HY000",
        ) from exc
    except BaseException:
        stream.close()
        raise


async def _login(stream, server, username, secret, database, client_caps, charset, attrs, max_packet, tls):
    pkt = await stream.read_packet()
    if pkt.payload[:1] == b"\xff":
        raise parse_err(pkt.payload)
    greeting = HandshakeV10.parse(pkt.payload)
    caps = backend_capabilities(client_caps, greeting.capabilities)
    if database:
        caps |= C.CONNECT_WITH_DB
    else:
        caps &= ~C.CONNECT_WITH_DB
    if not greeting.capabilities & C.CONNECT_ATTRS:
        caps &= ~C.CONNECT_ATTRS
    if tls is not None:
        caps |= C.SSL
    if server.compression:
        if greeting.capabilities & C.COMPRESS:
            caps |= C.COMPRESS
        else:
            log.warning("backend %s in hostgroup %d does not offer compression (mysql_servers.compression > 0): "
                        "connected uncompressed", server, server.hostgroup)
    auth = ClientAuth(username=username, secret=secret, secure_transport=tls is not None)
    plugin, token = auth.first_response(greeting.auth_plugin, greeting.auth_data)
    attrs = dict(attrs)
    attrs.setdefault("program_name", "myrouter")
    response = HandshakeResponse41(
        capabilities=caps,
        max_packet=max_packet,
        charset=charset if charset < 256 else DEFAULT_CHARSET,
        username=username,
        auth_response=token,
        database=database,
        auth_plugin=plugin,
        attrs=attrs if caps & C.CONNECT_ATTRS else {},
    )
    encoded = response.encode()
    seq = pkt.seq + 1
    if tls is not None:
        if not greeting.capabilities & C.SSL:
            raise MySQLError(PROXYSQL_ER_HOSTGROUP_TIMEOUT, f"backend {server} in hostgroup {server.hostgroup} does "
                             "not offer TLS, and mysql_servers.use_ssl=1 asks for it", "HY000")
        # SSLRequest: the response's first 32 bytes; the whole response follows, encrypted
        seq = await stream.send_packet(encoded[:SSL_REQUEST_LENGTH], seq)
        try:
            await start_tls(stream, tls, server_side=False)
        except ConnectionLost as exc:
            raise MySQLError(PROXYSQL_ER_HOSTGROUP_TIMEOUT,
                             f"TLS with backend {server} in hostgroup {server.hostgroup} failed: {exc}", "HY000") from exc
    seq = await stream.send_packet(encoded, seq)
    while True:
        pkt = await stream.read_packet()
        step = auth.receive(pkt.payload)
        if step.error is not None:
            raise step.error
        if step.done:
            status = ok_status(pkt.payload)
            if caps & C.COMPRESS:
                start_compression(stream, client_side=True)
            return BackendConnection(stream, server, username, greeting, caps, status)
        seq = (pkt.seq + 1) & 0xFF
        for payload in step.send:
            seq = await stream.send_packet(payload, seq)


def backend_tls_context(ca: str = "", cert: str = "", key: str = "", cipher: str = "", *, capath: str = "",
                        crl: str = "", crlpath: str = "") -> ssl.SSLContext:
    """The client-side TLS context for backends from ProxySQL's mysql-ssl_p2s_* variables: with a
    CA file or a directory of hashed CA certificates (capath) the server's certificate chain is
    verified (not its name: servers are often addressed by IP); crl (a PEM file) and crlpath (a
    directory of hashed CRLs) make a revoked server certificate fail verification; cert/key present
    a client certificate; cipher restricts TLS 1.2 ciphers. Raises ``OSError``, ``ssl.SSLError`` or
    ``ValueError`` for settings that cannot work (files that do not load, a CRL without a CA)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    for name, directory in (("ssl_p2s_capath", capath), ("ssl_p2s_crlpath", crlpath)):
        if directory and not os.path.isdir(directory):  # OpenSSL reads such directories lazily: check now
            raise ValueError(f"{name}: {directory!r} is not a directory")
    if (crl or crlpath) and not (ca or capath):
        raise ValueError("ssl_p2s_crl/ssl_p2s_crlpath need ssl_p2s_ca or ssl_p2s_capath: without a CA the "
                         "server's certificate is not verified, so revocation cannot be checked")
    if ca or capath:
        ctx.load_verify_locations(cafile=ca or None, capath=capath or None)
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if crl or crlpath:
        ctx.load_verify_locations(cafile=crl or None, capath=crlpath or None)  # CRLs join the trust store
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    if cert:
        ctx.load_cert_chain(cert, key or None)
    if cipher:
        ctx.set_ciphers(cipher)
    return ctx


async def read_greeting(host: str, port: int, timeout: float = 2.0) -> HandshakeV10:
    """Read a server's greeting without logging in (used to learn its version)."""
    stream = await open_stream(host, port, timeout=timeout)
    try:
        with trio.fail_after(timeout):
            pkt = await stream.read_packet()
        return HandshakeV10.parse(pkt.payload)
    finally:
        stream.close()


async def query_rows(conn: BackendConnection, sql: str) -> tuple[list[str], list[tuple[str | None, ...]]]:
    """Run one statement of the proxy's own and return its text result: column names and rows.

    Values are ``str`` (decoded as UTF-8) or None for SQL NULL; a statement without a
    result set gives ``([], [])``. Only the first result set is returned (any further
    ones are read and dropped). Raises ``MySQLError`` if the server answers with an
    error (the connection stays usable), ``ConnectionLost``/``MalformedPacket`` if the
    connection fails (it is then closed). Used by the monitor for its checks; the
    caller bounds the time (``trio.fail_after``) and closes the connection on timeout.
    """

    stream = conn.stream
    deprecate_eof = bool(conn.capabilities & C.DEPRECATE_EOF)
    conn.state = BackendState.ACTIVE
    columns: list[str] = []
    rows: list[tuple[str | None, ...]] = []
    first = True
    try:
        await stream.send_all(frame(bytes((Command.QUERY,)) + sql.encode(), 0))
        while True:  # one iteration per result (SERVER_MORE_RESULTS_EXISTS)
            pkt = await stream.read_packet()
            head = pkt.payload[:1]
            if head == b"\xff":
                conn.state = BackendState.IDLE
                raise parse_err(pkt.payload)
            if head == b"\x00":  # OK: no result set
                status = ok_status(pkt.payload)
            else:
                ncols = Reader(pkt.payload).lenenc_int()
                names = []
                for _ in range(ncols):
                    cd = Reader((await stream.read_packet()).payload)
                    for _skip in range(4):  # catalog, schema, table, org_table
                        cd.lenenc_bytes()
                    names.append(cd.lenenc_str())
                if not deprecate_eof:
                    await stream.read_packet()  # EOF after the column definitions
                result: list[tuple[str | None, ...]] = []
                while True:
                    body = (await stream.read_packet()).payload
                    if body[:1] == b"\xff":
                        conn.state = BackendState.IDLE
                        raise parse_err(body)
                    if body[:1] == b"\xfe" and len(body) < (0xFFFFFF if deprecate_eof else 9):
                        status = ok_status(body) if deprecate_eof else int.from_bytes(body[3:5], "little")
                        break
                    r = Reader(body)
                    values: list[str | None] = []
                    for _ in range(ncols):
                        if r.remaining and body[r.pos] == 0xFB:
                            r.skip(1)
                            values.append(None)
                        else:
                            values.append(r.lenenc_bytes().decode("utf-8", "replace"))
                    result.append(tuple(values))
                if first:
                    columns, rows = names, result
            first = False
            if not status & 0x0008:  # SERVER_MORE_RESULTS_EXISTS
                break
    except (ConnectionLost, MalformedPacket):
        conn.close()
        raise
    conn.status = status
    conn.state = BackendState.IDLE
    return columns, rows
