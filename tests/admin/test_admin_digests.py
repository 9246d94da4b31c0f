"""Per-statement accounting: DigestStats and CommandCounters (unit level: record() called directly)."""

from __future__ import annotations

from myrouter.stats.digests import (
    BUCKET_COLUMNS,
    COMMAND_NAMES,
    LATENCY_BUCKETS_US,
    CommandCounters,
    DigestStats,
    affected_rows,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_digest_record_aggregates_by_key() -> None:
    clock = Clock()
    d = DigestStats(clock)
    d.record(1, "test", "app", "127.0.0.1", 0xABC, "SELECT ?", 120, 0, 3)
    clock.now += 5
    d.record(1, "test", "app", "127.0.0.1", 0xABC, "SELECT ?", 80, 0, 2)
    d.record(0, "test", "app", "127.0.0.1", 0xDEF, "INSERT INTO t VALUES (?)", 300, 1, 0)
    rows = {r.digest: r for r in d.snapshot()}
    assert len(d) == 2
    r = rows[0xABC]
    assert (r.hostgroup, r.schemaname, r.username, r.client_address, r.digest_text) == (
        1, "test", "app", "127.0.0.1", "SELECT ?")
    assert (r.count_star, r.sum_time, r.min_time, r.max_time, r.sum_rows_sent, r.sum_rows_affected) == (
        2, 200, 80, 120, 5, 0)
    assert (r.first_seen, r.last_seen) == (1_700_000_000, 1_700_000_005)
    assert rows[0xDEF].sum_rows_affected == 1


def test_digest_keys_include_hostgroup_user_schema_client() -> None:
    d = DigestStats()
    for hg, schema, user, client in ((0, "a", "u", "h"), (1, "a", "u", "h"), (0, "b", "u", "h"), (0, "a", "v", "h"),
                                     (0, "a", "u", "k")):
        d.record(hg, schema, user, client, 1, "SELECT ?", 10, 0, 1)
    assert len(d.snapshot()) == 5


def test_digest_reset_returns_then_empties() -> None:
    d = DigestStats()
    d.record(0, "", "app", "", 7, "SELECT ?", 10, 0, 1)
    taken = d.reset()
    assert [r.count_star for r in taken] == [1]
    assert d.snapshot() == [] and len(d) == 0
    d.record(0, "", "app", "", 7, "SELECT ?", 10, 0, 1)
    assert d.snapshot()[0].count_star == 1


def test_command_counters_buckets() -> None:
    c = CommandCounters(slow_query_us=1_000_000)
    for us in (50, 100, 101, 499, 2_000, 20_000_000):
        c.record("SELECT", us)
    c.record("INSERT", 700)
    rows = {r.command: r for r in c.snapshot()}
    assert [r.command for r in c.snapshot()] == list(COMMAND_NAMES)
    sel = rows["SELECT"]
    assert sel.total_cnt == 6 and sel.total_time_us == 50 + 100 + 101 + 499 + 2_000 + 20_000_000
    counts = dict(zip(BUCKET_COLUMNS, sel.buckets))
    assert counts["cnt_100us"] == 2  # 50 and 100 (bounds are inclusive)
    assert counts["cnt_500us"] == 2
    assert counts["cnt_5ms"] == 1
    assert counts["cnt_INFs"] == 1
    assert sum(sel.buckets) == sel.total_cnt
    assert dict(zip(BUCKET_COLUMNS, rows["INSERT"].buckets))["cnt_1ms"] == 1
    assert c.slow_queries == 1
    assert len(BUCKET_COLUMNS) == len(LATENCY_BUCKETS_US) + 1


def test_command_names_are_normalized_and_bounded() -> None:
    c = CommandCounters()
    c.record("START TRANSACTION", 1)
    c.record("start transaction", 1)
    c.record("LOCK", 1)
    c.record("GARBAGE", 1)
    c.record("WITH", 1)
    rows = {r.command: r.total_cnt for r in c.snapshot()}
    assert rows["START_TRANSACTION"] == 2 and rows["LOCK_TABLE"] == 1 and rows["UNKNOWN"] == 1
    assert rows["SELECT"] == 1
    assert "GARBAGE" not in rows
    c.reset()
    assert all(r.total_cnt == 0 for r in c.snapshot()) and c.slow_queries == 0


def test_affected_rows_from_ok_payload() -> None:
    assert affected_rows(None) == 0
    assert affected_rows(b"\x00\x05\x00\x02\x00\x00\x00") == 5
    assert affected_rows(b"\x00\xfc\x10\x27\x00\x00\x02\x00\x00\x00") == 10000
    assert affected_rows(b"\xfe\x00\x00\x02\x00\x00\x00") == 0  # OK-style result-set terminator
    assert affected_rows(b"\x00\xfd\x01") == 0  # truncated: not trusted


def test_digest_cap_evicts_the_least_recently_seen_and_counts() -> None:
    d = DigestStats(Clock(), max_digests=3)

    def run(digest: int) -> None:
        d.record(0, "test", "app", "127.0.0.1", digest, f"SELECT {digest}", 10, 0, 1)

    for digest in (1, 2, 3):
        run(digest)
    run(1)  # 1 is now the most recently seen: 2 is the least
    run(4)
    assert sorted(r.digest for r in d.snapshot()) == [1, 3, 4]
    assert (len(d), d.evicted) == (3, 1)
    run(5)
    assert sorted(r.digest for r in d.snapshot()) == [1, 4, 5] and d.evicted == 2
    assert {r.digest: r.count_star for r in d.snapshot()}[1] == 2  # the kept entry kept its counts
    d.max_digests = 1  # lowered at runtime: down to the cap at once
    assert [r.digest for r in d.snapshot()] == [5] and d.evicted == 4
    d.reset()
    assert len(d) == 0 and d.evicted == 4  # a counter: the reset table does not clear it


def test_digest_default_cap_is_the_variable_default() -> None:
    from myrouter.config import MySQLVariables
    from myrouter.stats.digests import DEFAULT_MAX_DIGESTS

    assert DigestStats().max_digests == DEFAULT_MAX_DIGESTS == MySQLVariables().query_digests_max_digests


def test_digest_rows_in_slices_and_take() -> None:
    d = DigestStats(Clock())
    for digest in range(5):
        d.record(0, "test", "app", "127.0.0.1", digest, f"SELECT {digest}", 10, 0, 1)
    keys = d.keys()
    d.max_digests = 4  # evicts digest 0 between the slices
    rows = d.rows_for(keys[:2]) + d.rows_for(keys[2:])
    assert [r.digest for r in rows] == [1, 2, 3, 4]
    make_rows = d.take()
    d.record(0, "test", "app", "127.0.0.1", 9, "SELECT 9", 10, 0, 1)  # after the take: not in it
    assert len(d) == 1 and [r.digest for r in make_rows()] == [1, 2, 3, 4]
