"""response, property-based: ResponseTracker finds the same end of a response, with the same
counts and status, in any split of its bytes; on any bytes it raises only MalformedPacket, and
what it makes of them does not depend on how they were split."""

from __future__ import annotations

import functools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from myrouter.protocol import codec
from myrouter.protocol.constants import Capability as C
from myrouter.protocol.constants import Status
from myrouter.protocol.errors import MalformedPacket
from myrouter.protocol.messages import OK, column_definition, encode_eof, encode_err, text_row
from myrouter.protocol.packets import frame
from myrouter.protocol.response import ResponseKind, ResponseTracker

from .feeding import (
    PROPERTIES,
    bytewise,
    cut_positions,
    legacy_mutations,
    mutated,
    packet_boundaries,
    pieces,
    random_chunks,
    time_limit,
    whole,
    with_cuts,
    with_examples,
)
from .test_response import SMALL, TRAILER, check, feed_all, reference, tracker_for

# every test runs against the compiled tracker and the Python one (conftest.py)
pytestmark = pytest.mark.usefixtures("tracker_form")

EOFC = int(C.PROTOCOL_41)
DEOF = int(C.PROTOCOL_41 | C.DEPRECATE_EOF)
MORE = int(Status.MORE_RESULTS_EXISTS)


# --------------------------------------------------------------------------- captured responses


@PROPERTIES
@given(case=st.sampled_from(range(len(SMALL))).flatmap(
    lambda i: st.tuples(st.just(i), cut_positions(SMALL[i].response + TRAILER))))
def test_captured_response_ends_at_the_same_byte_in_any_split(case):
    i, cuts = case
    cap = SMALL[i]
    tracker = tracker_for(cap)
    consumed = feed_all(tracker, pieces(cap.response + TRAILER, cuts))
    check(tracker, reference(cap), consumed)


# --------------------------------------------------------------------------- built responses

VALUE = st.none() | st.binary(max_size=30) | st.binary(min_size=250, max_size=300)


@st.composite
def result_sets(draw):
    """A COM_QUERY response built from the protocol description: OKs and text result sets chained
    with MORE_RESULTS_EXISTS, the last one possibly an ERR; and what a tracker must count."""
    deprecate_eof = draw(st.booleans())
    caps = DEOF if deprecate_eof else EOFC
    n = draw(st.integers(1, 3))
    seq = 1
    parts: list[bytes] = []
    rows = results = 0
    error = None
    status = 0

    def put(payload: bytes) -> None:
        nonlocal seq
        parts.append(frame(payload, seq & 0xFF))
        seq += 1

    for i in range(n):
        last = i == n - 1
        flags = draw(st.integers(0, 0xFFFF)) & ~MORE | (0 if last else MORE)
        shape = draw(st.sampled_from(["ok", "rows", "err"] if last else ["ok", "rows"]))
        if shape == "err":
            error = encode_err(draw(st.integers(0, 0xFFFF)), draw(st.text(max_size=40)), "HY000")
            put(error)
            break
        if shape == "ok":
            put(OK(draw(st.integers(0, 2**64 - 1)), 0, flags, 0, draw(st.text(max_size=20))).encode(caps))
        else:
            ncols = draw(st.integers(1, 300))
            put(codec.lenenc_int(ncols))
            for c in range(ncols):
                put(column_definition(f"c{c}"))
            if not deprecate_eof:
                put(encode_eof(flags & ~MORE))
            for row in draw(st.lists(st.lists(VALUE, min_size=1, max_size=3), max_size=6)):
                put(text_row(row))
                rows += 1
            put(OK(status=flags).encode(caps, header=0xFE) if deprecate_eof else encode_eof(flags))
        results += 1
        status = flags
    return caps, b"".join(parts), rows, results, status, error, seq & 0xFF


@PROPERTIES
@given(built=result_sets(), data=st.data())
def test_built_result_ends_at_its_last_byte_in_any_split(built, data):
    caps, response, rows, results, status, error, next_seq = built
    wire = response + TRAILER
    feeds = [whole(wire), pieces(wire, data.draw(cut_positions(wire), label="cuts"))]
    if len(wire) < 3000:
        feeds.append(bytewise(wire))
    for chunks in feeds:
        tracker = ResponseTracker(ResponseKind.RESULT, caps)
        assert feed_all(tracker, chunks) == len(response)
        assert tracker.done and not tracker.in_packet
        assert (tracker.rows, tracker.results, tracker.error, tracker.next_seq) == (rows, results, error, next_seq)
        if results:
            assert tracker.status == status


# --------------------------------------------------------------------------- any bytes


def outcome(kind, caps, cursor, chunks):
    """What a tracker makes of these chunks: ('malformed',) or the consumed count and its public state."""
    tracker = ResponseTracker(kind, caps, cursor=cursor)
    consumed = 0
    try:
        for chunk in chunks:
            n = tracker.feed(chunk)
            assert 0 <= n <= len(chunk)
            consumed += n
            if n < len(chunk) or tracker.local_infile:
                break
    except MalformedPacket:
        return ("malformed",)
    return (consumed, tracker.done, tracker.local_infile, tracker.rows, tracker.results, tracker.error,
            tracker.status if tracker.status_seen else None, tracker.next_seq)


KINDS = [
    (ResponseKind.RESULT, False), (ResponseKind.RESULT, True), (ResponseKind.PREPARE, False),
    (ResponseKind.FIELD_LIST, False), (ResponseKind.FETCH, False), (ResponseKind.SIMPLE, False),
    (ResponseKind.STATISTICS, False),
]
SAMPLES = [c.response for c in SMALL]
FIRSTS = (0x00, 0x01, 0x02, 0xFB, 0xFC, 0xFE, 0xFF)
# packets with plausible headers and random bodies
RANDOM_PACKETS = st.lists(
    st.tuples(st.binary(max_size=30) | st.sampled_from([0, 1, 2, 5, 7, 9, 30]).flatmap(
        lambda n: st.binary(min_size=n, max_size=n)), st.integers(0, 255)).map(lambda t: frame(*t)),
    min_size=1, max_size=8,
).map(b"".join)
# packets whose first byte is one that decides something
SMALL_PACKETS = st.lists(
    st.tuples(st.sampled_from(FIRSTS), st.sampled_from([0, 1, 2, 4, 5, 6, 7, 8, 9, 12, 30, 254, 255]),
              st.integers(0, 255), st.randoms(use_true_random=False)).map(
        lambda t: frame((bytes((t[0],)) + t[3].randbytes(t[1]))[: t[1]], t[2])),
    min_size=1, max_size=4,
).map(b"".join)
# a valid response cut at a packet boundary, then such packets: reaches the deep states
VALID_START = st.tuples(st.sampled_from(SAMPLES), st.integers(0, 1000), SMALL_PACKETS).map(
    lambda t: t[0][: packet_boundaries(t[0])[t[1] % len(packet_boundaries(t[0]))]] + t[2])
GARBAGE = st.one_of(RANDOM_PACKETS, mutated(st.sampled_from(SAMPLES)), VALID_START, st.binary(max_size=60))


@functools.cache
def _legacy_inputs() -> tuple:
    """Inputs of the hand-rolled loop this property replaces (its seed for each kind, capability set
    and cursor flag): the first 8 of each of its three families, with the split it fed them in."""
    out = []
    for caps in (EOFC, DEOF):
        for kind, cursor in KINDS:
            rng = random.Random(kind * 10 + cursor + caps % 7)
            samples = [c.response for c in SMALL if c.capabilities & C.DEPRECATE_EOF == caps & C.DEPRECATE_EOF]
            inputs = []
            for _ in range(300):
                inputs.append(b"".join(frame(rng.randbytes(rng.choice((0, 1, 2, 5, 7, 9, 30))), rng.randrange(256))
                                       for _ in range(rng.randint(1, 8))))
            for sample in rng.sample(samples, 40):
                inputs += list(legacy_mutations(sample, rng, 8))
            for _ in range(300):
                sample = rng.choice(samples)
                start = sample[: rng.choice(packet_boundaries(sample))]
                tail = b""
                for _ in range(rng.randint(1, 4)):
                    n = rng.choice((0, 1, 2, 4, 5, 6, 7, 8, 9, 12, 30, 254, 255))
                    body = bytes((rng.choice((0x00, 0x01, 0x02, 0xFB, 0xFC, 0xFE, 0xFF)),)) + rng.randbytes(n)
                    tail += frame(body[:n], rng.randrange(256))
                inputs.append(start + tail)
            seeds = [rng.randrange(99) for _ in inputs]
            for i in [*range(8), *range(300, 308), *range(620, 628)]:
                chunks = random_chunks(inputs[i], seeds[i], 6)
                cuts = [sum(len(c) for c in chunks[: j + 1]) for j in range(len(chunks) - 1)]
                out.append(((inputs[i], cuts),))
    return tuple(out)


@pytest.mark.parametrize("caps", [EOFC, DEOF], ids=["EOF", "DEPRECATE_EOF"])
@pytest.mark.parametrize(("kind", "cursor"), KINDS, ids=lambda v: getattr(v, "name", str(v)))
@PROPERTIES
@given(case=with_cuts(GARBAGE))
@with_examples(_legacy_inputs())
def test_any_bytes_raise_only_malformed_packet_whatever_the_split(kind, cursor, caps, case):
    data, cuts = case
    with time_limit(5):
        first = outcome(kind, caps, cursor, whole(data))
        assert outcome(kind, caps, cursor, bytewise(data)) == first, f"bytewise differs from whole for {data.hex()}"
        assert outcome(kind, caps, cursor, pieces(data, cuts)) == first, f"pieces differ from whole for {data.hex()}"
