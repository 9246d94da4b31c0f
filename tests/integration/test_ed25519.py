"""MariaDB's ed25519 authentication (auth_ed25519 / client_ed25519) on both sides of the proxy,
with the real ``mariadb`` CLI (libmariadb's client_ed25519 plugin) and PyMySQL (PyNaCl).

The servers get the plugin with ``INSTALL SONAME 'auth_ed25519'`` (mariadb-server ships it; on
every server, as CREATE USER ... VIA ed25519 replicates) and a user ``IDENTIFIED VIA ed25519``."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pymysql
import pytest
from conftest import admin_sql, wait_for

from myrouter.protocol.auth import ED25519_KEY_PREFIX, ed25519_key_text, ed25519_public_key
from myrouter_testbed.mariadb import Cluster

ED_USER, ED_PASSWORD = "edapp", "ed-Secret 1"


@pytest.fixture(scope="module")
def ed_user(cluster: Cluster) -> Iterator[str]:
    """``edapp`` on the servers, identified via ed25519; its stored key (MariaDB's computation)."""
    for server in cluster.servers:
        if not server.query("SELECT 1 FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'ed25519'"):
            server.query("INSTALL SONAME 'auth_ed25519'")
    cluster.primary.query(f"CREATE USER '{ED_USER}'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('{ED_PASSWORD}')")
    cluster.primary.query(f"GRANT ALL ON test.* TO '{ED_USER}'@'%'")
    cluster.wait_replication()
    try:
        rows = cluster.primary.query(f"SELECT JSON_VALUE(Priv, '$.authentication_string') AS k "
                                     f"FROM mysql.global_priv WHERE User = '{ED_USER}'")
        yield rows[0]["k"]
    finally:
        cluster.primary.query(f"DROP USER '{ED_USER}'@'%'")
        cluster.wait_replication()


def cli(proxy, user: str, password: str, *args: str, sql: str = "SELECT CURRENT_USER()"):
    return subprocess.run(["mariadb", "-h127.0.0.1", f"-P{proxy.port}", f"-u{user}", f"-p{password}", "--batch",
                           "--skip-column-names", *args, "-e", sql], capture_output=True, text=True, timeout=30)


def pymysql_one(proxy, user: str, password: str, sql: str):
    conn = proxy.connect(user=user, password=password)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()
    finally:
        conn.close()


def test_the_proxy_derives_the_key_mariadb_stores(ed_user: str) -> None:
    assert ed_user == ed25519_key_text(ed25519_public_key(ED_PASSWORD.encode()))


def test_plain_text_user_logs_in_to_an_ed25519_backend(proxy_factory, ed_user: str) -> None:
    proxy = proxy_factory(users=[{"username": ED_USER, "password": ED_PASSWORD, "default_schema": "test"}])
    # hashed in the runtime (admin-hash_passwords, the default), the password cannot answer the server
    r = cli(proxy, ED_USER, ED_PASSWORD)
    assert "ERROR 1251" in r.stderr and "admin-hash_passwords" in r.stderr, r.stderr
    admin_sql(proxy, "SET admin-hash_passwords = 'false'", "LOAD ADMIN VARIABLES TO RUNTIME",
              "LOAD MYSQL USERS TO RUNTIME")
    # the client logs in with mysql_native_password; the proxy answers the server's switch to client_ed25519
    r = cli(proxy, ED_USER, ED_PASSWORD)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{ED_USER}@%"
    # a client that asks for client_ed25519 itself gets it (libmariadb's plugin signs the proxy's nonce)
    r = cli(proxy, ED_USER, ED_PASSWORD, "--default-auth=client_ed25519")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{ED_USER}@%"
    assert pymysql_one(proxy, ED_USER, ED_PASSWORD, "SELECT CURRENT_USER()") == (f"{ED_USER}@%",)
    for extra in ((), ("--default-auth=client_ed25519",)):
        r = cli(proxy, ED_USER, "wrong", *extra)
        assert r.returncode != 0 and "ERROR 1045" in r.stderr, r.stderr
    assert proxy.wait_idle().backend_connections_in_use == 0


def test_ed25519_key_user_logs_in_with_client_ed25519_only(proxy_factory, ed_user: str) -> None:
    users = [{"username": ED_USER, "password": ED25519_KEY_PREFIX + ed_user, "default_schema": "test"},
             {"username": "app", "password": "app", "default_schema": "test"}]
    proxy = proxy_factory(users=users, variables={"connect_retries_on_failure": 0})
    # the mariadb CLI starts with mysql_native_password and is switched to client_ed25519: logged in
    # (1251, not 1045), but the proxy has no password to log in to a server as this user, and says so
    r = cli(proxy, ED_USER, ED_PASSWORD)
    assert "ERROR 1251" in r.stderr and "$ED$" in r.stderr, r.stderr
    # PyMySQL (with PyNaCl) is switched too and logged in (its SET NAMES and autocommit are answered
    # by the proxy once it knows the servers' collations); its first statement gets 1251
    assert pymysql_one(proxy, "app", "app", "SELECT 1") == (1,)
    conn = proxy.connect(user=ED_USER, password=ED_PASSWORD)
    with pytest.raises(pymysql.err.OperationalError) as info, conn.cursor() as cur:
        cur.execute("SELECT CURRENT_USER()")
    assert info.value.args[0] == 1251
    conn.close()
    # a wrong password is refused at login, by both
    r = cli(proxy, ED_USER, "wrong")
    assert r.returncode != 0 and "ERROR 1045" in r.stderr, r.stderr
    with pytest.raises(pymysql.err.OperationalError) as info:
        proxy.connect(user=ED_USER, password="wrong")
    assert info.value.args[0] == 1045
    # the configuration error is not the server's fault: it stays ONLINE for everyone else
    for _ in range(8):
        with pytest.raises(pymysql.err.OperationalError):
            pymysql_one(proxy, ED_USER, ED_PASSWORD, "SELECT 1")
    assert pymysql_one(proxy, "app", "app", "SELECT 1") == (1,)
    assert proxy.wait_idle().backend_connections_in_use == 0


def test_the_monitor_logs_in_as_an_ed25519_user(proxy_factory, cluster: Cluster, ed_user: str) -> None:
    proxy = proxy_factory(variables={"monitor_username": ED_USER, "monitor_password": ED_PASSWORD,
                                     "monitor_connect_interval": 200, "monitor_ping_interval": 200})

    def connected() -> bool:
        rows = admin_sql(proxy, "SELECT connect_error FROM monitor.mysql_server_connect_log "
                                f"WHERE port = {cluster.primary.port}")
        return bool(rows) and all(e is None for (e,) in rows)

    wait_for("a monitor connect check as the ed25519 user", connected)
