"""Every backend connection open for traffic, and the per-server counters that follow them.

Pools, mirrored statements and KILL open and close connections; this set is what
``backend_connections_connected`` counts and what is closed when the proxy stops.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .connection import BackendConnection


class OpenBackends:
    """The open backend connections (not the monitor's), and closing them without blocking."""

    def __init__(self, on_opened: Callable[[], None] | None = None) -> None:
        self.connections: set[BackendConnection] = set()
        self._on_opened = on_opened  # counts backend_connections_created
        # runs a coroutine in the background (the app's session nursery, once serving)
        self.spawn: Callable[[Callable[[], Awaitable[None]]], None] | None = None

    def __len__(self) -> int:
        return len(self.connections)

    def opened(self, be: BackendConnection) -> None:
        self.connections.add(be)
        if self._on_opened is not None:
            self._on_opened()
        if be.server_ref is not None:
            be.server_ref.connection_opened()

    def closed(self, be: BackendConnection) -> None:
        if be in self.connections:
            self.connections.discard(be)
            srv = be.server_ref
            if srv is not None:
                srv.connection_closed()
                srv.bytes_sent += be.stream.bytes_out
                srv.bytes_received += be.stream.bytes_in

    def retire(self, be: BackendConnection) -> None:
        """Close a healthy backend connection politely (COM_QUIT) without blocking the caller."""
        if self.spawn is not None and not be.closed:
            self.spawn(be.aclose)
        else:
            be.close()

    def close_all(self) -> None:
        for be in list(self.connections):
            be.close()
        self.connections.clear()
