"""The monitor's checks of one server (host:port), over the monitor's own account.

Each check returns a :class:`Result` and never raises for a server problem:
refused or timed-out connections, lost connections and server errors all
become ``Result(ok=False, error=...)``. Errors that say nothing about the
server's health (the monitor account is refused: wrong
``mysql-monitor_password``, missing grants) are flagged ``not_health``: they
are logged but do not shun (a wrong monitor password must not take every
server out of service).

``connect`` opens a fresh connection each time (that is what it measures).
``ping``, ``read_only``, ``replication_lag`` and the heartbeat writes share a
small pool of idle monitor connections per server (:class:`MonitorConnections`);
a pooled connection that turns out to be dead (server restarted, wait_timeout)
is replaced once within the same check before the check counts as failed.
Every check is bounded by its own timeout (``mysql-monitor_*_timeout``); a
connection a check had to open is bounded by ``mysql-monitor_connect_timeout``.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import trio

from ..backend.connection import (
    BackendConnection,
    BackendState,
    ServerAddress,
    open_backend,
    query_rows,
)
from ..net.stream import ConnectionLost
from ..protocol.auth import BackendSecret
from ..protocol.constants import Command
from ..protocol.errors import MalformedPacket, MySQLError
from ..protocol.messages import parse_err
from ..protocol.response import ResponseKind

log = logging.getLogger("myrouter.monitor")

__all__ = [
    "HEARTBEAT_DDL",
    "Checker",
    "Credentials",
    "MonitorConnections",
    "Result",
    "heartbeat_lag_ms",
    "lag_from_replica_status",
    "parse_heartbeat_table",
    "read_only_value",
]

T = TypeVar("T")

#: errors of the monitor account itself (access denied, host not allowed, too many
#: connections for the user, missing privilege): not a sign of an unhealthy server
ACCOUNT_ERRORS = frozenset((1044, 1045, 1130, 1142, 1143, 1203, 1226, 1227))
ER_PARSE_ERROR = 1064
ER_NO_SUCH_TABLE = 1146
ER_BAD_DB_ERROR = 1049
#: idle pooled connections kept per server
POOL_IDLE_MAX = 2

#: pt-heartbeat's table (``pt-heartbeat --create-table``)
HEARTBEAT_DDL = (
    "CREATE TABLE IF NOT EXISTS {table} (ts varchar(26) NOT NULL, server_id int unsigned NOT NULL PRIMARY KEY, "
    "file varchar(255) DEFAULT NULL, position bigint unsigned DEFAULT NULL, "
    "relay_master_log_file varchar(255) DEFAULT NULL, exec_master_log_pos bigint unsigned DEFAULT NULL)"
)
_IDENT = re.compile(r"[A-Za-z0-9_$]{1,64}")


@dataclass(frozen=True)
class Credentials:
    """The monitor account (``mysql-monitor_username`` / ``mysql-monitor_password``)."""

    username: str
    password: str = field(repr=False)

    @property
    def secret(self) -> BackendSecret:
        return BackendSecret(plain=self.password.encode())


@dataclass
class Result:
    """What one check found."""

    ok: bool
    elapsed_us: int = 0  # how long the check's own work took
    error: str | None = None  # the error text (for the log tables), None when ok
    timeout: bool = False  # failed by running out of time
    not_health: bool = False  # failed for a reason that is not the server's health (see module doc)
    value: Any = None  # read_only: bool; lag: milliseconds or None (not a replica)


def _describe(exc: BaseException, timeout_s: float | None = None) -> str:
    """Error text for the logs (never contains a password)."""
    if isinstance(exc, trio.TooSlowError):
        return f"timeout after {int((timeout_s or 0) * 1000)}ms"
    if isinstance(exc, MySQLError):
        cause = exc.__cause__
        if exc.code == 9001 and isinstance(cause, trio.TooSlowError):
            return f"connect timeout after {int((timeout_s or 0) * 1000)}ms"
        if exc.code == 9001 and isinstance(cause, ConnectionLost):
            text = str(cause)
            return text if text.startswith("cannot connect") else f"connection lost during login: {text}"
        return f"{exc.code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


class MonitorConnections:
    """Idle monitor connections per host:port, for the checks that reuse them."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[BackendConnection]] = {}
        # endpoint -> the TLS context to log in with (servers with mysql_servers.use_ssl), or None
        self.tls_for: Callable[[tuple[str, int]], ssl.SSLContext | None] = lambda endpoint: None

    async def open(self, endpoint: tuple[str, int], creds: Credentials, timeout_s: float) -> BackendConnection:
        """A new connection; MySQLError (9001 for network failures and timeouts, else the server's error)."""
        host, port = endpoint
        tls = self.tls_for(endpoint)
        return await open_backend(
            ServerAddress(-1, host, port, use_ssl=tls is not None), username=creds.username, secret=creds.secret,
            database=None, client_capabilities=0, attrs={"program_name": "myrouter-monitor"},
            connect_timeout=timeout_s, tls=tls,
        )

    def take(self, endpoint: tuple[str, int]) -> BackendConnection | None:
        idle = self._idle.get(endpoint)
        use_ssl = self.tls_for(endpoint) is not None
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            if conn.server.use_ssl != use_ssl:  # use_ssl changed since it was opened
                conn.close()
                continue
            return conn
        return None

    def put(self, endpoint: tuple[str, int], conn: BackendConnection) -> None:
        if conn.closed or conn.state is not BackendState.IDLE:
            conn.close()
            return
        idle = self._idle.setdefault(endpoint, [])
        if len(idle) >= POOL_IDLE_MAX:
            conn.close()
        else:
            idle.append(conn)

    def forget(self, endpoint: tuple[str, int]) -> None:
        """Close the idle connections of one server (it failed, or left the configuration)."""
        for conn in self._idle.pop(endpoint, []):
            conn.close()

    def endpoints(self) -> list[tuple[str, int]]:
        return list(self._idle)

    def idle_count(self) -> int:
        return sum(len(v) for v in self._idle.values())

    async def aclose(self) -> None:
        """Say COM_QUIT on every idle connection (at most a second in all), then close them."""
        conns = [c for idle in self._idle.values() for c in idle]
        self._idle.clear()
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            for conn in conns:
                await conn.aclose()
        for conn in conns:
            conn.close()


class Checker:
    """Runs checks; remembers per server which replica-status statement it speaks."""

    def __init__(self, pool: MonitorConnections | None = None) -> None:
        self.pool = pool or MonitorConnections()
        self._replica_sql: dict[tuple[str, int], str] = {}
        self._heartbeat_created: set[tuple[str, int]] = set()

    # -- connect ----------------------------------------------------------------

    async def connect(self, endpoint: tuple[str, int], creds: Credentials, timeout_s: float) -> Result:
        """Open and close a new connection: ``connect_success_time_us`` or the error."""
        t0 = trio.current_time()
        try:
            conn = await self.pool.open(endpoint, creds, timeout_s)
        except MySQLError as exc:
            return Result(False, error=_describe(exc, timeout_s), timeout=isinstance(exc.__cause__, trio.TooSlowError),
                          not_health=exc.code in ACCOUNT_ERRORS)
        elapsed = _us(trio.current_time() - t0)
        with trio.move_on_after(timeout_s):
            await conn.aclose()
        conn.close()
        return Result(True, elapsed)

    # -- checks on pooled connections --------------------------------------------

    async def _on_connection(self, endpoint: tuple[str, int], creds: Credentials, connect_timeout_s: float,
                             timeout_s: float, work: Callable[[BackendConnection], Awaitable[T]]) -> Result:
        """Run ``work`` on a pooled (or new) connection within ``timeout_s``; its return value
        becomes ``Result.value``. A dead pooled connection is replaced once."""
        for attempt in (1, 2):
            conn = self.pool.take(endpoint)
            reused = conn is not None
            if conn is None:
                try:
                    conn = await self.pool.open(endpoint, creds, connect_timeout_s)
                except MySQLError as exc:
                    return Result(False, error=_describe(exc, connect_timeout_s),
                                  timeout=isinstance(exc.__cause__, trio.TooSlowError),
                                  not_health=exc.code in ACCOUNT_ERRORS)
            t0 = trio.current_time()
            try:
                with trio.fail_after(timeout_s):
                    value = await work(conn)
            except trio.TooSlowError as exc:
                conn.close()  # a reply may still come: the connection is out of step
                return Result(False, _us(trio.current_time() - t0), _describe(exc, timeout_s), timeout=True)
            except MySQLError as exc:
                self.pool.put(endpoint, conn)  # the server answered: the connection is fine
                return Result(False, _us(trio.current_time() - t0), _describe(exc),
                              not_health=exc.code in ACCOUNT_ERRORS)
            except (ConnectionLost, MalformedPacket) as exc:
                conn.close()
                if reused and attempt == 1:
                    log.debug("monitor: pooled connection to %s:%d was dead (%s); retrying on a new one",
                              endpoint[0], endpoint[1], exc)
                    continue
                return Result(False, _us(trio.current_time() - t0), f"connection lost: {exc}")
            except BaseException:  # cancelled, or a bug: the connection's state is unknown
                conn.close()
                raise
            self.pool.put(endpoint, conn)
            return Result(True, _us(trio.current_time() - t0), value=value)
        raise AssertionError("unreachable")  # pragma: no cover

    async def ping(self, endpoint: tuple[str, int], creds: Credentials, connect_timeout_s: float,
                   timeout_s: float) -> Result:
        """COM_PING; ``ping_success_time_us`` or the error."""

        async def work(conn: BackendConnection) -> None:
            tracker = await conn.run_command(bytes((Command.PING,)), ResponseKind.SIMPLE)
            if tracker.error is not None:
                raise parse_err(tracker.error)

        return await self._on_connection(endpoint, creds, connect_timeout_s, timeout_s, work)

    async def read_only(self, endpoint: tuple[str, int], creds: Credentials, connect_timeout_s: float,
                        timeout_s: float, check_types: list[str]) -> Result:
        """The server's read-only variables; ``value`` maps each of ``check_types`` to a bool."""
        names = sorted({v for ct in check_types for v in _CHECK_VARIABLES[ct]})

        async def work(conn: BackendConnection) -> dict[str, bool]:
            sql = "SELECT " + ", ".join(f"@@global.{n} AS {n}" for n in names)
            columns, rows = await query_rows(conn, sql)
            if not rows:
                raise MySQLError(1105, f"{sql} returned no row")
            values = {c: _truthy(v) for c, v in zip(columns, rows[0])}
            return {ct: read_only_value(ct, values) for ct in check_types}

        return await self._on_connection(endpoint, creds, connect_timeout_s, timeout_s, work)

    async def replication_lag(self, endpoint: tuple[str, int], creds: Credentials, connect_timeout_s: float,
                              timeout_s: float, *, lag_when_null_s: int, heartbeat_table: str = "",
                              reference: float | None = None) -> Result:
        """Replication lag in milliseconds (``value``; None when the server replicates from nobody).

        With ``heartbeat_table``: ``reference - MAX(ts)`` (``reference``: the newest heartbeat
        myrouter wrote, or now when another process writes them), never below 0. Without:
        SHOW REPLICA STATUS (or SHOW SLAVE STATUS on servers that only know that), its
        Seconds_Behind_Master/Source; NULL (a replication thread stopped) counts as
        ``lag_when_null_s`` seconds (``mysql-monitor_slave_lag_when_null``).
        """
        if heartbeat_table:
            table = quote_table(heartbeat_table)

            async def heartbeat(conn: BackendConnection) -> int:
                _, rows = await query_rows(conn, f"SELECT MAX(ts) FROM {table}")
                ts = rows[0][0] if rows else None
                if ts is None:
                    raise MySQLError(1105, f"heartbeat table {heartbeat_table} is empty")
                return heartbeat_lag_ms(ts, reference)

            return await self._on_connection(endpoint, creds, connect_timeout_s, timeout_s, heartbeat)

        async def replica_status(conn: BackendConnection) -> int | None:
            sql = self._replica_sql.get(endpoint, "SHOW REPLICA STATUS")
            try:
                columns, rows = await query_rows(conn, sql)
            except MySQLError as exc:
                if exc.code != ER_PARSE_ERROR or sql != "SHOW REPLICA STATUS":
                    raise
                sql = "SHOW SLAVE STATUS"  # MySQL < 8.0.22, MariaDB < 10.5.1
                columns, rows = await query_rows(conn, sql)
            self._replica_sql[endpoint] = sql
            return lag_from_replica_status(columns, rows, lag_when_null_s)

        return await self._on_connection(endpoint, creds, connect_timeout_s, timeout_s, replica_status)

    async def write_heartbeat(self, endpoint: tuple[str, int], creds: Credentials, connect_timeout_s: float,
                              timeout_s: float, heartbeat_table: str, ts: float) -> Result:
        """Write ``ts`` (epoch seconds, stored as UTC text like pt-heartbeat) into this
        server's row of the heartbeat table, creating the schema and table if missing."""
        table = quote_table(heartbeat_table)
        text = dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
        insert = (f"INSERT INTO {table} (ts, server_id) VALUES ('{text}', @@server_id) "
                  "ON DUPLICATE KEY UPDATE ts = VALUES(ts)")

        async def work(conn: BackendConnection) -> None:
            try:
                await query_rows(conn, insert)
            except MySQLError as exc:
                if exc.code not in (ER_NO_SUCH_TABLE, ER_BAD_DB_ERROR) or endpoint in self._heartbeat_created:
                    raise
                self._heartbeat_created.add(endpoint)  # try to create it once
                schema = table.split(".")[0] if "." in table else None
                log.info("monitor: creating the heartbeat table %s on %s:%d", heartbeat_table, *endpoint)
                if schema is not None:
                    await query_rows(conn, f"CREATE DATABASE IF NOT EXISTS {schema}")
                await query_rows(conn, HEARTBEAT_DDL.format(table=table))
                await query_rows(conn, insert)

        return await self._on_connection(endpoint, creds, connect_timeout_s, timeout_s, work)

    def forget(self, endpoint: tuple[str, int]) -> None:
        self.pool.forget(endpoint)
        self._replica_sql.pop(endpoint, None)
        self._heartbeat_created.discard(endpoint)


# -- pure helpers ----------------------------------------------------------------------

_CHECK_VARIABLES: dict[str, tuple[str, ...]] = {
    "read_only": ("read_only",),
    "innodb_read_only": ("innodb_read_only",),
    "super_read_only": ("super_read_only",),
    "read_only|innodb_read_only": ("read_only", "innodb_read_only"),
    "read_only&innodb_read_only": ("read_only", "innodb_read_only"),
}


def _truthy(v: str | None) -> bool:
    return v is not None and v.strip().upper() not in ("0", "OFF", "")


def read_only_value(check_type: str, values: dict[str, bool]) -> bool:
    """Whether a server counts as read-only for ``check_type`` (mysql_replication_hostgroups.check_type)."""
    if check_type == "read_only|innodb_read_only":
        return values["read_only"] or values["innodb_read_only"]
    if check_type == "read_only&innodb_read_only":
        return values["read_only"] and values["innodb_read_only"]
    return values[check_type]


def lag_from_replica_status(columns: list[str], rows: list[tuple], lag_when_null_s: int) -> int | None:
    """Milliseconds behind from SHOW REPLICA/SLAVE STATUS rows (the worst channel), None if no row."""
    if not rows:
        return None
    if "Seconds_Behind_Source" in columns:
        idx = columns.index("Seconds_Behind_Source")
    elif "Seconds_Behind_Master" in columns:
        idx = columns.index("Seconds_Behind_Master")
    else:
        raise MySQLError(1105, "no Seconds_Behind_Master/Source column in the replica status")
    worst = 0
    for row in rows:
        v = row[idx]
        secs = lag_when_null_s if v is None else int(v)
        worst = max(worst, secs * 1000)
    return worst


def heartbeat_lag_ms(ts_text: str, reference: float | None) -> int:
    """``reference`` (epoch seconds; now if None) minus a heartbeat ``ts`` (UTC text), in ms, >= 0."""
    ts = dt.datetime.fromisoformat(ts_text.strip().replace(" ", "T"))
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.UTC)
    ref = reference if reference is not None else dt.datetime.now(dt.UTC).timestamp()
    return max(0, round((ref - ts.timestamp()) * 1000))


def parse_heartbeat_table(name: str) -> tuple[str | None, str]:
    """``"schema.table"`` or ``"table"`` -> (schema, table); ValueError for anything else."""
    parts = name.strip().strip("`").split(".")
    parts = [p.strip("`") for p in parts]
    if len(parts) > 2 or not all(_IDENT.fullmatch(p) for p in parts):
        raise ValueError(f"invalid heartbeat table name {name!r}: expected schema.table (letters, digits, _ or $)")
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def quote_table(name: str) -> str:
    schema, table = parse_heartbeat_table(name)
    return f"`{schema}`.`{table}`" if schema else f"`{table}`"


def _us(seconds: float) -> int:
    return max(0, int(seconds * 1_000_000))
