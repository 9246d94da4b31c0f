"""The supervisor of an instance with ``threads = N > 1``: one proxy to the operator, N workers.

The supervisor is a :class:`~myrouter.app.Proxy` in the supervisor role: it runs the admin interface
(6032), ``/metrics``, the monitor (one set of checks per backend for the whole instance), the
cluster node and the configuration layers, and serves no client. It starts N worker processes
(``python -m myrouter worker``), each with a socketpair channel (:mod:`.channel`), and:

* **configuration**: ``LOAD ... TO RUNTIME`` (and SIGHUP, and a cluster revision) is prepared in
  every worker (what can fail: log files, TLS), then committed everywhere, before the statement
  returns; one worker's refusal aborts it everywhere (``apply_everywhere``);
* **servers**: what the monitor finds (statuses, writer/reader moves, lag, ping) goes to every
  worker when it changes and every second; the workers' traffic errors come back here, where the
  instance's count shuns a server;
* **limits**: ``max_connections`` and the users' ``max_connections`` are counted here, per login
  (each worker asks before it lets a client in: exact for the instance, one round trip over a local
  socket per login). A server's ``max_connections`` is split between the workers instead
  (``worker_share``): the pools decide synchronously on the data plane, and a round trip per
  backend connection would put the supervisor on their path; ``stats`` shows the sum;
* **stats**: the ``stats_mysql_*`` tables and ``/metrics`` are the workers' rows merged
  (:mod:`.merge`); ``KILL`` and ``COM_PROCESS_KILL`` reach the worker the id names (ids are
  ``worker + 1 + k * threads``);
* **faults**: a worker that dies is logged and started again (its clients lost their connections;
  the others' did not notice); SIGTERM drains every worker within ``shutdown_timeout``; a worker
  dies with its supervisor (``PR_SET_PDEATHSIG`` and the channel's end).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import trio

from ..app import Proxy
from ..config import Config
from ..net.listen import close_listener, listen
from ..protocol.errors import ER_UNKNOWN_ERROR, MySQLError
from ..routing.hostgroups import Server
from ..routing.rules import RuleSet
from ..runtime.role import ProcessRole
from . import merge
from .channel import Channel, ChannelBroken, RemoteError
from .gtidboard import create_board
from .worker import server_states

log = logging.getLogger("myrouter")

START_TIMEOUT = 60.0  # a worker's start: its config, binding the client port
CALL_TIMEOUT = 10.0  # a worker that does not answer a request in this time is treated as gone for it
SERVER_PUSH_INTERVAL = 1.0  # the servers' state goes to the workers at least this often
RESTART_DELAY = 0.5  # first wait before restarting a dead worker; doubles up to RESTART_DELAY_MAX
RESTART_DELAY_MAX = 10.0
STABLE_AFTER = 60.0  # a worker that ran this long restarts at once again
LOG_SIZE_CHECK_INTERVAL = 1.0  # how often the supervisor looks at the shared log files' size
DRAIN_GRACE = 10.0  # past shutdown_timeout, a worker that has not exited is killed
CHANNEL_END_GRACE = 2.0  # a worker whose channel ended and that has not exited this long after is killed


def worker_share(total: int, index: int, threads: int) -> int:
    """Worker ``index``'s part of a server's ``max_connections``: the parts add up to ``total``."""
    return total // threads + (1 if index < total % threads else 0)


def config_for_worker(config: Config, index: int, threads: int) -> Config:
    """The configuration worker ``index`` runs: each server's ``max_connections`` is its share."""
    servers = tuple(dataclasses.replace(s, max_connections=worker_share(s.max_connections, index, threads))
                    for s in config.mysql_servers)
    return dataclasses.replace(config, mysql_servers=servers)


@dataclasses.dataclass(eq=False)
class WorkerProcess:
    index: int
    process: subprocess.Popen
    channel: Channel
    started_at: float = dataclasses.field(default_factory=time.monotonic)
    ready: bool = False
    logins: dict[str, int] = dataclasses.field(default_factory=dict)  # its counted logins, by user


class Supervisor(Proxy):
    def __init__(self, config: Config, *, worker_command: list[str]) -> None:
        threads = config.mysql_variables.threads
        super().__init__(config, ProcessRole("supervisor", 0, threads))
        self.threads = threads
        self.worker_command = worker_command  # argv of `python -m myrouter [options] worker`
        self.workers: dict[int, WorkerProcess] = {}
        self.worker_restarts = 0
        self.stopping = False
        self._held: list[socket.socket] = []
        self._workers_nursery: trio.Nursery | None = None
        self._servers_changed = trio.Event()
        self.topology.on_status_change(lambda server, old: self._servers_changed.set())
        self.gtid_fd = create_board(threads)

    # -- running -----------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Hold the client port, run the admin interface and the monitor, start the workers; return
        once drained (``drain_and_stop``) or cancelled."""
        if self.vars.have_ssl:
            self.load_tls()  # bad certificate files stop the start here (TLSSetupError), as in one process
        for host, port in self.vars.listen_addresses():
            # bound, not listening: port 0 gets its number here, and the workers all bind that one
            self._held.append(listen(host, port, reuse_port=True, backlog=None))
        self.listen_addresses = [s.getsockname()[:2] for s in self._held]
        try:
            async with trio.open_nursery() as nursery:
                self._workers_nursery = nursery
                await nursery.start(self._control, nursery.cancel_scope)
                async with trio.open_nursery() as starting:  # all at once: each imports and binds
                    for index in range(self.threads):
                        starting.start_soon(nursery.start, self._keep_worker, index)
                nursery.start_soon(self._push_servers)
                nursery.start_soon(self._rotate_logs_by_size)
                log.info("myrouter listening for MySQL clients on %s with %d workers (server version %s)",
                         ", ".join(f"{h}:{p}" for h, p in self.listen_addresses), self.threads, self.server_version)
                task_status.started(self)
        finally:
            for s in self._held:
                close_listener(s)
            os.close(self.gtid_fd)

    async def _control(self, scope: trio.CancelScope, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """The admin interface, /metrics, the monitor and the cluster node (``Proxy.run`` in the
        supervisor role); when they end (drained), everything does."""
        await Proxy.run(self, task_status=task_status)
        scope.cancel()

    async def _keep_worker(self, index: int, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Worker ``index``: start it, and start it again whenever it dies, until the instance stops."""
        delay = RESTART_DELAY
        first = True
        while True:
            worker = await self._start_worker(index, first=first)
            if first:
                task_status.started()
                first = False
            status = await exited(worker.process)
            self._forget(worker)
            if self.stopping:
                return
            lived = time.monotonic() - worker.started_at
            self.worker_restarts += 1
            if lived > STABLE_AFTER:
                delay = RESTART_DELAY
            if status == 0:  # it drained and stopped (someone sent it SIGTERM): its clients were told
                log.error("worker %d (pid %d) stopped on its own after %.0fs; restarting it in %.1fs", index,
                          worker.process.pid, lived, delay)
            else:
                how = f"killed by {signal.Signals(-status).name}" if status < 0 else f"exited with status {status}"
                log.error("worker %d (pid %d) %s after %.0fs; its clients lost their connections; restarting it "
                          "in %.1fs", index, worker.process.pid, how, lived, delay)
            await trio.sleep(delay)
            delay = min(delay * 2, RESTART_DELAY_MAX)
            if self.stopping:
                return

    async def _start_worker(self, index: int, *, first: bool) -> WorkerProcess:
        assert self._workers_nursery is not None
        ours, theirs = socket.socketpair()
        command = [*self.worker_command, "--channel-fd", str(theirs.fileno()), "--index", str(index),
                   "--threads", str(self.threads), "--supervisor-pid", str(os.getpid())]
        try:
            # started from this (the main) thread: a worker's PR_SET_PDEATHSIG follows the thread that
            # started it, and a helper thread (trio.lowlevel.open_process's) ends after 10 s idle
            process = subprocess.Popen(command, pass_fds=(theirs.fileno(), self.gtid_fd))
        finally:
            theirs.close()
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
        channel = Channel(stream, name=f"worker {index}")
        worker = WorkerProcess(index, process, channel)
        # what it asks is bound to this process, not to its index: a late message of a dead worker
        # never touches the counts of the one started in its place
        channel.on_request = functools.partial(self._worker_request, worker)
        channel.on_note = functools.partial(self._worker_note, worker)
        self.workers[index] = worker
        await self._workers_nursery.start(self._keep_channel, worker)
        try:
            with trio.fail_after(START_TIMEOUT):
                reply = await channel.call(
                    "start", config=config_for_worker(self.config, index, self.threads), rules=self.rules,
                    server_version=self.server_version, addresses=self.listen_addresses,
                    servers=server_states(self.topology), gtid_board=self.gtid_fd)
        except (ChannelBroken, RemoteError, MySQLError, trio.TooSlowError) as exc:
            process.kill()
            status = await exited(process)
            self._forget(worker)
            if first:  # the instance does not start: the worker's log says why (address in use, ...)
                raise OSError(f"worker {index} did not start ({exc}; exit status {status})") from None
            log.error("worker %d did not start again (%s; exit status %d)", index, exc, status)
            return worker
        worker.ready = True
        log.info("worker %d started (pid %d)", index, reply["pid"])
        return worker

    async def _keep_channel(self, worker: WorkerProcess, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """The worker's channel; a worker that is still running once it ended (it sent something
        unreadable) cannot be steered: it is killed, and ``_keep_worker`` starts another."""
        await worker.channel.run(task_status=task_status)
        with trio.move_on_after(CHANNEL_END_GRACE):  # the usual case: the worker is ending (or ended)
            await exited(worker.process)
        if worker.process.poll() is None and not self.stopping:
            log.error("worker %d (pid %d): its channel is closed: killing it", worker.index, worker.process.pid)
            worker.process.kill()

    def _forget(self, worker: WorkerProcess) -> None:
        """A worker ended: its logins leave the instance's counts."""
        if self.workers.get(worker.index) is worker:
            del self.workers[worker.index]
        worker.ready = False
        reg = self.session_registry
        for user, n in worker.logins.items():
            for _ in range(n):
                reg.uncount_login(user)
        worker.logins.clear()
        worker.channel.closed = True

    def _live(self) -> list[WorkerProcess]:
        return [w for w in self.workers.values() if w.ready and not w.channel.closed]

    async def _push_servers(self) -> None:
        """The servers' state to every worker: when a status changes, and every second (lag, ping)."""
        while True:
            with trio.move_on_after(SERVER_PUSH_INTERVAL):
                await self._servers_changed.wait()
            self._servers_changed = trio.Event()
            states = server_states(self.topology)
            for w in self._live():
                w.channel.note_nowait("servers", servers=states)

    async def _rotate_logs_by_size(self) -> None:
        """The query log and the audit log rotated here past their size, whichever workers wrote them
        (a worker never rotates the shared files itself); then the workers reopen them."""
        while True:
            await trio.sleep(LOG_SIZE_CHECK_INTERVAL)
            try:
                rotated = self.logs.rotate_oversized()
            except OSError as exc:
                log.error("cannot rotate a log file: %s", exc)
                continue
            if rotated:
                try:
                    await self.in_workers("REOPEN LOGS")
                except MySQLError as exc:
                    log.error("after rotating %s: %s", ", ".join(rotated), exc.message)

    async def drain_and_stop(self, timeout: float) -> None:
        """SIGTERM: every worker drains (within ``timeout``) and exits; then the supervisor stops."""
        if self.stopping:
            return
        self.stopping = True
        self.session_registry.draining = True
        self._refresh_views()
        log.info("draining %d workers, timeout %.1fs", len(self.workers), timeout)
        async with trio.open_nursery() as nursery:
            for w in list(self.workers.values()):
                nursery.start_soon(self._drain_worker, w, timeout)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _drain_worker(self, worker: WorkerProcess, timeout: float) -> None:
        with trio.move_on_after(timeout + DRAIN_GRACE):
            if worker.ready:
                try:
                    await worker.channel.call("drain", seconds=timeout)
                except (ChannelBroken, RemoteError, MySQLError) as exc:
                    log.debug("worker %d: drain: %s", worker.index, exc)
            else:  # still starting: it has no client; SIGTERM ends it (drained, if it got that far)
                worker.process.terminate()
            await exited(worker.process)
            return
        log.error("worker %d (pid %d) did not stop within shutdown_timeout: killing it", worker.index,
                  worker.process.pid)
        worker.process.kill()
        await exited(worker.process)

    # -- what the workers ask -----------------------------------------------------------

    async def _worker_request(self, worker: WorkerProcess, kind: str, body: dict) -> Any:
        if kind == "admit":
            return self._admit(worker, body["username"], body["user_limit"], body["limit"])
        if kind == "find":
            return await self._ask_owner(body["session_id"], "find", None, session_id=body["session_id"])
        if kind == "kill":
            return await self._ask_owner(body["session_id"], "kill", False, session_id=body["session_id"],
                                         query_only=body["query_only"])
        if kind == "sessions":
            rows: list = []
            for w in self._live():
                if w is not worker:
                    try:
                        rows += await w.channel.call("sessions", timeout=CALL_TIMEOUT)
                    except (ChannelBroken, RemoteError) as exc:
                        log.debug("worker %d: sessions: %s", w.index, exc)
            return rows
        raise RemoteError(f"unknown request {kind!r}")

    def _worker_note(self, worker: WorkerProcess, kind: str, body: dict) -> None:
        reg = self.session_registry
        if kind == "left":
            user = body["username"]
            if worker.logins.get(user, 0) > 0:  # (none once it was forgotten: _forget uncounted them all)
                worker.logins[user] -= 1
                reg.uncount_login(user)
        elif kind == "changed_user":
            old, new = body["old"], body["new"]
            if worker.logins.get(old, 0) > 0:
                worker.logins[old] -= 1
                worker.logins[new] = worker.logins.get(new, 0) + 1
                reg.change_user(old, new)
        elif kind == "connect_error":
            server = self.hostgroups.find(body["hostgroup"], body["host"], body["port"])
            if server is not None:
                server.note_connect_error(body["code"])  # the instance's count: may shun (pushed to all)
        else:
            log.warning("worker %d: unknown notice %r", worker.index, kind)

    def _admit(self, worker: WorkerProcess, user: str, user_limit: int, limit: int) -> str | None:
        reg = self.session_registry
        if reg.logged_in_sessions >= limit:
            return "max_connections"
        if reg.user_sessions.get(user, 0) >= user_limit:
            return "user"
        if self.workers.get(worker.index) is not worker:
            return "max_connections"  # a worker that is gone cannot hold a login
        reg.count_login(user)
        worker.logins[user] = worker.logins.get(user, 0) + 1
        return None

    async def _ask_owner(self, owner_of: int, kind: str, missing: Any, **body: Any) -> Any:
        """Ask the worker that holds session ``owner_of`` (``missing`` if it is not running)."""
        worker = self.workers.get(self.role.worker_of(owner_of))
        if worker is None or not worker.ready:
            return missing
        try:
            return await worker.channel.call(kind, **body, timeout=CALL_TIMEOUT)
        except (ChannelBroken, RemoteError) as exc:
            log.debug("worker %d: %s: %s", worker.index, kind, exc)
            return missing

    # -- the admin's view of the instance (ProxyControl) ---------------------------------

    async def apply_everywhere(self, config: Config, rules: RuleSet | None = None) -> list[Server]:
        """Prepare ``config`` here and in every worker; commit everywhere only if all could."""
        prepared = self.prepare_runtime(config)  # MySQLError: nothing changed anywhere
        workers = self._live()
        errors: list[tuple[int, BaseException]] = []
        ready: list[WorkerProcess] = []

        async def prepare(w: WorkerProcess) -> None:
            try:
                await w.channel.call("prepare", config=config_for_worker(config, w.index, self.threads),
                                     timeout=CALL_TIMEOUT)
                ready.append(w)
            except (ChannelBroken, RemoteError, MySQLError) as exc:
                errors.append((w.index, exc))

        async with trio.open_nursery() as nursery:
            for w in workers:
                nursery.start_soon(prepare, w)
        if errors:
            for w in ready:
                try:
                    await w.channel.call("abort", timeout=CALL_TIMEOUT)
                except (ChannelBroken, RemoteError) as exc:
                    log.debug("worker %d: abort: %s", w.index, exc)
            self.discard_prepared(prepared)
            index, exc = errors[0]
            if isinstance(exc, MySQLError):
                raise MySQLError(exc.code, f"worker {index}: {exc.message}", exc.sqlstate)
            raise MySQLError(ER_UNKNOWN_ERROR, f"worker {index} cannot apply the configuration: {exc}", "HY000")
        retired = self.commit_runtime(prepared, rules)
        servers = server_states(self.topology)

        async def commit(w: WorkerProcess) -> None:
            try:
                await w.channel.call("commit", rules=rules, servers=servers, timeout=CALL_TIMEOUT)
            except (ChannelBroken, RemoteError) as exc:  # it died meanwhile: it restarts with this config
                log.warning("worker %d: commit: %s", w.index, exc)

        async with trio.open_nursery() as nursery:
            for w in ready:
                nursery.start_soon(commit, w)
        return retired

    async def gather_stats(self, names: frozenset[str]) -> dict[str, list]:
        wanted = names & merge.WORKER_TABLES
        if not wanted:
            return {}
        per_worker: dict[int, dict[str, list]] = {}

        async def ask(w: WorkerProcess) -> None:
            try:
                per_worker[w.index] = await w.channel.call("rows", names=sorted(wanted), timeout=CALL_TIMEOUT)
            except (ChannelBroken, RemoteError) as exc:
                log.debug("worker %d: rows: %s", w.index, exc)

        async with trio.open_nursery() as nursery:
            for w in self._live():
                nursery.start_soon(ask, w)
        own = self.admin.local_stats_tables(wanted & {"stats_mysql_connection_pool", "stats_mysql_global"})
        out = {}
        for name in wanted:
            rows = {i: tables[name] for i, tables in per_worker.items()}
            out[name] = merge.merge(name, rows, own.get(name, []))
        if "stats_mysql_global" in out:
            out["stats_mysql_global"].append(("Worker_restarts", self.worker_restarts))
        return out

    async def in_workers(self, action: str) -> int:
        if action == "FLUSH LOGS":
            action = "REOPEN LOGS"  # rotated here already: the workers go on in the new files
        total = 0
        for w in self._live():
            try:
                total += await w.channel.call("action", action=action, timeout=CALL_TIMEOUT)
            except RemoteError as exc:
                raise MySQLError(ER_UNKNOWN_ERROR, f"PROXYSQL {action}: worker {w.index}: {exc}", "HY000") from None
            except ChannelBroken as exc:  # gone, or wedged: it does not hold this up
                log.warning("worker %d: %s: %s", w.index, action, exc)
        return total

    async def kill_session(self, session_id: int, *, query_only: bool) -> bool:
        return await self._ask_owner(session_id, "kill", False, session_id=session_id, query_only=query_only)


async def exited(process: subprocess.Popen) -> int:
    """Wait for ``process`` to end (a pidfd is readable then); its exit status (-N: killed by signal N)."""
    if process.returncode is not None:
        return process.returncode
    fd = os.pidfd_open(process.pid)
    try:
        await trio.lowlevel.wait_readable(fd)
    finally:
        os.close(fd)
    return process.wait()


def worker_command(log_level: str, log_format: str) -> list[str]:
    """The command line that starts a worker (the rest is added per worker)."""
    return [sys.executable, "-m", "myrouter", "--log-level", log_level, "worker", "--log-format", log_format]
