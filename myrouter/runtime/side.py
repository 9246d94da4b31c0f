"""Side connections: a statement's copy sent to a mirror hostgroup, and KILL sent to a server.

Each opens its own short-lived backend connection (as the client's user), outside the pools.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from ..backend.connection import BackendConnection, BackendState, open_backend
from ..backend.opened import OpenBackends
from ..net.stream import ConnectionLost
from ..protocol.auth import BackendSecret
from ..protocol.errors import MalformedPacket, MySQLError
from ..protocol.messages import parse_err
from ..protocol.response import ResponseKind
from ..stats.counters import Counters
from .config import RuntimeConfig
from .topology import Topology

log = logging.getLogger("myrouter")

BackendErrorHook = Callable[..., None]  # (server, hostgroup, error, *, during=...): the audit log's line


class SideConnections:
    def __init__(self, settings: RuntimeConfig, topology: Topology, opened: OpenBackends, counters: Counters,
                 log_backend_error: BackendErrorHook) -> None:
        self.settings = settings  # connect_timeout_server, the TLS context for servers
        self.topology = topology
        self.opened = opened
        self.counters = counters
        self.log_backend_error = log_backend_error
        # runs a coroutine in the background (the app's session nursery, once serving)
        self.spawn: Callable[..., Any] | None = None

    def mirror(self, session, payload: bytes, hostgroup: int) -> None:
        """Send a copy of a statement to ``hostgroup`` in the background; its result is dropped."""
        if self.spawn is None:
            return
        self.counters.mirrored += 1
        self.spawn(self._mirror, session.username, session.secret, session.schema,
                                 session.backend_capabilities, payload, hostgroup)

    async def _mirror(self, username, secret, schema, caps, payload: bytes, hostgroup: int) -> None:
        be = None
        server = None
        try:
            server = self.topology.hostgroups.choose(hostgroup)
            be = await open_backend(server.address, username=username, secret=secret, database=schema,
                                    client_capabilities=caps, connect_timeout=self.settings.vars.connect_timeout_server / 1000,
                                    tls=self.settings.backend_tls)
            be.server_ref = server
            self.opened.opened(be)
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
                self.opened.closed(be)
                await be.aclose()

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
                connect_timeout=self.settings.vars.connect_timeout_server / 1000, tls=self.settings.backend_tls,
            )
        except MySQLError as exc:
            log.warning("KILL %s %d on %s: cannot connect: %s", what, be.thread_id, be.server, exc)
            self.log_backend_error(be.server, be.server.hostgroup, exc, during="kill")
            raise
        try:
            with trio.fail_after(self.settings.vars.connect_timeout_server / 1000):
                tracker = await killer.simple_query(f"KILL {what} {be.thread_id}")
            if tracker.error is not None:
                err = parse_err(tracker.error)
                if err.code != 1094:  # the thread already ended: nothing left to kill
                    raise err
        except (ConnectionLost, MalformedPacket, trio.TooSlowError) as exc:
            raise MySQLError(1158, f"KILL {what} on backend {be.server} failed: {exc}", "08S01") from exc
        finally:
            await killer.aclose()
