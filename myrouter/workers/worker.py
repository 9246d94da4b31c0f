"""One worker process: a proxy serving clients, steered by the supervisor over its channel.

The worker serves the client port (SO_REUSEPORT: every worker listens on it, the kernel spreads the
connections) with its own data plane, pools and sessions. It runs no admin interface, no monitor and
no cluster node: the supervisor sends it the running configuration (two-phase, so that a LOAD
applies everywhere or nowhere), the servers' state its monitor finds, and the admin's requests
(stats rows, KILL, FLUSH ...). What the whole instance shares, the worker asks the supervisor
(:class:`SupervisorLink`, the sessions' ``Peers``): logins against ``max_connections``, another
worker's session for KILL and SHOW PROCESSLIST, traffic errors that shun a server.

A worker ends when its supervisor does: ``PR_SET_PDEATHSIG`` (SIGTERM, then it drains), and a
channel closed by the other end.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import signal
import socket
from typing import Any

import trio

from ..admin.runtime import release_connections
from ..app import PreparedRuntime, Proxy
from ..engine import HostLoop
from ..frontend.local import process_rows
from ..routing.hostgroups import OFFLINE_HARD
from ..runtime.role import ProcessRole
from ..runtime.topology import Topology
from .channel import Channel, ChannelBroken
from .gtidboard import GtidBoard

log = logging.getLogger("myrouter")

PR_SET_PDEATHSIG = 1
CALL_TIMEOUT = 10.0  # a supervisor that does not answer in this time is treated as gone for that request


def die_with_parent(parent_pid: int) -> None:
    """SIGTERM when the supervisor dies (Linux ``PR_SET_PDEATHSIG``); if it died already, now."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("worker: prctl(PR_SET_PDEATHSIG) failed (errno %d): the channel's end stops it instead",
                    ctypes.get_errno())
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGTERM)


class SupervisorLink:
    """The worker's end of the channel: what its sessions ask of the instance (``runtime.role.Peers``),
    and what it does when the supervisor asks."""

    def __init__(self, stream: trio.SocketStream, role: ProcessRole) -> None:
        self.role = role
        self.channel = Channel(stream, on_request=self._on_request, on_note=self._on_note,
                               name=f"worker {role.index}")
        self.proxy: Proxy | None = None
        self.started = trio.Event()  # the supervisor's start request came
        self.serving = trio.Event()  # the proxy listens
        self._start_args: dict[str, Any] | None = None
        self.stop_before_start = False
        self._prepared: PreparedRuntime | None = None
        self.gtid_board: GtidBoard | None = None

    # -- Peers: what the sessions ask of the instance ----------------------------------

    async def admit(self, username: str, user_limit: int, limit: int) -> str | None:
        try:
            return await self.channel.call("admit", username=username, user_limit=user_limit, limit=limit,
                                           timeout=CALL_TIMEOUT)
        except ChannelBroken as exc:  # the instance's count cannot be asked: refused, not let in uncounted
            log.warning("worker %d: cannot count a login with the supervisor (%s): refused", self.role.index, exc)
            return "max_connections"

    def left(self, username: str) -> None:
        self.channel.note_nowait("left", username=username)

    def changed_user(self, old: str, new: str) -> None:
        self.channel.note_nowait("changed_user", old=old, new=new)

    async def find(self, session_id: int) -> dict[str, Any] | None:
        return await self._ask("find", None, session_id=session_id)

    async def kill(self, session_id: int, *, query_only: bool) -> bool:
        return await self._ask("kill", False, session_id=session_id, query_only=query_only)

    async def sessions(self) -> list:
        return await self._ask("sessions", [])

    async def _ask(self, kind: str, otherwise: Any, **body: Any) -> Any:
        """Another worker's answer through the supervisor; ``otherwise`` if none comes (logged)."""
        try:
            return await self.channel.call(kind, timeout=CALL_TIMEOUT, **body)
        except ChannelBroken as exc:
            log.warning("worker %d: %s through the supervisor failed: %s", self.role.index, kind, exc)
            return otherwise

    def connect_error(self, hostgroup: int, host: str, port: int, code: int | None) -> None:
        self.channel.note_nowait("connect_error", hostgroup=hostgroup, host=host, port=port, code=code)

    # -- what the supervisor asks --------------------------------------------------------

    async def _on_request(self, kind: str, body: dict) -> Any:
        if kind == "start":
            self._start_args = body
            self.started.set()
            await self.serving.wait()  # a start that fails ends the process (and the channel)
            assert self.proxy is not None
            return {"pid": os.getpid(), "addresses": self.proxy.listen_addresses}
        proxy = self.proxy
        if proxy is None and kind == "drain":  # stopping before it served anyone
            self.stop_before_start = True
            self.started.set()
            return True
        if proxy is None:
            raise RuntimeError(f"{kind} before start")
        if kind == "rows":
            return await proxy.admin.own_stats_tables(frozenset(body["names"]))
        if kind == "prepare":
            if self._prepared is not None:
                proxy.discard_prepared(self._prepared)
            self._prepared = proxy.prepare_runtime(body["config"])
            return True
        if kind == "commit":
            prepared, self._prepared = self._prepared, None
            if prepared is None:
                raise RuntimeError("commit without prepare")
            retired = proxy.commit_runtime(prepared, body["rules"])
            proxy.admin.apply_variables()
            soft, hard = proxy.topology.offline_servers(retired)
            release_connections(proxy, soft, hard)
            mirror_servers(proxy.topology, body["servers"])
            return True
        if kind == "abort":
            if self._prepared is not None:
                proxy.discard_prepared(self._prepared)
                self._prepared = None
            return True
        if kind == "action":
            return proxy.run_admin_action(body["action"])
        if kind == "find":
            s = proxy.sessions.get(body["session_id"])
            return None if s is None else {"username": s.username, "state": s.state.value}
        if kind == "kill":
            return await proxy.kill_session(body["session_id"], query_only=body["query_only"])
        if kind == "sessions":
            return process_rows(proxy.sessions.values())
        if kind == "drain":
            await proxy.drain_and_stop(body["seconds"])
            return True
        raise RuntimeError(f"unknown request {kind!r}")

    def _on_note(self, kind: str, body: dict) -> None:
        if kind == "servers":
            if self.proxy is not None:
                mirror_servers(self.proxy.topology, body["servers"])
        else:
            log.warning("worker %d: unknown notice %r from the supervisor", self.role.index, kind)


def server_states(topology: Topology) -> list[tuple]:
    """The supervisor's view of every server entry (what its monitor and the instance's traffic found),
    for the workers to mirror."""
    return [(s.hostgroup, s.host, s.port, s.admin_status, s.shun_health, s.shun_lag, s.shun_traffic, s.read_only,
             s.repl_lag_ms, s.ping_time_us) for s in topology.hostgroups.servers()]


def mirror_servers(topology: Topology, states: list[tuple]) -> None:
    """Make this worker's hostgroups the supervisor's: the same entries (the monitor's writer/reader
    moves), statuses and measurements. Entries the supervisor no longer has are retired (OFFLINE_HARD,
    their connections left to the sweeper), as the monitor retires them in a single process."""
    hg = topology.hostgroups
    wanted = {(e[0], e[1], e[2]): e for e in states}
    for s in hg.servers():
        if (s.hostgroup, s.host, s.port) not in wanted:
            hg.remove(s)
            old = s.status
            if s.set_admin_status(OFFLINE_HARD, notify=False) is not None:
                topology.server_status_changed(s, old, mirrored=True)
            topology.note_retired(s)
    for key, (hostgroup, host, port, admin_status, shun_health, shun_lag, shun_traffic, read_only, lag,
              ping) in wanted.items():
        s = hg.find(hostgroup, host, port)
        if s is None:
            other = next(iter(hg.entries(host, port)), None)
            if other is None:
                continue  # not in this worker's configuration (the next commit brings it)
            s = other.copy_to(hostgroup)
            hg.add(s)
        s.admin_status = admin_status
        s.shun_health, s.shun_lag, s.shun_traffic = shun_health, shun_lag, shun_traffic
        s.read_only = read_only
        s.repl_lag_ms = lag
        if ping is not None:
            s.note_ping_time(ping)
        old = s.refresh_status(notify=False)
        if old is not None:
            topology.server_status_changed(s, old, mirrored=True)  # the pools close what no longer serves


async def _serve(link: SupervisorLink, args: dict[str, Any]) -> None:
    role = link.role
    proxy = Proxy(args["config"], role, args["rules"])  # the supervisor's rules, not the files'
    link.gtid_board = GtidBoard.attach(args["gtid_board"], role)
    proxy.join_instance(peers=link, shared_gtids=link.gtid_board, client_addresses=args["addresses"],
                        server_version=args["server_version"])
    mirror_servers(proxy.topology, args["servers"])
    async with trio.open_nursery() as nursery:
        link.proxy = await nursery.start(_run_proxy, proxy, nursery.cancel_scope)
        link.serving.set()
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    continue  # the supervisor reloads, and tells the workers
                # the supervisor is gone (PR_SET_PDEATHSIG), or someone stopped this worker alone
                log.info("worker %d: received %s: draining", role.index, signal.Signals(signum).name)
                await proxy.drain_and_stop(proxy.vars.shutdown_timeout / 1000)


async def _run_proxy(proxy: Proxy, scope: trio.CancelScope, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """The worker's proxy until it is drained; then the worker ends."""
    await proxy.run(task_status=task_status)
    scope.cancel()


async def _worker_main(channel_fd: int, role: ProcessRole) -> None:
    sock = socket.socket(fileno=channel_fd)
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
    link = SupervisorLink(stream, role)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_run_channel, link, nursery.cancel_scope)
        await link.started.wait()
        if not link.stop_before_start:
            assert link._start_args is not None
            await _serve(link, link._start_args)
        nursery.cancel_scope.cancel()


async def _run_channel(link: SupervisorLink, scope: trio.CancelScope) -> None:
    """The channel until the supervisor closes it; then this worker drains and ends."""
    await link.channel.run()
    proxy = link.proxy
    log.info("worker %d: the supervisor closed the channel: stopping", link.role.index)
    if proxy is not None:
        await proxy.drain_and_stop(proxy.vars.shutdown_timeout / 1000)
    scope.cancel()


def run_worker(channel_fd: int, index: int, threads: int, supervisor_pid: int) -> None:
    """``python -m myrouter worker``: what the supervisor starts, once per worker."""
    die_with_parent(supervisor_pid)
    role = ProcessRole("worker", index, threads)
    with HostLoop() as loop:
        loop.run(functools.partial(_worker_main, channel_fd, role))
