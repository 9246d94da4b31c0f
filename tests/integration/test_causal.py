"""Read-your-writes (causal_reads) against a replica that does not apply anything."""

from __future__ import annotations

from pathlib import Path


REPO = Path(__file__).resolve().parents[2]


def run_iterations(rp, n: int) -> int:
    """INSERT then immediately SELECT the same row, ``n`` times; the number of reads that missed it."""
    missed = 0
    c = rp.connect(autocommit=True)
    with c.cursor() as cur:
        for i in range(n):
            cur.execute("INSERT INTO causal_t (v) VALUES (%s)", (i,))
            rid = cur.lastrowid
            cur.execute("SELECT v FROM causal_t WHERE id = %s", (rid,))
            if cur.fetchone() is None:
                missed += 1
    c.close()
    return missed


def proxy_with(proxy_factory, cluster, replica, causal: str, wait_ms: int = 20):
    servers = [{"hostgroup_id": 0, "hostname": "127.0.0.1", "port": cluster.primary.port},
               {"hostgroup_id": 1, "hostname": "127.0.0.1", "port": replica.port}]
    users = [{"username": "app", "password": "app", "default_hostgroup": 0, "default_schema": "test",
              "causal_reads": causal}]
    return proxy_factory(servers=servers, users=users, rules_dir=REPO / "rules",
                         variables={"causal_reads_timeout_ms": wait_ms})


def test_causal_reads_session_sees_every_own_write(proxy_factory, cluster, stalled_replica):
    off = proxy_with(proxy_factory, cluster, stalled_replica, "off")
    assert run_iterations(off, 50) == 50  # the test can fail: without causal reads the replica misses them
    rp = proxy_with(proxy_factory, cluster, stalled_replica, "session")
    assert run_iterations(rp, 1000) == 0
    counters = rp.proxy.counters
    assert counters.causal_fallbacks >= 1000 and counters.causal_waits >= 1
    # a session that wrote nothing reads from the replica as before
    c = rp.connect(autocommit=True)
    replica_id = stalled_replica.query("SELECT @@server_id AS s")[0]["s"]
    with c.cursor() as cur:
        cur.execute("SELECT @@server_id")
        assert cur.fetchone()[0] == replica_id
    c.close()


def test_causal_reads_use_the_replica_once_it_has_applied_the_write(proxy_factory, cluster):
    replica = cluster.replicas[1]
    with cluster.primary.connect("app", "app", database="test") as c, c.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS causal_t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
    rp = proxy_with(proxy_factory, cluster, replica, "session", wait_ms=2000)
    replica_id = replica.query("SELECT @@server_id AS s")[0]["s"]
    c = rp.connect(autocommit=True)
    with c.cursor() as cur:
        cur.execute("INSERT INTO causal_t (v) VALUES (1)")
        cur.execute("SELECT @@server_id, COUNT(*) FROM causal_t WHERE id = %s", (cur.lastrowid,))
        sid, n = cur.fetchone()
    # a healthy replica applies the write within the wait: the read stays on it and sees the row
    assert (sid, n) == (replica_id, 1)
    assert rp.proxy.counters.causal_fallbacks == 0
    c.close()


def test_causal_reads_global_waits_for_other_sessions_writes(proxy_factory, cluster, stalled_replica):
    rp = proxy_with(proxy_factory, cluster, stalled_replica, "global")
    writer = rp.connect(autocommit=True)
    reader = rp.connect(autocommit=True)
    with writer.cursor() as cur:
        cur.execute("INSERT INTO causal_t (v) VALUES (424242)")
        rid = cur.lastrowid
    with reader.cursor() as cur:
        cur.execute("SELECT v FROM causal_t WHERE id = %s", (rid,))
        assert cur.fetchone() == (424242,)
    writer.close()
    reader.close()
