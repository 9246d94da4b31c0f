"""The per-statement half of the statement statistics: ``record`` of ``DigestStats`` and of
``CommandCounters`` (see digests.py, which is the module to import: its classes add what the admin
interface and the Prometheus exposition read).

This file is plain Python and runs as such; setup.py also compiles it with Cython, the C types of
its fields coming from recording.pxd beside it (protocol/kernels.py: which form runs). The sums
and times stay Python integers (a hostile OK packet's affected_rows may exceed 64 bits), so both
forms count alike on any input; what the compiled form saves is the interpreter around them.
No method is added or removed without its line in the .pxd.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict

_bisect_left = bisect.bisect_left


def source_sha256() -> bytes:
    """SHA-256 (hex, ASCII) of the sources the compiled module was built from (setup.py defines it
    in C; see recording.pxd). Plain Python has no such name: only the compiled module answers."""
    return _SOURCE_SHA256  # noqa: F821


class _Digest:
    __slots__ = ("digest_text", "count_star", "first_seen", "last_seen", "sum_time", "min_time", "max_time",
                 "sum_rows_affected", "sum_rows_sent")

    def __init__(self, digest_text: str, now: int, duration_us: int, rows_affected: int, rows_sent: int) -> None:
        self.digest_text = digest_text
        self.count_star = 1
        self.first_seen = now
        self.last_seen = now
        self.sum_time = duration_us
        self.min_time = duration_us
        self.max_time = duration_us
        self.sum_rows_affected = rows_affected
        self.sum_rows_sent = rows_sent


class DigestRecorder:
    """Entries per (hostgroup, schemaname, username, client_address, digest), at most
    ``_max_digests``, in order of last use (a hit moves its entry to the end, eviction takes the
    front); ``evicted`` counts the entries dropped. ``enabled`` false: nothing is recorded."""

    __slots__ = ("_entries", "_clock", "_max_digests", "evicted", "enabled")

    def __init__(self, clock, max_digests: int) -> None:
        self._entries: OrderedDict[tuple, _Digest] = OrderedDict()
        self._clock = clock
        self._max_digests = max_digests
        self.evicted = 0
        self.enabled = True

    def _evict_above(self, limit: int) -> None:
        entries = self._entries
        while len(entries) > limit:
            entries.popitem(last=False)
            self.evicted += 1

    def record(self, hostgroup: int, schemaname: str, username: str, client_address: str, digest: int,
               digest_text: str, duration_us: int, rows_affected: int, rows_sent: int) -> None:
        """Account one statement. ``duration_us``: from the command's start to the end of its response."""
        if not self.enabled:
            return
        key = (hostgroup, schemaname, username, client_address, digest)
        now = int(self._clock())
        entries = self._entries
        e = entries.get(key)
        if e is None:
            if len(entries) >= self._max_digests:
                self._evict_above(self._max_digests - 1)
            entries[key] = _Digest(digest_text, now, duration_us, rows_affected, rows_sent)
            return
        entries.move_to_end(key)
        e.count_star += 1
        e.last_seen = now
        e.sum_time += duration_us
        if duration_us < e.min_time:
            e.min_time = duration_us
        if duration_us > e.max_time:
            e.max_time = duration_us
        e.sum_rows_affected += rows_affected
        e.sum_rows_sent += rows_sent


class _Command:
    __slots__ = ("total_time_us", "total_cnt", "buckets")

    def __init__(self, buckets: int) -> None:
        self.total_time_us = 0
        self.total_cnt = 0
        self.buckets = [0] * buckets


class CommandRecorder:
    """Statements per command name (``_counters``: one per name of ``names``) with latency buckets
    (upper bounds ``bucket_bounds``, a last bucket for the rest), and slow statements
    (``slow_query_us`` or more; counted even when ``enabled`` is false). A name seen for the first
    time finds its counter through ``command_key`` (any name -> one of ``names``)."""

    __slots__ = ("_by_name", "_counters", "_command_key", "_bounds", "slow_query_us", "slow_queries", "enabled")

    def __init__(self, slow_query_us: int, names, bucket_bounds: tuple, command_key) -> None:
        self.slow_query_us = slow_query_us
        self.slow_queries = 0
        self.enabled = True
        self._bounds = bucket_bounds
        self._command_key = command_key
        self._counters: dict[str, _Command] = {name: _Command(len(bucket_bounds) + 1) for name in names}
        # any name seen so far -> its counter (a name outside ProxySQL's list counts as UNKNOWN)
        self._by_name: dict[str, _Command] = dict(self._counters)

    def record(self, command_name: str, duration_us: int) -> None:
        """Account one statement: ``command_name`` is ProxySQL's (``SELECT``) or a statement keyword
        (``START TRANSACTION``, ``LOCK``); anything else counts as ``UNKNOWN``."""
        if duration_us >= self.slow_query_us:
            self.slow_queries += 1
        if not self.enabled:
            return
        c = self._by_name.get(command_name)
        if c is None:
            c = self._counters[self._command_key(command_name)]
            if len(self._by_name) < 4096:  # bounded: names come from client statements
                self._by_name[command_name] = c
        c.total_cnt += 1
        c.total_time_us += duration_us
        c.buckets[_bisect_left(self._bounds, duration_us)] += 1
