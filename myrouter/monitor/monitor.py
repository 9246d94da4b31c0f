"""The monitor: periodic checks of every backend, shunning, writer/reader discovery.

One :class:`Monitor` per proxy, run in the proxy's services nursery. It
checks each distinct host:port of ``mysql_servers`` (entries that are all
OFFLINE_HARD are skipped, as in ProxySQL) with the monitor account
(``mysql-monitor_username`` / ``mysql-monitor_password``), each kind of
check on its own interval and with its own timeout:

=================  ==============================  ==========================================
check              interval / timeout              on whom
=================  ==============================  ==========================================
connect            monitor_connect_interval/       every server
                   monitor_connect_timeout
ping               monitor_ping_interval/          every server
                   monitor_ping_timeout
read_only          monitor_read_only_interval/     servers of mysql_replication_hostgroups
                   monitor_read_only_timeout
replication lag    monitor_replication_lag_        entries with max_replication_lag > 0
                   interval/_timeout               (not in a writer hostgroup)
heartbeat write    monitor_heartbeat_write_        writers (read_only=OFF, writer hostgroup),
                   interval (myrouter's own)       when a heartbeat table is configured
=================  ==============================  ==========================================

Results go to the ``monitor.mysql_server_*_log`` admin tables
(:mod:`myrouter.monitor.logs`). Decisions (:mod:`myrouter.monitor.state`):
``monitor_ping_max_failures`` failed connect/ping checks in a row shun a
server, too much lag shuns an entry, and both come back after
``shun_recovery_time_sec`` without failure; read_only results move servers
between writer and reader hostgroups (:meth:`Hostgroups.place`). Every
status change reaches ``Proxy.server_status_changed``.

With ``mysql-monitor_enabled`` false no check runs and the shuns the monitor
made are lifted (nothing would ever lift them); the traffic-side rule
(``shun_on_failures``) and its recovery still work.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import trio

from ..config import Config
from ..routing.hostgroups import OFFLINE_HARD, Hostgroups, Server
from .checks import Checker, Credentials, Result, parse_heartbeat_table
from .logs import (
    CONNECT,
    PING,
    READ_ONLY,
    REPLICATION_LAG,
    MonitorLogs,
    history_ms,
    wall_us,
)
from .state import (
    EndpointHealth,
    ReadOnlyTimeouts,
    apply_health,
    apply_lag,
    lag_checked,
    recover,
)

if TYPE_CHECKING:
    from ..runtime.config import RuntimeConfig
    from ..runtime.topology import Topology

log = logging.getLogger("myrouter.monitor")

__all__ = ["Monitor"]

Endpoint = tuple[str, int]


def clock() -> float:
    """Trio's clock inside a Trio run (``autojump_clock`` in tests), ``time.monotonic`` outside."""
    try:
        return trio.current_time()
    except RuntimeError:
        return time.monotonic()


class Monitor:
    """Checks the backends of one proxy and acts on the results (see the module docstring)."""

    def __init__(self, topology: Topology, settings: RuntimeConfig) -> None:
        self.topology = topology  # the hostgroups it checks and changes; status changes go through it
        self.settings = settings  # the running variables (vars) and the TLS context for servers
        self.logs = MonitorLogs()
        self.checker = Checker()
        self.checker.pool.tls_for = self._tls_for
        self.health: dict[Endpoint, EndpointHealth] = {}
        self.heartbeat_table = ""  # validated mysql-monitor_replication_lag_use_percona_heartbeat
        self.heartbeat_reference: float | None = None  # epoch seconds of the newest heartbeat written
        self.counters: dict[str, int] = {f"{k}_check_{r}": 0 for k in ("connect", "ping", "read_only",
                                                                       "replication_lag") for r in ("OK", "ERR")}
        self._creds: Credentials | None = None
        self._changed = trio.Event()
        self._heartbeat_errors: dict[Endpoint, str] = {}
        self._disabled_cleared = False
        self.configure()

    def _tls_for(self, endpoint: Endpoint):
        """The monitor logs in over TLS where traffic does: a server any entry of has use_ssl."""
        if any(s.use_ssl for s in self.topology.hostgroups.entries(*endpoint)):
            return self.settings.backend_tls
        return None

    # ------------------------------------------------------------------ configuration

    def configure(self) -> None:
        """Take the running variables and hostgroups into account (start, LOAD ... TO RUNTIME)."""
        v = self.settings.vars
        p = self.topology.hostgroups.policy
        p.shun_on_failures = v.shun_on_failures
        p.shun_recovery_time_sec = v.shun_recovery_time_sec
        p.reader_fallback = v.reader_fallback_to_writer
        p.on_change = self.topology.server_status_changed
        p.clock = clock
        creds = Credentials(v.monitor_username, v.monitor_password)
        if self._creds is not None and creds != self._creds:
            for ep in self.checker.pool.endpoints():
                self.checker.pool.forget(ep)  # logged in with the old account
        self._creds = creds
        table = v.monitor_replication_lag_use_percona_heartbeat.strip()
        if table:
            try:
                parse_heartbeat_table(table)
            except ValueError as exc:
                log.error("mysql-monitor_replication_lag_use_percona_heartbeat: %s; lag is read from the "
                          "replica status instead", exc)
                table = ""
        self.heartbeat_table = table
        self._changed.set()  # wake the loops: intervals may have changed
        self._changed = trio.Event()

    def reconcile(self, config: Config) -> tuple[Hostgroups, list[Server]]:
        """Hostgroups for a new configuration that keep the live servers, the monitor's
        writer/reader moves and its health shuns (see :meth:`Hostgroups.reconcile`).

        Statuses are not notified here: the caller compares before and after.
        """
        known = {ep: h.read_only for ep, h in self.health.items() if h.read_only is not None}
        new, retired = self.topology.hostgroups.reconcile(
            config.mysql_servers, config.mysql_replication_hostgroups, known,
            config.mysql_variables.monitor_writer_is_also_reader)
        for s in new.servers():
            h = self.health.get(s.endpoint)
            s.shun_health = bool(h and h.shunned)
            if h is not None and h.read_only is not None:
                s.read_only = h.read_only
            s.refresh_status(notify=False)
        present = set(new.endpoints())
        for ep in list(self.health):
            if ep not in present:
                del self.health[ep]
                self.checker.forget(ep)
        return new, retired

    # ------------------------------------------------------------------ running

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Run the check loops until cancelled; idle monitor connections are closed at the end."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._loop, "monitor_connect_interval", self._connect_one, self._all_endpoints)
                nursery.start_soon(self._loop, "monitor_ping_interval", self._ping_one, self._all_endpoints)
                nursery.start_soon(self._loop, "monitor_read_only_interval", self._read_only_one,
                                   self._replication_endpoints)
                nursery.start_soon(self._loop, "monitor_replication_lag_interval", self._lag_one, self._lag_endpoints)
                nursery.start_soon(self._loop, "monitor_heartbeat_write_interval", self._heartbeat_one,
                                   self._heartbeat_endpoints)
                nursery.start_soon(self._housekeeping)
                task_status.started()
        finally:
            await self.checker.pool.aclose()

    def _interval(self, name: str) -> float:
        v = self.settings.vars
        if not v.monitor_enabled:
            return 1.0
        if name == "monitor_heartbeat_write_interval":
            ms = v.monitor_heartbeat_write_interval
            return max(10, ms) / 1000 if ms > 0 and self.heartbeat_table else 1.0
        return getattr(v, name) / 1000

    async def _loop(self, interval_name: str, check, endpoints) -> None:
        """Every interval: run ``check(endpoint, vars)`` on each of ``endpoints()`` at once."""
        while True:
            start = trio.current_time()
            v = self.settings.vars
            targets = endpoints() if v.monitor_enabled else []
            if targets:
                async with trio.open_nursery() as nursery:
                    for ep in targets:
                        nursery.start_soon(self._guarded, check, ep, v)
            await self._wait_next(start, interval_name)

    async def _guarded(self, check, ep: Endpoint, v: Any) -> None:
        """One check; a bug or a response nobody expected ends that check, never the monitor."""
        try:
            await check(ep, v)
        except Exception:
            log.exception("monitor: %s of %s:%d failed unexpectedly; the next round runs as usual",
                          check.__name__.strip("_"), ep[0], ep[1])

    async def _wait_next(self, start: float, interval_name: str) -> None:
        """Sleep until ``start`` + the interval; a configuration change re-reads the interval."""
        while True:
            deadline = start + self._interval(interval_name)
            if trio.current_time() >= deadline:
                return
            changed = self._changed
            with trio.move_on_at(deadline):
                await changed.wait()

    async def _housekeeping(self) -> None:
        """Lift shuns whose recovery time has come; drop log rows older than monitor_history."""
        last_purge = -1e9
        while True:
            v = self.settings.vars
            now = trio.current_time()
            if not v.monitor_enabled:
                self._clear_monitor_shuns()
            else:
                self._disabled_cleared = False
            for s in recover(self.topology.hostgroups, self.health, now, v.shun_recovery_time_sec):
                log.info("server %s:%d (hostgroup %d) passes its checks again: ONLINE", s.host, s.port, s.hostgroup)
            if now - last_purge >= 1.0:
                self.logs.purge(history_ms(v))
                last_purge = now
            await trio.sleep(max(0.05, min(0.5, v.shun_recovery_time_sec / 4)))

    def _clear_monitor_shuns(self) -> None:
        if self._disabled_cleared:
            return
        self._disabled_cleared = True
        for h in self.health.values():
            h.shunned = False
            h.failures = 0
        for s in self.topology.hostgroups.servers():
            if s.shun_health or s.shun_lag:
                s.shun_health = s.shun_lag = False
                s.lag_over_count = 0
                s.refresh_status()
        log.info("monitor disabled (mysql-monitor_enabled=false): no checks; the shuns it made are lifted")

    # ------------------------------------------------------------------ targets

    def _all_endpoints(self) -> list[Endpoint]:
        """host:port with at least one entry that is not OFFLINE_HARD."""
        hg = self.topology.hostgroups
        return [ep for ep in hg.endpoints() if any(s.admin_status != OFFLINE_HARD for s in hg.entries(*ep))]

    def _replication_endpoints(self) -> list[Endpoint]:
        hg = self.topology.hostgroups
        return [ep for ep in self._all_endpoints() if hg.replication_pairs_of(*ep)]

    def _lag_endpoints(self) -> list[Endpoint]:
        hg = self.topology.hostgroups
        return [ep for ep in self._all_endpoints() if any(lag_checked(hg, s) for s in hg.entries(*ep))]

    def _heartbeat_endpoints(self) -> list[Endpoint]:
        """Writers: in a writer hostgroup, read_only known to be OFF, not shunned for health."""
        hg = self.topology.hostgroups
        if not self.heartbeat_table or self.settings.vars.monitor_heartbeat_write_interval <= 0:
            return []
        out = []
        for ep in self._all_endpoints():
            h = self.health.get(ep)
            if h is None or h.read_only is not False or h.shunned:
                continue
            if any(hg.is_writer_hostgroup(s.hostgroup) for s in hg.entries(*ep)):
                out.append(ep)
        return out

    def _health(self, ep: Endpoint) -> EndpointHealth:
        h = self.health.get(ep)
        if h is None:
            h = self.health[ep] = EndpointHealth(*ep)
        return h

    # ------------------------------------------------------------------ checks

    async def _connect_one(self, ep: Endpoint, v: Any) -> None:
        start = wall_us()
        r = await self.checker.connect(ep, self._creds, v.monitor_connect_timeout / 1000)
        self.logs.add(CONNECT, ep[0], ep[1], start, r.elapsed_us if r.ok else 0, r.error)
        self._count("connect", r)
        self._health_result(ep, r, "connect", v)

    async def _ping_one(self, ep: Endpoint, v: Any) -> None:
        start = wall_us()
        r = await self.checker.ping(ep, self._creds, v.monitor_connect_timeout / 1000, v.monitor_ping_timeout / 1000)
        self.logs.add(PING, ep[0], ep[1], start, r.elapsed_us if r.ok else 0, r.error)
        self._count("ping", r)
        if r.ok:
            for s in self.topology.hostgroups.entries(*ep):
                s.note_ping_time(r.elapsed_us)
        self._health_result(ep, r, "ping", v)

    def _health_result(self, ep: Endpoint, r: Result, what: str, v: Any) -> None:
        h = self._health(ep)
        if r.ok:
            if h.failures:
                log.info("monitor: %s check of %s:%d passed after %d failure(s)", what, ep[0], ep[1], h.failures)
            h.passed()
            return
        if r.not_health:
            if not h.account_error_warned:
                h.account_error_warned = True
                log.warning("monitor: %s check of %s:%d failed: %s. The monitor account is refused (check "
                            "mysql-monitor_username/mysql-monitor_password and its grants); not held against "
                            "the server", what, ep[0], ep[1], r.error)
            return
        self.checker.pool.forget(ep)  # its idle connections are suspect now
        if h.failed(trio.current_time(), r.error or "", v.monitor_ping_max_failures):
            log.warning("monitor: %s:%d failed %d connect/ping checks in a row (last: %s %s): SHUNNED",
                        ep[0], ep[1], h.failures, what, r.error)
            apply_health(self.topology.hostgroups, h)
        else:  # the first failure of a run is worth a line; the rest are in the monitor.* tables
            log.log(logging.INFO if h.failures == 1 else logging.DEBUG, "monitor: %s check of %s:%d failed "
                    "(%d in a row): %s", what, ep[0], ep[1], h.failures, r.error)

    async def _read_only_one(self, ep: Endpoint, v: Any) -> None:
        pairs = self.topology.hostgroups.replication_pairs_of(*ep)
        check_types = sorted({p.check_type for p in pairs})
        if not check_types:
            return
        start = wall_us()
        r = await self.checker.read_only(ep, self._creds, v.monitor_connect_timeout / 1000,
                                         v.monitor_read_only_timeout / 1000, check_types)
        self._count("read_only", r)
        h = self._health(ep)
        if r.ok:
            values: dict[str, bool] = r.value
            self.logs.add(READ_ONLY, ep[0], ep[1], start, r.elapsed_us, int(values[check_types[0]]), None)
            ReadOnlyTimeouts.answered(h)
            self._place(ep, values)
            return
        self.logs.add(READ_ONLY, ep[0], ep[1], start, 0, None, r.error)
        if r.timeout:
            if ReadOnlyTimeouts.timed_out(h, v.monitor_read_only_max_timeout_count):
                log.error("monitor: read_only check of %s:%d timed out %d times in a row (%s). If the server is "
                          "overloaded, increase mysql-monitor_read_only_timeout. Assuming read_only=1",
                          ep[0], ep[1], h.read_only_timeouts, r.error)
                self._place(ep, {ct: True for ct in check_types})
        else:
            log.log(self._failure_level(h), "monitor: read_only check of %s:%d failed: %s", ep[0], ep[1], r.error)

    def _place(self, ep: Endpoint, values: dict[str, bool]) -> None:
        """Record read_only and move the server between writer and reader hostgroups."""
        hg = self.topology.hostgroups
        v = self.settings.vars
        pairs = [p for p in hg.replication_pairs_of(*ep) if p.check_type in values]  # (pairs may have changed)
        if not pairs:
            return
        ro = values[pairs[0].check_type]
        h = self._health(ep)
        if h.read_only is not None and h.read_only != ro:
            log.warning("monitor: %s:%d read_only changed to %s", ep[0], ep[1], "ON" if ro else "OFF")
        h.read_only = ro
        for s in hg.entries(*ep):
            s.read_only = ro
        for pair in pairs:
            for move in hg.place(ep[0], ep[1], values[pair.check_type], v.monitor_writer_is_also_reader, [pair]):
                log.warning("monitor: %s", move)
                if move.action == "remove":
                    self._retire(move.server)

    def _retire(self, server: Server) -> None:
        """A server taken out of its hostgroup: OFFLINE_HARD, handed to the admin's sweeper."""
        server.set_admin_status(OFFLINE_HARD)  # notifies Topology.server_status_changed
        self.topology.note_retired(server)

    async def _lag_one(self, ep: Endpoint, v: Any) -> None:
        reference = self.heartbeat_reference if v.monitor_heartbeat_write_interval > 0 else None
        start = wall_us()
        r = await self.checker.replication_lag(
            ep, self._creds, v.monitor_connect_timeout / 1000, v.monitor_replication_lag_timeout / 1000,
            lag_when_null_s=v.monitor_slave_lag_when_null, heartbeat_table=self.heartbeat_table,
            reference=reference)
        self._count("replication_lag", r)
        if not r.ok:
            self.logs.add(REPLICATION_LAG, ep[0], ep[1], start, 0, None, r.error, None)
            log.log(self._failure_level(self._health(ep)), "monitor: replication lag check of %s:%d failed: %s",
                    ep[0], ep[1], r.error)
            return
        lag_ms: int | None = r.value
        self.logs.add(REPLICATION_LAG, ep[0], ep[1], start, r.elapsed_us,
                      None if lag_ms is None else round(lag_ms / 1000), None, lag_ms)
        hg = self.topology.hostgroups
        for s in apply_lag(hg, ep[0], ep[1], lag_ms, trio.current_time(), v.monitor_replication_lag_count):
            log.warning("monitor: %s:%d (hostgroup %d) is %d ms behind, over max_replication_lag=%d s: SHUNNED",
                        s.host, s.port, s.hostgroup, lag_ms or 0, s.max_replication_lag)

    async def _heartbeat_one(self, ep: Endpoint, v: Any) -> None:
        ts = time.time()
        r = await self.checker.write_heartbeat(ep, self._creds, v.monitor_connect_timeout / 1000,
                                               v.monitor_replication_lag_timeout / 1000, self.heartbeat_table, ts)
        if r.ok:
            if ep in self._heartbeat_errors:
                log.info("monitor: heartbeat writes to %s:%d work again", *ep)
                del self._heartbeat_errors[ep]
            if self.heartbeat_reference is None or ts > self.heartbeat_reference:
                self.heartbeat_reference = ts
        elif self._heartbeat_errors.get(ep) != r.error:
            self._heartbeat_errors[ep] = r.error or ""
            log.warning("monitor: cannot write the heartbeat table %s on %s:%d: %s", self.heartbeat_table,
                        ep[0], ep[1], r.error)

    @staticmethod
    def _failure_level(h: EndpointHealth) -> int:
        """INFO, or DEBUG while the server is already known to fail its connect/ping checks."""
        return logging.DEBUG if h.last_check_ok is False else logging.INFO

    def _count(self, kind: str, r: Result) -> None:
        self.counters[f"{kind}_check_{'OK' if r.ok else 'ERR'}"] += 1
