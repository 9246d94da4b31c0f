"""Per-statement accounting: query digests and command counters.

Both are bumped once per statement on the hot path, so ``record`` is a dict
lookup plus a few integer updates on a slotted object; everything else
(``snapshot``, ``reset``) runs when the admin interface or the Prometheus
exposition asks.

``DigestStats`` feeds ProxySQL's ``stats_mysql_query_digest``: one entry per
(hostgroup, schemaname, username, client_address, digest) with count, first
and last seen (unix seconds), total/min/max time (microseconds), and rows
affected and sent. ProxySQL records hostgroup -1 for statements that never
reached a backend (query cache hits, rules answering with OK_msg/error_msg).
The table holds at most ``max_digests`` entries (``mysql-query_digests_max_digests``):
a new entry beyond it evicts the least recently seen one, counted in ``evicted``.

``CommandCounters`` feeds ``stats_mysql_commands_counters``: per command
(ProxySQL's names: SELECT, INSERT, START_TRANSACTION, ...) the count, total
time and ProxySQL's latency buckets (<= 100us, 500us, 1ms, 5ms, 10ms, 50ms,
100ms, 500ms, 1s, 5s, 10s, above).

Stdlib only: the snapshots are plain tuples an aggregator can sum across
worker processes.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import NamedTuple

from ..protocol import kernels

__all__ = [
    "DigestStats",
    "DEFAULT_MAX_DIGESTS",
    "DigestRow",
    "CommandCounters",
    "CommandRow",
    "COMMAND_NAMES",
    "LATENCY_BUCKETS_US",
    "BUCKET_COLUMNS",
    "affected_rows",
]


class DigestRow(NamedTuple):
    """One row of ``stats_mysql_query_digest`` (``digest`` as an int; format it for display)."""

    hostgroup: int
    schemaname: str
    username: str
    client_address: str
    digest: int
    digest_text: str
    count_star: int
    first_seen: int
    last_seen: int
    sum_time: int
    min_time: int
    max_time: int
    sum_rows_affected: int
    sum_rows_sent: int


# ``record`` and the entries it updates are in recording.py, a kernel that setup.py also compiles
# (protocol/kernels.py says which form runs); the classes below add what the admin interface reads.
_recording = kernels.load("stats.recording")
_Digest = _recording._Digest


#: ``mysql-query_digests_max_digests``'s default
DEFAULT_MAX_DIGESTS = 100_000


class DigestStats(_recording.DigestRecorder):
    """Statement statistics per digest, for ``stats_mysql_query_digest``.

    At most ``max_digests`` entries, least recently seen first out; ``evicted`` counts the
    entries dropped that way since the start (``stats_mysql_global`` Query_Digest_Evictions).
    ``enabled`` false (``mysql-query_digests=false``): statements are not recorded.
    """

    __slots__ = ()

    def __init__(self, clock=time.time, max_digests: int = DEFAULT_MAX_DIGESTS) -> None:
        super().__init__(clock, max_digests)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def max_digests(self) -> int:
        return self._max_digests

    @max_digests.setter
    def max_digests(self, value: int) -> None:
        """A lower cap evicts the entries above it at once."""
        if value < 1:
            raise ValueError("max_digests must be at least 1")
        self._max_digests = value
        self._evict_above(value)

    def snapshot(self) -> list[DigestRow]:
        """Every entry as a frozen row."""
        return _rows(self._entries.items())

    def keys(self) -> list[tuple]:
        """The entries' keys now, for ``rows_for`` in slices (a large table, a little at a time)."""
        return list(self._entries)

    def rows_for(self, keys: list[tuple]) -> list[DigestRow]:
        """Frozen rows of those of ``keys`` still present."""
        entries = self._entries
        return _rows((key, e) for key in keys if (e := entries.get(key)) is not None)

    def take(self) -> Callable[[], list[DigestRow]]:
        """Start again from empty; returns what makes the rows of the entries taken (anywhere,
        any time: nothing touches them any more). ``stats_mysql_query_digest_reset``."""
        taken, self._entries = self._entries, OrderedDict()
        return lambda: _rows(taken.items())

    def reset(self) -> list[DigestRow]:
        """Take the entries (as ``snapshot``) and start again from empty."""
        return self.take()()


def _rows(items: Iterable[tuple[tuple, _Digest]]) -> list[DigestRow]:
    return [
        DigestRow(*key[:4], key[4], e.digest_text, e.count_star, e.first_seen, e.last_seen, e.sum_time,
                  e.min_time, e.max_time, e.sum_rows_affected, e.sum_rows_sent)
        for key, e in items
    ]


# ProxySQL's command names (MYSQL_COM_QUERY_* in its sources), in its order.
COMMAND_NAMES: tuple[str, ...] = (
    "ALTER_TABLE", "ALTER_VIEW", "ANALYZE_TABLE", "BEGIN", "CALL", "CHANGE_MASTER", "COMMIT", "CREATE_DATABASE",
    "CREATE_INDEX", "CREATE_TABLE", "CREATE_TEMPORARY", "CREATE_TRIGGER", "CREATE_USER", "CREATE_VIEW",
    "DEALLOCATE", "DELETE", "DESCRIBE", "DROP_DATABASE", "DROP_INDEX", "DROP_TABLE", "DROP_TRIGGER", "DROP_USER",
    "DROP_VIEW", "GRANT", "EXECUTE", "EXPLAIN", "FLUSH", "INSERT", "KILL", "LOAD", "LOCK_TABLE", "OPTIMIZE",
    "PREPARE", "PURGE", "RENAME_TABLE", "RESET_MASTER", "RESET_SLAVE", "REPLACE", "REVOKE", "ROLLBACK",
    "SAVEPOINT", "SELECT", "SELECT_FOR_UPDATE", "SET", "SHOW_TABLE_STATUS", "START_TRANSACTION",
    "TRUNCATE_TABLE", "UNLOCK_TABLES", "UPDATE", "USE", "SHOW", "UNKNOWN",
)
_KNOWN = frozenset(COMMAND_NAMES)
# Coarser names (a statement's first keyword) -> ProxySQL's name.
_ALIASES = {
    "START TRANSACTION": "START_TRANSACTION", "START": "START_TRANSACTION", "LOCK": "LOCK_TABLE",
    "LOCK_TABLES": "LOCK_TABLE", "UNLOCK": "UNLOCK_TABLES", "TRUNCATE": "TRUNCATE_TABLE", "ALTER": "ALTER_TABLE",
    "CREATE": "CREATE_TABLE", "DROP": "DROP_TABLE", "RENAME": "RENAME_TABLE", "OPTIMIZE_TABLE": "OPTIMIZE",
    "ANALYZE": "ANALYZE_TABLE", "DESC": "DESCRIBE", "WITH": "SELECT", "TABLE": "SELECT", "VALUES": "SELECT",
    "XA": "UNKNOWN", "DO": "UNKNOWN", "HANDLER": "UNKNOWN", "HELP": "UNKNOWN",
}

#: upper bounds (inclusive, microseconds) of ProxySQL's latency buckets; a last bucket takes the rest
LATENCY_BUCKETS_US: tuple[int, ...] = (100, 500, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000, 1_000_000,
                                       5_000_000, 10_000_000)
#: the bucket columns of ``stats_mysql_commands_counters``
BUCKET_COLUMNS: tuple[str, ...] = ("cnt_100us", "cnt_500us", "cnt_1ms", "cnt_5ms", "cnt_10ms", "cnt_50ms",
                                   "cnt_100ms", "cnt_500ms", "cnt_1s", "cnt_5s", "cnt_10s", "cnt_INFs")


class CommandRow(NamedTuple):
    command: str
    total_time_us: int
    total_cnt: int
    buckets: tuple[int, ...]  # one count per BUCKET_COLUMNS entry (not cumulative)


class CommandCounters(_recording.CommandRecorder):
    """Statements per command with latency buckets, for ``stats_mysql_commands_counters``.

    ``slow_queries`` counts statements that took ``slow_query_us`` or more
    (ProxySQL's ``Slow_queries``, threshold ``mysql-long_query_time``), whether or not the
    per-command counters are ``enabled`` (``mysql-commands_stats``).
    """

    __slots__ = ()

    def __init__(self, slow_query_us: int = 1_000_000) -> None:
        super().__init__(slow_query_us, COMMAND_NAMES, LATENCY_BUCKETS_US, _command_key)

    def snapshot(self) -> list[CommandRow]:
        """Every command of ProxySQL's list (zeros included), in its order."""
        return [CommandRow(name, c.total_time_us, c.total_cnt, tuple(c.buckets)) for name, c in self._counters.items()]

    def reset(self) -> None:
        self.slow_queries = 0
        for c in self._counters.values():
            c.total_time_us = 0
            c.total_cnt = 0
            c.buckets = [0] * len(BUCKET_COLUMNS)


def _command_key(name: str) -> str:
    upper = " ".join(name.upper().split())
    if upper in _KNOWN:
        return upper
    alias = _ALIASES.get(upper)
    if alias is not None:
        return alias
    underscored = upper.replace(" ", "_")
    return underscored if underscored in _KNOWN else "UNKNOWN"


def affected_rows(ok_payload: bytes | None) -> int:
    """``affected_rows`` of an OK packet payload (0 for None or a malformed one): the length-encoded
    integer after the header byte."""
    if not ok_payload or len(ok_payload) < 2:
        return 0
    first = ok_payload[1]
    if first < 0xFB:
        return first
    size = {0xFC: 2, 0xFD: 3, 0xFE: 8}.get(first)
    if size is None or len(ok_payload) < 2 + size:
        return 0
    return int.from_bytes(ok_payload[2:2 + size], "little")
