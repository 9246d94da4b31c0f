"""The proxy process: listeners, sessions, shared state, drain on shutdown."""

from __future__ import annotations

import itertools
import logging
import socket
import ssl
import time

import trio

from .admin.core import Admin
from .backend.connection import BackendConnection, BackendState, backend_tls_context, open_backend, read_greeting
from .backend.gtid import parse_gtids
from .backend.pins import PinCounters
from .backend.pool import Pools, PoolSettings
from .backend.stmts import StmtRegistry
from .cluster.node import ClusterNode
from .config import Config, UserConfig
from .net.handshakes import HandshakeSlots
from .net.keepalive import apply_keepalive
from .net.listen import accept_loop, close_listener, listen
from .net import tls
from .net.stream import ConnectionLost, PacketStream
from .protocol.auth import BackendSecret, Credential, RSAKeyPair
from .protocol.errors import MalformedPacket, MySQLError
from .protocol.messages import parse_err
from .protocol.response import ResponseKind
from .routing.cache import QueryCache
from .routing.classifier import Classifier
from .routing.digest import Digester
from .routing.hostgroups import Hostgroups, Server
from .routing.rules import RuleSet
from .runtime.config import load_rules_for
from .frontend.session import ClientSession, SessionState
from .monitor import Monitor
from .stats.counters import Counters, ProxyStats
from .stats.digests import CommandCounters, DigestStats
from .stats.auditlog import AuditLog
from .stats.audittrail import AuditTrail
from .stats.logsafe import LogThrottle
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
        self.handshakes = HandshakeSlots()  # sessions not logged in yet (frontend.session._handshake)
        self.log_throttle = LogThrottle()  # process-log lines that clients can repeat at will
        self.backends: set[BackendConnection] = set()
        self.sha2_cache: dict = {}
        self.rsa = RSAKeyPair()
        self.tls_context: ssl.SSLContext | None = None  # the client port's TLS (load_tls, at start)
        try:
            self.backend_tls = _backend_tls(self.vars)  # for servers with use_ssl (mysql-ssl_p2s_*)
        except tls.TLSSetupError as exc:
            raise config.error_at(str(exc), "mysql_variables", _p2s_culprit(self.vars)) from exc
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
        # -- structured logs (myrouter/stats/jsonlog.py): query log and audit log ------
        self.query_log = _open_log(QueryLog, "eventslog", self.vars)
        self.audit_log = _open_log(AuditLog, "auditlog", self.vars)
        self.audit = AuditTrail(self)  # the session's audit hooks
        # -- end structured logs --
        self.user_sessions: dict[str, int] = {}
        self.logged_in_sessions = 0  # sessions counted in user_sessions: what max_connections bounds
        self.query_cache = QueryCache(int(self.vars.items().get("query_cache_size_MB", 256)) * 1024 * 1024)
        # per-statement accounting (stats_mysql_query_digest, stats_mysql_commands_counters)
        self.digest_stats = DigestStats()
        self.command_counters = CommandCounters(_long_query_us(self.vars))
        self.digester = Digester.from_vars(self.vars)  # mysql-query_digests_* limits
        self._apply_stats_switches(self.vars)
        # backend connection pools, shared by all sessions; why sessions keep their connections
        self.pools = Pools(self, PoolSettings.from_vars(self.vars))
        self.pin_counters = PinCounters()
        self.stmt_registry = StmtRegistry(self.vars.max_stmts_cache)
        # character sets and collations of the servers, learned from the first connection
        self.collations: dict[int, tuple[str, str]] = {}  # id -> (character set, collation)
        self.collation_charset: dict[str, str] = {}  # collation -> character set
        self.default_collation: dict[str, str] = {}  # character set -> its default collation
        self.collations_unavailable = False  # reading them failed once: not tried again
        # causal reads: the newest GTID written through the proxy per replication domain, and per
        # replica what it is known to have applied (or until when it is known to lag)
        self.written_gtids: dict[int, tuple[int, int]] = {}  # domain -> (server_id, seq)
        self.gtid_applied: dict[Server, dict[int, int]] = {}
        self.gtid_lagging: dict[Server, float] = {}
        # -- monitor (issue 6): health/read_only/lag checks, shunning, writer/reader discovery
        self.monitor = Monitor(self)
        self.admin = Admin(self)  # admin interface (6032) and /metrics, served by run()
        # [cluster]: configuration shared with other instances through etcd (myrouter/cluster/)
        self.cluster = ClusterNode(self, config.cluster) if config.cluster is not None else None

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

    def _apply_stats_switches(self, v) -> None:
        """mysql-query_digests and mysql-commands_stats: whether statements are counted per digest
        and per command."""
        self.digest_stats.enabled = v.query_digests
        self.command_counters.enabled = v.commands_stats

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

    def backend_connect_failed(self, server: Server, error: MySQLError) -> None:
        """Opening a connection to ``server`` for traffic failed (the pool has counted it)."""
        self.counters.backend_errors += 1
        log.warning("cannot open a connection to %s (hostgroup %d): %s", server.address, server.hostgroup,
                    error.message)
        self.log_backend_error(server, server.hostgroup, error, during="connect")

    async def load_collations(self, be: BackendConnection) -> None:
        """Learn the servers' character sets and collations once (SET NAMES answered by the proxy)."""
        rows = await be.query_rows(
            "SELECT ID, CHARACTER_SET_NAME, COLLATION_NAME, IS_DEFAULT FROM information_schema.COLLATIONS")
        for row in rows:
            if len(row) != 4:
                raise MySQLError(1105, f"unexpected answer to the collations query from {be.server}: "
                                       f"{len(row)} columns instead of 4", "HY000")
            cid, cs, coll, default = row
            if cs is None or coll is None:
                continue
            if cid is not None:
                self.collations[int(cid)] = (cs, coll)
            self.collation_charset[coll.lower()] = cs
            if (default or "").lower() == "yes":
                self.default_collation[cs.lower()] = coll

    async def charset_names(self, be: BackendConnection, collation_id: int) -> tuple[str, str]:
        """(character set, collation) of a handshake collation id."""
        names = self.collations.get(collation_id)
        if names is None:
            await self.load_collations(be)
            names = self.collations.get(collation_id)
            if names is None:
                raise MySQLError(1273, f"Unknown collation id {collation_id} on {be.server}", "HY000")
        return names

    def note_written_gtid(self, gtid: str) -> None:
        """A session's write committed with ``gtid`` (MariaDB ``domain-server-seq``)."""
        for domain, (server_id, seq) in parse_gtids(gtid).items():
            old = self.written_gtids.get(domain)
            if old is None or seq > old[1]:
                self.written_gtids[domain] = (server_id, seq)

    def global_gtid(self) -> str:
        """Every domain's newest GTID written through the proxy, as MASTER_GTID_WAIT takes it."""
        return ",".join(f"{d}-{s}-{n}" for d, (s, n) in sorted(self.written_gtids.items()))

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
        if server.status != "ONLINE":
            # no new traffic: its idle pooled connections go now (busy ones when given back;
            # OFFLINE_HARD sessions are ended by the admin's sweeper)
            self.pools.close_idle(server)
            self.gtid_applied.pop(server, None)

    def mirror(self, session, payload: bytes, hostgroup: int) -> None:
        """Send a copy of a statement to ``hostgroup`` in the background; its result is dropped."""
        if self._nursery is None:
            return
        self.counters.mirrored += 1
        self._nursery.start_soon(self._mirror, session.username, session.secret, session.schema,
                                 session.backend_capabilities, payload, hostgroup)

    async def _mirror(self, username, secret, schema, caps, payload: bytes, hostgroup: int) -> None:
        be = None
        server = None
        try:
            server = self.hostgroups.choose(hostgroup)
            be = await open_backend(server.address, username=username, secret=secret, database=schema,
                                    client_capabilities=caps, connect_timeout=self.vars.connect_timeout_server / 1000,
                                    tls=self.backend_tls)
            be.server_ref = server
            self.backend_opened(be)
            with trio.fail_after(60):
                tracker = await be.run_command(payload, ResponseKind.RESULT)
            if tracker.error is not None:
                self.counters.mirror_errors += 1
        except (MySQLError, ConnectionLost, MalformedPacket, trio.TooSlowError) as exc:
            self.counters.mirror_errors += 1
            log.info("mirror to hostgroup %d failed: %s", hostgroup, exc)
            self.log_backend_error(server if server is not None else "?", hostgroup, exc, during="mirror")
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
                connect_timeout=self.vars.connect_timeout_server / 1000, tls=self.backend_tls,
            )
        except MySQLError as exc:
            log.warning("KILL %s %d on %s: cannot connect: %s", what, be.thread_id, be.server, exc)
            self.log_backend_error(be.server, be.server.hostgroup, exc, during="kill")
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

    def load_tls(self) -> None:
        """(Re)read the client port's certificate files from datadir, generating missing ones
        (``PROXYSQL RELOAD TLS``); new connections use them. Raises ``tls.TLSSetupError``."""
        self.tls_context = tls.server_context(tls.load_or_create(self.config.datadir))

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled or drained; ``task_status.started(self)`` once listening."""
        if self.server_version == "auto":
            self.server_version = await self._discover_server_version()
        if self.vars.have_ssl:
            self.load_tls()  # bad certificate files stop the start here, with a clear TLSSetupError
        addresses = self.vars.listen_addresses()
        for host, port in addresses:
            self._listeners.append(listen(host, port))
        self.listen_addresses = [s.getsockname()[:2] for s in self._listeners]
        try:
            self.admin.bind()  # admin interface and /metrics: an address in use is an OSError here
        except OSError:
            for lsock in self._listeners:
                close_listener(lsock)
            raise
        log.info("myrouter listening for MySQL clients on %s (server version %s)",
                 ", ".join(f"{h}:{p}" for h, p in self.listen_addresses), self.server_version)
        try:
            async with trio.open_nursery() as services:  # admin interface and /metrics, the monitor
                await services.start(self.admin.serve)
                await services.start(self.pools.run)
                await services.start(self.monitor.run)  # monitor (issue 6)
                if self.cluster is not None:  # takes the cluster's configuration before clients come
                    await services.start(self.cluster.run)
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    with trio.CancelScope() as accept_scope:
                        self._accept_scope = accept_scope
                        async with trio.open_nursery() as accepters:
                            for lsock in self._listeners:
                                accepters.start_soon(accept_loop, lsock, nursery, self._handle_client, "client port")
                            accepters.start_soon(self._reap_idle_sessions)
                            task_status.started(self)
                services.cancel_scope.cancel()
        finally:
            self.admin.close()
            for lsock in self._listeners:
                close_listener(lsock)
            for be in list(self.backends):
                be.close()
            self.backends.clear()
            # structured logs: closed last, after every session has written its Close event
            for writer in (self.query_log, self.audit_log):
                if writer is not None:
                    writer.close()

    async def _discover_server_version(self) -> str:
        """Copy the version string of the first reachable backend (its greeting needs no login)."""
        for s in self.config.mysql_servers:
            try:
                greeting = await read_greeting(s.hostname, s.port, timeout=self.vars.connect_timeout_server / 1000)
            except (ConnectionLost, MalformedPacket, trio.TooSlowError, OSError) as exc:
                log.info("server_version=auto: %s:%d not usable (%s)", s.hostname, s.port, exc)
                self.log_backend_error(f"{s.hostname}:{s.port}", s.hostgroup_id, exc, during="greeting")
                continue
            return greeting.server_version
        log.warning("server_version=auto: no backend reachable; advertising %s", FALLBACK_SERVER_VERSION)
        return FALLBACK_SERVER_VERSION

    async def _reap_idle_sessions(self) -> None:
        """End sessions idle for longer than wait_timeout, the proxy's or the session's own if shorter
        (checked once a second, no per-statement timer)."""
        while True:
            await trio.sleep(min(1.0, self.vars.wait_timeout / 1000))
            self.log_throttle.flush()  # say how many repeated lines were left out
            now = time.monotonic()
            v = self.vars
            trx_idle = v.max_transaction_idle_time / 1000
            trx_max = v.max_transaction_time / 1000
            for s in list(self.sessions.values()):
                if s.state is SessionState.IDLE and now - s.idle_since > s.wait_timeout_ms() / 1000 \
                        and s.cancel_if_idle():
                    log.info("session %d: idle for more than wait_timeout=%dms; closing", s.id, s.wait_timeout_ms())
                elif s.trx_started and s.state is SessionState.IDLE and trx_idle and now - s.idle_since > trx_idle:
                    log.warning("session %d (user %r from %s): transaction idle for more than "
                                "max_transaction_idle_time=%dms; ending the session (the transaction rolls back)",
                                s.id, s.username, s.client_addr, v.max_transaction_idle_time)
                    self.counters.transactions_ended += 1
                    s.kill()
                elif s.trx_started and now - s.trx_started > trx_max:
                    log.warning("session %d (user %r from %s): transaction open for more than "
                                "max_transaction_time=%dms; ending the session (the transaction rolls back)",
                                s.id, s.username, s.client_addr, v.max_transaction_time)
                    self.counters.transactions_ended += 1
                    s.kill()

    async def _handle_client(self, conn: socket.socket, addr) -> None:
        try:
            apply_keepalive(conn, self.vars.use_tcp_keepalive, self.vars.tcp_keepalive_time)
        except OSError as exc:  # the client is already gone: the session finds out when it reads
            log.debug("client %s: cannot set TCP keepalive: %s", addr, exc)
        stream = PacketStream(conn, max_payload=self.vars.max_allowed_packet)
        session = ClientSession(self, stream, addr)
        self.sessions[session.id] = session
        self.counters.client_connections_created += 1
        scope = None
        crashed = False
        try:
            with trio.CancelScope() as scope:
                session.scope = scope
                await session.run()
        except Exception:
            crashed = True
            log.exception("session %d: unexpected error; connection closed", session.id)
        finally:
            # structured logs: Quit/Close events
            self.audit.session_end(session, cancelled=scope is not None and scope.cancelled_caught, crashed=crashed)
            self.sessions.pop(session.id, None)
            if session.counted_user:
                self.user_sessions[session.username] -= 1
                self.logged_in_sessions -= 1
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
            close_listener(lsock)
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
        pools = self.pools.statistics()
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
            backend_connections_idle=sum(p.free for p in pools),
            backend_connections_in_use=sum(p.used for p in pools),
            sessions_waiting_for_connection=self.pools.waiting(),
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
        if a new query log or audit log file cannot be opened.
        """
        old = self.config
        new_vars = config.mysql_variables
        # structured logs: open the new files first; one that cannot be opened refuses the whole change
        opened: dict[str, QueryLog | AuditLog | None] = {}
        try:
            for prefix, cls in (("eventslog", QueryLog), ("auditlog", AuditLog)):
                if getattr(new_vars, prefix + "_filename") != getattr(self.vars, prefix + "_filename"):
                    opened[prefix] = _open_log(cls, prefix, new_vars)
        except OSError as exc:
            for writer in opened.values():
                if writer is not None:
                    writer.close()
            raise MySQLError(1105, exc.strerror or str(exc), "HY000") from exc
        # TLS to servers: a new context from the mysql-ssl_p2s_* variables; one that cannot be built
        # refuses the whole change (as a log file that cannot be opened)
        p2s = ("ssl_p2s_ca", "ssl_p2s_capath", "ssl_p2s_crl", "ssl_p2s_crlpath", "ssl_p2s_cert", "ssl_p2s_key",
               "ssl_p2s_cipher")
        backend_tls = None
        if any(getattr(new_vars, k) != getattr(self.vars, k) for k in p2s):
            try:
                backend_tls = _backend_tls(new_vars)
            except tls.TLSSetupError as exc:
                for writer in opened.values():
                    if writer is not None:
                        writer.close()
                raise MySQLError(1105, str(exc), "HY000") from exc
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
            # structured logs: swap the files that changed, resize the others
            if "eventslog" in opened:
                if self.query_log is not None:
                    self.query_log.close()
                self.query_log = opened["eventslog"]  # type: ignore[assignment]
            if "auditlog" in opened:
                if self.audit_log is not None:
                    self.audit_log.close()
                self.audit_log = opened["auditlog"]  # type: ignore[assignment]
            if self.query_log is not None:
                self.query_log.max_bytes = new_vars.eventslog_filesize
            if self.audit_log is not None:
                self.audit_log.max_bytes = new_vars.auditlog_filesize
            if new_vars.server_version != self.vars.server_version and new_vars.server_version != "auto":
                self.server_version = new_vars.server_version
            self.query_cache.max_bytes = int(new_vars.items().get("query_cache_size_MB", 256)) * 1024 * 1024
            self.command_counters.slow_query_us = _long_query_us(new_vars)
            self.digester = Digester.from_vars(new_vars)
            self._apply_stats_switches(new_vars)
            self.pools.settings = PoolSettings.from_vars(new_vars)
            self.stmt_registry.max_entries = new_vars.max_stmts_cache
            if backend_tls is not None:
                self.backend_tls = backend_tls  # for new backend connections
            if new_vars.have_ssl and self.tls_context is None:
                try:
                    self.load_tls()
                except tls.TLSSetupError as exc:
                    log.error("mysql-have_ssl is on but TLS cannot be offered: %s", exc)
            if new_vars.interfaces != self.vars.interfaces:
                log.warning("mysql-interfaces changed to %r: takes effect when myrouter restarts", new_vars.interfaces)
            self.vars = new_vars
        if rules is not None:
            self.rules = rules
        self.config = config
        for server in retired:
            self.pools.forget_server(server)
        self.monitor.configure()  # monitor (issue 6): new variables, credentials, intervals
        return retired


    # -- structured logs (myrouter/stats/): audit hooks live in self.audit (AuditTrail) --

    def log_backend_error(self, server, hostgroup: int, error: BaseException, *, session=None,
                          during: str = "connect") -> None:
        """A backend connection failed: could not connect or log in (``during="connect"``), or
        broke while in use ("query"), or a side connection failed ("kill", "mirror", "greeting").

        One ``MySQL_Backend_Error`` line in the audit log (nothing when it is off). ``server``:
        a ServerAddress, a Server or "host:port"; ``session``: the client session it was for,
        if any. Callers keep their own process-log message and counters. Called from this
        module (mirror, KILL, server_version=auto); the session/pool is to call it where it
        opens backend connections (``_get_backend``) and where it loses one (``_lost_backend``).
        """
        self.audit.backend_error(server, hostgroup, error, session=session, during=during)

    def flush_logs(self) -> list[str]:
        """``PROXYSQL FLUSH LOGS``: rotate the query log and the audit log. OSError if one fails."""
        rotated = []
        for writer in (self.query_log, self.audit_log):
            if writer is not None:
                name = writer.rotate()
                if name is not None:
                    rotated.append(name)
        return rotated


def _open_log(cls, prefix: str, v) -> QueryLog | AuditLog | None:
    """The ``mysql-<prefix>_filename`` log of ``v`` (None when empty); OSError naming the variable."""
    filename = getattr(v, prefix + "_filename")
    if not filename:
        return None
    try:
        return cls(filename, getattr(v, prefix + "_filesize"))
    except OSError as exc:
        raise OSError(exc.errno, f"cannot open mysql-{prefix}_filename {filename!r}: {exc.strerror or exc}") from exc


def _long_query_us(v) -> int:
    return int(v.items().get("long_query_time", 1000)) * 1000


def _p2s_culprit(v) -> str:
    """The mysql-ssl_p2s_* variable that keeps the backend TLS context from loading."""
    for name, kwargs in (("ssl_p2s_ca", {"ca": v.ssl_p2s_ca}),
                         ("ssl_p2s_cert", {"cert": v.ssl_p2s_cert}),
                         ("ssl_p2s_key", {"cert": v.ssl_p2s_cert, "key": v.ssl_p2s_key})):
        try:
            backend_tls_context(**kwargs)
        except (OSError, ssl.SSLError, ValueError):
            return name
    return "ssl_p2s_cipher"


def _backend_tls(v) -> ssl.SSLContext:
    """The context for TLS to servers with use_ssl, from the mysql-ssl_p2s_* variables."""
    try:
        return backend_tls_context(v.ssl_p2s_ca, v.ssl_p2s_cert, v.ssl_p2s_key, v.ssl_p2s_cipher,
                                   capath=v.ssl_p2s_capath, crl=v.ssl_p2s_crl, crlpath=v.ssl_p2s_crlpath)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise tls.TLSSetupError(f"mysql-ssl_p2s_*: {exc}") from exc
