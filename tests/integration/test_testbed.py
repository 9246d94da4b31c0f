"""The test bed itself (myrouter_testbed): real MariaDB servers, real GTID replication, real accounts,
and the demo that `make run` runs."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from myrouter_testbed import mariadb as testbed
from myrouter_testbed.mariadb import Cluster, Server, free_ports

ER_ACCESS_DENIED = 1045
ER_OPTION_PREVENTS_STATEMENT = 1290  # "running with the --read-only option"


def _row(server: Server, sql: str, user: str = "root", password: str = "root", **kw: Any) -> dict[str, Any]:
    with server.connect(user, password, cursorclass=pymysql.cursors.DictCursor, **kw) as conn:
        with conn.cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone()
    assert row is not None, sql
    return row


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def table(cluster: Cluster) -> Iterator[str]:
    """A fresh test.<name>(id INT PRIMARY KEY, token VARCHAR(64)) on the primary, dropped afterwards."""
    name = f"testbed_{uuid.uuid4().hex[:10]}"
    with cluster.primary.connect("app", "app", database="test") as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {name} (id INT PRIMARY KEY, token VARCHAR(64) NOT NULL)")
    yield name
    with cluster.primary.connect("app", "app", database="test") as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {name}")
    cluster.wait_replication()


def test_servers_have_distinct_ids_and_gtid_settings(cluster: Cluster) -> None:
    assert [s.role for s in cluster.servers] == ["primary", "replica", "replica"]
    rows = [
        _row(
            s,
            "SELECT @@server_id AS id, @@read_only AS ro, @@gtid_strict_mode AS strict, @@log_bin AS log_bin, "
            "@@log_slave_updates AS lsu, @@binlog_format AS fmt, @@gtid_domain_id AS domain, "
            "@@bind_address AS bind, @@local_infile AS local_infile, @@max_connections AS maxconn",
        )
        for s in cluster.servers
    ]
    assert [r["id"] for r in rows] == [s.server_id for s in cluster.servers]
    assert len({r["id"] for r in rows}) == 3
    assert [r["ro"] for r in rows] == [0, 1, 1]
    for r in rows:
        assert (r["strict"], r["log_bin"], r["lsu"], r["fmt"], r["domain"]) == (1, 1, 1, "ROW", 0)
        assert (r["bind"], r["local_infile"], r["maxconn"]) == ("127.0.0.1", 1, 500)
    assert all(s.host == "127.0.0.1" and s.running and s.pid for s in cluster.servers)


def test_app_and_monitor_accounts_work_over_tcp_on_every_server(cluster: Cluster) -> None:
    for server in cluster.servers:
        assert _row(server, "SELECT CURRENT_USER() AS u", "app", "app", database="test")["u"] == "app@%"
        with server.connect("app", "app") as conn, conn.cursor() as cur:
            cur.execute("SHOW DATABASES")
            assert {"test", "sbtest"} <= {name for (name,) in cur.fetchall()}

        with server.connect("monitor", "monitor", cursorclass=pymysql.cursors.DictCursor) as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT @@read_only AS ro")
                assert cur.fetchone()["ro"] == (0 if server.role == "primary" else 1)
                cur.execute("SHOW SLAVE STATUS")
                status = cur.fetchone()
                cur.execute("SHOW REPLICA STATUS")
                cur.fetchall()
        if server.role == "primary":
            assert status is None
        else:
            assert status is not None
            assert (status["Slave_IO_Running"], status["Slave_SQL_Running"]) == ("Yes", "Yes")
            assert status["Using_Gtid"] == "Slave_Pos"
            assert status["Master_Port"] == cluster.primary.port

        with pytest.raises(pymysql.err.OperationalError) as denied:
            server.connect("app", "wrong-password")
        assert denied.value.args[0] == ER_ACCESS_DENIED


def test_row_written_on_primary_reaches_every_replica(cluster: Cluster, table: str) -> None:
    token = uuid.uuid4().hex
    with cluster.primary.connect("app", "app", database="test") as conn, conn.cursor() as cur:
        cur.execute(f"INSERT INTO {table} VALUES (1, %s)", (token,))
    cluster.wait_replication()
    for replica in cluster.replicas:
        row = _row(replica, f"SELECT token FROM {table} WHERE id = 1", "app", "app", database="test")
        assert row["token"] == token, replica.name


def test_replicas_refuse_writes_from_app(cluster: Cluster, table: str) -> None:
    cluster.wait_replication()
    for replica in cluster.replicas:
        with replica.connect("app", "app", database="test") as conn, conn.cursor() as cur:
            with pytest.raises(pymysql.MySQLError) as refused:
                cur.execute(f"INSERT INTO {table} VALUES (2, 'nope')")
            assert refused.value.args[0] == ER_OPTION_PREVENTS_STATEMENT, replica.name
            cur.execute(f"SELECT COUNT(*) FROM {table}")
            assert cur.fetchone() == (0,)


# --- restarts, on a small cluster of its own (about a second to start), so the
# --- session cluster is never disturbed


@pytest.fixture
def small_cluster() -> Iterator[Cluster]:
    with testbed.start_cluster(replicas=1) as started:
        yield started


def _insert(cluster: Cluster, row_id: int) -> str:
    token = uuid.uuid4().hex
    with cluster.primary.connect("app", "app", database="test") as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS restarts (id INT PRIMARY KEY, token VARCHAR(64))")
        cur.execute("INSERT INTO restarts VALUES (%s, %s)", (row_id, token))
    return token


def _replica_token(replica: Server, row_id: int) -> str:
    return _row(replica, f"SELECT token FROM test.restarts WHERE id = {row_id}", "app", "app")["token"]


def test_servers_restart_and_replication_resumes(small_cluster: Cluster) -> None:
    primary, replica = small_cluster.primary, small_cluster.replicas[0]
    _insert(small_cluster, 0)
    small_cluster.wait_replication()

    # clean stop of a replica, writes meanwhile, start again: it catches up
    old_pid = replica.pid
    replica.stop()
    assert not replica.running and replica.pid is None and not _pid_alive(old_pid)
    token = _insert(small_cluster, 1)
    replica.start()
    small_cluster.wait_replication(60)
    assert _replica_token(replica, 1) == token

    # crash of a replica (SIGKILL), restart: InnoDB recovers and replication resumes
    replica.kill()
    assert not replica.running
    token = _insert(small_cluster, 2)
    replica.start()
    small_cluster.wait_replication(60)
    assert _replica_token(replica, 2) == token

    # restart of the primary on the same port: the replica reconnects by itself
    port = primary.port
    primary.stop()
    primary.start()
    assert primary.port == port
    token = _insert(small_cluster, 3)
    small_cluster.wait_replication(60)
    assert _replica_token(replica, 3) == token
    assert _row(replica, "SELECT @@read_only AS ro")["ro"] == 1


def test_stop_leaves_no_process_and_no_files() -> None:
    with testbed.start_cluster(replicas=1) as started:
        pids = [s.pid for s in started.servers]
        base_dir = started.base_dir
        assert all(pids) and base_dir.is_dir()
    assert not any(_pid_alive(pid) for pid in pids)
    assert not base_dir.exists()


def test_failed_start_stops_the_servers_it_started(monkeypatch: pytest.MonkeyPatch) -> None:
    spawned: list[Server] = []
    real_spawn = Server._spawn

    def recording_spawn(self: Server) -> None:
        real_spawn(self)
        spawned.append(self)

    def failing_setup(primary: Server) -> None:
        raise testbed.ClusterError("injected failure after the servers started")

    monkeypatch.setattr(Server, "_spawn", recording_spawn)
    monkeypatch.setattr(testbed, "_setup_primary", failing_setup)
    with pytest.raises(testbed.ClusterError, match="injected failure"):
        testbed.start_cluster(replicas=1)
    assert len(spawned) == 2
    assert all(not s.running and s.process is None for s in spawned)
    assert not spawned[0].datadir.parent.exists()


# --- the demo of `make run`


def test_make_run_demo_serves_in_front_of_its_own_cluster_and_stops_it(tmp_path) -> None:
    """What `make run` runs (python -m myrouter_testbed): its own primary + 2 replicas, the proxy."""
    port, admin_port, metrics_port = free_ports(3)
    proc = subprocess.Popen([sys.executable, "-m", "myrouter_testbed", "--port", str(port),
                             "--admin-port", str(admin_port), "--metrics-port", str(metrics_port),
                             "--run-dir", str(tmp_path / "run")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Stop with Ctrl-C"):
                break
        text = "".join(lines)
        assert f"mariadb -h127.0.0.1 -P{port} -uapp -papp test" in text, text
        server_ports = [int(m) for m in re.findall(r"127\.0\.0\.1:(\d+) \(hostgroup", text)]
        assert len(server_ports) == 3
        r = subprocess.run(["mariadb", "-h127.0.0.1", f"-P{port}", "-uapp", "-papp", "test", "--batch",
                            "--skip-column-names", "-e", "SELECT @@port; BEGIN; SELECT @@port; COMMIT"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        read_port, trx_port = (int(x) for x in r.stdout.split())
        assert read_port in server_ports[1:]  # a replica (hostgroup 1) answers plain reads
        assert trx_port == server_ports[0]  # the primary answers inside a transaction
        # it runs the proxy as `myrouter serve` does: plain statements on the data plane (the first of a
        # digest, and one per replica that has no connection yet, go through Trio)
        r = subprocess.run(["mariadb", "-h127.0.0.1", f"-P{port}", "-uapp", "-papp", "test", "--batch",
                            "-e", "; ".join(f"SELECT {i}" for i in range(10))],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        r = subprocess.run(["mariadb", "-h127.0.0.1", f"-P{admin_port}", "-uadmin", "-padmin", "--batch",
                            "--skip-column-names", "-e", "SELECT Variable_Value FROM stats_mysql_global "
                            "WHERE Variable_Name = 'Data_plane_commands'"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert int(r.stdout) >= 5
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for p in server_ports:  # the demo stopped its MariaDB servers
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", p), timeout=1).close()
