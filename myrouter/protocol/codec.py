"""Primitive encodings: fixed-size integers, length-encoded integers and strings.

``Reader`` is a bounds-checked cursor over one packet payload. Every read that
would run past the end, and every encoding that is invalid (a 0xFB or 0xFF
length prefix, a missing NUL terminator), raises ``MalformedPacket``.
"""

from __future__ import annotations

import struct

from .errors import MalformedPacket

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class Reader:
    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes | bytearray | memoryview, pos: int = 0) -> None:
        self.data = bytes(data)
        self.pos = pos
        self.end = len(self.data)

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def at_end(self) -> bool:
        return self.pos >= self.end

    def _need(self, n: int, what: str) -> int:
        p = self.pos
        if n < 0 or p + n > self.end:
            raise MalformedPacket(f"truncated {what}: need {n} bytes at offset {p}, have {self.end - p}")
        self.pos = p + n
        return p

    def u8(self) -> int:
        p = self._need(1, "int<1>")
        return self.data[p]

    def u16(self) -> int:
        p = self._need(2, "int<2>")
        return _U16.unpack_from(self.data, p)[0]

    def u24(self) -> int:
        p = self._need(3, "int<3>")
        d = self.data
        return d[p] | d[p + 1] << 8 | d[p + 2] << 16

    def u32(self) -> int:
        p = self._need(4, "int<4>")
        return _U32.unpack_from(self.data, p)[0]

    def u64(self) -> int:
        p = self._need(8, "int<8>")
        return _U64.unpack_from(self.data, p)[0]

    def fixed(self, n: int) -> bytes:
        p = self._need(n, f"string<{n}>")
        return self.data[p : p + n]

    def skip(self, n: int) -> None:
        self._need(n, f"filler<{n}>")

    def rest(self) -> bytes:
        p = self.pos
        self.pos = self.end
        return self.data[p:]

    def nul_bytes(self) -> bytes:
        """A NUL-terminated string (the NUL is consumed, not returned)."""
        i = self.data.find(b"\0", self.pos, self.end)
        if i < 0:
            raise MalformedPacket(f"missing NUL terminator for string at offset {self.pos}")
        s = self.data[self.pos : i]
        self.pos = i + 1
        return s

    def nul_or_rest(self) -> bytes:
        """A string ended by NUL or by the end of the packet (both occur in the wild)."""
        i = self.data.find(b"\0", self.pos, self.end)
        if i < 0:
            return self.rest()
        s = self.data[self.pos : i]
        self.pos = i + 1
        return s

    def lenenc_int(self) -> int:
        first = self.u8()
        if first < 0xFB:
            return first
        if first == 0xFC:
            return self.u16()
        if first == 0xFD:
            return self.u24()
        if first == 0xFE:
            return self.u64()
        raise MalformedPacket(f"invalid length-encoded integer prefix 0x{first:02x}")

    def lenenc_bytes(self) -> bytes:
        n = self.lenenc_int()
        return self.fixed(n)

    def lenenc_str(self) -> str:
        return self.lenenc_bytes().decode("utf-8", "surrogateescape")


def lenenc_int(n: int) -> bytes:
    if n < 0:
        raise ValueError("length-encoded integers are unsigned")
    if n < 0xFB:
        return bytes((n,))
    if n < 1 << 16:
        return b"\xfc" + _U16.pack(n)
    if n < 1 << 24:
        return b"\xfd" + n.to_bytes(3, "little")
    if n < 1 << 64:
        return b"\xfe" + _U64.pack(n)
    raise ValueError("integer too large for a length-encoded integer")


def lenenc_bytes(b: bytes) -> bytes:
    return lenenc_int(len(b)) + b


def lenenc_str(s: str) -> bytes:
    return lenenc_bytes(s.encode("utf-8", "surrogateescape"))


def u16(n: int) -> bytes:
    return _U16.pack(n)


def u32(n: int) -> bytes:
    return _U32.pack(n)


def u64(n: int) -> bytes:
    return _U64.pack(n)


def u24(n: int) -> bytes:
    return n.to_bytes(3, "little")
