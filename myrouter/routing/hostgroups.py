"""Hostgroups at runtime: servers with weight, status and connection limits.

``Hostgroups.choose(hg)`` picks a server for a new backend connection by weight
among the usable ones: ONLINE and below its ``max_connections``. SHUNNED,
OFFLINE_SOFT and OFFLINE_HARD servers take no new connections; OFFLINE_SOFT
lets the sessions already on it finish, OFFLINE_HARD (and SHUNNED, for the
monitor) ends them. Statuses change at runtime (admin, monitor); the chooser
reads them on every call, so a change applies to the next connection.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..backend.connection import ServerAddress
from ..config import ServerConfig
from ..protocol.errors import PROXYSQL_ER_HOSTGROUP_TIMEOUT, MySQLError

ONLINE = "ONLINE"
SHUNNED = "SHUNNED"
OFFLINE_SOFT = "OFFLINE_SOFT"
OFFLINE_HARD = "OFFLINE_HARD"


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
    address: ServerAddress = field(init=False)
    connections: int = 0  # backend connections open now
    connections_created: int = 0
    connect_errors: int = 0
    queries: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    max_connections_used: int = 0

    def __post_init__(self) -> None:
        self.address = ServerAddress(self.hostgroup, self.host, self.port)

    @classmethod
    def from_config(cls, s: ServerConfig) -> Server:
        return cls(s.hostgroup_id, s.hostname, s.port, s.weight, s.status, s.max_connections,
                   s.max_replication_lag, s.comment)

    @property
    def usable(self) -> bool:
        return self.status == ONLINE and self.weight > 0 and self.connections < self.max_connections

    def connection_opened(self) -> None:
        self.connections += 1
        self.connections_created += 1
        if self.connections > self.max_connections_used:
            self.max_connections_used = self.connections

    def connection_closed(self) -> None:
        self.connections -= 1

    def __repr__(self) -> str:
        return (f"<Server hg={self.hostgroup} {self.host}:{self.port} {self.status} w={self.weight} "
                f"conns={self.connections}/{self.max_connections}>")


class Hostgroups:
    def __init__(self, servers: Iterable[ServerConfig], rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self.by_hostgroup: dict[int, list[Server]] = {}
        for s in servers:
            self.by_hostgroup.setdefault(s.hostgroup_id, []).append(Server.from_config(s))

    def servers(self, hostgroup: int | None = None) -> list[Server]:
        if hostgroup is None:
            return [s for group in self.by_hostgroup.values() for s in group]
        return list(self.by_hostgroup.get(hostgroup, ()))

    def find(self, hostgroup: int, host: str, port: int) -> Server | None:
        for s in self.by_hostgroup.get(hostgroup, ()):
            if s.host == host and s.port == port:
                return s
        return None

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
        if len(usable) == 1:
            return usable[0]
        total = sum(s.weight for s in usable)
        point = self._rng.random() * total
        for s in usable:
            point -= s.weight
            if point < 0:
                return s
        return usable[-1]
