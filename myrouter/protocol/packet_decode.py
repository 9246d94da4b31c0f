"""The packet decoder's kernel: ``PacketDecoder`` and the ``Packet`` it returns (see packets.py,
which is the module to import).

This file is plain Python and runs as such; setup.py also compiles it with Cython, the C types of
its fields and locals coming from packet_decode.pxd beside it (kernels.py: which form runs).

What the compiled form needs from the code: the buffer stays a ``bytearray`` and a whole request
is read through a ``bytes`` (typed indexing of either is a bounds-checked C read), and no method
is added or removed without its line in the .pxd.
"""

from __future__ import annotations

from typing import NamedTuple

from .constants import MAX_PACKET_PAYLOAD
from .errors import PacketTooLarge, SequenceError


def source_sha256() -> bytes:
    """SHA-256 (hex, ASCII) of the sources the compiled module was built from (setup.py defines it
    in C; see packet_decode.pxd). Plain Python has no such name: only the compiled module answers."""
    return _SOURCE_SHA256  # noqa: F821


class Packet(NamedTuple):
    seq: int  # sequence id of the first physical packet
    payload: bytes
    last_seq: int  # sequence id of the last physical packet (== seq unless split)


# Packet(...) runs the NamedTuple's Python-level __new__; the decoder builds its packets directly.
_tuple_new = tuple.__new__
_MAX_PAYLOAD = MAX_PACKET_PAYLOAD


class PacketDecoder:
    """Reassembles logical packets from bytes received in any split.

    ``feed(data)`` appends bytes; ``next_packet()`` returns the next complete
    logical packet or ``None`` when more bytes are needed. Sequence ids of the
    continuation packets of a split payload must follow each other; when
    ``expect_seq`` is set, the first packet must carry that id too
    (``SequenceError`` otherwise). A payload larger than ``max_payload`` raises
    ``PacketTooLarge`` as soon as its headers say so, before it is buffered.
    ``check_continuation = False`` accepts any sequence ids on continuation packets: under
    the compressed protocol, servers do not check them and libmariadb does not keep them
    consecutive.
    """

    __slots__ = ("_buf", "_pos", "buffered", "max_payload", "expect_seq", "check_continuation")

    def __init__(self, max_payload: int | None = None) -> None:
        self._buf = bytearray()
        self._pos = 0
        # bytes received but not yet returned as a packet: len(_buf) - _pos, kept by every change of
        # either (an attribute, not a property: the data plane asks five times per statement)
        self.buffered = 0
        self.max_payload = max_payload
        self.expect_seq: int | None = None
        self.check_continuation = True

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._pos and self._pos >= len(self._buf) // 2:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data
        self.buffered = len(self._buf) - self._pos

    def take_buffered(self) -> bytes:
        """Remove and return every byte not yet returned as a packet."""
        data = bytes(self._buf[self._pos :])
        self._buf.clear()
        self._pos = 0
        self.buffered = 0
        return data

    def receive(self, data: bytes | bytearray | memoryview) -> Packet | None:
        """``feed(data)`` then ``next_packet()``; without copying ``data`` into the buffer when
        nothing is buffered and ``data`` is exactly one packet (the usual client request)."""
        n = len(data)
        if n >= 4 and not self.buffered:
            head = data if type(data) is bytes else bytes(data[:4])
            length = head[0] | head[1] << 8 | head[2] << 16
            seq = head[3]
            if self.expect_seq is not None and seq != self.expect_seq:
                raise SequenceError(f"expected sequence id {self.expect_seq}, got {seq}")
            if self.max_payload is not None and length > self.max_payload:
                # refused from the header alone: nothing of this packet is buffered
                raise PacketTooLarge(f"payload of {length} bytes exceeds the limit of {self.max_payload}")
            if n == 4 + length and length < _MAX_PAYLOAD:
                return _tuple_new(Packet, (seq, head[4:] if head is data else bytes(data[4:]), seq))
        self.feed(data)
        return self.next_packet()

    def next_packet(self) -> Packet | None:
        buf = self._buf
        pos = self._pos
        avail = len(buf) - pos
        if avail < 4:
            return None
        length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
        seq = buf[pos + 3]
        if self.expect_seq is not None and seq != self.expect_seq:
            raise SequenceError(f"expected sequence id {self.expect_seq}, got {seq}")
        if length < _MAX_PAYLOAD:
            if self.max_payload is not None and length > self.max_payload:
                raise PacketTooLarge(f"payload of {length} bytes exceeds the limit of {self.max_payload}")
            if avail < 4 + length:
                return None
            payload = bytes(buf[pos + 4 : pos + 4 + length])
            self._pos = pos = pos + 4 + length
            self.buffered = len(buf) - pos
            return _tuple_new(Packet, (seq, payload, seq))
        # A split payload: walk the headers that have arrived so far.
        total = 0
        p = pos
        expect = seq
        while True:
            if len(buf) - p < 4:
                self._check_size(total)
                return None
            plen = buf[p] | buf[p + 1] << 8 | buf[p + 2] << 16
            pseq = buf[p + 3]
            if pseq != expect and self.check_continuation:
                raise SequenceError(f"continuation packet has sequence id {pseq}, expected {expect}")
            total += plen
            self._check_size(total)
            if len(buf) - p - 4 < plen:
                return None
            p += 4 + plen
            if plen < _MAX_PAYLOAD:
                break
            expect = (pseq + 1) & 0xFF
        parts = []
        q = pos
        while q < p:
            plen = buf[q] | buf[q + 1] << 8 | buf[q + 2] << 16
            parts.append(buf[q + 4 : q + 4 + plen])
            q += 4 + plen
        self._pos = p
        self.buffered = len(buf) - p
        return Packet(seq, b"".join(parts), pseq)

    def _check_size(self, total: int) -> None:
        if self.max_payload is not None and total > self.max_payload:
            raise PacketTooLarge(f"payload of at least {total} bytes exceeds the limit of {self.max_payload}")
