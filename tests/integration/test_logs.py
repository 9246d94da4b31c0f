"""Structured logs against the real test bed: the audit log (connection events and errors as JSON
lines, ProxySQL's mysql-auditlog_*), its rotation, runtime changes through the admin interface, and
the process log as JSON (``myrouter serve --log-format json``). Real clients: PyMySQL,
mysql-connector-python, the raw protocol client for what drivers never send."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import mysql.connector
import pymysql
import pytest
from conftest import admin_port, admin_sql, render_config
from rawclient import RawClient, error_of

from myrouter.protocol import kernels
from myrouter_testbed.mariadb import free_ports

MYROUTER = [sys.executable, "-m", "myrouter"]
WRONG_PASSWORD = "Wr0ng-Pa55word-9931"


# -- helpers -----------------------------------------------------------------------


def read_events(path: Path) -> list[dict]:
    """Every whole line of ``path`` as JSON (a whole line that does not parse fails the test).

    The proxy may be writing while this reads: a line that crosses a page boundary of the
    file can be seen half written, so an unterminated last line is left for the next read.
    """
    if not path.exists():
        return []
    text = path.read_text()
    whole = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in whole.splitlines()]


def wait_events(path: Path, predicate, timeout: float = 10.0) -> list[dict]:
    """The events of ``path`` once ``predicate(events)`` holds (the proxy writes from its own thread)."""
    deadline = time.monotonic() + timeout
    while True:
        events = read_events(path)
        if predicate(events):
            return events
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for audit events; got:\n" + "\n".join(map(str, events)))
        time.sleep(0.05)


def of_thread(events: list[dict], thread_id: int) -> list[dict]:
    return [e for e in events if e.get("thread_id") == thread_id and not e["event"].startswith("Admin_")]


def names(events: list[dict]) -> list[str]:
    return [e["event"] for e in events]






def thread_id(conn) -> int:
    """The proxy's session id: the connection id of its greeting (CONNECTION_ID() too)."""
    return conn.server_thread_id[0]


@pytest.fixture
def rules_dir(tmp_path):
    """``rules_dir(text)``: a directory holding one rule file (no read/write split: all to hostgroup 0)."""
    def make(text: str) -> Path:
        d = tmp_path / f"rules-{len(list(tmp_path.glob('rules-*')))}"
        d.mkdir()
        (d / "50-test.toml").write_text(text)
        return d
    return make


PROXYSQL_FIELDS = {"event", "timestamp", "time", "thread_id", "username", "schemaname", "client_addr",
                   "proxy_addr", "ssl"}


# -- the audit log ------------------------------------------------------------------


def test_connection_events_and_errors_are_json_lines(proxy_factory, rules_dir, tmp_path):
    audit = tmp_path / "audit.log"
    rules = rules_dir("""
[[mysql_query_rules]]
rule_id = 10
active = 1
match_pattern = "^SELECT 'forbidden'"
error_msg = "not here"
apply = 1
""")
    proxy = proxy_factory(rules_dir=rules, variables={"auditlog_filename": str(audit)})

    # a good login, a statement the proxy refuses, a query error from the backend, COM_QUIT
    conn = proxy.connect(autocommit=True)
    tid = thread_id(conn)
    with conn.cursor() as cur:
        with pytest.raises(pymysql.err.OperationalError) as refused:
            cur.execute("SELECT 'forbidden'")
        assert refused.value.args[0] == 1148
        with pytest.raises(pymysql.err.ProgrammingError):
            cur.execute("SELECT * FROM no_such_table_here")
    client_port = conn._sock.getsockname()[1]
    conn.close()
    events = wait_events(audit, lambda ev: "MySQL_Client_Close" in names(of_thread(ev, tid)))
    mine = of_thread(events, tid)
    assert names(mine) == ["MySQL_Client_Connect_OK", "MySQL_Client_Error", "MySQL_Client_Quit",
                           "MySQL_Client_Close"]
    refusal, close = mine[1], mine[3]
    for e in mine:
        assert PROXYSQL_FIELDS <= e.keys()
        assert e["username"] == "app" and e["schemaname"] == "test" and e["ssl"] is False
        assert e["client_addr"] == f"127.0.0.1:{client_port}"
        assert e["proxy_addr"] == f"127.0.0.1:{proxy.port}"
        assert abs(e["timestamp"] / 1000 - time.time()) < 60
    assert refusal["errno"] == 1148 and refusal["sqlstate"] == "42000" and refusal["error"] == "not here"
    assert refusal["command"] == "COM_QUERY"
    assert close["extra_info"] == "client sent COM_QUIT"
    assert close["errors"] == 1 and close["bytes_received"] > 0 and close["bytes_sent"] > 0
    assert close["duration"].endswith("ms") and close["duration_us"] >= 0 and "creation_time" in close

    # an unknown command, then a disconnect without COM_QUIT; one more without the error
    raw = RawClient(proxy.port)
    assert raw.login()[:1] == b"\x00"
    assert error_of(raw.command(b"\x40"))[0] == 1047
    raw_tid = raw.greeting.connection_id
    raw.close()
    events = wait_events(audit, lambda ev: "MySQL_Client_Close" in names(of_thread(ev, raw_tid)))
    mine = of_thread(events, raw_tid)
    assert names(mine) == ["MySQL_Client_Connect_OK", "MySQL_Client_Error", "MySQL_Client_Close"]
    assert mine[1]["errno"] == 1047 and mine[1]["sqlstate"] == "08S01" and mine[1]["command"] == "0x40"
    assert mine[2]["extra_info"] == "closed after error 1047" and mine[2]["errors"] == 1
    raw = RawClient(proxy.port)
    assert raw.login()[:1] == b"\x00"
    assert raw.command(b"\x0e")[:1] == b"\x00"  # COM_PING
    raw_tid = raw.greeting.connection_id
    raw.close()
    events = wait_events(audit, lambda ev: "MySQL_Client_Close" in names(of_thread(ev, raw_tid)))
    mine = of_thread(events, raw_tid)
    assert names(mine) == ["MySQL_Client_Connect_OK", "MySQL_Client_Close"]
    assert mine[1]["extra_info"] == "client disconnected" and mine[1]["errors"] == 0


def test_failed_logins_name_the_user_and_the_reason_never_the_password(proxy_factory, tmp_path, caplog):
    audit = tmp_path / "audit.log"
    users = [{"username": "app", "password": "app", "default_hostgroup": 0, "default_schema": "test"},
             {"username": "retired", "password": "Retired-Pass-5521", "default_hostgroup": 0, "active": False},
             # known to the proxy only: it logs in, then the backend refuses it
             {"username": "ghost", "password": "Ghost-Pass-4417", "default_hostgroup": 0}]
    caplog.set_level(logging.DEBUG)
    proxy = proxy_factory(users=users, variables={"auditlog_filename": str(audit)})

    for user, password in (("app", WRONG_PASSWORD), ("nobody", WRONG_PASSWORD), ("app", ""),
                           ("retired", "Retired-Pass-5521")):
        with pytest.raises(pymysql.err.OperationalError) as denied:
            proxy.connect(user=user, password=password)
        assert denied.value.args[0] == 1045
    # the proxy lets ghost in; PyMySQL's first statement (SET NAMES) needs a backend, which refuses
    with pytest.raises(pymysql.err.OperationalError) as backend_refused:
        proxy.connect(user="ghost", password="Ghost-Pass-4417", database=None)
    assert backend_refused.value.args[0] == 1045

    events = wait_events(audit, lambda ev: names(ev).count("MySQL_Client_Connect_ERR") == 4
                         and "MySQL_Client_Close" in names(ev))
    failed = [e for e in events if e["event"] == "MySQL_Client_Connect_ERR"]
    assert [(e["username"], e["extra_info"]) for e in failed] == [
        ("app", "wrong password"),
        ("nobody", "unknown user 'nobody'"),
        ("app", "no password given"),
        ("retired", "user 'retired' is not active"),
    ]
    for e in failed:
        assert e["errno"] == 1045 and e["sqlstate"] == "28000" and e["error"].startswith("Access denied for user")
        assert e["schemaname"] in ("test", "")  # the schema the client asked for
    ghost_events = [e for e in events if e["username"] == "ghost"]
    assert names(ghost_events)[:2] == ["MySQL_Client_Connect_OK", "MySQL_Client_Error"]
    assert names(ghost_events)[-1] == "MySQL_Client_Close"
    assert ghost_events[1]["errno"] == 1045 and "ghost" in ghost_events[1]["error"]

    written = audit.read_text() + "\n".join(r.getMessage() for r in caplog.records)
    for secret in (WRONG_PASSWORD, "Retired-Pass-5521", "Ghost-Pass-4417"):
        assert secret not in written
    assert proxy.proxy.audit_log.write_errors == 0


def test_change_user_and_handshake_refusals(proxy_factory, tmp_path):
    audit = tmp_path / "audit.log"
    proxy = proxy_factory(variables={"auditlog_filename": str(audit), "max_connections": 2},
                          users=[{"username": "app", "password": "app", "default_hostgroup": 0,
                                  "default_schema": "test", "max_connections": 1}])
    conn = mysql.connector.connect(host="127.0.0.1", port=proxy.port, user="app", password="app", database="test",
                                   use_pure=True)
    tid = conn.connection_id
    conn.cmd_change_user(username="app", password="app", database="mysql")
    # the user's own max_connections: the password was right, the login is refused anyway
    with pytest.raises(pymysql.err.OperationalError) as limited:
        proxy.connect()
    assert limited.value.args[0] == 1226
    with pytest.raises(mysql.connector.Error) as denied:
        conn.cmd_change_user(username="app", password=WRONG_PASSWORD, database="test")
    assert denied.value.errno == 1045
    events = wait_events(audit, lambda ev: "MySQL_Client_Close" in names(of_thread(ev, tid)))
    mine = of_thread(events, tid)
    assert names(mine) == ["MySQL_Client_Connect_OK", "MySQL_Change_User_OK", "MySQL_Change_User_ERR",
                           "MySQL_Client_Close"]
    assert mine[1]["username"] == "app" and mine[1]["schemaname"] == "mysql"
    assert mine[2]["extra_info"] == "wrong password" and mine[2]["errno"] == 1045
    assert mine[3]["extra_info"] == "closed during COM_CHANGE_USER after error 1045"
    limit = [e for e in events if e["event"] == "MySQL_Client_Connect_ERR"]
    assert len(limit) == 1 and limit[0]["errno"] == 1226 and limit[0]["username"] == "app"
    assert "max_connections" in limit[0]["extra_info"]
    assert WRONG_PASSWORD not in audit.read_text()


def test_close_says_why_the_session_ended(proxy_factory, tmp_path):
    audit = tmp_path / "audit.log"
    proxy = proxy_factory(variables={"auditlog_filename": str(audit), "wait_timeout": 500})
    idle = proxy.connect()
    idle_id = thread_id(idle)
    events = wait_events(audit, lambda ev: "MySQL_Client_Close" in names(of_thread(ev, idle_id)))
    assert of_thread(events, idle_id)[-1]["extra_info"] == "idle for more than wait_timeout (500 ms)"
    idle.close()

    admin_sql(proxy, "SET mysql-wait_timeout = 28800000", "LOAD MYSQL VARIABLES TO RUNTIME")
    victim, killer = proxy.connect(), proxy.connect()
    victim_id = thread_id(victim)
    killer.cursor().execute(f"KILL {victim_id}")
    events = wait_events(audit, lambda ev: "MySQL_Client_Close" in names(of_thread(ev, victim_id)))
    assert of_thread(events, victim_id)[-1]["extra_info"] == "killed (KILL CONNECTION)"
    victim.close()

    killer_id = thread_id(killer)
    proxy.stop()  # drain: the idle session is ended
    events = wait_events(audit, lambda ev: "MySQL_Client_Close" in names(of_thread(ev, killer_id)))
    assert of_thread(events, killer_id)[-1]["extra_info"] == "proxy shutdown"
    assert proxy.proxy.audit_log.closed  # closed once every session had written its Close


def test_audit_log_rotates_past_its_size_and_on_flush_logs(proxy_factory, tmp_path):
    audit = tmp_path / "audit.log"
    proxy = proxy_factory(variables={"auditlog_filename": str(audit), "auditlog_filesize": 4096})
    for _ in range(20):
        proxy.connect().close()
    wait_events(audit, lambda ev: True)  # the current file parses

    def all_events() -> list[dict]:
        files = sorted(tmp_path.glob("audit.log.*")) + [audit]
        return [e for f in files for e in read_events(f)]

    deadline = time.monotonic() + 10
    while names(all_events()).count("MySQL_Client_Close") < 20:
        assert time.monotonic() < deadline, "not every Close event was written"
        time.sleep(0.05)
    rotated = sorted(tmp_path.glob("audit.log.*"))
    assert len(rotated) >= 3
    assert [p.name for p in rotated] == [f"audit.log.{i:08d}" for i in range(1, len(rotated) + 1)]
    for p in rotated:
        size = p.stat().st_size
        assert 4096 < size < 4096 + 1024  # rotated after the line that passed the limit
    events = all_events()
    assert names(events).count("MySQL_Client_Connect_OK") == 20
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)

    # PROXYSQL FLUSH LOGS: the current file gets the next number and a new one starts, so this
    # admin connection's Connect_OK is in a numbered file and its Close in the new one
    before = proxy.proxy.audit_log.rotations
    conn = pymysql.connect(host="127.0.0.1", port=admin_port(proxy), user="admin", password="admin")
    admin_id = conn.server_thread_id[0]
    conn.cursor().execute("PROXYSQL FLUSH LOGS")
    conn.close()
    assert proxy.proxy.audit_log.rotations >= before + 1

    def admin_event(name):
        return lambda ev: any(e["event"] == name and e["thread_id"] == admin_id for e in ev)

    current = wait_events(audit, admin_event("Admin_Close"))
    assert not admin_event("Admin_Connect_OK")(current)
    assert admin_event("Admin_Connect_OK")([e for f in sorted(tmp_path.glob("audit.log.*")) for e in read_events(f)])


def test_query_log_rotates_and_marks_failed_statements(proxy_factory, rules_dir, tmp_path):
    qlog = tmp_path / "queries.log"
    rules = rules_dir("""
[[mysql_query_rules]]
rule_id = 20
active = 1
match_pattern = "^SELECT"
log = 1
""")
    proxy = proxy_factory(rules_dir=rules, variables={"eventslog_filename": str(qlog), "eventslog_filesize": 4096})
    conn = proxy.connect(autocommit=True)
    with conn.cursor() as cur:
        for i in range(10):
            cur.execute("SELECT %s, %s", (i, "x" * 500))
        with pytest.raises(pymysql.err.ProgrammingError):
            cur.execute("SELECT * FROM no_such_table_here")
    conn.close()

    def all_events() -> list[dict]:
        return [e for f in [*sorted(tmp_path.glob("queries.log.*")), qlog] for e in read_events(f)]

    deadline = time.monotonic() + 10
    while not any(e.get("error") for e in all_events()):  # written after the reply was sent
        assert time.monotonic() < deadline, "the failed statement was never logged"
        time.sleep(0.05)
    rotated = sorted(tmp_path.glob("queries.log.*"))
    assert [p.name for p in rotated] == [f"queries.log.{i:08d}" for i in range(1, len(rotated) + 1)]
    assert len(rotated) >= 1
    events = all_events()
    assert len(events) == 11
    assert events[-1]["error"] is True and events[-1]["query"] == "SELECT * FROM no_such_table_here"


def test_runtime_change_through_the_admin(proxy_factory, tmp_path):
    proxy = proxy_factory()
    assert proxy.proxy.audit_log is None
    audit = tmp_path / "audit.log"
    proxy.connect().close()
    assert not audit.exists()

    admin_sql(proxy, f"SET mysql-auditlog_filename = '{audit}'", "SET mysql-auditlog_filesize = 65536",
              "LOAD MYSQL VARIABLES TO RUNTIME")
    rows = dict(admin_sql(proxy, "SELECT variable_name, variable_value FROM runtime_global_variables "
                                 "WHERE variable_name LIKE 'mysql-auditlog%'"))
    assert rows == {"mysql-auditlog_filename": str(audit), "mysql-auditlog_filesize": "65536"}
    assert dict(admin_sql(proxy, "SHOW MYSQL VARIABLES LIKE 'mysql-eventslog_filesize'")) == {
        "mysql-eventslog_filesize": str(100 * 1024 * 1024)}
    conn = proxy.connect()
    tid = thread_id(conn)
    conn.close()
    # the admin connection that ran LOAD logged in before the audit log was on: its Close is in it
    wait_events(audit, lambda ev: "MySQL_Client_Close" in names(of_thread(ev, tid)) and "Admin_Close" in names(ev))
    assert proxy.proxy.audit_log.max_bytes == 65536

    # a file that cannot be opened refuses the whole LOAD: nothing changes, not even the size
    conn = pymysql.connect(host="127.0.0.1", port=admin_port(proxy), user="admin", password="admin",
                           autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"SET mysql-auditlog_filename = '{tmp_path}/no/such/dir/audit.log'")
        cur.execute("SET mysql-auditlog_filesize = 8192")
        with pytest.raises(pymysql.MySQLError) as refused:
            cur.execute("LOAD MYSQL VARIABLES TO RUNTIME")
        assert "mysql-auditlog_filename" in str(refused.value) and "No such file" in str(refused.value)
        # a directory is refused by the variable checks themselves
        cur.execute(f"SET mysql-auditlog_filename = '{tmp_path}'")
        with pytest.raises(pymysql.MySQLError) as not_a_file:
            cur.execute("LOAD MYSQL VARIABLES TO RUNTIME")
        assert "is a directory" in str(not_a_file.value) and "nothing changed" in str(not_a_file.value)
        cur.execute("SELECT variable_value FROM runtime_global_variables "
                    "WHERE variable_name = 'mysql-auditlog_filesize'")
        assert cur.fetchall() == (("65536",),)
    conn.close()
    assert proxy.proxy.audit_log.filename == str(audit) and proxy.proxy.audit_log.max_bytes == 65536

    # off again: no more lines
    admin_sql(proxy, "SET mysql-auditlog_filename = ''", "LOAD MYSQL VARIABLES TO RUNTIME")
    assert proxy.proxy.audit_log is None
    size = audit.stat().st_size
    proxy.connect().close()
    assert proxy.wait_idle().client_connections_connected == 0  # the session has ended
    assert audit.stat().st_size == size


def test_admin_logins_are_audited(proxy_factory, tmp_path):
    audit = tmp_path / "audit.log"
    proxy = proxy_factory(variables={"auditlog_filename": str(audit)})
    assert admin_sql(proxy, "SELECT 1") == [(1,)]
    with pytest.raises(pymysql.err.OperationalError) as denied:
        admin_sql(proxy, "SELECT 1", password=WRONG_PASSWORD)
    assert denied.value.args[0] == 1045
    with pytest.raises(pymysql.err.OperationalError):
        admin_sql(proxy, "SELECT 1", user="root", password=WRONG_PASSWORD)
    events = wait_events(audit, lambda ev: names(ev).count("Admin_Connect_ERR") == 2
                         and "Admin_Close" in names(ev))
    admin = [e for e in events if e["event"].startswith("Admin_")]
    ok = admin[0]
    assert names(e for e in admin if e["thread_id"] == ok["thread_id"]) == [
        "Admin_Connect_OK", "Admin_Quit", "Admin_Close"]
    assert ok["username"] == "admin" and ok["schemaname"] == "main"
    assert ok["proxy_addr"] == f"127.0.0.1:{admin_port(proxy)}"
    denied = [e for e in admin if e["event"] == "Admin_Connect_ERR"]
    assert [(e["username"], e["extra_info"], e["errno"]) for e in denied] == [
        ("admin", "wrong password", 1045), ("root", "unknown admin user 'root'", 1045)]
    assert WRONG_PASSWORD not in audit.read_text()


# -- the process log as JSON -------------------------------------------------------------


def _serve(cluster, tmp_path: Path, *args: str, top: str = ""):
    port = free_ports(1)[0]
    cfg = tmp_path / "myrouter.toml"
    (tmp_path / "no-rules").mkdir(exist_ok=True)
    cfg.write_text(top + render_config(cluster, port=port, rules_dir=tmp_path / "no-rules",
                                       variables={"add_ldap_user_comment": "x"}))  # a warning while loading
    proc = subprocess.Popen([*MYROUTER, "serve", "--config", str(cfg), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while True:
        try:
            pymysql.connect(host="127.0.0.1", port=port, user="app", password="app").close()
            break
        except pymysql.err.OperationalError:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "proxy never accepted a login"
            time.sleep(0.1)
    return proc, port


def _stop(proc) -> list[str]:
    proc.terminate()  # our own child, by its Popen handle
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return err.splitlines()


@pytest.mark.parametrize("how", ["flag", "config"])
def test_process_log_as_json_lines(cluster, tmp_path, how):
    if how == "flag":
        proc, port = _serve(cluster, tmp_path, "--log-format", "json")
    else:
        proc, port = _serve(cluster, tmp_path, top='log_format = "json"\n')
    try:
        with pytest.raises(pymysql.err.OperationalError):
            pymysql.connect(host="127.0.0.1", port=port, user="app", password=WRONG_PASSWORD)
    finally:
        lines = _stop(proc)
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for r in records:
        assert {"ts", "level", "logger", "message"} <= r.keys()
        assert r["ts"].endswith("Z") and r["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    messages = [r["message"] for r in records]
    assert any("add_ldap_user_comment" in m for m in messages)  # logged while loading the config: JSON too
    assert any("listening for MySQL clients" in m for m in messages)
    assert any("access denied for user 'app'" in m for m in messages)
    assert any("drain finished" in m for m in messages)
    assert WRONG_PASSWORD not in "\n".join(lines)


def test_process_log_stays_text_by_default(cluster, tmp_path):
    proc, _ = _serve(cluster, tmp_path)
    lines = _stop(proc)
    assert lines and all(not line.startswith("{") for line in lines)
    assert any(" INFO myrouter: myrouter listening" in line for line in lines)
    # which form of each compiled kernel runs (all compiled under `make test`), once
    form = f"Python ({kernels.PURE_ENV} is set)" if kernels.pure_forced() else "compiled"
    assert [line.split(" INFO myrouter: ")[1] for line in lines if "compiled kernels:" in line] == \
        ["compiled kernels: " + ", ".join(f"{name} {form}" for name in kernels.KERNELS)]


def test_log_file_that_cannot_be_opened_stops_serve_with_a_clear_message(cluster, tmp_path):
    cfg = tmp_path / "myrouter.toml"
    (tmp_path / "no-rules").mkdir()
    cfg.write_text(render_config(cluster, port=free_ports(1)[0], rules_dir=tmp_path / "no-rules",
                                 variables={"auditlog_filename": str(tmp_path / "missing" / "audit.log")}))
    r = subprocess.run([*MYROUTER, "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert f"cannot open mysql-auditlog_filename '{tmp_path}/missing/audit.log': No such file" in r.stderr
