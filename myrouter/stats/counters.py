"""Counters of the running proxy and frozen snapshots of them.

Counters are plain integers bumped on the hot path (no locks: one event loop);
``snapshot`` copies them into a frozen dataclass for the admin tables, the
Prometheus exposition and tests.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


class Counters:
    __slots__ = (
        "client_connections_created",
        "client_connections_aborted",
        "access_denied",
        "questions",
        "backend_connections_created",
        "backend_errors",
        "query_timeouts",
        "mirrored",
        "mirror_errors",
        "pool_wait_timeouts",
        "backend_resets",
        "backend_reset_failures",
        "stmts_evicted",
        "transactions_ended",
        "causal_waits",
        "causal_fallbacks",
        "read_only_trx_readers",  # read-only transactions run on a reader hostgroup
        "read_only_trx_writer",  # ... on the session's default hostgroup (rules, causal reads)
        "data_plane_commands",  # commands served from start to end by the data plane (frontend/dataplane.py)
        "data_plane_handovers",  # commands the data plane read and handed to the session's Trio task
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)


@dataclass(frozen=True, slots=True)
class ProxyStats:
    client_connections_connected: int
    client_connections_created: int
    client_connections_aborted: int
    access_denied: int
    questions: int
    backend_connections_connected: int
    backend_connections_created: int
    backend_errors: int
    sessions_busy: int
    backend_connections_idle: int
    backend_connections_in_use: int
    sessions_waiting_for_connection: int
    tasks: int  # Trio tasks under the proxy's root nursery (sessions + listeners + service tasks)

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
