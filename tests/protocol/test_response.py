"""response: ResponseTracker on every captured MariaDB response, fed in every way, plus synthetic edge cases.

Each captured response is checked against two independent sources of truth:

* ``reference()``: a plain, non-incremental reading of the response (whole
  logical packets, no byte counting) written from the protocol description;
* ``FACTS``: hand-written expectations (rows, result sets, errors, key status
  flags) for what each captured command returned.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from myrouter.protocol import codec
from myrouter.protocol.codec import Reader
from myrouter.protocol.constants import MAX_PACKET_PAYLOAD as MAX
from myrouter.protocol.constants import Capability as C
from myrouter.protocol.constants import Command, Status
from myrouter.protocol.errors import MalformedPacket
from myrouter.protocol.messages import column_definition, encode_eof, text_row
from myrouter.protocol.packets import frame
from myrouter.protocol.response import ResponseKind, ResponseTracker, response_kind

from . import fixtures as F
from .feeding import bytewise, cut_at, packet_boundaries, random_chunks, two_pieces, whole

# every test runs against the compiled tracker and the Python one (conftest.py)
pytestmark = pytest.mark.usefixtures("tracker_form")

TRAILER = frame(b"\x00\x00\x00\x02\x00\x00\x00", 1)  # the start of whatever comes next on the connection
RESPONSES = [c for c in F.ALL if c.command >= 0]
SMALL = [c for c in RESPONSES if len(c.response) <= 4096]
BIG = [c for c in RESPONSES if len(c.response) > 4096]


def base(cap) -> str:
    for prefix in ("DEPRECATE_EOF_", "EOF_", "OLD_"):
        if cap.name.startswith(prefix):
            return cap.name[len(prefix) :]
    raise AssertionError(cap.name)


def tracker_for(cap) -> ResponseTracker:
    return ResponseTracker(response_kind(cap.command), cap.capabilities, cursor=cap.cursor)


# --------------------------------------------------------------------------- the reference reading


@dataclass
class Outcome:
    end: int  # bytes that belong to the response
    rows: int = 0
    results: int = 0
    status: int = 0
    status_seen: bool = False
    error: bytes | None = None
    last_ok: bytes | None = None
    local_infile: bool = False
    next_seq: int = 0
    columns: int = 0  # of the last result set of a RESULT response; 0 when the last result was an OK


def _lenenc_skip(p: bytes, pos: int) -> int:
    b = p[pos]
    return pos + {0xFC: 3, 0xFD: 4, 0xFE: 9}.get(b, 1)


def _status(p: bytes) -> int:
    """Status flags of an EOF (5 bytes) or of an OK-layout packet."""
    if p[0] == 0xFE and len(p) < 7:
        return int.from_bytes(p[3:5], "little")
    pos = _lenenc_skip(p, _lenenc_skip(p, 1))
    return int.from_bytes(p[pos : pos + 2], "little")


def _logical(data: bytes) -> list[tuple[int, bytes, int]]:
    """(offset just past the packet, joined payload, last sequence id) of each logical packet."""
    out = []
    pos = 0
    parts: list[bytes] = []
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 3], "little")
        seq = data[pos + 3]
        parts.append(data[pos + 4 : pos + 4 + n])
        pos += 4 + n
        if n < MAX:
            out.append((pos, b"".join(parts), seq))
            parts = []
    return out


def reference(cap) -> Outcome:
    kind = response_kind(cap.command)
    deprecate_eof = bool(cap.capabilities & C.DEPRECATE_EOF)
    pkts = iter(_logical(cap.response))
    o = Outcome(0)

    def take() -> bytes:
        o.end, p, seq = next(pkts)
        o.next_seq = (seq + 1) & 0xFF
        return p

    def status_from(p: bytes) -> None:
        o.status = _status(p)
        o.status_seen = True

    if kind == ResponseKind.STATISTICS:
        take()
    elif kind == ResponseKind.SIMPLE:
        p = take()
        if p[0] == 0xFF:
            o.error = p
        else:
            status_from(p)
            if p[0] == 0x00:
                o.last_ok = p
    elif kind == ResponseKind.PREPARE:
        p = take()
        if p[0] == 0xFF:
            o.error = p
        else:
            columns, params = int.from_bytes(p[5:7], "little"), int.from_bytes(p[7:9], "little")
            for count in (params, columns):
                for _ in range(count):
                    take()
                if count and not deprecate_eof:
                    assert take()[0] == 0xFE
    elif kind in (ResponseKind.FIELD_LIST, ResponseKind.FETCH):
        while True:
            p = take()
            if p[0] == 0xFF:
                o.error = p
                break
            if p[0] == 0xFE and len(p) < (MAX if deprecate_eof else 9):
                status_from(p)
                if len(p) >= 7:
                    o.last_ok = p
                o.results += 1
                break
            o.rows += 1
    else:  # RESULT
        while True:
            p = take()
            if p[0] == 0x00:
                status_from(p)
                o.last_ok = p
                o.results += 1
                o.columns = 0
            elif p[0] == 0xFF:
                o.error = p
                break
            elif p[0] == 0xFB:
                o.local_infile = True
                break
            else:
                o.columns = p[0]
                for _ in range(p[0]):  # column count (< 251 in every capture)
                    take()
                if not deprecate_eof or cap.cursor:
                    eof = take()
                    status_from(eof)
                    if cap.cursor and o.status & Status.CURSOR_EXISTS:
                        o.results += 1
                        break
                while True:
                    p = take()
                    if p[0] == 0xFF:
                        o.error = p
                        break
                    if p[0] == 0xFE and len(p) < (MAX if deprecate_eof else 9):
                        status_from(p)
                        if len(p) >= 7:
                            o.last_ok = p
                        o.results += 1
                        break
                    o.rows += 1
                if o.error is not None:
                    break
            if not o.status & Status.MORE_RESULTS_EXISTS:
                break
    assert o.end == len(cap.response), f"{cap.name}: the capture holds more than one response"
    return o


# --------------------------------------------------------------------------- hand-written facts

# base name -> (rows, results, error code or None, status flags that must be set, flags that must be clear)
A, T, M = Status.AUTOCOMMIT, Status.IN_TRANS, Status.MORE_RESULTS_EXISTS
FACTS = {
    "OK_INSERT": (0, 1, None, A, T),
    "SELECT_1": (1, 1, None, A, M),
    "ERR_NO_TABLE": (0, 0, 1146, 0, 0),
    "OK_UPDATE": (0, 1, None, A, 0),
    "OK_DO": (0, 1, None, A, 0),
    "SELECT_NULLS": (5, 1, None, A, 0),
    "SELECT_EMPTY": (0, 1, None, A, 0),
    "SELECT_LONG_VALUES": (1, 1, None, A, 0),
    "SELECT_WARNING": (1, 1, None, A, 0),
    "SELECT_PASSWORD": (1, 1, None, A, 0),
    "MULTI_SELECT": (2, 2, None, A, M),
    "MULTI_SELECT_ERR": (1, 1, 1146, M, 0),  # the status of the first result set, then the error
    "MULTI_OK": (0, 2, None, A, M),
    "CALL_TWO_RESULTS": (2, 3, None, A, M),  # two result sets and the CALL's own OK
    "LOCAL_INFILE_REQUEST": (0, 0, None, 0, 0),
    "LOCAL_INFILE_DONE": (0, 1, None, A, 0),
    "BEGIN": (0, 1, None, A | T, 0),
    "INSERT_IN_TRANS": (0, 1, None, A | T, 0),
    "COMMIT": (0, 1, None, A, T),
    "AUTOCOMMIT_0": (0, 1, None, Status.SESSION_STATE_CHANGED, A),
    "AUTOCOMMIT_1": (0, 1, None, A | Status.SESSION_STATE_CHANGED, 0),
    "TRACK_TIME_ZONE": (0, 1, None, A | Status.SESSION_STATE_CHANGED, 0),
    "TRACK_USE": (0, 1, None, Status.SESSION_STATE_CHANGED, 0),
    "TRACK_INIT_DB": (0, 0, None, Status.SESSION_STATE_CHANGED, 0),  # a SIMPLE response: no result count
    "TRACK_STATE_ON": (0, 1, None, Status.SESSION_STATE_CHANGED, 0),
    "TRACK_ALL_VARS": (0, 1, None, Status.SESSION_STATE_CHANGED, 0),
    "TRACK_SQL_MODE": (0, 1, None, Status.SESSION_STATE_CHANGED, 0),
    "TRACK_TRX_ON": (0, 1, None, Status.SESSION_STATE_CHANGED, 0),
    "TRACK_START_RO": (0, 1, None, T | Status.IN_TRANS_READONLY | Status.SESSION_STATE_CHANGED, 0),
    "TRACK_COMMIT": (0, 1, None, A, T | Status.IN_TRANS_READONLY),
    "TRACK_RESET": (0, 1, None, A, 0),
    "PREPARE_SELECT": (0, 0, None, 0, 0),
    "PREPARE_INSERT": (0, 0, None, 0, 0),
    "PREPARE_SELECT_1": (0, 0, None, 0, 0),
    "PREPARE_DO": (0, 0, None, 0, 0),
    "PREPARE_CALL": (0, 0, None, 0, 0),
    "PREPARE_CURSOR": (0, 0, None, 0, 0),
    "PREPARE_ERR": (0, 0, 1064, 0, 0),
    "EXECUTE_SELECT": (4, 1, None, A, 0),  # ids 1..5 with name <> 'zzz': the NULL name drops out
    "EXECUTE_INSERT": (0, 1, None, A, 0),
    "EXECUTE_SELECT_1": (1, 1, None, A, 0),
    "EXECUTE_DO": (0, 1, None, A, 0),
    "EXECUTE_CALL": (2, 3, None, A, M),
    "EXECUTE_UNKNOWN": (0, 0, 1243, 0, 0),
    "EXECUTE_CURSOR": (0, 1, None, Status.CURSOR_EXISTS, Status.LAST_ROW_SENT),
    "FETCH_3": (3, 1, None, Status.CURSOR_EXISTS, Status.LAST_ROW_SENT),
    "FETCH_REST": (2, 1, None, Status.LAST_ROW_SENT, Status.CURSOR_EXISTS),  # the cursor is closed
    "FIELD_LIST": (3, 1, None, A, 0),  # one "row" per column definition
    "FIELD_LIST_ERR": (0, 0, 1146, 0, 0),
    "STATISTICS": (0, 0, None, 0, 0),
    "PING": (0, 0, None, A, 0),
    "SET_OPTION": (0, 0, None, A, 0),
    "UNKNOWN_COMMAND": (0, 0, 1047, 0, 0),
    "RESET_CONNECTION": (0, 0, None, A, 0),
    "ROW_16M": (1, 1, None, A, 0),
    "ROW_FFFFFF": (1, 1, None, A, 0),
}


def test_every_captured_response_has_facts():
    assert {base(c) for c in RESPONSES} == set(FACTS)
    assert len(RESPONSES) >= 100


@pytest.mark.parametrize("cap", RESPONSES, ids=lambda c: c.name)
def test_reference_reading_agrees_with_the_facts(cap):
    # the oracle itself is checked against what we know each command returned
    rows, results, error, must_set, must_clear = FACTS[base(cap)]
    o = reference(cap)
    assert (o.rows, o.results) == (rows, results)
    assert (int.from_bytes(o.error[1:3], "little") if o.error else None) == error
    assert o.status & must_set == must_set
    assert not o.status & must_clear
    assert o.local_infile == (base(cap) == "LOCAL_INFILE_REQUEST")


# --------------------------------------------------------------------------- feeding


def feed_all(tracker: ResponseTracker, chunks: list[bytes]) -> int:
    """Feed chunks until one is not wholly consumed; return the bytes consumed.

    Keeps feeding after ``done`` while the chunks are consumed whole, so a tracker
    that declares itself done too early still gets the chance to consume the rest
    of its response (``test_done_only_after_the_last_byte`` checks ``done`` itself).
    """
    consumed = 0
    for chunk in chunks:
        n = tracker.feed(chunk)
        assert 0 <= n <= len(chunk)
        consumed += n
        if n < len(chunk):
            assert tracker.done or tracker.local_infile, "bytes left over before the end of the response"
            break
        if tracker.local_infile:
            break
    return consumed


def check(tracker: ResponseTracker, o: Outcome, consumed: int) -> None:
    assert consumed == o.end
    assert tracker.local_infile == o.local_infile
    assert tracker.done == (not o.local_infile)
    assert not tracker.in_packet
    assert tracker.rows == o.rows
    assert tracker.results == o.results
    assert tracker.error == o.error
    assert tracker.status_seen == o.status_seen
    if o.status_seen:
        assert tracker.status == o.status
    assert tracker.last_ok == o.last_ok
    assert tracker.next_seq == o.next_seq
    if tracker.kind == ResponseKind.RESULT:
        assert tracker.columns == o.columns


def small_feeds(data: bytes):
    yield "whole", whole(data)
    yield "bytewise", bytewise(data)
    for seed in range(4):
        yield f"random{seed}", random_chunks(data, seed, 9)
    for i, pieces in enumerate(two_pieces(data)):
        yield f"cut@{i}", pieces


def big_feeds(data: bytes):
    yield "whole", whole(data)
    for seed in range(2):
        yield f"random{seed}", random_chunks(data, seed, 1 << 20)
    # cuts at every offset around every packet header, and inside the first bytes of each body
    around = [b + k for b in packet_boundaries(data) for k in range(-6, 12)]
    yield "around-headers", cut_at(data, around)
    yield "header-bytewise", cut_at(data, [b + k for b in packet_boundaries(data) for k in range(0, 5)])


@pytest.mark.parametrize("trailing", [False, True], ids=["alone", "trailing"])
@pytest.mark.parametrize("cap", SMALL, ids=lambda c: c.name)
def test_tracker_on_captured_response(cap, trailing):
    o = reference(cap)
    data = cap.response + (TRAILER if trailing else b"")
    for how, chunks in small_feeds(data):
        tracker = tracker_for(cap)
        consumed = feed_all(tracker, chunks)
        try:
            check(tracker, o, consumed)
        except AssertionError as exc:
            raise AssertionError(f"fed {how}: {exc}") from exc


@pytest.mark.parametrize("cap", BIG, ids=lambda c: c.name)
def test_tracker_on_captured_big_response(cap):
    o = reference(cap)
    data = cap.response + TRAILER
    for how, chunks in big_feeds(data):
        tracker = tracker_for(cap)
        consumed = feed_all(tracker, chunks)
        try:
            check(tracker, o, consumed)
        except AssertionError as exc:
            raise AssertionError(f"fed {how}: {exc}") from exc


def test_trailing_bytes_in_the_same_chunk_as_the_end_are_left_alone():
    cap = F.DEPRECATE_EOF_MULTI_SELECT
    nxt = F.DEPRECATE_EOF_SELECT_1.response
    tracker = tracker_for(cap)
    n = tracker.feed(cap.response + nxt)
    assert n == len(cap.response) and tracker.done
    assert tracker.feed(nxt) == 0  # a finished tracker takes nothing more
    assert tracker.rows == 2


# --- `done` must not be announced before the last byte of the response -------------------------------



def _ends_with_a_counted_packet(cap) -> bool:
    kind = response_kind(cap.command)
    if kind == ResponseKind.STATISTICS:
        return True
    if kind == ResponseKind.PREPARE and cap.capabilities & C.DEPRECATE_EOF:
        first = cap.packets()[0][1]
        return first[0] == 0 and (first[5:9] != b"\0\0\0\0")
    return False


@pytest.mark.parametrize(
    "cap",
    [
        c for c in SMALL
    ],
    ids=lambda c: c.name,
)
def test_done_only_after_the_last_byte(cap):
    data = cap.response
    for how, chunks in [("bytewise", bytewise(data))] + [(f"cut@{i}", p) for i, p in enumerate(two_pieces(data))]:
        tracker = tracker_for(cap)
        consumed = 0
        for chunk in chunks:
            consumed += tracker.feed(chunk)
            finished = tracker.done or tracker.local_infile
            assert finished == (consumed == len(data)), f"fed {how}: finished={finished} after {consumed} of {len(data)} bytes"


def test_response_ending_in_a_counted_packet_is_consumed_whole_when_fed_on():
    cap = F.EOF_STATISTICS
    tracker = tracker_for(cap)
    assert feed_all(tracker, bytewise(cap.response + TRAILER)) == len(cap.response)


def test_final_counted_packet_of_16mib_is_consumed_with_its_continuation():
    data = frame(b"s" * MAX, 1)  # a COM_STATISTICS answer of exactly 0xFFFFFF bytes: then an empty packet
    assert len(data) == 4 + MAX + 4
    tracker = ResponseTracker(ResponseKind.STATISTICS, 0)
    assert feed_all(tracker, [data[:4], data[4 : 4 + MAX], data[4 + MAX :] + TRAILER]) == len(data)
    assert tracker.done and tracker.next_seq == 3


# --------------------------------------------------------------------------- LOCAL INFILE


@pytest.mark.parametrize("profile", ["EOF", "DEPRECATE_EOF"])
def test_local_infile_pause_and_resume(profile):
    request = getattr(F, f"{profile}_LOCAL_INFILE_REQUEST")
    done = getattr(F, f"{profile}_LOCAL_INFILE_DONE")
    for feeds in (whole, bytewise):
        tracker = tracker_for(request)
        # the client's file packets would follow on the other direction; the server sends nothing meanwhile
        assert feed_all(tracker, feeds(request.response + done.response)) == len(request.response)
        assert tracker.local_infile and not tracker.done
        assert tracker.feed(done.response) == 0  # paused: nothing is taken until resumed
        tracker.resume_after_local_infile()
        assert not tracker.local_infile
        assert feed_all(tracker, feeds(done.response + TRAILER)) == len(done.response)
        assert tracker.done and tracker.results == 1 and tracker.status & Status.AUTOCOMMIT
        assert tracker.last_ok == done.packets()[0][1]
        assert tracker.next_seq == 5  # request 0, 0xFB 1, file 2, empty packet 3, OK 4


def test_resume_when_not_paused_is_a_programming_error():
    with pytest.raises(RuntimeError):
        ResponseTracker(ResponseKind.RESULT, 0).resume_after_local_infile()


def test_local_infile_refused_by_the_server_after_the_file():
    tracker = ResponseTracker(ResponseKind.RESULT, F.CAPS_EOF)
    tracker.feed(F.EOF_LOCAL_INFILE_REQUEST.response)
    tracker.resume_after_local_infile()
    err = frame(F.EOF_ERR_NO_TABLE.packets()[0][1], 4)
    assert tracker.feed(err) == len(err)
    assert tracker.done and tracker.error == F.EOF_ERR_NO_TABLE.packets()[0][1]


# --------------------------------------------------------------------------- kinds and trivia


def test_response_kind_by_command():
    assert response_kind(Command.QUERY) == ResponseKind.RESULT
    assert response_kind(Command.STMT_EXECUTE) == ResponseKind.RESULT
    assert response_kind(Command.STMT_PREPARE) == ResponseKind.PREPARE
    assert response_kind(Command.FIELD_LIST) == ResponseKind.FIELD_LIST
    assert response_kind(Command.STMT_FETCH) == ResponseKind.FETCH
    assert response_kind(Command.STATISTICS) == ResponseKind.STATISTICS
    for c in (Command.STMT_CLOSE, Command.STMT_SEND_LONG_DATA, Command.QUIT):
        assert response_kind(c) == ResponseKind.NONE
    for c in (Command.PING, Command.INIT_DB, Command.SET_OPTION, Command.RESET_CONNECTION, 0x7F):
        assert response_kind(c) == ResponseKind.SIMPLE


def test_no_response_kind_is_done_at_once_and_takes_nothing():
    tracker = ResponseTracker(ResponseKind.NONE, 0)
    assert tracker.done
    assert tracker.feed(TRAILER) == 0


def test_feeding_nothing_changes_nothing():
    tracker = ResponseTracker(ResponseKind.RESULT, F.CAPS_EOF)
    assert tracker.feed(b"") == 0
    tracker.feed(F.EOF_SELECT_1.response[:6])
    assert tracker.feed(b"") == 0 and tracker.in_packet and not tracker.done


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_feed_accepts_any_buffer(kind):
    cap = F.DEPRECATE_EOF_CALL_TWO_RESULTS
    tracker = tracker_for(cap)
    total = sum(tracker.feed(kind(c)) for c in random_chunks(cap.response, 5, 7))
    assert total == len(cap.response) and tracker.done and tracker.rows == 2


# --------------------------------------------------------------------------- rows of 16 MiB and more


def _column_count_and_defs(deprecate_eof: bool, columns: int = 1, seq: int = 1) -> tuple[bytes, int]:
    out = frame(bytes((columns,)), seq)
    for i in range(columns):
        out += frame(column_definition(f"c{i}"), seq + 1 + i)
    seq += 1 + columns
    if not deprecate_eof:
        out += frame(encode_eof(Status.AUTOCOMMIT), seq)
        seq += 1
    return out, seq


def _terminator(deprecate_eof: bool, status: int = Status.AUTOCOMMIT) -> bytes:
    if deprecate_eof:
        return b"\xfe\x00\x00" + codec.u16(status) + b"\x00\x00"
    return encode_eof(status)


def _row_whose_continuation_looks_like(tail: bytes, binary: bool) -> tuple[bytes, int]:
    """(row, column count): a valid row payload of MAX + len(tail) bytes whose second physical packet is ``tail``.

    One column when a length prefix fits (4-byte prefix: tails under 5 bytes; 9-byte
    prefix 0xFE: tails of 10 bytes and more), else two columns.
    """
    head = b"\x00\x00" if binary else b""  # binary row: 0x00 header and a one-byte NULL bitmap
    total = MAX + len(tail)
    for prefix_len in (4, 9):
        value_len = total - len(head) - prefix_len
        if len(codec.lenenc_int(value_len)) == prefix_len:
            values = [value_len]
            break
    else:
        first = len(tail)
        values = [first, total - len(head) - (1 + first) - 4]
    row = head + b"".join(codec.lenenc_int(n) + b"a" * n for n in values)
    row = row[: MAX] + tail
    assert len(row) == total
    # the row decodes as exactly its values (the tail lies inside the last one)
    r = Reader(row, len(head))
    assert [len(r.lenenc_bytes()) for _ in values] == values and r.at_end()
    return row, len(values)


TAILS = {
    "eof-lookalike": lambda: encode_eof(Status.AUTOCOMMIT),  # fe 00 00 02 00
    "ok-fe-lookalike": lambda: b"\xfe\x00\x00\x02\x00\x00\x00",
    "err-lookalike": lambda: b"\xff\x15\x04#28000Access denied",  # 22 bytes: the row starts with 0xFE
    "ok-lookalike": lambda: b"\x00\x00\x00\x02\x00\x00\x00",
    "empty": lambda: b"",  # exactly 0xFFFFFF: the row ends with an empty packet
}


def big_rows(deprecate_eof: bool, binary: bool, tail: str) -> tuple[bytes, int]:
    """A result set of three rows: a big one, a small one, the big one again; and its row count."""
    row, columns = _row_whose_continuation_looks_like(TAILS[tail](), binary)
    head, seq = _column_count_and_defs(deprecate_eof, columns)
    assert frame(row, 0)[4 + MAX + 4 :] == TAILS[tail]()  # the continuation packet is exactly the look-alike
    small_row = b"\x00\x00" + b"\x01x" * columns if binary else text_row(["x"] * columns)
    body = frame(row, seq)
    seq += len(row) // MAX + 1
    body += frame(small_row, seq) + frame(row, seq + 1)
    seq += 1 + len(row) // MAX + 1
    return head + body + frame(_terminator(deprecate_eof), seq), 3


@pytest.mark.parametrize("tail", list(TAILS))
@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
@pytest.mark.parametrize("deprecate_eof", [False, True], ids=["EOF", "DEPRECATE_EOF"])
def test_row_of_16mib_is_one_row_whatever_its_continuation_looks_like(deprecate_eof, binary, tail):
    data, rows = big_rows(deprecate_eof, binary, tail)
    caps = int(C.PROTOCOL_41 | (C.DEPRECATE_EOF if deprecate_eof else 0))
    bounds = packet_boundaries(data)
    feeds = [whole(data + TRAILER), random_chunks(data + TRAILER, 1, 1 << 20),
             cut_at(data + TRAILER, [b + k for b in bounds for k in range(0, 9)])]
    for chunks in feeds:
        tracker = ResponseTracker(ResponseKind.RESULT, caps)
        assert feed_all(tracker, chunks) == len(data)
        assert tracker.done and tracker.error is None
        assert tracker.rows == rows and tracker.results == 1
        assert tracker.status == Status.AUTOCOMMIT


def test_row_of_twice_16mib_ends_with_an_empty_packet():
    payload = codec.lenenc_int(2 * MAX - 9) + b"b" * (2 * MAX - 9)
    assert len(payload) == 2 * MAX
    head, seq = _column_count_and_defs(True)
    data = head + frame(payload, seq) + frame(_terminator(True), seq + 3)
    for chunks in (whole(data), cut_at(data, [b + k for b in packet_boundaries(data) for k in range(5)])):
        tracker = ResponseTracker(ResponseKind.RESULT, int(C.PROTOCOL_41 | C.DEPRECATE_EOF))
        assert feed_all(tracker, chunks) == len(data)
        assert tracker.done and tracker.rows == 1 and tracker.next_seq == (seq + 4) & 0xFF


def test_fetch_with_a_row_of_16mib():
    row, _ = _row_whose_continuation_looks_like(encode_eof(Status.AUTOCOMMIT), binary=True)
    data = frame(row, 1) + frame(encode_eof(Status.CURSOR_EXISTS | Status.LAST_ROW_SENT), 3)
    tracker = ResponseTracker(ResponseKind.FETCH, int(C.PROTOCOL_41))
    assert feed_all(tracker, random_chunks(data + TRAILER, 2, 1 << 20)) == len(data)
    assert tracker.done and tracker.rows == 1 and tracker.status & Status.LAST_ROW_SENT


# --------------------------------------------------------------------------- malformed responses

DEOF = int(C.PROTOCOL_41 | C.DEPRECATE_EOF)
EOFC = int(C.PROTOCOL_41)


def _cols(n: int, deprecate_eof: bool) -> bytes:
    out = frame(bytes((n,)), 1) + b"".join(frame(column_definition(f"c{i}"), 2 + i) for i in range(n))
    if not deprecate_eof:
        out += frame(encode_eof(2), 2 + n)
    return out


MALFORMED = {
    "empty-first-packet": (ResponseKind.RESULT, EOFC, frame(b"", 1)),
    "zero-columns": (ResponseKind.RESULT, EOFC, frame(b"\x00", 1)),
    "short-ok": (ResponseKind.RESULT, EOFC, frame(b"\x00\x00\x00\x02\x00", 1)),
    "truncated-column-count": (ResponseKind.RESULT, EOFC, frame(b"\xfc\x01", 1)),
    "bad-lenenc-in-ok": (ResponseKind.RESULT, EOFC, frame(b"\x00\xfb\x00\x02\x00\x00\x00", 1)),
    "not-an-eof-after-columns": (ResponseKind.RESULT, EOFC,
                                 frame(b"\x01", 1) + frame(column_definition("a"), 2) + frame(b"\x01\x02\x03", 3)),
    "truncated-eof-terminator": (ResponseKind.RESULT, DEOF, _cols(1, True) + frame(b"\xfe\x00\x00", 3)),
    "bad-ok-terminator": (ResponseKind.RESULT, DEOF, _cols(1, True) + frame(b"\xfe\xff\x00\x02\x00\x00\x00", 3)),
    "huge-first-packet": (ResponseKind.RESULT, EOFC, frame(b"\x01" * (2 << 20), 1)),
    "bad-prepare-ok": (ResponseKind.PREPARE, EOFC, frame(b"\x00\x01\x00", 1)),
    "prepare-not-ok": (ResponseKind.PREPARE, EOFC, frame(b"\x05" * 12, 1)),
    "prepare-params-without-eof": (ResponseKind.PREPARE, EOFC,
                                   frame(b"\x00\x01\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00", 1)
                                   + frame(column_definition("?"), 2) + frame(b"\x00" * 7, 3)),
    "simple-unknown-header": (ResponseKind.SIMPLE, EOFC, frame(b"\x05hello", 1)),
    "simple-short-ok": (ResponseKind.SIMPLE, EOFC, frame(b"\x00\x00", 1)),
    "simple-empty": (ResponseKind.SIMPLE, EOFC, frame(b"", 1)),
    "fetch-truncated-eof": (ResponseKind.FETCH, DEOF, frame(b"\xfe\x00", 1)),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_response_raises_malformed_packet_however_fed(name):
    kind, caps, data = MALFORMED[name]
    feeds = [whole(data), random_chunks(data, 3, 7)]
    if len(data) < 5000:
        feeds.append(bytewise(data))
    for chunks in feeds:
        tracker = ResponseTracker(kind, caps)
        with pytest.raises(MalformedPacket):
            for chunk in chunks:
                tracker.feed(chunk)


def test_oversized_terminator_is_refused_before_it_is_all_buffered():
    # with DEPRECATE_EOF any 0xFE packet shorter than 16 MiB - 1 ends the rows: one of 15 MiB is refused early
    data = _cols(1, True) + (0xF00000).to_bytes(3, "little") + b"\x03\xfe" + b"\x00" * (3 << 20)
    tracker = ResponseTracker(ResponseKind.RESULT, DEOF)
    with pytest.raises(MalformedPacket, match="too large"):
        for chunk in random_chunks(data, 4, 1 << 16):
            tracker.feed(chunk)




@pytest.mark.parametrize("feeds", [whole, bytewise], ids=["whole", "bytewise"])
def test_empty_packet_in_place_of_a_row_is_malformed(feeds):
    row = text_row(["z" * 250, "zz"])
    assert len(row) == 0xFE  # the header of the packet after the empty one starts with 0xFE
    data = _cols(2, False) + frame(b"", 4) + frame(row, 5) + frame(encode_eof(2), 6)
    tracker = ResponseTracker(ResponseKind.RESULT, EOFC)
    with pytest.raises(MalformedPacket):
        for chunk in feeds(data):
            tracker.feed(chunk)
