"""codec, property-based: Reader on any bytes, and the length-encoded round trips."""

from __future__ import annotations

import random

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from myrouter.protocol import codec
from myrouter.protocol.codec import Reader
from myrouter.protocol.errors import MalformedPacket

from .feeding import INTERESTING_BYTES, PROPERTIES, time_limit, with_examples


def _legacy_lenenc_values() -> list[tuple[int]]:
    """The values the hand-rolled loop drew with random.Random(1): 20 of each bit length 0..64."""
    rng = random.Random(1)
    return [(rng.getrandbits(bits) if bits else 0,) for bits in range(65) for _ in range(20)]


U64 = st.integers(0, 2**64 - 1)
# values near every prefix boundary, plus anything
LENENC_VALUES = st.one_of(
    st.sampled_from([0, 250, 251, 0xFFFF, 0x10000, 0xFFFFFF, 0x1000000, 2**64 - 1]).flatmap(
        lambda v: st.integers(max(0, v - 2), min(2**64 - 1, v + 2))
    ),
    U64,
)


@PROPERTIES
@given(value=LENENC_VALUES)
@with_examples(_legacy_lenenc_values())
def test_lenenc_int_round_trips_in_the_shortest_form(value):
    wire = codec.lenenc_int(value)
    assert len(wire) == (1 if value < 251 else 3 if value < 1 << 16 else 4 if value < 1 << 24 else 9)
    r = Reader(wire + b"tail")
    assert r.lenenc_int() == value
    assert r.rest() == b"tail"


@PROPERTIES
@given(data=st.binary(max_size=300), tail=st.binary(max_size=8))
def test_lenenc_bytes_and_str_round_trip_any_bytes(data, tail):
    wire = codec.lenenc_bytes(data)
    r = Reader(wire + tail)
    assert r.lenenc_bytes() == data
    assert r.rest() == tail
    # text decoded with surrogateescape encodes back to the same bytes, whatever they were
    text = Reader(wire).lenenc_str()
    assert codec.lenenc_str(text) == wire


@PROPERTIES
@given(value=LENENC_VALUES, cut=st.integers(0, 8))
def test_truncated_lenenc_int_is_malformed_and_leaves_the_cursor(value, cut):
    wire = codec.lenenc_int(value)
    assume(cut < len(wire))
    r = Reader(wire[:cut])
    with pytest.raises(MalformedPacket):
        r.lenenc_int()
    # a failed read of the prefix byte itself does not move; a failed read of the value moves past the prefix only
    assert r.pos in (0, 1)


@PROPERTIES
@given(
    st.tuples(st.sampled_from(["u8", "u16", "u24", "u32", "u64"]), st.integers(0, 2**64 - 1)).map(
        lambda t: (t[0], t[1] % (1 << {"u8": 8, "u16": 16, "u24": 24, "u32": 32, "u64": 64}[t[0]]))
    )
)
def test_fixed_ints_round_trip(case):
    name, value = case
    size = {"u8": 1, "u16": 2, "u24": 3, "u32": 4, "u64": 8}[name]
    wire = bytes((value,)) if name == "u8" else getattr(codec, name)(value)
    assert len(wire) == size
    assert getattr(Reader(wire), name)() == value


READS = ["u8", "u16", "u24", "u32", "u64", "lenenc_int", "lenenc_bytes", "lenenc_str", "nul_bytes", "nul_or_rest",
         "rest", "fixed", "skip"]


@PROPERTIES
@given(
    data=st.binary(max_size=64) | st.lists(st.sampled_from(INTERESTING_BYTES) | st.integers(0, 255), max_size=40).map(bytes),
    ops=st.lists(st.tuples(st.sampled_from(READS), st.integers(-2, 70)), max_size=12),
    start=st.integers(0, 4),
)
def test_any_reads_on_any_bytes_return_or_raise_malformed_packet(data, ops, start):
    r = Reader(data, start if start <= len(data) else 0)
    with time_limit(5):
        for name, n in ops:
            before = r.pos
            try:
                if name in ("fixed", "skip"):
                    getattr(r, name)(n)
                else:
                    getattr(r, name)()
            except MalformedPacket:
                # a refused fixed-size read leaves the cursor where it was
                if name not in ("lenenc_int", "lenenc_bytes", "lenenc_str"):
                    assert r.pos == before
                else:
                    assert before <= r.pos <= r.end
                continue
            assert before <= r.pos <= r.end
            assert r.remaining == r.end - r.pos >= 0
