"""A statement whose hostgroup has no usable server waits for one, up to connect_timeout_server_max,
as in ProxySQL: a writer back (or moved in by a promotion) within that time costs the client no error."""

from __future__ import annotations

import threading

import pymysql
import pytest

from conftest import admin_sql, writer_only


def test_a_statement_waits_for_its_hostgroup_to_have_a_usable_server(proxy_factory, cluster):
    rp = proxy_factory(servers=writer_only(cluster, 10), variables={"connect_timeout_server_max": 20000})
    conn = rp.connect(autocommit=True)
    admin_sql(rp, "UPDATE mysql_servers SET status = 'OFFLINE_SOFT'", "LOAD MYSQL SERVERS TO RUNTIME")
    events: list[str] = []
    result: dict = {}

    def client():
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@port")
                result["port"] = cur.fetchone()[0]
        except pymysql.MySQLError as exc:
            result["error"] = exc
        events.append("answered")

    t = threading.Thread(target=client)
    t.start()
    t.join(1.0)
    assert t.is_alive() and not events  # waiting, not refused
    events.append("back online")
    admin_sql(rp, "UPDATE mysql_servers SET status = 'ONLINE'", "LOAD MYSQL SERVERS TO RUNTIME")
    t.join(20)
    assert events == ["back online", "answered"]
    assert result == {"port": cluster.primary.port}
    conn.close()


def test_without_a_usable_server_the_wait_ends_with_9001(proxy_factory, cluster):
    rp = proxy_factory(servers=writer_only(cluster, 10), variables={"connect_timeout_server_max": 1000, "connect_timeout_server": 1000})
    conn = rp.connect(autocommit=True)
    admin_sql(rp, "UPDATE mysql_servers SET status = 'OFFLINE_SOFT'", "LOAD MYSQL SERVERS TO RUNTIME")
    with pytest.raises(pymysql.err.OperationalError) as info:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
    code, message = info.value.args
    assert code == 9001 and "hostgroup 0 after" in message and "OFFLINE_SOFT" in message, message
    admin_sql(rp, "UPDATE mysql_servers SET status = 'ONLINE'", "LOAD MYSQL SERVERS TO RUNTIME")
    with conn.cursor() as cur:  # the session is usable again
        cur.execute("SELECT 1")
    conn.close()
