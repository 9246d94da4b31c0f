"""`myrouter serve` as a process: signals, drain, exit codes, config errors."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pymysql
import pytest

from conftest import render_config
from myrouter_testbed.mariadb import free_ports

MYROUTER = [sys.executable, "-m", "myrouter"]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"myrouter exited early: {proc.stderr.read() if proc.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"port {port} never opened")


@pytest.fixture
def served(cluster, tmp_path):
    procs = []

    def start(**kw):
        port = free_ports(1)[0]
        cfg = tmp_path / "myrouter.toml"
        cfg.write_text(render_config(cluster, port=port, **kw))
        proc = subprocess.Popen([*MYROUTER, "serve", "--config", str(cfg)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        wait_port(port, proc)
        return proc, port

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()  # our own child, by its Popen handle
            p.wait()


def test_sigterm_drains_running_statements_and_exits_0(served):
    proc, port = served(variables={"shutdown_timeout": 8000})
    conn = pymysql.connect(host="127.0.0.1", port=port, user="app", password="app")
    idle = pymysql.connect(host="127.0.0.1", port=port, user="app", password="app")
    result = {}

    def run():
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT SLEEP(2), 'finished'")
                result["row"] = cur.fetchone()
        except pymysql.MySQLError as exc:
            result["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.5)
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(OSError):  # no longer accepting
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    t.join(10)
    assert result.get("row") == (0, "finished"), result
    assert proc.wait(10) == 0
    assert time.monotonic() - start < 6
    _, err = proc.communicate()
    assert "drain finished" in err
    # the idle session was closed by the drain
    with pytest.raises(pymysql.err.OperationalError):
        with idle.cursor() as cur:
            cur.execute("SELECT 1")


def test_sigint_drain_is_bounded(served):
    proc, port = served(variables={"shutdown_timeout": 1000})
    conn = pymysql.connect(host="127.0.0.1", port=port, user="app", password="app")
    t = threading.Thread(target=lambda: pytest.raises(pymysql.MySQLError, conn.cursor().execute, "SELECT SLEEP(30)"))
    t.start()
    time.sleep(0.5)
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0
    assert time.monotonic() - start < 5  # the 30 s statement was cut off after the 1 s drain
    t.join(10)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[mysql_variables]\ninterfaces = 42\n", "myrouter.toml:2: mysql_variables.interfaces"),
        ("[mysql_variables]\nmax_conections = 10\n", "myrouter.toml:2: mysql_variables.max_conections"),
        ("[[mysql_servers]]\nhostgroup_id = 0\nhostname = \"127.0.0.1\"\nport = 99999\n",
         "myrouter.toml:4: mysql_servers[0].port"),
        ("[mysql_variables\n", "myrouter.toml:1"),
    ],
)
def test_bad_config_exits_2_naming_file_line_key(tmp_path, text, fragment):
    cfg = tmp_path / "myrouter.toml"
    cfg.write_text(text)
    r = subprocess.run([*MYROUTER, "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stderr
    assert fragment in r.stderr, r.stderr


def test_missing_config_exits_2(tmp_path):
    r = subprocess.run([*MYROUTER, "serve", "--config", str(tmp_path / "nope.toml")], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2
    assert "nope.toml" in r.stderr


def test_explain_prints_digest_classification_rules_and_hostgroup(cluster, tmp_path):
    cfg = tmp_path / "myrouter.toml"
    cfg.write_text(render_config(cluster, port=free_ports(1)[0], rules_dir=Path(__file__).resolve().parents[2] / "rules"))
    r = subprocess.run([*MYROUTER, "explain", "--config", str(cfg), "SELECT c FROM sbtest1 WHERE id = 42 FOR UPDATE"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "SELECT c FROM sbtest1 WHERE id = ?" in out
    assert "locking_read" in out
    assert "100" in out  # the matching shipped rule
    assert re.search(r"^hostgroup:\s+0 ", out, re.M), out
    r = subprocess.run([*MYROUTER, "explain", "--config", str(cfg), "SELECT c FROM sbtest1 WHERE id = 42"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "rule 120" in r.stdout
    assert re.search(r"^hostgroup:\s+1 ", r.stdout, re.M), r.stdout


def test_port_in_use_is_a_clear_error(cluster, tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    cfg = tmp_path / "myrouter.toml"
    cfg.write_text(render_config(cluster, port=port))
    try:
        r = subprocess.run([*MYROUTER, "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    finally:
        busy.close()
    assert r.returncode == 1
    assert "Address already in use" in r.stderr
    assert "Traceback" not in r.stderr


def test_sighup_reloads_the_config_without_dropping_clients(served, tmp_path):
    proc, port = served()
    cfg = tmp_path / "myrouter.toml"
    conn = pymysql.connect(host="127.0.0.1", port=port, user="app", password="app")
    with pytest.raises(pymysql.err.OperationalError) as info:
        pymysql.connect(host="127.0.0.1", port=port, user="newbie", password="pw")
    assert info.value.args[0] == 1045
    good = cfg.read_text()
    # a broken change is refused as a whole: nothing changes
    cfg.write_text(good + '\n[[mysql_users]]\nusername = "newbie"\npassword = "pw"\ndefault_hostgroup = 77\n')
    proc.send_signal(signal.SIGHUP)
    time.sleep(1.5)
    with pytest.raises(pymysql.err.OperationalError):
        pymysql.connect(host="127.0.0.1", port=port, user="newbie", password="pw")
    cfg.write_text(good + '\n[[mysql_users]]\nusername = "newbie"\npassword = "pw"\ndefault_hostgroup = 0\n')
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while True:
        try:
            pymysql.connect(host="127.0.0.1", port=port, user="newbie", password="pw").close()
            break
        except pymysql.err.OperationalError:
            assert time.monotonic() < deadline, "the new user never appeared"
            time.sleep(0.2)
    with conn.cursor() as cur:  # the client connected before both reloads is still served
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    conn.close()
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    err = proc.stderr.read()
    assert "reload refused" in err and "reload done" in err
