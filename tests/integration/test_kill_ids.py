"""Connection ids a client sees are the proxy's session ids: CONNECTION_ID(), SHOW PROCESSLIST,
information_schema.PROCESSLIST and every form of KILL, with MariaDB's permission rules."""

from __future__ import annotations

import threading
import time

import mysql.connector
import pymysql
import pytest

from conftest import wait_for
from rawclient import RawClient

USERS = [
    {"username": "app", "password": "app", "default_hostgroup": 0, "default_schema": "test"},
    {"username": "kplain", "password": "kplain", "default_hostgroup": 0, "default_schema": "test"},
    {"username": "kboss", "password": "kboss", "default_hostgroup": 0, "default_schema": "test"},
]


@pytest.fixture
def kill_users(cluster):
    """kplain: no global privilege; kboss: PROCESS and CONNECTION ADMIN (may see and kill anyone's)."""
    for name, grant in (("kplain", None), ("kboss", "PROCESS, CONNECTION ADMIN")):
        cluster.primary.query(f"CREATE USER IF NOT EXISTS '{name}'@'%' IDENTIFIED BY '{name}'")
        cluster.primary.query(f"GRANT ALL PRIVILEGES ON test.* TO '{name}'@'%'")
        if grant:
            cluster.primary.query(f"GRANT {grant} ON *.* TO '{name}'@'%'")
    cluster.wait_replication()


@pytest.fixture
def one_conn_proxy(proxy_factory, cluster, kill_users):
    """One backend connection for hostgroup 0: every session shares it (the tests connect with autocommit
    on: an autocommit-off session keeps the connection from its first statement to its COMMIT)."""
    servers = [{"hostgroup_id": 0, "hostname": "127.0.0.1", "port": cluster.primary.port, "max_connections": 1}]
    return proxy_factory(servers=servers, users=USERS)


def one(conn, sql: str):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()


def error_code(conn, sql: str) -> int:
    with pytest.raises(pymysql.MySQLError) as ei:
        one(conn, sql)
    return ei.value.args[0]


def com_kill_count(cluster) -> int:
    """KILL statements the servers ran (the primary and the replicas)."""
    total = 0
    for server in (cluster.primary, *cluster.replicas):
        total += int(server.query("SHOW GLOBAL STATUS LIKE 'Com_kill'")[0]["Value"])
    return total


def alive(conn) -> bool:
    try:
        return one(conn, "SELECT 1") == (1,)
    except pymysql.err.OperationalError:
        return False


def test_connection_id_is_the_session_id_on_a_shared_backend_connection(one_conn_proxy):
    a = one_conn_proxy.connect(autocommit=True)
    b = one_conn_proxy.connect(autocommit=True)
    ida, idb = one(a, "SELECT CONNECTION_ID()")[0], one(b, "SELECT CONNECTION_ID()")[0]
    assert (ida, idb) == (a.thread_id(), b.thread_id()) and ida != idb
    assert one_conn_proxy.stats().backend_connections_connected == 1  # one backend thread behind both
    # in expressions, with an alias, in WHERE, in a subquery: the server evaluates the session's id
    with a.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID(), CONNECTION_ID() + 1 AS nxt, 'CONNECTION_ID()' AS lit, "
                    "(SELECT CONNECTION_ID()) AS sub FROM DUAL WHERE CONNECTION_ID() = %s", (ida,))
        assert cur.fetchall() == ((ida, ida + 1, "CONNECTION_ID()", ida),)
        assert [d[0] for d in cur.description] == ["CONNECTION_ID()", "nxt", "lit", "sub"]
    assert one(b, "select connection_id() as me") == (idb,)
    a.close()
    b.close()


def test_kill_of_the_connection_id_ends_the_right_session(one_conn_proxy, cluster):
    a, b, killer = (one_conn_proxy.connect(autocommit=True) for _ in range(3))
    victim = one(b, "SELECT CONNECTION_ID()")[0]
    before = com_kill_count(cluster)
    one(killer, f"KILL {victim}")
    assert not alive(b)
    assert alive(a) and alive(killer)
    assert com_kill_count(cluster) == before  # b held no backend work: nothing sent to a server
    a.close()
    killer.close()


def test_show_processlist_shows_proxy_session_ids(one_conn_proxy, cluster):
    a = one_conn_proxy.connect(autocommit=True)
    b = one_conn_proxy.connect(autocommit=True, user="kplain", password="kplain")
    for sql in ("SHOW PROCESSLIST", "/* x */ SHOW FULL PROCESSLIST"):
        with a.cursor() as cur:
            cur.execute(sql)
            rows = cur.fetchall()
            assert [d[0] for d in cur.description] == ["Id", "User", "Host", "db", "Command", "Time", "State",
                                                        "Info", "Progress"]
        by_id = {r[0]: r for r in rows}
        assert set(by_id) == {a.thread_id(), b.thread_id()}  # app has ALL PRIVILEGES: sees every session
        assert by_id[a.thread_id()][1:5] == ("app", by_id[a.thread_id()][2], "test", "Query")
        assert by_id[a.thread_id()][7] == sql
        assert by_id[b.thread_id()][4] == "Sleep" and by_id[b.thread_id()][7] is None
    # information_schema.PROCESSLIST: the server's column set, the proxy's sessions
    direct = pymysql.connect(host="127.0.0.1", port=cluster.primary.port, user="app", password="app")
    with direct.cursor() as cur:
        cur.execute("SELECT * FROM information_schema.PROCESSLIST LIMIT 0")
        server_columns = [d[0] for d in cur.description]
    direct.close()
    with a.cursor() as cur:
        cur.execute("SELECT * FROM information_schema.PROCESSLIST")
        assert [d[0] for d in cur.description] == server_columns
        assert sorted(r[0] for r in cur.fetchall()) == sorted((a.thread_id(), b.thread_id()))
        cur.execute("SELECT p.USER, p.DB FROM `information_schema`.`processlist` p WHERE p.ID = CONNECTION_ID()")
        assert cur.fetchall() == (("app", "test"),)
        cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'kplain'")
        assert cur.fetchall() == ((1,),)
    # an unprivileged user sees its own sessions only
    with b.cursor() as cur:
        cur.execute("SHOW PROCESSLIST")
        assert [r[0] for r in cur.fetchall()] == [b.thread_id()]
        cur.execute("SELECT ID FROM information_schema.PROCESSLIST")
        assert cur.fetchall() == ((b.thread_id(),),)
    # COM_PROCESS_INFO (the old SHOW PROCESSLIST command): the proxy's answer, 9 columns
    raw = RawClient(one_conn_proxy.port)
    assert raw.login()[:1] == b"\x00"
    assert raw.command(b"\x0a") == b"\x09"
    for _ in range(9 + 1):  # column definitions, EOF
        raw.read_packet()
    ids = []
    while (row := raw.read_packet().payload)[:1] != b"\xfe":
        ids.append(int(row[1:1 + row[0]]))  # the first column, a length-encoded string
    assert ids == sorted([a.thread_id(), b.thread_id(), raw.greeting.connection_id])  # app sees every session
    raw.close()
    # a form the proxy cannot answer correctly is refused, not answered with the server's threads
    assert error_code(a, "CREATE VIEW test.pl AS SELECT * FROM information_schema.PROCESSLIST") == 1235
    a.close()
    b.close()


def test_kill_permissions_follow_the_backend_privileges(one_conn_proxy, cluster):
    app1, app2 = one_conn_proxy.connect(autocommit=True), one_conn_proxy.connect(autocommit=True)
    plain = one_conn_proxy.connect(autocommit=True, user="kplain", password="kplain")
    boss = one_conn_proxy.connect(autocommit=True, user="kboss", password="kboss")
    before = com_kill_count(cluster)
    # kplain has neither SUPER nor CONNECTION ADMIN: 1095, as MariaDB
    assert error_code(plain, f"KILL {app1.thread_id()}") == 1095
    assert error_code(plain, f"KILL QUERY {app1.thread_id()}") == 1095
    assert error_code(plain, "KILL USER app") == 1095
    assert alive(app1)
    # kboss has CONNECTION ADMIN: may kill another user's session
    one(boss, f"KILL {app1.thread_id()}")
    assert not alive(app1)
    assert alive(app2) and alive(plain)
    assert com_kill_count(cluster) == before
    for c in (app2, plain, boss):
        c.close()


def test_kill_forms_the_old_parser_missed_never_reach_a_server(one_conn_proxy, cluster):
    s1, s2, s3, killer = (one_conn_proxy.connect(autocommit=True) for _ in range(4))
    plain = one_conn_proxy.connect(autocommit=True, user="kplain", password="kplain")
    before = com_kill_count(cluster)
    one(killer, f"/* c */ KILL {s1.thread_id()}")
    one(killer, f"KILL HARD {s2.thread_id()} -- trailing")
    one(killer, f"KILL SOFT QUERY {s3.thread_id()} /* t */")  # the query only: the session survives
    assert not alive(s1) and not alive(s2) and alive(s3)
    for sql in ("KILL QUERY ID 7", "SELECT 1; KILL 5", "/*!KILL 5*/", "KILL nonsense", "PREPARE k FROM 'KILL 5'",
                "EXECUTE IMMEDIATE \"/* c */ KILL 5\""):
        assert error_code(killer, sql) == 1235, sql
    # KILL USER: every session of that user but the killer's own (KILL QUERY USER spares them all)
    with killer.cursor() as cur:
        assert cur.execute("KILL QUERY USER kplain") == 1
    assert alive(plain)
    with killer.cursor() as cur:
        assert cur.execute("KILL CONNECTION USER 'kplain'@'%' /* c */") == 1
    assert not alive(plain)
    assert alive(s3) and alive(killer)
    assert com_kill_count(cluster) == before  # not one of these reached a server
    # a prepared KILL is refused too (mysql-connector prepares on the server side)
    conn = mysql.connector.connect(host="127.0.0.1", port=one_conn_proxy.port, user="app", password="app",
                                   use_pure=True)
    cur = conn.cursor(prepared=True)
    with pytest.raises(mysql.connector.Error) as ei:
        cur.execute(f"KILL {s3.thread_id()}")
    assert ei.value.errno == 1235
    conn.close()
    assert alive(s3) and com_kill_count(cluster) == before
    s3.close()
    killer.close()


def test_kill_query_by_a_privileged_user_stops_a_running_statement(one_conn_proxy, cluster):
    victim = one_conn_proxy.connect(autocommit=True, user="kplain", password="kplain")
    result = {}

    def run():
        try:
            result["value"] = one(victim, "SELECT SLEEP(20)")
        except pymysql.MySQLError as exc:
            result["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    boss = one_conn_proxy.connect(autocommit=True, user="kboss", password="kboss")
    sessions = one_conn_proxy.proxy.sessions
    wait_for("the victim's statement to run", lambda: one_conn_proxy.call(
        lambda: any(s.username == "kplain" and s.state.value == "busy" for s in sessions.values())))
    started = time.monotonic()
    # max_connections=1: kboss's own statement would wait behind the victim's, so the kill must not need it
    one(boss, f"KILL QUERY {victim.thread_id()}")
    t.join(25)
    assert not t.is_alive() and time.monotonic() - started < 15
    assert result.get("value") == (1,) or result["error"].args[0] == 1317
    assert alive(victim)
    victim.close()
    boss.close()


def test_fast_forward_sessions_kill_proxy_sessions_too(proxy_factory, cluster):
    """fast_forward statements go to the server unread, except KILL: its ids are the proxy's."""
    rp = proxy_factory(users=[{"username": "app", "password": "app", "default_hostgroup": 0, "fast_forward": True}])
    victim, killer = rp.connect(autocommit=True), rp.connect(autocommit=True)
    before = com_kill_count(cluster)
    one(killer, f"/* c */ KILL HARD {victim.thread_id()}")
    assert not alive(victim) and alive(killer)
    # the proxy's own KILL of the victim's backend connection (a fast_forward session holds one), no other
    assert com_kill_count(cluster) == before + 1
    assert error_code(killer, "KILL QUERY ID 3") == 1235
    assert com_kill_count(cluster) == before + 1
    killer.close()
