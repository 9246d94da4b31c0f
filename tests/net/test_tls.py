"""TLS on a PacketStream (``start_tls``) over a real socket pair, and the certificate files."""

from __future__ import annotations

import os
import socket
import ssl
import stat
from pathlib import Path

import pytest
import trio

from myrouter.net import tls
from myrouter.net.stream import ConnectionLost, PacketStream, TLSPacketStream, start_tls
from myrouter.protocol.packets import frame


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tls.TLSFiles:
    return tls.load_or_create(tmp_path_factory.mktemp("tlsdir"))


def client_context(files: tls.TLSFiles) -> ssl.SSLContext:
    """A client that verifies the proxy's certificate against the generated CA."""
    return ssl.create_default_context(cadata=files.ca.decode())


def pair() -> tuple[PacketStream, PacketStream]:
    a, b = socket.socketpair()
    return PacketStream(a), PacketStream(b)


async def both_tls(files: tls.TLSFiles) -> tuple[PacketStream, PacketStream]:
    server, client = pair()
    async with trio.open_nursery() as n:
        n.start_soon(lambda: start_tls(server, tls.server_context(files), server_side=True))
        n.start_soon(lambda: start_tls(client, client_context(files), server_side=False,
                                       server_hostname="127.0.0.1"))  # the certificate's IP name
    return server, client


async def test_packets_both_ways_including_ones_larger_than_a_tls_record(files) -> None:
    server, client = await both_tls(files)
    assert isinstance(server, TLSPacketStream) and server.tls.obj.version() in ("TLSv1.2", "TLSv1.3")
    payloads = [b"\x03SELECT 1", os.urandom(100_000), b"", os.urandom(3 * 1024 * 1024)]

    async def send_all_of_them() -> None:
        for i, p in enumerate(payloads):
            await client.send_packet(p, i)

    received = []
    async with trio.open_nursery() as n:
        n.start_soon(send_all_of_them)
        for _ in payloads:
            received.append(await server.read_packet(timeout=10))
    assert [p.payload for p in received] == payloads
    assert [p.seq for p in received] == [0, 1, 2, 3]
    # the other way, through send_nowait + send_all as the session's hot path does
    big = frame(os.urandom(5 * 1024 * 1024), 0)
    rest = server.send_nowait(big)

    async def finish() -> None:
        if rest is not None:
            await server.send_all(rest)

    got = bytearray()
    async with trio.open_nursery() as n:
        n.start_soon(finish)
        while len(got) < len(big):
            got += await client.recv_some()
    assert bytes(got) == big
    assert server.bytes_out == len(big)  # plaintext counted, as on a plain stream
    server.close()
    client.close()


async def test_client_hello_in_the_same_read_as_the_packet_before_it(files) -> None:
    """The client's first TLS bytes may arrive with its SSLRequest: the decoder hands them on."""
    server, client = pair()
    cin, cout = ssl.MemoryBIO(), ssl.MemoryBIO()
    cobj = client_context(files).wrap_bio(cin, cout, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        cobj.do_handshake()
    client.sock.sendall(frame(b"\x00" * 32, 1) + cout.read())  # one write: SSLRequest + ClientHello
    pkt = await server.read_packet(timeout=5)
    assert pkt.seq == 1 and server.decoder.buffered  # the ClientHello waits in the decoder

    async def client_side() -> None:  # the client's handshake by hand, over the raw socket
        while True:
            try:
                cobj.do_handshake()
                break
            except ssl.SSLWantReadError:
                client.sock.sendall(cout.read())
                await trio.lowlevel.wait_readable(client.sock)
                cin.write(client.sock.recv(65536))
        client.sock.sendall(cout.read())

    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            n.start_soon(lambda: start_tls(server, tls.server_context(files), server_side=True))
            n.start_soon(client_side)
    cobj.write(frame(b"\x03SELECT 2", 2))
    client.sock.sendall(cout.read())
    pkt = await server.read_packet(timeout=5)
    assert (pkt.seq, pkt.payload) == (2, b"\x03SELECT 2")
    server.close()
    client.close()


async def test_garbage_instead_of_a_client_hello_is_a_connection_lost(files) -> None:
    server, client = pair()
    client.sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(ConnectionLost, match="TLS handshake failed"):
        await start_tls(server, tls.server_context(files), server_side=True)
    server.close()
    client.close()


async def test_peer_closing_mid_handshake_is_a_connection_lost(files) -> None:
    server, client = pair()
    client.close()
    with pytest.raises(ConnectionLost):
        await start_tls(server, tls.server_context(files), server_side=True)
    server.close()


async def test_peer_closing_after_the_handshake_is_a_connection_lost(files) -> None:
    server, client = await both_tls(files)
    client.close()
    with pytest.raises(ConnectionLost):
        await server.read_packet(timeout=5)
    server.close()


def test_files_generated_once_then_reused(tmp_path: Path) -> None:
    d = tmp_path / "data"
    first = tls.load_or_create(d)
    assert sorted(p.name for p in d.iterdir()) == [tls.CA_FILE, tls.CERT_FILE, tls.KEY_FILE]
    assert stat.S_IMODE((d / tls.KEY_FILE).stat().st_mode) == 0o600
    again = tls.load_or_create(d)
    assert (again.ca, again.cert, again.key) == (first.ca, first.cert, first.key)
    tls.server_context(again)  # a usable pair (verified by name and IP in the handshakes above)


def test_in_memory_files_without_a_datadir() -> None:
    a, b = tls.load_or_create(None), tls.load_or_create(None)
    assert a.directory is None and a.cert == b.cert  # one per process
    tls.server_context(a)


def test_partial_or_broken_files_are_refused_clearly(tmp_path: Path) -> None:
    d = tmp_path / "data"
    tls.load_or_create(d)
    (d / tls.KEY_FILE).unlink()
    with pytest.raises(tls.TLSSetupError, match="myrouter-key.pem missing"):
        tls.load_or_create(d)
    (d / tls.KEY_FILE).write_bytes(b"-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----\n")
    with pytest.raises(tls.TLSSetupError, match="not a usable certificate and key pair"):
        tls.server_context(tls.load_or_create(d))
