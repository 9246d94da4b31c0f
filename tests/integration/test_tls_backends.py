"""TLS from the proxy to the servers (mysql_servers.use_ssl, mysql-ssl_p2s_*), against a
test bed of its own whose MariaDB servers have certificates (``start_cluster(tls=True)``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
from conftest import admin_sql, wait_for

from myrouter.net import tls
from myrouter.testbed import Cluster, ensure_packages, start_cluster


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[Cluster]:
    ensure_packages()
    with start_cluster(replicas=1, tls=True) as c:
        yield c


def servers(cluster: Cluster, primary_ssl: int, replica_ssl: int = 0) -> list[dict]:
    return [{"hostgroup_id": 0, "hostname": "127.0.0.1", "port": cluster.primary.port, "use_ssl": primary_ssl},
            {"hostgroup_id": 1, "hostname": "127.0.0.1", "port": cluster.replicas[0].port, "use_ssl": replica_ssl}]


USERS = [{"username": "app", "password": "app", "default_hostgroup": 0, "default_schema": "test"},
         {"username": "monitor", "password": "monitor", "default_hostgroup": 1}]


def tls_version(rp, user: str = "app", password: str = "app") -> str:
    """The TLS version of the backend connection that serves ``user`` ('' when plain)."""
    conn = rp.connect(user=user, password=password, database=None)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
            return cur.fetchone()[1]
    finally:
        conn.close()


def on_primary_only(cluster: Cluster, sql: str) -> None:
    """A statement on the primary that does not replicate (sql_log_bin=0)."""
    conn = cluster.primary.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SET sql_log_bin = 0")
            cur.execute(sql)
    finally:
        conn.close()



def test_use_ssl_servers_are_reached_over_tls_by_traffic_and_monitor(proxy_factory, tls_cluster: Cluster) -> None:
    # on the primary only: app and monitor may log in over TLS only
    on_primary_only(tls_cluster, "ALTER USER 'app'@'%' REQUIRE SSL")
    on_primary_only(tls_cluster, "ALTER USER 'monitor'@'%' REQUIRE SSL")
    try:
        rp = proxy_factory(cluster=tls_cluster, servers=servers(tls_cluster, 1, 0), users=USERS,
                           variables={"monitor_ping_interval": 200, "monitor_connect_interval": 300})
        assert tls_version(rp).startswith("TLSv1.")  # hostgroup 0: the primary, use_ssl=1
        assert tls_version(rp, "monitor", "monitor") == ""  # hostgroup 1: the replica, use_ssl=0
        conn = rp.connect(autocommit=True)
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS test.tls_backend (id INT PRIMARY KEY, v LONGBLOB)")
            blob = bytes(range(256)) * 40_000  # 10 MB each way through the backend's TLS
            cur.execute("REPLACE INTO test.tls_backend VALUES (1, %s)", (blob,))
            cur.execute("SELECT v FROM test.tls_backend WHERE id = 1")
            assert cur.fetchone()[0] == blob
        conn.close()

        # the monitor logs in to the primary over TLS too: its checks succeed
        def monitor_ok() -> bool:
            rows = admin_sql(rp, "SELECT port, connect_error FROM monitor.mysql_server_connect_log")
            return any(p == tls_cluster.primary.port and e is None for p, e in rows)

        wait_for("a successful monitor connect to the primary", monitor_ok)
        pings = admin_sql(rp, "SELECT ping_error FROM monitor.mysql_server_ping_log "
                              f"WHERE port = {tls_cluster.primary.port}")
        assert pings and all(e is None for (e,) in pings), pings
        assert admin_sql(rp, "SELECT hostgroup_id, port, use_ssl FROM runtime_mysql_servers ORDER BY 1") == [
            (0, tls_cluster.primary.port, 1), (1, tls_cluster.replicas[0].port, 0)]
        assert rp.wait_idle().backend_connections_in_use == 0
    finally:
        on_primary_only(tls_cluster, "ALTER USER 'app'@'%' REQUIRE NONE")
        on_primary_only(tls_cluster, "ALTER USER 'monitor'@'%' REQUIRE NONE")


def test_ssl_p2s_ca_verifies_the_server(proxy_factory, tls_cluster: Cluster, tmp_path: Path) -> None:
    ca = str(tls_cluster.tls_dir / tls.CA_FILE)
    rp = proxy_factory(cluster=tls_cluster, servers=servers(tls_cluster, 1), users=USERS,
                       variables={"ssl_p2s_ca": ca})
    assert tls_version(rp).startswith("TLSv1.")
    other = tls.load_or_create(tmp_path / "other-ca")  # a CA that did not sign the servers' certificate
    rp = proxy_factory(cluster=tls_cluster, servers=servers(tls_cluster, 1), users=USERS,
                       variables={"ssl_p2s_ca": str(other.directory / tls.CA_FILE), "connect_retries_on_failure": 0})
    with pytest.raises(pymysql.MySQLError) as info:
        tls_version(rp)
    assert info.value.args[0] == 9001 and "certificate verify failed" in info.value.args[1], info.value


def test_use_ssl_on_a_server_without_tls_is_a_clear_error(proxy_factory, cluster: Cluster) -> None:
    rp = proxy_factory(servers=[{"hostgroup_id": 0, "hostname": "127.0.0.1", "port": cluster.primary.port,
                                 "use_ssl": 1}], variables={"connect_retries_on_failure": 0})
    with pytest.raises(pymysql.MySQLError) as info:
        tls_version(rp)
    assert info.value.args[0] == 9001 and "does not offer TLS" in info.value.args[1], info.value


def test_turning_use_ssl_on_at_runtime_replaces_the_connections(proxy_factory, tls_cluster: Cluster) -> None:
    rp = proxy_factory(cluster=tls_cluster, servers=servers(tls_cluster, 0), users=USERS)
    assert tls_version(rp) == ""
    admin_sql(rp, f"UPDATE mysql_servers SET use_ssl = 1 WHERE port = {tls_cluster.primary.port}",
              "LOAD MYSQL SERVERS TO RUNTIME")
    assert tls_version(rp).startswith("TLSv1.")
    admin_sql(rp, "UPDATE mysql_servers SET use_ssl = 0", "LOAD MYSQL SERVERS TO RUNTIME")
    assert tls_version(rp) == ""
    assert rp.wait_idle().backend_connections_in_use == 0


def test_unreadable_ssl_p2s_files_stop_the_start(proxy_factory, tls_cluster: Cluster, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="proxy failed to start") as info:
        proxy_factory(cluster=tls_cluster, servers=servers(tls_cluster, 1), users=USERS,
                      variables={"ssl_p2s_ca": str(tmp_path / "missing-ca.pem")})
    assert "ssl_p2s" in str(info.value.__cause__)
