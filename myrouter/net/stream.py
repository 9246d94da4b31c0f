"""Trio adapter: a non-blocking socket that speaks MySQL packets.

The hot path of a proxy is dominated by event-loop costs, not parsing, so this
layer works on plain stdlib sockets in non-blocking mode and tries every read
and write before waiting (``trio.lowlevel.wait_readable``/``wait_writable``).
A read that finds data ready costs one system call and no trip through the
scheduler. To stay fair to other tasks, a stream yields to the scheduler after
a run of reads that never had to wait.

All socket errors become ``ConnectionLost`` here, at one boundary.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl

import trio

from ..protocol.compression import CompressedChannel
from ..protocol.errors import MalformedPacket
from ..protocol.packets import Packet, PacketDecoder, frame
from .address import is_unix_address

RECV_SIZE = 256 * 1024
_FAIR_BUDGET = 64  # reads without waiting before a forced checkpoint
_wait_readable = trio.lowlevel.wait_readable
_wait_writable = trio.lowlevel.wait_writable


class ConnectionLost(Exception):
    """The peer closed the connection or the socket failed."""


class PacketStream:
    """A connected socket with a packet decoder.

    ``recv_some`` returns raw bytes (for forwarding responses unparsed);
    ``read_packet`` returns whole logical packets. Bytes already buffered in the
    decoder are handed out by ``recv_some`` first, so both may be mixed.
    """

    __slots__ = ("sock", "decoder", "peer", "closed", "_budget", "bytes_in", "bytes_out", "tls", "comp", "_unsent",
                 "watched_by")

    plain = True  # bytes go to the socket as they are (no TLS, no compression under the packets)

    def __init__(self, sock: socket.socket, *, max_payload: int | None = None) -> None:
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # a unix socket has no TCP_NODELAY: nothing to tune
        self.sock = sock
        self.decoder = PacketDecoder(max_payload)
        try:
            self.peer = sock.getpeername()
        except OSError:
            self.peer = None
        self.closed = False
        self._budget = _FAIR_BUDGET
        self.bytes_in = 0
        self.bytes_out = 0
        self.tls: _TLS | None = None  # set by start_tls, which also makes this a TLSPacketStream
        # set by start_compression, which also makes this a CompressedPacketStream
        self.comp: CompressedChannel | None = None
        self._unsent: bytes | memoryview = b""  # compressed bytes the socket has not taken yet
        # the engine's HostLoop while it watches this socket (frontend/dataplane.py): told before it closes
        self.watched_by = None

    def __repr__(self) -> str:
        return f"<PacketStream peer={self.peer} closed={self.closed}>"

    # -- reading ------------------------------------------------------------

    def _recv_raw(self) -> bytes | None:
        """What the socket holds now (at most RECV_SIZE bytes), or None if a read would block."""
        try:
            data = self.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise ConnectionLost(str(exc)) from exc
        if not data:
            raise ConnectionLost("connection closed by peer")
        return data

    def read_now(self) -> bytes | None:
        """Bytes from the socket now, or None if a read would block (TLS: the plaintext)."""
        data = self._recv_raw()
        if data is not None:
            self.bytes_in += len(data)
        return data

    def recv_nowait(self) -> bytes | None:
        """Bytes ready now (buffered or on the socket), or None if a read would block."""
        if self.decoder.buffered:
            return self.decoder.take_buffered()
        return self.read_now()

    async def recv_some(self) -> bytes:
        data = self.recv_nowait()
        if data is not None:
            self._budget -= 1
            if self._budget <= 0:
                self._budget = _FAIR_BUDGET
                await trio.lowlevel.checkpoint()
            return data
        while True:
            await self.wait_readable()
            data = self.recv_nowait()
            if data is not None:
                self._budget = _FAIR_BUDGET
                return data

    def buffered_now(self) -> bytes | None:
        """Bytes the decoder holds already (read with the previous response), or None."""
        if self.decoder.buffered:
            return self.decoder.take_buffered()
        if self.closed:
            raise ConnectionLost("stream is closed")
        return None

    async def wait_readable(self) -> None:
        if self.closed:
            raise ConnectionLost("stream is closed")
        try:
            await _wait_readable(self.sock)
        except trio.ClosedResourceError as exc:
            raise ConnectionLost("stream closed while waiting") from exc

    def packet_nowait(self) -> Packet | None:
        """A whole packet if one is buffered or readable now, else None."""
        dec = self.decoder
        if dec.buffered:
            pkt = dec.next_packet()
            if pkt is not None:
                return pkt
        while True:
            data = self.read_now()
            if data is None:
                return None
            pkt = dec.receive(data)
            if pkt is not None:
                return pkt

    async def read_packet(self, *, timeout: float | None = None) -> Packet:
        """The next whole packet; ``trio.TooSlowError`` if ``timeout`` seconds pass first."""
        pkt = self.packet_nowait()
        if pkt is not None:
            return pkt
        deadline = trio.current_time() + timeout if timeout is not None else float("inf")
        with trio.CancelScope(deadline=deadline) as scope:
            while True:
                await self.wait_readable()
                pkt = self.packet_nowait()
                if pkt is not None:
                    return pkt
        assert scope.cancelled_caught
        raise trio.TooSlowError

    # -- writing ------------------------------------------------------------

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        sock = self.sock
        total = len(data)
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise ConnectionLost(str(exc)) from exc
        self.bytes_out += sent
        if sent == total:
            return
        view = memoryview(data)[sent:]
        while view:
            await self._wait_writable()
            try:
                n = sock.send(view)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise ConnectionLost(str(exc)) from exc
            self.bytes_out += n
            view = view[n:]

    async def _wait_writable(self) -> None:
        """Wait until the socket takes more bytes (a send that would block is never retried blind)."""
        if self.closed:
            raise ConnectionLost("stream is closed")
        try:
            await _wait_writable(self.sock)
        except trio.ClosedResourceError as exc:
            raise ConnectionLost("stream closed while sending") from exc

    def send_nowait(self, data: bytes | bytearray | memoryview) -> memoryview | None:
        """Send what the socket takes now: None when all of ``data`` went (the usual case for
        a response that fits the socket buffer), else the rest, to finish with ``send_all``.

        A plain function: on the hot path, ``if (rest := s.send_nowait(d)) is not None: await
        s.send_all(rest)`` costs no coroutine when nothing has to wait."""
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise ConnectionLost(str(exc)) from exc
        self.bytes_out += sent
        if sent == len(data):
            return None
        return memoryview(data)[sent:]

    async def send_packet(self, payload: bytes, seq: int) -> int:
        """Frame and send one payload; return the sequence id that follows it."""
        await self.send_all(frame(payload, seq))
        return (seq + len(payload) // 0xFFFFFF + 1) & 0xFF

    # -- closing ------------------------------------------------------------

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.watched_by is not None:
            self.watched_by.remove(self.sock.fileno())
            self.watched_by = None
        trio.lowlevel.notify_closing(self.sock)
        self.sock.close()


class _TLS:
    """A TLS connection over memory buffers (``ssl.SSLObject``): what a TLSPacketStream adds."""

    __slots__ = ("obj", "incoming", "outgoing", "pending")

    def __init__(self, context: ssl.SSLContext, *, server_side: bool, server_hostname: str | None) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_side=server_side,
                                    server_hostname=server_hostname)
        self.pending = bytearray()  # ciphertext the socket has not taken yet


class TLSPacketStream(PacketStream):
    """A PacketStream after ``start_tls``: the same interface, the bytes encrypted.

    Reads decrypt everything the TLS layer holds into the packet decoder before they report
    "nothing more now", so no plaintext is ever left inside the ``SSLObject`` while the
    session waits for the socket to become readable: the plain streams' wait-on-the-socket
    logic stays right. Writes encrypt into a buffer and send what the socket takes; the
    rest goes first on the next write (``send_all`` waits for it).
    """

    __slots__ = ()

    plain = False

    def read_now(self) -> bytes | None:
        """Plaintext available now, or None if the socket has nothing (more) to read."""
        tls = self.tls
        obj = tls.obj
        chunks: list[bytes] = []
        while True:
            try:
                chunks.append(obj.read(RECV_SIZE))
                continue
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError as exc:
                raise ConnectionLost("TLS connection closed by peer") from exc
            except ssl.SSLError as exc:
                raise ConnectionLost(f"TLS error: {exc}") from exc
            if chunks:
                break
            raw = self._recv_raw()
            if raw is None:
                return None
            tls.incoming.write(raw)
        if tls.outgoing.pending:  # TLS 1.3 post-handshake messages (key update): send them along
            self._flush_nowait()
        data = b"".join(chunks)
        self.bytes_in += len(data)
        return data

    def _flush_nowait(self) -> bool:
        """Send encrypted bytes the socket takes now; True when none are left."""
        tls = self.tls
        if tls.outgoing.pending:
            tls.pending += tls.outgoing.read()
        if not tls.pending:
            return True
        try:
            sent = self.sock.send(tls.pending)
        except BlockingIOError:
            return False
        except OSError as exc:
            raise ConnectionLost(str(exc)) from exc
        del tls.pending[:sent]
        return not tls.pending

    def _encrypt(self, data: bytes | bytearray | memoryview) -> None:
        try:
            self.tls.obj.write(data)
        except ssl.SSLError as exc:
            raise ConnectionLost(f"TLS error: {exc}") from exc
        self.bytes_out += len(data)

    def send_nowait(self, data: bytes | bytearray | memoryview) -> memoryview | None:
        """Encrypt all of ``data``; None if the socket took it all, else an empty view: the
        caller's ``send_all`` of it waits until the rest has gone."""
        if data:
            self._encrypt(data)
        return None if self._flush_nowait() else memoryview(b"")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if data:
            self._encrypt(data)
        while not self._flush_nowait():
            await self._wait_writable()


async def start_tls(stream: PacketStream, context: ssl.SSLContext, *, server_side: bool,
                    server_hostname: str | None = None) -> TLSPacketStream:
    """Upgrade ``stream`` in place (the same object, now a TLSPacketStream) and run the TLS
    handshake; raises ``ConnectionLost`` if it fails. Bytes the peer sent right behind the
    packet that asked for TLS (its ClientHello, often in the same segment) are kept."""
    tls = _TLS(context, server_side=server_side, server_hostname=server_hostname)
    if stream.decoder.buffered:
        tls.incoming.write(stream.decoder.take_buffered())
    stream.tls = tls
    stream.__class__ = TLSPacketStream
    assert isinstance(stream, TLSPacketStream)
    while True:
        try:
            tls.obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as exc:
            stream._flush_nowait()  # the alert that tells the peer why, if the socket takes it
            detail = exc.reason or str(exc)
            if isinstance(exc, ssl.SSLCertVerificationError):
                detail = f"certificate verify failed: {exc.verify_message}"
            raise ConnectionLost(f"TLS handshake failed: {detail}") from exc
        await stream.send_all(b"")
        await stream.wait_readable()
        raw = stream._recv_raw()
        if raw is not None:
            tls.incoming.write(raw)
    await stream.send_all(b"")
    return stream


class _Compressed:
    """What a compressed stream adds to a plain or TLS one (CLIENT_COMPRESS, after the
    handshake): the packet stream the rest of the proxy reads and writes is the same; under
    it, reads inflate and writes deflate through the connection's ``CompressedChannel``.

    Reads inflate every compressed packet that is complete before they report "nothing more
    now", so only part of a compressed packet ever waits here, for more bytes from the
    socket: the plain streams' wait-on-the-socket logic stays right. Bytes that do not
    inflate lose the connection (``ConnectionLost``), as any transport failure does."""

    __slots__ = ()

    plain = False

    def read_now(self) -> bytes | None:
        comp = self.comp
        while True:
            data = super().read_now()
            if data is None:
                return None
            try:
                plain = comp.decode(data)
            except MalformedPacket as exc:
                raise ConnectionLost(f"bad compressed packet: {exc}") from exc
            if plain:
                return plain

    def send_nowait(self, data: bytes | bytearray | memoryview) -> memoryview | None:
        """Compress and send what the socket takes now: None if it took everything, else an
        empty view (the caller's ``send_all`` of it sends the rest, kept here)."""
        wire = self.comp.encode(data)
        if self._unsent:
            wire = bytes(self._unsent) + wire
        if not wire:  # the start of a packet whose end is still to come: kept in the channel
            return None
        rest = super().send_nowait(wire)
        if rest is None:
            self._unsent = b""
            return None
        self._unsent = rest
        return memoryview(b"")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        wire = self.comp.encode(data) if data else b""
        if self._unsent:
            wire = bytes(self._unsent) + wire
            self._unsent = b""
        await super().send_all(wire)


class CompressedPacketStream(_Compressed, PacketStream):
    """A plain PacketStream after ``start_compression``."""

    __slots__ = ()


class CompressedTLSPacketStream(_Compressed, TLSPacketStream):
    """A TLSPacketStream after ``start_compression``: compressed, then encrypted."""

    __slots__ = ()


def start_compression(stream: PacketStream, *, client_side: bool) -> PacketStream:
    """Switch ``stream`` (the same object) to the compressed protocol, right after the
    handshake's final OK. ``client_side``: the proxy is the client (a backend connection).
    A packet's size limit stays the decoder's (max_allowed_packet for clients)."""
    comp = CompressedChannel(client_side=client_side, max_payload=stream.decoder.max_payload)
    early = stream.decoder.take_buffered() if stream.decoder.buffered else b""
    stream.comp = comp
    stream.decoder.check_continuation = False
    stream.__class__ = CompressedTLSPacketStream if isinstance(stream, TLSPacketStream) else CompressedPacketStream
    if early:  # the peer's first compressed bytes came with the end of the handshake
        try:
            stream.decoder.feed(comp.decode(early))
        except MalformedPacket as exc:
            raise ConnectionLost(f"bad compressed packet: {exc}") from exc
    return stream


async def open_stream(host: str, port: int, *, timeout: float, max_payload: int | None = None) -> PacketStream:
    """Connect to host:port over TCP, or to the Unix socket at path ``host`` when ``port`` is 0,
    without blocking the event loop."""
    if is_unix_address(host, port):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address: str | tuple[str, int] = host
        where = host
    else:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        address = (host, port)
        where = f"{host}:{port}"
    sock.setblocking(False)
    try:
        with trio.fail_after(timeout):
            try:
                err = sock.connect_ex(address)
            except OSError as exc:  # e.g. a Unix socket path longer than the kernel takes
                raise ConnectionLost(f"cannot connect to {where}: {exc.strerror or exc}") from exc
            if err in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
                await trio.lowlevel.wait_writable(sock)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise ConnectionLost(f"cannot connect to {where}: {os.strerror(err)}")
    except BaseException:
        sock.close()
        raise
    return PacketStream(sock, max_payload=max_payload)
