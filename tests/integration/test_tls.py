"""TLS between clients and the proxy, with real clients: PyMySQL, the mariadb CLI,
mysql-connector-python and mysqlclient, in front of the session's MariaDB test bed."""

from __future__ import annotations

import json
import ssl
import subprocess
import time
from pathlib import Path

import mysql.connector
import MySQLdb
import pymysql
import pytest
from conftest import admin_sql, render_config
from rawclient import RawClient

from myrouter.net import tls
from myrouter.protocol.constants import Capability as C
from myrouter.protocol.packets import frame

REPO = Path(__file__).resolve().parents[2]
MYROUTER = [str(REPO / ".venv" / "bin" / "python"), "-m", "myrouter"]


@pytest.fixture
def datadir(tmp_path: Path) -> Path:
    return tmp_path / "datadir"


@pytest.fixture
def tls_proxy(proxy_factory, datadir: Path):
    """A proxy offering TLS, with a datadir (its CA file is there for clients to verify against)."""
    def make(variables: dict | None = None, **kw):
        return proxy_factory(datadir=datadir, variables={"have_ssl": True, **(variables or {})}, **kw)
    return make


def ca_file(datadir: Path) -> str:
    return str(datadir / tls.CA_FILE)


def login_tls_flags(audit: Path, count: int, timeout: float = 10.0) -> list[bool]:
    """The ``ssl`` field of the first ``count`` successful logins in the proxy's audit log."""
    deadline = time.monotonic() + timeout
    while True:
        text = audit.read_text() if audit.exists() else ""
        events = [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]  # whole lines only
        flags = [e["ssl"] for e in events if e["event"] == "MySQL_Client_Connect_OK"]
        if len(flags) >= count or time.monotonic() > deadline:
            return flags[:count]
        time.sleep(0.05)


def tls_pymysql(rp, datadir: Path, **kw) -> pymysql.Connection:
    return rp.connect(ssl_ca=ca_file(datadir), ssl_verify_cert=True, ssl_verify_identity=True, **kw)


def test_pymysql_verified_tls_carries_big_values_and_results(tls_proxy, datadir: Path) -> None:
    rp = tls_proxy(variables={"auditlog_filename": str(datadir.parent / "audit.log")})
    conn = tls_pymysql(rp, datadir, autocommit=True)
    try:
        assert conn._sock.version() in ("TLSv1.2", "TLSv1.3")  # the socket PyMySQL reads is TLS
        blob = bytes(range(256)) * (20 * 1024 * 1024 // 256)  # 20 MB: many TLS records each way
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS test.tls_blobs (id INT PRIMARY KEY, b LONGBLOB)")
            cur.execute("REPLACE INTO test.tls_blobs VALUES (1, %s)", (blob,))
            cur.execute("SELECT b FROM test.tls_blobs WHERE id = 1")
            assert cur.fetchone()[0] == blob
        with conn.cursor(pymysql.cursors.SSCursor) as cur:
            cur.execute("SELECT seq, REPEAT('r', 40) FROM seq_1_to_200000")
            assert sum(1 for _ in cur) == 200_000
    finally:
        conn.close()
    # the audit log says which logins were encrypted
    plain = rp.connect(ssl_disabled=True)  # PyMySQL >= 1.1.1 would use TLS once offered
    plain.close()
    assert login_tls_flags(datadir.parent / "audit.log", 2) == [True, False]
    assert rp.wait_idle().tasks == 0


def test_mariadb_cli_with_verified_tls(tls_proxy, datadir: Path) -> None:
    rp = tls_proxy()
    r = subprocess.run(["mariadb", "-h127.0.0.1", f"-P{rp.port}", "-uapp", "-papp", "--ssl", f"--ssl-ca={ca_file(datadir)}",
                        "--ssl-verify-server-cert", "test", "-e", "\\s", "-e", "SELECT 40 + 2"],
                       check=False, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "Cipher in use is" in r.stdout, r.stdout
    assert "42" in r.stdout
    # and with --skip-ssl the same CLI logs in unencrypted
    r = subprocess.run(["mariadb", "-h127.0.0.1", f"-P{rp.port}", "-uapp", "-papp", "--skip-ssl", "test", "-e", "\\s"],
                       check=False, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "Not in use" in r.stdout, r.stdout


def test_connector_python_uses_tls_when_offered_and_prepared_statements_work(tls_proxy, datadir: Path) -> None:
    rp = tls_proxy()
    conn = mysql.connector.connect(host="127.0.0.1", port=rp.port, user="app", password="app", database="test",
                                   use_pure=True, ssl_ca=ca_file(datadir), ssl_verify_cert=True)
    try:
        assert conn._ssl_active
        cur = conn.cursor(prepared=True)
        cur.execute("SELECT ?, CONCAT(?, 'b')", (7, "a"))
        assert cur.fetchall() == [(7, "ab")]
        cur.close()
    finally:
        conn.close()


def test_mysqlclient_with_tls(tls_proxy, datadir: Path) -> None:
    audit = datadir.parent / "audit.log"
    rp = tls_proxy(variables={"auditlog_filename": str(audit)})
    conn = MySQLdb.connect(host="127.0.0.1", port=rp.port, user="app", password="app", database="test",
                           ssl_mode="REQUIRED", ssl={"ca": ca_file(datadir)})
    try:
        cur = conn.cursor()
        cur.execute("SELECT 'over tls'")
        assert cur.fetchone() == ("over tls",)
    finally:
        conn.close()
    assert login_tls_flags(audit, 1) == [True]  # libmariadb has no cipher accessor here: the proxy says it


def test_have_ssl_off_by_default_and_switched_on_at_runtime(proxy_factory) -> None:
    rp = proxy_factory()
    client = RawClient(rp.port)
    assert not client.read_greeting().capabilities & C.SSL
    client.close()
    admin_sql(rp, "UPDATE global_variables SET variable_value = 'true' WHERE variable_name = 'mysql-have_ssl'",
              "LOAD MYSQL VARIABLES TO RUNTIME")
    client = RawClient(rp.port)
    assert client.read_greeting().capabilities & C.SSL
    client.close()
    conn = rp.connect(ssl={"check_hostname": False, "verify_mode": ssl.CERT_NONE})
    assert conn._sock.version().startswith("TLSv1.")
    conn.close()


def test_use_ssl_user_must_encrypt(tls_proxy, datadir: Path) -> None:
    users = [{"username": "app", "password": "app", "default_hostgroup": 0, "default_schema": "test", "use_ssl": 1},
             {"username": "monitor", "password": "monitor", "default_hostgroup": 0}]
    audit = datadir.parent / "audit.log"
    rp = tls_proxy(users=users, variables={"auditlog_filename": str(audit)})
    with pytest.raises(pymysql.err.OperationalError) as info:
        rp.connect(ssl_disabled=True)
    assert info.value.args[0] == 1045
    deadline = time.monotonic() + 10
    while "MySQL_Client_Connect_ERR" not in (audit.read_text() if audit.exists() else ""):
        assert time.monotonic() < deadline, "no Connect_ERR in the audit log"
        time.sleep(0.05)
    text = audit.read_text()
    refused = [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()
               if "MySQL_Client_Connect_ERR" in line]
    assert refused[0]["extra_info"] == "user requires TLS (use_ssl=1)"  # the password was right
    conn = tls_pymysql(rp, datadir)
    conn.close()
    # COM_CHANGE_USER to it on a plain connection is refused the same way; over TLS it is fine
    conn = mysql.connector.connect(host="127.0.0.1", port=rp.port, user="monitor", password="monitor", use_pure=True,
                                   ssl_disabled=True)
    with pytest.raises(mysql.connector.Error) as err:
        conn.cmd_change_user(username="app", password="app")
    assert err.value.errno == 1045
    conn = mysql.connector.connect(host="127.0.0.1", port=rp.port, user="monitor", password="monitor", use_pure=True,
                                   ssl_ca=ca_file(datadir))
    conn.cmd_change_user(username="app", password="app", database="test")
    cur = conn.cursor()
    cur.execute("SELECT CURRENT_USER()")
    assert cur.fetchall()[0][0].startswith("app@")
    conn.close()
    assert rp.wait_idle().tasks == 0


def test_caching_sha2_full_authentication_over_tls(tls_proxy, datadir: Path) -> None:
    rp = tls_proxy(variables={"default_authentication_plugin": "caching_sha2_password"})
    for _ in range(2):  # the first login takes the full path, the second the cached fast path
        conn = tls_pymysql(rp, datadir)
        with conn.cursor() as cur:
            cur.execute("SELECT CURRENT_USER()")
            assert cur.fetchone()[0].startswith("app@")
        conn.close()


def test_bad_tls_input_is_a_clean_close_and_others_are_served(tls_proxy) -> None:
    rp = tls_proxy(variables={"connect_timeout_client": 1000})
    # an SSLRequest followed by bytes that are not a ClientHello
    bad = RawClient(rp.port)
    bad.read_greeting()
    bad.send(frame((C.PROTOCOL_41 | C.SSL | C.SECURE_CONNECTION).to_bytes(4, "little") + bytes(28), 1)
             + b"GET / HTTP/1.1\r\n\r\n")
    assert bad.is_closed()
    bad.close()
    # an SSLRequest and then silence: the handshake timeout ends it
    silent = RawClient(rp.port)
    silent.read_greeting()
    silent.send(frame((C.PROTOCOL_41 | C.SSL | C.SECURE_CONNECTION).to_bytes(4, "little") + bytes(28), 1))
    started = time.monotonic()
    assert silent.is_closed(timeout=10)
    assert time.monotonic() - started < 5
    silent.close()
    # a TLS client that goes away in the middle of a result
    conn = rp.connect(ssl={"check_hostname": False, "verify_mode": ssl.CERT_NONE})
    with conn.cursor(pymysql.cursors.SSCursor) as cur:
        cur.execute("SELECT seq, REPEAT('x', 500) FROM seq_1_to_300000")
        cur.fetchmany(10)
        conn._sock.close()
    conn = rp.connect(ssl_disabled=True)
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    conn.close()
    st = rp.wait_idle()
    assert (st.tasks, st.backend_connections_in_use, st.client_connections_connected) == (0, 0, 0)
    assert st.client_connections_aborted >= 2


def test_reload_tls_takes_new_files_for_new_connections(tls_proxy, datadir: Path) -> None:
    rp = tls_proxy()
    old_ca = (datadir / tls.CA_FILE).read_bytes()
    for name in (tls.CA_FILE, tls.CERT_FILE, tls.KEY_FILE):
        (datadir / name).unlink()
    admin_sql(rp, "PROXYSQL RELOAD TLS")  # generates a new set
    assert (datadir / tls.CA_FILE).read_bytes() != old_ca
    tls_pymysql(rp, datadir).close()  # verified against the new CA
    old = datadir.parent / "old-ca.pem"
    old.write_bytes(old_ca)
    with pytest.raises(pymysql.err.OperationalError, match="CERTIFICATE_VERIFY_FAILED"):
        rp.connect(ssl_ca=str(old), ssl_verify_cert=True)
    # a broken key: the reload is refused and the running certificate stays
    (datadir / tls.KEY_FILE).write_text("not a key\n")
    with pytest.raises(pymysql.err.OperationalError) as info:
        admin_sql(rp, "PROXYSQL RELOAD TLS")
    assert "not a usable certificate and key pair" in info.value.args[1]
    tls_pymysql(rp, datadir).close()


def test_serve_refuses_to_start_with_broken_tls_files(cluster, tmp_path: Path) -> None:
    datadir = tmp_path / "datadir"
    tls.load_or_create(datadir)
    (datadir / tls.CERT_FILE).write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    cfg = tmp_path / "myrouter.toml"
    rules = tmp_path / "rules"
    rules.mkdir()
    cfg.write_text(render_config(cluster, port=0, rules_dir=rules, datadir=datadir, variables={"have_ssl": True}))
    r = subprocess.run([*MYROUTER, "serve", "--config", str(cfg)], check=False, capture_output=True, text=True, timeout=60,
                       cwd=REPO)
    assert r.returncode == 2, r.stderr
    assert "TLS:" in r.stderr and str(datadir) in r.stderr
