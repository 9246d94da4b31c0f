"""The monitor's decision rules with plain numbers for time: health, lag, recovery, logs, parsers."""

from __future__ import annotations

import datetime as dt

import pytest

from myrouter.config import MySQLVariables, ReplicationHostgroupConfig, ServerConfig
from myrouter.monitor.checks import (
    heartbeat_lag_ms,
    lag_from_replica_status,
    parse_heartbeat_table,
    quote_table,
    read_only_value,
)
from myrouter.monitor.logs import PING, REPLICATION_LAG, MonitorLogs, history_ms
from myrouter.monitor.state import (
    EndpointHealth,
    ReadOnlyTimeouts,
    apply_health,
    apply_lag,
    recover,
)
from myrouter.protocol.errors import MySQLError
from myrouter.routing.hostgroups import HostgroupPolicy, Hostgroups


class Clock:
    t = 100.0

    def __call__(self) -> float:
        return self.t


def hostgroups(*servers, pairs=((0, 1),)):
    clock = Clock()
    hg = Hostgroups([ServerConfig(h, "db", p, **kw) for h, p, kw in servers],
                    replication=[ReplicationHostgroupConfig(w, r) for w, r in pairs],
                    policy=HostgroupPolicy(clock=clock))
    return hg, clock


# -- health ----------------------------------------------------------------------------


def test_consecutive_failures_shun_every_entry_of_the_host_and_a_pass_resets_the_run():
    hg, _ = hostgroups((0, 3306, {}), (1, 3306, {}), (1, 3307, {}))
    ep = EndpointHealth("db", 3306)
    assert not ep.failed(1.0, "refused", 3)
    assert not ep.failed(2.0, "refused", 3)
    ep.passed()
    assert ep.failures == 0 and not ep.shunned
    assert not ep.failed(3.0, "refused", 3) and not ep.failed(4.0, "refused", 3)
    assert ep.failed(5.0, "refused", 3) and ep.shunned and ep.shunned_at == 5.0
    assert not ep.failed(6.0, "refused", 3)  # already shunned: reported once
    changed = apply_health(hg, ep)
    assert sorted((s.hostgroup, s.status) for s in changed) == [(0, "SHUNNED"), (1, "SHUNNED")]
    assert hg.find(1, "db", 3307).status == "ONLINE"


def test_recovery_waits_for_a_pass_and_the_recovery_time_since_the_last_failure():
    hg, _ = hostgroups((1, 3307, {}))
    ep = EndpointHealth("db", 3307)
    for t in (1.0, 2.0, 3.0):
        ep.failed(t, "refused", 3)
    apply_health(hg, ep)
    health = {("db", 3307): ep}
    s = hg.find(1, "db", 3307)
    assert recover(hg, health, 20.0, 10) == []  # no passing check yet
    ep.passed()
    assert recover(hg, health, 12.9, 10) == [] and s.status == "SHUNNED"  # 9.9 s since the last failure
    assert recover(hg, health, 13.0, 10) == [s] and s.status == "ONLINE" and not s.shun_health


def test_flapping_server_stays_shunned():
    hg, _ = hostgroups((1, 3307, {}))
    ep = EndpointHealth("db", 3307)
    health = {("db", 3307): ep}
    for t in (1.0, 2.0, 3.0):
        ep.failed(t, "refused", 3)
    apply_health(hg, ep)
    t = 3.0
    for _ in range(10):  # passes and fails in turn: the recovery clock restarts at each failure
        t += 4
        ep.passed()
        assert recover(hg, health, t, 5) == []
        t += 4
        ep.failed(t, "refused", 3)
        assert recover(hg, health, t, 5) == []
    assert hg.find(1, "db", 3307).status == "SHUNNED"


def test_read_only_timeouts_count_in_a_row():
    ep = EndpointHealth("db", 3306)
    assert not ReadOnlyTimeouts.timed_out(ep, 3)
    assert not ReadOnlyTimeouts.timed_out(ep, 3)
    ReadOnlyTimeouts.answered(ep)
    assert [ReadOnlyTimeouts.timed_out(ep, 3) for _ in range(3)] == [False, False, True]


# -- lag ------------------------------------------------------------------------------


def test_lag_over_the_limit_for_count_checks_shuns_and_comes_back_after_the_recovery_time():
    hg, _ = hostgroups((1, 3307, {"max_replication_lag": 2}), (2, 3307, {"max_replication_lag": 10}))
    r1, r2 = hg.find(1, "db", 3307), hg.find(2, "db", 3307)
    assert apply_lag(hg, "db", 3307, 2000, 1.0, 2) == []  # at the limit is fine
    assert apply_lag(hg, "db", 3307, 2500, 2.0, 2) == []  # 1 of 2
    assert apply_lag(hg, "db", 3307, 2500, 3.0, 2) == [r1]
    assert r1.status == "SHUNNED" and r1.repl_lag_ms == 2500 and r2.status == "ONLINE"  # per entry limits
    assert apply_lag(hg, "db", 3307, 100, 4.0, 2) == [] and r1.lag_over_count == 0
    assert recover(hg, {}, 7.9, 5) == [] and r1.status == "SHUNNED"  # 4.9 s since the last lag over the limit
    assert recover(hg, {}, 8.0, 5) == [r1] and r1.status == "ONLINE"


def test_unknown_lag_and_writer_hostgroups_are_never_shunned_for_lag():
    hg, _ = hostgroups((0, 3306, {"max_replication_lag": 1}), (1, 3306, {"max_replication_lag": 1}))
    w, r = hg.find(0, "db", 3306), hg.find(1, "db", 3306)
    for t in range(5):
        shunned = apply_lag(hg, "db", 3306, 60000, float(t), 1)
        if t == 0:
            assert shunned == [r]
    assert w.status == "ONLINE" and w.repl_lag_ms == 60000
    hg2, _ = hostgroups((1, 3307, {"max_replication_lag": 1}))
    assert apply_lag(hg2, "db", 3307, None, 1.0, 1) == []  # not a replica: no lag


def test_traffic_shun_recovers_unless_the_monitor_sees_the_server_failing():
    hg, clock = hostgroups((1, 3307, {}))
    s = hg.find(1, "db", 3307)
    hg.policy.shun_on_failures = 2
    s.note_connect_error()
    s.note_connect_error()
    assert s.status == "SHUNNED"
    ep = EndpointHealth("db", 3307)
    ep.failed(clock.t, "refused", 3)  # one failed ping: not enough to shun by health, enough to hold
    health = {("db", 3307): ep}
    assert recover(hg, health, clock.t + 60, 10) == [] and s.status == "SHUNNED"
    ep.passed()
    assert recover(hg, health, clock.t + 9.9, 10) == []
    assert recover(hg, health, clock.t + 10, 10) == [s] and s.status == "ONLINE"


# -- logs -----------------------------------------------------------------------------


def test_logs_are_bounded_by_count_and_by_age():
    logs = MonitorLogs(max_rows=5)
    for i in range(8):
        logs.add(PING, "db", 3306, 1_000_000 * i, 10, None)
    assert [r[2] for r in logs.rows(PING)] == [3_000_000, 4_000_000, 5_000_000, 6_000_000, 7_000_000]
    assert logs.purge(2000, now_us=7_000_000) == 2  # more than 2 s old
    assert [r[2] for r in logs.rows(PING)] == [5_000_000, 6_000_000, 7_000_000]
    assert logs.last(PING, "db", 3306)[2] == 7_000_000 and logs.last(PING, "db", 1) is None


def test_log_rows_of_one_server_never_share_a_start_time():
    logs = MonitorLogs()
    for _ in range(3):
        logs.add(REPLICATION_LAG, "db", 3306, 5, 1, 0, None, 0)
    logs.add(REPLICATION_LAG, "db", 3307, 5, 1, 0, None, 0)
    assert [(r[1], r[2]) for r in logs.rows(REPLICATION_LAG)] == [(3306, 5), (3306, 6), (3306, 7), (3307, 5)]


def test_history_keeps_at_least_the_pings_that_decide_shunning():
    v = MySQLVariables(monitor_history=1000, monitor_ping_interval=8000, monitor_ping_max_failures=3)
    assert history_ms(v) == 32000
    assert history_ms(MySQLVariables(monitor_history=600000)) == 600000


# -- parsers --------------------------------------------------------------------------


@pytest.mark.parametrize("check_type, values, expected", [
    ("read_only", {"read_only": True}, True),
    ("innodb_read_only", {"innodb_read_only": False}, False),
    ("super_read_only", {"super_read_only": True}, True),
    ("read_only|innodb_read_only", {"read_only": False, "innodb_read_only": True}, True),
    ("read_only&innodb_read_only", {"read_only": False, "innodb_read_only": True}, False),
    ("read_only&innodb_read_only", {"read_only": True, "innodb_read_only": True}, True),
])
def test_read_only_check_types(check_type, values, expected):
    assert read_only_value(check_type, values) is expected


def test_lag_from_replica_status():
    cols = ["Slave_IO_State", "Seconds_Behind_Master"]
    assert lag_from_replica_status(cols, [], 60) is None  # not a replica
    assert lag_from_replica_status(cols, [("x", "3")], 60) == 3000
    assert lag_from_replica_status(cols, [("x", None)], 60) == 60000  # a thread stopped: slave_lag_when_null
    assert lag_from_replica_status(["Seconds_Behind_Source"], [("1",), ("7",)], 60) == 7000  # worst channel
    with pytest.raises(MySQLError):
        lag_from_replica_status(["Other"], [("1",)], 60)


def test_heartbeat_lag():
    ts = dt.datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=dt.UTC).timestamp()
    assert heartbeat_lag_ms("2024-05-01T12:00:00.250000", ts + 1.5) == 1500
    assert heartbeat_lag_ms("2024-05-01 12:00:00.250000", ts + 0.25) == 250  # DATETIME(6) text
    assert heartbeat_lag_ms("2024-05-01T12:00:01.000000", ts) == 0  # another writer's clock ahead: not negative


def test_heartbeat_table_names():
    assert parse_heartbeat_table("percona.heartbeat") == ("percona", "heartbeat")
    assert parse_heartbeat_table("heartbeat") == (None, "heartbeat")
    assert quote_table("`ops`.`hb`") == "`ops`.`hb`"
    for bad in ("a.b.c", "x; DROP TABLE t", "", "a.`b c`"):
        with pytest.raises(ValueError):
            parse_heartbeat_table(bad)
