"""TLS from the proxy to the servers (mysql_servers.use_ssl, mysql-ssl_p2s_*), against a
test bed of its own whose MariaDB servers have certificates (``start_cluster(tls=True)``)."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
from conftest import admin_sql, wait_for
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from myrouter.net import tls
from myrouter_testbed.mariadb import Cluster, ensure_packages, start_cluster

NOW = datetime.datetime.now(datetime.UTC)
PEM = serialization.Encoding.PEM


class OwnCA:
    """A CA whose key the test keeps, to sign the servers' certificate and revocation lists."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "myrouter test CA")])
        self.cert = (x509.CertificateBuilder().subject_name(self.name).issuer_name(self.name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(NOW - datetime.timedelta(days=1))
                     .not_valid_after(NOW + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                  content_commitment=False, key_encipherment=False,
                                                  data_encipherment=False, key_agreement=False,
                                                  encipher_only=False, decipher_only=False), critical=True)
                     .sign(self.key, hashes.SHA256()))

    def server_files(self, directory: Path) -> x509.Certificate:
        """A server certificate for 127.0.0.1 in ``directory`` under the test bed's file names."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mariadb test bed")]))
                .issuer_name(self.name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=30))
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False)
                .sign(self.key, hashes.SHA256()))
        directory.mkdir(parents=True)
        (directory / tls.CA_FILE).write_bytes(self.cert.public_bytes(PEM))
        (directory / tls.CERT_FILE).write_bytes(cert.public_bytes(PEM))
        (directory / tls.KEY_FILE).write_bytes(key.private_bytes(PEM, serialization.PrivateFormat.PKCS8,
                                                                 serialization.NoEncryption()))
        self.server_cert = cert
        return cert

    def crl(self, *revoked: x509.Certificate) -> bytes:
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.name)
                   .last_update(NOW - datetime.timedelta(days=1)).next_update(NOW + datetime.timedelta(days=30)))
        for cert in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
                .revocation_date(NOW - datetime.timedelta(hours=1)).build())
        return builder.sign(self.key, hashes.SHA256()).public_bytes(PEM)


@pytest.fixture(scope="module")
def test_ca() -> OwnCA:
    return OwnCA()


@pytest.fixture(scope="module")
def tls_cluster(test_ca: OwnCA, tmp_path_factory) -> Iterator[Cluster]:
    """Servers with a certificate of ``test_ca`` (its ``server_cert``), which the tests can revoke."""
    ensure_packages()
    base = tmp_path_factory.mktemp("tlsbed")
    test_ca.server_files(base / "tls")  # start_cluster uses the files it finds there
    with start_cluster(replicas=1, tls=True, base_dir=base) as c:
        yield c


def hashed_dir(directory: Path, *files: tuple[str, bytes]) -> str:
    """A directory of PEM files with OpenSSL's hashed names (``<hash>.0`` certs, ``<hash>.r0`` CRLs)."""
    directory.mkdir()
    for name, data in files:
        (directory / name).write_bytes(data)
    subprocess.run([shutil.which("openssl") or "openssl", "rehash", str(directory)], check=True)
    return str(directory)


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


def test_ssl_p2s_capath_verifies_the_server(proxy_factory, tls_cluster: Cluster, test_ca: OwnCA,
                                            tmp_path: Path) -> None:
    capath = hashed_dir(tmp_path / "capath", ("ca.pem", test_ca.cert.public_bytes(PEM)))
    rp = proxy_factory(cluster=tls_cluster, servers=servers(tls_cluster, 1), users=USERS,
                       variables={"ssl_p2s_capath": capath})
    assert tls_version(rp).startswith("TLSv1.")
    other = tls.load_or_create(tmp_path / "other-ca")  # a directory of a CA that did not sign the servers'
    rp = proxy_factory(cluster=tls_cluster, servers=servers(tls_cluster, 1), users=USERS,
                       variables={"ssl_p2s_capath": hashed_dir(tmp_path / "other", ("ca.pem", other.ca)),
                                  "connect_retries_on_failure": 0})
    with pytest.raises(pymysql.MySQLError) as info:
        tls_version(rp)
    assert info.value.args[0] == 9001 and "certificate verify failed" in info.value.args[1], info.value


@pytest.mark.parametrize("form", ["crl", "crlpath"])
def test_ssl_p2s_crl_refuses_a_revoked_server_certificate(proxy_factory, tls_cluster: Cluster, test_ca: OwnCA,
                                                          tmp_path: Path, form: str) -> None:
    ca = str(tls_cluster.tls_dir / tls.CA_FILE)

    def crl_setting(name: str, crl: bytes) -> str:
        if form == "crl":
            (tmp_path / name).write_bytes(crl)
            return str(tmp_path / name)
        return hashed_dir(tmp_path / name, ("crl.pem", crl))

    # a CRL of the CA that does not list the servers' certificate: it is checked, and passes
    good = crl_setting("good", test_ca.crl())
    rp = proxy_factory(cluster=tls_cluster, servers=servers(tls_cluster, 1), users=USERS,
                       variables={"ssl_p2s_ca": ca, f"ssl_p2s_{form}": good})
    assert tls_version(rp).startswith("TLSv1.")
    # the servers' certificate revoked: refused
    revoked = crl_setting("revoked", test_ca.crl(test_ca.server_cert))
    rp = proxy_factory(cluster=tls_cluster, servers=servers(tls_cluster, 1), users=USERS,
                       variables={"ssl_p2s_ca": ca, f"ssl_p2s_{form}": revoked, "connect_retries_on_failure": 0})
    with pytest.raises(pymysql.MySQLError) as info:
        tls_version(rp)
    assert info.value.args[0] == 9001 and "certificate revoked" in info.value.args[1], info.value


def test_ssl_p2s_crl_changes_at_runtime_and_a_bad_one_is_refused(proxy_factory, tls_cluster: Cluster,
                                                                 test_ca: OwnCA, tmp_path: Path) -> None:
    ca = str(tls_cluster.tls_dir / tls.CA_FILE)
    rp = proxy_factory(cluster=tls_cluster, servers=servers(tls_cluster, 1), users=USERS,
                       variables={"ssl_p2s_ca": ca, "connect_retries_on_failure": 0})
    revoked = tmp_path / "revoked.pem"
    revoked.write_bytes(test_ca.crl(test_ca.server_cert))
    admin_sql(rp, f"SET mysql-ssl_p2s_crl = '{revoked}'", "LOAD MYSQL VARIABLES TO RUNTIME")
    with pytest.raises(pymysql.MySQLError) as info:  # no backend connection yet: the first one checks the CRL
        tls_version(rp)
    assert info.value.args[0] == 9001 and "certificate revoked" in info.value.args[1], info.value
    # refused, the running setting unchanged: a CRL without any CA, a capath that is no directory
    for sql in ("SET mysql-ssl_p2s_ca = ''", f"SET mysql-ssl_p2s_capath = '{tmp_path / 'missing'}'"):
        with pytest.raises(pymysql.MySQLError) as info:
            admin_sql(rp, sql, "LOAD MYSQL VARIABLES TO RUNTIME")
        assert info.value.args[0] == 1105 and "ssl_p2s" in info.value.args[1], info.value
        admin_sql(rp, "SAVE MYSQL VARIABLES TO MEMORY")  # runtime back to memory
    assert admin_sql(rp, "SELECT variable_value FROM runtime_global_variables "
                         "WHERE variable_name = 'mysql-ssl_p2s_ca'") == [(ca,)]
