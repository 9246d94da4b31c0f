"""The admin interface against the real test bed: mariadb CLI, ProxySQL's own admin statements,
routing verified with ``SELECT @@server_id``, changes under load, SAVE TO DISK + restart, /metrics."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pymysql
import pytest
from conftest import RunningProxy, admin_connect, admin_port, admin_sql, render_config
from prometheus_client.parser import text_string_to_metric_families

from myrouter_testbed.mariadb import free_ports

REPO = Path(__file__).resolve().parents[2]


# -- helpers -----------------------------------------------------------------------








def admin_error(rp: RunningProxy, sql: str) -> pymysql.MySQLError:
    conn = admin_connect(rp)
    try:
        with conn.cursor() as cur, pytest.raises(pymysql.MySQLError) as info:
            cur.execute(sql)
        return info.value
    finally:
        conn.close()


def mariadb(rp: RunningProxy, script: str, *args: str, user: str = "admin", password: str = "admin"):
    return subprocess.run(["mariadb", "-h127.0.0.1", f"-P{admin_port(rp)}", f"-u{user}", f"-p{password}", *args],
                          input=script, capture_output=True, text=True, timeout=60)


def ids(cluster):
    primary = cluster.primary.query("SELECT @@server_id AS s")[0]["s"]
    replicas = [r.query("SELECT @@server_id AS s")[0]["s"] for r in cluster.replicas]
    return primary, replicas


def served_by(conn, sql: str = "SELECT @@server_id"):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


def runtime_tables(rp: RunningProxy) -> dict[str, list]:
    return {t: admin_sql(rp, f"SELECT * FROM runtime_{t} ORDER BY 1, 2")
            for t in ("mysql_servers", "mysql_users", "mysql_query_rules", "mysql_replication_hostgroups",
                      "global_variables")}


# -- connecting ----------------------------------------------------------------------


def test_mariadb_cli_connects_and_a_wrong_password_gets_1045(proxy):
    r = mariadb(proxy, "select @@version_comment limit 1;\nSHOW DATABASES;\nSELECT COUNT(*) FROM mysql_servers;\n")
    assert r.returncode == 0, r.stderr
    assert "(myrouter Admin Module)" in r.stdout
    assert "main" in r.stdout and "disk" in r.stdout and "stats" in r.stdout
    assert r.stdout.strip().endswith("3")  # primary + 2 replicas
    r = mariadb(proxy, "SELECT 1;\n", password="wrong")
    assert r.returncode != 0 and "ERROR 1045" in r.stderr, r.stderr
    r = mariadb(proxy, "SELECT 1;\n", user="nobody")
    assert "ERROR 1045" in r.stderr


def test_interactive_mariadb_session_with_a_database(proxy):
    # with a default database the CLI lists tables and their columns (COM_FIELD_LIST) for completion
    r = subprocess.run(["mariadb", "-h127.0.0.1", f"-P{admin_port(proxy)}", "-uadmin", "-padmin", "--auto-rehash",
                        "main", "-e", "status; SELECT DATABASE(); SHOW TABLES FROM stats"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "stats_mysql_query_digest" in r.stdout and "main" in r.stdout


def test_stats_account_is_read_only(proxy):
    r = mariadb(proxy, "SELECT Variable_Value FROM stats_mysql_global WHERE Variable_Name='Questions';\n",
                user="stats", password="stats")
    assert r.returncode == 0, r.stderr
    r = mariadb(proxy, "SELECT * FROM mysql_servers;\n", user="stats", password="stats")
    assert "ERROR 1142" in r.stderr
    r = mariadb(proxy, "LOAD MYSQL SERVERS TO RUNTIME;\n", user="stats", password="stats")
    assert "ERROR 1227" in r.stderr


def test_errors_answer_with_err_and_keep_the_connection(proxy):
    conn = admin_connect(proxy)
    with conn.cursor() as cur:
        for sql, code in (("SELEC 1", 1064), ("SELECT * FROM nope", 1146), ("LOAD MYSQL THINGS TO RUNTIME", 1064),
                          ("UPDATE runtime_mysql_servers SET weight = 3", 1036)):
            with pytest.raises(pymysql.MySQLError) as info:
                cur.execute(sql)
            assert info.value.args[0] == code, (sql, info.value)
        cur.execute("SELECT COUNT(*) FROM mysql_users")
        assert cur.fetchone() == (1,)
    conn.close()
    # garbage on the admin port ends that connection only
    with socket.create_connection(("127.0.0.1", admin_port(proxy)), timeout=5) as s:
        s.recv(1024)
        s.sendall(b"\xff" * 64)
        s.settimeout(5)
        try:
            while s.recv(1024):
                pass
        except ConnectionResetError:
            pass
    assert admin_sql(proxy, "SELECT 1") == [(1,)]


def test_multi_statements(proxy):
    conn = admin_connect(proxy, client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)
    with conn.cursor() as cur:
        cur.execute("SELECT 1; SELECT 'two'; UPDATE mysql_servers SET comment = 'x' WHERE 0")
        assert cur.fetchall() == ((1,),)
        assert cur.nextset() and cur.fetchall() == (("two",),)
        assert cur.nextset() and cur.rowcount == 0
    conn.close()


# -- ProxySQL's documented workflow --------------------------------------------------

# Statements as ProxySQL's documentation gives them ("Configuring ProxySQL", "ProxySQL Read/Write
# Split", "Users configuration"), with the test bed's ports for the server addresses.
PROXYSQL_DOC_SCRIPT = """\
SELECT * FROM mysql_servers;
SELECT * from mysql_replication_hostgroups;
SELECT * from mysql_query_rules;
INSERT INTO mysql_servers(hostgroup_id,hostname,port) VALUES (10,'127.0.0.1',{primary});
INSERT INTO mysql_servers(hostgroup_id,hostname,port) VALUES (20,'127.0.0.1',{replica1});
INSERT INTO mysql_servers(hostgroup_id,hostname,port) VALUES (20,'127.0.0.1',{replica2});
INSERT INTO mysql_replication_hostgroups (writer_hostgroup,reader_hostgroup,comment) VALUES (10,20,'cluster1');
UPDATE global_variables SET variable_value='monitor' WHERE variable_name='mysql-monitor_username';
UPDATE global_variables SET variable_value='monitor' WHERE variable_name='mysql-monitor_password';
UPDATE global_variables SET variable_value='2000' WHERE variable_name IN ('mysql-monitor_connect_interval','mysql-monitor_ping_interval','mysql-monitor_read_only_interval');
LOAD MYSQL VARIABLES TO RUNTIME;
SAVE MYSQL VARIABLES TO DISK;
LOAD MYSQL SERVERS TO RUNTIME;
SAVE MYSQL SERVERS TO DISK;
SELECT hostgroup_id,hostname,port,status FROM runtime_mysql_servers ORDER BY hostgroup_id,port;
INSERT INTO mysql_users(username,password,default_hostgroup) VALUES ('docuser','docpass',10);
LOAD MYSQL USERS TO RUNTIME;
SAVE MYSQL USERS TO DISK;
INSERT INTO mysql_query_rules (rule_id,active,match_digest,destination_hostgroup,apply) VALUES (1,1,'^SELECT.*FOR UPDATE$',10,1);
INSERT INTO mysql_query_rules (rule_id,active,match_digest,destination_hostgroup,apply) VALUES (2,1,'^SELECT',20,1);
LOAD MYSQL QUERY RULES TO RUNTIME;
SAVE MYSQL QUERY RULES TO DISK;
SELECT hostgroup hg, sum_time, count_star, digest_text FROM stats_mysql_query_digest ORDER BY sum_time DESC;
SELECT hostgroup,srv_host,status,ConnUsed,Queries,Bytes_data_sent,Latency_us FROM stats_mysql_connection_pool WHERE hostgroup IN (10,20);
SELECT * FROM stats_mysql_query_rules;
"""


@pytest.fixture
def docuser(cluster):
    cluster.primary.query("CREATE USER IF NOT EXISTS 'docuser'@'%' IDENTIFIED BY 'docpass'")
    cluster.primary.query("GRANT ALL PRIVILEGES ON test.* TO 'docuser'@'%'")
    cluster.primary.query("CREATE TABLE IF NOT EXISTS test.admin_docs (id INT PRIMARY KEY, sid INT)")
    cluster.primary.query("REPLACE INTO test.admin_docs VALUES (1, 0)")
    cluster.wait_replication()
    return "docuser"


def test_proxysql_documentation_script_through_the_mariadb_cli(proxy_factory, cluster, docuser, no_rules):
    rp = proxy_factory()
    primary, replicas = ids(cluster)
    script = PROXYSQL_DOC_SCRIPT.format(primary=cluster.primary.port, replica1=cluster.replicas[0].port,
                                        replica2=cluster.replicas[1].port)
    r = mariadb(rp, script, "--table")
    assert r.returncode == 0, r.stderr
    for port in (cluster.primary.port, cluster.replicas[0].port, cluster.replicas[1].port):
        assert f"| 127.0.0.1 | {port} | ONLINE" in r.stdout
    # the routing the statements asked for, on the real servers
    conn = pymysql.connect(host="127.0.0.1", port=rp.port, user="docuser", password="docpass", database="test",
                           autocommit=True)
    seen = {served_by(conn) for _ in range(30)}
    assert seen <= set(replicas) and seen, seen  # rule 2: ^SELECT -> hostgroup 20
    assert served_by(conn, "SELECT @@server_id FROM admin_docs WHERE id = 1 FOR UPDATE") == primary  # rule 1
    with conn.cursor() as cur:
        cur.execute("UPDATE admin_docs SET sid = @@server_id WHERE id = 1")  # no rule: default_hostgroup 10
    conn.close()
    assert cluster.primary.query("SELECT sid FROM test.admin_docs WHERE id = 1") == [{"sid": primary}]
    hits = dict(admin_sql(rp, "SELECT rule_id, hits FROM stats_mysql_query_rules"))
    assert hits[1] == 1 and hits[2] >= 30
    queries = {(hg, port): n for hg, port, n in admin_sql(
        rp, "SELECT hostgroup, srv_port, Queries FROM stats_mysql_connection_pool")}
    assert queries[(10, cluster.primary.port)] >= 2
    assert sum(queries[(20, r.port)] for r in cluster.replicas) >= 30
    # SAVE ... TO DISK wrote the operator's files
    text = rp.config_path.read_text()
    assert 'username = "docuser"' in text and "writer_hostgroup = 10" in text
    assert "monitor_connect_interval = 2000" in text
    assert "match_digest = '^SELECT.*FOR UPDATE$'" in (no_rules / "admin.toml").read_text() or \
        'match_digest = "^SELECT.*FOR UPDATE$"' in (no_rules / "admin.toml").read_text()


def test_invalid_rule_set_is_refused_as_a_whole(proxy_factory, cluster):
    rp = proxy_factory()  # no rules: everything to hostgroup 0
    primary, replicas = ids(cluster)
    before = runtime_tables(rp)
    admin_sql(rp, "INSERT INTO mysql_query_rules (rule_id,active,match_digest,destination_hostgroup,apply) "
                  "VALUES (1,1,'^SELECT',1,1)",
              "INSERT INTO mysql_query_rules (rule_id,active,match_digest,destination_hostgroup,apply) "
              "VALUES (2,1,'^SELECT (unclosed',1,1)")
    err = admin_error(rp, "LOAD MYSQL QUERY RULES TO RUNTIME")
    assert "rule_id=2" in err.args[1] and "match_digest" in err.args[1]
    admin_sql(rp, "UPDATE mysql_query_rules SET match_digest = '^SHOW', destination_hostgroup = 7 WHERE rule_id = 2")
    err = admin_error(rp, "LOAD MYSQL QUERY RULES TO RUNTIME")
    assert "rule_id=2" in err.args[1] and "destination_hostgroup 7" in err.args[1]
    assert runtime_tables(rp) == before
    conn = rp.connect(autocommit=True)
    assert {served_by(conn) for _ in range(10)} == {primary}  # rule 1 never became live
    admin_sql(rp, "DELETE FROM mysql_query_rules WHERE rule_id = 2", "LOAD MYSQL QUERY RULES TO RUNTIME")
    assert served_by(conn) in replicas  # same connection, next statement: the new rules
    conn.close()


def test_valid_change_applies_while_100_clients_run(proxy_factory, cluster):
    rp = proxy_factory()  # no rules: everything to hostgroup 0
    primary, replicas = ids(cluster)
    errors: list[str] = []
    served: list[tuple[float, int]] = []  # (when the statement started, @@server_id)
    connected = threading.Semaphore(0)
    stop = threading.Event()

    def client() -> None:
        try:
            conn = rp.connect(autocommit=True, connect_timeout=30, read_timeout=30)
        except pymysql.MySQLError as exc:
            errors.append(f"connect: {exc!r}")
            connected.release()
            return
        connected.release()
        try:
            with conn.cursor() as cur:
                while not stop.is_set():
                    started = time.monotonic()
                    cur.execute("SELECT @@server_id")
                    served.append((started, cur.fetchone()[0]))
        except pymysql.MySQLError as exc:
            errors.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(100)]
    for t in threads:
        t.start()
    for _ in threads:
        assert connected.acquire(timeout=60)
    time.sleep(0.5)
    change_started = time.monotonic()
    admin_sql(rp, "INSERT INTO mysql_query_rules (rule_id,active,match_digest,destination_hostgroup,apply) "
                  "VALUES (1,1,'^SELECT',1,1)",
              "UPDATE mysql_servers SET weight = 3 WHERE hostgroup_id = 1 AND port = %d" % cluster.replicas[1].port,
              "LOAD MYSQL SERVERS TO RUNTIME",
              "LOAD MYSQL QUERY RULES TO RUNTIME")
    applied = time.monotonic()
    time.sleep(2.0)
    stop.set()
    for t in threads:
        t.join(60)
    assert errors == []
    before = {sid for when, sid in served if when < change_started}
    after = [sid for when, sid in served if when > applied]
    assert before == {primary}
    assert len(after) >= 100 and set(after) <= set(replicas), set(after)
    assert rp.wait_idle().client_connections_connected == 0


def test_offline_soft_and_removed_servers_release_idle_connections(proxy_factory, cluster):
    r0, r1 = cluster.replicas
    servers = [{"hostgroup_id": 0, "hostname": "127.0.0.1", "port": cluster.primary.port},
               {"hostgroup_id": 1, "hostname": "127.0.0.1", "port": r0.port}]
    rp = proxy_factory(servers=servers, rules_dir=REPO / "rules")
    primary, (id0, id1) = ids(cluster)
    conn = rp.connect(autocommit=True)
    assert served_by(conn) == id0
    admin_sql(rp, f"INSERT INTO mysql_servers (hostgroup_id, hostname, port) VALUES (1, '127.0.0.1', {r1.port})",
              f"UPDATE mysql_servers SET status = 'OFFLINE_SOFT' WHERE port = {r0.port}",
              "LOAD MYSQL SERVERS TO RUNTIME")
    assert served_by(conn) == id1  # the idle pooled connection to r0 was closed; no error
    pool = {port: (used, free) for port, used, free in admin_sql(
        rp, "SELECT srv_port, ConnUsed, ConnFree FROM stats_mysql_connection_pool WHERE hostgroup = 1")}
    assert pool[r0.port] == (0, 0)  # nothing left open to the OFFLINE_SOFT server
    assert pool[r1.port] == (0, 1)  # the statement's connection went back to the pool
    admin_sql(rp, f"DELETE FROM mysql_servers WHERE port = {r1.port}",
              f"UPDATE mysql_servers SET status = 'ONLINE' WHERE port = {r0.port}",
              "LOAD MYSQL SERVERS TO RUNTIME")
    assert served_by(conn) == id0
    assert served_by(conn, "SELECT @@server_id FROM DUAL WHERE 1 = 1 AND @@server_id > 0") == id0
    conn.close()


def test_offline_hard_ends_sessions_bound_to_the_server(proxy_factory, cluster):
    r0, r1 = cluster.replicas
    servers = [{"hostgroup_id": 0, "hostname": "127.0.0.1", "port": r0.port}]  # reads only: fine for this test
    rp = proxy_factory(servers=servers)
    _, (id0, id1) = ids(cluster)
    in_trx = rp.connect(autocommit=True)
    with in_trx.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT @@server_id")
        assert cur.fetchone()[0] == id0
    idle = rp.connect(autocommit=True)
    assert served_by(idle) == id0
    admin_sql(rp, f"INSERT INTO mysql_servers (hostgroup_id, hostname, port) VALUES (0, '127.0.0.1', {r1.port})",
              f"UPDATE mysql_servers SET status = 'OFFLINE_HARD' WHERE port = {r0.port}",
              "LOAD MYSQL SERVERS TO RUNTIME")
    assert served_by(idle) == id1  # nothing bound it to r0: it simply moved
    with pytest.raises(pymysql.err.OperationalError):  # its transaction was on r0: disconnected
        served_by(in_trx)
    idle.close()
    in_trx.close()
    assert dict(admin_sql(rp, "SELECT srv_port, ConnUsed FROM stats_mysql_connection_pool"))[r0.port] == 0


def test_processlist_shows_what_clients_are_doing(proxy, cluster):
    done = threading.Event()

    def sleeper() -> None:
        conn = proxy.connect(autocommit=True)
        with conn.cursor() as cur:
            cur.execute("SELECT SLEEP(1.5)")
        conn.close()
        done.set()

    t = threading.Thread(target=sleeper, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    rows = []
    while time.monotonic() < deadline and not rows:
        rows = admin_sql(proxy, "SELECT SessionID, user, db, command, info, srv_port FROM stats_mysql_processlist "
                                "WHERE info LIKE 'SELECT SLEEP%'")
        time.sleep(0.05)
    assert rows and rows[0][1:] == ("app", "test", "Query", "SELECT SLEEP(1.5)", cluster.primary.port)
    assert any(r[0] == rows[0][0] for r in admin_sql(proxy, "SHOW FULL PROCESSLIST"))
    t.join(10)
    assert done.is_set()


def test_explain_routing_in_the_admin(proxy_factory):
    rp = proxy_factory(rules_dir=REPO / "rules")
    rows = dict(admin_sql(rp, "EXPLAIN ROUTING FOR USER 'app' 'SELECT c FROM sbtest1 WHERE id = 42 FOR UPDATE'"))
    assert rows["kind"] == "locking_read" and rows["hostgroup"] == "0 (rules)" and "rule 100" in rows
    rows = dict(admin_sql(rp, "EXPLAIN ROUTING SELECT c FROM sbtest1 WHERE id = 42"))
    assert rows["digest_text"] == "SELECT c FROM sbtest1 WHERE id = ?" and rows["hostgroup"] == "1 (rules)"


# -- disk layer ----------------------------------------------------------------------


def test_save_to_disk_then_restart_gives_the_same_runtime(cluster, tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    shutil.copy(REPO / "rules" / "00-read-write-split.toml", rules)
    path = tmp_path / "myrouter.toml"
    text = render_config(cluster, port=free_ports(1)[0], rules_dir=rules)
    text = ("# Operator notes: this file is reviewed in git.\n" + text.replace(
        "[mysql_variables]\n", "[mysql_variables]\n# tuned by ops, ticket 42\n")
        + "\n# end of the servers and users\n")
    path.write_text(text)
    original_rules = (rules / "00-read-write-split.toml").read_text()
    rp = RunningProxy(path).start()
    try:
        r0 = cluster.replicas[0].port
        admin_sql(rp, f"UPDATE mysql_servers SET weight = 4, comment = 'replica one' WHERE port = {r0}",
                  f"INSERT INTO mysql_servers (hostgroup_id, hostname, port) VALUES (2, '127.0.0.1', {r0})",
                  "INSERT INTO mysql_replication_hostgroups (writer_hostgroup, reader_hostgroup) VALUES (0, 1)",
                  "INSERT INTO mysql_users (username, password, default_hostgroup, max_connections) "
                  "VALUES ('reporting', 'r3port', 2, 50)",
                  "UPDATE global_variables SET variable_value = '1500' WHERE variable_name = 'mysql-max_connections'",
                  "INSERT INTO mysql_query_rules (rule_id, active, username, destination_hostgroup, apply) "
                  "VALUES (5, 1, 'reporting', 2, 1)",
                  "UPDATE mysql_query_rules SET comment = 'plain reads' WHERE rule_id = 120",
                  "LOAD ALL TO RUNTIME", "SAVE ALL TO DISK")
        saved = runtime_tables(rp)
    finally:
        rp.stop()
    new_text = path.read_text()
    for line in text.splitlines():
        if line.startswith("#"):
            assert line in new_text, line
    new_rules = (rules / "00-read-write-split.toml").read_text()
    assert [ln for ln in new_rules.splitlines() if ln.lstrip().startswith("#")] == [
        ln for ln in original_rules.splitlines() if ln.lstrip().startswith("#")]
    assert "# named locks live on one connection" in new_rules  # the multi-line array was left alone
    rp2 = RunningProxy(path).start()
    try:
        assert runtime_tables(rp2) == saved
        conn = rp2.connect(autocommit=True)
        primary, replicas = ids(cluster)
        assert served_by(conn) in replicas
        conn.close()
    finally:
        rp2.stop()


# -- metrics and stats -----------------------------------------------------------------


def scrape(rp: RunningProxy) -> dict:
    host, port = rp.proxy.admin.metrics_address
    text = urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10).read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(families: dict, family: str, name: str, **labels) -> float:
    for s in families[family].samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise KeyError((family, name, labels))


def test_metrics_are_parseable_and_counters_move(proxy, cluster):
    before = scrape(proxy)
    assert before["myrouter_questions"].type == "counter"
    assert before["myrouter_client_connections_connected"].type == "gauge"
    conn = proxy.connect(autocommit=True)
    for _ in range(20):
        served_by(conn)
    mid = scrape(proxy)
    assert sample(mid, "myrouter_client_connections_connected", "myrouter_client_connections_connected") == 1
    conn.close()
    after = scrape(proxy)
    q = "myrouter_questions_total"
    assert sample(after, "myrouter_questions", q) - sample(before, "myrouter_questions", q) >= 20
    srv = {"hostgroup": "0", "server": f"127.0.0.1:{cluster.primary.port}"}
    queries = "myrouter_server_queries"
    assert (sample(after, queries, queries + "_total", **srv) - sample(before, queries, queries + "_total", **srv)
            >= 20)
    created = "myrouter_client_connections_created"
    assert sample(after, created, created + "_total") - sample(before, created, created + "_total") == 1
    assert sample(after, "myrouter_server_status", "myrouter_server_status", status="ONLINE", **srv) == 1
    assert sample(after, "myrouter_user_max_connections", "myrouter_user_max_connections", user="app") == 10000
    host, port = proxy.proxy.admin.metrics_address
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://{host}:{port}/nothing", timeout=10)
    assert info.value.code == 404


def test_digest_stats_match_what_clients_ran(proxy, cluster):
    cluster.primary.query("CREATE TABLE IF NOT EXISTS test.admin_digest_t (id INT PRIMARY KEY, v INT)")
    cluster.primary.query("DELETE FROM test.admin_digest_t")
    cluster.wait_replication()
    admin_sql(proxy, "SELECT * FROM stats_mysql_query_digest_reset")
    conn = proxy.connect(autocommit=True)
    with conn.cursor() as cur:
        for i in range(5):
            cur.execute("INSERT INTO admin_digest_t VALUES (%s, %s)", (i, i))
        for i in range(7):
            cur.execute("SELECT id FROM admin_digest_t WHERE id < %s", (3,))
            assert len(cur.fetchall()) == 3
    conn.close()
    rows = admin_sql(proxy, "SELECT digest_text, count_star, sum_rows_sent, sum_rows_affected, username, "
                            "schemaname, hostgroup FROM stats_mysql_query_digest ORDER BY digest_text")
    by_text = {r[0]: r[1:] for r in rows}
    assert by_text["INSERT INTO admin_digest_t VALUES (?,...)"][:3] == (5, 0, 5)
    assert by_text["SELECT id FROM admin_digest_t WHERE id < ?"] == (7, 21, 0, "app", "test", 0)
    counters = dict(admin_sql(proxy, "SELECT Command, Total_cnt FROM stats_mysql_commands_counters"))
    assert counters["SELECT"] >= 7 and counters["INSERT"] >= 5
    families = scrape(proxy)
    assert sample(families, "myrouter_command_duration_seconds", "myrouter_command_duration_seconds_count",
                  command="SELECT") >= 7
