"""mysql_servers.max_latency_ms: a server whose last monitor ping took longer gets no new
connections (it stays ONLINE, as in ProxySQL). The ping times are set as the monitor sets them
(``Server.note_ping_time``), with the monitor off, so that loopback's fast pings do not race them."""

from __future__ import annotations

from pathlib import Path

from conftest import admin_sql

REPO = Path(__file__).resolve().parents[2]


def servers(cluster, latency_ms: int) -> list[dict]:
    rows = [{"hostgroup_id": 0, "hostname": "127.0.0.1", "port": cluster.primary.port}]
    rows += [{"hostgroup_id": 1, "hostname": "127.0.0.1", "port": r.port, "max_latency_ms": latency_ms}
             for r in cluster.replicas]
    return rows


def ping(rp, port: int, elapsed_us: int) -> None:
    def note():
        for s in rp.proxy.hostgroups.entries("127.0.0.1", port):
            s.note_ping_time(elapsed_us)
    rp.call(note)


def read_servers(rp, n: int = 30) -> set[int]:
    conn = rp.connect(autocommit=True)
    seen = set()
    with conn.cursor() as cur:
        for _ in range(n):
            cur.execute("SELECT @@server_id")
            seen.add(cur.fetchone()[0])
    conn.close()
    return seen


def test_a_server_slower_than_max_latency_ms_gets_no_new_connections(proxy_factory, cluster):
    rp = proxy_factory(servers=servers(cluster, 50), rules_dir=REPO / "rules", variables={"monitor_enabled": False},
                       replication_hostgroups=((0, 1),))
    a, b = cluster.replicas
    assert read_servers(rp) == {a.server_id, b.server_id}
    ping(rp, a.port, 80_000)  # 80 ms > 50 ms
    assert read_servers(rp) == {b.server_id}
    assert admin_sql(rp, f"SELECT status FROM runtime_mysql_servers WHERE port = {a.port}") == [("ONLINE",)]
    ping(rp, b.port, 90_000)  # every reader too slow: reads fall back to the writer (reader_fallback_to_writer)
    assert read_servers(rp, 5) == {cluster.primary.server_id}
    ping(rp, a.port, 1_000)  # fast again
    assert read_servers(rp) == {a.server_id}
    # raised at runtime: b's last ping is under the new limit
    admin_sql(rp, "UPDATE mysql_servers SET max_latency_ms = 100 WHERE hostgroup_id = 1",
              "LOAD MYSQL SERVERS TO RUNTIME")
    assert read_servers(rp) == {a.server_id, b.server_id}


def test_max_latency_ms_zero_means_no_limit(proxy_factory, cluster):
    rp = proxy_factory(servers=servers(cluster, 0), rules_dir=REPO / "rules", variables={"monitor_enabled": False})
    a, b = cluster.replicas
    ping(rp, a.port, 5_000_000)
    assert read_servers(rp) == {a.server_id, b.server_id}
