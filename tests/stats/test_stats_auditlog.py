"""The audit log: event format, the settings that drive it (config, runtime changes), and the Proxy's
audit hooks on real (loopback) sessions that never reach a backend. The wire-level behaviour with real
clients is in tests/integration/test_logs.py."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from pathlib import Path

import pytest

from myrouter.app import Proxy
from myrouter.config import MySQLVariables, load_config
from myrouter.errors import ConfigError
from myrouter.frontend.session import ClientSession
from myrouter.net.stream import ConnectionLost, PacketStream
from myrouter.protocol.errors import MySQLError
from myrouter.stats import auditlog as A
from myrouter.stats.auditlog import AuditLog, close_fields, error_fields
from myrouter.stats.audittrail import command_name, server_addr

CONFIG = """\
[mysql_variables]
interfaces = "127.0.0.1:16033"
server_version = "10.11.6-MariaDB"
{variables}

[admin_variables]
mysql_ifaces = "127.0.0.1:16032"
restapi_port = 16070

[[mysql_servers]]
hostgroup_id = 0
hostname = "127.0.0.1"
port = 3306

[[mysql_users]]
username = "app"
password = "app"
default_schema = "test"
"""


def config_file(tmp_path: Path, variables: str = "", top: str = "") -> Path:
    (tmp_path / "rules").mkdir(exist_ok=True)
    path = tmp_path / "myrouter.toml"
    path.write_text(f'rules_dir = "rules"\n{top}\n' + CONFIG.format(variables=variables))
    return path


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- the event format --------------------------------------------------------------


def test_event_has_proxysql_fields_first(tmp_path):
    log = AuditLog(str(tmp_path / "a.log"))
    e = log.event(A.CONNECT_OK, thread_id=3, username="app", schemaname="test", client_addr="127.0.0.1:5000",
                  proxy_addr="127.0.0.1:6033", now=1_700_000_000.25)
    log.event(A.BACKEND_ERROR, thread_id=0, ssl=None, server_addr="db1:3306", hostgroup_id=1, **error_fields(
        MySQLError(9001, "Max connect timeout reached", "HY000")))
    log.close()
    first, second = events(tmp_path / "a.log")
    assert first == e
    assert list(first) == ["event", "timestamp", "time", "thread_id", "username", "schemaname", "client_addr",
                           "proxy_addr", "ssl"]
    assert first["timestamp"] == 1_700_000_000_250 and first["time"].endswith(".250") and first["ssl"] is False
    assert "ssl" not in second and "proxy_addr" not in second and second["username"] == ""
    assert (second["errno"], second["sqlstate"], second["error"]) == (9001, "HY000", "Max connect timeout reached")


def test_error_and_close_fields():
    assert error_fields(MySQLError(1045, "Access denied", "28000")) == {
        "errno": 1045, "sqlstate": "28000", "error": "Access denied"}
    assert error_fields(ConnectionLost("reset by peer")) == {
        "errno": 0, "sqlstate": "", "error": "ConnectionLost: reset by peer"}
    assert error_fields(TimeoutError()) == {"errno": 0, "sqlstate": "", "error": "TimeoutError"}
    c = close_fields(100.0, 100.0123456)
    assert c["duration"] == "12.345ms" and c["duration_us"] == 12345 and c["creation_time"].endswith(".000")


def test_command_and_server_names(proxy):
    assert command_name(3) == "COM_QUERY" and command_name(0x11) == "COM_CHANGE_USER"
    assert command_name(0x40) == "0x40" and command_name(None) == ""
    server = proxy.hostgroups.choose(0)
    assert server_addr(server) == server_addr(server.address) == "127.0.0.1:3306"
    assert server_addr("db:1") == "db:1"
    assert server_addr(type("A", (), {"host": "::1", "port": 3306})()) == "[::1]:3306"


# -- settings --------------------------------------------------------------------------


def test_variables_are_real_and_shown_in_global_variables(tmp_path):
    config = load_config(config_file(tmp_path, 'auditlog_filename = "audit.log"\nauditlog_filesize = 8192\n'
                                               "eventslog_filesize = 4096"))
    v = config.mysql_variables
    assert (v.auditlog_filename, v.auditlog_filesize, v.eventslog_filesize) == ("audit.log", 8192, 4096)
    rows = dict(v.global_variables())
    assert rows["mysql-auditlog_filename"] == "audit.log" and rows["mysql-auditlog_filesize"] == "8192"
    assert rows["mysql-eventslog_filesize"] == "4096"
    compat = dict(v.compatibility)
    assert not {"auditlog_filename", "auditlog_filesize", "eventslog_filesize"} & compat.keys()
    assert MySQLVariables().auditlog_filesize == 100 * 1024 * 1024  # ProxySQL's default


@pytest.mark.parametrize("snippet, words", [
    ("auditlog_filesize = 100", ("auditlog_filesize", "4096..1073741824")),
    ("eventslog_filesize = 2147483648", ("eventslog_filesize", "out of range")),
    ('auditlog_filename = "logs/"', ("auditlog_filename", "is a directory")),
    ('eventslog_filename = "{tmp}"', ("eventslog_filename", "is a directory")),
])
def test_bad_log_variables_are_refused(tmp_path, snippet, words):
    with pytest.raises(ConfigError) as err:
        load_config(config_file(tmp_path, snippet.format(tmp=tmp_path)))
    for w in words:
        assert w in str(err.value)


def test_log_format_setting(tmp_path):
    assert load_config(config_file(tmp_path)).log_format == "text"
    assert load_config(config_file(tmp_path, top='log_format = "JSON"')).log_format == "json"
    with pytest.raises(ConfigError) as err:
        load_config(config_file(tmp_path, top='log_format = "xml"'))
    assert "log_format" in str(err.value) and "'text', 'json'" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config(config_file(tmp_path, top='log_fromat = "json"'))
    assert "did you mean 'log_format'" in str(err.value)


def test_log_that_cannot_be_opened_at_start_names_the_variable(tmp_path):
    config = load_config(config_file(tmp_path, f'auditlog_filename = "{tmp_path}/nope/audit.log"'))
    with pytest.raises(OSError) as err:
        Proxy(config)
    assert "cannot open mysql-auditlog_filename" in str(err.value) and "No such file" in str(err.value)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_apply_runtime_opens_every_new_log_or_changes_nothing(tmp_path):
    proxy = Proxy(load_config(config_file(tmp_path)))
    assert proxy.query_log is None and proxy.audit_log is None
    old_vars = proxy.vars
    fds = _open_fds()
    bad = dataclasses.replace(old_vars, eventslog_filename=str(tmp_path / "q.log"),
                              auditlog_filename=str(tmp_path / "nope" / "audit.log"), auditlog_filesize=8192)
    with pytest.raises(MySQLError) as err:
        proxy.apply_runtime(dataclasses.replace(proxy.config, mysql_variables=bad))
    assert "cannot open mysql-auditlog_filename" in err.value.message
    assert proxy.vars is old_vars and proxy.query_log is None and proxy.audit_log is None
    assert _open_fds() == fds  # the query log opened first was closed again

    good = dataclasses.replace(bad, auditlog_filename=str(tmp_path / "audit.log"))
    proxy.apply_runtime(dataclasses.replace(proxy.config, mysql_variables=good))
    assert proxy.query_log.filename == str(tmp_path / "q.log") and proxy.audit_log.max_bytes == 8192
    audit = proxy.audit_log
    resized = dataclasses.replace(good, auditlog_filesize=4096)
    proxy.apply_runtime(dataclasses.replace(proxy.config, mysql_variables=resized))
    assert proxy.audit_log is audit and audit.max_bytes == 4096  # same file, new size
    off = dataclasses.replace(resized, auditlog_filename="", eventslog_filename="")
    proxy.apply_runtime(dataclasses.replace(proxy.config, mysql_variables=off))
    assert proxy.audit_log is None and proxy.query_log is None and audit.closed
    assert _open_fds() == fds


# -- the Proxy's hooks on real loopback sessions ------------------------------------------


@pytest.fixture
def proxy(tmp_path):
    p = Proxy(load_config(config_file(tmp_path, f'auditlog_filename = "{tmp_path}/audit.log"')))
    yield p
    p.audit_log.close()


@pytest.fixture
def session(proxy):
    """A ClientSession on a real loopback TCP connection (nothing is sent on it)."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, peer = listener.accept()
    listener.close()
    s = ClientSession(proxy.services, PacketStream(server), peer)
    yield s
    server.close()
    client.close()


def test_backend_error_and_init_db_events(proxy, session, tmp_path):
    proxy.log_backend_error("db1:3306", 1, MySQLError(9001, "Max connect timeout reached", "HY000"),
                            during="connect")
    session.username, session.schema = "app", "test"
    proxy.log_backend_error(proxy.hostgroups.choose(0), 0, ConnectionLost("reset"), session=session,
                            during="query")
    proxy.audit.init_db(session, "shop")
    proxy.audit.init_db(session, "nope", MySQLError(1049, "Unknown database 'nope'", "42000"))
    a, b, c, d = events(tmp_path / "audit.log")
    assert a["event"] == b["event"] == A.BACKEND_ERROR
    assert (a["thread_id"], a["server_addr"], a["hostgroup_id"], a["during"], a["errno"]) == (
        0, "db1:3306", 1, "connect", 9001)
    assert (b["thread_id"], b["username"], b["server_addr"], b["during"], b["errno"]) == (
        session.id, "app", "127.0.0.1:3306", "query", 0)
    assert b["client_addr"] == session.client_addr and b["error"] == "ConnectionLost: reset"
    assert c["event"] == d["event"] == A.CLIENT_INIT_DB
    assert c["schemaname"] == "shop" and "errno" not in c
    assert d["schemaname"] == "nope" and d["errno"] == 1049


def test_login_hooks_pair_the_reason_with_the_err_sent(proxy, session, tmp_path):
    denied = MySQLError(1045, "Access denied for user 'app'@'127.0.0.1' (using password: YES)", "28000")
    proxy.audit.login(session, "app", "shop", denied)
    proxy.audit.error(session, denied)  # what _try_send_err reports
    proxy.audit.error(session, denied)  # a second ERR of the same handshake: no reason left to pair
    first, second = events(tmp_path / "audit.log")
    assert first["event"] == second["event"] == A.CONNECT_ERR
    assert (first["username"], first["schemaname"], first["extra_info"]) == ("app", "shop", "wrong password")
    assert second["username"] == "" and second["extra_info"] == denied.message
    assert proxy.audit._pending == {}


def test_hooks_write_nothing_and_keep_nothing_when_off(tmp_path, session):
    off = tmp_path / "off"
    off.mkdir()
    proxy = Proxy(load_config(config_file(off)))
    err = MySQLError(1045, "Access denied for user 'x'@'h' (using password: YES)", "28000")
    proxy.audit.login(session, "x", None, err)
    proxy.audit.error(session, err)
    proxy.log_backend_error("db:1", 0, err)
    proxy.audit.init_db(session, "s")
    assert proxy.audit_log is None and proxy.audit._pending == {}
