"""Backends reached over Unix sockets, ProxySQL's way: ``port = 0`` and the socket's path as
``hostname``. Real servers of the session's test bed, each on its own socket."""

from __future__ import annotations

from pathlib import Path

import pymysql
import pytest
from conftest import RunningProxy, admin_connect, admin_sql, wait_for

from myrouter_testbed.mariadb import Cluster


def socket_servers(cluster: Cluster) -> list[dict]:
    servers = [{"hostgroup_id": 0, "hostname": str(cluster.primary.socket), "port": 0}]
    servers += [{"hostgroup_id": 1, "hostname": str(r.socket), "port": 0} for r in cluster.replicas]
    return servers



def one(conn, sql: str):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()


def test_socket_backends_serve_writes_and_reads(proxy_factory, cluster: Cluster, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "split.toml").write_text(
        "[[mysql_query_rules]]\nrule_id = 1\nactive = 1\nmatch_digest = '^SELECT'\n"
        "destination_hostgroup = 1\napply = 1\n")
    rp = proxy_factory(servers=socket_servers(cluster), rules_dir=rules, replication_hostgroups=((0, 1),),
                       variables={"monitor_ping_interval": 200, "monitor_read_only_interval": 200})
    replica_ids = {r.query("SELECT @@server_id AS s")[0]["s"] for r in cluster.replicas}
    conn = rp.connect(autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS test.unix_backends (id INT PRIMARY KEY, v VARCHAR(20))")
            cur.execute("REPLACE INTO test.unix_backends VALUES (1, 'over a socket')")
            # the writer saw the client as app@localhost: a Unix socket, not 127.0.0.1
            cur.execute("UPDATE test.unix_backends SET v = USER() WHERE id = 1")
        assert cluster.primary.query("SELECT v FROM test.unix_backends WHERE id = 1") == [{"v": "app@localhost"}]
        cluster.wait_replication()
        assert one(conn, "SELECT @@server_id")[0] in replica_ids  # the rule's reader hostgroup
        assert one(conn, "SELECT v FROM test.unix_backends WHERE id = 1") == ("app@localhost",)
    finally:
        conn.close()

    pool = admin_sql(rp, "SELECT hostgroup, srv_host, srv_port, status, Queries FROM stats_mysql_connection_pool "
                         "ORDER BY hostgroup, srv_host")
    assert (0, str(cluster.primary.socket), 0, "ONLINE") in {row[:4] for row in pool}
    assert sum(row[4] for row in pool if row[0] == 0) >= 3
    assert sum(row[4] for row in pool if row[0] == 1) >= 2

    # the monitor checks them over the same sockets: pings answer, the replicas' read_only is seen
    sockets = [str(cluster.primary.socket)] + [str(r.socket) for r in cluster.replicas]

    def checked() -> bool:
        pings = admin_sql(rp, "SELECT hostname, port, ping_error FROM monitor.mysql_server_ping_log")
        ro = admin_sql(rp, "SELECT hostname, port, read_only, error FROM monitor.mysql_server_read_only_log")
        return ({(h, p) for h, p, err in pings if err is None} >= {(s, 0) for s in sockets}
                and {(h, r) for h, _, r, err in ro if err is None} >= {(sockets[0], 0), (sockets[1], 1),
                                                                        (sockets[2], 1)})

    wait_for("socket servers pinged and their read_only read", checked)
    assert rp.wait_idle().backend_connections_in_use == 0


def test_missing_socket_gets_a_clear_error(proxy_factory, cluster: Cluster, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-server.sock"
    rp = proxy_factory(servers=[{"hostgroup_id": 0, "hostname": str(missing), "port": 0}],
                       variables={"connect_retries_on_failure": 0, "connect_timeout_server": 1000,
                                  "connect_timeout_server_max": 1000})
    with pytest.raises(pymysql.MySQLError) as info:  # PyMySQL's connect already needs the backend
        conn = rp.connect(autocommit=True)
        try:
            one(conn, "SELECT 1")
        finally:
            conn.close()
    code, message = info.value.args
    assert code == 9001, info.value
    assert str(missing) in message and "No such file or directory" in message, message
    assert rp.wait_idle().backend_connections_connected == 0


def test_admin_takes_socket_servers_and_refuses_port_0_without_a_path(proxy_factory, cluster: Cluster) -> None:
    rp: RunningProxy = proxy_factory()
    admin_sql(rp, "DELETE FROM mysql_servers",
              f"INSERT INTO mysql_servers (hostgroup_id, hostname, port) VALUES (0, '{cluster.primary.socket}', 0)",
              "LOAD MYSQL SERVERS TO RUNTIME")
    assert admin_sql(rp, "SELECT hostgroup_id, hostname, port FROM runtime_mysql_servers") == [
        (0, str(cluster.primary.socket), 0)]
    conn = rp.connect(autocommit=True)
    try:
        assert one(conn, "SELECT USER()") == ("app@localhost",)
    finally:
        conn.close()

    admin = admin_connect(rp)
    try:
        with admin.cursor() as cur:
            cur.execute("INSERT INTO mysql_servers (hostgroup_id, hostname, port) VALUES (1, '127.0.0.1', 0)")
            with pytest.raises(pymysql.MySQLError) as info:
                cur.execute("LOAD MYSQL SERVERS TO RUNTIME")
    finally:
        admin.close()
    assert "port 0 means a Unix socket" in info.value.args[1], info.value
    assert admin_sql(rp, "SELECT hostgroup_id, hostname, port FROM runtime_mysql_servers") == [
        (0, str(cluster.primary.socket), 0)]
