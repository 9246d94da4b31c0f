"""The proxy process: constructs the runtime components, wires them, serves (listeners, sessions,
background services) and drains on shutdown.

The shared state lives in the components of :mod:`myrouter.runtime` (topology, sessions, stats,
running configuration, logs, side connections) and of :mod:`myrouter.backend` (pools, open
connections, character sets); ``Proxy`` keeps only the caches it hands to the sessions (classifier,
query cache, prepared statements) and the client port's TLS. The sessions (``frontend``) never see
the ``Proxy``: each gets the one :class:`~myrouter.runtime.services.SessionServices` built here,
which holds the components they use and plain copies, refreshed after each runtime change, of what
they read on every statement. The admin interface still works on the ``Proxy``.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from typing import Any, NamedTuple

import trio

from .admin.core import Admin
from .admin.runtime import release_connections
from .admin.server import SWEEP_INTERVAL
from .backend.charsets import Charsets
from .backend.connection import read_greeting
from .backend.opened import OpenBackends
from .backend.pool import Pools, PoolSettings
from .backend.stmts import StmtRegistry
from .cluster.node import ClusterNode
from .config import Config
from .engine.hostloop import current_host_loop
from .frontend.session import ClientSession, SessionState
from .monitor import Monitor
from .net import tls
from .net.keepalive import apply_keepalive
from .net.listen import accept_loop, close_listener, listen
from .net.stream import ConnectionLost, PacketStream
from .protocol import kernels
from .protocol.auth import RSAKeyPair
from .protocol.errors import MalformedPacket, MySQLError
from .routing.cache import QueryCache
from .routing.classifier import Classifier
from .routing.hostgroups import Server
from .routing.rules import RuleSet
from .runtime.config import RuntimeConfig, load_rules_for
from .runtime.logs import Logs
from .runtime.role import SINGLE, Peers, ProcessRole
from .runtime.services import SessionServices
from .runtime.sessions import SessionRegistry
from .runtime.side import SideConnections
from .runtime.stats import Stats
from .runtime.topology import SharedGtids, Topology
from .stats.auditlog import AuditLog
from .stats.audittrail import AuditTrail
from .stats.counters import ProxyStats

__all__ = ["Proxy", "load_rules_for"]

log = logging.getLogger("myrouter")

FALLBACK_SERVER_VERSION = "8.0.35-myrouter"


def _view(name: str) -> property:
    """A read-only view of the sessions' services' ``name`` (``SessionServices.refresh_views``)."""
    return property(lambda self: getattr(self.services, name), doc=f"``SessionServices.{name}``")


class PreparedRuntime(NamedTuple):
    """A configuration whose fallible parts are done (``Proxy.prepare_runtime``)."""

    config: Config
    opened: Any  # the log files it opens (Logs.prepare)
    backend_tls: ssl.SSLContext


class Proxy:
    """One proxy process: its runtime components, wired; the listeners and the session nursery."""

    def __init__(self, config: Config, role: ProcessRole = SINGLE, rules: RuleSet | None = None) -> None:
        # which part of the instance this process is (runtime/role.py): the single process, the
        # supervisor of worker processes (myrouter/workers), or one of them
        self.role = role
        # -- the components (myrouter/runtime, myrouter/backend), each owning one thing ------
        self.runtime_config = rc = RuntimeConfig(config, rules)  # Config, rules, vars, users, TLS to servers
        self.topology = Topology(config)  # hostgroups, server statuses, replication (GTIDs), retired servers
        self.session_registry = reg = SessionRegistry(role)  # ids, live sessions, per-user counts
        self.stats = Stats(rc.vars)  # counters, digest and command stats, pin counters
        self.logs = Logs(rc.vars, rotates=role.kind != "worker")  # query log, audit log, process-log throttle
        self.open_backends = OpenBackends(on_opened=self._count_backend_created)
        self.charsets = Charsets()  # the servers' character sets, learned from the first connection
        self.pools = Pools(PoolSettings.from_vars(rc.vars), self.topology, self.open_backends, self.charsets,
                           self.stats.counters, tls=lambda: rc.backend_tls, on_connect_failed=self.backend_connect_failed)
        self.topology.on_status_change(self._server_status_changed)
        # mirrored statements and KILL: short-lived backend connections outside the pools
        self.side = SideConnections(rc, self.topology, self.open_backends, self.stats.counters, self.log_backend_error)
        self.classifier = Classifier()
        self.query_cache = QueryCache(int(rc.vars.items().get("query_cache_size_MB", 256)) * 1024 * 1024)
        self.stmt_registry = StmtRegistry(rc.vars.max_stmts_cache)
        self.audit = AuditTrail(self.logs, rc, reg)  # the session's audit hooks (structured logs)
        self.rsa = RSAKeyPair()
        self.listen_addresses: list[tuple[str, int]] = []
        self.client_addresses: list[tuple[str, int]] | None = None  # a worker's: the ports the supervisor holds
        self._listeners: list[socket.socket] = []
        self._accept_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        # -- shortcuts to parts of the components, for the admin interface and the tests --
        self.counters = self.stats.counters
        self.digest_stats = self.stats.digest_stats
        self.command_counters = self.stats.command_counters
        self.pin_counters = self.stats.pin_counters
        self.sessions = reg.sessions
        self.user_sessions = reg.user_sessions
        self.handshakes = reg.handshakes
        self.next_session_id = reg.next_session_id
        self.log_throttle = self.logs.log_throttle
        self.sha2_cache = rc.sha2_cache
        self.user = rc.user
        self.lookup_credential = rc.lookup_credential
        self.gtid_applied = self.topology.gtid_applied
        self.gtid_lagging = self.topology.gtid_lagging
        self.note_written_gtid = self.topology.note_written_gtid
        self.global_gtid = self.topology.global_gtid
        self.backends = self.open_backends.connections
        self.collations = self.charsets.collations
        self.collation_charset = self.charsets.collation_charset
        self.default_collation = self.charsets.default_collation
        self.charset_names = self.charsets.names
        self.mirror = self.side.mirror
        self.kill_session_work = self.side.kill_session_work
        self.kill_backend_query = self.side.kill_backend_query
        # the engine's host loop when the process runs one (`myrouter serve`): plain sessions park
        # on its data plane (frontend/dataplane.py); None under a bare trio.run: Trio serves all
        self.host_loop = current_host_loop()
        # -- what every client session gets: the components it uses, not the Proxy ---------
        self.services = SessionServices(
            runtime_config=rc, topology=self.topology, registry=reg, stats=self.stats, logs=self.logs,
            side=self.side, pools=self.pools, charsets=self.charsets, classifier=self.classifier,
            query_cache=self.query_cache, stmt_registry=self.stmt_registry, audit=self.audit, rsa=self.rsa,
            host_loop=self.host_loop)
        self._refresh_views()
        # -- the services above the sessions --------------------------------------------
        self.monitor = Monitor(self.topology, rc)  # health/read_only/lag checks, shunning, discovery
        self.admin = Admin(self)  # admin interface (6032) and /metrics, served by run()
        # [cluster]: configuration shared with other instances through etcd (myrouter/cluster/)
        self.cluster = (ClusterNode(rc, self.admin, config.cluster, lambda: self.listen_addresses)
                        if config.cluster is not None else None)

    def join_instance(self, *, peers: Peers, shared_gtids: SharedGtids, client_addresses: list[tuple[str, int]],
                      server_version: str) -> None:
        """A worker's ties to the rest of its instance (myrouter.workers): ``peers`` for logins, KILL and
        processlists across workers, ``shared_gtids`` for causal reads, the client addresses the
        supervisor holds, its server version (never asked again of a backend)."""
        self.session_registry.peers = peers
        self.topology.shared_gtids = shared_gtids
        self.client_addresses = client_addresses
        self.runtime_config.server_version = server_version

    def _refresh_views(self) -> None:
        """Refresh the sessions' per-statement views (``SessionServices.refresh_views``) after each
        change of what they copy; the admin and tests read the same through ``Proxy``'s views below."""
        self.services.refresh_views()

    # the sessions' per-statement views, for the admin and the tests (not on the hot path)
    vars = _view("vars")
    rules = _view("rules")
    digester = _view("digester")
    hostgroups = _view("hostgroups")
    query_log = _view("query_log")
    draining = _view("draining")
    plain_statements = _view("plain_statements")

    # -- read through the components (not on the hot path) ------------------------------

    @property
    def config(self) -> Config:
        return self.runtime_config.config

    @property
    def tls_context(self) -> ssl.SSLContext | None:
        """The client port's TLS (``load_tls``, at start); None while not offered."""
        return self.services.tls_context

    @property
    def backend_tls(self) -> ssl.SSLContext:
        return self.runtime_config.backend_tls

    @property
    def logged_in_sessions(self) -> int:
        return self.session_registry.logged_in_sessions

    @logged_in_sessions.setter
    def logged_in_sessions(self, n: int) -> None:
        self.session_registry.logged_in_sessions = n

    @property
    def server_version(self) -> str:
        return self.runtime_config.server_version

    @property
    def audit_log(self) -> AuditLog | None:
        return self.logs.audit_log

    # -- wiring: what the components tell each other ------------------------------------

    def _count_backend_created(self) -> None:
        self.counters.backend_connections_created += 1

    def _server_status_changed(self, server: Server, old_status: str) -> None:
        if server.status != "ONLINE":
            # no new traffic: its idle pooled connections go now (busy ones when given back;
            # OFFLINE_HARD sessions are ended by the admin's sweeper)
            self.pools.close_idle(server)

    def backend_connect_failed(self, server: Server, error: MySQLError) -> None:
        """Opening a connection to ``server`` for traffic failed (the pool has counted it)."""
        self.counters.backend_errors += 1
        log.warning("cannot open a connection to %s (hostgroup %d): %s", server.address, server.hostgroup,
                    error.message)
        self.log_backend_error(server, server.hostgroup, error, during="connect")
        peers = self.session_registry.peers
        if peers is not None:  # a worker: the supervisor's count decides the instance's shun
            peers.connect_error(server.hostgroup, server.host, server.port, error.code)

    # -- serving ------------------------------------------------------------

    def load_tls(self) -> None:
        """(Re)read the client port's certificate files from datadir, generating missing ones
        (``PROXYSQL RELOAD TLS``); new connections use them. Raises ``tls.TLSSetupError``."""
        self.services.tls_context = tls.server_context(tls.load_or_create(self.config.datadir))

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled or drained; ``task_status.started(self)`` once listening.

        What runs depends on the role: the single process runs everything; a worker serves clients
        (client port with SO_REUSEPORT, pools, the sweeper of offline servers' connections) and
        no admin, monitor or cluster; the supervisor runs the admin interface, the monitor and the
        cluster node, and no client."""
        role = self.role
        if self.server_version == "auto" and role.kind != "worker":  # a worker gets it from the supervisor
            self.runtime_config.server_version = await self._discover_server_version()
        if self.vars.have_ssl and role.serves_clients:
            self.load_tls()  # bad certificate files stop the start here, with a clear TLSSetupError
        if role.serves_clients:
            for host, port in self.client_addresses or self.vars.listen_addresses():
                self._listeners.append(listen(host, port, reuse_port=role.kind == "worker"))
            self.listen_addresses = [s.getsockname()[:2] for s in self._listeners]
        if role.controls:
            try:
                self.admin.bind()  # admin interface and /metrics: an address in use is an OSError here
            except OSError:
                for lsock in self._listeners:
                    close_listener(lsock)
                raise
        if role.serves_clients:
            log.info("myrouter listening for MySQL clients on %s (server version %s)",
                     ", ".join(f"{h}:{p}" for h, p in self.listen_addresses), self.server_version)
        if role.controls:  # once per instance (workers run the same code), after every startup check passed
            log.info("compiled kernels: %s", kernels.describe())
        try:
            async with trio.open_nursery() as services:  # admin interface and /metrics, the monitor
                if role.controls:
                    await services.start(self.admin.serve)
                    await services.start(self.monitor.run)  # monitor (issue 6)
                else:
                    services.start_soon(self._sweep_offline_servers)  # the admin's sweeper does it otherwise
                if role.serves_clients:
                    await services.start(self.pools.run)
                if self.cluster is not None and role.controls:  # takes the cluster's configuration before clients
                    await services.start(self.cluster.run)
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    self.open_backends.spawn = nursery.start_soon  # pooled connections retired politely
                    self.side.spawn = nursery.start_soon  # mirrored statements
                    with trio.CancelScope() as accept_scope:
                        self._accept_scope = accept_scope
                        async with trio.open_nursery() as accepters:
                            for lsock in self._listeners:
                                accepters.start_soon(accept_loop, lsock, nursery, self._handle_client, "client port")
                            accepters.start_soon(self._reap_idle_sessions)
                            task_status.started(self)
                services.cancel_scope.cancel()
        finally:
            if role.controls:
                self.admin.close()
            for lsock in self._listeners:
                close_listener(lsock)
            self.open_backends.close_all()
            self.logs.close()  # structured logs: closed last, after every session has written its Close event

    async def _sweep_offline_servers(self) -> None:
        """A worker's connections to OFFLINE_SOFT/OFFLINE_HARD/removed servers, released once their
        sessions allow it (in a single process the admin's sweeper does this)."""
        while True:
            await trio.sleep(SWEEP_INTERVAL)
            soft, hard = self.topology.offline_servers()
            if soft or hard:
                release_connections(self, soft, hard)

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
        session = ClientSession(self.services, stream, addr)
        self.session_registry.add(session)
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
            self.session_registry.remove(session)

    async def drain_and_stop(self, timeout: float) -> None:
        """Stop accepting, let running statements finish (bounded), then end every session."""
        if self.draining:
            return
        self.session_registry.draining = True
        self._refresh_views()
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
        with trio.move_on_after(timeout):
            await self.session_registry.wait_all_closed()
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
        if a new query log or audit log file cannot be opened, or the TLS context for servers
        (mysql-ssl_p2s_*) cannot be built.
        """
        return self.commit_runtime(self.prepare_runtime(config), rules)

    async def apply_everywhere(self, config: Config, rules: RuleSet | None = None) -> list[Server]:
        """``apply_runtime`` in every process of the instance (the supervisor's override asks its
        workers first, all or nothing); here, this process is the instance."""
        return self.apply_runtime(config, rules)

    def prepare_runtime(self, config: Config) -> PreparedRuntime:
        """What can fail in applying ``config``, done first: new log files, a new TLS context for
        servers. Raises MySQLError with nothing changed; ``commit_runtime`` or
        ``discard_prepared`` follows."""
        rc = self.runtime_config
        opened = self.logs.prepare(rc.vars, config.mysql_variables)
        try:
            backend_tls = rc.prepare_backend_tls(config.mysql_variables)
        except MySQLError:
            self.logs.discard(opened)
            raise
        return PreparedRuntime(config, opened, backend_tls)

    def discard_prepared(self, prepared: PreparedRuntime) -> None:
        self.logs.discard(prepared.opened)

    def commit_runtime(self, prepared: PreparedRuntime, rules: RuleSet | None = None) -> list[Server]:
        """Swap to a prepared configuration; nothing here can fail."""
        config = prepared.config
        rc = self.runtime_config
        old = rc.config
        old_vars = rc.vars
        new_vars = config.mysql_variables
        opened, backend_tls = prepared.opened, prepared.backend_tls
        retired: list[Server] = []
        if (config.mysql_servers != old.mysql_servers
                or config.mysql_replication_hostgroups != old.mysql_replication_hostgroups):
            # keep live servers, the monitor's writer/reader moves and shuns
            retired = self.topology.replace(lambda: self.monitor.reconcile(config))
        rc.apply(config, rules, backend_tls)
        if new_vars != old_vars:
            self.logs.apply(opened, new_vars)
            self.stats.configure(new_vars)
            self.query_cache.max_bytes = int(new_vars.items().get("query_cache_size_MB", 256)) * 1024 * 1024
            self.pools.settings = PoolSettings.from_vars(new_vars)
            self.stmt_registry.max_entries = new_vars.max_stmts_cache
        self._refresh_views()
        if new_vars != old_vars and new_vars.have_ssl and self.tls_context is None:
            try:
                self.load_tls()
            except tls.TLSSetupError as exc:
                log.error("mysql-have_ssl is on but TLS cannot be offered: %s", exc)
        for server in retired:
            self.pools.forget_server(server)
        self.monitor.configure()  # new variables, credentials, intervals
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
        return self.logs.flush()

    # -- the instance: this process alone (the supervisor overrides these: myrouter/workers) --

    async def gather_stats(self, names: frozenset[str]) -> dict[str, list]:
        """The instance's rows of those stats tables that other processes hold; none here."""
        return {}

    async def in_workers(self, action: str) -> int:
        """Carry out an admin action (``FLUSH QUERY CACHE``, ``FLUSH LOGS``, ``RELOAD TLS``) in the
        other processes of the instance, after this one did; none here (returns 0 entries flushed)."""
        return 0

    def run_admin_action(self, action: str) -> int:
        """An admin action (see ``in_workers``) in this process: what a worker does when asked
        (``FLUSH LOGS`` arrives as ``REOPEN LOGS``: the supervisor has rotated the shared files)."""
        if action == "FLUSH QUERY CACHE":
            n = len(self.query_cache)
            self.query_cache.clear()
            return n
        if action == "REOPEN LOGS":  # the supervisor rotated them (FLUSH LOGS, or past their size)
            self.logs.reopen()
        elif action == "RELOAD TLS":
            if self.vars.have_ssl or self.tls_context is not None:
                self.load_tls()
        else:
            raise ValueError(f"unknown admin action {action!r}")
        return 0

    async def kill_session(self, session_id: int, *, query_only: bool) -> bool:
        """The admin's ``KILL [QUERY] id``; False when no such session is logged in."""
        target = self.sessions.get(session_id)
        if target is None:
            return False
        await self.kill_session_work(target, query_only=query_only)
        return True
