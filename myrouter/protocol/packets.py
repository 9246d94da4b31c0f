"""Packet framing: 3-byte little-endian payload length + 1-byte sequence id.

A payload of ``MAX_PACKET_PAYLOAD`` (16 MiB - 1) bytes or more is split over
several physical packets with consecutive sequence ids; a payload whose length
is an exact multiple of that size ends with an empty packet. ``frame`` builds
the bytes; ``PacketDecoder`` reassembles logical payloads from a byte stream
fed in arbitrary pieces.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .constants import MAX_PACKET_PAYLOAD
from .errors import PacketTooLarge, SequenceError


_HEADER = struct.Struct("<I").pack  # 3-byte length and sequence id, as one little-endian word


class Packet(NamedTuple):
    seq: int  # sequence id of the first physical packet
    payload: bytes
    last_seq: int  # sequence id of the last physical packet (== seq unless split)


# Packet(...) runs the NamedTuple's Python-level __new__; the decoder builds its packets directly.
_tuple_new = tuple.__new__


def frame(payload: bytes | bytearray | memoryview, seq: int) -> bytes:
    """Frame one logical payload starting at sequence id ``seq``."""
    n = len(payload)
    if n < MAX_PACKET_PAYLOAD:
        if type(payload) is not bytes:
            payload = bytes(payload)
        return _HEADER(n | (seq & 0xFF) << 24) + payload
    parts = []
    view = memoryview(payload)
    pos = 0
    while True:
        chunk = view[pos : pos + MAX_PACKET_PAYLOAD]
        parts.append(len(chunk).to_bytes(3, "little") + bytes(((seq & 0xFF),)))
        parts.append(chunk.tobytes())
        seq += 1
        pos += len(chunk)
        if len(chunk) < MAX_PACKET_PAYLOAD:
            break
    return b"".join(parts)


def packets_needed(payload_len: int) -> int:
    """How many physical packets ``frame`` produces for a payload of this length."""
    return payload_len // MAX_PACKET_PAYLOAD + 1


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
            length = data[0] | data[1] << 8 | data[2] << 16
            seq = data[3]
            if self.expect_seq is not None and seq != self.expect_seq:
                raise SequenceError(f"expected sequence id {self.expect_seq}, got {seq}")
            if self.max_payload is not None and length > self.max_payload:
                # refused from the header alone: nothing of this packet is buffered
                raise PacketTooLarge(f"payload of {length} bytes exceeds the limit of {self.max_payload}")
            if n == 4 + length and length < MAX_PACKET_PAYLOAD:
                return _tuple_new(Packet, (seq, data[4:] if type(data) is bytes else bytes(data[4:]), seq))
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
        if length < MAX_PACKET_PAYLOAD:
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
            if plen < MAX_PACKET_PAYLOAD:
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
