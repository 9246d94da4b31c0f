"""packet_decode, the packet decoder's kernel: the compiled module is the one packets.py exports under
``make test``, and it behaves as its Python source does, observable for observable (packets, errors
and their messages, ``buffered``, what stays buffered), on any bytes in any split and any input type,
with any ``max_payload``, ``expect_seq`` and ``check_continuation``, payloads of 16 MiB and more
included. test_packets.py and test_packets_properties.py test the form packets.py exports."""

from __future__ import annotations

import importlib.machinery

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from myrouter.protocol import kernels, packets
from myrouter.protocol.constants import MAX_PACKET_PAYLOAD as MAX
from myrouter.protocol.packets import frame

from .feeding import INTERESTING_BYTES, PROPERTIES, cut_positions, mutated, pieces, time_limit

COMPILED = packets._decode
PYTHON = kernels.load_python("protocol.packet_decode")


def test_the_compiled_decoder_is_the_one_exported():
    if kernels.pure_forced():
        pytest.skip(f"{kernels.PURE_ENV} is set: the Python form is the one asked for")
    assert isinstance(COMPILED.__loader__, importlib.machinery.ExtensionFileLoader), kernels.describe()
    assert packets.PacketDecoder is COMPILED.PacketDecoder and packets.Packet is COMPILED.Packet
    assert "protocol.packet_decode compiled" in kernels.describe()
    assert PYTHON is not COMPILED and PYTHON.__file__.endswith("packet_decode.py")


@pytest.mark.parametrize("module", [COMPILED, PYTHON], ids=["compiled", "python"])
def test_settings_are_readable_and_writable_from_python(module):
    d = module.PacketDecoder(max_payload=100)
    assert (d.buffered, d.max_payload, d.expect_seq, d.check_continuation) == (0, 100, None, True)
    d.max_payload, d.expect_seq, d.check_continuation = None, 3, False
    assert (d.max_payload, d.expect_seq, d.check_continuation) == (None, 3, False)
    d.feed(b"\x01\x00")
    assert d.buffered == 2
    p = module.PacketDecoder().receive(frame(b"\x03x", 7))
    assert isinstance(p, module.Packet) and (p.seq, p.payload, p.last_seq) == (7, b"\x03x", 7)


OPS = st.sampled_from(["receive", "feed"])
INPUT_TYPES = st.sampled_from([bytes, bytearray, memoryview])
LIMITS = st.sampled_from([None, 0, 16, 1 << 20, MAX + 10])
EXPECT = st.sampled_from([None, 0, 1, 255])
# between two reads: leave expect_seq alone, or set it (the handshake does)
EXPECT_CHANGES = st.sampled_from(["keep", None, 0, 1, 2])


def _run(decoder, chunks, steps):
    """Feed ``chunks`` as the data plane and PacketStream do (``receive``, or ``feed`` then
    ``next_packet``, then ``next_packet`` while packets come); the observations after each read,
    errors included (reading goes on after one: the state it left is compared too)."""
    seen = []
    for chunk, (op, as_type, expect_change) in zip(chunks, steps):
        if expect_change != "keep":
            decoder.expect_seq = expect_change
        data = as_type(chunk)
        try:
            if op == "receive":
                p = decoder.receive(data)
            else:
                decoder.feed(data)
                p = decoder.next_packet()
            while p is not None:
                seen.append(("packet", type(p).__name__, p.seq, p.payload, p.last_seq, type(p.payload)))
                p = decoder.next_packet()
        except Exception as exc:  # noqa: BLE001 - the exception itself is what is compared
            seen.append(("raised", type(exc), str(exc)))
        seen.append(("after", decoder.buffered, decoder.expect_seq, decoder.max_payload))
    rest = decoder.take_buffered()
    seen.append(("rest", rest, type(rest), decoder.buffered))
    return seen


def assert_same(wire, cuts, steps, max_payload, expect_seq, check_continuation):
    chunks = pieces(wire, cuts)
    steps = (steps * (len(chunks) // len(steps) + 1))[: len(chunks)]
    observed = []
    with time_limit(30):
        for module in (COMPILED, PYTHON):
            d = module.PacketDecoder(max_payload)
            d.expect_seq = expect_seq
            d.check_continuation = check_continuation
            observed.append(_run(d, chunks, steps))
    assert observed[0] == observed[1]


STEPS = st.lists(st.tuples(OPS, INPUT_TYPES, EXPECT_CHANGES | st.just("keep")), min_size=1, max_size=8)
PAYLOADS = st.lists(st.binary(max_size=40) | st.sampled_from([b"", b"\x03" * 300, bytes(70000)]), max_size=6)
GARBAGE = st.binary(max_size=40) | st.lists(st.sampled_from(INTERESTING_BYTES) | st.integers(0, 255),
                                            max_size=40).map(bytes)


@st.composite
def small_streams(draw):
    """Valid packets (consecutive sequence ids from any start), damaged ones, or any bytes."""
    first = draw(st.integers(0, 255))
    wire = b"".join(frame(p, (first + i) & 0xFF) for i, p in enumerate(draw(PAYLOADS)))
    return draw(st.sampled_from(["valid", "damaged", "garbage"]).flatmap(
        lambda how: st.just(wire) if how == "valid" else mutated(st.just(wire)) if how == "damaged" and wire
        else GARBAGE))


@PROPERTIES
@given(wire=small_streams(), max_payload=LIMITS, expect_seq=EXPECT, check_continuation=st.booleans(),
       steps=STEPS, data=st.data())
def test_same_on_any_bytes_in_any_split(wire, max_payload, expect_seq, check_continuation, steps, data):
    cuts = data.draw(cut_positions(wire), label="cuts")
    assert_same(wire, cuts, steps, max_payload, expect_seq, check_continuation)


@st.composite
def long_streams(draw):
    """A payload of 16 MiB - 1 or more (split over 0xFFFFFF continuation packets, an empty last one
    when its length is a multiple), its sequence ids wrapping past 255, between small packets;
    sometimes a continuation packet's sequence id is wrong or the stream stops inside a packet."""
    first = draw(st.sampled_from([0, 254, 255]))
    size = draw(st.sampled_from([MAX - 1, MAX, MAX + 5, 2 * MAX]))
    wire = bytearray(frame(b"\x03small", first) + frame(b"\x05" * size, (first + 1) & 0xFF))
    wire += frame(b"\x0eafter", (first + 2 + size // MAX) & 0xFF)
    if size >= MAX and draw(st.booleans()):
        wire[MAX + 4 + 10 + 3] ^= draw(st.sampled_from([1, 0x80]))  # the first continuation's sequence id
    if draw(st.booleans()):
        del wire[draw(st.integers(0, len(wire))):]
    return bytes(wire)


@settings(PROPERTIES, max_examples=25)
@given(wire=long_streams(), max_payload=st.sampled_from([None, MAX - 1, MAX + 10, 3 * MAX]),
       expect_seq=st.sampled_from([None, 0]), check_continuation=st.booleans(), steps=STEPS,
       data=st.data())
def test_same_on_payloads_of_16_mib_and_more(wire, max_payload, expect_seq, check_continuation, steps, data):
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=5), label="cuts")
    assert_same(wire, cuts, steps, max_payload, expect_seq, check_continuation)
