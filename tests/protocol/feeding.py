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


def mutations(payload: bytes, rng: random.Random, count: int) -> Iterator[bytes]:
    """``count`` damaged copies of ``payload``: bytes replaced, cut, duplicated or inserted."""
    interesting = (0x00, 0x01, 0xFA, 0xFB, 0xFC, 0xFD, 0xFE, 0xFF)
    for _ in range(count):
        b = bytearray(payload)
        for _ in range(rng.randint(1, 3)):
            op = rng.randrange(4)
            if op == 0 and b:
                i = rng.randrange(len(b))
                b[i] = rng.choice(interesting) if rng.random() < 0.5 else rng.randrange(256)
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
