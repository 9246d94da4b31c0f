"""The monitor's check logs: ProxySQL's ``monitor.mysql_server_*_log`` tables.

Each check appends one row per server in the column order of ProxySQL's
table (:data:`LOG_TABLES`); the admin interface copies them into its
``monitor`` schema when a statement reads them. ``time_start_us`` is the wall
clock (microseconds since the epoch) when the check started, as in ProxySQL;
``*_time_us`` how long it took (NULL/0 on failure); the error column holds the
error text, NULL on success.

Bounded as ProxySQL bounds them: rows older than ``mysql-monitor_history``
are dropped (but never younger than ``(monitor_ping_max_failures + 1)``
ping intervals, which ProxySQL keeps to decide shunning), and each table also
keeps at most :data:`MAX_ROWS` rows (the oldest go first), so a proxy
monitoring many servers at short intervals has a fixed memory ceiling.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

__all__ = ["CONNECT", "LOG_TABLES", "MAX_ROWS", "PING", "READ_ONLY", "REPLICATION_LAG", "MonitorLogs"]

CONNECT = "mysql_server_connect_log"
PING = "mysql_server_ping_log"
READ_ONLY = "mysql_server_read_only_log"
REPLICATION_LAG = "mysql_server_replication_lag_log"

#: table -> column definitions (ProxySQL 2.x's, in its column order). myrouter appends
#: ``repl_lag_ms`` to the lag log: the lag in milliseconds, sub-second with a heartbeat table.
LOG_TABLES: dict[str, str] = {
    CONNECT: (
        "(hostname VARCHAR NOT NULL , port INT NOT NULL DEFAULT 3306 , time_start_us INT NOT NULL DEFAULT 0 , "
        "connect_success_time_us INT DEFAULT 0 , connect_error VARCHAR , PRIMARY KEY (hostname, port, time_start_us))"
    ),
    PING: (
        "(hostname VARCHAR NOT NULL , port INT NOT NULL DEFAULT 3306 , time_start_us INT NOT NULL DEFAULT 0 , "
        "ping_success_time_us INT DEFAULT 0 , ping_error VARCHAR , PRIMARY KEY (hostname, port, time_start_us))"
    ),
    READ_ONLY: (
        "(hostname VARCHAR NOT NULL , port INT NOT NULL DEFAULT 3306 , time_start_us INT NOT NULL DEFAULT 0 , "
        "success_time_us INT DEFAULT 0 , read_only INT DEFAULT 1 , error VARCHAR , "
        "PRIMARY KEY (hostname, port, time_start_us))"
    ),
    REPLICATION_LAG: (
        "(hostname VARCHAR NOT NULL , port INT NOT NULL DEFAULT 3306 , time_start_us INT NOT NULL DEFAULT 0 , "
        "success_time_us INT DEFAULT 0 , repl_lag INT DEFAULT 0 , error VARCHAR , repl_lag_ms INT DEFAULT NULL , "
        "PRIMARY KEY (hostname, port, time_start_us))"
    ),
}

#: the most rows each log table keeps
MAX_ROWS = 10000


def wall_us() -> int:
    """Microseconds since the epoch (ProxySQL's ``time_start_us``)."""
    return time.time_ns() // 1000


class MonitorLogs:
    """Four bounded logs of check results, in insertion (= time) order."""

    def __init__(self, max_rows: int = MAX_ROWS) -> None:
        self.max_rows = max_rows
        self._rows: dict[str, deque[tuple]] = {name: deque(maxlen=max_rows) for name in LOG_TABLES}
        self._last_start: dict[tuple[str, str, int], int] = {}

    def add(self, table: str, host: str, port: int, time_start_us: int, *values: Any) -> None:
        """Append a row ``(host, port, time_start_us, *values)``.

        Two checks of one server never share a ``time_start_us`` (it is the
        primary key in ProxySQL's table): a tie is moved on by a microsecond.
        """
        key = (table, host, port)
        last = self._last_start.get(key)
        if last is not None and time_start_us <= last:
            time_start_us = last + 1
        self._last_start[key] = time_start_us
        self._rows[table].append((host, port, time_start_us, *values))

    def purge(self, history_ms: int, now_us: int | None = None) -> int:
        """Drop rows that started more than ``history_ms`` ago; returns how many went."""
        cutoff = (wall_us() if now_us is None else now_us) - history_ms * 1000
        dropped = 0
        for rows in self._rows.values():
            while rows and rows[0][2] < cutoff:
                rows.popleft()
                dropped += 1
        return dropped

    def rows(self, table: str) -> list[tuple]:
        return list(self._rows[table])

    def last(self, table: str, host: str, port: int) -> tuple | None:
        """The latest row of one server, or None."""
        for row in reversed(self._rows[table]):
            if row[0] == host and row[1] == port:
                return row
        return None

    def __len__(self) -> int:
        return sum(len(r) for r in self._rows.values())


def history_ms(v: Any) -> int:
    """How long rows are kept: ``monitor_history``, but at least as long as the ping
    checks that decide shunning span (ProxySQL's rule)."""
    floor = v.monitor_ping_interval * (v.monitor_ping_max_failures + 1)
    return max(int(v.monitor_history), int(floor))

