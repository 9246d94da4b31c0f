"""packets: frame() and PacketDecoder, including payloads of 16 MiB and more."""

from __future__ import annotations

import pytest

from myrouter.protocol.constants import MAX_PACKET_PAYLOAD as MAX
from myrouter.protocol.errors import MalformedPacket, PacketTooLarge, SequenceError
from myrouter.protocol.packets import Packet, PacketDecoder, frame, packets_needed

from .feeding import bytewise, cut_at, packet_boundaries, random_chunks, split_payloads, two_pieces, whole

NEXT = frame(b"\x0enext", 9)  # a following packet: must come out after, untouched


def payload_of(n: int) -> bytes:
    """A payload whose every byte depends on its offset, so reassembly errors show."""
    block = bytes(range(251))
    return (block * (n // 251 + 1))[:n]


def decode_all(chunks, decoder=None) -> tuple[list[Packet], PacketDecoder]:
    d = decoder or PacketDecoder()
    out = []
    for chunk in chunks:
        d.feed(chunk)
        while (p := d.next_packet()) is not None:
            out.append(p)
    return out, d


# --------------------------------------------------------------------------- frame


def test_frame_small_payload_exact_bytes():
    assert frame(b"", 0) == b"\x00\x00\x00\x00"
    assert frame(b"\x03SELECT 1", 0) == b"\x09\x00\x00\x00\x03SELECT 1"
    assert frame(b"x", 255) == b"\x01\x00\x00\xffx"
    assert frame(b"x", 256) == b"\x01\x00\x00\x00x"  # the sequence id is one byte
    assert frame(bytearray(b"ab"), 3) == frame(memoryview(b"ab"), 3) == b"\x02\x00\x00\x03ab"


SIZES = [0, 1, 250, 0xFFFFFE, MAX, MAX + 1, 2 * MAX, 20_000_000]
SIZE_IDS = ["0", "1", "250", "FFFFFE", "FFFFFF", "FFFFFF+1", "2xFFFFFF", "20MB"]


@pytest.fixture(scope="module")
def payloads():
    cache: dict[int, bytes] = {}

    def get(n: int) -> bytes:
        if n not in cache:
            cache[n] = payload_of(n)
        return cache[n]

    return get


@pytest.mark.parametrize("n", SIZES, ids=SIZE_IDS)
def test_frame_splits_at_16mib_and_ends_exact_multiples_with_an_empty_packet(n, payloads):
    seq = 254  # the ids wrap from 255 to 0 in the middle of a split payload
    wire = frame(payloads(n), seq)
    phys = split_payloads(wire)
    assert len(phys) == packets_needed(n) == n // MAX + 1
    assert [s for s, _ in phys] == [(seq + i) & 0xFF for i in range(len(phys))]
    assert all(len(p) == MAX for _, p in phys[:-1])
    assert len(phys[-1][1]) == n % MAX  # 0 for an exact multiple: the closing empty packet
    assert b"".join(p for _, p in phys) == payloads(n)


@pytest.mark.parametrize("n", SIZES, ids=SIZE_IDS)
def test_decoder_round_trip_whole_and_with_trailing_bytes(n, payloads):
    data = payloads(n)
    wire = frame(data, 3)
    (pkt,), d = decode_all(whole(wire))
    assert pkt == Packet(3, data, (3 + packets_needed(n) - 1) & 0xFF)
    assert d.buffered == 0
    pkts, d = decode_all(whole(wire + NEXT))
    assert [p.payload for p in pkts] == [data, b"\x0enext"]
    assert pkts[1].seq == pkts[1].last_seq == 9
    assert d.buffered == 0


@pytest.mark.parametrize("n", SIZES, ids=SIZE_IDS)
def test_decoder_round_trip_in_pieces(n, payloads):
    data = payloads(n)
    wire = frame(data, 0) + NEXT
    if n <= 300:
        feeds = [bytewise(wire)] + [random_chunks(wire, seed, 7) for seed in range(5)] + list(two_pieces(wire))
    else:
        # big: random pieces of up to 1 MiB, and cuts at every offset around each physical header
        bounds = packet_boundaries(wire)
        around = [b + k for b in bounds for k in range(-5, 6)]
        feeds = [random_chunks(wire, seed, 1 << 20) for seed in range(2)] + [cut_at(wire, around)]
    for chunks in feeds:
        pkts, d = decode_all(chunks)
        assert len(pkts) == 2
        assert pkts[0].payload == data
        assert pkts[0].seq == 0 and pkts[0].last_seq == packets_needed(n) - 1
        assert pkts[1].payload == b"\x0enext"
        assert d.buffered == 0


def test_next_packet_needs_a_whole_header_and_body():
    d = PacketDecoder()
    assert d.next_packet() is None
    wire = frame(b"hello", 1)
    for i in range(len(wire)):
        d.feed(wire[i : i + 1])
        if i < len(wire) - 1:
            assert d.next_packet() is None
            assert d.buffered == i + 1
    assert d.next_packet() == Packet(1, b"hello", 1)
    assert d.next_packet() is None
    assert d.buffered == 0


def test_empty_packet():
    (pkt,), _ = decode_all([b"\x00\x00\x00\x05"])
    assert pkt == Packet(5, b"", 5)


def test_buffered_and_take_buffered():
    d = PacketDecoder()
    d.feed(frame(b"one", 0) + frame(b"two", 1)[:5])
    assert d.buffered == 7 + 5
    assert d.next_packet().payload == b"one"
    assert d.buffered == 5
    assert d.next_packet() is None
    assert d.take_buffered() == frame(b"two", 1)[:5]
    assert d.buffered == 0
    assert d.take_buffered() == b""
    d.feed(frame(b"three", 2))
    assert d.next_packet() == Packet(2, b"three", 2)


def test_take_buffered_returns_the_bytes_after_the_last_packet_in_a_big_buffer():
    d = PacketDecoder()
    raw = b"".join(frame(b"p%d" % i, i) for i in range(100))
    d.feed(raw + b"rest-of-stream")
    for _ in range(100):
        assert d.next_packet() is not None
    assert d.take_buffered() == b"rest-of-stream"


# --------------------------------------------------------------------------- sequence ids


def _split_wire(seq: int = 3, n: int = MAX + 10) -> bytes:
    return frame(payload_of(n), seq)


def test_continuation_with_a_wrong_sequence_id_is_a_sequence_error_before_its_body():
    wire = bytearray(_split_wire(3))
    second = 4 + MAX
    assert wire[second + 3] == 4
    wire[second + 3] = 7
    d = PacketDecoder()
    d.feed(wire[: second + 4])  # the first packet and only the header of the second
    with pytest.raises(SequenceError, match="expected 4"):
        d.next_packet()


def test_sequence_error_is_a_malformed_packet():
    assert issubclass(SequenceError, MalformedPacket)


def test_continuation_sequence_ids_wrap_after_255():
    wire = frame(payload_of(2 * MAX + 1), 255)
    assert [s for s, _ in split_payloads(wire)] == [255, 0, 1]
    (pkt,), _ = decode_all(random_chunks(wire, 1, 1 << 20))
    assert (pkt.seq, pkt.last_seq) == (255, 1)


@pytest.mark.parametrize("split", [False, True], ids=["small", "split"])
def test_expect_seq_checks_the_first_packet_from_its_header(split):
    wire = _split_wire(5) if split else frame(b"abc", 5)
    d = PacketDecoder()
    d.expect_seq = 6
    d.feed(wire[:4])  # the header alone decides
    with pytest.raises(SequenceError, match="expected sequence id 6, got 5"):
        d.next_packet()
    d = PacketDecoder()
    d.expect_seq = 5
    (pkt,), _ = decode_all([wire], d)
    assert pkt.seq == 5


def test_expect_seq_none_accepts_any_id():
    pkts, _ = decode_all([frame(b"a", 200) + frame(b"b", 3)])
    assert [p.seq for p in pkts] == [200, 3]


# --------------------------------------------------------------------------- max_payload


@pytest.mark.parametrize("limit", [0, 10, 100])
def test_max_payload_small_packet_raises_from_the_header_alone(limit):
    d = PacketDecoder(max_payload=limit)
    d.feed(frame(b"x" * (limit + 1), 0)[:4])
    with pytest.raises(PacketTooLarge):
        d.next_packet()
    d = PacketDecoder(max_payload=limit)
    (pkt,), _ = decode_all([frame(b"x" * limit, 0)], d)
    assert len(pkt.payload) == limit


def test_max_payload_below_16mib_raises_on_the_first_header_of_a_split_payload():
    d = PacketDecoder(max_payload=1 << 20)
    d.feed(_split_wire()[:4])
    with pytest.raises(PacketTooLarge):
        d.next_packet()


def test_max_payload_split_payload_raises_when_the_continuation_header_arrives():
    wire = _split_wire(0, MAX + 11)  # second packet carries 11 bytes
    d = PacketDecoder(max_payload=MAX + 10)
    d.feed(wire[: 4 + MAX])
    assert d.next_packet() is None  # 16 MiB - 1 so far: within the limit
    d.feed(wire[4 + MAX : 4 + MAX + 4])  # the continuation header says 11 more
    with pytest.raises(PacketTooLarge):
        d.next_packet()


def test_max_payload_exactly_at_the_limit_for_a_split_payload():
    wire = _split_wire(0, MAX + 10)
    (pkt,), _ = decode_all(random_chunks(wire, 3, 1 << 20), PacketDecoder(max_payload=MAX + 10))
    assert len(pkt.payload) == MAX + 10


def test_max_payload_checked_before_the_body_is_buffered():
    # the decoder must refuse as soon as it knows, not after receiving (and keeping) 16 MiB
    d = PacketDecoder(max_payload=1000)
    d.feed(b"\xff\xff\xff\x00" + b"\x00" * 10)
    with pytest.raises(PacketTooLarge):
        d.next_packet()


def test_packet_too_large_is_not_a_malformed_packet():
    # a well-formed packet above the limit is answered with ER_NET_PACKET_TOO_LARGE, not "malformed"
    assert not issubclass(PacketTooLarge, MalformedPacket)


# --------------------------------------------------------------------------- receive


@pytest.mark.parametrize("n", [0, 1, 100, 4096])
def test_receive_gives_what_feed_and_next_packet_give(n):
    # receive(data) == feed(data); next_packet(), whether or not it takes the unbuffered path
    payload = payload_of(n)
    data = frame(payload, 0)
    feeds = [whole(data), whole(data + NEXT), bytewise(data + NEXT), [data, NEXT], [data[:-1], data[-1:] + NEXT]]
    feeds += list(two_pieces(data))[:: max(1, len(data) // 16)]
    for chunks in feeds:
        a, b = PacketDecoder(), PacketDecoder()
        got_a, got_b = [], []
        for chunk in chunks:
            p = a.receive(chunk)
            while p is not None:
                got_a.append(p)
                p = a.next_packet()
            b.feed(chunk)
            while (p := b.next_packet()) is not None:
                got_b.append(p)
        assert got_a == got_b
        assert got_a[0] == Packet(0, payload, 0)
        assert a.buffered == b.buffered


def test_receive_one_whole_packet_is_not_buffered_and_keeps_order_after_buffered_bytes():
    d = PacketDecoder()
    assert d.receive(frame(b"\x03SELECT 1", 0)) == Packet(0, b"\x03SELECT 1", 0)
    assert d.buffered == 0
    # a partial packet is buffered; the next whole packet must come after it
    first = frame(b"\x03first", 0)
    assert d.receive(first[:3]) is None
    assert d.receive(first[3:]) == Packet(0, b"\x03first", 0)
    assert d.receive(frame(b"\x03second", 0)) == Packet(0, b"\x03second", 0)
    assert d.buffered == 0


def test_receive_checks_sequence_id_and_size_like_next_packet():
    d = PacketDecoder(max_payload=10)
    d.expect_seq = 0
    with pytest.raises(SequenceError):
        d.receive(frame(b"\x03x", 1))
    d = PacketDecoder(max_payload=10)
    with pytest.raises(PacketTooLarge):
        d.receive(frame(b"\x03" + b"x" * 10, 0))
    assert PacketDecoder(max_payload=10).receive(frame(b"\x03" + b"x" * 9, 0)) == Packet(0, b"\x03" + b"x" * 9, 0)
    # a memoryview or bytearray comes back as bytes
    p = PacketDecoder().receive(memoryview(frame(b"\x03abc", 0)))
    assert type(p.payload) is bytes and p.payload == b"\x03abc"


def test_receive_refuses_an_oversized_header_without_buffering_the_chunk_it_came_in():
    # a client's first 256 KiB of a 16 MiB packet arrive in one read: refused from the header,
    # and none of it kept
    d = PacketDecoder(max_payload=65535 + 4096)
    chunk = b"\xff\xff\xff\x01" + b"x" * (256 * 1024 - 4)
    with pytest.raises(PacketTooLarge):
        d.receive(chunk)
    assert d.buffered == 0
