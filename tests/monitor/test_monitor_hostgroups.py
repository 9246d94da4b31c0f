"""Server statuses, traffic-side shunning, fallback and writer/reader placement (no I/O)."""

from __future__ import annotations

import pytest

from myrouter.config import ReplicationHostgroupConfig, ServerConfig
from myrouter.protocol.errors import MySQLError
from myrouter.routing.hostgroups import HostgroupPolicy, Hostgroups, Server


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(servers, pairs=(), **policy) -> tuple[Hostgroups, list, Clock]:
    clock = Clock()
    changes: list[tuple[Server, str, str]] = []
    pol = HostgroupPolicy(clock=clock, on_change=lambda s, old: changes.append((s, old, s.status)), **policy)
    cfg = [ServerConfig(hg, "db", port, **kw) for hg, port, kw in servers]
    rep = [ReplicationHostgroupConfig(w, r) for w, r in pairs]
    return Hostgroups(cfg, replication=rep, policy=pol), changes, clock


def layout(hg: Hostgroups) -> dict[int, list[int]]:
    return {h: sorted(s.port for s in group) for h, group in sorted(hg.by_hostgroup.items())}


# -- statuses ------------------------------------------------------------------------


def test_automatic_shuns_make_an_online_server_shunned_and_are_reported():
    hg, changes, _ = make([(1, 3307, {})])
    s = hg.find(1, "db", 3307)
    s.shun_lag = True
    assert s.refresh_status() == "ONLINE"
    assert s.status == "SHUNNED" and not s.usable and s.shun_reason == "replication lag"
    assert changes == [(s, "ONLINE", "SHUNNED")]
    assert s.refresh_status() is None  # no change, no report
    s.shun_lag = False
    s.refresh_status()
    assert s.status == "ONLINE" and changes[-1] == (s, "SHUNNED", "ONLINE")


def test_configured_statuses_win_over_automatic_ones():
    hg, changes, _ = make([(1, 3307, {"status": "OFFLINE_SOFT"}), (1, 3308, {"status": "SHUNNED"})])
    soft, shunned = hg.find(1, "db", 3307), hg.find(1, "db", 3308)
    soft.shun_health = True
    assert soft.refresh_status() is None and soft.status == "OFFLINE_SOFT"
    # a SHUNNED set by hand is not lifted by clearing automatic reasons (ProxySQL: shunned_automatic only)
    shunned.shun_health = False
    assert shunned.refresh_status() is None and shunned.status == "SHUNNED"
    assert changes == []


def test_shun_on_failures_counts_errors_within_one_second():
    hg, changes, clock = make([(1, 3307, {})], shun_on_failures=3)
    s = hg.find(1, "db", 3307)
    s.note_connect_error(9001)  # t=0
    clock.t += 0.4
    s.note_connect_error(9001)  # t=0.4
    clock.t += 1.2
    s.note_connect_error(9001)  # t=1.6: the others are more than a second old
    assert s.status == "ONLINE" and s.connect_errors == 3
    clock.t += 0.5
    s.note_connect_error(9001)  # t=2.1: two within a second, three needed
    assert s.status == "ONLINE"
    clock.t += 0.4
    s.note_connect_error(None)
    assert s.status == "SHUNNED" and s.shun_traffic and s.last_connect_error_at == clock.t
    assert changes == [(s, "ONLINE", "SHUNNED")]


def test_client_side_errors_and_successes_do_not_shun():
    hg, _, _ = make([(1, 3307, {})], shun_on_failures=2)
    s = hg.find(1, "db", 3307)
    for code in (1045, 1044, 1049, 1045):
        s.note_connect_error(code)
    assert s.status == "ONLINE" and s.connect_errors == 4 and s.last_connect_error_at is None
    s.note_connect_error(9001)
    s.note_connect_ok()  # the server accepted a connection: the window starts again
    s.note_connect_error(9001)
    assert s.status == "ONLINE"
    s.note_connect_error(9001)
    assert s.status == "SHUNNED"


def test_shun_on_failures_zero_never_shuns():
    hg, _, _ = make([(1, 3307, {})], shun_on_failures=0)
    s = hg.find(1, "db", 3307)
    for _ in range(50):
        s.note_connect_error(9001)
    assert s.status == "ONLINE"


# -- fallback -------------------------------------------------------------------------


def test_fallback_for_a_reader_hostgroup_with_no_usable_server():
    hg, _, _ = make([(0, 3306, {}), (1, 3307, {}), (1, 3308, {"status": "OFFLINE_SOFT"}), (5, 3309, {})],
                    pairs=[(0, 1)])
    r1 = hg.find(1, "db", 3307)
    assert hg.fallback_for(1) is None  # 3307 is ONLINE
    r1.shun_health = True
    r1.refresh_status()
    assert hg.fallback_for(1) == 0
    with pytest.raises(MySQLError) as err:
        hg.choose(1)
    assert err.value.code == 9001
    assert hg.choose(hg.fallback_for(1)).port == 3306
    assert hg.fallback_for(0) is None  # a writer hostgroup has no fallback
    assert hg.fallback_for(5) is None  # not in a replication pair
    hg.policy.reader_fallback = False
    assert hg.fallback_for(1) is None


def test_no_fallback_when_the_writer_cannot_serve_either_or_readers_are_only_busy():
    hg, _, _ = make([(0, 3306, {}), (1, 3307, {"max_connections": 1})], pairs=[(0, 1)])
    r = hg.find(1, "db", 3307)
    r.connection_opened()  # busy, not broken
    assert not r.usable and hg.fallback_for(1) is None
    r.shun_traffic = True
    r.refresh_status()
    assert hg.fallback_for(1) == 0
    w = hg.find(0, "db", 3306)
    w.set_admin_status("OFFLINE_HARD")
    assert hg.fallback_for(1) is None


def test_fallback_for_an_empty_reader_hostgroup():
    hg, _, _ = make([(0, 3306, {})], pairs=[(0, 1)])
    assert hg.fallback_for(1) == 0


# -- placement (ProxySQL's read_only_action) --------------------------------------------


def test_promotion_moves_the_writer_and_keeps_the_new_writer_as_reader():
    hg, _, _ = make([(0, 3306, {}), (1, 3307, {"weight": 7, "max_replication_lag": 5}), (1, 3308, {})],
                    pairs=[(0, 1)])
    assert hg.place("db", 3306, False, True) == []  # a writer only in the writer hostgroup stays as it is
    assert hg.place("db", 3307, True, True) == []  # a reader that is read_only: nothing to do
    moves = hg.place("db", 3307, False, True)
    assert [(m.action, m.server.hostgroup, m.server.port) for m in moves] == [("add", 0, 3307)]
    new_writer = hg.find(0, "db", 3307)
    assert new_writer.weight == 7 and new_writer.max_replication_lag == 5 and new_writer.policy is hg.policy
    moves = hg.place("db", 3306, True, True)
    assert [(m.action, m.server.hostgroup, m.server.port) for m in moves] == [("add", 1, 3306), ("remove", 0, 3306)]
    assert layout(hg) == {0: [3307], 1: [3306, 3307, 3308]}
    assert hg.choose(0).port == 3307


def test_writer_is_not_also_reader():
    hg, _, _ = make([(0, 3306, {}), (1, 3306, {}), (1, 3307, {})], pairs=[(0, 1)])
    moves = hg.place("db", 3306, False, False)
    assert [(m.action, m.server.hostgroup) for m in moves] == [("remove", 1)]
    hg.place("db", 3307, False, False)  # a reader turned writer is moved, not copied
    assert layout(hg) == {0: [3306, 3307]}
    assert hg.fallback_for(1) == 0  # no reader left: reads may use the writers


def test_servers_outside_replication_pairs_are_left_alone():
    hg, _, _ = make([(0, 3306, {}), (7, 3307, {})], pairs=[(0, 1)])
    assert hg.place("db", 3307, False, True) == []
    assert hg.place("db", 3306, True, True)  # but the writer of the pair moves
    assert layout(hg) == {1: [3306], 7: [3307]}


def test_copies_carry_health_but_not_connections():
    hg, _, _ = make([(1, 3307, {})], pairs=[(0, 1)])
    r = hg.find(1, "db", 3307)
    r.connection_opened()
    r.shun_health = True
    r.refresh_status()
    hg.place("db", 3307, False, True)
    w = hg.find(0, "db", 3307)
    assert w.status == "SHUNNED" and w.shun_health and w.connections == 0 and w.connections_created == 0


def test_reconcile_keeps_live_servers_and_reapplies_known_read_only():
    hg, changes, _ = make([(0, 3306, {}), (1, 3307, {}), (1, 3308, {})], pairs=[(0, 1)])
    hg.place("db", 3307, False, True)  # 3307 promoted
    hg.place("db", 3306, True, True)
    live_reader = hg.find(1, "db", 3308)
    live_reader.shun_lag = True
    live_reader.max_replication_lag = 3
    live_reader.refresh_status()
    known = {("db", 3306): True, ("db", 3307): False, ("db", 3308): True}
    # the operator reloads the original configuration (3306 as writer) with a new weight for 3308
    new, retired = hg.reconcile(
        [ServerConfig(0, "db", 3306), ServerConfig(1, "db", 3307), ServerConfig(1, "db", 3308, weight=3,
                                                                                 max_replication_lag=3)],
        [ReplicationHostgroupConfig(0, 1)], known, True)
    assert layout(new) == {0: [3307], 1: [3306, 3307, 3308]}  # the monitor's view survives the reload
    kept = new.find(1, "db", 3308)
    assert kept is live_reader and kept.weight == 3 and kept.status == "SHUNNED"  # live object, lag shun kept
    assert new.find(0, "db", 3307) is hg.find(0, "db", 3307)
    assert retired == [] and new.policy is hg.policy
    # a server that leaves the configuration is retired
    new2, retired2 = new.reconcile([ServerConfig(0, "db", 3307)], [ReplicationHostgroupConfig(0, 1)], {}, True)
    assert layout(new2) == {0: [3307]} and sorted(s.port for s in retired2) == [3306, 3307, 3308]
    assert changes.count((kept, "ONLINE", "SHUNNED")) == 1  # reconcile itself reports nothing


def test_reconcile_lifts_lag_shuns_that_no_longer_apply():
    hg, _, _ = make([(1, 3307, {"max_replication_lag": 2})], pairs=[(0, 1)])
    s = hg.find(1, "db", 3307)
    s.shun_lag = True
    s.refresh_status()
    new, _ = hg.reconcile([ServerConfig(1, "db", 3307, max_replication_lag=0)], [ReplicationHostgroupConfig(0, 1)])
    assert new.find(1, "db", 3307) is s and s.status == "ONLINE" and not s.shun_lag
