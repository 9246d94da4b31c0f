"""Failures during traffic (issue 6): reads retried on another replica, writes never retried.

These tests crash and restart servers, so they run on a cluster of their own.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pymysql
import pytest

from conftest import RunningProxy

REPO = Path(__file__).resolve().parents[2]
FAST = {
    "monitor_connect_interval": 500, "monitor_connect_timeout": 300, "monitor_ping_interval": 200,
    "monitor_ping_timeout": 300, "monitor_ping_max_failures": 2, "monitor_read_only_interval": 300,
    "monitor_read_only_timeout": 300, "monitor_replication_lag_interval": 500,
    "monitor_replication_lag_timeout": 300, "shun_recovery_time_sec": 1,
}


@pytest.fixture
def fo_proxy(own_cluster, proxy_factory) -> RunningProxy:
    return proxy_factory(cluster=own_cluster, variables=FAST, rules_dir=REPO / "rules",
                         replication_hostgroups=((0, 1),))


def status(rp, port: int, hostgroup: int = 1) -> str:
    return rp.call(lambda: next(s.status for s in rp.proxy.hostgroups.servers(hostgroup) if s.port == port))


def wait_for(what: str, predicate, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def sysbench(port: int, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = ["sysbench", "oltp_read_only", "--mysql-host=127.0.0.1", f"--mysql-port={port}", "--mysql-user=app",
           "--mysql-password=app", "--mysql-db=sbtest", "--tables=1", "--table-size=2000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("ps_mode", ["disable", "auto"])
def test_replica_dies_under_sysbench_reads_are_retried(own_cluster, fo_proxy, ps_mode):
    cluster, rp = own_cluster, fo_proxy
    prep = sysbench(cluster.primary.port, "prepare") if ps_mode == "disable" else None
    assert prep is None or prep.returncode == 0, prep.stdout + prep.stderr
    cluster.wait_replication()
    victim, other = cluster.replicas
    run: list[subprocess.CompletedProcess] = []
    # --skip_trx: the reads are not wrapped in BEGIN/COMMIT, so they go to the replicas
    t = threading.Thread(target=lambda: run.append(sysbench(
        rp.port, "--threads=8", "--time=8", "--skip_trx=on", f"--db-ps-mode={ps_mode}", "run")))
    t.start()
    time.sleep(2.5)
    victim.kill()  # a crash, mid-run
    try:
        wait_for("the dead replica to be shunned", lambda: status(rp, victim.port) == "SHUNNED")
        t.join(60)
        out = run[0].stdout + run[0].stderr
        assert run[0].returncode == 0, out[-3000:]
        assert re.search(r"errors:\s+0 ", out), out[-3000:]
        assert int(re.search(r"queries:\s+(\d+)", out).group(1)) > 1000
    finally:
        victim.start()
    wait_for("the restarted replica to be ONLINE", lambda: status(rp, victim.port) == "ONLINE")
    cluster.wait_replication()
    victim_id = victim.query("SELECT @@server_id AS s")[0]["s"]
    seen = Counter()
    conn = rp.connect(autocommit=True)
    with conn.cursor() as cur:
        for _ in range(60):
            cur.execute("SELECT @@server_id")
            seen[cur.fetchone()[0]] += 1
    conn.close()
    assert seen[victim_id] > 0, seen  # it gets traffic again


def test_writer_killed_mid_transaction_is_not_retried(own_cluster, fo_proxy):
    cluster, rp = own_cluster, fo_proxy
    with cluster.primary.connect("app", "app", database="test") as c, c.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS fo_t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        cur.execute("TRUNCATE fo_t")
    conn = rp.connect(autocommit=True)
    with conn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("INSERT INTO fo_t (v) VALUES (1)")
    cluster.primary.kill()
    try:
        with pytest.raises(pymysql.err.OperationalError) as info:
            with conn.cursor() as cur:
                cur.execute("INSERT INTO fo_t (v) VALUES (2)")
        assert info.value.args[0] in (1158, 9001), info.value.args
        with pytest.raises(pymysql.err.OperationalError):  # the session is usable, the writer is not
            with conn.cursor() as cur:
                cur.execute("INSERT INTO fo_t (v) VALUES (3)")
    finally:
        cluster.primary.start()
    wait_for("the writer to be ONLINE", lambda: status(rp, cluster.primary.port, 0) == "ONLINE")
    with conn.cursor() as cur:  # the same session works again, outside any transaction
        cur.execute("INSERT INTO fo_t (v) VALUES (4)")
    fresh = rp.connect(autocommit=True)
    with fresh.cursor() as cur:
        cur.execute("INSERT INTO fo_t (v) VALUES (5)")
    conn.close()
    fresh.close()
    rows = [r["v"] for r in cluster.primary.query("SELECT v FROM test.fo_t ORDER BY id")]
    assert rows == [4, 5]  # the transaction was rolled back with the crash; nothing ran twice
    cluster.wait_replication(timeout=60)
