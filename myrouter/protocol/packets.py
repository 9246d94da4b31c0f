"""Packet framing: 3-byte little-endian payload length + 1-byte sequence id.

A payload of ``MAX_PACKET_PAYLOAD`` (16 MiB - 1) bytes or more is split over
several physical packets with consecutive sequence ids; a payload whose length
is an exact multiple of that size ends with an empty packet. ``frame`` builds
the bytes; ``PacketDecoder`` reassembles logical payloads from a byte stream
fed in arbitrary pieces.
"""

from __future__ import annotations

import struct

from . import kernels
from .constants import MAX_PACKET_PAYLOAD


_HEADER = struct.Struct("<I").pack  # 3-byte length and sequence id, as one little-endian word

# The decoder is in packet_decode.py, a kernel that setup.py also compiles (kernels.py says which
# form runs); this module is the one to import.
_decode = kernels.load("protocol.packet_decode")
Packet = _decode.Packet
PacketDecoder = _decode.PacketDecoder


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
