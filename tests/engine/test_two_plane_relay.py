"""benchmarks/two_plane_relay.py relays every byte both ways, under backpressure, and closes
what it opened: a yardstick that lost or kept data would measure nothing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from myrouter_testbed.mariadb import free_ports

RELAY = Path(__file__).resolve().parents[2] / "benchmarks" / "two_plane_relay.py"


@pytest.fixture
def echo_server():
    """A threaded echo server on 127.0.0.1 (the relay's backend); its port."""
    srv = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    srv.close()


@pytest.fixture
def relay(echo_server):
    port = free_ports(1)[0]
    proc = subprocess.Popen([sys.executable, str(RELAY), str(port), str(echo_server)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield port, proc
    finally:
        proc.terminate()  # our own child, by its Popen handle
        proc.wait(10)
        proc.stdout.close()


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _roundtrip(port: int, payload: bytes) -> bytes:
    """Send ``payload`` through the relay while reading the echo; half-close; read to the end."""
    got = bytearray()
    with socket.create_connection(("127.0.0.1", port)) as c:
        def read() -> None:
            while data := c.recv(65536):
                got.extend(data)

        reader = threading.Thread(target=read)
        reader.start()
        c.sendall(payload)  # megabytes: the relay's sends fill the socket buffers (backpressure)
        c.shutdown(socket.SHUT_WR)  # forwarded to the backend, whose close comes back as our EOF
        reader.join(30)
        assert not reader.is_alive()
    return bytes(got)


def test_relays_every_byte_both_ways_and_closes_its_sockets(relay):
    port, proc = relay
    before = _open_fds(proc.pid)
    payloads = [os.urandom(3_000_000) for _ in range(6)]
    results: list[bytes | None] = [None] * len(payloads)

    def client(i: int) -> None:
        results[i] = _roundtrip(port, payloads[i])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(payloads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [r == p for r, p in zip(results, payloads)] == [True] * len(payloads)
    assert proc.poll() is None
    # both sockets of every relay closed (the last close follows the shutdown that ended our read)
    for _ in range(100):
        if _open_fds(proc.pid) == before:
            break
        time.sleep(0.05)
    assert _open_fds(proc.pid) == before
