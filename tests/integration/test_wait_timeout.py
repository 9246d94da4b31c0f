"""A client's own ``SET wait_timeout`` ends its session after that idle time, as the server would.

MariaDB closes such a connection without a word (no error packet; MySQL 8.0.24+ sends ERR 4031
first); so does the proxy. The proxy's ``mysql-wait_timeout`` stays the upper bound."""

from __future__ import annotations

import json
import time

import pymysql
import pytest
from conftest import wait_for

LOST = (2006, 2013)  # server has gone away / lost connection during query


def run(conn, sql: str):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


@pytest.mark.parametrize("statement", [
    "SET wait_timeout = 1",
    "SET SESSION wait_timeout = 1",
    "SET @@wait_timeout = 1",
    "SET @@session.wait_timeout = 1, @x = 5",
])
def test_a_session_is_closed_after_its_own_wait_timeout(proxy_factory, statement: str) -> None:
    proxy = proxy_factory()
    short, other = proxy.connect(), proxy.connect()
    run(short, statement)
    assert run(short, "SELECT @@wait_timeout") == ((1,),)  # the server agrees on the value
    idle_from = time.monotonic()
    closed_at = wait_for("the idle session to be closed",
                         lambda: proxy.stats().client_connections_connected == 1, timeout=10)
    assert closed_at - idle_from >= 1.0  # not before its wait_timeout
    with pytest.raises(pymysql.err.OperationalError) as exc:
        run(short, "SELECT 1")
    assert exc.value.args[0] in LOST
    assert run(other, "SELECT 1") == ((1,),)  # a session without it, idle as long, stays
    other.close()
    short.close()


def test_the_proxy_wait_timeout_stays_the_upper_bound(proxy_factory) -> None:
    proxy = proxy_factory(variables={"wait_timeout": 1500})
    conn = proxy.connect()
    run(conn, "SET wait_timeout = 3600")
    wait_for("the session to be closed", lambda: proxy.stats().client_connections_connected == 0, timeout=10)
    with pytest.raises(pymysql.err.OperationalError):
        run(conn, "SELECT 1")
    conn.close()


def test_set_wait_timeout_default_gives_the_servers_value_back(proxy_factory) -> None:
    proxy = proxy_factory()
    conn = proxy.connect()
    run(conn, "SET wait_timeout = 1")
    run(conn, "SET wait_timeout = DEFAULT")
    time.sleep(2.5)
    assert run(conn, "SELECT 1") == ((1,),)
    conn.close()


def test_the_audit_log_names_the_sessions_own_limit(proxy_factory, tmp_path) -> None:
    audit = tmp_path / "audit.log"
    proxy = proxy_factory(variables={"auditlog_filename": str(audit)})
    conn = proxy.connect()
    run(conn, "SET wait_timeout = 1")

    def closes() -> list[dict]:
        if not audit.exists():
            return []
        events = [json.loads(line) for line in audit.read_text().splitlines() if line.strip()]
        return [e for e in events if e["event"] == "MySQL_Client_Close"]

    wait_for("the session's close in the audit log", lambda: bool(closes()), timeout=10)
    assert closes()[-1]["extra_info"] == "idle for more than wait_timeout (1000 ms)"
    conn.close()
