"""Message codecs: parse a payload into a dataclass, or build a payload.

Builders are pure functions of their fields; parsers take the payload (no
header) and the negotiated capabilities where the layout depends on them.
Parsers raise only ``MalformedPacket``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import codec
from .codec import Reader
from .constants import (
    AUTH_MORE_DATA_HEADER,
    EOF_HEADER,
    ERR_HEADER,
    OK_HEADER,
    Capability,
    SessionTrack,
    Status,
)
from .errors import MalformedPacket, MySQLError
from .packets import frame

_C = Capability


def _s(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------
# Connection phase
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandshakeV10:
    server_version: str
    connection_id: int
    auth_data: bytes  # the scramble / nonce (20 bytes for both supported plugins)
    capabilities: int
    charset: int
    status: int
    auth_plugin: str
    protocol_version: int = 10

    def encode(self) -> bytes:
        caps = self.capabilities
        data = self.auth_data
        part1, part2 = data[:8], data[8:]
        out = [
            bytes((self.protocol_version,)),
            self.server_version.encode() + b"\0",
            codec.u32(self.connection_id),
            part1.ljust(8, b"\0"),  # auth-plugin-data-part-1
            b"\0",  # filler
            codec.u16(caps & 0xFFFF),
            bytes((self.charset & 0xFF,)),
            codec.u16(self.status),
            codec.u16((caps >> 16) & 0xFFFF),
            bytes((len(data) + 1 if caps & _C.PLUGIN_AUTH else 0,)),
            b"\0" * 10,  # reserved (MariaDB puts extended capabilities in the last 4)
        ]
        if caps & _C.SECURE_CONNECTION:
            # part 2 is at least 13 bytes, NUL-terminated
            out.append(part2.ljust(12, b"\0") + b"\0")
        if caps & _C.PLUGIN_AUTH:
            out.append(self.auth_plugin.encode() + b"\0")
        return b"".join(out)

    @classmethod
    def parse(cls, payload: bytes) -> HandshakeV10:
        r = Reader(payload)
        proto = r.u8()
        if proto == ERR_HEADER:
            raise MalformedPacket("server sent an error instead of a greeting")
        if proto != 10:
            raise MalformedPacket(f"unsupported handshake protocol version {proto}")
        version = _s(r.nul_bytes())
        conn_id = r.u32()
        part1 = r.fixed(8)
        r.skip(1)
        caps = r.u16()
        charset = status = 0
        auth_len = 0
        plugin = ""
        part2 = b""
        if not r.at_end():
            charset = r.u8()
            status = r.u16()
            caps |= r.u16() << 16
            auth_len = r.u8()
            r.skip(10)
            if caps & _C.SECURE_CONNECTION:
                n = max(13, auth_len - 8)
                part2 = r.fixed(min(n, r.remaining))
                if part2.endswith(b"\0"):
                    part2 = part2[:-1]
            if caps & _C.PLUGIN_AUTH:
                plugin = _s(r.nul_or_rest())
        return cls(version, conn_id, part1 + part2, caps, charset, status, plugin, proto)


@dataclass(frozen=True, slots=True)
class HandshakeResponse41:
    capabilities: int
    max_packet: int
    charset: int
    username: str
    auth_response: bytes
    database: str | None = None
    auth_plugin: str | None = None
    attrs: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        caps = self.capabilities
        out = [
            codec.u32(caps),
            codec.u32(self.max_packet),
            bytes((self.charset & 0xFF,)),
            b"\0" * 23,
            self.username.encode() + b"\0",
        ]
        if caps & _C.PLUGIN_AUTH_LENENC_CLIENT_DATA:
            out.append(codec.lenenc_bytes(self.auth_response))
        elif caps & _C.SECURE_CONNECTION:
            out.append(bytes((len(self.auth_response),)) + self.auth_response)
        else:
            out.append(self.auth_response + b"\0")
        if caps & _C.CONNECT_WITH_DB:
            out.append((self.database or "").encode() + b"\0")
        if caps & _C.PLUGIN_AUTH:
            out.append((self.auth_plugin or "").encode() + b"\0")
        if caps & _C.CONNECT_ATTRS:
            kv = b"".join(codec.lenenc_str(k) + codec.lenenc_str(v) for k, v in self.attrs.items())
            out.append(codec.lenenc_bytes(kv))
        return b"".join(out)

    @classmethod
    def parse(cls, payload: bytes) -> HandshakeResponse41:
        r = Reader(payload)
        caps = r.u32()
        if not caps & _C.PROTOCOL_41:
            raise MalformedPacket("client does not speak protocol 4.1")
        max_packet = r.u32()
        charset = r.u8()
        r.skip(23)
        username = _s(r.nul_bytes())
        if caps & _C.PLUGIN_AUTH_LENENC_CLIENT_DATA:
            auth = r.lenenc_bytes()
        elif caps & _C.SECURE_CONNECTION:
            auth = r.fixed(r.u8())
        else:
            auth = r.nul_bytes()
        database = None
        if caps & _C.CONNECT_WITH_DB and not r.at_end():
            database = _s(r.nul_or_rest())
        plugin = None
        if caps & _C.PLUGIN_AUTH and not r.at_end():
            plugin = _s(r.nul_or_rest())
        attrs: dict[str, str] = {}
        if caps & _C.CONNECT_ATTRS and not r.at_end():
            kv = Reader(r.lenenc_bytes())
            while not kv.at_end():
                k = kv.lenenc_str()
                attrs[k] = kv.lenenc_str()
        return cls(caps, max_packet, charset, username, auth, database, plugin, attrs)


SSL_REQUEST_LENGTH = 32  # an SSLRequest is the first 32 bytes of a HandshakeResponse41


@dataclass(frozen=True, slots=True)
class ChangeUser:
    username: str
    auth_response: bytes
    database: str | None
    charset: int | None
    auth_plugin: str | None
    attrs: dict[str, str]

    @classmethod
    def parse(cls, payload: bytes, capabilities: int) -> ChangeUser:
        r = Reader(payload)
        if r.u8() != 0x11:
            raise MalformedPacket("not a COM_CHANGE_USER packet")
        username = _s(r.nul_bytes())
        if capabilities & _C.SECURE_CONNECTION:
            auth = r.fixed(r.u8())
        else:
            auth = r.nul_bytes()
        database = _s(r.nul_or_rest()) or None
        charset = plugin = None
        attrs: dict[str, str] = {}
        if r.remaining >= 2:
            charset = r.u16()
        if capabilities & _C.PLUGIN_AUTH and not r.at_end():
            plugin = _s(r.nul_or_rest())
        if capabilities & _C.CONNECT_ATTRS and not r.at_end():
            kv = Reader(r.lenenc_bytes())
            while not kv.at_end():
                k = kv.lenenc_str()
                attrs[k] = kv.lenenc_str()
        return cls(username, auth, database, charset, plugin, attrs)

    def encode(self, capabilities: int) -> bytes:
        out = [b"\x11", self.username.encode() + b"\0"]
        if capabilities & _C.SECURE_CONNECTION:
            out.append(bytes((len(self.auth_response),)) + self.auth_response)
        else:
            out.append(self.auth_response + b"\0")
        out.append((self.database or "").encode() + b"\0")
        out.append(codec.u16(self.charset or 0))
        if capabilities & _C.PLUGIN_AUTH:
            out.append((self.auth_plugin or "").encode() + b"\0")
        if capabilities & _C.CONNECT_ATTRS:
            kv = b"".join(codec.lenenc_str(k) + codec.lenenc_str(v) for k, v in self.attrs.items())
            out.append(codec.lenenc_bytes(kv))
        return b"".join(out)


def auth_switch_request(plugin: str, data: bytes, *, nul_ended: bool = True) -> bytes:
    """AuthSwitchRequest payload: 0xFE, plugin name NUL, plugin data (NUL-ended for the 20-byte
    scrambles; client_ed25519 wants exactly its 32-byte nonce: ``nul_ended=False``)."""
    return b"\xfe" + plugin.encode() + b"\0" + data + (b"\0" if nul_ended else b"")


@dataclass(frozen=True, slots=True)
class AuthSwitch:
    plugin: str
    data: bytes

    @classmethod
    def parse(cls, payload: bytes) -> AuthSwitch:
        r = Reader(payload)
        if r.u8() != EOF_HEADER:
            raise MalformedPacket("not an AuthSwitchRequest")
        if r.at_end():  # old-style "use old password" request
            return cls("mysql_old_password", b"")
        plugin = _s(r.nul_bytes())
        data = r.rest()
        if data.endswith(b"\0"):
            data = data[:-1]
        return cls(plugin, data)


def auth_more_data(data: bytes) -> bytes:
    return bytes((AUTH_MORE_DATA_HEADER,)) + data


# --------------------------------------------------------------------------
# Generic responses
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OK:
    affected_rows: int = 0
    last_insert_id: int = 0
    status: int = Status.AUTOCOMMIT
    warnings: int = 0
    info: str = ""
    session_state: bytes = b""  # raw session-state-change data when SESSION_STATE_CHANGED

    def encode(self, capabilities: int, header: int = OK_HEADER) -> bytes:
        out = [
            bytes((header,)),
            codec.lenenc_int(self.affected_rows),
            codec.lenenc_int(self.last_insert_id),
        ]
        if capabilities & _C.PROTOCOL_41:
            out.append(codec.u16(self.status))
            out.append(codec.u16(self.warnings))
        elif capabilities & _C.TRANSACTIONS:
            out.append(codec.u16(self.status))
        if capabilities & _C.SESSION_TRACK:
            if self.info or self.status & Status.SESSION_STATE_CHANGED:
                out.append(codec.lenenc_str(self.info))
            if self.status & Status.SESSION_STATE_CHANGED:
                out.append(codec.lenenc_bytes(self.session_state))
        elif self.info:
            out.append(codec.lenenc_str(self.info))
        return b"".join(out)

    @classmethod
    def parse(cls, payload: bytes, capabilities: int) -> OK:
        r = Reader(payload)
        header = r.u8()
        if header not in (OK_HEADER, EOF_HEADER):
            raise MalformedPacket(f"not an OK packet (header 0x{header:02x})")
        affected = r.lenenc_int()
        insert_id = r.lenenc_int()
        status = warnings = 0
        if capabilities & _C.PROTOCOL_41:
            status = r.u16()
            warnings = r.u16()
        elif capabilities & _C.TRANSACTIONS:
            status = r.u16()
        info = ""
        state = b""
        if capabilities & _C.SESSION_TRACK:
            if not r.at_end():
                info = r.lenenc_str()
                if status & Status.SESSION_STATE_CHANGED and not r.at_end():
                    state = r.lenenc_bytes()
        elif not r.at_end():
            # Servers send the info length-prefixed even to clients without SESSION_TRACK;
            # accept a bare string too when the prefix does not fit.
            rest = r.data[r.pos:]
            try:
                info = r.lenenc_str()
                if not r.at_end():
                    info = _s(rest)
            except MalformedPacket:
                info = _s(rest)
        return cls(affected, insert_id, status, warnings, info, state)


def parse_session_state(data: bytes) -> list[tuple[int, object]]:
    """Decode session-state-change data into (type, value) pairs.

    SYSTEM_VARIABLES -> (name, value); SCHEMA -> name; STATE_CHANGE -> bool;
    GTIDS -> gtid text; TRANSACTION_* -> text; unknown types -> raw bytes.
    """
    out: list[tuple[int, object]] = []
    r = Reader(data)
    while not r.at_end():
        kind = r.u8()
        body = Reader(r.lenenc_bytes())
        value: object
        if kind == SessionTrack.SYSTEM_VARIABLES:
            name = body.lenenc_str()
            value = (name, body.lenenc_str())
        elif kind == SessionTrack.SCHEMA:
            value = body.lenenc_str()
        elif kind == SessionTrack.STATE_CHANGE:
            value = body.rest() == b"1"
        elif kind == SessionTrack.GTIDS:
            body.u8()  # encoding specification
            value = body.lenenc_str()
        elif kind in (SessionTrack.TRANSACTION_CHARACTERISTICS, SessionTrack.TRANSACTION_STATE):
            value = body.lenenc_str()
        else:
            value = body.rest()
        out.append((kind, value))
    return out


def encode_err(code: int, message: str, sqlstate: str, capabilities: int = _C.PROTOCOL_41) -> bytes:
    head = bytes((ERR_HEADER,)) + codec.u16(code)
    if capabilities & _C.PROTOCOL_41:
        head += b"#" + sqlstate.encode()[:5].ljust(5, b"0")
    return head + message.encode("utf-8", "replace")


def error_payload(err: MySQLError, capabilities: int = _C.PROTOCOL_41) -> bytes:
    return encode_err(err.code, err.message, err.sqlstate, capabilities)


def parse_err(payload: bytes) -> MySQLError:
    r = Reader(payload)
    if r.u8() != ERR_HEADER:
        raise MalformedPacket("not an ERR packet")
    code = r.u16()
    sqlstate = "HY000"
    if r.remaining >= 6 and r.data[r.pos] == 0x23:  # '#'
        r.skip(1)
        sqlstate = r.fixed(5).decode("ascii", "replace")
    return MySQLError(code, _s(r.rest()), sqlstate)


def encode_eof(status: int, warnings: int = 0) -> bytes:
    return b"\xfe" + codec.u16(warnings) + codec.u16(status)


def eof_status(payload: bytes) -> int:
    """Status flags of an EOF packet (0xFE, warnings<2>, status<2>)."""
    if len(payload) < 5 or payload[0] != EOF_HEADER:
        raise MalformedPacket("not an EOF packet")
    return payload[3] | payload[4] << 8


@dataclass(frozen=True, slots=True)
class PrepareOK:
    statement_id: int
    num_columns: int
    num_params: int
    warnings: int

    @classmethod
    def parse(cls, payload: bytes) -> PrepareOK:
        r = Reader(payload)
        if r.u8() != OK_HEADER:
            raise MalformedPacket("not a COM_STMT_PREPARE OK")
        sid = r.u32()
        cols = r.u16()
        params = r.u16()
        warnings = 0
        if r.remaining >= 3:
            r.skip(1)
            warnings = r.u16()
        return cls(sid, cols, params, warnings)

    def encode(self) -> bytes:
        return b"\x00" + codec.u32(self.statement_id) + codec.u16(self.num_columns) + codec.u16(self.num_params) + b"\x00" + codec.u16(self.warnings)


# --------------------------------------------------------------------------
# Text result sets (built by the proxy for its own answers, e.g. admin)
# --------------------------------------------------------------------------

MYSQL_TYPE_LONGLONG = 8
MYSQL_TYPE_VAR_STRING = 253


def column_definition(name: str, *, type_code: int = MYSQL_TYPE_VAR_STRING, table: str = "", schema: str = "",
                      charset: int = 45, length: int = 1024, flags: int = 0, decimals: int = 0) -> bytes:
    return b"".join(
        (
            codec.lenenc_str("def"),
            codec.lenenc_str(schema),
            codec.lenenc_str(table),
            codec.lenenc_str(table),
            codec.lenenc_str(name),
            codec.lenenc_str(name),
            b"\x0c",
            codec.u16(charset),
            codec.u32(length),
            bytes((type_code,)),
            codec.u16(flags),
            bytes((decimals,)),
            b"\0\0",
        )
    )


def text_row(values: list[object]) -> bytes:
    out = []
    for v in values:
        if v is None:
            out.append(b"\xfb")
        else:
            if isinstance(v, bytes):
                b = v
            else:
                b = str(v).encode("utf-8", "surrogateescape")
            out.append(codec.lenenc_bytes(b))
    return b"".join(out)


def encode_result_set(columns: list[bytes], rows: list[bytes], capabilities: int, status: int) -> bytes:
    """A whole framed text result set (sequence ids from 1) built by the proxy.

    ``columns`` are column-definition payloads, ``rows`` text-row payloads.
    With DEPRECATE_EOF there is no EOF after the columns and the result ends
    with an OK packet with the EOF header, as servers send it.
    """
    parts = [frame(codec.lenenc_int(len(columns)), 1)]
    seq = 2
    for col in columns:
        parts.append(frame(col, seq & 0xFF))
        seq += 1
    deprecate_eof = capabilities & _C.DEPRECATE_EOF
    if not deprecate_eof:
        parts.append(frame(encode_eof(status), seq & 0xFF))
        seq += 1
    for row in rows:
        parts.append(frame(row, seq & 0xFF))
        seq += 1
    if deprecate_eof:
        parts.append(frame(OK(status=status).encode(capabilities, header=EOF_HEADER), seq & 0xFF))
    else:
        parts.append(frame(encode_eof(status), seq & 0xFF))
    return b"".join(parts)
