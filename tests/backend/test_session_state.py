"""Session-state helpers: OK packets stripped of tracking data, values turned into SQL literals."""

from __future__ import annotations

from myrouter.frontend.session import _ok_insert_id, _sql_literal, _strip_session_state
from myrouter.protocol.constants import Capability as C, Status
from myrouter.protocol.messages import OK
from myrouter.protocol.packets import frame

TRACKING = int(C.PROTOCOL_41 | C.SESSION_TRACK)


def test_final_ok_loses_its_session_state_for_a_non_tracking_client():
    state = b"\x00\x0c\x09time_zone\x06+01:00"
    ok = OK(affected_rows=0, status=int(Status.AUTOCOMMIT | Status.SESSION_STATE_CHANGED), info="",
            session_state=state).encode(TRACKING)
    head = frame(b"\x01", 1) + frame(b"col", 2)
    out = _strip_session_state(head + frame(ok, 3), ok)
    assert out.startswith(head)
    stripped = OK.parse(out[len(head) + 4:], int(C.PROTOCOL_41))
    assert stripped.status == int(Status.AUTOCOMMIT)
    assert stripped.session_state == b"" and out[len(head) + 3] == 3


def test_info_is_kept():
    ok = OK(affected_rows=3, status=int(Status.SESSION_STATE_CHANGED), info="Rows matched: 3",
            session_state=b"\x01\x05\x04test").encode(TRACKING)
    out = _strip_session_state(frame(ok, 1), ok)
    parsed = OK.parse(out[4:], int(C.PROTOCOL_41))
    assert (parsed.affected_rows, parsed.info, parsed.status) == (3, "Rows matched: 3", 0)


def test_ok_not_wholly_in_the_chunk_is_left_alone():
    ok = OK(status=int(Status.SESSION_STATE_CHANGED), session_state=b"\x01\x05\x04test").encode(TRACKING)
    chunk = frame(ok, 1)[5:]
    assert _strip_session_state(chunk, ok) == chunk


def test_insert_id():
    assert _ok_insert_id(OK(affected_rows=1, last_insert_id=300).encode(TRACKING)) == 300
    assert _ok_insert_id(b"\x00") == 0


def test_sql_literals():
    assert _sql_literal("42") == "42"
    assert _sql_literal("-1.5") == "-1.5"
    assert _sql_literal("STRICT_ALL_TABLES,ANSI") == "'STRICT_ALL_TABLES,ANSI'"
    assert _sql_literal("it's") == "'it''s'"
    assert _sql_literal("a\\b") == "'a\\\\b'"
    assert _sql_literal("a\\b", no_backslash_escapes=True) == "'a\\b'"
