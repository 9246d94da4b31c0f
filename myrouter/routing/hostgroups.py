"""Hostgroups at runtime: servers with weight, status and connection limits.

``Hostgroups.choose(hg)`` picks a server for a new backend connection by weight
among the usable ones: ONLINE and below its ``max_connections``. SHUNNED,
OFFLINE_SOFT and OFFLINE_HARD servers take no new connections; OFFLINE_SOFT
lets the sessions already on it finish, OFFLINE_HARD (and SHUNNED, for the
monitor) ends them. Statuses change at runtime (admin, monitor); the chooser
reads them on every call, so a change applies to the next connection.

Status of a server
------------------
A :class:`Server` has the status the configuration gives it (``admin_status``:
ONLINE, SHUNNED, OFFLINE_SOFT or OFFLINE_HARD) and, when that is ONLINE, may be
shunned automatically (``status`` is then SHUNNED) for one or more reasons:

* ``shun_health``: the monitor's connect/ping checks failed
  ``mysql-monitor_ping_max_failures`` times in a row (set for every hostgroup
  entry of that host:port);
* ``shun_lag``: its replication lag exceeded this entry's ``max_replication_lag``
  for ``mysql-monitor_replication_lag_count`` checks in a row;
* ``shun_traffic``: ``mysql-shun_on_failures`` connection errors within one
  second, reported by the pool through :meth:`Server.note_connect_error`
  (ProxySQL's traffic-side rule).

The monitor (:mod:`myrouter.monitor`) clears a reason once the server passes
again and has had no failure of that kind for ``mysql-shun_recovery_time_sec``.
A SHUNNED ``admin_status`` (set by hand in ``mysql_servers``) is never lifted
automatically, as in ProxySQL (it only lifts the shuns it made itself).

Every change of ``status`` goes through :meth:`Server.refresh_status`, which
calls the ``on_change(server, old_status)`` callback of the hostgroups'
:class:`HostgroupPolicy` (the proxy's ``server_status_changed``).

Replication hostgroups
----------------------
With ``mysql_replication_hostgroups`` the monitor moves servers between a
writer and a reader hostgroup (:meth:`Hostgroups.place`, ProxySQL's rules): a
reader found with ``read_only=OFF`` is copied into the writer hostgroup (and
stays a reader when ``monitor_writer_is_also_reader``); a writer found with
``read_only=ON`` is copied into the reader hostgroup and leaves the writer
hostgroup (that entry becomes OFFLINE_HARD). :meth:`Hostgroups.fallback_for`
lets reads use the writer hostgroup when no reader can take them.

API for the connection pool: :meth:`Hostgroups.choose`,
:meth:`Hostgroups.fallback_for`, :meth:`Server.note_connect_error`,
:meth:`Server.note_connect_ok`. Change a configured status with
:meth:`Server.set_admin_status`, not by assigning ``status``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..net.address import ServerAddress
from ..config import ReplicationHostgroupConfig, ServerConfig
from ..protocol.errors import PROXYSQL_ER_HOSTGROUP_TIMEOUT, MySQLError

log = logging.getLogger("myrouter.hostgroups")

ONLINE = "ONLINE"
SHUNNED = "SHUNNED"
OFFLINE_SOFT = "OFFLINE_SOFT"
OFFLINE_HARD = "OFFLINE_HARD"

#: connection errors that say nothing about the server's health (the client's
#: credentials or schema): they do not count towards ``shun_on_failures``
#: (ER_DBACCESS_DENIED_ERROR, ER_ACCESS_DENIED_ERROR, ER_BAD_DB_ERROR, as ProxySQL; and
#: ER_NOT_SUPPORTED_AUTH_MODE: the proxy lacks the plain-text password the user's plugin needs)
CLIENT_SIDE_CONNECT_ERRORS = frozenset((1044, 1045, 1049, 1251))


@dataclass
class HostgroupPolicy:
    """Runtime knobs shared by a :class:`Hostgroups` and all its servers.

    The proxy (its monitor) keeps them in line with the ``mysql-*`` variables.
    """

    #: ``mysql-shun_on_failures``: this many connection errors within one second shun a server (0: never)
    shun_on_failures: int = 5
    #: ``mysql-shun_recovery_time_sec``
    shun_recovery_time_sec: int = 10
    #: ``mysql-reader_fallback_to_writer`` (myrouter's own): see :meth:`Hostgroups.fallback_for`
    reader_fallback: bool = True
    #: called as ``on_change(server, old_status)`` after every change of a server's status
    on_change: Callable[[Server, str], None] | None = None
    #: the clock of every shun decision (the monitor sets ``trio.current_time``, so that
    #: tests can use ``autojump_clock``)
    clock: Callable[[], float] = time.monotonic


@dataclass(eq=False)
class Server:
    """One backend server in one hostgroup, with its live status and counters."""

    hostgroup: int
    host: str
    port: int
    weight: int = 1
    status: str = ONLINE
    max_connections: int = 1000
    max_replication_lag: int = 0
    comment: str = ""
    use_ssl: bool = False
    compression: bool = False  # mysql_servers.compression > 0
    max_latency_ms: int = 0  # mysql_servers.max_latency_ms: 0 = no limit
    address: ServerAddress = field(init=False)
    connections: int = 0  # backend connections open now
    connections_created: int = 0
    connect_errors: int = 0
    queries: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    max_connections_used: int = 0
    # -- status (see the module docstring) ------------------------------------
    admin_status: str = field(init=False)  # the configured status
    shun_health: bool = False
    shun_lag: bool = False
    shun_traffic: bool = False
    shunned_at: float | None = None  # when the current automatic shun began
    # -- what the monitor measured (None: not measured) -------------------------
    repl_lag_ms: int | None = None
    lag_over_count: int = 0  # consecutive lag checks over max_replication_lag
    lag_failed_at: float | None = None  # last lag check over max_replication_lag
    ping_time_us: int | None = None
    # the monitor's last ping took longer than max_latency_ms: the server gets no new connections
    # (it stays ONLINE, as in ProxySQL); see note_ping_time
    slow: bool = False
    read_only: bool | None = None
    # -- traffic-side errors ----------------------------------------------------
    last_connect_error_at: float | None = None
    policy: HostgroupPolicy = field(default_factory=HostgroupPolicy, repr=False)
    _recent_errors: list[float] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.address = ServerAddress(self.hostgroup, self.host, self.port, self.use_ssl, self.compression)
        self.admin_status = self.status

    @classmethod
    def from_config(cls, s: ServerConfig, policy: HostgroupPolicy | None = None) -> Server:
        srv = cls(s.hostgroup_id, s.hostname, s.port, s.weight, s.status, s.max_connections,
                  s.max_replication_lag, s.comment, s.use_ssl, s.compression > 0, s.max_latency_ms)
        if policy is not None:
            srv.policy = policy
        return srv

    @property
    def endpoint(self) -> tuple[str, int]:
        """``(host, port)``: the same MariaDB server may be in several hostgroups."""
        return (self.host, self.port)

    @property
    def usable(self) -> bool:
        return self.status == ONLINE and self.weight > 0 and not self.slow and self.connections < self.max_connections

    def note_ping_time(self, elapsed_us: int) -> None:
        """The monitor's ping took ``elapsed_us``: over ``max_latency_ms``, the server is left out of
        the choice of servers for new connections until a ping is fast again."""
        self.ping_time_us = elapsed_us
        self.slow = 0 < self.max_latency_ms * 1000 < elapsed_us

    @property
    def shun_reason(self) -> str:
        """Why the server is shunned automatically ('' when it is not)."""
        reasons = []
        if self.shun_health:
            reasons.append("failed health checks")
        if self.shun_lag:
            reasons.append("replication lag")
        if self.shun_traffic:
            reasons.append("connection errors")
        return ", ".join(reasons)

    def connection_opened(self) -> None:
        self.connections += 1
        self.connections_created += 1
        self.max_connections_used = max(self.max_connections_used, self.connections)

    def connection_closed(self) -> None:
        self.connections -= 1

    # -- status ----------------------------------------------------------------

    def effective_status(self) -> str:
        """What ``status`` should be: the configured status, or SHUNNED while an automatic
        shun holds an ONLINE server."""
        if self.admin_status != ONLINE:
            return self.admin_status
        if self.shun_health or self.shun_lag or self.shun_traffic:
            return SHUNNED
        return ONLINE

    def refresh_status(self, *, notify: bool = True) -> str | None:
        """Bring ``status`` in line with the configured status and the shun flags.

        Returns the old status if it changed (and then calls the policy's ``on_change``
        unless ``notify`` is false), else None.
        """
        new = self.effective_status()
        old = self.status
        if new == old:
            return None
        self.status = new
        if new == SHUNNED:
            self.shunned_at = self.shunned_at if self.shunned_at is not None else self.policy.clock()
        elif old == SHUNNED:
            self.shunned_at = None
        if notify and self.policy.on_change is not None:
            self.policy.on_change(self, old)
        return old

    def set_admin_status(self, status: str, *, notify: bool = True) -> str | None:
        """Change the configured status (admin); returns the old effective status if it changed."""
        self.admin_status = status
        return self.refresh_status(notify=notify)

    # -- traffic-side shunning: called by the connection pool --------------------

    def note_connect_error(self, code: int | None = None) -> None:
        """The pool failed to open a backend connection to this server for traffic.

        Counts the failure in ``connect_errors`` (callers should not count it
        themselves). ``code`` is the MySQL error code when there is one: 1044,
        1045 and 1049 (the client's credentials or schema, not the server's
        health) are counted in ``connect_errors`` only. Otherwise, when
        ``mysql-shun_on_failures`` errors (including this one) happened within
        one second, the server becomes SHUNNED (ProxySQL's rule); the monitor
        brings it back once ``mysql-shun_recovery_time_sec`` passed without
        an error and the server answers its checks.
        """
        self.connect_errors += 1
        if code in CLIENT_SIDE_CONNECT_ERRORS:
            return
        t = self.policy.clock()
        self.last_connect_error_at = t
        recent = [x for x in self._recent_errors if t - x < 1.0]
        recent.append(t)
        threshold = self.policy.shun_on_failures
        if threshold > 0 and len(recent) >= threshold:
            recent.clear()
            if not self.shun_traffic:
                self.shun_traffic = True
                if self.status == ONLINE:
                    log.warning("server %s:%d (hostgroup %d): %d connection errors within 1 s "
                                "(mysql-shun_on_failures); SHUNNED", self.host, self.port, self.hostgroup, threshold)
                self.refresh_status()
        self._recent_errors = recent

    def note_connect_ok(self) -> None:
        """The pool opened a backend connection to this server: clears the error window of
        ``shun_on_failures`` (a server that accepts connections is not failing)."""
        self._recent_errors.clear()

    def copy_to(self, hostgroup: int) -> Server:
        """A new entry for the same host:port in ``hostgroup``: same settings, health and
        measurements, no connections or counters (used when the monitor moves a server)."""
        srv = Server(hostgroup, self.host, self.port, self.weight, self.admin_status, self.max_connections,
                     self.max_replication_lag, self.comment, self.use_ssl, self.compression, self.max_latency_ms)
        srv.policy = self.policy
        srv.shun_health = self.shun_health
        srv.read_only = self.read_only
        srv.repl_lag_ms = self.repl_lag_ms
        srv.ping_time_us = self.ping_time_us
        srv.slow = self.slow
        srv.refresh_status(notify=False)
        return srv

    def __repr__(self) -> str:
        return (f"<Server hg={self.hostgroup} {self.host}:{self.port} {self.status} w={self.weight} "
                f"conns={self.connections}/{self.max_connections}>")


@dataclass(frozen=True)
class Move:
    """One change :meth:`Hostgroups.place` made: ``server`` was added to or removed from its hostgroup."""

    action: str  # "add" or "remove"
    server: Server
    read_only: bool

    def __str__(self) -> str:
        verb = "added to" if self.action == "add" else "removed from"
        return (f"{self.server.host}:{self.server.port} {verb} hostgroup {self.server.hostgroup} "
                f"(read_only={'ON' if self.read_only else 'OFF'})")


def weighted_choice(servers: list[Server], total_weight: int, rng: random.Random) -> Server:
    """One of ``servers`` (not empty, all with a weight above 0) drawn by weight."""
    if len(servers) == 1:
        return servers[0]
    point = rng.random() * total_weight
    for s in servers:
        point -= s.weight
        if point < 0:
            return s
    return servers[-1]


class Hostgroups:
    def __init__(
        self,
        servers: Iterable[ServerConfig],
        rng: random.Random | None = None,
        *,
        replication: Iterable[ReplicationHostgroupConfig] = (),
        policy: HostgroupPolicy | None = None,
    ) -> None:
        self._rng = rng or random.Random()
        self.policy = policy if policy is not None else HostgroupPolicy()
        self.by_hostgroup: dict[int, list[Server]] = {}
        for s in servers:
            self.by_hostgroup.setdefault(s.hostgroup_id, []).append(Server.from_config(s, self.policy))
        self.replication: tuple[ReplicationHostgroupConfig, ...] = tuple(replication)
        self._writer_of_reader = {r.reader_hostgroup: r.writer_hostgroup for r in self.replication}
        self._writers = frozenset(r.writer_hostgroup for r in self.replication)

    def servers(self, hostgroup: int | None = None) -> list[Server]:
        if hostgroup is None:
            return [s for group in self.by_hostgroup.values() for s in group]
        return list(self.by_hostgroup.get(hostgroup, ()))

    def find(self, hostgroup: int, host: str, port: int) -> Server | None:
        for s in self.by_hostgroup.get(hostgroup, ()):
            if s.host == host and s.port == port:
                return s
        return None

    def entries(self, host: str, port: int) -> list[Server]:
        """Every hostgroup entry of one host:port."""
        return [s for group in self.by_hostgroup.values() for s in group if s.host == host and s.port == port]

    def endpoints(self) -> list[tuple[str, int]]:
        """Distinct ``(host, port)`` of all servers, in hostgroup order."""
        seen: dict[tuple[str, int], None] = {}
        for s in self.servers():
            seen.setdefault(s.endpoint, None)
        return list(seen)

    def is_writer_hostgroup(self, hostgroup: int) -> bool:
        """Whether ``hostgroup`` is the writer hostgroup of a replication hostgroup pair."""
        return hostgroup in self._writers

    def replication_pairs_of(self, host: str, port: int) -> list[ReplicationHostgroupConfig]:
        """The replication hostgroup pairs with an entry of host:port in their writer or reader hostgroup."""
        hgs = {s.hostgroup for s in self.entries(host, port)}
        return [r for r in self.replication if r.writer_hostgroup in hgs or r.reader_hostgroup in hgs]

    def choose(self, hostgroup: int) -> Server:
        """A usable server of ``hostgroup``, drawn by weight; MySQLError 9001 if there is none."""
        group = self.by_hostgroup.get(hostgroup)
        if not group:
            raise MySQLError(PROXYSQL_ER_HOSTGROUP_TIMEOUT, f"Hostgroup {hostgroup} has no servers", "HY000")
        usable = [s for s in group if s.usable]
        if not usable:
            states = ", ".join(f"{s.host}:{s.port} {s.status}" for s in group)
            raise MySQLError(
                PROXYSQL_ER_HOSTGROUP_TIMEOUT,
                f"Max connect timeout reached while reaching hostgroup {hostgroup}: no usable server ({states})",
                "HY000",
            )
        return weighted_choice(usable, sum(s.weight for s in usable), self._rng)

    def fallback_for(self, hostgroup: int) -> int | None:
        """The hostgroup to send reads to when ``hostgroup`` cannot take them, or None.

        When ``hostgroup`` is the reader hostgroup of a ``mysql_replication_hostgroups``
        pair, none of its servers is ONLINE with a weight above 0 (all SHUNNED or
        OFFLINE, or it has none), the writer hostgroup of the pair has such a
        server, and ``mysql-reader_fallback_to_writer`` is on (the default): that
        writer hostgroup. Otherwise None: the caller reports the reader
        hostgroup's error. A reader hostgroup whose servers are only busy
        (``max_connections`` reached) does not fall back: waiting for a free
        connection is the pool's business.
        """
        if not self.policy.reader_fallback:
            return None
        writer = self._writer_of_reader.get(hostgroup)
        if writer is None:
            return None
        if any(_can_serve(s) for s in self.by_hostgroup.get(hostgroup, ())):
            return None
        if not any(_can_serve(s) for s in self.by_hostgroup.get(writer, ())):
            return None
        return writer

    # -- moves (the monitor's writer/reader discovery) ----------------------------

    def add(self, server: Server) -> None:
        """Add ``server`` to its hostgroup (it shares this object's policy)."""
        server.policy = self.policy
        self.by_hostgroup.setdefault(server.hostgroup, []).append(server)

    def remove(self, server: Server) -> None:
        """Take ``server`` out of its hostgroup (the object itself is left as it is)."""
        group = self.by_hostgroup.get(server.hostgroup, [])
        self.by_hostgroup[server.hostgroup] = [s for s in group if s is not server]
        if not self.by_hostgroup[server.hostgroup]:
            del self.by_hostgroup[server.hostgroup]

    def place(self, host: str, port: int, read_only: bool, writer_is_also_reader: bool,
              pairs: Iterable[ReplicationHostgroupConfig] | None = None) -> list[Move]:
        """Put host:port where its ``read_only`` says, in every replication pair it belongs to.

        ProxySQL's ``read_only_action``: ``read_only=OFF`` and an entry in the
        reader hostgroup -> copied into the writer hostgroup if it is not there;
        the reader entry stays when ``writer_is_also_reader``, else it is
        removed. ``read_only=ON`` and an entry in the writer hostgroup -> copied
        into the reader hostgroup if it is not there, and removed from the
        writer hostgroup. (A writer configured only in the writer hostgroup is
        not added to the reader hostgroup.) Servers of no pair are left alone.
        ``pairs`` limits this to some of the pairs (default: all). Returns the
        moves, in order; removed servers are only taken out of the lists (the
        caller retires them).
        """
        moves: list[Move] = []
        for pair in self.replication if pairs is None else pairs:
            w = self.find(pair.writer_hostgroup, host, port)
            r = self.find(pair.reader_hostgroup, host, port)
            if not read_only:
                if r is None:
                    continue
                if w is None:
                    w = r.copy_to(pair.writer_hostgroup)
                    self.add(w)
                    moves.append(Move("add", w, read_only))
                if not writer_is_also_reader:
                    self.remove(r)
                    moves.append(Move("remove", r, read_only))
            elif w is not None:
                if r is None:
                    r = w.copy_to(pair.reader_hostgroup)
                    self.add(r)
                    moves.append(Move("add", r, read_only))
                self.remove(w)
                moves.append(Move("remove", w, read_only))
        return moves

    def reconcile(
        self,
        servers: Iterable[ServerConfig],
        replication: Iterable[ReplicationHostgroupConfig],
        read_only: dict[tuple[str, int], bool] | None = None,
        writer_is_also_reader: bool = True,
    ) -> tuple[Hostgroups, list[Server]]:
        """New hostgroups for a new configuration, keeping what is live.

        The configured servers, then the writer/reader placement of every
        host:port whose ``read_only`` is known (so a LOAD MYSQL SERVERS TO RUNTIME
        does not undo the monitor's moves). Entries that stay (same hostgroup,
        host and port) keep their Server object, counters and automatic shuns;
        their weight, configured status, limits and comment are updated. Status
        changes are not notified (the caller compares before and after). Returns
        ``(new, retired)``: retired are the Server objects of this one that are
        no longer in any hostgroup.
        """
        new = Hostgroups(servers, self._rng, replication=replication, policy=self.policy)
        for (host, port), ro in (read_only or {}).items():
            if new.entries(host, port):
                new.place(host, port, ro, writer_is_also_reader)
        kept: set[int] = set()
        for hg, group in new.by_hostgroup.items():
            for i, fresh in enumerate(group):
                live = self.find(hg, fresh.host, fresh.port)
                if live is not None and (live.use_ssl, live.compression) != (fresh.use_ssl, fresh.compression):
                    live = None  # connections of the other kind are not reused: the old entry retires
                if live is None:
                    # a new entry of a host:port already monitored: same health
                    other = next(iter(self.entries(fresh.host, fresh.port)), None)
                    if other is not None:
                        fresh.shun_health = other.shun_health
                        fresh.read_only = other.read_only
                        fresh.refresh_status(notify=False)
                    continue
                live.weight = fresh.weight
                live.admin_status = fresh.admin_status
                live.max_connections = fresh.max_connections
                live.max_replication_lag = fresh.max_replication_lag
                live.comment = fresh.comment
                live.max_latency_ms = fresh.max_latency_ms
                if live.ping_time_us is not None:
                    live.note_ping_time(live.ping_time_us)
                if live.max_replication_lag == 0 or new.is_writer_hostgroup(hg):
                    live.shun_lag = False
                    live.lag_over_count = 0
                live.refresh_status(notify=False)
                group[i] = live
                kept.add(id(live))
        retired = [s for s in self.servers() if id(s) not in kept]
        return new, retired


def _can_serve(s: Server) -> bool:
    return s.status == ONLINE and s.weight > 0 and not s.slow
