"""Prometheus metrics: ``GET /metrics`` on ``admin_variables.restapi_port``.

A tiny HTTP/1.1 handler on the proxy's event loop (one task per scrape, no
thread) answers with prometheus-client's text exposition of a custom
collector. The collector reads the same snapshots as the admin ``stats_*``
tables (:mod:`myrouter.admin.stats`), at scrape time:

* counters (``_total``): client and backend connections created, aborted
  connections, access denied, questions, slow queries, query timeouts,
  mirrored queries, query cache gets/hits/stores/purges, query rule hits
  (``rule_id``), and per server (``hostgroup``, ``server``) connections
  opened, connect errors, queries and bytes sent/received;
* gauges: connections open now (clients, busy clients, backends, per server
  and per ``user``), user connection limits, open transactions, sessions
  pinned to a connection (``reason``), server status (``status`` label, value
  1), server weight, query cache size and entries, digest entries, start time;
* a histogram per ``command`` (ProxySQL's command names) of statement
  latency, from ``stats_mysql_commands_counters``' buckets.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import trio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from myrouter.stats.digests import LATENCY_BUCKETS_US

from . import stats as S

if TYPE_CHECKING:
    from .control import ClusterControl

    from .core import Admin

log = logging.getLogger("myrouter.admin")

__all__ = ["METRIC_TABLES", "ProxyCollector", "registry_for", "serve_metrics_client"]

#: the stats tables a scrape reads
METRIC_TABLES = frozenset({"stats_mysql_global", "stats_mysql_query_rules", "stats_mysql_connection_pool",
                           "stats_mysql_users", "stats_mysql_commands_counters"})

MAX_REQUEST = 16 * 1024
REQUEST_TIMEOUT = 10.0


class ProxyCollector(Collector):
    """Metric families built from the proxy's snapshots at each scrape."""

    def __init__(self, admin: Admin) -> None:
        self.admin = admin

    def describe(self) -> list:
        return []  # collected at scrape time only

    def collect(self) -> Iterator[Any]:
        admin = self.admin
        app = admin.app
        # the stats tables' rows: taken for this scrape (serve_metrics_client: every worker's, merged,
        # when the instance runs several), else this process's now
        tables = admin.scrape_tables if admin.scrape_tables is not None else admin.local_stats_tables(METRIC_TABLES)
        status = dict(tables["stats_mysql_global"])

        def counter(name: str, doc: str, key: str) -> CounterMetricFamily:
            return CounterMetricFamily(f"myrouter_{name}", doc, value=status[key])

        def gauge(name: str, doc: str, key: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"myrouter_{name}", doc, value=status[key])

        yield GaugeMetricFamily("myrouter_start_time_seconds", "Start time of the proxy, seconds since the epoch.",
                                value=admin.started)
        yield counter("client_connections_created", "Client connections accepted.", "Client_Connections_created")
        yield counter("client_connections_aborted", "Client connections that failed the handshake.",
                      "Client_Connections_aborted")
        yield counter("access_denied", "Client logins refused (wrong user or password).", "Access_Denied_Wrong_Password")
        yield counter("questions", "Client commands received.", "Questions")
        yield counter("backend_connections_created", "Backend connections opened.", "Server_Connections_created")
        yield counter("backend_errors", "Backend connections lost during a statement.", "Server_Connections_aborted")
        yield counter("query_timeouts", "Statements killed after their rule's timeout.", "Query_Timeouts")
        yield counter("mirrored_queries", "Statements mirrored to another hostgroup.", "Mirror_Queries")
        yield counter("mirror_errors", "Mirrored statements that failed.", "Mirror_Errors")
        ro_trx = CounterMetricFamily("myrouter_read_only_transactions", "Read-only transactions by declaration, "
                                     "by where they ran.", labels=["destination"])
        ro_trx.add_metric(["readers"], status["ReadOnly_transactions_readers"])
        ro_trx.add_metric(["writer"], status["ReadOnly_transactions_writer"])
        yield ro_trx
        yield counter("data_plane_commands", "Client commands served wholly by the data plane (no Trio task).",
                      "Data_plane_commands")
        yield counter("data_plane_handovers", "Client commands the data plane handed to the session's Trio task.",
                      "Data_plane_handovers")
        yield counter("slow_queries", "Statements that took mysql-long_query_time or more.", "Slow_queries")
        yield gauge("client_connections_connected", "Client connections open now.", "Client_Connections_connected")
        yield gauge("client_connections_busy", "Client sessions running a statement now.", "Client_Connections_busy")
        yield gauge("backend_connections_connected", "Backend connections open now.", "Server_Connections_connected")

        yield counter("query_cache_gets", "Query cache lookups.", "Query_Cache_count_GET")
        yield counter("query_cache_hits", "Query cache lookups that found an entry.", "Query_Cache_count_GET_OK")
        yield counter("query_cache_stores", "Result sets stored in the query cache.", "Query_Cache_count_SET")
        yield counter("query_cache_purged", "Query cache entries evicted for space.", "Query_Cache_Purged")
        yield gauge("query_cache_bytes", "Bytes held by the query cache.", "Query_Cache_Memory_bytes")
        yield gauge("query_cache_entries", "Entries in the query cache.", "Query_Cache_Entries")
        yield gauge("query_digest_entries", "Entries in the query digest statistics.", "Query_Digest_Entries")
        yield counter("query_digest_evictions", "Query digest entries evicted past mysql-query_digests_max_digests.",
                      "Query_Digest_Evictions")

        yield gauge("active_transactions", "Client sessions with an open transaction.", "Active_Transactions")
        pinned = GaugeMetricFamily("myrouter_sessions_pinned", "Client sessions bound to their backend connection, "
                                   "by reason.", labels=["reason"])
        pins_total = CounterMetricFamily("myrouter_multiplexing_pins", "Times a backend connection was pinned to its "
                                         "session (multiplexing off for it), by reason.", labels=["reason"])
        for name, value in status.items():
            if name.startswith("Sessions_pinned_"):
                pinned.add_metric([name[len("Sessions_pinned_"):]], value)
            elif name.startswith("Multiplexing_pins_"):
                pins_total.add_metric([name[len("Multiplexing_pins_"):]], value)
        yield pinned
        yield pins_total
        yield gauge("backend_connections_free", "Backend connections idle in the pools.", "Server_Connections_free")
        yield gauge("pool_sessions_waiting", "Client sessions waiting for a backend connection.",
                    "ConnPool_sessions_waiting")
        yield counter("pool_wait_timeouts", "Waits for a backend connection that timed out (ERR 9001).",
                      "ConnPool_wait_timeouts")
        yield counter("pool_connection_resets", "Backend connections with session state of their own reset "
                      "(COM_RESET_CONNECTION) and given back to the pool instead of closed.",
                      "ConnPool_connections_reset")
        yield counter("pool_connection_reset_failures", "Backend connection resets that failed (closed instead).",
                      "ConnPool_connections_reset_failed")

        hits = CounterMetricFamily("myrouter_query_rule_hits", "Statements matched by each query rule.",
                                   labels=["rule_id"])
        for rule_id, n in tables["stats_mysql_query_rules"]:
            hits.add_metric([str(rule_id)], n)
        yield hits

        labels = ["hostgroup", "server"]
        fams = {
            "conn_used": GaugeMetricFamily("myrouter_server_connections_used", "Backend connections in use.", labels=labels),
            "conn_free": GaugeMetricFamily("myrouter_server_connections_free", "Backend connections idle in the pool.",
                                           labels=labels),
            "latency": GaugeMetricFamily("myrouter_server_latency_seconds", "Last measured ping round trip.",
                                         labels=labels),
            "conn_max": GaugeMetricFamily("myrouter_server_connections_max_used",
                                          "Most backend connections in use at once.", labels=labels),
            "conn_ok": CounterMetricFamily("myrouter_server_connections_created", "Backend connections opened.",
                                           labels=labels),
            "conn_err": CounterMetricFamily("myrouter_server_connect_errors", "Failed backend connection attempts.",
                                            labels=labels),
            "queries": CounterMetricFamily("myrouter_server_queries", "Statements sent to the server.", labels=labels),
            "sent": CounterMetricFamily("myrouter_server_sent_bytes", "Bytes sent to the server.", labels=labels),
            "recv": CounterMetricFamily("myrouter_server_received_bytes", "Bytes received from the server.",
                                        labels=labels),
            "weight": GaugeMetricFamily("myrouter_server_weight", "Configured weight of the server.", labels=labels),
        }
        status_fam = GaugeMetricFamily("myrouter_server_status", "Status of the server (the series with the current "
                                       "status label is 1).", labels=[*labels, "status"])
        weights = {(s.hostgroup, s.host, s.port): s.weight for s in app.hostgroups.servers()}
        for r in map(S.PoolRow._make, tables["stats_mysql_connection_pool"]):
            lv = [str(r.hostgroup), f"{r.srv_host}:{r.srv_port}"]
            fams["conn_used"].add_metric(lv, r.ConnUsed)
            fams["conn_free"].add_metric(lv, r.ConnFree)
            fams["latency"].add_metric(lv, r.Latency_us / 1e6)
            fams["conn_max"].add_metric(lv, r.MaxConnUsed)
            fams["conn_ok"].add_metric(lv, r.ConnOK)
            fams["conn_err"].add_metric(lv, r.ConnERR)
            fams["queries"].add_metric(lv, r.Queries)
            fams["sent"].add_metric(lv, r.Bytes_data_sent)
            fams["recv"].add_metric(lv, r.Bytes_data_recv)
            fams["weight"].add_metric(lv, weights.get((r.hostgroup, r.srv_host, r.srv_port), 0))
            status_fam.add_metric([*lv, r.status], 1)
        yield from fams.values()
        yield status_fam

        users = GaugeMetricFamily("myrouter_user_connections", "Client connections open now, by user.",
                                  labels=["user"])
        limits = GaugeMetricFamily("myrouter_user_max_connections", "Connection limit of the user.", labels=["user"])
        for name, n, limit in tables["stats_mysql_users"]:
            users.add_metric([name], n)
            limits.add_metric([name], limit)
        yield users
        yield limits

        hist = HistogramMetricFamily("myrouter_command_duration_seconds",
                                     "Statement latency by command (ProxySQL's command names).", labels=["command"])
        bounds = [str(b / 1e6) for b in LATENCY_BUCKETS_US] + ["+Inf"]
        for command, total_time_us, total_cnt, *buckets in tables["stats_mysql_commands_counters"]:
            if not total_cnt:
                continue
            cumulative = []
            total = 0
            for bound, n in zip(bounds, buckets):
                total += n
                cumulative.append((bound, total))
            hist.add_metric([command], cumulative, sum_value=total_time_us / 1e6)
        yield hist
        if app.cluster is not None:
            yield from _cluster_metrics(app.cluster)


def _cluster_metrics(cluster: ClusterControl) -> Iterator[Any]:
    """[cluster]: the revision each module runs, etcd reachability, time since the last confirmed sync."""
    revision = GaugeMetricFamily("myrouter_cluster_applied_revision",
                                 "etcd revision of the configuration module running here (0: never synced).",
                                 labels=["module"])
    for module, st in cluster.book.modules.items():
        revision.add_metric([module], st.applied)
    yield revision
    yield GaugeMetricFamily("myrouter_cluster_connected", "1 while etcd answers this instance.",
                            value=1 if cluster.connected else 0)
    since = cluster.seconds_since_sync()
    if since is not None:
        yield GaugeMetricFamily("myrouter_cluster_seconds_since_sync",
                                "Seconds since this instance last confirmed it runs the revisions etcd holds.",
                                value=since)


def registry_for(admin: Admin) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProxyCollector(admin))
    return registry


async def serve_metrics_client(admin: Admin, conn: socket.socket, addr: Any) -> None:
    """One HTTP request: ``GET /metrics`` -> 200 with the exposition; anything else 404/405/400."""
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(conn))
    try:
        request = b""
        with trio.move_on_after(REQUEST_TIMEOUT) as scope:
            while b"\r\n\r\n" not in request and b"\n\n" not in request and len(request) < MAX_REQUEST:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                request += chunk
        if scope.cancelled_caught:
            return
        line = request.split(b"\n", 1)[0].decode("latin-1").strip()
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            await _respond(stream, 400, b"bad request\n")
            return
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            await _respond(stream, 405, b"method not allowed\n", extra=b"Allow: GET, HEAD\r\n")
            return
        if target not in ("/metrics", "/metrics/"):
            await _respond(stream, 404, b"not found: try /metrics\n")
            return
        admin.scrape_tables = await admin.stats_tables(METRIC_TABLES)
        try:
            body = generate_latest(admin.metrics_registry)  # no await in between: this scrape's tables
        finally:
            admin.scrape_tables = None
        await _respond(stream, 200, body, content_type=CONTENT_TYPE_LATEST.encode(), head=method == "HEAD")
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        log.debug("metrics client %s: %s", addr, exc)
    except Exception:
        log.exception("metrics: request from %s failed", addr)
        try:
            await _respond(stream, 500, b"internal error\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.debug("metrics client %s: could not send the 500: %s", addr, exc)
    finally:
        await trio.aclose_forcefully(stream)


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}


async def _respond(stream: trio.SocketStream, status: int, body: bytes, *, content_type: bytes = b"text/plain",
                   extra: bytes = b"", head: bool = False) -> None:
    header = (f"HTTP/1.1 {status} {_REASONS[status]}\r\n".encode() + b"Content-Type: " + content_type + b"\r\n"
              + f"Content-Length: {len(body)}\r\n".encode() + extra + b"Connection: close\r\n\r\n")
    await stream.send_all(header if head else header + body)
