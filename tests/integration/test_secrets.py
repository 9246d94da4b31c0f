"""Secrets: mysql_users passwords hashed in the runtime (admin-hash_passwords), password literals
masked in the query log (tests/stats for the audit and process logs); logins with a database that does not exist refused."""

from __future__ import annotations

import json

import mysql.connector
import pymysql
import pytest

from conftest import admin_sql
from myrouter.protocol.auth import native_hash_text
from rawclient import RawClient, error_of

SHA2 = {"default_authentication_plugin": "caching_sha2_password"}


@pytest.fixture
def khash(cluster):
    cluster.primary.query("CREATE USER IF NOT EXISTS 'khash'@'%' IDENTIFIED BY 'khashpw'")
    cluster.primary.query("GRANT ALL PRIVILEGES ON test.* TO 'khash'@'%'")
    cluster.wait_replication()


def one(conn, sql: str):
    cur = conn.cursor()
    cur.execute(sql)
    row = cur.fetchone()
    cur.close()
    return row


def users(rp, table: str) -> dict[str, str]:
    return dict(admin_sql(rp, f"SELECT username, password FROM {table} ORDER BY username"))


@pytest.mark.parametrize("variables", [{}, SHA2], ids=["native", "caching_sha2"])
def test_runtime_holds_hashed_passwords_and_logins_still_work(proxy_factory, cluster, khash, variables):
    rp = proxy_factory(variables=variables)
    # at startup: the runtime holds the hash, memory and disk what the file says
    assert users(rp, "runtime_mysql_users") == {"app": native_hash_text(b"app")}
    assert users(rp, "mysql_users") == {"app": "app"}
    assert users(rp, "disk.mysql_users") == {"app": "app"}
    # a user added in clear text is hashed by LOAD MYSQL USERS TO RUNTIME
    admin_sql(rp, "INSERT INTO mysql_users (username, password, default_hostgroup, default_schema) "
                  "VALUES ('khash', 'khashpw', 0, 'test')", "LOAD MYSQL USERS TO RUNTIME")
    assert users(rp, "runtime_mysql_users")["khash"] == native_hash_text(b"khashpw")
    assert users(rp, "mysql_users")["khash"] == "khashpw"
    # logins: PyMySQL (native, or caching_sha2 full authentication over RSA), then mysql-connector
    # (caching_sha2 fast authentication from the cache); each runs a statement on the backend
    for user, password in (("app", "app"), ("khash", "khashpw")):
        conn = rp.connect(user=user, password=password)
        assert one(conn, "SELECT CURRENT_USER()") == (f"{user}@%",)
        conn.close()
        conn = mysql.connector.connect(host="127.0.0.1", port=rp.port, user=user, password=password, use_pure=True,
                                       database="test")
        assert one(conn, "SELECT CURRENT_USER()") == (f"{user}@%",)
        conn.close()
        with pytest.raises(pymysql.err.OperationalError) as ei:
            rp.connect(user=user, password="wrong")
        assert ei.value.args[0] == 1045
    # SAVE MYSQL USERS FROM RUNTIME brings the hashes back to memory
    admin_sql(rp, "SAVE MYSQL USERS FROM RUNTIME")
    assert users(rp, "mysql_users") == {"app": native_hash_text(b"app"), "khash": native_hash_text(b"khashpw")}


def test_hash_passwords_off_keeps_clear_text(proxy_factory):
    rp = proxy_factory()
    admin_sql(rp, "SET admin-hash_passwords = 'false'", "LOAD ADMIN VARIABLES TO RUNTIME",
              "LOAD MYSQL USERS TO RUNTIME")
    assert users(rp, "runtime_mysql_users") == {"app": "app"}
    assert admin_sql(rp, "SELECT variable_value FROM runtime_global_variables "
                         "WHERE variable_name = 'admin-hash_passwords'") == [("false",)]
    conn = rp.connect()
    assert one(conn, "SELECT 1") == (1,)
    conn.close()


def test_query_log_masks_password_literals(proxy_factory, cluster, tmp_path):
    qlog = tmp_path / "queries.log"
    rp = proxy_factory(variables={"eventslog_filename": str(qlog), "eventslog_default_log": True})
    conn = rp.connect()
    statements = [
        "CREATE USER IF NOT EXISTS 'kmask'@'%' IDENTIFIED BY 'topsecret1'",
        "ALTER USER 'kmask'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('topsecret2')",
        "SELECT PASSWORD('topsecret3') AS h",
    ]
    for sql in statements:
        one(conn, sql) if sql.startswith("SELECT") else conn.cursor().execute(sql)
    conn.cursor().execute("DROP USER 'kmask'@'%'")
    conn.close()
    rp.stop()
    text = qlog.read_text()
    assert "topsecret" not in text
    queries = [json.loads(line)["query"] for line in text.splitlines()]
    assert "CREATE USER IF NOT EXISTS 'kmask'@'%' IDENTIFIED BY '***'" in queries
    assert "ALTER USER 'kmask'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('***')" in queries
    assert "SELECT PASSWORD('***') AS h" in queries


@pytest.mark.parametrize("client", ["pymysql", "mysql-connector"])
def test_login_to_a_missing_database_is_refused_with_1049(proxy_factory, client):
    rp = proxy_factory()

    def connect(database):
        if client == "pymysql":
            return rp.connect(database=database)
        return mysql.connector.connect(host="127.0.0.1", port=rp.port, user="app", password="app", use_pure=True,
                                       database=database)

    with pytest.raises((pymysql.MySQLError, mysql.connector.Error)) as ei:
        connect("no_such_db_kill")
    code, message = ei.value.args[:2] if client == "pymysql" else (ei.value.errno, ei.value.msg)
    # refused at login, as MariaDB does (not by the driver's first statement after an accepted login)
    assert (code, message) == (1049, "Unknown database 'no_such_db_kill'")
    conn = connect("test")
    assert one(conn, "SELECT DATABASE()") == ("test",)
    conn.close()
    # the reply to the login itself is the ERR (the drivers above would also fail on their first statement)
    raw = RawClient(rp.port)
    assert error_of(raw.login(database="no_such_db_kill")) == (1049, "42000")
    assert raw.is_closed()
    raw = RawClient(rp.port)
    assert raw.login(database="test")[:1] == b"\x00"
    raw.close()
    st = rp.wait_idle()
    assert st.backend_connections_in_use == 0


def test_change_user_to_a_missing_database_is_refused_with_1049(proxy_factory):
    rp = proxy_factory()
    conn = mysql.connector.connect(host="127.0.0.1", port=rp.port, user="app", password="app", use_pure=True,
                                   database="test")
    conn.cmd_change_user(username="app", password="app", database="mysql")
    assert one(conn, "SELECT DATABASE()") == ("mysql",)
    with pytest.raises(mysql.connector.Error) as ei:
        conn.cmd_change_user(username="app", password="app", database="no_such_db_kill")
    assert ei.value.errno == 1049
    conn.close()


def test_login_database_check_gives_way_to_a_full_pool(proxy_factory, cluster):
    """The check waits connect_timeout_client at most for a connection; then the login goes on unchecked
    (the statements say what is wrong, if anything) and nothing half-used goes back to the pool."""
    servers = [{"hostgroup_id": 0, "hostname": "127.0.0.1", "port": cluster.primary.port, "max_connections": 1}]
    rp = proxy_factory(servers=servers, variables={"connect_timeout_client": 1000,
                                                   "connect_timeout_server_max": 30000})
    holder = rp.connect()
    holder.begin()
    assert one(holder, "SELECT 1") == (1,)  # the transaction holds the only connection
    # without the bound the login would wait connect_timeout_server_max (30 s) for the connection
    conn = rp.connect(database="test", read_timeout=10)
    holder.commit()
    holder.close()
    assert one(conn, "SELECT DATABASE()") == ("test",)
    conn.close()
    st = rp.wait_idle()
    assert st.backend_connections_in_use == 0 and st.backend_connections_connected == st.backend_connections_idle
