"""The monitor's loops on Trio's autojump clock, with a scripted network.

These check the timing rules (intervals, consecutive failures, recovery delay,
re-reading intervals after a configuration change); the same behaviour
against real MariaDB servers is in tests/integration/test_monitor.py.
"""

from __future__ import annotations

import dataclasses

import trio

from myrouter.config import MySQLVariables, ReplicationHostgroupConfig, ServerConfig
from myrouter.monitor import Monitor
from myrouter.monitor.checks import Checker, Result
from myrouter.monitor.logs import PING, READ_ONLY
from myrouter.routing.hostgroups import Hostgroups

FAST = {"monitor_connect_interval": 60000, "monitor_ping_interval": 1000, "monitor_ping_max_failures": 3,
        "monitor_read_only_interval": 1000, "monitor_replication_lag_interval": 1000, "shun_recovery_time_sec": 5}


class ScriptedChecker(Checker):
    """Answers like servers whose state the test sets: up/down, read_only, lag."""

    def __init__(self) -> None:
        super().__init__()
        self.down: set[int] = set()
        self.ro: dict[int, bool] = {}
        self.lag_ms: dict[int, int | None] = {}
        self.calls: list[tuple[float, str, int]] = []

    async def _answer(self, kind: str, ep, value=None) -> Result:
        self.calls.append((trio.current_time(), kind, ep[1]))
        await trio.sleep(0.002)
        if ep[1] in self.down:
            return Result(False, error="cannot connect to db: Connection refused")
        return Result(True, 2000, value=value)

    async def connect(self, ep, creds, timeout_s):
        return await self._answer("connect", ep)

    async def ping(self, ep, creds, connect_timeout_s, timeout_s):
        return await self._answer("ping", ep)

    async def read_only(self, ep, creds, connect_timeout_s, timeout_s, check_types):
        ro = self.ro.get(ep[1], True)
        return await self._answer("read_only", ep, {ct: ro for ct in check_types})

    async def replication_lag(self, ep, creds, connect_timeout_s, timeout_s, **kw):
        return await self._answer("lag", ep, self.lag_ms.get(ep[1]))


class App:
    """What the monitor needs of the proxy: of the topology (hostgroups, status changes) and of the
    running configuration (vars, backend_tls), both in one object here."""

    def __init__(self, servers, pairs=(), **variables) -> None:
        self.vars = MySQLVariables(**{**FAST, **variables})
        self.hostgroups = Hostgroups([ServerConfig(hg, "db", port, **kw) for hg, port, kw in servers],
                                     replication=[ReplicationHostgroupConfig(w, r) for w, r in pairs])
        self.changes: list[tuple[float, int, int, str, str]] = []

    def server_status_changed(self, s, old) -> None:
        self.changes.append((trio.current_time(), s.hostgroup, s.port, old, s.status))

    def note_retired(self, s) -> None:  # no admin sweeper here
        pass


async def start(nursery, app: App) -> tuple[Monitor, ScriptedChecker]:
    monitor = Monitor(app, app)
    monitor.checker = checker = ScriptedChecker()
    await nursery.start(monitor.run)
    return monitor, checker


async def test_down_server_is_shunned_after_max_failures_and_back_after_the_recovery_time(autojump_clock):
    app = App([(0, 3306, {}), (1, 3307, {}), (2, 3307, {})])
    async with trio.open_nursery() as nursery:
        t0 = trio.current_time()
        monitor, checker = await start(nursery, app)
        await trio.sleep(2.5)
        assert all(s.status == "ONLINE" for s in app.hostgroups.servers())
        checker.down.add(3307)  # pings at t0+3, +4, +5 fail
        await trio.sleep(2.4)  # t0+4.9: two failures
        assert app.hostgroups.find(1, "db", 3307).status == "ONLINE"
        await trio.sleep(0.2)  # t0+5.1: the third
        assert [(hg, port, old, new) for _, hg, port, old, new in app.changes] == [
            (1, 3307, "ONLINE", "SHUNNED"), (2, 3307, "ONLINE", "SHUNNED")]  # every hostgroup of that server
        shunned_at = app.changes[0][0]
        assert 5.0 <= shunned_at - t0 < 5.1
        errors = [r for r in monitor.logs.rows(PING) if r[1] == 3307 and r[4] is not None]
        assert len(errors) == 3 and errors[0][3] == 0 and "refused" in errors[0][4]
        await trio.sleep(4)  # t0+9.1: still down
        checker.down.clear()  # the ping at t0+10 passes; the last failure was at t0+9
        await trio.sleep(4.5)  # t0+13.6: passing, but less than 5 s since the last failure
        assert app.hostgroups.find(1, "db", 3307).status == "SHUNNED"
        await trio.sleep(1)  # t0+14.6
        assert app.hostgroups.find(1, "db", 3307).status == "ONLINE"
        back_at = app.changes[-1][0]
        assert 14.0 <= back_at - t0 <= 14.6
        assert app.hostgroups.find(0, "db", 3306).status == "ONLINE"
        nursery.cancel_scope.cancel()


async def test_promotion_moves_the_writer_within_two_read_only_intervals(autojump_clock):
    app = App([(0, 3306, {}), (1, 3307, {}), (1, 3308, {})], pairs=[(0, 1)])
    async with trio.open_nursery() as nursery:
        monitor, checker = await start(nursery, app)
        checker.ro = {3306: False, 3307: True, 3308: True}
        await trio.sleep(3.5)
        assert [s.port for s in app.hostgroups.servers(0)] == [3306]
        promoted = trio.current_time()
        checker.ro = {3306: True, 3307: False, 3308: True}
        with trio.fail_after(10):
            while [s.port for s in app.hostgroups.servers(0)] != [3307]:
                await trio.sleep(0.05)
        assert trio.current_time() - promoted <= 2.0
        assert sorted(s.port for s in app.hostgroups.servers(1)) == [3306, 3307, 3308]
        assert (0, 3306, "ONLINE", "OFFLINE_HARD") in [c[1:] for c in app.changes]
        assert monitor.health[("db", 3306)].read_only is True
        rows = [r for r in monitor.logs.rows(READ_ONLY) if r[1] == 3307]
        assert rows[-1][4] == 0 and rows[0][4] == 1  # read_only column: 1 before, 0 now
        nursery.cancel_scope.cancel()


async def test_a_shorter_interval_applies_at_once_not_after_the_old_one(autojump_clock):
    app = App([(1, 3307, {})], monitor_ping_interval=120000)
    async with trio.open_nursery() as nursery:
        monitor, checker = await start(nursery, app)
        await trio.sleep(1)
        assert [k for _, k, _ in checker.calls].count("ping") == 1
        app.vars = dataclasses.replace(app.vars, monitor_ping_interval=500)
        monitor.configure()
        await trio.sleep(2.1)
        pings = [t for t, k, _ in checker.calls if k == "ping"]
        assert [round(t - pings[0], 3) for t in pings] == [0, 1, 1.5, 2, 2.5, 3]  # at once, then every 0.5 s
        nursery.cancel_scope.cancel()


async def test_lag_shuns_and_disabling_the_monitor_lifts_its_shuns(autojump_clock):
    app = App([(1, 3307, {"max_replication_lag": 2}), (1, 3308, {})], monitor_replication_lag_count=2)
    async with trio.open_nursery() as nursery:
        monitor, checker = await start(nursery, app)
        checker.lag_ms = {3307: 5000}
        await trio.sleep(1.5)  # two lag checks over the limit
        s = app.hostgroups.find(1, "db", 3307)
        assert s.status == "SHUNNED" and s.repl_lag_ms == 5000
        assert not [c for _, c, p in checker.calls if c == "lag" and p == 3308]  # no max_replication_lag: unchecked
        app.vars = dataclasses.replace(app.vars, monitor_enabled=False)
        monitor.configure()
        await trio.sleep(1)
        assert s.status == "ONLINE"
        calls = len(checker.calls)
        await trio.sleep(5)
        assert len(checker.calls) == calls  # no checks while disabled
        nursery.cancel_scope.cancel()


async def test_an_unexpected_error_in_a_check_does_not_stop_the_monitor(autojump_clock, caplog):
    app = App([(1, 3307, {})])

    class Broken(ScriptedChecker):
        async def ping(self, ep, creds, connect_timeout_s, timeout_s):
            self.calls.append((trio.current_time(), "ping", ep[1]))
            raise IndexError("a reply nobody expected")

    async with trio.open_nursery() as nursery:
        monitor = Monitor(app, app)
        monitor.checker = checker = Broken()
        await nursery.start(monitor.run)
        await trio.sleep(2.5)
        assert [k for _, k, _ in checker.calls].count("ping") == 3
        assert "failed unexpectedly" in caplog.text and "IndexError" in caplog.text
        nursery.cancel_scope.cancel()
