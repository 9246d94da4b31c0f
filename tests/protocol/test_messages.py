"""messages: parse every captured MariaDB message, round-trip the builders, and refuse bad bytes cleanly."""

from __future__ import annotations

import itertools

import pymysql._auth
import pytest

from myrouter.protocol import codec
from myrouter.protocol.auth import native_token
from myrouter.protocol.constants import Capability as C
from myrouter.protocol.constants import SessionTrack, Status
from myrouter.protocol.errors import MalformedPacket, MySQLError, access_denied
from myrouter.protocol.messages import (
    MYSQL_TYPE_LONGLONG,
    OK,
    AuthSwitch,
    ChangeUser,
    HandshakeResponse41,
    HandshakeV10,
    PrepareOK,
    auth_more_data,
    auth_switch_request,
    column_definition,
    encode_eof,
    encode_err,
    eof_status,
    error_payload,
    parse_err,
    parse_session_state,
    text_row,
)
from myrouter.protocol.response import ok_status

from . import fixtures as F
from .feeding import parses_or_malformed, time_limit

GREETING = F.GREETING[4:]
CLIENT_HELLOS = [F.CLIENT_HELLO_PYMYSQL, F.CLIENT_HELLO_MYSQLCLIENT, F.CLIENT_HELLO_CONNECTOR]


def payload(cap, index: int = 0) -> bytes:
    return cap.packets()[index][1]


def by_suffix(suffix: str):
    return [c for c in F.ALL if c.name.endswith(suffix)]


def _ok_captures():
    """(name, payload, capabilities) of every captured OK packet (header 0x00, not a binary row)."""
    out = []
    for c in F.ALL:
        pkts = c.packets()
        if len(pkts) == 1 and pkts[0][1][:1] == b"\x00" and c.command not in (0x16,):
            out.append((c.name, pkts[0][1], c.capabilities))
        elif c.name.endswith(("MULTI_OK",)):
            out += [(f"{c.name}[{i}]", p, c.capabilities) for i, (_, p) in enumerate(pkts)]
        elif c.name.endswith("CALL_TWO_RESULTS"):
            out.append((c.name + "[last]", pkts[-1][1], c.capabilities))
    return out


OK_CAPTURES = _ok_captures()
ERR_CAPTURES = [(c.name, payload(c)) for c in F.ALL if c.packets()[-1][1][:1] == b"\xff" and len(c.packets()) == 1]
EOF_CAPTURES = [
    (f"{c.name}[{i}]", p) for c in F.ALL if c.capabilities & C.PROTOCOL_41 for i, (_, p) in enumerate(c.packets())
    if p[:1] == b"\xfe" and len(p) == 5
]
PREPARE_OKS = [(c.name, payload(c)) for c in F.ALL if c.command == 0x16 and payload(c)[:1] == b"\x00"]


def test_fixture_inventory():
    # guard against an incomplete re-capture: the tests below rely on these kinds of packets
    assert len(OK_CAPTURES) >= 40
    assert len(ERR_CAPTURES) >= 10
    assert len(EOF_CAPTURES) >= 20
    assert len(PREPARE_OKS) >= 10


# --------------------------------------------------------------------------- greeting


def test_parse_captured_greeting():
    g = HandshakeV10.parse(GREETING)
    assert g.protocol_version == 10
    assert g.server_version == F.SERVER_VERSION
    assert g.server_version.startswith("5.5.5-10.11.")  # MariaDB's replication-compatibility prefix
    assert "MariaDB" in g.server_version
    assert g.connection_id > 0
    assert len(g.auth_data) == 20 and b"\0" not in g.auth_data
    assert g.auth_plugin == "mysql_native_password"
    assert g.charset == 45
    assert g.status == Status.AUTOCOMMIT
    need = C.PROTOCOL_41 | C.SECURE_CONNECTION | C.PLUGIN_AUTH | C.DEPRECATE_EOF | C.SESSION_TRACK
    need |= C.PLUGIN_AUTH_LENENC_CLIENT_DATA | C.CONNECT_ATTRS | C.MULTI_RESULTS | C.TRANSACTIONS
    assert g.capabilities & need == need
    assert not g.capabilities & C.LONG_PASSWORD  # MariaDB clears "CLIENT_MYSQL" to announce extended caps


def test_greeting_re_encodes_byte_for_byte_except_mariadb_extended_capabilities():
    g = HandshakeV10.parse(GREETING)
    again = g.encode()
    reserved = 1 + len(g.server_version) + 1 + 4 + 8 + 1 + 2 + 1 + 2 + 2 + 1
    assert len(again) == len(GREETING)
    # MariaDB keeps its own capability bits in the last 4 of the 10 reserved bytes; the proxy sends zeros
    assert again[: reserved + 6] == GREETING[: reserved + 6]
    assert again[reserved + 10 :] == GREETING[reserved + 10 :]
    assert HandshakeV10.parse(again) == g


@pytest.mark.parametrize(
    "caps",
    [
        C.PROTOCOL_41 | C.SECURE_CONNECTION | C.PLUGIN_AUTH,
        C.PROTOCOL_41 | C.SECURE_CONNECTION,
        C.PROTOCOL_41 | C.SECURE_CONNECTION | C.PLUGIN_AUTH | C.DEPRECATE_EOF | C.SESSION_TRACK,
    ],
    ids=["plugin-auth", "no-plugin-auth", "extended"],
)
@pytest.mark.parametrize("plugin", ["mysql_native_password", "caching_sha2_password"])
def test_greeting_round_trip(caps, plugin):
    g = HandshakeV10("8.0.36-myrouter", 12345, bytes(range(1, 21)), int(caps), 45, 2,
                     plugin if caps & C.PLUGIN_AUTH else "")
    assert HandshakeV10.parse(g.encode()) == g


def test_greeting_of_a_pre_4_1_server_stops_after_the_lower_capabilities():
    old = b"\x0a" + b"3.23.58\0" + codec.u32(7) + b"12345678" + b"\0" + codec.u16(C.LONG_PASSWORD)
    g = HandshakeV10.parse(old)
    assert (g.server_version, g.connection_id, g.auth_data, g.capabilities) == ("3.23.58", 7, b"12345678", 1)


def test_greeting_error_and_bad_protocol_version_are_malformed():
    err = encode_err(1040, "Too many connections", "08004")
    with pytest.raises(MalformedPacket, match="error"):
        HandshakeV10.parse(err)
    with pytest.raises(MalformedPacket, match="protocol version 9"):
        HandshakeV10.parse(b"\x09" + GREETING[1:])


# --------------------------------------------------------------------------- HandshakeResponse41


@pytest.mark.parametrize("cap", CLIENT_HELLOS, ids=lambda c: c.name)
def test_parse_real_client_handshake_responses(cap):
    scramble = HandshakeV10.parse(cap.request[4:]).auth_data
    (seq, hello), = cap.packets()
    assert seq == 1
    h = HandshakeResponse41.parse(hello)
    assert h.username == "app"
    assert h.database == "test"
    assert h.auth_plugin == "mysql_native_password"
    assert h.charset in (33, 45, 224, 255)
    # the scramble each library computed, checked against two implementations
    assert h.auth_response == native_token(b"app", scramble) == pymysql._auth.scramble_native_password(b"app", scramble)
    assert h.capabilities & C.CONNECT_ATTRS
    assert h.attrs["_client_name"] in ("pymysql", "libmariadb", "mysql-connector-python")
    assert h.attrs["_pid"].isdigit()


@pytest.mark.parametrize("cap", CLIENT_HELLOS, ids=lambda c: c.name)
def test_real_client_handshake_responses_re_encode_byte_for_byte(cap):
    hello = payload(cap)
    again = HandshakeResponse41.parse(hello).encode()
    # bytes 9..32 are filler (libmariadb keeps MariaDB extended capabilities in its last 4)
    assert again[:9] + again[32:] == hello[:9] + hello[32:]


@pytest.mark.parametrize("cap", [F.EOF_LOGIN_OK, F.DEPRECATE_EOF_LOGIN_OK, F.OLD_LOGIN_OK], ids=lambda c: c.name)
def test_handshake_responses_built_by_the_proxy_were_accepted_by_mariadb(cap):
    h = HandshakeResponse41.parse(cap.request)
    assert h.capabilities == cap.capabilities
    assert (h.username, h.database) == ("app", "test")
    assert h.encode() == cap.request
    (seq, ok), = cap.packets()
    assert seq == 2 and ok[:1] == b"\x00"  # the server said OK


FLAG_SETS = [
    sum(combo, C(0))
    for n in range(5)
    for combo in itertools.combinations(
        (C.CONNECT_WITH_DB, C.PLUGIN_AUTH, C.CONNECT_ATTRS, C.PLUGIN_AUTH_LENENC_CLIENT_DATA), n
    )
]


@pytest.mark.parametrize("flags", FLAG_SETS, ids=lambda f: repr(f).split(".", 1)[-1].rstrip(">") or "none")
@pytest.mark.parametrize("auth", [b"", bytes(range(1, 21)), bytes(range(32)), b"\x07" * 300], ids=["empty", "20", "32", "300"])
def test_handshake_response_round_trip(flags, auth):
    caps = C.PROTOCOL_41 | C.SECURE_CONNECTION | flags
    if len(auth) > 255 and not caps & C.PLUGIN_AUTH_LENENC_CLIENT_DATA:
        auth = auth[:255]  # a one-byte length prefix
    h = HandshakeResponse41(
        capabilities=int(caps),
        max_packet=1 << 24,
        charset=255,
        username="ünïcode_user",
        auth_response=auth,
        database="db1" if caps & C.CONNECT_WITH_DB else None,
        auth_plugin="caching_sha2_password" if caps & C.PLUGIN_AUTH else None,
        attrs={"_client_name": "t", "k" * 300: "v" * 70000, "": ""} if caps & C.CONNECT_ATTRS else {},
    )
    wire = h.encode()
    assert HandshakeResponse41.parse(wire) == h
    if caps & C.PLUGIN_AUTH_LENENC_CLIENT_DATA:
        assert codec.lenenc_bytes(auth) in wire


def test_handshake_response_without_secure_connection_uses_a_nul_terminated_token():
    h = HandshakeResponse41(int(C.PROTOCOL_41 | C.CONNECT_WITH_DB), 0, 8, "u", b"old-token", "db")
    assert HandshakeResponse41.parse(h.encode()) == h
    assert b"old-token\0db\0" in h.encode()


def test_handshake_response_field_layout():
    caps = C.PROTOCOL_41 | C.SECURE_CONNECTION | C.CONNECT_WITH_DB | C.PLUGIN_AUTH
    wire = HandshakeResponse41(int(caps), 0x01000000, 45, "bob", b"\x01\x02", "shop", "mysql_native_password").encode()
    assert wire == (
        codec.u32(caps) + codec.u32(0x01000000) + b"\x2d" + b"\0" * 23
        + b"bob\0" + b"\x02\x01\x02" + b"shop\0" + b"mysql_native_password\0"
    )


def test_handshake_response_without_protocol_41_is_malformed():
    h = HandshakeResponse41(int(C.SECURE_CONNECTION), 0, 8, "u", b"")
    with pytest.raises(MalformedPacket, match="4.1"):
        HandshakeResponse41.parse(h.encode())


def test_ssl_request_is_a_truncated_handshake_response():
    ssl_request = codec.u32(C.PROTOCOL_41 | C.SSL | C.SECURE_CONNECTION) + codec.u32(1 << 24) + b"\x2d" + b"\0" * 23
    assert len(ssl_request) == 32
    with pytest.raises(MalformedPacket):  # no user name: the caller must recognise the SSLRequest first
        HandshakeResponse41.parse(ssl_request)


# --------------------------------------------------------------------------- COM_CHANGE_USER


@pytest.mark.parametrize(
    "caps",
    [
        C.PROTOCOL_41 | C.SECURE_CONNECTION,
        C.PROTOCOL_41 | C.SECURE_CONNECTION | C.PLUGIN_AUTH,
        C.PROTOCOL_41 | C.SECURE_CONNECTION | C.PLUGIN_AUTH | C.CONNECT_ATTRS,
        C.PROTOCOL_41 | C.SECURE_CONNECTION | C.CONNECT_ATTRS,
    ],
    ids=["basic", "plugin", "plugin+attrs", "attrs"],
)
def test_change_user_round_trip(caps):
    cu = ChangeUser(
        username="bob",
        auth_response=bytes(range(20)),
        database="shop",
        charset=45,
        auth_plugin="mysql_native_password" if caps & C.PLUGIN_AUTH else None,
        attrs={"_client_name": "x", "a": "b"} if caps & C.CONNECT_ATTRS else {},
    )
    wire = cu.encode(int(caps))
    assert wire[0] == 0x11
    assert ChangeUser.parse(wire, int(caps)) == cu


def test_change_user_without_database_and_layout():
    caps = int(C.PROTOCOL_41 | C.SECURE_CONNECTION | C.PLUGIN_AUTH)
    cu = ChangeUser("u", b"", None, 33, "caching_sha2_password", {})
    wire = cu.encode(caps)
    assert wire == b"\x11u\0\x00\0" + codec.u16(33) + b"caching_sha2_password\0"
    assert ChangeUser.parse(wire, caps) == cu


def test_change_user_without_secure_connection():
    caps = int(C.PROTOCOL_41)
    cu = ChangeUser("u", b"tok", "db", 8, None, {})
    assert ChangeUser.parse(cu.encode(caps), caps) == cu


def test_change_user_minimal_old_packet_has_no_charset():
    cu = ChangeUser.parse(b"\x11u\0\x00db\0", int(C.PROTOCOL_41 | C.SECURE_CONNECTION))
    assert (cu.username, cu.auth_response, cu.database, cu.charset, cu.auth_plugin) == ("u", b"", "db", None, None)


def test_change_user_wrong_command_is_malformed():
    with pytest.raises(MalformedPacket):
        ChangeUser.parse(b"\x03select", int(C.PROTOCOL_41 | C.SECURE_CONNECTION))


# --------------------------------------------------------------------------- auth switch / more data


def test_parse_captured_auth_switch():
    (seq, p), = F.EOF_AUTH_SWITCH.packets()
    assert seq == 2
    sw = AuthSwitch.parse(p)
    assert sw.plugin == "mysql_native_password"
    assert len(sw.data) == 20 and b"\0" not in sw.data
    assert auth_switch_request(sw.plugin, sw.data) == p  # the builder produces MariaDB's exact bytes
    # the client answered native_token(b"app", data) and the server accepted it
    assert F.EOF_AUTH_SWITCH_OK.request == native_token(b"app", sw.data)
    assert payload(F.EOF_AUTH_SWITCH_OK)[:1] == b"\x00"


def test_auth_switch_round_trip_and_old_style():
    for plugin, data in [("caching_sha2_password", bytes(range(1, 21))), ("x", b""), ("mysql_clear_password", b"")]:
        assert AuthSwitch.parse(auth_switch_request(plugin, data)) == AuthSwitch(plugin, data)
    assert AuthSwitch.parse(b"\xfe") == AuthSwitch("mysql_old_password", b"")
    assert AuthSwitch.parse(b"\xfeplug\0") == AuthSwitch("plug", b"")
    with pytest.raises(MalformedPacket):
        AuthSwitch.parse(b"\x00plug\0")
    with pytest.raises(MalformedPacket):
        AuthSwitch.parse(b"\xfeno-terminator")
    assert auth_more_data(b"\x03") == b"\x01\x03"


# --------------------------------------------------------------------------- OK




@pytest.mark.parametrize(("name", "pl", "caps"), OK_CAPTURES, ids=[o[0] for o in OK_CAPTURES])
def test_captured_ok_packets_parse_and_re_encode_byte_for_byte(name, pl, caps):
    ok = OK.parse(pl, caps)
    assert ok.status == ok_status(pl)  # the tracker's fast path agrees with the full parser
    assert ok.encode(caps) == pl
    assert bool(ok.session_state) == bool(ok.status & Status.SESSION_STATE_CHANGED)


@pytest.mark.parametrize(
    ("cap", "affected", "info"),
    [
        (F.EOF_OK_INSERT, 2, "Records: 2  Duplicates: 0  Warnings: 0"),
        (F.DEPRECATE_EOF_OK_INSERT, 2, "Records: 2  Duplicates: 0  Warnings: 0"),
        (F.EOF_OK_UPDATE, 0, "Rows matched: 1  Changed: 0  Warnings: 0"),
        (F.EOF_OK_DO, 0, ""),
        (F.EOF_LOCAL_INFILE_DONE, 2, "Records: 2  Deleted: 0  Skipped: 0  Warnings: 0"),
        (F.EOF_INSERT_IN_TRANS, 1, ""),
        (F.EOF_EXECUTE_INSERT, 1, ""),
    ],
    ids=lambda v: v.name if hasattr(v, "name") else None,
)
def test_captured_ok_fields(cap, affected, info):
    ok = OK.parse(payload(cap), cap.capabilities)
    assert ok.affected_rows == affected
    assert ok.info == info
    assert ok.warnings == 0
    if "OK_INSERT" in cap.name:
        assert ok.last_insert_id > 0  # AUTO_INCREMENT


def test_ok_status_flags_follow_the_transaction():
    caps = F.CAPS_EOF
    assert OK.parse(payload(F.EOF_BEGIN), caps).status == Status.IN_TRANS | Status.AUTOCOMMIT
    assert OK.parse(payload(F.EOF_INSERT_IN_TRANS), caps).status & Status.IN_TRANS
    assert OK.parse(payload(F.EOF_COMMIT), caps).status == Status.AUTOCOMMIT
    assert not OK.parse(payload(F.EOF_AUTOCOMMIT_0), caps).status & Status.AUTOCOMMIT
    ro = OK.parse(payload(F.EOF_TRACK_START_RO), caps).status
    assert ro & (Status.IN_TRANS | Status.IN_TRANS_READONLY) == Status.IN_TRANS | Status.IN_TRANS_READONLY
    first, last = (OK.parse(p, caps) for _, p in F.EOF_MULTI_OK.packets())
    assert first.status & Status.MORE_RESULTS_EXISTS and not last.status & Status.MORE_RESULTS_EXISTS


def test_ok_info_without_session_track():
    pl = payload(F.OLD_OK_INSERT)
    ok = OK.parse(pl, F.CAPS_OLD)
    assert ok.info == "Records: 2  Duplicates: 0  Warnings: 0"
    assert ok.encode(F.CAPS_OLD) == pl


@pytest.mark.parametrize(
    "caps",
    [C.PROTOCOL_41 | C.SESSION_TRACK, C.PROTOCOL_41],
    ids=["session-track", "no-session-track"],
)
@pytest.mark.parametrize(
    "ok",
    [
        OK(),
        OK(affected_rows=251, last_insert_id=2**64 - 1, status=Status.IN_TRANS, warnings=3),
        OK(status=Status.AUTOCOMMIT | Status.SESSION_STATE_CHANGED, session_state=b"\x01\x05\x04test"),
        OK(status=Status.AUTOCOMMIT | Status.SESSION_STATE_CHANGED, info="x" * 300, session_state=b"\x05\x09\x08T_______"),
    ],
    ids=["default", "big-numbers", "state", "info+state"],
)
def test_ok_round_trip(ok, caps):
    if not caps & C.SESSION_TRACK and ok.session_state:
        ok = OK(ok.affected_rows, ok.last_insert_id, ok.status, ok.warnings, ok.info)
    assert OK.parse(ok.encode(int(caps)), int(caps)) == ok


def test_ok_with_eof_header_and_minimal_pre_41_forms():
    deprecate = int(C.PROTOCOL_41 | C.DEPRECATE_EOF | C.SESSION_TRACK)
    wire = OK(status=Status.AUTOCOMMIT).encode(deprecate, header=0xFE)
    assert wire == b"\xfe\x00\x00\x02\x00\x00\x00"
    assert OK.parse(wire, deprecate).status == Status.AUTOCOMMIT
    # pre-4.1 with TRANSACTIONS: status but no warnings; without either: neither
    assert OK.parse(b"\x00\x01\x02\x03\x00", int(C.TRANSACTIONS)) == OK(1, 2, 3, 0, "")
    assert OK.parse(b"\x00\x01\x02", 0) == OK(1, 2, 0, 0, "")


def test_ok_with_another_header_is_malformed():
    with pytest.raises(MalformedPacket, match="0xff"):
        OK.parse(payload(F.EOF_ERR_NO_TABLE), F.CAPS_EOF)


# --------------------------------------------------------------------------- session state


@pytest.mark.parametrize(
    ("cap", "expected"),
    [
        (F.EOF_LOGIN_OK, [(SessionTrack.SCHEMA, "test")]),
        (F.EOF_TRACK_USE, [(SessionTrack.SCHEMA, "test")]),
        (F.DEPRECATE_EOF_TRACK_INIT_DB, [(SessionTrack.SCHEMA, "test")]),
        (F.EOF_TRACK_TIME_ZONE, [(SessionTrack.SYSTEM_VARIABLES, ("time_zone", "+01:00"))]),
        (F.EOF_AUTOCOMMIT_0, [(SessionTrack.SYSTEM_VARIABLES, ("autocommit", "OFF"))]),
        (F.EOF_AUTOCOMMIT_1, [(SessionTrack.SYSTEM_VARIABLES, ("autocommit", "ON"))]),
        (F.EOF_TRACK_START_RO, [(SessionTrack.TRANSACTION_STATE, "T_______"),
                                (SessionTrack.TRANSACTION_CHARACTERISTICS, "START TRANSACTION READ ONLY;")]),
        (F.EOF_TRACK_COMMIT, [(SessionTrack.TRANSACTION_STATE, "________"),
                              (SessionTrack.TRANSACTION_CHARACTERISTICS, "")]),
    ],
    ids=lambda v: v.name if hasattr(v, "name") else None,
)
def test_parse_captured_session_state(cap, expected):
    ok = OK.parse(payload(cap), cap.capabilities)
    assert ok.status & Status.SESSION_STATE_CHANGED
    assert parse_session_state(ok.session_state) == expected




def test_parse_captured_state_change_entry():
    ok = OK.parse(payload(F.EOF_TRACK_STATE_ON), F.CAPS_EOF)
    assert ok.session_state == b"\x02\x01\x31"  # the raw bytes, as captured
    assert parse_session_state(ok.session_state) == [(SessionTrack.STATE_CHANGE, True)]


def test_parse_captured_session_state_with_every_variable_tracked():
    ok = OK.parse(payload(F.EOF_TRACK_SQL_MODE), F.CAPS_EOF)
    entries = parse_session_state(ok.session_state)
    assert (SessionTrack.STATE_CHANGE, True) in entries
    variables = dict(v for k, v in entries if k == SessionTrack.SYSTEM_VARIABLES)
    assert "ANSI" in variables["sql_mode"]


def test_parse_session_state_synthetic_entries():
    def entry(kind: int, body: bytes) -> bytes:
        return bytes((kind,)) + codec.lenenc_bytes(body)

    data = b"".join([
        entry(0, codec.lenenc_str("character_set_client") + codec.lenenc_str("utf8mb4")),
        entry(1, codec.lenenc_str("shop")),
        entry(3, b"\x00" + codec.lenenc_str("3E11FA47-71CA-11E1-9E33-C80AA9429562:23")),
        entry(4, codec.lenenc_str("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;")),
        entry(5, codec.lenenc_str("T__W____")),
        entry(42, b"\x01\x02\x03"),  # unknown types are kept raw
    ])
    assert parse_session_state(data) == [
        (0, ("character_set_client", "utf8mb4")),
        (1, "shop"),
        (3, "3E11FA47-71CA-11E1-9E33-C80AA9429562:23"),
        (4, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;"),
        (5, "T__W____"),
        (42, b"\x01\x02\x03"),
    ]
    assert parse_session_state(b"") == []


# --------------------------------------------------------------------------- ERR / EOF


@pytest.mark.parametrize(
    ("cap", "code", "sqlstate", "message"),
    [
        (F.EOF_ERR_NO_TABLE, 1146, "42S02", "Table 'test.no_such_table' doesn't exist"),
        (F.EOF_FIELD_LIST_ERR, 1146, "42S02", "Table 'test.nope' doesn't exist"),
        (F.EOF_UNKNOWN_COMMAND, 1047, "08S01", "Unknown command"),
        (F.EOF_EXECUTE_UNKNOWN, 1243, "HY000", "Unknown prepared statement handler (32767) given to mysqld_stmt_execute"),
        (F.EOF_LOGIN_BAD_PASSWORD, 1045, "28000", "Access denied for user 'app'@'127.0.0.1' (using password: YES)"),
    ],
    ids=lambda v: v.name if hasattr(v, "name") else None,
)
def test_parse_captured_err(cap, code, sqlstate, message):
    err = parse_err(cap.packets()[-1][1])
    assert (err.code, err.sqlstate, err.message) == (code, sqlstate, message)


@pytest.mark.parametrize(("name", "pl"), ERR_CAPTURES, ids=[e[0] for e in ERR_CAPTURES])
def test_captured_err_re_encodes_byte_for_byte(name, pl):
    assert error_payload(parse_err(pl)) == pl


def test_access_denied_is_byte_identical_to_mariadb():
    assert error_payload(access_denied("app", "127.0.0.1", True)) == payload(F.EOF_LOGIN_BAD_PASSWORD)
    no = access_denied("bob", "10.0.0.9", False)
    assert (no.code, no.sqlstate, no.message) == (1045, "28000", "Access denied for user 'bob'@'10.0.0.9' (using password: NO)")


def test_err_layouts():
    assert encode_err(1045, "no", "28000") == b"\xff\x15\x04#28000no"
    assert encode_err(1, "m", "4") == b"\xff\x01\x00#40000m"  # a short SQLSTATE is padded
    assert encode_err(1, "m", "HY000", capabilities=0) == b"\xff\x01\x00m"  # pre-4.1: no SQLSTATE
    old = parse_err(b"\xff\x01\x00message without state")
    assert (old.code, old.sqlstate, old.message) == (1, "HY000", "message without state")
    bare = parse_err(b"\xff\x01\x00")
    assert (bare.code, bare.sqlstate, bare.message) == (1, "HY000", "")
    with pytest.raises(MalformedPacket):
        parse_err(b"\x00\x01\x00")
    with pytest.raises(MalformedPacket):
        parse_err(b"\xff\x01")


def test_error_payload_of_a_mysql_error():
    e = MySQLError(1064, "syntax é", "42000")
    assert parse_err(error_payload(e)).message == "syntax é"
    assert repr(parse_err(error_payload(e))) == repr(e)


@pytest.mark.parametrize(("name", "pl"), EOF_CAPTURES, ids=[e[0] for e in EOF_CAPTURES])
def test_captured_eof_packets(name, pl):
    st = eof_status(pl)
    assert st & Status.AUTOCOMMIT
    assert encode_eof(st, int.from_bytes(pl[1:3], "little")) == pl


def test_eof_status_values():
    fetch_rest = F.EOF_FETCH_REST.packets()[-1][1]
    assert eof_status(fetch_rest) & Status.LAST_ROW_SENT
    cursor = F.EOF_EXECUTE_CURSOR.packets()[-1][1]
    assert eof_status(cursor) & Status.CURSOR_EXISTS
    warning = F.EOF_SELECT_WARNING.packets()[-1][1]
    assert warning[1:3] == b"\x01\x00"  # one warning
    assert eof_status(F.EOF_MULTI_SELECT.packets()[4][1]) & Status.MORE_RESULTS_EXISTS
    for bad in (b"", b"\xfe\x00\x00\x02", b"\x00\x00\x00\x02\x00"):
        with pytest.raises(MalformedPacket):
            eof_status(bad)


# --------------------------------------------------------------------------- COM_STMT_PREPARE


@pytest.mark.parametrize(("name", "pl"), PREPARE_OKS, ids=[p[0] for p in PREPARE_OKS])
def test_captured_prepare_ok_re_encodes(name, pl):
    assert PrepareOK.parse(pl).encode() == pl


@pytest.mark.parametrize(
    ("cap", "columns", "params"),
    [
        (F.EOF_PREPARE_SELECT, 3, 2),
        (F.EOF_PREPARE_INSERT, 0, 2),
        (F.EOF_PREPARE_SELECT_1, 1, 0),
        (F.EOF_PREPARE_DO, 0, 0),
        (F.DEPRECATE_EOF_PREPARE_CURSOR, 2, 0),
    ],
    ids=lambda v: v.name if hasattr(v, "name") else None,
)
def test_captured_prepare_ok_counts(cap, columns, params):
    p = PrepareOK.parse(payload(cap))
    assert (p.num_columns, p.num_params, p.warnings) == (columns, params, 0)
    assert p.statement_id >= 1


def test_prepare_ok_short_form_and_bad_header():
    assert PrepareOK.parse(b"\x00\x05\x00\x00\x00\x01\x00\x02\x00") == PrepareOK(5, 1, 2, 0)
    with pytest.raises(MalformedPacket):
        PrepareOK.parse(b"\xff\x05\x00\x00\x00\x01\x00\x02\x00")


# --------------------------------------------------------------------------- result-set builders


def test_column_definition_matches_mariadb_byte_for_byte():
    pk = F.EOF_SELECT_NULLS.packets()
    assert column_definition("id", type_code=3, table="t", schema="test", charset=63, length=11, flags=0x4203) == pk[1][1]
    assert column_definition("name", table="t", schema="test", charset=45, length=80) == pk[2][1]
    assert column_definition("v", type_code=3, table="t", schema="test", charset=63, length=11) == pk[3][1]


def test_column_definition_read_by_pymysql():
    from pymysql.protocol import FieldDescriptorPacket

    raw = column_definition("total", type_code=MYSQL_TYPE_LONGLONG, table="stats", schema="admin",
                            charset=63, length=20, flags=0x21, decimals=0)
    f = FieldDescriptorPacket(raw, "utf8")
    assert (f.catalog, f.db, f.table_name, f.org_table, f.name, f.org_name) == (
        b"def", b"admin", "stats", "stats", "total", "total")
    assert (f.charsetnr, f.length, f.type_code, f.flags, f.scale) == (63, 20, MYSQL_TYPE_LONGLONG, 0x21, 0)


def test_text_row_matches_mariadb_rows_with_nulls():
    rows = [p for _, p in F.EOF_SELECT_NULLS.packets()[5:10]]
    assert rows == [
        text_row([1, "a", 1]),
        text_row([2, "b", None]),
        text_row([3, None, 3]),
        text_row([4, "d", 4]),
        text_row([5, "e", 5]),
    ]
    long_row = F.EOF_SELECT_LONG_VALUES.packets()[4][1]
    assert long_row == text_row(["x" * 300, b"y" * 70000])  # 0xFC and 0xFD length prefixes


def test_text_row_values():
    assert text_row([]) == b""
    assert text_row([None, b"", 0, "é", 2.5]) == b"\xfb\x00\x010\x02\xc3\xa9\x032.5"


# --------------------------------------------------------------------------- bad input: truncation and garbage


def _hello_variants():
    out = [payload(c) for c in CLIENT_HELLOS]
    out += [F.EOF_LOGIN_OK.request, F.OLD_LOGIN_OK.request]
    for flags in FLAG_SETS:
        caps = int(C.PROTOCOL_41 | C.SECURE_CONNECTION | flags)
        out.append(HandshakeResponse41(caps, 1, 45, "user", bytes(range(20)), "db", "plug", {"a": "b", "cc": "d"}).encode())
    return out


def _change_user_variants():
    out = []
    for caps in (C.PROTOCOL_41 | C.SECURE_CONNECTION, C.PROTOCOL_41 | C.SECURE_CONNECTION | C.PLUGIN_AUTH | C.CONNECT_ATTRS, C.PROTOCOL_41):
        out.append((ChangeUser("bob", bytes(range(20)), "db", 45, "p" if caps & C.PLUGIN_AUTH else None,
                               {"k": "v"} if caps & C.CONNECT_ATTRS else {}).encode(int(caps)), int(caps)))
    return out


def _greeting_variants():
    out = [GREETING]
    for caps in (C.PROTOCOL_41, C.PROTOCOL_41 | C.SECURE_CONNECTION, C.PROTOCOL_41 | C.SECURE_CONNECTION | C.PLUGIN_AUTH):
        out.append(HandshakeV10("v", 1, bytes(range(1, 21)), int(caps), 45, 2, "mysql_native_password").encode())
    return out


def _states():
    out = []
    for _, pl, caps in OK_CAPTURES:
        ok = OK.parse(pl, caps)
        if ok.session_state:
            out.append(ok.session_state)
    return out


# (name, parse function of one payload, valid payloads)
PARSERS = [
    ("HandshakeV10", HandshakeV10.parse, _greeting_variants()),
    ("HandshakeResponse41", HandshakeResponse41.parse, _hello_variants()),
    ("AuthSwitch", AuthSwitch.parse, [payload(F.EOF_AUTH_SWITCH), auth_switch_request("caching_sha2_password", b"n" * 20)]),
    ("OK/CAPS_EOF", lambda p: OK.parse(p, F.CAPS_EOF), [pl for _, pl, _ in OK_CAPTURES]),
    ("OK/CAPS_OLD", lambda p: OK.parse(p, F.CAPS_OLD), [pl for _, pl, _ in OK_CAPTURES]),
    ("OK/pre-4.1", lambda p: OK.parse(p, int(C.TRANSACTIONS)), [pl for _, pl, _ in OK_CAPTURES[:5]]),
    ("ok_status", ok_status, [pl for _, pl, _ in OK_CAPTURES]),
    ("parse_session_state", parse_session_state, _states()),
    ("parse_err", parse_err, [pl for _, pl in ERR_CAPTURES]),
    ("eof_status", eof_status, [pl for _, pl in EOF_CAPTURES[:10]]),
    ("PrepareOK", PrepareOK.parse, [pl for _, pl in PREPARE_OKS]),
] + [
    (f"ChangeUser/{caps:#x}", (lambda c: lambda p: ChangeUser.parse(p, c))(caps), [wire])
    for wire, caps in _change_user_variants()
]


@pytest.mark.parametrize(("name", "parse", "valid"), PARSERS, ids=[p[0] for p in PARSERS])
def test_every_truncation_parses_or_is_malformed(name, parse, valid):
    assert valid
    with time_limit(10):
        for pl in valid:
            for i in range(len(pl) + 1):
                parses_or_malformed(parse, pl[:i])


def test_the_garbage_harness_can_fail():
    # parses_or_malformed lets anything but MalformedPacket through
    def broken(p: bytes):
        return p[10]

    with pytest.raises(IndexError):
        parses_or_malformed(broken, b"short")
    assert isinstance(parses_or_malformed(lambda p: OK.parse(p, 0), b""), MalformedPacket)
