"""One proxy to the operator: the ``stats_*`` rows of every worker made into one table (sans-I/O).

Each worker builds its rows with the functions that build them in a single process
(:mod:`myrouter.admin.stats`); the supervisor merges them here, per table:

* ``stats_mysql_processlist``: every worker's sessions, ``ThreadID`` = the worker number;
* ``stats_mysql_connection_pool``: per server, connection and traffic counts summed; ``status`` and
  ``Latency_us`` are the supervisor's (its monitor's), and ``MaxConnUsed`` is the sum of the
  workers' peaks (an upper bound of the instance's peak: the peaks need not have coincided);
* ``stats_mysql_query_digest``: per (hostgroup, schema, user, client, digest), counts and times
  summed, first/last seen and min/max times taken across workers;
* ``stats_mysql_query_rules``, ``stats_mysql_commands_counters``: summed per rule, per command;
* ``stats_mysql_global``: summed, but for the values the supervisor owns (uptime, the admin port's
  blocked hosts) and ``Query_Digest_Entries`` (the merged digest table's size).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

WORKER_TABLES = frozenset({
    "stats_mysql_processlist", "stats_mysql_connection_pool", "stats_mysql_query_digest",
    "stats_mysql_query_digest_reset", "stats_mysql_query_rules", "stats_mysql_commands_counters",
    "stats_mysql_global",
})

#: stats_mysql_global values the supervisor holds itself (not summed over workers)
SUPERVISOR_GLOBALS = ("ProxySQL_Uptime", "Admin_client_host_blocked_connections")

Rows = list[Sequence[Any]]


def processlist(per_worker: Mapping[int, Rows]) -> Rows:
    out = []
    for worker, rows in sorted(per_worker.items()):
        out += [(worker, *row[1:]) for row in rows]
    return out


def connection_pool(per_worker: Mapping[int, Rows], own: Rows) -> Rows:
    """``own``: the supervisor's rows (every server it knows, with its status and latency)."""
    sums: dict[tuple, list] = {}
    for rows in per_worker.values():
        for r in rows:
            key = (r[0], r[1], r[2])
            acc = sums.get(key)
            if acc is None:
                sums[key] = list(r)
            else:
                for i in range(4, 13):  # ConnUsed .. Bytes_data_recv
                    acc[i] += r[i]
    out = []
    for r in own:
        key = (r[0], r[1], r[2])
        acc = sums.pop(key, None)
        if acc is None:
            out.append(tuple(r))
        else:
            out.append((*r[:4], *acc[4:13], r[13]))
    # servers only workers still hold connections to (retired there, forgotten here)
    out += [tuple(acc) for acc in sums.values()]
    return out


def query_digest(per_worker: Mapping[int, Rows]) -> Rows:
    """Rows as ``admin.stats.digest_rows`` makes them: (hostgroup, schemaname, username,
    client_address, digest, digest_text, count_star, first_seen, last_seen, sum_time, min_time,
    max_time, sum_rows_affected, sum_rows_sent)."""
    merged: dict[tuple, list] = {}
    for rows in per_worker.values():
        for r in rows:
            key = (r[0], r[1], r[2], r[3], r[4])
            acc = merged.get(key)
            if acc is None:
                merged[key] = list(r)
                continue
            acc[6] += r[6]
            acc[7] = min(acc[7], r[7])
            acc[8] = max(acc[8], r[8])
            acc[9] += r[9]
            acc[10] = min(acc[10], r[10])
            acc[11] = max(acc[11], r[11])
            acc[12] += r[12]
            acc[13] += r[13]
    return [tuple(r) for r in merged.values()]


def summed_by_key(per_worker: Mapping[int, Rows], key_columns: int) -> Rows:
    """Rows keyed by their first ``key_columns`` columns, the others summed (in first-seen order)."""
    merged: dict[tuple, list] = {}
    for rows in per_worker.values():
        for r in rows:
            key = tuple(r[:key_columns])
            acc = merged.get(key)
            if acc is None:
                merged[key] = list(r)
            else:
                for i in range(key_columns, len(r)):
                    acc[i] += r[i]
    return [tuple(r) for r in merged.values()]


def global_status(per_worker: Mapping[int, Rows], own: Rows, digest_entries: int | None) -> Rows:
    """``own``: the supervisor's own rows (for the names it holds and the order of the names)."""
    summed = dict(summed_by_key(per_worker, 1))
    out = []
    for name, value in own:
        if name in SUPERVISOR_GLOBALS:
            out.append((name, value))
        elif name == "Query_Digest_Entries" and digest_entries is not None:
            out.append((name, digest_entries))
        else:
            out.append((name, summed.get(name, 0)))
    return out


def merge(table: str, per_worker: Mapping[int, Rows], own: Rows, *, digest_entries: int | None = None) -> Rows:
    """The instance's rows of ``table`` (one of WORKER_TABLES) from each worker's."""
    if table == "stats_mysql_processlist":
        return processlist(per_worker)
    if table == "stats_mysql_connection_pool":
        return connection_pool(per_worker, own)
    if table in ("stats_mysql_query_digest", "stats_mysql_query_digest_reset"):
        return query_digest(per_worker)
    if table == "stats_mysql_query_rules":
        return sorted(summed_by_key(per_worker, 1))
    if table == "stats_mysql_commands_counters":
        return summed_by_key(per_worker, 1)
    if table == "stats_mysql_global":
        return global_status(per_worker, own, digest_entries)
    raise KeyError(table)
