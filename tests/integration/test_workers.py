"""``threads = 2``: one supervisor and two worker processes, seen by clients and operators as one proxy.

Real MariaDB, real clients, the real ``myrouter serve`` process tree. Which worker holds a session is
in its id (``worker + 1 + k * threads``: the handshake's connection id, ``thread_id()``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import MySQLdb
import pymysql
import pytest

from conftest import admin_sql, render_config, wait_for
from myrouter.net import tls
from myrouter_testbed.mariadb import free_ports

MYROUTER = [sys.executable, "-m", "myrouter"]
THREADS = 2


class Instance:
    """``myrouter serve`` with worker processes, its client, admin and /metrics ports."""

    def __init__(self, cluster, tmp_path: Path, *, threads: int = THREADS, name: str = "myrouter", **kw) -> None:
        self.port, self.admin_port, self.metrics_port = free_ports(3)
        variables = {"threads": threads, **kw.pop("variables", {})}
        if "rules_dir" not in kw:  # no query rules: everything to the user's default hostgroup
            kw["rules_dir"] = tmp_path / "no-rules"
            kw["rules_dir"].mkdir(exist_ok=True)
        text = render_config(cluster, port=self.port, variables=variables, **kw)
        text = text.replace('mysql_ifaces = "127.0.0.1:0"', f'mysql_ifaces = "127.0.0.1:{self.admin_port}"')
        text = text.replace("restapi_port = 0", f"restapi_port = {self.metrics_port}\nrestapi_enabled = true")
        self.config_path = tmp_path / f"{name}.toml"
        self.config_path.write_text(text)
        self.log_path = tmp_path / f"{name}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([*MYROUTER, "serve", "--config", str(self.config_path)],
                                     stdout=subprocess.DEVNULL, stderr=self._log)
        wait_for("the admin port", self._admin_up, timeout=60)
        if threads > 1:
            wait_for(f"{threads} workers", lambda: f"with {threads} workers" in self.log(), timeout=60)

    def _admin_up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"myrouter exited early: {self.log()}")
        try:
            self.admin("SELECT 1")
            return True
        except pymysql.err.OperationalError:
            return False

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def connect(self, user: str = "app", password: str = "app", **kw) -> pymysql.Connection:
        kw.setdefault("autocommit", True)
        return pymysql.connect(host="127.0.0.1", port=self.port, user=user, password=password, database="test", **kw)

    def connect_to_worker(self, worker: int, keep: list) -> pymysql.Connection:
        """A connection that landed on ``worker`` (the kernel spreads them; others are kept open in
        ``keep`` so that it does not hand the same ports to the same worker again)."""
        for _ in range(200):
            conn = self.connect()
            if (conn.thread_id() - 1) % THREADS == worker:
                return conn
            keep.append(conn)
        raise AssertionError(f"no connection landed on worker {worker}")

    def admin(self, *statements: str) -> list:
        return admin_sql(self.admin_port, *statements)

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        pids = self.worker_pids()
        if self.proc.poll() is None:
            self.proc.kill()  # our own child, by its Popen handle
            self.proc.wait()
        for pid in pids:  # its workers, which die with it (PR_SET_PDEATHSIG): only if one did not
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def instance(cluster, tmp_path):
    started: list[Instance] = []

    def start(**kw) -> Instance:
        inst = Instance(cluster, tmp_path, name=f"myrouter-{len(started)}", **kw)
        started.append(inst)
        return inst

    yield start
    for inst in started:
        inst.kill()


def both_workers(inst: Instance) -> tuple[pymysql.Connection, pymysql.Connection, list]:
    keep: list = []
    a = inst.connect_to_worker(0, keep)
    b = inst.connect_to_worker(1, keep)
    return a, b, keep


def query(conn, sql: str):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def global_stat(inst: Instance, name: str) -> int:
    return int(inst.admin(f"SELECT Variable_Value FROM stats_mysql_global WHERE Variable_Name = '{name}'")[0][0])


def test_sessions_land_on_both_workers_with_unique_ids(instance):
    inst = instance()
    conns = [inst.connect() for _ in range(40)]
    ids = [c.thread_id() for c in conns]
    assert len(set(ids)) == len(ids)
    assert {(i - 1) % THREADS for i in ids} == {0, 1}  # the kernel spread them over both workers
    for c in conns:
        assert query(c, "SELECT 1") == ((1,),)
    rows = inst.admin("SELECT ThreadID, SessionID FROM stats_mysql_processlist")
    assert sorted(r[1] for r in rows) == sorted(ids)
    assert all(r[0] == (r[1] - 1) % THREADS for r in rows)  # ThreadID: the worker holding it
    assert global_stat(inst, "Client_Connections_connected") == 40
    for c in conns:
        c.close()
    wait_for("sessions to end", lambda: global_stat(inst, "Client_Connections_connected") == 0)
    assert inst.stop() == 0


WHICH_SERVER = "SELECT variable_value FROM information_schema.global_variables WHERE variable_name = 'PORT'"


def test_a_rule_loaded_through_admin_reaches_both_workers_within_the_statement(instance, cluster):
    inst = instance()
    a, b, keep = both_workers(inst)
    primary = str(cluster.primary.port)
    for conn in (a, b):  # no rules: the writer, on both workers (and the digest is remembered there)
        assert {query(conn, WHICH_SERVER)[0][0] for _ in range(3)} == {primary}
    inst.admin("INSERT INTO mysql_query_rules (rule_id, active, match_pattern, destination_hostgroup, apply) "
               "VALUES (5, 1, '^SELECT variable_value FROM information_schema', 1, 1)",
               "LOAD MYSQL QUERY RULES TO RUNTIME")
    # right after LOAD returned: both workers route with the new rule (hostgroup 1: the replicas)
    replicas = {str(r.port) for r in cluster.replicas}
    for conn in (a, b):
        assert {query(conn, WHICH_SERVER)[0][0] for _ in range(4)} <= replicas
    assert inst.admin("SELECT rule_id, hits FROM stats_mysql_query_rules") == [(5, 8)]
    for c in (a, b, *keep):
        c.close()


def test_kill_reaches_a_session_on_the_other_worker(instance):
    inst = instance()
    a, b, keep = both_workers(inst)
    assert (a.thread_id() - 1) % THREADS == 0 and (b.thread_id() - 1) % THREADS == 1
    done = {}

    def sleeper():
        started = time.monotonic()
        try:
            done["result"] = query(b, "SELECT SLEEP(20)")[0][0]  # MariaDB: 1 when interrupted
        except pymysql.err.OperationalError as exc:
            done["result"] = exc.args[0]  # or 1317, query execution was interrupted
        done["took"] = time.monotonic() - started

    t = threading.Thread(target=sleeper)
    t.start()
    wait_for("the sleep to run", lambda: any(r[0] == "Query" for r in inst.admin(
        f"SELECT command FROM stats_mysql_processlist WHERE SessionID = {b.thread_id()}")))
    query(a, f"KILL QUERY {b.thread_id()}")  # from worker 0 to worker 1
    t.join(15)
    assert done["result"] in (1, 1317) and done["took"] < 10
    assert query(b, "SELECT 1") == ((1,),)  # KILL QUERY: the session stays
    query(a, f"KILL {b.thread_id()}")  # KILL <id>: the connection
    with pytest.raises(pymysql.err.OperationalError):
        query(b, "SELECT 1")
    c = inst.connect_to_worker(1, keep)
    a.kill(c.thread_id())  # COM_PROCESS_KILL
    with pytest.raises(pymysql.err.OperationalError):
        query(c, "SELECT 1")
    with pytest.raises(pymysql.err.OperationalError) as err:
        query(a, "KILL 999999")  # no such session on any worker
    assert err.value.args[0] == 1094
    for conn in (a, *keep):
        conn.close()


def test_show_processlist_and_admin_kill_see_every_worker(instance):
    inst = instance()
    a, b, keep = both_workers(inst)
    ids = {r[0] for r in query(a, "SHOW PROCESSLIST")}
    assert {a.thread_id(), b.thread_id()} <= ids
    inst.admin(f"KILL CONNECTION {b.thread_id()}")
    with pytest.raises(pymysql.err.OperationalError):
        query(b, "SELECT 1")
    assert query(a, "SELECT 1") == ((1,),)
    for conn in (a, *keep):
        conn.close()


def test_pool_digest_and_command_stats_add_up_over_workers(instance):
    inst = instance()
    a, b, keep = both_workers(inst)
    before = global_stat(inst, "Questions")
    for _ in range(7):
        query(a, "SELECT 'workers-digest'")
    for _ in range(5):
        query(b, "SELECT 'workers-digest'")
    rows = inst.admin("SELECT count_star FROM stats_mysql_query_digest WHERE digest_text = 'SELECT ?'")
    assert sum(int(r[0]) for r in rows) >= 12
    assert global_stat(inst, "Questions") - before >= 12
    pool = inst.admin("SELECT hostgroup, srv_port, status, ConnUsed, ConnFree, Queries FROM "
                      "stats_mysql_connection_pool WHERE hostgroup = 0")
    assert len(pool) == 1 and pool[0][2] == "ONLINE"
    assert int(pool[0][5]) >= 12 and int(pool[0][3]) + int(pool[0][4]) >= 2  # both workers' connections
    select = inst.admin("SELECT Total_cnt FROM stats_mysql_commands_counters WHERE Command = 'SELECT'")
    assert int(select[0][0]) >= 12
    admin = MySQLdb.connect(host="127.0.0.1", port=inst.admin_port, user="admin", password="admin")
    assert f"Threads: {2 + len(keep)}  Questions: " in admin.stat()  # COM_STATISTICS: every worker's sessions
    admin.close()
    body = urllib.request.urlopen(f"http://127.0.0.1:{inst.metrics_port}/metrics").read()
    assert b"myrouter_client_connections_connected" in body
    for line in body.decode().splitlines():
        if line.startswith("myrouter_client_connections_connected "):
            assert float(line.split()[1]) == 2 + len(keep)
    for conn in (a, b, *keep):
        conn.close()


def test_a_servers_max_connections_holds_for_both_workers_together(instance, cluster):
    """Each worker has its share (2 + 2) of the server's 4: 50 clients on both never open more."""
    servers = [{"hostgroup_id": 0, "hostname": "127.0.0.1", "port": cluster.primary.port, "max_connections": 4}]
    # a user of its own: the server's connections of this user are this test's (other tests' linger)
    cluster.primary.query("CREATE USER IF NOT EXISTS 'wk4'@'%' IDENTIFIED BY 'wk4'")
    cluster.primary.query("GRANT ALL ON test.* TO 'wk4'@'%'")
    users = [{"username": "wk4", "password": "wk4", "default_hostgroup": 0, "default_schema": "test"}]

    def app_threads() -> int:
        rows = cluster.primary.query("SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE USER = 'wk4'")
        return int(rows[0]["n"])

    inst = instance(servers=servers, users=users)
    conns = [inst.connect("wk4", "wk4") for _ in range(50)]
    assert {(c.thread_id() - 1) % THREADS for c in conns} == {0, 1}
    errors: list = []

    def run(conn):
        try:
            for _ in range(3):
                query(conn, "SELECT SLEEP(0.05)")
        except pymysql.err.MySQLError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    peak = 0
    while any(t.is_alive() for t in threads):
        peak = max(peak, app_threads())
        time.sleep(0.02)
    for t in threads:
        t.join()
    assert errors == []
    assert 2 <= peak <= 4  # both workers used the server, never past its max_connections together
    pool = inst.admin("SELECT ConnUsed + ConnFree, MaxConnUsed FROM stats_mysql_connection_pool WHERE hostgroup = 0")
    assert int(pool[0][0]) <= 4 and int(pool[0][1]) <= 4
    for c in conns:
        c.close()


def test_client_and_user_max_connections_count_logins_on_every_worker(instance):
    users = [{"username": "app", "password": "app", "default_hostgroup": 0, "default_schema": "test",
              "max_connections": 6},
             {"username": "other", "password": "other", "default_hostgroup": 0, "default_schema": "test"}]
    inst = instance(users=users, variables={"max_connections": 10})
    conns: list = []
    codes = []
    for _ in range(9):
        try:
            conns.append(inst.connect())
        except pymysql.err.OperationalError as exc:
            codes.append(exc.args[0])
    assert len(conns) == 6 and codes == [1226] * 3  # the user's limit, over both workers
    assert {(c.thread_id() - 1) % THREADS for c in conns} == {0, 1}
    assert inst.admin("SELECT username, frontend_connections, frontend_max_connections FROM stats_mysql_users "
                      "WHERE username = 'app'") == [("app", 6, 6)]
    for _ in range(6):
        try:
            conns.append(inst.connect("other", "other"))
        except pymysql.err.OperationalError as exc:
            codes.append(exc.args[0])
    assert len(conns) == 10 and codes == [1226] * 3 + [1040] * 2  # mysql-max_connections, for the instance
    conns.pop().close()
    wait_for("a login slot to be free", lambda: inst.admin(
        "SELECT Variable_Value FROM stats_mysql_global WHERE Variable_Name = 'Client_Connections_connected'")
        == [("9",)])
    conns.append(inst.connect("other", "other"))  # freed on whichever worker: usable on any
    for c in conns:
        c.close()


def test_a_killed_worker_is_restarted_and_the_other_workers_clients_do_not_notice(instance):
    inst = instance()
    a, b, keep = both_workers(inst)
    by_index = {i: worker_pid(inst, i) for i in (0, 1)}
    os.kill(by_index[1], signal.SIGKILL)
    for _ in range(50):
        assert query(a, "SELECT 1") == ((1,),)  # worker 0's client goes on
    with pytest.raises(pymysql.err.OperationalError):
        query(b, "SELECT 1")
    wait_for("worker 1 to be restarted", lambda: len(inst.worker_pids()) == 2 and by_index[1] not in
             inst.worker_pids(), timeout=20)
    assert "worker 1" in inst.log() and "killed by SIGKILL" in inst.log()
    fresh = inst.connect_to_worker(1, keep)
    assert query(fresh, "SELECT 1") == ((1,),)
    assert global_stat(inst, "Worker_restarts") == 1
    for conn in (a, fresh, *keep):
        conn.close()
    assert inst.stop() == 0


def test_sigterm_drains_both_workers_and_exits_0(instance):
    inst = instance(variables={"shutdown_timeout": 8000})
    a, b, keep = both_workers(inst)
    results = {}

    def run(name, conn):
        results[name] = query(conn, "SELECT SLEEP(1), 'drained'")

    threads = [threading.Thread(target=run, args=(n, c)) for n, c in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    time.sleep(0.3)
    pids = inst.worker_pids()
    inst.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(15)
    assert results == {"a": ((0, "drained"),), "b": ((0, "drained"),)}  # both statements finished
    assert inst.proc.wait(20) == 0
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or b"Z" in Path(f"/proc/{pid}/stat").read_bytes()[:64]


def test_workers_die_with_their_supervisor(instance):
    inst = instance()
    pids = inst.worker_pids()
    inst.proc.kill()  # SIGKILL: no drain, no goodbye
    inst.proc.wait()

    def gone() -> bool:
        return all(not Path(f"/proc/{p}").exists() for p in pids)

    wait_for("the workers to end", gone, timeout=15)


def test_causal_reads_global_see_the_writes_of_the_other_worker(instance, cluster, stalled_replica):
    """Reads on worker 1 wait for a write committed through worker 0 the moment its client has the OK
    (the write's GTID is in shared memory before the OK is forwarded); the replica does not apply."""
    servers = [{"hostgroup_id": 0, "hostname": "127.0.0.1", "port": cluster.primary.port},
               {"hostgroup_id": 1, "hostname": "127.0.0.1", "port": stalled_replica.port}]
    users = [{"username": "app", "password": "app", "default_hostgroup": 0, "default_schema": "test",
              "causal_reads": "global"}]
    inst = instance(servers=servers, users=users, rules_dir=Path(__file__).resolve().parents[2] / "rules",
                    variables={"causal_reads_timeout_ms": 20})
    writer, reader, keep = both_workers(inst)
    for i in range(20):
        with writer.cursor() as cur:
            cur.execute("INSERT INTO causal_t (v) VALUES (%s)", (i,))
            rid = cur.lastrowid
        with reader.cursor() as cur:
            cur.execute("SELECT v FROM causal_t WHERE id = %s", (rid,))
            assert cur.fetchone() == (i,)  # from the writer: the stalled replica has not applied it
    for conn in (writer, reader, *keep):
        conn.close()


def sysbench(port: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sysbench", "oltp_point_select", "--mysql-host=127.0.0.1", f"--mysql-port={port}", "--mysql-user=app",
         "--mysql-password=app", "--mysql-db=test", "--tables=1", "--table-size=1000", *args],
        capture_output=True, text=True, timeout=120)


def worker_pid(inst: Instance, index: int) -> int:
    for pid in inst.worker_pids():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue  # gone meanwhile
        if b"--index" in argv and int(argv[argv.index(b"--index") + 1]) == index:  # (a zombie has no argv)
            return pid
    raise AssertionError(f"no worker {index}")


def test_a_worker_killed_under_sysbench_is_restarted_and_sysbench_on_the_other_sees_no_error(instance, cluster):
    """sysbench 1.0.20 crashes when it reconnects after a lost connection, and stops at any other error,
    so its sessions are put on worker 0 (started while worker 1 restarts); worker 1 is killed under it,
    with a client of its own that loses its connection."""
    sysbench(cluster.primary.port, "cleanup")
    prep = sysbench(cluster.primary.port, "prepare")
    assert prep.returncode == 0, prep.stdout + prep.stderr
    inst = instance()
    keep: list = []
    run: list[subprocess.CompletedProcess] = []
    for _attempt in range(3):
        restarts = inst.log().count("restarting it")
        os.kill(worker_pid(inst, 1), signal.SIGKILL)  # worker 0 alone takes new connections a moment
        # once it is dead: a connection queued on a dying worker's listener is lost with it (unless the
        # host sets net.ipv4.tcp_migrate_req), which would stop sysbench
        wait_for("worker 1 to be dead", lambda: inst.log().count("restarting it") > restarts)
        run.clear()
        t = threading.Thread(target=lambda: run.append(sysbench(inst.port, "--threads=8", "--time=8", "run")))
        t.start()
        def sessions_up() -> bool:
            assert not run, run[0].stdout[-2000:] + run[0].stderr[-2000:]  # sysbench ended already
            return len(inst.admin("SELECT SessionID FROM stats_mysql_processlist WHERE user = 'app'")) == 8

        wait_for("sysbench's sessions", sessions_up)
        if not inst.admin("SELECT SessionID FROM stats_mysql_processlist WHERE ThreadID = 1"):
            break
        t.join(60)  # one of them reached the restarted worker 1 already: again
    else:
        raise AssertionError("sysbench's sessions never all landed on worker 0")
    wait_for("worker 1 to be back", lambda: inst.log().count("worker 1 started") >= 2, timeout=20)
    victim = inst.connect_to_worker(1, keep)
    restarts = global_stat(inst, "Worker_restarts")
    os.kill(worker_pid(inst, 1), signal.SIGKILL)  # under sysbench
    with pytest.raises(pymysql.err.OperationalError):
        query(victim, "SELECT 1")  # worker 1's client lost its connection
    t.join(60)
    out = run[0].stdout + run[0].stderr
    assert run[0].returncode == 0, out[-3000:]
    assert re.search(r"errors:\s+0 ", out), out[-3000:]  # worker 0's sysbench sessions saw nothing
    assert int(re.search(r"queries:\s+(\d+)", out).group(1)) > 1000
    wait_for("worker 1 to be restarted again", lambda: global_stat(inst, "Worker_restarts") == restarts + 1)
    fresh = inst.connect_to_worker(1, keep)
    assert query(fresh, "SELECT 1") == ((1,),)
    for conn in (fresh, *keep):
        conn.close()
    sysbench(cluster.primary.port, "cleanup")


def test_both_workers_write_one_query_log_which_only_the_supervisor_rotates(instance, tmp_path):
    qlog = tmp_path / "queries.log"
    rules = tmp_path / "log-rules"
    rules.mkdir()
    (rules / "10-log.toml").write_text('[[mysql_query_rules]]\nrule_id = 20\nactive = 1\n'
                                       'match_pattern = "^SELECT"\nlog = 1\n')
    inst = instance(rules_dir=rules, variables={"eventslog_filename": str(qlog), "eventslog_filesize": 8192})
    a, b, keep = both_workers(inst)

    def events() -> list[dict]:
        out = []
        for f in [*sorted(tmp_path.glob("queries.log.*")), qlog]:
            out += [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []
        return out

    for i in range(30):
        query(a if i % 2 else b, f"SELECT {i}, '{'x' * 500}'")
    wait_for("every statement logged", lambda: len(events()) == 30)
    wait_for("the supervisor to rotate past 8 KiB", lambda: len(list(tmp_path.glob("queries.log.*"))) >= 1)
    rotated = sorted(tmp_path.glob("queries.log.*"))
    assert [p.name for p in rotated] == [f"queries.log.{i:08d}" for i in range(1, len(rotated) + 1)]
    for f in rotated:
        for line in f.read_text().splitlines():
            json.loads(line)  # whole lines: one write per record, whichever worker wrote it
    assert sorted(int(e["query"].split(",")[0].split()[1]) for e in events()) == list(range(30))
    before = len(rotated)
    inst.admin("PROXYSQL FLUSH LOGS")
    assert len(list(tmp_path.glob("queries.log.*"))) == before + 1  # one new file for the instance
    query(a, "SELECT 'after flush a'")
    query(b, "SELECT 'after flush b'")
    wait_for("both workers writing the new file", lambda: qlog.exists() and len(qlog.read_text().splitlines()) == 2)
    for conn in (a, b, *keep):
        conn.close()


def test_workers_outlive_the_supervisors_idle_helper_threads(instance):
    """PR_SET_PDEATHSIG follows the thread that started a worker: started from a helper thread that
    ends when idle (Trio's, after 10 s), every worker was stopped and restarted 10 s after its start."""
    inst = instance()
    pids = sorted(inst.worker_pids())
    time.sleep(12)
    assert sorted(inst.worker_pids()) == pids
    assert global_stat(inst, "Worker_restarts") == 0
    assert "stopped on its own" not in inst.log()


def test_sigterm_while_a_worker_restarts_still_drains_within_shutdown_timeout(instance):
    inst = instance(variables={"shutdown_timeout": 3000})
    os.kill(worker_pid(inst, 1), signal.SIGKILL)
    wait_for("worker 1 to be restarting", lambda: "restarting it" in inst.log())
    started = time.monotonic()
    assert inst.stop(timeout=20) == 0
    assert time.monotonic() - started < 3 + 5
    assert "Traceback" not in inst.log()


def test_tls_clients_on_both_workers_use_the_certificates_the_supervisor_made(instance, tmp_path):
    datadir = tmp_path / "datadir"
    inst = instance(datadir=datadir, variables={"have_ssl": True})
    ca = str(datadir / tls.CA_FILE)
    keep: list = []
    seen = set()
    for _ in range(40):
        conn = inst.connect(ssl_ca=ca, ssl_verify_cert=True, ssl_verify_identity=True)
        assert query(conn, "SHOW STATUS LIKE 'Ssl_cipher'") is not None
        seen.add((conn.thread_id() - 1) % THREADS)
        keep.append(conn)
        if seen == {0, 1}:
            break
    assert seen == {0, 1}  # one certificate set, made once (by the supervisor), served by both workers
    assert inst.log().count("TLS: generated") == 1
    for conn in keep:
        conn.close()


def test_a_wedged_worker_neither_hangs_the_admin_nor_half_applies_a_load(instance):
    """SIGSTOP stands for a worker stuck in a long computation: the admin answers from the others
    after the call timeout, and a LOAD it cannot confirm changes nothing anywhere."""
    inst = instance()
    a, b, keep = both_workers(inst)
    stuck = worker_pid(inst, 1)
    os.kill(stuck, signal.SIGSTOP)
    try:
        started = time.monotonic()
        rows = inst.admin("SELECT ThreadID, SessionID FROM stats_mysql_processlist")
        assert time.monotonic() - started < 30
        assert {r[1] for r in rows} >= {a.thread_id()} and {r[0] for r in rows} == {0}  # worker 0's only
        inst.admin("INSERT INTO mysql_query_rules (rule_id, active, match_pattern, destination_hostgroup, apply) "
                   "VALUES (9, 1, '^SELECT wedged', 1, 1)")
        with pytest.raises(pymysql.err.OperationalError) as err:
            inst.admin("LOAD MYSQL QUERY RULES TO RUNTIME")
        assert "worker 1" in err.value.args[1]
        assert inst.admin("SELECT rule_id FROM runtime_mysql_query_rules") == []  # nothing changed here
        assert query(a, "SELECT 1") == ((1,),)
    finally:
        os.kill(stuck, signal.SIGCONT)
    assert query(b, "SELECT 1") == ((1,),)  # it goes on where it stopped
    inst.admin("LOAD MYSQL QUERY RULES TO RUNTIME")  # and takes the next LOAD with the others
    assert inst.admin("SELECT rule_id FROM runtime_mysql_query_rules") == [(9,)]
    for conn in (a, b, *keep):
        conn.close()
