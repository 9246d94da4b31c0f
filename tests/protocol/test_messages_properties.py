"""messages, property-based: every parser on any bytes returns a value or raises MalformedPacket,
and every builder's output parses back to what was built."""

from __future__ import annotations

import functools
import random

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from myrouter.protocol import codec
from myrouter.protocol.codec import Reader
from myrouter.protocol.constants import Capability as C
from myrouter.protocol.constants import SessionTrack, Status
from myrouter.protocol.messages import (
    OK,
    AuthSwitch,
    ChangeUser,
    HandshakeResponse41,
    HandshakeV10,
    PrepareOK,
    auth_switch_request,
    column_definition,
    encode_eof,
    encode_err,
    eof_status,
    parse_err,
    parse_session_state,
    text_row,
)

from .feeding import (
    INTERESTING_BYTES,
    PROPERTIES,
    legacy_mutations,
    mutated,
    parses_or_malformed,
    time_limit,
    with_examples,
)
from .test_messages import PARSERS

# --------------------------------------------------------------------------- any bytes

ALL_VALID = [pl for _, _, valid in PARSERS for pl in valid]
FIRST_BYTES = sorted({pl[0] for pl in ALL_VALID if pl})
GARBAGE = st.one_of(
    st.binary(max_size=64),
    # past the header check of most parsers
    st.tuples(st.sampled_from(FIRST_BYTES), st.binary(max_size=64)).map(lambda t: bytes((t[0],)) + t[1]),
    st.lists(st.sampled_from(INTERESTING_BYTES), min_size=1, max_size=24).map(bytes),
    mutated(st.sampled_from(ALL_VALID)),
)


@functools.cache
def _legacy_garbage() -> tuple[tuple[bytes], ...]:
    """The first inputs the hand-rolled loop drew for each parser (seeded with the parser's name):
    40 random payloads and 40 damaged valid ones each, kept as explicit examples."""
    out = []
    for name, _, valid in PARSERS:
        rng = random.Random(sum(name.encode()))
        firsts = sorted({pl[0] for pl in valid if pl})
        for _ in range(40):
            data = bytearray(rng.randbytes(rng.randint(0, 64)))
            if data and rng.random() < 0.7:
                data[0] = rng.choice(firsts)
            out.append((bytes(data),))
        for pl in valid:
            out += [(bad,) for bad in legacy_mutations(pl, rng, max(1, 40 // len(valid)))]
    return tuple(out)


@pytest.mark.parametrize(("name", "parse"), [p[:2] for p in PARSERS], ids=[p[0] for p in PARSERS])
@PROPERTIES
@given(raw=GARBAGE)
@with_examples(_legacy_garbage())
def test_any_bytes_parse_or_are_malformed(name, parse, raw):
    with time_limit(5):
        parses_or_malformed(parse, raw)


# --------------------------------------------------------------------------- round trips

U16 = st.integers(0, 0xFFFF)
U32 = st.integers(0, 0xFFFFFFFF)
# text as the proxy builds it: no NUL (a terminator), no lone surrogates (not encodable)
NAME = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=30)
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
ATTRS = st.dictionaries(TEXT, TEXT, max_size=5)


def flags(*bits: C) -> st.SearchStrategy[int]:
    """Any combination of ``bits``."""
    return st.lists(st.sampled_from(bits), unique=True).map(lambda bs: int(sum(bs, C(0))))


@PROPERTIES
@given(
    version=NAME,
    conn_id=U32,
    caps=st.tuples(U32, flags(C.PLUGIN_AUTH)).map(lambda t: t[0] | t[1] | C.PROTOCOL_41 | C.SECURE_CONNECTION),
    charset=st.integers(0, 255),
    status=U16,
    data=st.data(),
)
def test_greeting_round_trip(version, conn_id, caps, charset, status, data):
    plugin_auth = bool(caps & C.PLUGIN_AUTH)
    auth_data = data.draw(st.binary(min_size=20, max_size=60 if plugin_auth else 20), label="auth_data")
    plugin = data.draw(NAME, label="plugin") if plugin_auth else ""
    g = HandshakeV10(version, conn_id, auth_data, int(caps), charset, status, plugin)
    assert HandshakeV10.parse(g.encode()) == g


@PROPERTIES
@given(
    caps=flags(C.SECURE_CONNECTION, C.CONNECT_WITH_DB, C.PLUGIN_AUTH, C.CONNECT_ATTRS, C.PLUGIN_AUTH_LENENC_CLIENT_DATA),
    max_packet=U32,
    charset=st.integers(0, 255),
    username=NAME,
    data=st.data(),
)
def test_handshake_response_round_trip(caps, max_packet, charset, username, data):
    caps |= int(C.PROTOCOL_41)
    if caps & C.PLUGIN_AUTH_LENENC_CLIENT_DATA:
        auth = data.draw(st.binary(max_size=400), label="auth")
    elif caps & C.SECURE_CONNECTION:
        auth = data.draw(st.binary(max_size=255), label="auth")
    else:
        auth = data.draw(st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"")), label="auth")
    h = HandshakeResponse41(
        capabilities=caps,
        max_packet=max_packet,
        charset=charset,
        username=username,
        auth_response=auth,
        database=data.draw(NAME, label="database") if caps & C.CONNECT_WITH_DB else None,
        auth_plugin=data.draw(NAME, label="plugin") if caps & C.PLUGIN_AUTH else None,
        attrs=data.draw(ATTRS, label="attrs") if caps & C.CONNECT_ATTRS else {},
    )
    assert HandshakeResponse41.parse(h.encode()) == h


@PROPERTIES
@given(
    caps=flags(C.SECURE_CONNECTION, C.PLUGIN_AUTH, C.CONNECT_ATTRS),
    username=NAME,
    database=st.none() | NAME.filter(bool),
    charset=U16,
    data=st.data(),
)
def test_change_user_round_trip(caps, username, database, charset, data):
    caps |= int(C.PROTOCOL_41)
    if caps & C.SECURE_CONNECTION:
        auth = data.draw(st.binary(max_size=255), label="auth")
    else:
        auth = data.draw(st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"")), label="auth")
    cu = ChangeUser(
        username=username,
        auth_response=auth,
        database=database,
        charset=charset,
        auth_plugin=data.draw(NAME, label="plugin") if caps & C.PLUGIN_AUTH else None,
        attrs=data.draw(ATTRS, label="attrs") if caps & C.CONNECT_ATTRS else {},
    )
    assert ChangeUser.parse(cu.encode(caps), caps) == cu


@PROPERTIES
@given(plugin=NAME, data=st.binary(max_size=64))
def test_auth_switch_round_trip(plugin, data):
    assume(plugin)  # an empty switch request is the old "use old password" form
    assert AuthSwitch.parse(auth_switch_request(plugin, data)) == AuthSwitch(plugin, data)


@PROPERTIES
@given(
    caps=st.sampled_from([C.PROTOCOL_41 | C.SESSION_TRACK, C.PROTOCOL_41, C.TRANSACTIONS]).map(int),
    affected=st.integers(0, 2**64 - 1),
    insert_id=st.integers(0, 2**64 - 1),
    status=U16,
    warnings=U16,
    info=TEXT,
    state=st.binary(max_size=300),
    header=st.sampled_from([0x00, 0xFE]),
)
def test_ok_round_trip(caps, affected, insert_id, status, warnings, info, state, header):
    if not caps & C.PROTOCOL_41:
        warnings = 0  # not on the wire before 4.1
    if not (caps & C.SESSION_TRACK and status & Status.SESSION_STATE_CHANGED):
        state = b""
    ok = OK(affected, insert_id, status, warnings, info, state)
    payload = ok.encode(caps, header=header)
    assert payload[0] == header
    assert OK.parse(payload, caps) == ok


@PROPERTIES
@given(code=U16, message=TEXT, sqlstate=st.text("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=5, max_size=5))
def test_err_round_trip(code, message, sqlstate):
    err = parse_err(encode_err(code, message, sqlstate))
    assert (err.code, err.sqlstate, err.message) == (code, sqlstate, message)


@PROPERTIES
@given(status=U16, warnings=U16)
def test_eof_round_trip(status, warnings):
    payload = encode_eof(status, warnings)
    assert eof_status(payload) == status
    assert Reader(payload[1:3]).u16() == warnings


@PROPERTIES
@given(sid=U32, cols=U16, params=U16, warnings=U16)
def test_prepare_ok_round_trip(sid, cols, params, warnings):
    p = PrepareOK(sid, cols, params, warnings)
    assert PrepareOK.parse(p.encode()) == p


SESSION_ENTRIES = st.lists(
    st.one_of(
        st.tuples(st.just(SessionTrack.SYSTEM_VARIABLES), st.tuples(TEXT, TEXT)),
        st.tuples(st.just(SessionTrack.SCHEMA), TEXT),
        st.tuples(st.just(SessionTrack.STATE_CHANGE), st.booleans()),
        st.tuples(st.just(SessionTrack.GTIDS), TEXT),
        st.tuples(st.sampled_from([SessionTrack.TRANSACTION_CHARACTERISTICS, SessionTrack.TRANSACTION_STATE]), TEXT),
        st.tuples(st.integers(6, 255), st.binary(max_size=20)),  # unknown types: kept raw
    ),
    max_size=6,
)


def _session_entry(kind: int, value) -> bytes:
    if kind == SessionTrack.SYSTEM_VARIABLES:
        body = codec.lenenc_str(value[0]) + codec.lenenc_str(value[1])
    elif kind == SessionTrack.STATE_CHANGE:
        body = b"1" if value else b"0"  # a bare '1' (MySQL's and MariaDB's session_tracker.cc)
    elif kind == SessionTrack.GTIDS:
        body = b"\x00" + codec.lenenc_str(value)
    elif kind in (SessionTrack.SCHEMA, SessionTrack.TRANSACTION_CHARACTERISTICS, SessionTrack.TRANSACTION_STATE):
        body = codec.lenenc_str(value)
    else:
        body = value
    return bytes((kind,)) + codec.lenenc_bytes(body)


@PROPERTIES
@given(entries=SESSION_ENTRIES)
def test_session_state_round_trip(entries):
    data = b"".join(_session_entry(k, v) for k, v in entries)
    assert parse_session_state(data) == entries


@PROPERTIES
@given(
    name=TEXT,
    table=TEXT,
    schema=TEXT,
    type_code=st.integers(0, 255),
    charset=U16,
    length=U32,
    flags_=U16,
    decimals=st.integers(0, 255),
)
def test_column_definition_reads_back_field_by_field(name, table, schema, type_code, charset, length, flags_, decimals):
    r = Reader(column_definition(name, type_code=type_code, table=table, schema=schema, charset=charset,
                                 length=length, flags=flags_, decimals=decimals))
    assert [r.lenenc_str() for _ in range(6)] == ["def", schema, table, table, name, name]
    assert r.lenenc_int() == 0x0C
    assert (r.u16(), r.u32(), r.u8(), r.u16(), r.u8()) == (charset, length, type_code, flags_, decimals)
    assert r.fixed(2) == b"\0\0" and r.at_end()


@PROPERTIES
@given(values=st.lists(st.none() | st.binary(max_size=300) | TEXT | st.integers(), max_size=8))
def test_text_row_reads_back_value_by_value(values):
    r = Reader(text_row(values))
    for v in values:
        if v is None:
            assert r.u8() == 0xFB
        else:
            want = v if isinstance(v, bytes) else str(v).encode()
            assert r.lenenc_bytes() == want
    assert r.at_end()
