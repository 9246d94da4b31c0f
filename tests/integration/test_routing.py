"""Read/write split and query rules, verified by asking the backend who served each statement."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pymysql
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def rules_dir(tmp_path):
    """Write rule files: ``rules_dir(text, ...)`` -> a directory with the shipped split plus these rules."""
    def make(*extra: str, shipped: bool = True) -> Path:
        d = tmp_path / f"rules-{len(list(tmp_path.glob('rules-*')))}"
        d.mkdir()
        if shipped:
            (d / "00-read-write-split.toml").write_text((REPO / "rules" / "00-read-write-split.toml").read_text())
        for i, text in enumerate(extra):
            (d / f"50-test-{i}.toml").write_text(text)
        return d
    return make


@pytest.fixture
def split(proxy_factory, rules_dir):
    return proxy_factory(rules_dir=rules_dir())


def ids(cluster):
    primary = cluster.primary.query("SELECT @@server_id AS s")[0]["s"]
    replicas = {r.query("SELECT @@server_id AS s")[0]["s"] for r in cluster.replicas}
    return primary, replicas


def served_by(conn, sql: str = "SELECT @@server_id"):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


def setup_table(cluster, name: str = "route_t") -> None:
    with cluster.primary.connect("app", "app", database="test") as c, c.cursor() as cur:
        cur.execute(f"CREATE TABLE IF NOT EXISTS {name} (id INT AUTO_INCREMENT PRIMARY KEY, sid INT, note VARCHAR(50))")
    cluster.wait_replication()


def test_reads_to_replicas_by_weight_writes_to_primary(proxy_factory, rules_dir, cluster):
    servers = [{"hostgroup_id": 0, "hostname": "127.0.0.1", "port": cluster.primary.port},
               {"hostgroup_id": 1, "hostname": "127.0.0.1", "port": cluster.replicas[0].port, "weight": 1},
               {"hostgroup_id": 1, "hostname": "127.0.0.1", "port": cluster.replicas[1].port, "weight": 3}]
    proxy = proxy_factory(rules_dir=rules_dir(), servers=servers)
    primary, _ = ids(cluster)
    r0 = cluster.replicas[0].query("SELECT @@server_id AS s")[0]["s"]
    r1 = cluster.replicas[1].query("SELECT @@server_id AS s")[0]["s"]
    seen = Counter()
    for _ in range(20):  # each statement draws a server (its connection goes back to the pool after it)
        conn = proxy.connect(autocommit=True)
        for _ in range(20):
            seen[served_by(conn)] += 1
        conn.close()
    assert set(seen) == {r0, r1}, seen  # no plain read reached the primary
    # weight 3 : 1 over 400 draws: replica 0 gets Binomial(400, 1/4), 100 +- 8.7; the bounds are
    # 3.9 and 4.9 standard deviations away (160 draws and 2.0..5.0 failed about once in 70 runs)
    assert 1.8 <= seen[r1] / seen[r0] <= 5.0, seen
    setup_table(cluster)
    conn = proxy.connect(autocommit=True)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO route_t (sid, note) VALUES (@@server_id, 'write')")
        last = cur.lastrowid
    conn.close()
    row = cluster.primary.query(f"SELECT sid FROM test.route_t WHERE id = {last}")
    assert row == [{"sid": primary}]
    assert proxy.wait_idle().backend_connections_in_use == 0


def test_unsafe_reads_go_to_the_writer(split, cluster):
    primary, replicas = ids(cluster)
    setup_table(cluster)
    conn = split.connect(autocommit=True)
    assert served_by(conn) in replicas
    assert served_by(conn, "SELECT @@server_id FROM route_t LIMIT 1 FOR UPDATE") in (primary, None)
    with conn.cursor() as cur:
        cur.execute("SELECT @@server_id, id FROM route_t LOCK IN SHARE MODE")
        cur.execute("SELECT @@server_id, LAST_INSERT_ID()")
        assert cur.fetchone()[0] == primary
        cur.execute("SELECT @@server_id, @v := 1")
        assert cur.fetchone()[0] == primary
        cur.execute("SELECT @@server_id, @v")  # user variables live where they were set
        assert cur.fetchone() == (primary, 1)
        cur.execute("/* comment */ WITH x AS (SELECT 1 AS a) SELECT @@server_id FROM x")
        assert cur.fetchone()[0] in replicas
    conn.close()


def test_get_lock_and_lock_tables_keep_the_session_on_the_writer(split, cluster):
    primary, replicas = ids(cluster)
    setup_table(cluster)
    conn = split.connect(autocommit=True)
    assert served_by(conn, "SELECT GET_LOCK('route_lock', 1) + 0 * @@server_id") == 1
    assert served_by(conn) == primary  # stays until released
    assert served_by(conn, "SELECT RELEASE_LOCK('route_lock')") == 1
    assert served_by(conn) in replicas
    with conn.cursor() as cur:
        cur.execute("LOCK TABLES route_t READ")
    assert served_by(conn) == primary
    assert served_by(conn, "SELECT COUNT(*) * 0 + @@server_id FROM route_t") == primary
    with conn.cursor() as cur:
        cur.execute("UNLOCK TABLES")
    assert served_by(conn) in replicas
    conn.close()


def test_transactions_explicit_and_implicit_stay_on_the_writer(split, cluster):
    primary, replicas = ids(cluster)
    setup_table(cluster)
    conn = split.connect(autocommit=True)
    with conn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT @@server_id")
        assert cur.fetchone()[0] == primary
        cur.execute("INSERT INTO route_t (sid) VALUES (@@server_id)")
        cur.execute("SELECT COUNT(*) FROM route_t WHERE id = LAST_INSERT_ID()")
        assert cur.fetchone() == (1,)  # reads its own uncommitted write: same backend
        cur.execute("COMMIT")
        cur.execute("START TRANSACTION")
        assert served_by(conn) == primary
        cur.execute("ROLLBACK")
    assert served_by(conn) in replicas
    # autocommit=0: every statement is part of a transaction
    with conn.cursor() as cur:
        cur.execute("SET autocommit = 0")
    assert served_by(conn) == primary
    with conn.cursor() as cur:
        cur.execute("COMMIT")
    assert served_by(conn) == primary  # still autocommit=0
    with conn.cursor() as cur:
        cur.execute("SET autocommit = 1")
    assert served_by(conn) in replicas
    # an implicit commit (DDL) ends the transaction the server reports
    with conn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("CREATE TABLE IF NOT EXISTS route_ddl (id INT)")
    assert served_by(conn) in replicas
    conn.close()


def test_session_settings_follow_the_session_to_replicas(split, cluster):
    primary, replicas = ids(cluster)
    conn = split.connect(autocommit=True)
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '+05:30'")
        cur.execute("SET SESSION sql_mode = 'ANSI_QUOTES'")
        cur.execute("SELECT @@server_id, @@time_zone, @@sql_mode")
        sid, tz, mode = cur.fetchone()
    assert sid in replicas
    assert (tz, mode) == ("+05:30", "ANSI_QUOTES")
    with conn.cursor() as cur:
        cur.execute("USE mysql")
        cur.execute("SELECT @@server_id, DATABASE()")
        sid, db = cur.fetchone()
    assert sid in replicas and db == "mysql"
    conn.close()


def test_temporary_tables_are_read_where_they_were_created(split, cluster):
    primary, _ = ids(cluster)
    conn = split.connect(autocommit=True)
    with conn.cursor() as cur:
        cur.execute("CREATE TEMPORARY TABLE tmp_route (id INT)")
        cur.execute("INSERT INTO tmp_route VALUES (1), (2)")
        cur.execute("SELECT COUNT(*), @@server_id FROM tmp_route")
        assert cur.fetchone() == (2, primary)
    conn.close()


def test_error_msg_ok_msg_and_replace_pattern(proxy_factory, rules_dir, cluster):
    primary, replicas = ids(cluster)
    rules = rules_dir("""
[[mysql_query_rules]]
rule_id = 10
active = 1
match_digest = "^DELETE FROM audit_log"
error_msg = "deleting the audit log is not allowed"
apply = 1

[[mysql_query_rules]]
rule_id = 11
active = 1
match_pattern = "^SET SESSION harmless"
OK_msg = "ignored by myrouter"
apply = 1

[[mysql_query_rules]]
rule_id = 12
active = 1
match_pattern = "^SELECT 'old-name'"
replace_pattern = "SELECT 'new-name'"
""")
    proxy = proxy_factory(rules_dir=rules)
    conn = proxy.connect(autocommit=True)
    with conn.cursor() as cur:
        with pytest.raises(pymysql.err.OperationalError) as ei:
            cur.execute("DELETE FROM audit_log WHERE id = 5")
        assert ei.value.args == (1148, "deleting the audit log is not allowed")
        cur.execute("SET SESSION harmless = 1")  # never reaches a backend (it would fail there)
        cur.execute("SELECT 'old-name', @@server_id")
        name, sid = cur.fetchone()
    assert name == "new-name" and sid in replicas  # rewritten, then still routed as a read
    conn.close()
    hits = proxy.call(proxy.proxy.rules.hits)
    assert hits[10] == 1 and hits[11] == 1 and hits[12] == 1


def test_flag_chains_user_schema_digest_filters(proxy_factory, rules_dir, cluster):
    primary, replicas = ids(cluster)
    rules = rules_dir("""
[[mysql_query_rules]]
rule_id = 1
active = 1
username = "app"
match_digest = "^SELECT @@server_id, \\\\?$"
flagOUT = 7

[[mysql_query_rules]]
rule_id = 2
active = 1
flagIN = 7
schemaname = "test"
destination_hostgroup = 0
apply = 1

[[mysql_query_rules]]
rule_id = 3
active = 1
username = "someone_else"
match_pattern = "."
error_msg = "never for app"
apply = 1

[[mysql_query_rules]]
rule_id = 4
active = 1
match_pattern = "^SELECT 'next'"
next_query_flagIN = 9

[[mysql_query_rules]]
rule_id = 5
active = 1
flagIN = 9
destination_hostgroup = 0
apply = 1

[[mysql_query_rules]]
rule_id = 6
active = 1
match_pattern = "IS_NOT_THIS"
negate_match_pattern = 1
match_tables = ["payments"]
destination_hostgroup = 0
apply = 1
""")
    with cluster.primary.connect("app", "app", database="test") as c, c.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS payments (id INT)")
    cluster.wait_replication()
    proxy = proxy_factory(rules_dir=rules)
    conn = proxy.connect(autocommit=True)
    assert served_by(conn, "SELECT @@server_id, 42") == primary  # flagOUT 7 -> rule 2 (schema test)
    assert served_by(conn) in replicas  # digest differs: plain split
    served_by(conn, "SELECT 'next'")
    assert served_by(conn) == primary  # next_query_flagIN=9 applied to this statement only
    assert served_by(conn) in replicas
    assert served_by(conn, "SELECT @@server_id FROM payments UNION SELECT @@server_id") == primary
    with conn.cursor() as cur:
        cur.execute("USE mysql")
    # rule 2's schemaname no longer matches; the walk ends on flag 7, where the split rules
    # (flagIN 0) do not apply: ProxySQL's semantics send it to the default hostgroup
    assert served_by(conn, "SELECT @@server_id, 42") == primary
    assert proxy.call(proxy.proxy.rules.hits)[2] == 1
    conn.close()


def test_query_cache_serves_without_the_backend_and_expires(proxy_factory, rules_dir, cluster):
    setup_table(cluster, "cache_t")
    rules = rules_dir("""
[[mysql_query_rules]]
rule_id = 20
active = 1
match_digest = "FROM cache_t"
cache_ttl = 1500
""")
    proxy = proxy_factory(rules_dir=rules)
    conn = proxy.connect(autocommit=True)
    sql = "SELECT COUNT(*) FROM cache_t"
    first = served_by(conn, sql)
    with cluster.primary.connect("app", "app", database="test") as c, c.cursor() as cur:
        cur.execute("INSERT INTO cache_t (sid) VALUES (1)")
    cluster.wait_replication()
    queries_before = sum(s.queries for s in proxy.proxy.hostgroups.servers())
    assert served_by(conn, sql) == first  # from the cache: the new row is not seen
    assert sum(s.queries for s in proxy.proxy.hostgroups.servers()) == queries_before
    assert proxy.proxy.query_cache.hits >= 1
    time.sleep(1.7)
    assert served_by(conn, sql) == first + 1  # expired: the backend answers again
    conn.close()


def test_mirror_sends_a_copy_and_hides_its_result(proxy_factory, rules_dir, cluster):
    with cluster.primary.connect("app", "app", database="test") as c, c.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS mirror_t (note VARCHAR(20))")
        cur.execute("DELETE FROM mirror_t")
    servers = [{"hostgroup_id": 0, "hostname": "127.0.0.1", "port": cluster.primary.port},
               {"hostgroup_id": 1, "hostname": "127.0.0.1", "port": cluster.replicas[0].port},
               {"hostgroup_id": 2, "hostname": "127.0.0.1", "port": cluster.primary.port, "comment": "mirror"}]
    rules = rules_dir("""
[[mysql_query_rules]]
rule_id = 30
active = 1
match_digest = "^INSERT INTO mirror_t"
destination_hostgroup = 0
mirror_hostgroup = 2
apply = 1
""")
    proxy = proxy_factory(rules_dir=rules, servers=servers)
    conn = proxy.connect(autocommit=True)
    with conn.cursor() as cur:
        assert cur.execute("INSERT INTO mirror_t VALUES ('m')") == 1  # the client sees one OK
    conn.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        n = cluster.primary.query("SELECT COUNT(*) AS n FROM test.mirror_t")[0]["n"]
        if n == 2:
            break
        time.sleep(0.05)
    assert n == 2  # the mirror hostgroup ran its copy too
    assert proxy.stats().tasks == 0 or proxy.wait_idle().tasks == 0


def test_rule_timeout_kills_the_statement(proxy_factory, rules_dir):
    rules = rules_dir("""
[[mysql_query_rules]]
rule_id = 40
active = 1
match_digest = "SLEEP"
timeout = 200
destination_hostgroup = 0
apply = 1
""")
    proxy = proxy_factory(rules_dir=rules)
    conn = proxy.connect(autocommit=True)
    start = time.monotonic()
    with pytest.raises(pymysql.err.OperationalError) as ei:
        served_by(conn, "SELECT SLEEP(5)")
    assert ei.value.args[0] == 3024
    assert time.monotonic() - start < 1.0
    assert served_by(conn, "SELECT 'still usable'") == "still usable"
    conn.close()
    assert proxy.wait_idle().backend_connections_in_use == 0


def test_delay_and_fast_forward(proxy_factory, rules_dir, cluster):
    primary, _ = ids(cluster)
    rules = rules_dir("""
[[mysql_query_rules]]
rule_id = 50
active = 1
match_pattern = "^SELECT 'slow'"
delay = 300
""")
    users = [{"username": "app", "password": "app", "default_hostgroup": 0},
             {"username": "monitor", "password": "monitor", "default_hostgroup": 0, "fast_forward": 1}]
    proxy = proxy_factory(rules_dir=rules, users=users)
    conn = proxy.connect(autocommit=True)
    start = time.monotonic()
    served_by(conn, "SELECT 'slow'")
    assert time.monotonic() - start >= 0.3
    conn.close()
    ff = proxy.connect(user="monitor", password="monitor", database=None, autocommit=True)
    assert served_by(ff) == primary  # fast_forward: no rules, the default hostgroup
    ff.close()


def test_log_rule_writes_json_lines(proxy_factory, rules_dir, tmp_path):
    logfile = tmp_path / "queries.jsonl"
    rules = rules_dir("""
[[mysql_query_rules]]
rule_id = 60
active = 1
match_pattern = "^SELECT 'logged'"
log = 1
""")
    proxy = proxy_factory(rules_dir=rules, variables={"eventslog_filename": str(logfile)})
    conn = proxy.connect(autocommit=True)
    served_by(conn, "SELECT 'logged', 1")
    served_by(conn, "SELECT 'not logged'")
    conn.close()
    import json

    events = [json.loads(line) for line in logfile.read_text().splitlines()]
    assert len(events) == 1
    e = events[0]
    assert e["query"] == "SELECT 'logged', 1" and e["digest_text"] == "SELECT ?, ?"
    assert e["username"] == "app" and e["rows_sent"] == 1 and e["hostgroup_id"] == 1
    assert e["digest"].startswith("0x") and e["duration_us"] >= 0


def test_user_max_connections(proxy_factory):
    proxy = proxy_factory(users=[{"username": "app", "password": "app", "max_connections": 2}])
    a, b = proxy.connect(), proxy.connect()
    with pytest.raises(pymysql.err.OperationalError) as ei:
        proxy.connect()
    assert ei.value.args[0] == 1226
    a.close()
    deadline = time.monotonic() + 5
    while True:  # the slot frees once the proxy has seen the close
        try:
            c = proxy.connect()
            break
        except pymysql.err.OperationalError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    c.close()
    b.close()
