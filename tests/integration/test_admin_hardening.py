"""Hardening of the admin interface against the real test bed, with real clients (PyMySQL):
SQL outside the allow-list refused, admin statements off the event loop (clients keep being served
while one runs), the query digest cap, failed-login blocking per address, TLS on the admin port."""

from __future__ import annotations

import ssl
import subprocess
import threading
import time

import pymysql
import pytest
from conftest import RunningProxy, admin_connect, admin_sql, wait_for
from test_admin import sample, scrape

SLOW_CTE = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


def admin_error(rp: RunningProxy, sql: str, **kw) -> pymysql.MySQLError:
    conn = admin_connect(rp, **kw)
    try:
        with conn.cursor() as cur, pytest.raises(pymysql.MySQLError) as info:
            cur.execute(sql)
        return info.value
    finally:
        conn.close()


def point_select(conn) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT 1 + %s", (1,))
        return cur.fetchone()[0]


# -- 1. SQL outside the allow-list -----------------------------------------------------------


def test_fts3_tokenizer_sequence_gets_an_error_and_clients_keep_working(proxy):
    client = proxy.connect(autocommit=True)
    assert point_select(client) == 2
    admin = admin_connect(proxy)
    with admin.cursor() as cur:
        # the sequence: it took the whole proxy down (general protection fault in libsqlite3)
        with pytest.raises(pymysql.MySQLError) as info:
            cur.execute("SELECT fts3_tokenizer('t', x'4141414141414141')")
        assert info.value.args[0] == 1227 and "fts3_tokenizer" in info.value.args[1]
        with pytest.raises(pymysql.MySQLError) as info:
            cur.execute("CREATE VIRTUAL TABLE v USING fts3(a, tokenize=t)")
        assert info.value.args[0] == 1227
        # the admin session itself goes on
        cur.execute("SELECT COUNT(*) FROM mysql_servers")
        assert cur.fetchone()[0] == 3
    admin.close()
    # the client connection from before, and a new one, are served
    assert point_select(client) == 2
    client.close()
    again = proxy.connect()
    assert point_select(again) == 2
    again.close()


@pytest.mark.parametrize("sql", ["SELECT hex(fts3_tokenizer('simple'))", "SELECT load_extension('libc.so.6')",
                                 "ATTACH DATABASE '/tmp/myrouter-admin.db' AS x", "PRAGMA main.journal_mode"])
def test_sqlite_beyond_the_admin_tables_is_refused(proxy, sql):
    err = admin_error(proxy, sql)
    assert err.args[0] == 1227, err


# -- 2. admin statements off the event loop --------------------------------------------------


def test_clients_are_served_while_a_slow_admin_statement_runs_and_the_limit_still_ends_it(proxy):
    client = proxy.connect(autocommit=True)
    point_select(client)  # logged in and warm
    admin = admin_connect(proxy)
    events: list[tuple[str, float]] = []
    admin_error_box: list[BaseException] = []
    sent = threading.Event()

    def run_admin() -> None:
        try:
            with admin.cursor() as cur:
                events.append(("admin sent", time.monotonic()))
                sent.set()
                cur.execute(SLOW_CTE)  # counts forever: only the 2 s statement limit ends it
        except pymysql.MySQLError as exc:
            admin_error_box.append(exc)
        finally:
            events.append(("admin done", time.monotonic()))

    t = threading.Thread(target=run_admin)
    t.start()
    sent.wait(10)
    while t.is_alive():
        assert point_select(client) == 2
        events.append(("client", time.monotonic()))
    t.join()
    admin.close()
    client.close()
    # the statement limit interrupted it, with the MySQL error for that
    assert admin_error_box and admin_error_box[0].args[0] == 1317, admin_error_box
    # client statements completed while the admin statement was running, not all after it
    order = [name for name, _ in sorted(events, key=lambda e: e[1])]
    between = order[order.index("admin sent"):order.index("admin done")]
    assert between.count("client") >= 5, order[:20]


def test_reading_a_large_digest_table_does_not_stop_clients(proxy_factory):
    rp = proxy_factory()
    # fill the digest table as 50,000 different statements would (directly: running them would take minutes)
    def fill() -> None:
        for i in range(50_000):
            rp.proxy.digest_stats.record(0, "test", "app", "127.0.0.1", i, f"SELECT c{i} FROM t", 100, 0, 1)

    rp.call(fill)
    client = rp.connect(autocommit=True)
    point_select(client)
    events: list[tuple[str, float]] = []
    rows: list = []
    sent = threading.Event()

    def read_digests() -> None:
        conn = admin_connect(rp)
        try:
            with conn.cursor() as cur:
                events.append(("admin sent", time.monotonic()))
                sent.set()
                # the proxy's work (take, format and store 50,000 rows), not the client's: a small result
                cur.execute("SELECT COUNT(*), SUM(count_star) FROM stats_mysql_query_digest")
                rows.append(cur.fetchone()[0])
        finally:
            events.append(("admin done", time.monotonic()))
            conn.close()

    t = threading.Thread(target=read_digests)
    t.start()
    sent.wait(10)
    while t.is_alive():
        point_select(client)
        events.append(("client", time.monotonic()))
    t.join()
    client.close()
    assert rows and rows[0] >= 50_000
    order = [name for name, _ in sorted(events, key=lambda e: e[1])]
    between = order[order.index("admin sent"):order.index("admin done")]
    assert between.count("client") >= 3, order[:20]


# -- 2b. the digest cap ----------------------------------------------------------------------


def test_digest_cap_evicts_and_counts(proxy_factory):
    rp = proxy_factory(variables={"query_digests_max_digests": 3})
    conn = rp.connect(autocommit=True)
    with conn.cursor() as cur:
        for i in range(6):  # six different digests (the alias is part of the text)
            cur.execute(f"SELECT 1 AS col{i}")
    conn.close()
    assert admin_sql(rp, "SELECT COUNT(*) FROM stats_mysql_query_digest")[0][0] == 3
    kept = {r[0] for r in admin_sql(rp, "SELECT digest_text FROM stats_mysql_query_digest")}
    assert {"SELECT ? AS col4", "SELECT ? AS col5"} <= kept  # the most recent stay
    status = dict(admin_sql(rp, "SELECT Variable_Name, Variable_Value FROM stats_mysql_global"))
    evicted = int(status["Query_Digest_Evictions"])
    assert evicted >= 3
    assert sample(scrape(rp), "myrouter_query_digest_evictions", "myrouter_query_digest_evictions_total") == evicted
    # a validated variable: changed at runtime, refused out of range
    assert admin_sql(rp, "SELECT variable_value FROM global_variables "
                         "WHERE variable_name = 'mysql-query_digests_max_digests'") == [("3",)]
    admin_sql(rp, "SET mysql-query_digests_max_digests = 1", "LOAD MYSQL VARIABLES TO RUNTIME")
    assert admin_sql(rp, "SELECT COUNT(*) FROM stats_mysql_query_digest")[0][0] == 1
    conn = admin_connect(rp)
    with conn.cursor() as cur:
        cur.execute("SET mysql-query_digests_max_digests = 0")
        with pytest.raises(pymysql.MySQLError) as info:
            cur.execute("LOAD MYSQL VARIABLES TO RUNTIME")
        assert "query_digests_max_digests" in info.value.args[1]
    conn.close()
    assert rp.proxy.digest_stats.max_digests == 1


# -- 3. failed admin logins per address ------------------------------------------------------


def login_from(rp: RunningProxy, source: str, password: str = "admin") -> None:
    """An admin login from ``source`` (a loopback address of this host), closed at once."""
    conn = admin_connect(rp, password=password, bind_address=source)
    conn.close()


def login_error_from(rp: RunningProxy, source: str, password: str = "admin") -> pymysql.MySQLError:
    with pytest.raises(pymysql.MySQLError) as info:
        login_from(rp, source, password)
    return info.value


def test_failed_admin_logins_block_their_address(proxy):
    admin_sql(proxy, "SET admin-client_host_error_counts = 3", "LOAD ADMIN VARIABLES TO RUNTIME")
    attacker = "127.0.0.2"  # another loopback address: the operator's own 127.0.0.1 stays usable
    for _ in range(2):
        assert login_error_from(proxy, attacker, "guess").args[0] == 1045
    login_from(proxy, attacker)  # a success clears the count (as ProxySQL)
    for _ in range(3):
        assert login_error_from(proxy, attacker, "guess").args[0] == 1045
    # blocked now: refused before the password is even asked for, the right one too
    err = login_error_from(proxy, attacker)
    assert err.args[0] == 1129 and "blocked" in err.args[1] and "127.0.0.2" in err.args[1], err
    assert login_error_from(proxy, attacker, "guess").args[0] == 1129
    status = dict(admin_sql(proxy, "SELECT Variable_Name, Variable_Value FROM stats_mysql_global"))  # 127.0.0.1
    assert int(status["Admin_client_host_blocked_connections"]) == 2
    # ProxySQL's command to forget client host errors unblocks it
    assert admin_sql(proxy, "PROXYSQL FLUSH MYSQL CLIENT HOSTS") == []
    login_from(proxy, attacker)


def test_a_blocked_address_is_let_in_again_after_the_block_time(proxy):
    admin_sql(proxy, "SET admin-client_host_error_counts = 1", "SET admin-client_host_block_time_ms = 1000",
              "LOAD ADMIN VARIABLES TO RUNTIME")
    assert login_error_from(proxy, "127.0.0.3", "guess").args[0] == 1045
    assert login_error_from(proxy, "127.0.0.3").args[0] == 1129

    def lets_in() -> bool:
        try:
            login_from(proxy, "127.0.0.3")
            return True
        except pymysql.MySQLError as exc:
            assert exc.args[0] == 1129, exc
            return False

    wait_for("the block to end", lets_in, timeout=15, step=0.2)
    # refused variable values name the variable
    conn = admin_connect(proxy)
    with conn.cursor() as cur:
        cur.execute("SET admin-client_host_block_time_ms = 5")
        with pytest.raises(pymysql.MySQLError) as info:
            cur.execute("LOAD ADMIN VARIABLES TO RUNTIME")
        assert "client_host_block_time_ms" in info.value.args[1]
    conn.close()


# -- 4. TLS on the admin port ----------------------------------------------------------------


def test_admin_port_offers_tls_with_the_datadir_certificates(proxy_factory, tmp_path):
    datadir = tmp_path / "data"
    datadir.mkdir()
    rp = proxy_factory(datadir=datadir)
    assert admin_sql(rp, "SELECT @@have_ssl") == [("DISABLED",)]
    admin_sql(rp, "SET admin-have_ssl = 'true'", "LOAD ADMIN VARIABLES TO RUNTIME")
    ca = datadir / "myrouter-ca.pem"
    assert ca.exists()
    # PyMySQL verifying the certificate (CA and host name) of the admin port
    conn = admin_connect(rp, ssl={"ca": str(ca), "check_hostname": True})
    try:
        assert isinstance(conn._sock, ssl.SSLSocket) and conn._sock.version() in ("TLSv1.2", "TLSv1.3")
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM mysql_servers")
            assert cur.fetchone()[0] == 3
            cur.execute("SELECT @@have_ssl")
            assert cur.fetchone()[0] == "YES"
    finally:
        conn.close()
    stats = admin_connect(rp, user="stats", password="stats", ssl={"ca": str(ca)})
    with stats.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM stats_mysql_global")
        assert cur.fetchone()[0] > 10
    stats.close()
    # the mariadb CLI, verifying the server certificate
    port = rp.proxy.admin.listen_addresses[0][1]
    r = subprocess.run(["mariadb", "-h127.0.0.1", f"-P{port}", "-uadmin", "-padmin", f"--ssl-ca={ca}",
                        "--ssl-verify-server-cert", "-e", "\\s"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Cipher in use" in r.stdout, r.stdout
    # the client port is unchanged: mysql-have_ssl is still off
    client = rp.connect()
    assert not isinstance(client._sock, ssl.SSLSocket)
    client.close()
