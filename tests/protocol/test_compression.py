"""The compressed protocol's sans-I/O layer: CompressedChannel and compress_packet."""

from __future__ import annotations

import os
import random
import zlib

import pytest

from myrouter.protocol.compression import (
    COMPRESSED_HEADER_SIZE,
    MAX_COMPRESSED_CHUNK,
    MIN_COMPRESS_LENGTH,
    CompressedChannel,
    compress_packet,
)
from myrouter.protocol.constants import MAX_PACKET_PAYLOAD
from myrouter.protocol.errors import MalformedPacket, PacketTooLarge, SequenceError
from myrouter.protocol.packets import PacketDecoder, frame


def header(data: bytes) -> tuple[int, int, int]:
    """(compressed length, compressed sequence id, uncompressed length) of a compressed packet."""
    return int.from_bytes(data[:3], "little"), data[3], int.from_bytes(data[4:7], "little")


def split_compressed(wire: bytes) -> list[tuple[int, int, bytes]]:
    """Each compressed packet of ``wire``: (sequence id, uncompressed length field, plain bytes)."""
    out = []
    pos = 0
    while pos < len(wire):
        clen, seq, ulen = header(wire[pos:])
        body = wire[pos + COMPRESSED_HEADER_SIZE : pos + COMPRESSED_HEADER_SIZE + clen]
        assert len(body) == clen
        out.append((seq, ulen, zlib.decompress(body) if ulen else body))
        pos += COMPRESSED_HEADER_SIZE + clen
    return out


def test_small_payload_goes_uncompressed() -> None:
    data = frame(b"\x03SELECT 1", 0)
    assert len(data) < MIN_COMPRESS_LENGTH
    wire = compress_packet(data, 5)
    assert header(wire) == (len(data), 5, 0)  # uncompressed length 0: the payload as it is
    assert wire[COMPRESSED_HEADER_SIZE:] == data


def test_incompressible_payload_goes_uncompressed() -> None:
    data = os.urandom(1000)
    wire = compress_packet(data, 0)
    assert header(wire) == (1000, 0, 0)
    assert wire[COMPRESSED_HEADER_SIZE:] == data


def test_round_trip_of_many_packets_compressed() -> None:
    sender = CompressedChannel(client_side=False)
    receiver = CompressedChannel(client_side=True)
    plain = b"".join(frame(b"row %d " % i * 20, i & 0xFF) for i in range(1000))
    wire = sender.encode(plain)
    assert len(wire) < len(plain) // 5  # compressed
    assert receiver.decode(wire) == plain
    assert sender.pending == 0 and receiver.buffered == 0


def test_decode_one_byte_at_a_time() -> None:
    sender = CompressedChannel(client_side=False)
    plain = frame(b"x" * 500, 1) + frame(b"y" * 10, 2) + frame(b"z" * 70000, 3)
    wire = sender.encode(plain[:300]) + sender.encode(plain[300:])
    receiver = CompressedChannel(client_side=True)
    got = bytearray()
    for i in range(len(wire)):
        got += receiver.decode(wire[i : i + 1])
    assert got == plain
    assert receiver.buffered == 0


def test_encode_sends_whole_packets_and_holds_back_an_incomplete_one() -> None:
    ch = CompressedChannel(client_side=False)
    one = frame(b"a" * 100, 1)
    two = frame(b"b" * 100, 2)
    wire = ch.encode(one + two[:50])
    assert [p[2] for p in split_compressed(wire)] == [one]  # the packet header of `two` is never split
    assert ch.pending == 50
    assert ch.encode(two[50:70]) == b""  # still incomplete: nothing to send
    wire = ch.encode(two[70:])
    assert [p[2] for p in split_compressed(wire)] == [two]
    assert ch.pending == 0


def test_compressed_sequence_ids_follow_the_received_one_on_the_server_side() -> None:
    server = CompressedChannel(client_side=False)
    client = CompressedChannel(client_side=True)
    server.decode(client.encode(frame(b"\x03SELECT 1", 0)))
    assert server.seq == 1
    wire = server.encode(frame(b"\x01", 1)) + server.encode(frame(b"c" * 60, 2))
    assert [p[0] for p in split_compressed(wire)] == [1, 2]
    client.decode(wire)
    # the next command starts at 0 again on the client side
    assert header(client.encode(frame(b"\x0e", 0)))[1] == 0


def test_client_side_resets_the_sequence_id_per_command_but_not_inside_an_upload() -> None:
    ch = CompressedChannel(client_side=True)
    assert header(ch.encode(frame(b"\x19\x01\x00\x00\x00", 0)))[1] == 0  # COM_STMT_CLOSE: no reply
    assert header(ch.encode(frame(b"\x03SELECT 1", 0)))[1] == 0  # next command: 0 again
    ch.decode(compress_packet(frame(b"\xfbfile.csv", 1), 1))  # LOCAL INFILE request
    seqs = []
    for i in range(300):  # the upload's packet ids run 2..255, 0, 1, ...: one exchange, no reset
        seqs.append(header(ch.encode(frame(b"data", (2 + i) & 0xFF)))[1])
    assert seqs == [(2 + i) & 0xFF for i in range(300)]


def test_payload_over_16mib_splits_into_capped_compressed_packets() -> None:
    payload = bytes(range(256)) * (17 * 1024 * 1024 // 256)
    plain = frame(payload, 0)  # two packets: 0xFFFFFF bytes and the rest
    ch = CompressedChannel(client_side=True)
    wire = bytearray()
    view = memoryview(plain)
    for pos in range(0, len(plain), 256 * 1024):  # arrives in pieces, as the proxy forwards it
        wire += ch.encode(view[pos : pos + 256 * 1024])
    parts = split_compressed(bytes(wire))
    assert all(len(p[2]) <= MAX_COMPRESSED_CHUNK for p in parts)
    assert [p[0] for p in parts] == list(range(len(parts)))
    assert len(parts) == 3  # the first packet does not fit one compressed packet with its header
    assert b"".join(p[2] for p in parts) == plain
    dec = PacketDecoder()
    dec.feed(CompressedChannel(client_side=False).decode(bytes(wire)))
    pkt = dec.next_packet()
    assert pkt is not None and pkt.payload == payload and pkt.last_seq == len(payload) // MAX_PACKET_PAYLOAD


def test_bad_zlib_data_is_malformed() -> None:
    ch = CompressedChannel(client_side=False)
    body = b"this is not a zlib stream at all" * 3
    with pytest.raises(MalformedPacket):
        ch.decode(len(body).to_bytes(3, "little") + b"\x00" + (200).to_bytes(3, "little") + body)


@pytest.mark.parametrize("claimed", [10, 999, 1001])
def test_uncompressed_length_that_lies_is_malformed(claimed: int) -> None:
    packed = zlib.compress(b"q" * 1000)
    ch = CompressedChannel(client_side=False)
    with pytest.raises(MalformedPacket):
        ch.decode(len(packed).to_bytes(3, "little") + b"\x00" + claimed.to_bytes(3, "little") + packed)


def test_trailing_bytes_after_the_zlib_stream_are_malformed() -> None:
    packed = zlib.compress(b"q" * 1000) + b"junk"
    ch = CompressedChannel(client_side=False)
    with pytest.raises(MalformedPacket):
        ch.decode(len(packed).to_bytes(3, "little") + b"\x00" + (1000).to_bytes(3, "little") + packed)


def test_huge_uncompressed_length_is_refused_before_inflating() -> None:
    ch = CompressedChannel(client_side=False, max_payload=1024)
    bomb = zlib.compress(b"\x00" * 0xFFFFFF)  # a few KB that inflate to 16 MiB
    with pytest.raises(PacketTooLarge):
        # the header alone is enough: refused before the payload has even arrived
        ch.decode(len(bomb).to_bytes(3, "little") + b"\x00" + (0xFFFFFF).to_bytes(3, "little"))
    ok = CompressedChannel(client_side=False, max_payload=1024)
    assert ok.decode(compress_packet(frame(b"s" * 1000, 0), 0)) == frame(b"s" * 1000, 0)


def test_continuation_ids_are_not_checked_under_compression() -> None:
    # libmariadb numbers the packets of a split payload its own way when it compresses
    payload = b"p" * (MAX_PACKET_PAYLOAD + 10)
    data = bytearray(frame(payload, 0))
    data[4 + MAX_PACKET_PAYLOAD + 3] = 7  # the continuation packet's id
    strict = PacketDecoder()
    strict.feed(data)
    with pytest.raises(SequenceError):
        strict.next_packet()
    lenient = PacketDecoder()
    lenient.check_continuation = False
    lenient.feed(data)
    pkt = lenient.next_packet()
    assert pkt is not None and pkt.payload == payload and (pkt.seq, pkt.last_seq) == (0, 7)


def test_random_splits_round_trip_with_whole_packets_per_compressed_packet() -> None:
    rng = random.Random(7)
    for _ in range(50):
        packets = [frame(bytes(rng.choice(b"ab ") for _ in range(rng.randrange(0, 3000))), i & 0xFF)
                   for i in range(rng.randrange(1, 40))]
        plain = b"".join(packets)
        boundaries = {0}
        pos = 0
        for p in packets:
            pos += len(p)
            boundaries.add(pos)
        sender = CompressedChannel(client_side=False)
        receiver = CompressedChannel(client_side=True)
        wire = bytearray()
        pos = 0
        while pos < len(plain):
            step = rng.randrange(1, 5000)
            wire += sender.encode(plain[pos : pos + step])
            pos += step
        assert sender.pending == 0
        sent = 0
        for _seq, _ulen, body in split_compressed(bytes(wire)):
            sent += len(body)
            assert sent in boundaries  # every compressed packet ends at a packet boundary
        got = bytearray()
        pos = 0
        while pos < len(wire):
            step = rng.randrange(1, 700)
            got += receiver.decode(wire[pos : pos + step])
            pos += step
        assert got == plain
