"""The sans-I/O parts of worker processes: channel frames, merged stats, budgets, the GTID board."""

from __future__ import annotations

import logging
import os
import pickle
import socket
import struct

import pytest
import trio

from myrouter.config import Config, load_config
from myrouter.routing.hostgroups import Hostgroups
from myrouter.runtime.role import ProcessRole
from myrouter.runtime.topology import Topology
from myrouter.workers import merge
from myrouter.workers.channel import (
    FORMAT_VERSION,
    HEADER,
    CallTimedOut,
    Channel,
    ChannelBroken,
    FrameDecoder,
    RemoteError,
    encode,
)
from myrouter.workers.gtidboard import SLOTS, GtidBoard, create_board
from myrouter.workers.supervisor import config_for_worker, worker_share
from myrouter.workers.worker import mirror_servers, server_states


def test_frames_come_out_whole_whatever_the_reads_cut():
    frames = encode(("note", "servers", {"servers": [(0, "h", 1)]})) + encode(("req", 7, "rows", {"names": ["x"]}))
    decoder = FrameDecoder()
    out = []
    for i in range(len(frames)):  # one byte at a time
        out += decoder.feed(frames[i:i + 1])
    assert out == [("note", "servers", {"servers": [(0, "h", 1)]}), ("req", 7, "rows", {"names": ["x"]})]


def test_a_frame_of_another_format_version_is_refused():
    payload = pickle.dumps(("note", "x", {}))
    with pytest.raises(ChannelBroken, match="different installations"):
        FrameDecoder().feed(HEADER.pack(len(payload), FORMAT_VERSION + 1) + payload)
    with pytest.raises(ChannelBroken, match="bytes"):
        FrameDecoder().feed(struct.pack("!IH", 2**31, FORMAT_VERSION))


def test_ids_name_their_worker():
    role = ProcessRole("worker", 1, 3)
    from myrouter.runtime.sessions import SessionRegistry
    reg = SessionRegistry(role)
    ids = [reg.next_session_id() for _ in range(4)]
    assert ids == [2, 5, 8, 11]
    assert {role.worker_of(i) for i in ids} == {1}
    single = SessionRegistry()
    assert [single.next_session_id() for _ in range(3)] == [1, 2, 3]  # as before workers


@pytest.mark.parametrize("total,threads", [(1000, 4), (4, 2), (5, 2), (1, 2), (0, 3), (7, 3)])
def test_server_budgets_add_up_to_max_connections(total, threads):
    shares = [worker_share(total, i, threads) for i in range(threads)]
    assert sum(shares) == total and max(shares) - min(shares) <= 1


def load(tmp_path, servers: str) -> Config:
    path = tmp_path / "myrouter.toml"
    path.write_text(servers + '\n[[mysql_users]]\nusername = "app"\npassword = "app"\n')
    return load_config(path)


def test_each_worker_runs_its_share_of_every_server(tmp_path):
    config = load(tmp_path, '[[mysql_servers]]\nhostgroup_id = 0\nhostname = "127.0.0.1"\nmax_connections = 5\n')
    assert [config_for_worker(config, i, 2).mysql_servers[0].max_connections for i in (0, 1)] == [3, 2]
    assert config.mysql_servers[0].max_connections == 5  # the supervisor's (and the admin's) stays whole


def test_processlist_rows_say_which_worker():
    rows = merge.merge("stats_mysql_processlist", {0: [(0, 1, "app")], 1: [(0, 2, "app"), (0, 4, "b")]}, [])
    assert rows == [(0, 1, "app"), (1, 2, "app"), (1, 4, "b")]


def test_pool_rows_sum_counts_and_keep_the_supervisors_status_and_latency():
    own = [(0, "h", 1, "SHUNNED", 0, 0, 0, 0, 0, 0, 0, 0, 0, 250)]
    w0 = [(0, "h", 1, "ONLINE", 1, 2, 3, 1, 3, 10, 0, 100, 1000, 90)]
    w1 = [(0, "h", 1, "ONLINE", 2, 0, 2, 0, 2, 5, 0, 50, 500, 80), (9, "gone", 2, "OFFLINE_HARD", 1, 0, 1, 0, 1, 1, 0, 1, 1, 0)]
    rows = merge.merge("stats_mysql_connection_pool", {0: w0, 1: w1}, own)
    assert rows[0] == (0, "h", 1, "SHUNNED", 3, 2, 5, 1, 5, 15, 0, 150, 1500, 250)
    assert rows[1][0] == 9  # a server only a worker still has connections to is shown too


def test_digest_rows_merge_counts_times_and_first_last_seen():
    a = (0, "test", "app", "", "0x1", "SELECT ?", 3, 100, 200, 30, 5, 20, 0, 3)
    b = (0, "test", "app", "", "0x1", "SELECT ?", 2, 50, 150, 40, 2, 30, 1, 2)
    c = (1, "test", "app", "", "0x1", "SELECT ?", 1, 60, 60, 7, 7, 7, 0, 1)
    rows = merge.merge("stats_mysql_query_digest", {0: [a], 1: [b, c]}, [])
    assert sorted(rows) == sorted([(0, "test", "app", "", "0x1", "SELECT ?", 5, 50, 200, 70, 2, 30, 1, 5), c])


def test_global_status_sums_but_for_what_the_supervisor_owns():
    own = [("ProxySQL_Uptime", 100), ("Questions", 0), ("Admin_client_host_blocked_connections", 2)]
    rows = merge.merge("stats_mysql_global", {0: [("ProxySQL_Uptime", 5), ("Questions", 10)],
                                              1: [("ProxySQL_Uptime", 6), ("Questions", 7)]}, own)
    assert rows == [("ProxySQL_Uptime", 100), ("Questions", 17), ("Admin_client_host_blocked_connections", 2)]


def test_commands_and_rules_are_summed():
    assert merge.merge("stats_mysql_query_rules", {0: [(1, 2), (3, 1)], 1: [(1, 5)]}, []) == [(1, 7), (3, 1)]
    assert merge.merge("stats_mysql_commands_counters", {0: [("SELECT", 10, 2, 1, 1)], 1: [("SELECT", 5, 1, 0, 1)]},
                       []) == [("SELECT", 15, 3, 1, 2)]


def boards(threads: int) -> list[GtidBoard]:
    fd = create_board(threads)
    try:
        return [GtidBoard.attach(fd, ProcessRole("worker", i, threads)) for i in range(threads)]
    finally:
        os.close(fd)


def test_every_worker_sees_the_newest_gtid_any_worker_wrote():
    w0, w1 = boards(2)
    assert w1.global_gtid() == ""
    w0.note("0-1-10")
    w1.note("0-1-9,1-2-4")  # older in domain 0: the newest stays
    assert w0.global_gtid() == w1.global_gtid() == "0-1-10,1-2-4"
    w0.note("0-1-8")  # an older one changes nothing
    assert w1.global_gtid() == "0-1-10,1-2-4"


def test_a_restarted_worker_goes_on_from_its_predecessors_gtids():
    fd = create_board(2)
    try:
        first = GtidBoard.attach(fd, ProcessRole("worker", 1, 2))
        first.note("3-1-77")
        again = GtidBoard.attach(fd, ProcessRole("worker", 1, 2))
        assert again.global_gtid() == "3-1-77"
        again.note("3-1-78")
        assert again.written() == {3: (1, 78)}
        assert len(again._slots) == 1  # the same slot, not a second one
    finally:
        os.close(fd)


def test_domains_beyond_the_board_are_logged_not_fatal(caplog):
    (w0,) = boards(1)
    w0.note(",".join(f"{d}-1-1" for d in range(SLOTS + 2)))
    assert len(w0.written()) == SLOTS
    assert any("replication domains" in r.getMessage() for r in caplog.records)


def test_a_worker_mirrors_the_supervisors_moves_and_statuses(tmp_path, caplog):
    config = load(tmp_path, '[[mysql_servers]]\nhostgroup_id = 0\nhostname = "a"\nport = 1\n'
                            '[[mysql_servers]]\nhostgroup_id = 1\nhostname = "b"\nport = 2\n')
    sup, wrk = Topology(config), Topology(config)
    b = sup.hostgroups.find(1, "b", 2)
    b.shun_health = True  # failed its health checks
    b.refresh_status()
    sup.hostgroups.add(b.copy_to(0))  # the monitor found b writable: it joins the writers
    a = sup.hostgroups.find(0, "a", 1)
    sup.hostgroups.remove(a)  # and a left them
    changes = []
    wrk.on_status_change(lambda s, old: changes.append((s.hostgroup, s.host, old, s.status)))
    gone = wrk.hostgroups.find(0, "a", 1)
    caplog.set_level(logging.INFO, logger="myrouter")
    mirror_servers(wrk, server_states(sup))
    # the supervisor logged each change: its workers do not log it once more each (debug only)
    assert not [r for r in caplog.records if r.levelno >= logging.INFO and " -> " in r.getMessage()]
    assert sorted((s.hostgroup, s.host, s.status) for s in wrk.hostgroups.servers()) == \
        [(0, "b", "SHUNNED"), (1, "b", "SHUNNED")]
    assert gone.status == "OFFLINE_HARD"
    assert (0, "a", "ONLINE", "OFFLINE_HARD") in changes and (1, "b", "ONLINE", "SHUNNED") in changes
    assert isinstance(wrk.hostgroups, Hostgroups)


def _channels(**ours_kw) -> tuple[Channel, Channel]:
    """Two channels over a socketpair: ours (with ``ours_kw``'s handlers) and its peer."""
    a, b = socket.socketpair()
    ours = Channel(trio.SocketStream(trio.socket.from_stdlib_socket(a)), name="ours", **ours_kw)
    peer = Channel(trio.SocketStream(trio.socket.from_stdlib_socket(b)), name="peer")
    return ours, peer


async def test_an_unreadable_frame_ends_the_channel_and_fails_the_waiting_call():
    ours, peer = _channels()
    result = {}

    async def ask():
        try:
            await ours.call("rows", names=[])
        except ChannelBroken as exc:
            result["error"] = exc

    async with trio.open_nursery() as nursery:
        await nursery.start(ours.run)
        nursery.start_soon(ask)
        await trio.sleep(0.05)
        garbage = b"not a pickle"
        await peer.stream.send_all(HEADER.pack(len(garbage), FORMAT_VERSION) + garbage)
    # ours.run ended by itself (logged), without raising into the nursery
    assert isinstance(result["error"], ChannelBroken)
    assert ours.closed


async def test_a_failing_notice_handler_and_an_unencodable_reply_keep_the_channel():
    def on_note(kind, body):
        raise RuntimeError("cannot apply")

    async def on_request(kind, body):
        return lambda: None  # a function: pickle refuses it

    ours, peer = _channels(on_note=on_note, on_request=on_request)
    async with trio.open_nursery() as nursery:
        await nursery.start(ours.run)
        await nursery.start(peer.run)
        peer.note_nowait("servers", servers=[])
        with pytest.raises(RemoteError, match="(?i)pickle"):
            await peer.call("rows", timeout=5)
        assert not ours.closed and not peer.closed
        nursery.cancel_scope.cancel()


async def test_a_call_nobody_answers_times_out():
    ours, _peer = _channels()  # the peer never reads
    with pytest.raises(CallTimedOut):
        await ours.call("rows", timeout=0.05)
