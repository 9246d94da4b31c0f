"""The compressed protocol (CLIENT_COMPRESS, zlib), sans-I/O.

After the handshake's final OK, both directions of a connection that negotiated
CLIENT_COMPRESS carry compressed packets: a 7-byte header (3 bytes compressed
payload length, 1 byte compressed sequence id, 3 bytes uncompressed length) and
a payload that is a zlib stream, or the bytes themselves when the uncompressed
length is 0 (small payloads, under ``MIN_COMPRESS_LENGTH`` bytes, and payloads
zlib does not shrink). The payload is a piece of the ordinary packet stream:
one or more whole MySQL packets with their own 4-byte headers, or a piece of a
packet of 16 MiB or more.

The compressed sequence id counts compressed packets, independently of the
packets inside, and is reset with each command as theirs is: a client starts
each command at 0; everyone else continues from the last id received.

``CompressedChannel`` turns received bytes into the plain packet stream
(``decode``) and the plain packet stream into compressed packets (``encode``).
Outgoing compressed packets hold whole packets (a packet larger than a compressed
packet's cap is split, beginning at its header), because some clients
(Connector/Python) cannot read a packet header split across compressed packets.
"""

from __future__ import annotations

import zlib

from .errors import MalformedPacket, PacketTooLarge

COMPRESSED_HEADER_SIZE = 7
MIN_COMPRESS_LENGTH = 50  # payloads shorter than this go uncompressed (MySQL's threshold)
MAX_COMPRESSED_CHUNK = 0xFFFFFF  # the uncompressed length field is 3 bytes
# zlib's level for what the proxy sends. MySQL uses zlib's default (6); 3 costs the proxy's
# single core less for nearly the same ratio on result sets.
ZLIB_LEVEL = 3
# A zlib stream of incompressible bytes is a little longer than the bytes: a compressed
# length may pass the limit on the uncompressed length by this much.
_ZLIB_OVERHEAD = 1024


def _header(compressed_len: int, seq: int, uncompressed_len: int) -> bytes:
    return (compressed_len | (seq & 0xFF) << 24).to_bytes(4, "little") + uncompressed_len.to_bytes(3, "little")


def compress_packet(data: bytes | bytearray | memoryview, seq: int, level: int = ZLIB_LEVEL) -> bytes:
    """One compressed packet holding ``data`` (at most ``MAX_COMPRESSED_CHUNK`` bytes)."""
    n = len(data)
    if n >= MIN_COMPRESS_LENGTH:
        packed = zlib.compress(data, level)
        if len(packed) < n:
            return _header(len(packed), seq, n) + packed
    return _header(n, seq, 0) + bytes(data)


class CompressedChannel:
    """The compression layer of one connection: its compressed sequence id and buffers.

    ``client_side``: this end sends commands (the proxy toward a backend), so a
    packet with sequence id 0 it sends starts a new command and resets the compressed
    sequence id. ``max_payload`` refuses (``PacketTooLarge``) a received compressed
    packet whose header claims more bytes than a packet may have, before inflating it.
    """

    __slots__ = ("client_side", "max_payload", "level", "seq", "_inbuf", "_outbuf", "_carry", "_last_sent_seq")

    def __init__(self, *, client_side: bool, max_payload: int | None = None, level: int = ZLIB_LEVEL) -> None:
        self.client_side = client_side
        self.max_payload = max_payload
        self.level = level
        self.seq = 0  # the compressed sequence id of the next compressed packet sent
        self._inbuf = bytearray()  # received bytes of an incomplete compressed packet
        self._outbuf = bytearray()  # plain bytes not sent yet: the start of an incomplete packet
        self._carry = 0  # where the next packet header is in _outbuf (> 0: inside a packet partly sent)
        self._last_sent_seq: int | None = None  # sequence id of the last packet sent, until something is received

    # -- receiving --------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Received bytes of a compressed packet not complete yet."""
        return len(self._inbuf)

    def decode(self, data: bytes | bytearray | memoryview) -> bytes:
        """Feed received bytes; return the plain bytes of every compressed packet now
        complete (``b""`` if none is). Raises ``MalformedPacket`` for a payload that does
        not inflate to its stated length, ``PacketTooLarge`` past ``max_payload``."""
        buf = self._inbuf
        buf += data
        out = []
        pos = 0
        n = len(buf)
        while n - pos >= COMPRESSED_HEADER_SIZE:
            clen = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
            seq = buf[pos + 3]
            ulen = buf[pos + 4] | buf[pos + 5] << 8 | buf[pos + 6] << 16
            self._check_size(clen, ulen)
            end = pos + COMPRESSED_HEADER_SIZE + clen
            if end > n:
                break
            body = memoryview(buf)[pos + COMPRESSED_HEADER_SIZE : end]
            try:
                out.append(bytes(body) if ulen == 0 else _inflate(body, ulen))
            finally:
                body.release()
            self.seq = (seq + 1) & 0xFF
            pos = end
        if pos:
            del buf[:pos]
        if not out:
            return b""
        self._last_sent_seq = None
        return out[0] if len(out) == 1 else b"".join(out)

    def _check_size(self, clen: int, ulen: int) -> None:
        limit = self.max_payload
        if limit is None:
            return
        limit += 4  # a packet header
        if ulen > limit or clen > limit + _ZLIB_OVERHEAD:
            raise PacketTooLarge(
                f"compressed packet of {max(clen, ulen)} bytes exceeds the limit of {self.max_payload}")

    # -- sending ----------------------------------------------------------------

    def encode(self, data: bytes | bytearray | memoryview) -> bytes:
        """Compressed packets for ``data``, the next bytes of the plain packet stream. The
        end of an incomplete packet is kept until the rest comes with a later call."""
        buf = self._outbuf
        if (self.client_side and not buf and not self._carry and len(data) >= 4 and data[3] == 0
                and self._last_sent_seq != 255):
            self.seq = 0  # a new command (not the packet after 255 of a LOCAL INFILE upload)
        buf += data
        n = len(buf)
        out = []
        start = 0  # where the next compressed packet's content begins
        cur = self._carry  # the next packet header at or after start (may lie beyond n)
        while True:
            end = -1  # the furthest packet boundary that fits in one compressed packet from start
            while cur <= n and cur - start <= MAX_COMPRESSED_CHUNK:
                end = cur
                if cur + 4 > n:
                    break
                self._last_sent_seq = buf[cur + 3]
                cur += 4 + (buf[cur] | buf[cur + 1] << 8 | buf[cur + 2] << 16)
            if end > start:
                stop = end
            elif cur - start > MAX_COMPRESSED_CHUNK and n - start >= MAX_COMPRESSED_CHUNK:
                stop = start + MAX_COMPRESSED_CHUNK  # a packet too big for one: its first piece
            else:
                break
            with memoryview(buf) as view:
                out.append(compress_packet(view[start:stop], self.seq, self.level))
            self.seq = (self.seq + 1) & 0xFF
            start = stop
        if start:
            del buf[:start]
        self._carry = cur - start
        if not out:
            return b""
        return out[0] if len(out) == 1 else b"".join(out)

    @property
    def pending(self) -> int:
        """Plain bytes held back: the beginning of a packet whose end has not been sent yet."""
        return len(self._outbuf)


def _inflate(body: memoryview, ulen: int) -> bytes:
    """Inflate one zlib stream that must give exactly ``ulen`` bytes, never more."""
    d = zlib.decompressobj()
    try:
        plain = d.decompress(body, ulen)
    except zlib.error as exc:
        raise MalformedPacket(f"compressed packet does not inflate: {exc}") from exc
    if len(plain) != ulen or not d.eof or d.unconsumed_tail or d.unused_data:
        raise MalformedPacket(f"compressed packet does not inflate to its stated {ulen} bytes")
    return plain
