"""packets, property-based: PacketDecoder gives the same packets however the bytes are split
(whole, one byte at a time, any cuts), and on any bytes only packets, None or its own errors."""

from __future__ import annotations

import functools
import random

from hypothesis import given
from hypothesis import strategies as st

from myrouter.protocol.errors import PacketTooLarge, SequenceError
from myrouter.protocol.packets import Packet, PacketDecoder, frame

from .feeding import (
    INTERESTING_BYTES,
    PROPERTIES,
    bytewise,
    cut_positions,
    pieces,
    random_chunks,
    time_limit,
    whole,
    with_cuts,
    with_examples,
)


def decode(chunks, *, max_payload=None, expect_seq=None, use_receive=False):
    """Packets decoded from ``chunks``, and the error class that stopped decoding (or None)."""
    d = PacketDecoder(max_payload=max_payload)
    d.expect_seq = expect_seq
    out: list[Packet] = []
    try:
        for chunk in chunks:
            if use_receive:
                p = d.receive(chunk)
                while p is not None:
                    out.append(p)
                    p = d.next_packet()
            else:
                d.feed(chunk)
                while (p := d.next_packet()) is not None:
                    out.append(p)
    except (SequenceError, PacketTooLarge) as exc:
        return out, type(exc), d
    return out, None, d


# --------------------------------------------------------------------------- valid streams

PAYLOADS = st.lists(
    st.binary(max_size=40) | st.sampled_from([0, 250, 251, 4096, 70000]).map(lambda n: bytes(range(256)) * (n // 256)
                                                                                     + bytes(n % 256)),
    max_size=12,
)


@functools.cache
def _legacy_stream() -> tuple[list[bytes], list[int]]:
    """The payloads (random.Random(7)) and the cuts (random_chunks seed 0, up to 5000 bytes) of the
    hand-rolled loop this property replaces."""
    rng = random.Random(7)
    payloads = [rng.randbytes(rng.choice((0, 1, 3, 50, 300, 70000))) for _ in range(300)]
    wire = b"".join(frame(p, i) for i, p in enumerate(payloads))
    cuts, pos = [], 0
    for chunk in random_chunks(wire, 0, 5000)[:-1]:
        pos += len(chunk)
        cuts.append(pos)
    return payloads, cuts


def wire_of(payloads: list[bytes], first_seq: int) -> bytes:
    return b"".join(frame(p, (first_seq + i) & 0xFF) for i, p in enumerate(payloads))


STREAMS = st.tuples(PAYLOADS, st.integers(0, 255)).flatmap(
    lambda t: st.tuples(st.just(t[0]), st.just(t[1]), cut_positions(wire_of(*t)))
)


@PROPERTIES
@given(stream=STREAMS)
@with_examples([((*_legacy_stream()[:1], 0, _legacy_stream()[1]),)])
def test_framed_payloads_decode_the_same_whole_bytewise_and_in_any_pieces(stream):
    payloads, first_seq, cuts = stream
    wire = wire_of(payloads, first_seq)
    expected = [Packet((first_seq + i) & 0xFF, p, (first_seq + i) & 0xFF) for i, p in enumerate(payloads)]
    feeds = [whole(wire), pieces(wire, cuts)] + ([bytewise(wire)] if len(wire) < 2000 else [])
    for chunks in feeds:
        for use_receive in (False, True):
            got, err, d = decode(chunks, use_receive=use_receive)
            assert err is None
            assert got == expected
            assert d.buffered == 0
            assert all(type(p.payload) is bytes for p in got)


@PROPERTIES
@given(case=with_cuts(st.binary(max_size=60)), extra=st.binary(max_size=8))
def test_a_partial_packet_stays_buffered_and_take_buffered_returns_it(case, extra):
    payload, cuts = case
    wire = frame(payload, 0) + extra[:3]  # less than a header after the packet
    got, err, d = decode(pieces(wire, cuts))
    assert err is None and got == [Packet(0, payload, 0)]
    assert d.buffered == len(extra[:3])
    assert d.take_buffered() == extra[:3]
    assert d.buffered == 0


# --------------------------------------------------------------------------- any bytes

GARBAGE = st.binary(max_size=40) | st.lists(st.sampled_from(INTERESTING_BYTES) | st.integers(0, 255),
                                            max_size=40).map(bytes)
LIMITS = st.sampled_from([None, 16, 1 << 20])
EXPECT = st.sampled_from([None, 0, 1])


def _legacy_garbage() -> list[tuple]:
    """The first 100 inputs of the hand-rolled loop (random.Random(11)) this property replaces."""
    rng = random.Random(11)
    out = []
    for _ in range(100):
        data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
        limit = rng.choice((None, 16, 1 << 20))
        expect = rng.choice((None, 0, 1))
        chunks = random_chunks(data, rng.randrange(1000), 9)
        cuts = [sum(len(c) for c in chunks[: i + 1]) for i in range(len(chunks) - 1)]
        out.append(((data, cuts), limit, expect))
    return out


@PROPERTIES
@given(case=with_cuts(GARBAGE), max_payload=LIMITS, expect_seq=EXPECT)
@with_examples(_legacy_garbage())
def test_any_bytes_give_packets_none_or_decoder_errors_the_same_in_any_split(case, max_payload, expect_seq):
    data, cuts = case
    with time_limit(5):
        outcomes = []
        for chunks in (whole(data), bytewise(data), pieces(data, cuts)):
            for use_receive in (False, True):
                got, err, d = decode(chunks, max_payload=max_payload, expect_seq=expect_seq, use_receive=use_receive)
                consumed = sum(4 + len(p.payload) for p in got)
                if err is None:
                    assert d.buffered == len(data) - consumed
                outcomes.append((got, err))
    assert all(o == outcomes[0] for o in outcomes), outcomes
