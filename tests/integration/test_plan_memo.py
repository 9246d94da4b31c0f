"""A session remembers the classification and rule decision of each digest it ran (the plan
memo behind the plain statement path). These tests change what that memo depends on between
two statements of the same digest, in the same session, and check that the second statement
follows the change: runtime rules, the schema, an open transaction, the user. They also check
that the per-statement counters (rule hits, digest stats) still count every statement."""

from __future__ import annotations

import mysql.connector
import pymysql
import pytest
from conftest import admin_sql

SQL = "SELECT @@server_id"


def ids(cluster):
    primary = cluster.primary.query("SELECT @@server_id AS s")[0]["s"]
    replicas = {r.query("SELECT @@server_id AS s")[0]["s"] for r in cluster.replicas}
    return primary, replicas


def served_by(conn, sql: str = SQL):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


def load_rules(rp, *rows: str) -> None:
    admin_sql(rp, "DELETE FROM mysql_query_rules", *rows, "LOAD MYSQL QUERY RULES TO RUNTIME")


def test_rules_loaded_at_runtime_apply_to_the_next_statement_of_a_remembered_digest(proxy_factory, cluster):
    rp = proxy_factory()  # no rules: everything to hostgroup 0
    primary, replicas = ids(cluster)
    conn = rp.connect(autocommit=True)
    assert {served_by(conn) for _ in range(5)} == {primary}
    load_rules(rp, "INSERT INTO mysql_query_rules (rule_id,active,match_digest,destination_hostgroup,apply) "
                   "VALUES (1,1,'^SELECT @@server_id',1,1)")
    assert served_by(conn) in replicas
    load_rules(rp, "INSERT INTO mysql_query_rules (rule_id,active,match_digest,error_msg,apply) "
                   "VALUES (2,1,'^SELECT @@server_id','not here',1)")
    with pytest.raises(pymysql.MySQLError) as info:
        served_by(conn)
    assert info.value.args == (1148, "not here")
    load_rules(rp)
    assert served_by(conn) == primary
    conn.close()


def test_rule_hits_and_digest_stats_count_every_statement(proxy_factory, cluster):
    rp = proxy_factory()
    load_rules(rp, "INSERT INTO mysql_query_rules (rule_id,active,match_digest,destination_hostgroup,apply) "
                   "VALUES (5,1,'^SELECT @@server_id',1,1)")
    conn = rp.connect(autocommit=True)
    for _ in range(25):
        served_by(conn)
    conn.close()
    hits = admin_sql(rp, "SELECT hits FROM stats_mysql_query_rules WHERE rule_id = 5")
    assert int(hits[0][0]) == 25
    rows = admin_sql(rp, "SELECT hostgroup, count_star FROM stats_mysql_query_digest "
                         "WHERE digest_text = 'SELECT @@server_id'")
    assert [(int(h), int(n)) for h, n in rows] == [(1, 25)]


def test_the_schema_is_part_of_what_a_session_remembers(proxy_factory, cluster):
    cluster.primary.query("CREATE DATABASE IF NOT EXISTS memo_other")
    cluster.primary.query("GRANT ALL ON memo_other.* TO 'app'@'%'")
    cluster.wait_replication(timeout=60)
    rp = proxy_factory()
    primary, replicas = ids(cluster)
    load_rules(rp, "INSERT INTO mysql_query_rules (rule_id,active,schemaname,match_digest,destination_hostgroup,"
                   "apply) VALUES (1,1,'memo_other','^SELECT @@server_id',1,1)")
    conn = rp.connect(autocommit=True, database="test")
    assert {served_by(conn) for _ in range(3)} == {primary}
    with conn.cursor() as cur:
        cur.execute("USE memo_other")
    assert {served_by(conn) for _ in range(3)} <= replicas
    conn.select_db("test")  # COM_INIT_DB
    assert served_by(conn) == primary
    conn.close()


def test_an_open_transaction_keeps_a_remembered_read_on_its_connection(proxy_factory, cluster):
    rp = proxy_factory()
    primary, replicas = ids(cluster)
    load_rules(rp, "INSERT INTO mysql_query_rules (rule_id,active,match_digest,destination_hostgroup,apply) "
                   "VALUES (1,1,'^SELECT @@server_id',1,1)")
    conn = rp.connect(autocommit=True)
    assert served_by(conn) in replicas
    conn.begin()
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM DUAL FOR UPDATE")  # opens the transaction on the writer
    assert {served_by(conn) for _ in range(3)} == {primary}
    conn.commit()
    assert served_by(conn) in replicas
    with conn.cursor() as cur:
        cur.execute("SET autocommit = 0")
    assert served_by(conn) == primary  # autocommit=0: every statement belongs to a transaction
    conn.rollback()
    conn.close()


def test_a_changed_user_does_not_reuse_the_previous_users_decisions(proxy_factory, cluster):
    cluster.primary.query("CREATE USER IF NOT EXISTS 'memo2'@'%' IDENTIFIED BY 'memo2'")
    cluster.primary.query("GRANT ALL ON test.* TO 'memo2'@'%'")
    cluster.wait_replication(timeout=60)
    rp = proxy_factory(users=[{"username": "app", "password": "app", "default_hostgroup": 0},
                              {"username": "memo2", "password": "memo2", "default_hostgroup": 0}])
    primary, _ = ids(cluster)
    load_rules(rp, "INSERT INTO mysql_query_rules (rule_id,active,username,match_digest,error_msg,apply) "
                   "VALUES (1,1,'app','^SELECT @@server_id','no app here',1)")
    conn = mysql.connector.connect(host="127.0.0.1", port=rp.port, user="memo2", password="memo2",
                                   database="test", use_pure=True)
    cur = conn.cursor()
    for _ in range(3):
        cur.execute(SQL)
        assert cur.fetchall() == [(primary,)]
    conn.cmd_change_user(username="app", password="app", database="test")
    cur = conn.cursor()
    with pytest.raises(mysql.connector.Error) as info:
        cur.execute(SQL)
    assert info.value.errno == 1148 and "no app here" in info.value.msg
    conn.close()
