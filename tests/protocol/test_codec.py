"""codec: fixed and length-encoded integers and strings, and the bounds-checked Reader."""

from __future__ import annotations

import pytest

from myrouter.protocol import codec
from myrouter.protocol.codec import Reader
from myrouter.protocol.errors import MalformedPacket, ProtocolError

from .feeding import time_limit

# value -> its exact wire encoding (the boundaries of every prefix)
LENENC_INTS = [
    (0, b"\x00"),
    (1, b"\x01"),
    (250, b"\xfa"),
    (251, b"\xfc\xfb\x00"),
    (252, b"\xfc\xfc\x00"),
    (0xFFFF, b"\xfc\xff\xff"),
    (0x10000, b"\xfd\x00\x00\x01"),
    (0xFFFFFF, b"\xfd\xff\xff\xff"),
    (0x1000000, b"\xfe\x00\x00\x00\x01\x00\x00\x00\x00"),
    (0xFFFFFFFF, b"\xfe\xff\xff\xff\xff\x00\x00\x00\x00"),
    (2**64 - 1, b"\xfe\xff\xff\xff\xff\xff\xff\xff\xff"),
]


@pytest.mark.parametrize(("value", "wire"), LENENC_INTS, ids=[hex(v) for v, _ in LENENC_INTS])
def test_lenenc_int_encodes_to_the_exact_bytes(value, wire):
    assert codec.lenenc_int(value) == wire


@pytest.mark.parametrize(("value", "wire"), LENENC_INTS, ids=[hex(v) for v, _ in LENENC_INTS])
def test_lenenc_int_decodes_and_consumes_exactly_its_bytes(value, wire):
    r = Reader(wire + b"\xaa\xbb")  # trailing bytes stay for the next read
    assert r.lenenc_int() == value
    assert r.pos == len(wire)
    assert r.remaining == 2
    assert r.u8() == 0xAA


@pytest.mark.parametrize(("value", "wire"), LENENC_INTS, ids=[hex(v) for v, _ in LENENC_INTS])
def test_lenenc_int_truncated_at_every_byte_is_malformed(value, wire):
    for i in range(len(wire)):
        with pytest.raises(MalformedPacket):
            Reader(wire[:i]).lenenc_int()


@pytest.mark.parametrize("prefix", [0xFB, 0xFF])
def test_lenenc_int_invalid_prefixes(prefix):
    # 0xFB is NULL in a text row and 0xFF starts an ERR packet: neither is an integer
    with pytest.raises(MalformedPacket, match=f"0x{prefix:02x}"):
        Reader(bytes((prefix,)) + b"\x00" * 8).lenenc_int()
    with pytest.raises(MalformedPacket):
        Reader(bytes((prefix,)) + b"\x00" * 8).lenenc_bytes()


@pytest.mark.parametrize("value", [-1, 2**64, 2**70])
def test_lenenc_int_out_of_range_is_a_value_error(value):
    with pytest.raises(ValueError):
        codec.lenenc_int(value)


STRING_LENGTHS = [0, 1, 250, 251, 0xFFFF, 0x10000, 0x10001, 0xFFFFFF, 0x1000000]


@pytest.mark.parametrize("n", STRING_LENGTHS, ids=[hex(n) for n in STRING_LENGTHS])
def test_lenenc_bytes_round_trip_at_prefix_boundaries(n):
    data = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
    wire = codec.lenenc_bytes(data)
    assert wire[: len(codec.lenenc_int(n))] == codec.lenenc_int(n)
    assert len(wire) == len(codec.lenenc_int(n)) + n
    r = Reader(wire + b"\x07")
    assert r.lenenc_bytes() == data
    assert r.u8() == 7 and r.at_end()


@pytest.mark.parametrize("n", [0, 5, 251, 0x10000])
def test_lenenc_bytes_truncated_body_is_malformed(n):
    wire = codec.lenenc_bytes(b"x" * n)
    # every cut: inside the prefix, and (coarsely for the long ones) inside the body
    cuts = set(range(min(len(wire), 300))) | set(range(0, len(wire), 997)) | {len(wire) - 1}
    for i in sorted(cuts):
        if i >= len(wire):
            continue
        with pytest.raises(MalformedPacket):
            Reader(wire[:i]).lenenc_bytes()


def test_lenenc_length_far_beyond_the_packet_is_malformed_not_a_huge_allocation():
    with time_limit(2):
        with pytest.raises(MalformedPacket):
            Reader(b"\xfe" + b"\xff" * 8 + b"abc").lenenc_bytes()


@pytest.mark.parametrize(
    "text",
    ["", "plain", "é ü 漢字 🐬", "x" * 300, "\udcff\udcfe"],  # the last: invalid UTF-8 kept as surrogate escapes
    ids=["empty", "ascii", "unicode", "long", "surrogates"],
)
def test_lenenc_str_round_trip(text):
    wire = codec.lenenc_str(text)
    r = Reader(wire)
    assert r.lenenc_str() == text
    assert r.at_end()


def test_lenenc_str_of_invalid_utf8_does_not_raise():
    assert Reader(b"\x02\xff\xfe").lenenc_str() == "\udcff\udcfe"


FIXED = [
    ("u8", None, 1, [0, 1, 0x7F, 0xFF]),
    ("u16", codec.u16, 2, [0, 1, 0x1234, 0xFFFF]),
    ("u24", codec.u24, 3, [0, 1, 0x123456, 0xFFFFFF]),
    ("u32", codec.u32, 4, [0, 1, 0x12345678, 0xFFFFFFFF]),
    ("u64", codec.u64, 8, [0, 1, 0x123456789ABCDEF0, 2**64 - 1]),
]


@pytest.mark.parametrize(("name", "writer", "size", "values"), FIXED, ids=[f[0] for f in FIXED])
def test_fixed_ints_little_endian_round_trip_and_truncation(name, writer, size, values):
    for v in values:
        wire = writer(v) if writer else bytes((v,))
        assert wire == v.to_bytes(size, "little")
        r = Reader(wire + b"\x01")
        assert getattr(r, name)() == v
        assert r.pos == size
        for i in range(size):
            with pytest.raises(MalformedPacket, match="truncated"):
                getattr(Reader(wire[:i]), name)()


def test_fixed_skip_rest():
    r = Reader(b"abcdefgh")
    assert r.fixed(3) == b"abc"
    r.skip(2)
    assert r.rest() == b"fgh"
    assert r.at_end() and r.remaining == 0
    assert r.rest() == b""
    assert r.fixed(0) == b""
    with pytest.raises(MalformedPacket):
        r.fixed(1)
    with pytest.raises(MalformedPacket):
        r.skip(1)


def test_negative_lengths_are_malformed():
    r = Reader(b"abc")
    with pytest.raises(MalformedPacket):
        r.fixed(-1)
    with pytest.raises(MalformedPacket):
        r.skip(-1)
    assert r.pos == 0


def test_failed_read_does_not_move_the_cursor():
    r = Reader(b"\x01\x02\x03")
    r.u8()
    with pytest.raises(MalformedPacket):
        r.u32()
    assert r.pos == 1
    assert r.u16() == 0x0302


def test_nul_bytes():
    r = Reader(b"user\x00db\x00\x00tail")
    assert r.nul_bytes() == b"user"
    assert r.nul_bytes() == b"db"
    assert r.nul_bytes() == b""
    with pytest.raises(MalformedPacket, match="NUL"):
        r.nul_bytes()
    assert r.rest() == b"tail"


def test_nul_bytes_does_not_look_past_the_end_of_the_reader():
    r = Reader(b"abc\x00", 0)
    r.end = 3  # a reader limited to b"abc": the NUL after it is not its own
    with pytest.raises(MalformedPacket):
        r.nul_bytes()


def test_missing_nul_is_malformed_at_once_even_when_long():
    with time_limit(2):
        with pytest.raises(MalformedPacket):
            Reader(b"x" * 5_000_000).nul_bytes()


def test_nul_or_rest():
    r = Reader(b"a\x00bc")
    assert r.nul_or_rest() == b"a"
    assert r.nul_or_rest() == b"bc"
    assert r.at_end()
    assert r.nul_or_rest() == b""


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_reader_accepts_any_buffer_and_copies_it(kind):
    src = bytearray(b"\x03abc")
    r = Reader(kind(src))
    src[1:4] = b"xyz"  # the reader does not see later changes of the caller's buffer
    assert r.lenenc_bytes() == b"abc"


def test_reader_start_offset():
    r = Reader(b"\xff\xff\x02hi", 2)
    assert r.lenenc_str() == "hi"
    assert r.remaining == 0


def test_malformed_is_a_protocol_error():
    assert issubclass(MalformedPacket, ProtocolError)
