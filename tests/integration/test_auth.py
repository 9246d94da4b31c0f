"""Client authentication by the proxy, and the proxy's own login to backends."""

from __future__ import annotations

import subprocess

import mysql.connector
import pymysql
import pytest

from myrouter.protocol.auth import native_hash_text, native_token
from myrouter.protocol.messages import AuthSwitch, HandshakeResponse41
from myrouter.protocol.packets import frame
from conftest import admin_sql
from rawclient import CLIENT_CAPS, RawClient, error_of

SHA2 = {"default_authentication_plugin": "caching_sha2_password"}


def one(conn, sql: str):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()


def in_sha2_cache(proxy, user: str) -> bool:
    return proxy.call(lambda: user in proxy.proxy.sha2_cache)


def test_caching_sha2_full_auth_over_rsa_then_fast_auth(proxy_factory, cluster):
    proxy = proxy_factory(variables=SHA2)
    assert not in_sha2_cache(proxy, "app")
    # no cached entry: PyMySQL gets "perform full authentication", asks for the RSA key, sends the encrypted password
    conn = proxy.connect()
    assert one(conn, "SELECT @@port") == (cluster.primary.port,)
    conn.close()
    assert in_sha2_cache(proxy, "app")
    # cached: fast authentication (mysql-connector refuses full authentication without TLS, so this proves it)
    conn = mysql.connector.connect(host="127.0.0.1", port=proxy.port, user="app", password="app", use_pure=True,
                                   auth_plugin="caching_sha2_password")
    cur = conn.cursor()
    cur.execute("SELECT 1")
    assert cur.fetchall() == [(1,)]
    conn.close()
    for password in ("wrong", ""):  # a bad password fails on the fast path too
        with pytest.raises(pymysql.err.OperationalError) as ei:
            proxy.connect(password=password)
        assert ei.value.args[0] == 1045


def test_caching_sha2_wrong_password_on_full_auth(proxy_factory):
    proxy = proxy_factory(variables=SHA2)
    with pytest.raises(pymysql.err.OperationalError) as ei:
        proxy.connect(password="nope")
    assert ei.value.args[0] == 1045
    assert not in_sha2_cache(proxy, "app")


def test_mariadb_cli_with_caching_sha2_default(proxy_factory):
    proxy = proxy_factory(variables=SHA2)
    r = subprocess.run(["mariadb", "-h127.0.0.1", f"-P{proxy.port}", "-uapp", "-papp", "--batch",
                        "--skip-column-names", "-e", "SELECT 'cli-ok'"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "cli-ok"


def test_hashed_password_in_config(proxy_factory, cluster):
    users = [{"username": "app", "password": native_hash_text(b"app"), "default_hostgroup": 0}]
    proxy = proxy_factory(users=users)
    conn = proxy.connect()  # the proxy learns SHA1(pw) from the login and uses it for the backend
    assert one(conn, "SELECT @@port") == (cluster.primary.port,)
    conn.close()
    with pytest.raises(pymysql.err.OperationalError) as ei:
        proxy.connect(password="app2")
    assert ei.value.args[0] == 1045
    # with caching_sha2 and only a hash: full authentication over RSA checks the hash
    proxy2 = proxy_factory(users=users, variables=SHA2)
    conn = proxy2.connect()
    assert one(conn, "SELECT 2") == (2,)
    conn.close()


def test_auth_switch_from_an_unsupported_plugin(proxy):
    raw = RawClient(proxy.port)
    raw.read_greeting()
    resp = HandshakeResponse41(CLIENT_CAPS, 1 << 24, 45, "app", b"\x01" * 32, "test", "dialog")  # PAM: not served
    raw.send(frame(resp.encode(), 1))
    pkt = raw.read_packet()
    switch = AuthSwitch.parse(pkt.payload)
    assert switch.plugin == "mysql_native_password"
    raw.send(frame(native_token(b"app", switch.data), pkt.seq + 1))
    ok = raw.read_packet()
    assert ok.payload[:1] == b"\x00"
    assert raw.command(b"\x03SELECT 1")[:1] == b"\x01"
    raw.close()
    # and a wrong answer after the switch is denied
    raw = RawClient(proxy.port)
    raw.read_greeting()
    raw.send(frame(resp.encode(), 1))
    pkt = raw.read_packet()
    raw.send(frame(native_token(b"bad", AuthSwitch.parse(pkt.payload).data), pkt.seq + 1))
    assert error_of(raw.read_packet().payload) == (1045, "28000")
    raw.close()


def test_backend_login_with_caching_sha2(proxy_factory, cluster, no_rules):
    """A proxy in front of a proxy that speaks caching_sha2_password: the outer one logs in
    with full authentication over RSA first, then with fast authentication."""
    inner = proxy_factory(variables=SHA2)
    outer = proxy_factory(servers=[{"hostgroup_id": 0, "hostname": "127.0.0.1", "port": inner.port}],
                          rules_dir=no_rules)
    # the plain text is needed to log in with caching_sha2 for a native client: no hashing in the outer runtime
    admin_sql(outer, "SET admin-hash_passwords = 'false'", "LOAD ADMIN VARIABLES TO RUNTIME",
              "LOAD MYSQL USERS TO RUNTIME")
    for _ in range(2):
        conn = outer.connect()
        assert one(conn, "SELECT @@port") == (cluster.primary.port,)
        conn.close()
    assert in_sha2_cache(inner, "app")
    # a backend refusing the password: the client gets the backend's own error
    outer2 = proxy_factory(servers=[{"hostgroup_id": 0, "hostname": "127.0.0.1", "port": inner.port}],
                           rules_dir=no_rules,
                           users=[{"username": "app", "password": "app"},
                                  {"username": "ghost", "password": "ghost"}])
    raw = RawClient(outer2.port)
    assert raw.login(user="ghost", password="ghost")[:1] == b"\x00"  # the proxy itself accepts ghost
    code, state = error_of(raw.command(b"\x03SELECT 1"))  # the backend does not know it
    assert (code, state) == (1045, "28000")
    raw.close()
