"""The servers of the running configuration: hostgroups, statuses, and what follows a status change.

Wraps :mod:`myrouter.routing.hostgroups` (the sans-I/O model). The hostgroups object is
replaced as a whole by LOAD MYSQL SERVERS TO RUNTIME (:meth:`Topology.replace`); a
server's status changes in place (monitor, traffic errors, admin), and every change goes
through :meth:`Topology.server_status_changed`, which tells the subscribers (the pools
close the idle connections of a server that is no longer ONLINE).

Also here: what causal reads know of replication (the newest GTID written through the
proxy, per replica what it has applied or until when it lags), and the servers taken out
of the configuration that may still have connections (the admin's sweeper releases them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from ..backend.gtid import parse_gtids
from ..config import Config
from ..routing.hostgroups import OFFLINE_HARD, Hostgroups, Server

log = logging.getLogger("myrouter")

SOFT_STATUSES = ("OFFLINE_SOFT", "SHUNNED")
HARD_STATUSES = (OFFLINE_HARD,)

class SharedGtids(Protocol):
    """The newest GTIDs written through every worker of the instance."""

    def note(self, gtid: str) -> None: ...

    def global_gtid(self) -> str: ...


StatusListener = Callable[[Server, str], None]  # (server, old status); server.status is the new one


class Topology:
    def __init__(self, config: Config) -> None:
        self.hostgroups = Hostgroups(config.mysql_servers, replication=config.mysql_replication_hostgroups)
        self.retired: list[Server] = []  # servers taken out at runtime that may still have connections
        self._listeners: list[StatusListener] = []
        # causal reads: the newest GTID written through the proxy per replication domain, and per
        # replica what it is known to have applied (or until when it is known to lag)
        self.written_gtids: dict[int, tuple[int, int]] = {}  # domain -> (server_id, seq)
        # a worker of several: every worker's writes, in shared memory (myrouter.workers.gtidboard)
        self.shared_gtids: SharedGtids | None = None
        self.gtid_applied: dict[Server, dict[int, int]] = {}
        self.gtid_lagging: dict[Server, float] = {}

    def on_status_change(self, listener: StatusListener) -> None:
        self._listeners.append(listener)

    def server_status_changed(self, server: Server, old_status: str, *, mirrored: bool = False) -> None:
        """Called after every change of a Server's ``status``: by the monitor (health and lag
        shunning, recovery, a server moved out of its hostgroup, which becomes OFFLINE_HARD),
        by the traffic-side rule (``Server.note_connect_error``) and by LOAD MYSQL SERVERS TO
        RUNTIME (including servers removed from the configuration, which become
        OFFLINE_HARD). ``server.status`` is the new status. Runs synchronously on the event
        loop: it must not block. ``mirrored``: a worker takes the change from its supervisor, which
        has logged it already (logged at debug level here, not once more per worker).
        """
        reason = f" ({server.shun_reason})" if server.shun_reason and server.status == "SHUNNED" else ""
        log.log(logging.DEBUG if mirrored else logging.INFO, "server %s:%d (hostgroup %d): %s -> %s%s", server.host,
                server.port, server.hostgroup, old_status, server.status, reason)
        if server.status != "ONLINE":
            self.gtid_applied.pop(server, None)
        for listener in self._listeners:
            listener(server, old_status)

    def replace(self, build: Callable[[], tuple[Hostgroups, list[Server]]]) -> list[Server]:
        """Run the hostgroups ``build()`` makes from the running ones (``Hostgroups.reconcile``,
        through the monitor, which may update live servers in place) instead; the servers it
        returns left the configuration and become OFFLINE_HARD. Every status that changed is
        notified. Returns the servers that left."""
        before = {id(s): s.status for s in self.hostgroups.servers()}
        hostgroups, retired = build()
        self.hostgroups = hostgroups
        for s in hostgroups.servers():
            old_status = before.get(id(s))
            if old_status is not None and old_status != s.status:
                self.server_status_changed(s, old_status)
        for s in retired:
            old_status = s.status
            if s.set_admin_status(OFFLINE_HARD, notify=False) is not None:
                self.server_status_changed(s, old_status)
        return retired

    def note_retired(self, server: Server) -> None:
        """``server`` was taken out of its hostgroup (OFFLINE_HARD, by the monitor): its
        connections are left to the admin's sweeper."""
        if server.connections > 0 and server not in self.retired:
            self.retired.append(server)

    def offline_servers(self, retired: Sequence[Server] = ()) -> tuple[set[Server], set[Server]]:
        """(soft, hard): the servers not ONLINE that still have connections open. Soft: OFFLINE_SOFT
        and SHUNNED (their busy connections may finish); hard: OFFLINE_HARD and the retired ones
        (``retired``, just taken out, joins those kept from before; those without connections
        left are forgotten)."""
        self.retired = [s for s in self.retired + list(retired) if s.connections > 0]
        servers = self.hostgroups.servers()
        soft = {s for s in servers if s.status in SOFT_STATUSES and s.connections > 0}
        hard = {s for s in servers if s.status in HARD_STATUSES and s.connections > 0}
        return soft, hard | set(self.retired)

    def note_written_gtid(self, gtid: str) -> None:
        """A session's write committed with ``gtid`` (MariaDB ``domain-server-seq``)."""
        if self.shared_gtids is not None:
            self.shared_gtids.note(gtid)
            return
        for domain, (server_id, seq) in parse_gtids(gtid).items():
            old = self.written_gtids.get(domain)
            if old is None or seq > old[1]:
                self.written_gtids[domain] = (server_id, seq)

    def global_gtid(self) -> str:
        """Every domain's newest GTID written through the proxy, as MASTER_GTID_WAIT takes it."""
        if self.shared_gtids is not None:
            return self.shared_gtids.global_gtid()
        return ",".join(f"{d}-{s}-{n}" for d, (s, n) in sorted(self.written_gtids.items()))
