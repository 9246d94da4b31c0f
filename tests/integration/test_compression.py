"""The compressed protocol (CLIENT_COMPRESS, zlib) with real clients in front of the proxy
(the mariadb CLI, mysql-connector-python, mysqlclient; PyMySQL has no compression) and toward
servers whose mysql_servers row has compression > 0."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import MySQLdb
import mysql.connector
import pytest
from conftest import admin_sql
from rawclient import CLIENT_CAPS, RawClient, error_of

from myrouter.protocol.auth import native_token
from myrouter.protocol.compression import CompressedChannel, compress_packet
from myrouter.protocol.constants import Capability as C
from myrouter.protocol.messages import HandshakeResponse41
from myrouter.protocol.packets import frame
from myrouter_testbed.mariadb import Cluster, ensure_packages, start_cluster

BLOB = bytes(range(256)) * (20 * 1024 * 1024 // 256)  # 20 MiB: a payload split over two packets


def client_streams_compressed(rp) -> list[bool]:
    """For each client session of the proxy: does its connection use the compressed protocol?"""
    return rp.call(lambda: [s.client.comp is not None for s in rp.proxy.sessions.values()])


def backend_compression(cur) -> str:
    """The Compression status of the server connection that runs the statement, through the proxy."""
    cur.execute("SHOW SESSION STATUS LIKE 'Compression'")
    return cur.fetchone()[1]


def close_events(audit: Path, count: int, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        text = audit.read_text() if audit.exists() else ""
        events = [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]
        closes = [e for e in events if e["event"] == "MySQL_Client_Close"]
        if len(closes) >= count or time.monotonic() > deadline:
            return closes
        time.sleep(0.05)


def compressed_servers(cluster, compression: int = 1) -> list[dict]:
    return ([{"hostgroup_id": 0, "hostname": "127.0.0.1", "port": cluster.primary.port, "compression": compression}]
            + [{"hostgroup_id": 1, "hostname": "127.0.0.1", "port": r.port} for r in cluster.replicas])


def connector(rp, **kw):
    return mysql.connector.connect(host="127.0.0.1", port=rp.port, user="app", password="app", database="test",
                                   use_pure=True, autocommit=True, **kw)


def test_mariadb_cli_compress_sends_fewer_bytes(proxy_factory, tmp_path: Path) -> None:
    audit = tmp_path / "audit.log"
    rp = proxy_factory(variables={"auditlog_filename": str(audit)})
    sql = ("SELECT REPEAT('abc', 400000); "
           "SELECT COUNT(*), SUM(LENGTH(c)) FROM (SELECT REPEAT('r', 100) c FROM seq_1_to_50000) t")
    for flag in ("--compress", "--skip-compress"):
        r = subprocess.run(["mariadb", "-h127.0.0.1", f"-P{rp.port}", "-uapp", "-papp", "test", "--batch",
                            "--skip-column-names", flag, "-e", sql], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["abc" * 400000, "50000", "5000000"]
    compressed, plain = close_events(audit, 2)
    assert plain["bytes_sent"] > 1_200_000  # the 1.2 MB value as it is
    assert compressed["bytes_sent"] < 100_000  # the same replies deflated


def test_connector_python_compress_big_values_results_and_local_infile(proxy_factory, tmp_path: Path) -> None:
    rp = proxy_factory()
    conn = connector(rp, compress=True, allow_local_infile=True)
    try:
        assert client_streams_compressed(rp) == [True]
        cur = conn.cursor()
        cur.execute("CREATE TABLE IF NOT EXISTS test.comp_blobs (id INT PRIMARY KEY, b LONGBLOB)")
        cur.execute("REPLACE INTO test.comp_blobs VALUES (1, %s)", (BLOB,))
        cur.execute("SELECT b, LENGTH(b) FROM test.comp_blobs WHERE id = 1")
        value, length = cur.fetchone()
        assert length == len(BLOB) and bytes(value) == BLOB
        cur.execute("SELECT seq, REPEAT('r', 40) FROM seq_1_to_100000")
        rows = cur.fetchall()
        assert len(rows) == 100_000 and rows[-1] == (100_000, "r" * 40)
        data = tmp_path / "rows.tsv"
        data.write_text("".join(f"{i}\tname{i}\n" for i in range(200_000)))  # some MB: hundreds of packets
        cur.execute("DROP TABLE IF EXISTS test.comp_infile")
        cur.execute("CREATE TABLE test.comp_infile (id INT PRIMARY KEY, name VARCHAR(20))")
        cur.execute(f"LOAD DATA LOCAL INFILE '{data}' INTO TABLE test.comp_infile")
        assert cur.rowcount == 200_000
        cur.execute("SELECT COUNT(*), MAX(id) FROM test.comp_infile")
        assert cur.fetchone() == (200_000, 199_999)
        assert backend_compression(cur) == "OFF"  # the server row did not ask for it
    finally:
        conn.close()
    assert rp.wait_idle().tasks == 0


def test_mysqlclient_compress_to_a_compressed_server(proxy_factory, cluster, tmp_path: Path) -> None:
    rp = proxy_factory(servers=compressed_servers(cluster))
    conn = MySQLdb.connect(host="127.0.0.1", port=rp.port, user="app", password="app", database="test",
                           compress=True, local_infile=True, autocommit=True)
    try:
        assert client_streams_compressed(rp) == [True]
        cur = conn.cursor()
        assert backend_compression(cur) == "ON"
        cur.execute("CREATE TABLE IF NOT EXISTS test.comp_blobs (id INT PRIMARY KEY, b LONGBLOB)")
        cur.execute("REPLACE INTO test.comp_blobs VALUES (2, %s)", (BLOB,))
        cur.execute("SELECT b FROM test.comp_blobs WHERE id = 2")
        assert cur.fetchone()[0] == BLOB
        cur.execute("SELECT seq, REPEAT('m', 60) FROM seq_1_to_100000")
        assert len(cur.fetchall()) == 100_000
        data = tmp_path / "rows.tsv"
        data.write_text("".join(f"{i}\tname{i:034}\n" for i in range(200_000)))  # 9 MB: packet ids wrap
        cur.execute("DROP TABLE IF EXISTS test.comp_infile2")
        cur.execute("CREATE TABLE test.comp_infile2 (id INT PRIMARY KEY, name VARCHAR(40))")
        cur.execute(f"LOAD DATA LOCAL INFILE '{data}' INTO TABLE test.comp_infile2")
        cur.execute("SELECT COUNT(*), MAX(id) FROM test.comp_infile2")
        assert cur.fetchone() == (200_000, 199_999)
        conn.change_user("app", "app", "mysql")  # its auth exchange, compressed
        cur = conn.cursor()
        cur.execute("SELECT DATABASE(), REPEAT('u', 1000)")
        assert cur.fetchone() == ("mysql", "u" * 1000)
        cur.execute("PREPARE s FROM 'SELECT ?+1'")
        cur.execute("SET @a = 41")
        cur.execute("EXECUTE s USING @a")
        assert cur.fetchone() == (42,)
    finally:
        conn.close()
    assert rp.wait_idle().tasks == 0


def test_plain_client_to_a_compressed_server_and_prepared_statements(proxy_factory, cluster) -> None:
    rp = proxy_factory(servers=compressed_servers(cluster))
    conn = connector(rp)  # uncompressed client, compressed server connection
    try:
        assert client_streams_compressed(rp) == [False]
        cur = conn.cursor(prepared=True)
        cur.execute("SELECT ?, REPEAT(?, 1000)", (7, "p"))
        assert cur.fetchall() == [(7, "p" * 1000)]
        # COM_STMT_SEND_LONG_DATA: several commands without a reply, sent to the server at once
        cur.execute("SELECT LENGTH(?), MD5(?)", (io.BytesIO(b"L" * 300_000), 5))
        assert cur.fetchall() == [(300_000, hashlib.md5(b"5").hexdigest())]
        cur = conn.cursor()
        assert backend_compression(cur) == "ON"
        cur.execute("SELECT LENGTH(%s)", (BLOB,))
        assert cur.fetchone() == (len(BLOB),)
    finally:
        conn.close()
    assert rp.wait_idle().tasks == 0


def test_compression_turned_on_at_runtime_replaces_the_server_connections(proxy_factory) -> None:
    rp = proxy_factory()
    conn = connector(rp)
    try:
        assert backend_compression(conn.cursor()) == "OFF"
    finally:
        conn.close()
    admin_sql(rp, "UPDATE mysql_servers SET compression = 1 WHERE hostgroup_id = 0", "LOAD MYSQL SERVERS TO RUNTIME")
    conn = connector(rp)
    try:
        assert backend_compression(conn.cursor()) == "ON"
    finally:
        conn.close()


def greeting_offers_compression(rp) -> bool:
    raw = RawClient(rp.port)
    try:
        return bool(raw.read_greeting().capabilities & C.COMPRESS)
    finally:
        raw.close()


def test_have_compress_off_is_not_offered(proxy_factory) -> None:
    assert greeting_offers_compression(proxy_factory())  # on by default, as in ProxySQL
    rp = proxy_factory(variables={"have_compress": False})
    assert not greeting_offers_compression(rp)
    conn = MySQLdb.connect(host="127.0.0.1", port=rp.port, user="app", password="app", database="test",
                           compress=True)  # asks, is not given: an ordinary connection
    try:
        assert client_streams_compressed(rp) == [False]
        cur = conn.cursor()
        cur.execute("SELECT REPEAT('z', 100000)")
        assert cur.fetchone()[0] == "z" * 100000
    finally:
        conn.close()


def compressed_raw_login(rp) -> RawClient:
    """A raw client logged in with CLIENT_COMPRESS: what it sends next must be compressed."""
    raw = RawClient(rp.port)
    g = raw.read_greeting()
    assert g.capabilities & C.COMPRESS
    resp = HandshakeResponse41(CLIENT_CAPS | C.COMPRESS, 1 << 24, 45, "app", native_token(b"app", g.auth_data),
                               "test", "mysql_native_password")
    raw.send(frame(resp.encode(), 1))
    assert raw.read_packet().payload[:1] == b"\x00"  # the OK, uncompressed
    return raw


def test_bad_compressed_packets_close_that_session_only(proxy_factory) -> None:
    rp = proxy_factory(variables={"max_allowed_packet": 1024 * 1024})
    other = connector(rp, compress=True)
    garbage = b"not a zlib stream, not at all" * 4
    lying = compress_packet(frame(b"\x03SELECT 1" + b" " * 100, 0), 0)
    lying = lying[:4] + (5000).to_bytes(3, "little") + lying[7:]  # the uncompressed length lies
    huge = (100).to_bytes(3, "little") + b"\x00" + (0xFFFFFF).to_bytes(3, "little")  # claims 16 MiB
    for bad in (len(garbage).to_bytes(3, "little") + b"\x00" + (500).to_bytes(3, "little") + garbage, lying):
        raw = compressed_raw_login(rp)
        try:
            raw.send(bad)
            assert raw.is_closed()
        finally:
            raw.close()
    raw = compressed_raw_login(rp)
    try:
        raw.send(huge)  # refused on its header: ERR 1153 (compressed), then closed
        wire = b""
        while chunk := raw.sock.recv(65536):
            wire += chunk
        replies = CompressedChannel(client_side=True).decode(wire)
        assert error_of(replies[4:]) == (1153, "08S01")
    finally:
        raw.close()
    cur = other.cursor()
    cur.execute("SELECT 'still here'")
    assert cur.fetchone() == ("still here",)
    other.close()
    assert rp.wait_idle().tasks == 0


def test_raw_compressed_command_gets_a_compressed_reply(proxy_factory) -> None:
    rp = proxy_factory()
    raw = compressed_raw_login(rp)
    try:
        raw.send(compress_packet(frame(b"\x03SELECT REPEAT('w', 5000)", 0), 0))
        data = b""
        while len(data) < 7 or len(data) < 7 + int.from_bytes(data[:3], "little"):
            data += raw.sock.recv(65536)
        clen, seq, ulen = int.from_bytes(data[:3], "little"), data[3], int.from_bytes(data[4:7], "little")
        assert seq == 1  # the compressed sequence id continues from the command's 0
        assert 0 < clen < ulen  # deflated: the 5000 bytes shrink
    finally:
        raw.close()


@pytest.fixture(scope="module")
def tls_server() -> Iterator[Cluster]:
    """A MariaDB server with a certificate, for this module only."""
    ensure_packages()
    with start_cluster(replicas=0, tls=True) as c:
        yield c


def test_compressed_inside_tls_both_ways(proxy_factory, tls_server: Cluster) -> None:
    rp = proxy_factory(cluster=tls_server, variables={"have_ssl": True}, servers=[
        {"hostgroup_id": 0, "hostname": "127.0.0.1", "port": tls_server.primary.port, "use_ssl": 1,
         "compression": 1}])
    conn = connector(rp, compress=True)  # Connector/Python takes TLS when offered
    try:
        kinds = rp.call(lambda: [type(s.client).__name__ for s in rp.proxy.sessions.values()])
        assert kinds == ["CompressedTLSPacketStream"]
        cur = conn.cursor()
        cur.execute("SHOW SESSION STATUS WHERE Variable_name IN ('Compression', 'Ssl_version')")
        status = dict(cur.fetchall())
        assert status["Compression"] == "ON" and status["Ssl_version"].startswith("TLSv1.")
        cur.execute("SELECT LENGTH(%s), REPEAT('t', 300000)", (BLOB,))
        assert cur.fetchone() == (len(BLOB), "t" * 300000)
    finally:
        conn.close()
    assert rp.wait_idle().tasks == 0


def test_have_compress_switched_off_at_runtime(proxy_factory) -> None:
    rp = proxy_factory()
    admin_sql(rp, "UPDATE global_variables SET variable_value = 'false' WHERE variable_name = 'mysql-have_compress'",
              "LOAD MYSQL VARIABLES TO RUNTIME")
    assert not greeting_offers_compression(rp)


def test_mysqlclient_compressed_local_infile_to_a_plain_server(proxy_factory, tmp_path: Path) -> None:
    # the file's packets, as libmariadb numbers them when it compresses, go to an uncompressed server
    rp = proxy_factory()
    conn = MySQLdb.connect(host="127.0.0.1", port=rp.port, user="app", password="app", database="test",
                           compress=True, local_infile=True, autocommit=True)
    try:
        cur = conn.cursor()
        data = tmp_path / "rows.tsv"
        data.write_text("".join(f"{i}\tname{i:034}\n" for i in range(200_000)))
        cur.execute("DROP TABLE IF EXISTS test.comp_infile3")
        cur.execute("CREATE TABLE test.comp_infile3 (id INT PRIMARY KEY, name VARCHAR(40))")
        cur.execute(f"LOAD DATA LOCAL INFILE '{data}' INTO TABLE test.comp_infile3")
        cur.execute("SELECT COUNT(*), MAX(id) FROM test.comp_infile3")
        assert cur.fetchone() == (200_000, 199_999)
        assert backend_compression(cur) == "OFF"
    finally:
        conn.close()
