"""Helpers shared by the protocol tests: ways to cut bytes into feeds, and a time limit.

Every incremental decoder is fed the same bytes in several ways (whole, one byte
at a time, in random pieces, cut in two at every position) and must reach the
same result: a packet header or an interesting field split across two reads is
the classic bug this catches.
"""

from __future__ import annotations

import contextlib
import random
import signal
from collections.abc import Iterator

from hypothesis import HealthCheck, example, settings
from hypothesis import strategies as st

from myrouter.protocol.errors import MalformedPacket


def whole(data: bytes) -> list[bytes]:
    return [data]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def random_chunks(data: bytes, seed: int, max_chunk: int = 64) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    pos = 0
    while pos < len(data):
        n = rng.randint(1, max_chunk)
        out.append(data[pos : pos + n])
        pos += n
    return out


def cut_at(data: bytes, positions) -> list[bytes]:
    """``data`` cut at the given positions (sorted, duplicates and out-of-range ones dropped)."""
    cuts = sorted({p for p in positions if 0 < p < len(data)})
    out = []
    prev = 0
    for p in cuts:
        out.append(data[prev:p])
        prev = p
    out.append(data[prev:])
    return out


def two_pieces(data: bytes) -> Iterator[list[bytes]]:
    """Every way of cutting ``data`` in two (including an empty first or last piece)."""
    for i in range(len(data) + 1):
        yield [data[:i], data[i:]]


def packet_boundaries(data: bytes) -> list[int]:
    """Offsets where each physical packet of ``data`` starts (and its end)."""
    out = []
    pos = 0
    while pos + 4 <= len(data):
        out.append(pos)
        pos += 4 + int.from_bytes(data[pos : pos + 3], "little")
    out.append(pos)
    return out


def split_payloads(data: bytes) -> list[tuple[int, bytes]]:
    """(seq, payload) of each physical packet (independent of myrouter's decoder)."""
    out = []
    pos = 0
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 3], "little")
        out.append((data[pos + 3], data[pos + 4 : pos + 4 + n]))
        pos += 4 + n
    assert pos == len(data), "not a whole number of packets"
    return out


class TookTooLong(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail (instead of hanging) if the body runs longer than ``seconds`` (SIGALRM, main thread)."""

    def on_alarm(signum, frame):
        raise TookTooLong(f"still running after {seconds} s: an endless loop?")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def parses_or_malformed(fn, *args):
    """Call ``fn``; a MalformedPacket is an accepted outcome, any other exception propagates."""
    try:
        return fn(*args)
    except MalformedPacket as exc:
        return exc


# --------------------------------------------------------------------------- hypothesis

#: Settings of every property test: repeatable in CI (derandomized, no example database), no
#: per-example deadline (a loaded 2-core machine), and few enough examples that the whole
#: property suite runs in seconds.
PROPERTIES = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

INTERESTING_BYTES = (0x00, 0x01, 0xFA, 0xFB, 0xFC, 0xFD, 0xFE, 0xFF)


def cut_positions(data: bytes) -> st.SearchStrategy[list[int]]:
    """Where to cut ``data`` (any offsets, repeats allowed: they give empty pieces)."""
    return st.lists(st.integers(0, len(data)), max_size=min(len(data) + 2, 40))


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at ``cuts`` (sorted, repeats kept: a repeated cut feeds an empty piece)."""
    out = []
    prev = 0
    for p in sorted(min(max(c, 0), len(data)) for c in cuts):
        out.append(data[prev:p])
        prev = p
    out.append(data[prev:])
    return out


def with_cuts(data: st.SearchStrategy[bytes]) -> st.SearchStrategy[tuple[bytes, list[int]]]:
    """(bytes, cut positions inside them)."""
    return data.flatmap(lambda d: st.tuples(st.just(d), cut_positions(d)))


@st.composite
def mutated(draw, valid: st.SearchStrategy[bytes]) -> bytes:
    """A damaged copy of a valid payload: bytes replaced (often by a length prefix or header
    value), cut, inserted or duplicated; one to three times."""
    b = bytearray(draw(valid))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.integers(0, 3))
        if op == 0 and b:
            i = draw(st.integers(0, len(b) - 1))
            b[i] = draw(st.sampled_from(INTERESTING_BYTES) | st.integers(0, 255))
        elif op == 1 and b:
            del b[draw(st.integers(0, len(b) - 1)) :]
        elif op == 2:
            i = draw(st.integers(0, len(b)))
            b[i:i] = draw(st.binary(min_size=1, max_size=4))
        elif b:
            i = draw(st.integers(0, len(b) - 1))
            b[i:i] = b[i : i + draw(st.integers(1, 8))]
    return bytes(b)


def legacy_mutations(payload: bytes, rng: random.Random, count: int) -> Iterator[bytes]:
    """The hand-rolled mutator the fuzz loops used before hypothesis: it regenerates their
    inputs, seed for seed, so those inputs stay explicit examples of the properties."""
    for _ in range(count):
        b = bytearray(payload)
        for _ in range(rng.randint(1, 3)):
            op = rng.randrange(4)
            if op == 0 and b:
                i = rng.randrange(len(b))
                b[i] = rng.choice(INTERESTING_BYTES) if rng.random() < 0.5 else rng.randrange(256)
            elif op == 1 and b:
                del b[rng.randrange(len(b)) :]
            elif op == 2:
                i = rng.randrange(len(b) + 1)
                b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
            elif b:
                i = rng.randrange(len(b))
                j = min(len(b), i + rng.randint(1, 8))
                b[i:i] = b[i:j]
        yield bytes(b)


def with_examples(examples):
    """Decorator: ``@example(*args)`` for each tuple of ``examples`` (inputs kept from older tests)."""

    def apply(fn):
        for args in examples:
            fn = example(*args)(fn)
        return fn

    return apply
