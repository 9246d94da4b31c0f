"""Bad input gets a clear MySQL error or a clean close; nothing leaks; others keep working."""

from __future__ import annotations

import socket
import threading
import time

import pymysql
import pytest

from myrouter.protocol.constants import Capability as C
from myrouter.protocol.messages import OK, HandshakeV10, column_definition
from myrouter.protocol.packets import PacketDecoder, frame
from myrouter_testbed.mariadb import start_cluster
from conftest import assert_no_leaks
from rawclient import RawClient, error_of


def healthy(conn) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        return cur.fetchone() == (1,)


def test_wrong_password_and_unknown_user(proxy):
    for user, password in (("app", "wrong"), ("nobody", "app"), ("app", "")):
        with pytest.raises(pymysql.err.OperationalError) as ei:
            proxy.connect(user=user, password=password)
        assert ei.value.args[0] == 1045
        assert f"Access denied for user '{user}'@'127.0.0.1'" in ei.value.args[1]
    raw = RawClient(proxy.port)
    code, state = error_of(raw.login(password="bad"))
    assert (code, state) == (1045, "28000")
    assert raw.is_closed()
    assert proxy.stats().access_denied == 4
    assert_no_leaks(proxy)


def test_garbage_before_auth(proxy):
    other = proxy.connect()
    raw = RawClient(proxy.port)
    raw.read_greeting()
    raw.send(b"\x07\x00\x00\x01garbage")
    assert error_of(raw.read_packet().payload) == (1043, "08S01")
    assert raw.is_closed()
    # an HTTP request: its first bytes make a header with a wrong sequence id
    raw = RawClient(proxy.port)
    raw.read_greeting()
    raw.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert error_of(raw.read_packet().payload) == (1156, "08S01")
    assert raw.is_closed()
    assert healthy(other)
    other.close()
    assert_no_leaks(proxy)


def test_garbage_after_auth(proxy):
    raw = RawClient(proxy.port)
    assert raw.login()[:1] == b"\x00"
    assert error_of(raw.command(b"\x99junk")) == (1047, "08S01")
    assert error_of(raw.command(b"")) == (1835, "HY000")
    assert error_of(raw.command(b"\x17\x01")) == (1835, "HY000")  # truncated COM_STMT_EXECUTE
    assert error_of(raw.command(b"\x08")) == (1047, "08S01")  # COM_SHUTDOWN never reaches a backend
    # the session is still usable
    assert raw.command(b"\x03SELECT 1")[:1] == b"\x01"
    raw.close()
    assert_no_leaks(proxy)


def test_packet_claiming_16mib_that_never_arrives(proxy_factory):
    proxy = proxy_factory(variables={"client_packet_timeout": 1000, "connect_timeout_client": 1500})
    other = proxy.connect()
    raw = RawClient(proxy.port)
    assert raw.login()[:1] == b"\x00"
    start = time.monotonic()
    raw.send(b"\xff\xff\xff\x00\x03SELECT ")  # 16 MiB - 1 announced, a few bytes sent
    assert error_of(raw.read_packet().payload) == (1159, "08S01")
    assert raw.is_closed()
    assert time.monotonic() - start < 5
    # the same before authentication: bounded by connect_timeout_client
    raw = RawClient(proxy.port)
    raw.read_greeting()
    start = time.monotonic()
    raw.send(b"\xff\xff\xff\x01\x00")
    assert raw.is_closed(timeout=10)
    assert time.monotonic() - start < 5
    assert healthy(other)
    other.close()
    assert_no_leaks(proxy)


def test_out_of_order_sequence_ids(proxy):
    raw = RawClient(proxy.port)
    assert raw.login()[:1] == b"\x00"
    assert error_of(raw.command(b"\x03SELECT 1", seq=3)) == (1156, "08S01")
    assert raw.is_closed()
    assert_no_leaks(proxy)


def test_oversized_packet(proxy_factory):
    proxy = proxy_factory(variables={"max_allowed_packet": 1024 * 1024})
    raw = RawClient(proxy.port)
    assert raw.login()[:1] == b"\x00"
    big = b"\x03SELECT '" + b"x" * (2 * 1024 * 1024) + b"'"
    raw.send(frame(big, 0)[:65536])  # the header already says 2 MiB: the rest never needs sending
    assert error_of(raw.read_packet().payload) == (1153, "08S01")
    assert raw.is_closed()
    conn = proxy.connect()
    assert healthy(conn)
    conn.close()
    assert_no_leaks(proxy)


def test_oversized_packet_pipelined_behind_a_command(proxy_factory):
    """The oversized header arrives in the same read as a good command: the command is answered,
    then the oversized packet gets its error (the decoder raises while taking a buffered packet)."""
    proxy = proxy_factory(variables={"max_allowed_packet": 1024 * 1024})
    raw = RawClient(proxy.port)
    assert raw.login()[:1] == b"\x00"
    big = b"\x03SELECT '" + b"x" * (2 * 1024 * 1024) + b"'"
    raw.send(frame(b"\x0e", 0) + frame(big, 0)[:1024])  # COM_PING, then the start of a 2 MiB packet
    assert raw.read_packet().payload[:1] == b"\x00"  # the ping's OK
    assert error_of(raw.read_packet().payload) == (1153, "08S01")
    assert raw.is_closed()
    assert_no_leaks(proxy)


def test_client_disconnects_in_the_middle_of_a_large_result(proxy):
    other = proxy.connect()
    raw = RawClient(proxy.port)
    assert raw.login()[:1] == b"\x00"
    raw.send(frame(b"\x03SELECT seq, REPEAT('x', 100) FROM seq_1_to_2000000", 0))
    got = 0
    while got < 200_000:
        got += len(raw.sock.recv(65536))
    raw.close()
    assert healthy(other)
    other.close()
    assert_no_leaks(proxy)


def test_backend_stopped_while_client_waits(proxy_factory, no_rules):
    with start_cluster(replicas=0) as small:
        proxy = proxy_factory(cluster=small, variables={"connect_timeout_server": 1000}, rules_dir=no_rules)
        conn = proxy.connect()
        result: dict = {}

        def run():
            start = time.monotonic()
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT SLEEP(20)")
                    result["rows"] = cur.fetchall()
            except pymysql.MySQLError as exc:
                result["error"] = exc
            result["elapsed"] = time.monotonic() - start

        t = threading.Thread(target=run)
        t.start()
        time.sleep(0.5)
        small.primary.kill()
        t.join(15)
        assert "error" in result, result
        assert result["error"].args[0] == 1158, result
        assert "Lost connection to backend" in result["error"].args[1]
        assert result["elapsed"] < 5
        # the session is still usable: its next statement tries to reconnect and says why it cannot
        with pytest.raises(pymysql.err.OperationalError) as ei:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
        assert ei.value.args[0] == 9001
        small.primary.start()
        with conn.cursor() as cur:
            cur.execute("SELECT 2")
            assert cur.fetchone() == (2,)
        conn.close()
        assert_no_leaks(proxy)


def test_idle_session_closed_after_wait_timeout(proxy_factory):
    proxy = proxy_factory(variables={"wait_timeout": 1500})
    idle = RawClient(proxy.port)
    assert idle.login()[:1] == b"\x00"
    busy = proxy.connect()
    start = time.monotonic()
    for _ in range(6):  # an active session is not reaped
        assert healthy(busy)
        time.sleep(0.5)
    assert idle.is_closed(timeout=5)
    assert 1.4 < time.monotonic() - start < 6
    assert healthy(busy)
    busy.close()
    assert_no_leaks(proxy)


class GarbageServer:
    """A backend that logs anyone in, then answers every query with an invalid result set.

    It stands in for a broken or hostile server: real MariaDB never sends such bytes, so
    only a hand-made peer can show that the proxy answers with an error and recovers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        dec = PacketDecoder()

        def read():
            while (pkt := dec.next_packet()) is None:
                data = conn.recv(65536)
                if not data:
                    raise ConnectionError
                dec.feed(data)
            return pkt

        try:
            caps = (C.LONG_PASSWORD | C.PROTOCOL_41 | C.SECURE_CONNECTION | C.PLUGIN_AUTH | C.TRANSACTIONS
                    | C.MULTI_RESULTS | C.PS_MULTI_RESULTS | C.CONNECT_WITH_DB)
            greeting = HandshakeV10("5.5.5-10.11.0-Garbage", 7, b"x" * 20, caps, 45, 2, "mysql_native_password")
            conn.sendall(frame(greeting.encode(), 0))
            pkt = read()
            conn.sendall(frame(OK().encode(caps), pkt.seq + 1))
            while True:
                read()
                # one column, its definition, then a 3-byte "EOF" where a 5-byte one must be
                conn.sendall(frame(b"\x01", 1) + frame(column_definition("c"), 2) + frame(b"\xfe\x00\x00", 3))
        except (ConnectionError, OSError):
            conn.close()

    def close(self) -> None:
        self.sock.close()


def test_backend_sending_garbage_gets_an_error_and_is_dropped(proxy_factory, no_rules):
    bad = GarbageServer()
    try:
        proxy = proxy_factory(servers=[{"hostgroup_id": 0, "hostname": "127.0.0.1", "port": bad.port}],
                              rules_dir=no_rules,
                              # the monitor's own connections would count too
                              variables={"server_version": "8.0.35", "monitor_enabled": False})
        raw = RawClient(proxy.port)
        assert raw.login(database="")[:1] == b"\x00"
        for _ in range(2):  # the broken connection is not reused: each statement gets a fresh one
            reply = raw.command(b"\x03SELECT 1")
            assert error_of(reply) == (1158, "08S01")
            assert b"expected an EOF packet" in reply
        # one per statement, plus the first: the proxy's read of the character-set table got garbage too,
        # so that connection was dropped (and SET NAMES is left to the server)
        assert bad.connections == 3
        assert raw.command(b"\x0e")[:1] == b"\x00"  # the session itself is fine (COM_PING)
        raw.close()
        assert_no_leaks(proxy)
    finally:
        bad.close()
