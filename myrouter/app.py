"""The proxy process: listeners, sessions, shared state, drain on shutdown."""

from __future__ import annotations

import itertools
import logging
import socket
import time

import trio

from .admin.core import Admin
from .backend.connection import BackendConnection, BackendState, open_backend, read_greeting
from .config import Config, UserConfig
from .net.stream import ConnectionLost, PacketStream
from .protocol.auth import BackendSecret, Credential, RSAKeyPair
from .protocol.errors import MalformedPacket, MySQLError
from .protocol.messages import parse_err
from .protocol.response import ResponseKind
from .routing.cache import QueryCache
from .routing.classifier import Classifier
from .routing.hostgroups import Hostgroups, Server
from .routing.rules import RuleSet, load_rules, rules_from_rows
from .frontend.session import SessionState
from .monitor import Monitor
from .stats.counters import Counters, ProxyStats
from .stats.digests import CommandCounters, DigestStats
from .stats.querylog import QueryLog

log = logging.getLogger("myrouter")

FALLBACK_SERVER_VERSION = "8.0.35-myrouter"


class Proxy:
    """Holds the runtime configuration and the live sessions of one proxy process."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.vars = config.mysql_variables
        self.counters = Counters()
        self.sessions: dict = {}
        self.backends: set[BackendConnection] = set()
        self.sha2_cache: dict = {}
        self.rsa = RSAKeyPair()
        self.server_version = self.vars.server_version
        self.draining = False
        self.listen_addresses: list[tuple[str, int]] = []
        self._ids = itertools.count(1)
        self._users: dict[str, UserConfig] = {}
        self._credentials: dict[str, Credential] = {}
        self._listeners: list[socket.socket] = []
        self._accept_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._all_closed = trio.Event()
        self._load_users(config)
        self.hostgroups = Hostgroups(config.mysql_servers, replication=config.mysql_replication_hostgroups)
        self.classifier = Classifier()
        self.rules = load_rules_for(config)
        self.query_log = QueryLog(self.vars.eventslog_filename) if self.vars.eventslog_filename else None
        self.user_sessions: dict[str, int] = {}
        self.query_cache = QueryCache(int(self.vars.items().get("query_cache_size_MB", 256)) * 1024 * 1024)
        # per-statement accounting (stats_mysql_query_digest, stats_mysql_commands_counters)
        self.digest_stats = DigestStats()
        self.command_counters = CommandCounters(_long_query_us(self.vars))
        # -- monitor (issue 6): health/read_only/lag checks, shunning, writer/reader discovery
        self.monitor = Monitor(self)
        self.admin = Admin(self)  # admin interface (6032) and /metrics, served by run()

    def _load_users(self, config: Config) -> None:
        users = {}
        creds = {}
        for u in config.mysql_users:
            if u.frontend and u.active:
                users[u.username] = u
                creds[u.username] = Credential.from_config(u.password)
        for name in list(self.sha2_cache):
            old = self._credentials.get(name)
            if old is None or creds.get(name) != old:
                del self.sha2_cache[name]  # password changed or user gone: no more fast auth
        self._users = users
        self._credentials = creds

    # -- lookups used by sessions -------------------------------------------

    def next_session_id(self) -> int:
        return next(self._ids)

    def user(self, name: str) -> UserConfig | None:
        return self._users.get(name)

    def lookup_credential(self, name: str) -> Credential | None:
        return self._credentials.get(name)

    def backend_opened(self, be: BackendConnection) -> None:
        self.backends.add(be)
        self.counters.backend_connections_created += 1
        if be.server_ref is not None:
            be.server_ref.connection_opened()

    def backend_closed(self, be: BackendConnection) -> None:
        if be in self.backends:
            self.backends.discard(be)
            srv = be.server_ref
            if srv is not None:
                srv.connection_closed()
                srv.bytes_sent += be.stream.bytes_out
                srv.bytes_received += be.stream.bytes_in

    def server_status_changed(self, server: Server, old_status: str) -> None:
        """Called after every change of a Server's ``status``: by the monitor (health and lag
        shunning, recovery, a server moved out of its hostgroup, which becomes OFFLINE_HARD),
        by the traffic-side rule (``Server.note_connect_error``) and by LOAD MYSQL SERVERS TO
        RUNTIME (including servers removed from the configuration, which become
        OFFLINE_HARD). ``server.status`` is the new status. Runs synchronously on the event
        loop: it must not block.
        """
        reason = f" ({server.shun_reason})" if server.shun_reason and server.status == "SHUNNED" else ""
        log.info("server %s:%d (hostgroup %d): %s -> %s%s", server.host, server.port, server.hostgroup, old_status,
                 server.status, reason)

    def mirror(self, session, payload: bytes, hostgroup: int) -> None:
        """Send a copy of a statement to ``hostgroup`` in the background; its result is dropped."""
        if self._nursery is None:
            return
        self.counters.mirrored += 1
        self._nursery.start_soon(self._mirror, session.username, session.secret, session.schema,
                                 session.backend_capabilities, payload, hostgroup)

    async def _mirror(self, username, secret, schema, caps, payload: bytes, hostgroup: int) -> None:
        be = None
        try:
            server = self.hostgroups.choose(hostgroup)
            be = await open_backend(server.address, username=username, secret=secret, database=schema,
                                    client_capabilities=caps, connect_timeout=self.vars.connect_timeout_server / 1000)
            be.server_ref = server
            self.backend_opened(be)
            with trio.fail_after(60):
                tracker = await be.run_command(payload, ResponseKind.RESULT)
            if tracker.error is not None:
                self.counters.mirror_errors += 1
        except (MySQLError, ConnectionLost, MalformedPacket, trio.TooSlowError) as exc:
            self.counters.mirror_errors += 1
            log.info("mirror to hostgroup %d failed: %s", hostgroup, exc)
        finally:
            if be is not None:
                self.backend_closed(be)
                await be.aclose()

    def retire_backend(self, be: BackendConnection) -> None:
        """Close a healthy backend connection politely (COM_QUIT) without blocking the caller."""
        if self._nursery is not None and not be.closed:
            self._nursery.start_soon(be.aclose)
        else:
            be.close()

    async def kill_session_work(self, target, *, query_only: bool) -> None:
        """KILL [QUERY] on behalf of a client: stop the backend work of ``target``."""
        for be in list(target.backends.values()):
            if be.closed or (query_only and be.state is not BackendState.ACTIVE):
                continue
            await self._kill_backend_thread(be, target.username, target.secret, query_only)
        if not query_only:
            target.kill()

    async def kill_backend_query(self, be: BackendConnection, username: str, secret: BackendSecret) -> None:
        """KILL QUERY for a statement that ran past its timeout; failures are logged, not raised."""
        try:
            await self._kill_backend_thread(be, username, secret, True)
        except MySQLError as exc:
            log.warning("could not kill a timed-out statement on %s: %s", be.server, exc)

    async def _kill_backend_thread(self, be: BackendConnection, username: str, secret: BackendSecret,
                                   query_only: bool) -> None:
        what = "QUERY" if query_only else "CONNECTION"
        try:
            killer = await open_backend(
                be.server, username=username, secret=secret, database=None, client_capabilities=0,
                connect_timeout=self.vars.connect_timeout_server / 1000,
            )
        except MySQLError as exc:
            log.warning("KILL %s %d on %s: cannot connect: %s", what, be.thread_id, be.server, exc)
            raise
        try:
            with trio.fail_after(self.vars.connect_timeout_server / 1000):
                tracker = await killer.simple_query(f"KILL {what} {be.thread_id}")
            if tracker.error is not None:
                err = parse_err(tracker.error)
                if err.code != 1094:  # the thread already ended: nothing left to kill
                    raise err
        except (ConnectionLost, MalformedPacket, trio.TooSlowError) as exc:
            raise MySQLError(1158, f"KILL {what} on backend {be.server} failed: {exc}", "08S01") from exc
        finally:
            await killer.aclose()

    # -- serving ------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled or drained; ``task_status.started(self)`` once listening."""
        if self.server_version == "auto":
            self.server_version = await self._discover_server_version()
        addresses = self.vars.listen_addresses()
        for host, port in addresses:
            self._listeners.append(_listen(host, port))
        self.listen_addresses = [s.getsockname()[:2] for s in self._listeners]
        try:
            self.admin.bind()  # admin interface and /metrics: an address in use is an OSError here
        except OSError:
            for lsock in self._listeners:
                _close_socket(lsock)
            raise
        log.info("myrouter listening for MySQL clients on %s (server version %s)",
                 ", ".join(f"{h}:{p}" for h, p in self.listen_addresses), self.server_version)
        try:
            async with trio.open_nursery() as services:  # admin interface and /metrics, the monitor
                await services.start(self.admin.serve)
                await services.start(self.monitor.run)  # monitor (issue 6)
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    with trio.CancelScope() as accept_scope:
                        self._accept_scope = accept_scope
                        async with trio.open_nursery() as accepters:
                            for lsock in self._listeners:
                                accepters.start_soon(self._accept_loop, lsock, nursery)
                            accepters.start_soon(self._reap_idle_sessions)
                            task_status.started(self)
                services.cancel_scope.cancel()
        finally:
            self.admin.close()
            for lsock in self._listeners:
                _close_socket(lsock)
            for be in list(self.backends):
                be.close()
            self.backends.clear()
            if self.query_log is not None:
                self.query_log.close()

    async def _discover_server_version(self) -> str:
        """Copy the version string of the first reachable backend (its greeting needs no login)."""
        for s in self.config.mysql_servers:
            try:
                greeting = await read_greeting(s.hostname, s.port, timeout=self.vars.connect_timeout_server / 1000)
            except (ConnectionLost, MalformedPacket, trio.TooSlowError, OSError) as exc:
                log.info("server_version=auto: %s:%d not usable (%s)", s.hostname, s.port, exc)
                continue
            return greeting.server_version
        log.warning("server_version=auto: no backend reachable; advertising %s", FALLBACK_SERVER_VERSION)
        return FALLBACK_SERVER_VERSION

    async def _reap_idle_sessions(self) -> None:
        """End sessions idle for longer than wait_timeout (checked once a second, no per-statement timer)."""
        while True:
            limit = self.vars.wait_timeout / 1000
            await trio.sleep(min(1.0, limit))
            now = time.monotonic()
            for s in list(self.sessions.values()):
                if s.state is SessionState.IDLE and now - s.idle_since > limit and s.cancel_if_idle():
                    log.info("session %d: idle for more than wait_timeout=%dms; closing", s.id,
                             self.vars.wait_timeout)

    async def _accept_loop(self, lsock: socket.socket, nursery: trio.Nursery) -> None:
        while True:
            try:
                conn, addr = lsock.accept()
            except BlockingIOError:
                await trio.lowlevel.wait_readable(lsock)
                continue
            except OSError as exc:
                log.error("accept() failed: %s; retrying in 100 ms", exc)
                await trio.sleep(0.1)
                continue
            nursery.start_soon(self._handle_client, conn, addr)

    async def _handle_client(self, conn: socket.socket, addr) -> None:
        from .frontend.session import ClientSession

        stream = PacketStream(conn, max_payload=self.vars.max_allowed_packet)
        session = ClientSession(self, stream, addr)
        self.sessions[session.id] = session
        self.counters.client_connections_created += 1
        try:
            with trio.CancelScope() as scope:
                session.scope = scope
                await session.run()
        except Exception:
            log.exception("session %d: unexpected error; connection closed", session.id)
        finally:
            self.sessions.pop(session.id, None)
            if session.counted_user:
                self.user_sessions[session.username] -= 1
            if self.draining and not self.sessions:
                self._all_closed.set()

    async def drain_and_stop(self, timeout: float) -> None:
        """Stop accepting, let running statements finish (bounded), then end every session."""
        if self.draining:
            return
        self.draining = True
        started = time.monotonic()
        if self._accept_scope is not None:
            self._accept_scope.cancel()
        for lsock in self._listeners:
            _close_socket(lsock)
        busy = [s for s in self.sessions.values() if s.state is not SessionState.IDLE]
        log.info("draining: %d sessions (%d running a statement), timeout %.1fs", len(self.sessions), len(busy),
                 timeout)
        for s in list(self.sessions.values()):
            s.cancel_if_idle()
        if self.sessions:
            with trio.move_on_after(timeout):
                await self._all_closed.wait()
        left = list(self.sessions.values())
        for s in left:
            s.kill()
        log.info("drain finished in %.2fs; %d sessions cut off", time.monotonic() - started, len(left))
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def statistics(self) -> ProxyStats:
        c = self.counters
        tasks = 0
        if self._nursery is not None:
            tasks = len(self._nursery.child_tasks)
        return ProxyStats(
            client_connections_connected=len(self.sessions),
            client_connections_created=c.client_connections_created,
            client_connections_aborted=c.client_connections_aborted,
            access_denied=c.access_denied,
            questions=c.questions,
            backend_connections_connected=len(self.backends),
            backend_connections_created=c.backend_connections_created,
            backend_errors=c.backend_errors,
            sessions_busy=sum(1 for s in self.sessions.values() if s.state is not SessionState.IDLE),
            tasks=tasks,
        )

    # -- admin / runtime configuration -----------------------------------------
    # Used by the admin interface (myrouter/admin). A change is validated before
    # it gets here and is applied in one synchronous step: a session sees the old
    # configuration or the new one, never a mix, and keeps its connection.

    def apply_runtime(self, config: Config, rules: RuleSet | None = None) -> list[Server]:
        """Make ``config`` the running configuration (and ``rules`` the query rules, if given).

        ``config`` has been validated (myrouter.admin.validate). Servers that stay keep their
        live Server objects and counters; their weight, status, limits and comment are updated
        in place. Returns the Server objects that left the configuration: their open
        connections are the caller's to release. Raises MySQLError, before changing anything,
        if the new query log file cannot be opened.
        """
        old = self.config
        new_vars = config.mysql_variables
        query_log = self.query_log
        if new_vars.eventslog_filename != self.vars.eventslog_filename and new_vars.eventslog_filename:
            try:
                query_log = QueryLog(new_vars.eventslog_filename)
            except OSError as exc:
                raise MySQLError(1105, f"cannot open mysql-eventslog_filename {new_vars.eventslog_filename!r}: "
                                 f"{exc.strerror or exc}", "HY000") from exc
        # -- from here on nothing can fail: swap ---------------------------------
        retired: list[Server] = []
        if (config.mysql_servers != old.mysql_servers
                or config.mysql_replication_hostgroups != old.mysql_replication_hostgroups):
            # monitor (issue 6): keep live servers, the monitor's writer/reader moves and shuns
            before = {id(s): s.status for s in self.hostgroups.servers()}
            self.hostgroups, retired = self.monitor.reconcile(config)
            for s in self.hostgroups.servers():
                old_status = before.get(id(s))
                if old_status is not None and old_status != s.status:
                    self.server_status_changed(s, old_status)
            for s in retired:
                old_status = s.status
                if s.set_admin_status("OFFLINE_HARD", notify=False) is not None:
                    self.server_status_changed(s, old_status)
        if config.mysql_users != old.mysql_users:
            self._load_users(config)
        if new_vars != self.vars:
            if new_vars.eventslog_filename != self.vars.eventslog_filename:
                if self.query_log is not None:
                    self.query_log.close()
                self.query_log = query_log if new_vars.eventslog_filename else None
            if new_vars.server_version != self.vars.server_version and new_vars.server_version != "auto":
                self.server_version = new_vars.server_version
            self.query_cache.max_bytes = int(new_vars.items().get("query_cache_size_MB", 256)) * 1024 * 1024
            self.command_counters.slow_query_us = _long_query_us(new_vars)
            if new_vars.interfaces != self.vars.interfaces:
                log.warning("mysql-interfaces changed to %r: takes effect when myrouter restarts", new_vars.interfaces)
            self.vars = new_vars
        if rules is not None:
            self.rules = rules
        self.config = config
        self.monitor.configure()  # monitor (issue 6): new variables, credentials, intervals
        return retired


def _long_query_us(v) -> int:
    return int(v.items().get("long_query_time", 1000)) * 1000


def load_rules_for(config: Config):
    """The query rules of a config: ``[[mysql_query_rules]]`` of the config file, then ``rules_dir/*.toml``."""
    known = set(config.hostgroups())
    rules_dir = config.rules_dir
    if config.query_rules_raw:
        rows = [dict(raw) for _, _, raw in config.query_rules_raw]
        if rules_dir.is_dir():
            rows += [r.to_row() for r in load_rules(rules_dir, known).rules()]
        return rules_from_rows(rows, str(config.path), known)
    if rules_dir.is_dir():
        return load_rules(rules_dir, known)
    return rules_from_rows([], str(config.path), known)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(4096)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _close_socket(sock: socket.socket) -> None:
    if sock.fileno() >= 0:
        trio.lowlevel.notify_closing(sock)
        sock.close()
