"""Rows of the ``stats_*`` tables, built from the running proxy when they are read.

The same functions feed the Prometheus exposition (:mod:`myrouter.admin.metrics`),
so both always agree. They only read: counters, the rule set's hit counters,
the hostgroups' Server objects and the live sessions.
"""

from __future__ import annotations

from myrouter.backend.pins import NAMES as PIN_NAMES

import time
from typing import TYPE_CHECKING, Any, NamedTuple

from myrouter.routing.digest import format_digest
from myrouter.runtime.sessions import command_name as _command_name

if TYPE_CHECKING:
    from .control import ProxyControl
    from myrouter.routing.hostgroups import Server

__all__ = [
    "PoolRow",
    "connection_pool",
    "digest_rows",
    "query_rule_rows",
    "commands_counters_rows",
    "processlist_rows",
    "global_status",
    "user_rows",
]


class PoolRow(NamedTuple):
    """One row of ``stats_mysql_connection_pool``."""

    hostgroup: int
    srv_host: str
    srv_port: int
    status: str
    ConnUsed: int  # noqa: N815 - ProxySQL's column names
    ConnFree: int  # noqa: N815
    ConnOK: int  # noqa: N815
    ConnERR: int  # noqa: N815
    MaxConnUsed: int  # noqa: N815
    Queries: int  # noqa: N815
    Queries_GTID_sync: int  # noqa: N815
    Bytes_data_sent: int  # noqa: N815
    Bytes_data_recv: int  # noqa: N815
    Latency_us: int  # noqa: N815


def connection_pool(app: ProxyControl, retired: list[Server] | None = None) -> list[PoolRow]:
    """Per server: connections handed to sessions (ConnUsed) and idle in the pool (ConnFree), opened,
    failed, the most at once, queries, bytes (``Server.bytes_*`` of closed connections plus the live
    connections' streams) and the last ping round trip (Latency_us: the monitor's, else the pool's
    own ping before reusing an idle connection)."""
    live_bytes: dict[int, list[int]] = {}
    for be in app.backends:
        srv = be.server_ref
        if srv is not None:
            acc = live_bytes.setdefault(id(srv), [0, 0])
            acc[0] += be.stream.bytes_out
            acc[1] += be.stream.bytes_in
    rows = []
    servers = list(app.hostgroups.servers())
    for srv in retired or ():
        if srv.connections > 0 and srv not in servers:
            servers.append(srv)
    for srv in servers:
        sent, recv = live_bytes.get(id(srv), (0, 0))
        pool = app.pools.pool(srv)
        rows.append(PoolRow(
            srv.hostgroup, srv.host, srv.port, srv.status, pool.in_use, pool.idle_count, srv.connections_created,
            srv.connect_errors, srv.max_connections_used, srv.queries, 0, srv.bytes_sent + sent,
            srv.bytes_received + recv, srv.ping_time_us or pool.latency_us,
        ))
    return rows


def digest_rows(snapshot) -> list[tuple]:
    """``stats_mysql_query_digest`` rows (digest as ProxySQL's ``0x...`` text) from DigestStats rows."""
    return [(r.hostgroup, r.schemaname, r.username, r.client_address, format_digest(r.digest), r.digest_text,
             r.count_star, r.first_seen, r.last_seen, r.sum_time, r.min_time, r.max_time, r.sum_rows_affected,
             r.sum_rows_sent) for r in snapshot]


def query_rule_rows(app: ProxyControl) -> list[tuple[int, int]]:
    return sorted(app.rules.hits().items())


def commands_counters_rows(app: ProxyControl) -> list[tuple]:
    return [(r.command, r.total_time_us, r.total_cnt, *r.buckets) for r in app.command_counters.snapshot()]


def processlist_rows(app: ProxyControl) -> list[tuple]:
    """``stats_mysql_processlist``: one row per client session, what it is doing now (the whole
    statement: SHOW PROCESSLIST without FULL cuts it at 100 characters itself)."""
    now = time.monotonic()
    rows = []
    for s in list(app.sessions.values()):
        cli_host, _, cli_port = s.client_addr.rpartition(":")
        busy = s.command is not None and getattr(s.state, "value", "") == "busy"
        hg = s.last_hg if s.last_hg is not None else s.default_hostgroup
        be = s.backends.get(hg)
        l_host = l_port = srv_host = srv_port = None
        if be is not None and not be.closed:
            srv_host, srv_port = be.server.host, be.server.port
            try:
                l_host, l_port = be.stream.sock.getsockname()[:2]
            except OSError:
                l_host = l_port = None
        info = None
        if busy and s.info:
            info = s.info[1:].decode("utf-8", "replace")
        time_ms = int((now - s.command_started) * 1000) if busy else 0
        rows.append((0, s.id, s.username or None, s.schema, cli_host or s.client_host,
                     int(cli_port) if cli_port.isdigit() else None, hg, l_host, l_port, srv_host, srv_port,
                     _command_name(s), time_ms, info, s.status, None))
    return rows


def global_status(app: ProxyControl, started: float) -> list[tuple[str, Any]]:
    """``stats_mysql_global`` (Variable_Name, Variable_Value): ProxySQL's names where one fits."""
    st = app.statistics()
    c = app.counters
    qc = app.query_cache
    # sessions holding a backend connection between statements now, by reason (a session counts
    # once per reason), and how many times each reason started pinning a connection
    pinned = {name: 0 for name in PIN_NAMES.values()}
    for s in list(app.sessions.values()):
        mask = 0
        for be in s.backends.values():
            mask |= be.pins
        for bit, name in PIN_NAMES.items():
            if mask & bit:
                pinned[name] += 1
    pins = {"transaction": pinned["transaction"]}
    rows: list[tuple[str, Any]] = [
        ("ProxySQL_Uptime", int(time.time() - started)),
        ("Active_Transactions", pins["transaction"]),
        ("Client_Connections_aborted", st.client_connections_aborted),
        ("Client_Connections_connected", st.client_connections_connected),
        ("Client_Connections_created", st.client_connections_created),
        ("Client_Connections_busy", st.sessions_busy),
        ("Access_Denied_Wrong_Password", st.access_denied),
        ("Server_Connections_aborted", st.backend_errors),
        ("Server_Connections_connected", st.backend_connections_connected),
        ("Server_Connections_created", st.backend_connections_created),
        ("Questions", st.questions),
        ("Slow_queries", app.command_counters.slow_queries),
        ("Query_Timeouts", c.query_timeouts),
        ("Mirror_Queries", c.mirrored),
        ("Mirror_Errors", c.mirror_errors),
        ("Query_Cache_Memory_bytes", qc.bytes),
        ("Query_Cache_count_GET", qc.hits + qc.misses),
        ("Query_Cache_count_GET_OK", qc.hits),
        ("Query_Cache_count_SET", qc.stores),
        ("Query_Cache_Entries", len(qc)),
        ("Query_Cache_Purged", qc.evictions),
        ("Query_Digest_Entries", len(app.digest_stats)),
        ("Query_Digest_Evictions", app.digest_stats.evicted),
        ("Admin_client_host_blocked_connections", app.admin.host_errors.refused),
    ]
    rows += [
        ("Server_Connections_free", st.backend_connections_idle),
        ("Server_Connections_used", st.backend_connections_in_use),
        ("ConnPool_sessions_waiting", st.sessions_waiting_for_connection),
        ("ConnPool_wait_timeouts", c.pool_wait_timeouts),
        ("ConnPool_connections_reset", c.backend_resets),
        ("ConnPool_connections_reset_failed", c.backend_reset_failures),
        ("Transactions_ended_by_timeout", c.transactions_ended),
        ("Stmt_Cached", len(app.stmt_registry)),
        ("Stmt_Cache_hits", app.stmt_registry.hits),
        ("Stmt_Cache_misses", app.stmt_registry.misses),
        ("Stmt_Backend_evicted", c.stmts_evicted),
        ("ReadOnly_transactions_readers", c.read_only_trx_readers),
        ("ReadOnly_transactions_writer", c.read_only_trx_writer),
        ("Data_plane_commands", c.data_plane_commands),
        ("Data_plane_handovers", c.data_plane_handovers),
    ]
    rows += [(f"Sessions_pinned_{reason}", n) for reason, n in pinned.items()]
    rows += [(f"Multiplexing_pins_{reason}", n) for reason, n in app.pin_counters.counts.items()]
    rows.append(("Trio_Tasks", st.tasks))
    return rows


def user_rows(app: ProxyControl) -> list[tuple[str, int, int]]:
    """``stats_mysql_users``: frontend users with their connections now and their limit."""
    out = []
    for u in app.config.mysql_users:
        if u.frontend:
            out.append((u.username, app.user_sessions.get(u.username, 0), u.max_connections))
    return out
