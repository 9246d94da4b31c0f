"""Which part of the instance this process is: the single process, the supervisor, or worker N.

``[mysql_variables] threads = N`` (N > 1) runs one supervisor (admin interface, monitor, cluster,
configuration layers, signals; no client) and N workers (clients, pools, data plane; no admin
interface, no monitor): :mod:`myrouter.workers`. ``threads = 1`` runs the single process, which is
both. The components below ask the role what to run; the peers (:class:`Peers`) are how a worker
reaches what the whole instance shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class ProcessRole:
    kind: str = "single"  # "single" | "supervisor" | "worker"
    index: int = 0  # the worker's number, 0-based (ProxySQL's ThreadID in stats_mysql_processlist)
    threads: int = 1  # how many workers the instance runs

    @property
    def serves_clients(self) -> bool:
        return self.kind != "supervisor"

    @property
    def controls(self) -> bool:
        """Runs the admin interface, /metrics, the monitor and the cluster node."""
        return self.kind != "worker"

    def worker_of(self, session_id: int) -> int:
        """The worker that holds session ``session_id`` (ids are ``index + 1 + k * threads``)."""
        return (session_id - 1) % self.threads


SINGLE = ProcessRole()


class Peers(Protocol):
    """What a worker asks of the rest of the instance (``myrouter.workers.worker.SupervisorLink``)."""

    async def admit(self, username: str, user_limit: int, limit: int) -> str | None:
        """Count a login in the instance's totals; a refusal names the limit (``"max_connections"``
        or ``"user"``), and then nothing is counted."""

    def left(self, username: str) -> None:
        """A counted login ended."""

    def changed_user(self, old: str, new: str) -> None:
        """A counted login became ``new``'s (COM_CHANGE_USER)."""

    async def find(self, session_id: int) -> dict[str, Any] | None:
        """Another worker's session: ``{"username": ..., "state": ...}``, or None."""

    async def kill(self, session_id: int, *, query_only: bool) -> bool:
        """KILL [QUERY] another worker's session; False if it is gone."""

    async def sessions(self) -> list[dict[str, Any]]:
        """The other workers' logged-in sessions (SHOW PROCESSLIST, KILL USER)."""

    def connect_error(self, hostgroup: int, host: str, port: int, code: int | None) -> None:
        """Traffic failed to open a connection to a server (``Server.note_connect_error``)."""
