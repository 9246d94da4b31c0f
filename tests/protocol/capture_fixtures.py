"""Capture raw MariaDB wire bytes for the protocol unit tests.

Not a test (pytest does not collect it). Run it when the fixtures need to be
re-made, e.g. after adding a case::

    /work/main/.venv/bin/python tests/protocol/capture_fixtures.py

It starts a throw-away MariaDB with the project's test bed
(``myrouter_testbed.mariadb.start_cluster(replicas=0)``, users app/app, database
``test``), logs in over a plain TCP socket with the project's own
``HandshakeV10.parse`` / ``HandshakeResponse41`` / ``native_token``, sends each
command and records every byte the server answers (packet headers included)
until the connection has been quiet for ``QUIET`` seconds. The end of a
response is found by that silence, not by ``ResponseTracker``: the fixtures must
not depend on the code they test. Each capture is then checked to be a whole
number of packets.

It also records what three independent client libraries (PyMySQL,
mysqlclient/libmariadb and mysql-connector-python) send as their
HandshakeResponse41, by replaying the captured greeting to them from a fake
server socket.

What is captured (``capture_session``, once per client capability profile:
``EOF`` = classic EOF packets, ``DEPRECATE_EOF`` = CLIENT_DEPRECATE_EOF, both
with CLIENT_SESSION_TRACK; ``OLD`` = no session tracking or plugin auth, only
the first four cases):

* the login OK, OK of INSERT/UPDATE/DO, ERR of a missing table;
* text result sets: ``SELECT 1``, rows with NULLs, no rows, values needing 0xFC
  and 0xFD length prefixes, a warning, ``PASSWORD('app')``;
* several results: ``SELECT 1; SELECT 2``, a result then ERR, ``DO 1; DO 2``,
  ``CALL`` of a procedure returning two result sets;
* ``LOAD DATA LOCAL INFILE``: the 0xFB request, then (after sending the file)
  the final OK;
* transactions and session tracking: BEGIN/COMMIT, autocommit, time_zone,
  USE / COM_INIT_DB, session_track_state_change, every system variable,
  transaction characteristics and state;
* prepared statements: COM_STMT_PREPARE (params and columns, params only, a
  column only, neither, CALL, syntax error), COM_STMT_EXECUTE (binary rows with
  a NULL, OK, CALL with two binary result sets, unknown id), a read-only cursor
  and two COM_STMT_FETCH;
* COM_FIELD_LIST (and its ERR), COM_STATISTICS, COM_PING, COM_SET_OPTION, an
  unknown command, COM_RESET_CONNECTION;
* rows of 16 MiB: one of 16777225 bytes (first packet begins with 0xFE) and
  one of exactly 0xFFFFFF bytes (followed by an empty packet).

``capture_auth`` records a wrong-password ERR and an AuthSwitchRequest (and the
OK after answering it).

The output, ``tests/protocol/fixtures.py``, is a generated Python module of
``Capture`` constants (hex, or zlib+base64 for responses over 4 KiB). The
server is stopped in every case, including on failure.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import socket
import sys
import textwrap
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from myrouter.protocol import codec
from myrouter.protocol.auth import native_token
from myrouter.protocol.constants import Capability as C
from myrouter.protocol.constants import Command
from myrouter.protocol.messages import AuthSwitch, HandshakeResponse41, HandshakeV10, PrepareOK
from myrouter.protocol.packets import frame

QUIET = 0.25  # seconds of silence that end a response
FIRST_BYTE_TIMEOUT = 10.0  # how long to wait for a response to start
BIG = 4096  # responses longer than this are stored zlib-compressed
HERE = Path(__file__).resolve().parent

# Client capabilities of the captured sessions. CAPS_EOF is the classic protocol
# (an EOF packet after column definitions and at the end of rows); CAPS_DEPRECATE_EOF
# adds CLIENT_DEPRECATE_EOF (no EOF after definitions, an OK with header 0xFE at the end).
CAPS_BASE = (
    C.LONG_PASSWORD | C.LONG_FLAG | C.CONNECT_WITH_DB | C.LOCAL_FILES | C.PROTOCOL_41 | C.TRANSACTIONS
    | C.SECURE_CONNECTION | C.MULTI_STATEMENTS | C.MULTI_RESULTS | C.PS_MULTI_RESULTS | C.PLUGIN_AUTH
    | C.CONNECT_ATTRS | C.PLUGIN_AUTH_LENENC_CLIENT_DATA | C.SESSION_TRACK
)
PROFILES = {
    "EOF": CAPS_BASE,
    "DEPRECATE_EOF": CAPS_BASE | C.DEPRECATE_EOF,
    # an old-style client: no session tracking, no multi statements, no plugin auth
    "OLD": C.LONG_PASSWORD | C.LONG_FLAG | C.CONNECT_WITH_DB | C.PROTOCOL_41 | C.TRANSACTIONS | C.SECURE_CONNECTION,
}

MYSQL_TYPE_LONGLONG = 8
MYSQL_TYPE_VAR_STRING = 253

SETUP_SQL = [
    "CREATE TABLE test.t (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(20), v INT NULL)",
    "INSERT INTO test.t (name, v) VALUES ('a', 1), ('b', NULL), (NULL, 3), ('d', 4), ('e', 5)",
    "CREATE TABLE test.t_ins (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(20), v INT NULL)",
    "CREATE PROCEDURE test.two_results() BEGIN SELECT 1 AS a; SELECT 'x' AS b, 2 AS c; END",
]


@dataclass
class Capture:
    name: str
    note: str
    command: int  # first byte of the request (-1: not a command)
    capabilities: int
    request: bytes  # what was sent (a command payload without header, unless the note says otherwise)
    response: bytes  # everything received, headers included
    cursor: bool = False
    big: bool = False  # stored zlib-compressed


# ---------------------------------------------------------------------------
# socket helpers (independent of the code under test)


def read_quiet(sock: socket.socket, first_timeout: float = FIRST_BYTE_TIMEOUT, quiet: float = QUIET) -> bytes:
    """Read until nothing has arrived for ``quiet`` seconds (after a first byte, or ``first_timeout``)."""
    chunks = []
    sock.settimeout(first_timeout)
    while True:
        try:
            data = sock.recv(1 << 20)
        except socket.timeout:
            break
        if not data:
            break
        chunks.append(data)
        sock.settimeout(quiet)
    return b"".join(chunks)


def split_packets(data: bytes) -> list[tuple[int, bytes]]:
    """(seq, payload) of every physical packet; raises if ``data`` is not whole packets."""
    out = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 4:
            raise RuntimeError(f"capture ends inside a packet header at {pos}")
        n = int.from_bytes(data[pos : pos + 3], "little")
        if len(data) - pos - 4 < n:
            raise RuntimeError(f"capture ends inside a packet body at {pos}")
        out.append((data[pos + 3], data[pos + 4 : pos + 4 + n]))
        pos += 4 + n
    return out


def stmt_execute(stmt_id: int, flags: int, params: list[tuple[int, bytes | None]]) -> bytes:
    """COM_STMT_EXECUTE payload; ``params`` are (type, encoded value or None for NULL)."""
    out = b"\x17" + codec.u32(stmt_id) + bytes((flags,)) + codec.u32(1)
    if params:
        bitmap = bytearray((len(params) + 7) // 8)
        for i, (_, value) in enumerate(params):
            if value is None:
                bitmap[i // 8] |= 1 << (i % 8)
        out += bytes(bitmap) + b"\x01"
        out += b"".join(codec.u16(t) for t, _ in params)
        out += b"".join(v for _, v in params if v is not None)
    return out


def query(sql: str) -> bytes:
    return bytes((Command.QUERY,)) + sql.encode()


class Session:
    """One logged-in connection to the server over a plain socket."""

    def __init__(self, host: str, port: int, profile: str, out: list[Capture]) -> None:
        self.profile = profile
        self.caps_wanted = PROFILES[profile]
        self.out = out
        self.sock = socket.create_connection((host, port), timeout=FIRST_BYTE_TIMEOUT)
        self.greeting_raw = read_quiet(self.sock)
        (seq, payload), = split_packets(self.greeting_raw)
        self.greeting = HandshakeV10.parse(payload)
        # MariaDB clears LONG_PASSWORD ("CLIENT_MYSQL") in its greeting to announce its extended
        # capabilities; a client setting it, as PyMySQL does, is simply taken for a MySQL client.
        self.caps = (self.caps_wanted & self.greeting.capabilities) | (self.caps_wanted & C.LONG_PASSWORD)
        missing = self.caps_wanted & ~self.greeting.capabilities & ~C.LONG_PASSWORD
        if missing:
            raise RuntimeError(f"server lacks capabilities {C(missing)!r}")

    def login(self, password: bytes = b"app", plugin: str = "mysql_native_password", record: str | None = None,
              note: str = "", token: bytes | None = None) -> bytes:
        if token is None:
            token = native_token(password, self.greeting.auth_data)
        hello = HandshakeResponse41(
            capabilities=self.caps,
            max_packet=1 << 26,
            charset=45,
            username="app",
            auth_response=token,
            database="test",
            auth_plugin=plugin,
            attrs={"_client_name": "myrouter-capture", "_pid": "1"},
        )
        request = hello.encode()
        self.sock.sendall(frame(request, 1))
        raw = read_quiet(self.sock)
        if record:
            self.add(record, note + " (request = the proxy-built HandshakeResponse41 payload, sent with seq 1)",
                     -1, request, raw)
        return raw

    def add(self, name: str, note: str, command: int, request: bytes, response: bytes, **kw) -> Capture:
        split_packets(response)  # whole packets or die
        if len(response) > BIG:
            kw["big"] = True
        cap = Capture(f"{self.profile}_{name}", note, command, int(self.caps), request, response, **kw)
        self.out.append(cap)
        return cap

    def run(self, name: str, note: str, request: bytes, *, record: bool = True, seq: int = 0, **kw) -> bytes:
        self.sock.sendall(frame(request, seq))
        no_reply = request[0] in (Command.STMT_CLOSE, Command.STMT_SEND_LONG_DATA, Command.QUIT)
        raw = read_quiet(self.sock, first_timeout=QUIET if no_reply else FIRST_BYTE_TIMEOUT)
        if not raw and not no_reply:
            raise RuntimeError(f"{name}: no response")
        if record:
            self.add(name, note, request[0], request, raw, **kw)
        return raw

    def prepare(self, name: str, sql: str) -> PrepareOK:
        raw = self.run(name, f"COM_STMT_PREPARE {sql!r}", bytes((Command.STMT_PREPARE,)) + sql.encode())
        return PrepareOK.parse(split_packets(raw)[0][1])

    def close(self) -> None:
        try:
            self.sock.sendall(frame(b"\x01", 0))
        except OSError:
            pass
        self.sock.close()


# ---------------------------------------------------------------------------
# the cases


def capture_session(host: str, port: int, profile: str, out: list[Capture]) -> None:
    s = Session(host, port, profile, out)
    try:
        raw = s.login(record="LOGIN_OK", note=f"login as app/app to database test with CAPS_{profile}: the OK")
        if split_packets(raw)[0][1][:1] != b"\x00":
            raise RuntimeError(f"login failed: {raw!r}")
        q = s.run
        q("OK_INSERT", "COM_QUERY multi-row INSERT into an AUTO_INCREMENT table (affected 2, insert id, info)",
          query("INSERT INTO t_ins (name, v) VALUES ('p', 1), ('q', NULL)"))
        q("SELECT_1", "COM_QUERY SELECT 1", query("SELECT 1"))
        q("ERR_NO_TABLE", "COM_QUERY on a missing table: ERR 1146 42S02", query("SELECT * FROM no_such_table"))
        if profile == "OLD":
            return
        q("OK_UPDATE", "COM_QUERY UPDATE matching a row without changing it (info text)",
          query("UPDATE t SET v = v WHERE id = 1"))
        q("OK_DO", "COM_QUERY DO 1 (bare OK)", query("DO 1"))
        q("SELECT_NULLS", "COM_QUERY text result set of 5 rows with NULLs",
          query("SELECT id, name, v FROM t ORDER BY id"))
        q("SELECT_EMPTY", "COM_QUERY result set with no rows", query("SELECT id, name FROM t WHERE id < 0"))
        q("SELECT_LONG_VALUES", "COM_QUERY row whose values need 0xFC and 0xFD length prefixes",
          query("SELECT REPEAT('x', 300) AS a, REPEAT('y', 70000) AS b"))
        q("SELECT_WARNING", "COM_QUERY SELECT 1/0: a NULL and one warning in the final EOF/OK",
          query("SELECT 1/0 AS q"))
        q("SELECT_PASSWORD", "COM_QUERY SELECT PASSWORD('app'): the server's own mysql_native_password hash",
          query("SELECT PASSWORD('app') AS h"))
        q("MULTI_SELECT", "COM_QUERY multi-statement 'SELECT 1; SELECT 2' (MORE_RESULTS_EXISTS)",
          query("SELECT 1; SELECT 2"))
        q("MULTI_SELECT_ERR", "COM_QUERY 'SELECT 1; SELECT * FROM no_such_table': a result set then ERR",
          query("SELECT 1; SELECT * FROM no_such_table"))
        q("MULTI_OK", "COM_QUERY 'DO 1; DO 2': two OKs, the first with MORE_RESULTS_EXISTS", query("DO 1; DO 2"))
        q("CALL_TWO_RESULTS", "COM_QUERY CALL of a procedure returning two result sets, then the final OK",
          query("CALL two_results()"))
        # LOCAL INFILE: the server's request, then the client's file and the final OK
        q("LOCAL_INFILE_REQUEST", "COM_QUERY LOAD DATA LOCAL INFILE: the server's 0xFB request",
          query("LOAD DATA LOCAL INFILE 'rows.csv' INTO TABLE t_ins FIELDS TERMINATED BY ',' (name, v)"))
        file_packets = frame(b"r1,1\nr2,\\N\n", 2) + frame(b"", 3)
        s.sock.sendall(file_packets)
        s.add("LOCAL_INFILE_DONE",
              "after LOCAL_INFILE_REQUEST the client sent its file (request = the raw packets, seq 2 and "
              "the empty seq 3); this is the server's final OK",
              Command.QUERY, file_packets, read_quiet(s.sock))
        # transactions (status flags)
        q("BEGIN", "COM_QUERY BEGIN: OK with SERVER_STATUS_IN_TRANS", query("BEGIN"))
        q("INSERT_IN_TRANS", "COM_QUERY INSERT inside a transaction", query("INSERT INTO t_ins (name) VALUES ('tx')"))
        q("COMMIT", "COM_QUERY COMMIT: IN_TRANS cleared", query("COMMIT"))
        q("AUTOCOMMIT_0", "COM_QUERY SET autocommit=0: AUTOCOMMIT cleared", query("SET autocommit=0"))
        q("AUTOCOMMIT_1", "COM_QUERY SET autocommit=1", query("SET autocommit=1"))
        # session state tracking (CLIENT_SESSION_TRACK; MariaDB tracks autocommit, character_set_*, time_zone
        # and the schema by default)
        q("TRACK_TIME_ZONE", "COM_QUERY SET time_zone='+01:00': OK with a SYSTEM_VARIABLES entry",
          query("SET time_zone='+01:00'"))
        q("TRACK_USE", "COM_QUERY USE test: OK with a SCHEMA entry", query("USE test"))
        q("TRACK_INIT_DB", "COM_INIT_DB test: OK with a SCHEMA entry", bytes((Command.INIT_DB,)) + b"test")
        q("TRACK_STATE_ON", "COM_QUERY SET session_track_state_change=ON",
          query("SET SESSION session_track_state_change=ON"))
        q("TRACK_ALL_VARS", "COM_QUERY SET session_track_system_variables='*'",
          query("SET SESSION session_track_system_variables='*'"))
        q("TRACK_SQL_MODE", "COM_QUERY SET sql_mode='ANSI' with every variable tracked and state change on",
          query("SET sql_mode='ANSI'"))
        q("TRACK_TRX_ON", "COM_QUERY SET session_track_transaction_info='CHARACTERISTICS'",
          query("SET SESSION session_track_transaction_info='CHARACTERISTICS'"))
        q("TRACK_START_RO", "COM_QUERY START TRANSACTION READ ONLY with transaction tracking: "
          "IN_TRANS | IN_TRANS_READONLY and TRANSACTION_* entries", query("START TRANSACTION READ ONLY"))
        q("TRACK_COMMIT", "COM_QUERY COMMIT with transaction tracking", query("COMMIT"))
        q("TRACK_RESET", "COM_QUERY turning tracking back to the defaults",
          query("SET SESSION session_track_transaction_info=DEFAULT, session_track_state_change=DEFAULT, "
                "session_track_system_variables=DEFAULT, sql_mode=DEFAULT, time_zone=DEFAULT"))
        # prepared statements
        sel = s.prepare("PREPARE_SELECT", "SELECT id, name, v FROM t WHERE id > ? AND name <> ?")
        ins = s.prepare("PREPARE_INSERT", "INSERT INTO t_ins (name, v) VALUES (?, ?)")
        one = s.prepare("PREPARE_SELECT_1", "SELECT 1")
        none = s.prepare("PREPARE_DO", "DO 1")
        call = s.prepare("PREPARE_CALL", "CALL two_results()")
        q("PREPARE_ERR", "COM_STMT_PREPARE of a syntax error: ERR 1064",
          bytes((Command.STMT_PREPARE,)) + b"SELEC 1")
        q("EXECUTE_SELECT", "COM_STMT_EXECUTE of PREPARE_SELECT (id > 0, name <> 'zzz'): binary rows with a NULL",
          stmt_execute(sel.statement_id, 0, [(MYSQL_TYPE_LONGLONG, codec.u64(0)),
                                             (MYSQL_TYPE_VAR_STRING, codec.lenenc_bytes(b"zzz"))]))
        q("EXECUTE_INSERT", "COM_STMT_EXECUTE of PREPARE_INSERT ('ps', NULL): OK",
          stmt_execute(ins.statement_id, 0, [(MYSQL_TYPE_VAR_STRING, codec.lenenc_bytes(b"ps")),
                                             (MYSQL_TYPE_LONGLONG, None)]))
        q("EXECUTE_SELECT_1", "COM_STMT_EXECUTE of PREPARE_SELECT_1", stmt_execute(one.statement_id, 0, []))
        q("EXECUTE_DO", "COM_STMT_EXECUTE of PREPARE_DO: OK", stmt_execute(none.statement_id, 0, []))
        q("EXECUTE_CALL", "COM_STMT_EXECUTE of PREPARE_CALL: two binary result sets and the final OK",
          stmt_execute(call.statement_id, 0, []))
        q("EXECUTE_UNKNOWN", "COM_STMT_EXECUTE of an unknown statement id: ERR 1243",
          stmt_execute(0x7FFF, 0, []))
        # a cursor: execute with CURSOR_TYPE_READ_ONLY, then fetch the rows in two steps
        cur = s.prepare("PREPARE_CURSOR", "SELECT id, name FROM t ORDER BY id")
        q("EXECUTE_CURSOR", "COM_STMT_EXECUTE of PREPARE_CURSOR with flags=1 (read-only cursor): "
          "column definitions and the EOF with CURSOR_EXISTS, no rows", stmt_execute(cur.statement_id, 1, []),
          cursor=True)
        fetch = bytes((Command.STMT_FETCH,)) + codec.u32(cur.statement_id)
        q("FETCH_3", "COM_STMT_FETCH of 3 rows from EXECUTE_CURSOR (2 more remain)", fetch + codec.u32(3))
        q("FETCH_REST", "COM_STMT_FETCH of the last rows: EOF with LAST_ROW_SENT", fetch + codec.u32(10))
        for st in (sel, ins, one, none, call, cur):
            s.run("", "", bytes((Command.STMT_CLOSE,)) + codec.u32(st.statement_id), record=False)
        # other commands
        q("FIELD_LIST", "COM_FIELD_LIST of table t (column definitions then EOF)",
          bytes((Command.FIELD_LIST,)) + b"t\0")
        q("FIELD_LIST_ERR", "COM_FIELD_LIST of a missing table: ERR", bytes((Command.FIELD_LIST,)) + b"nope\0")
        q("STATISTICS", "COM_STATISTICS: one packet of text", bytes((Command.STATISTICS,)))
        q("PING", "COM_PING: OK", bytes((Command.PING,)))
        q("SET_OPTION", "COM_SET_OPTION MYSQL_OPTION_MULTI_STATEMENTS_ON", bytes((Command.SET_OPTION,)) + b"\0\0")
        q("UNKNOWN_COMMAND", "command 0x1D (COM_DAEMON) from a client: ERR 1047", bytes((Command.DAEMON,)))
        q("RESET_CONNECTION", "COM_RESET_CONNECTION: OK", bytes((Command.RESET_CONNECTION,)))
        # rows of 16 MiB and more (max_allowed_packet is 64M in the test bed)
        q("ROW_16M", "COM_QUERY SELECT REPEAT('a', 16777216): one row of 16777225 bytes split over two packets, "
          "the first beginning with 0xFE (the 8-byte length prefix)",
          query("SELECT REPEAT('a', 16777216) AS big"))
        q("ROW_FFFFFF", "COM_QUERY SELECT REPEAT('a', 16777211): a row of exactly 0xFFFFFF bytes, "
          "followed by an empty continuation packet", query("SELECT REPEAT('a', 16777211) AS big"))
    finally:
        s.close()


def capture_auth(host: str, port: int, out: list[Capture]) -> None:
    # a wrong password: ERR 1045
    s = Session(host, port, "EOF", out)
    try:
        s.login(password=b"wrong", record="LOGIN_BAD_PASSWORD",
                note="login as app with the password 'wrong': ERR 1045 28000")
    finally:
        s.close()
    # a client plugin the user does not use: the server asks to switch to mysql_native_password
    s = Session(host, port, "EOF", out)
    try:
        raw = s.login(plugin="client_ed25519", token=b"\x01" * 64, record="AUTH_SWITCH",
                      note="login as app announcing plugin client_ed25519 (64-byte dummy token): the server's "
                      "AuthSwitchRequest to mysql_native_password")
        (seq, payload), = split_packets(raw)
        switch = AuthSwitch.parse(payload)
        token = native_token(b"app", switch.data)
        s.sock.sendall(frame(token, seq + 1))
        s.add("AUTH_SWITCH_OK", "after AUTH_SWITCH the client answered native_token(b'app', switch data) "
              "(request = that token); the server's OK", -1, token, read_quiet(s.sock))
    finally:
        s.close()


# ---------------------------------------------------------------------------
# what real client libraries send


def client_hello(greeting_raw: bytes, connect) -> bytes:
    """Replay ``greeting_raw`` to a client library and return what it answers."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    lsock.settimeout(10)
    port = lsock.getsockname()[1]

    def target() -> None:
        try:
            connect(port)
        except Exception:
            pass  # the fake server hangs up: expected

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        conn, _ = lsock.accept()
        try:
            conn.sendall(greeting_raw)
            data = read_quiet(conn, quiet=0.5)
        finally:
            conn.close()
    finally:
        lsock.close()
    thread.join(10)
    return data


def capture_clients(greeting_raw: bytes, out: list[Capture]) -> None:
    import MySQLdb
    import mysql.connector
    import pymysql

    clients = {
        "PYMYSQL": lambda port: pymysql.connect(host="127.0.0.1", port=port, user="app", password="app",
                                                database="test", connect_timeout=3),
        "MYSQLCLIENT": lambda port: MySQLdb.connect(host="127.0.0.1", port=port, user="app", passwd="app",
                                                    db="test", connect_timeout=3),
        "CONNECTOR": lambda port: mysql.connector.connect(host="127.0.0.1", port=port, user="app",
                                                          password="app", database="test", use_pure=True,
                                                          connection_timeout=3, ssl_disabled=True),
    }
    for name, connect in clients.items():
        raw = client_hello(greeting_raw, connect)
        split_packets(raw)
        out.append(Capture(
            f"CLIENT_HELLO_{name}",
            f"the HandshakeResponse41 {name.lower()} sent (user app, password app, database test) in answer to "
            "GREETING (the server's scramble is GREETING's)",
            -1, 0, greeting_raw, raw,
        ))


# ---------------------------------------------------------------------------
# output


def _hex_literal(data: bytes, indent: str = "        ") -> str:
    h = data.hex()
    lines = textwrap.wrap(h, 96) or [""]
    return "bytes.fromhex(\n" + "".join(f'{indent}"{line}"\n' for line in lines) + indent[:-4] + ")"


def _b64_literal(data: bytes, indent: str = "        ") -> str:
    b = base64.b64encode(zlib.compress(data, 9)).decode()
    lines = textwrap.wrap(b, 96)
    return "(\n" + "".join(f'{indent}"{line}"\n' for line in lines) + indent[:-4] + ")"


HEADER = '''"""Raw MariaDB wire bytes for the protocol tests. GENERATED: do not edit.

Made by ``tests/protocol/capture_fixtures.py`` (see its docstring) against
{server_version!r} on {date}.

Every ``Capture`` holds the bytes exactly as received (packet headers
included): ``response`` for a command's whole response, read until the
connection was quiet. ``request`` is what was sent (a command payload without
its header unless the note says otherwise); ``capabilities`` are the client
capabilities in effect for the session (0 for the client-library captures).
``EOF_*`` sessions used CAPS_EOF (classic EOF packets), ``DEPRECATE_EOF_*``
CAPS_DEPRECATE_EOF, ``OLD_*`` CAPS_OLD (no session tracking, no plugin auth).
``big`` captures (longer than 4096 bytes) are stored zlib-compressed and base64-encoded.
"""

from __future__ import annotations

import base64
import functools
import zlib
from dataclasses import dataclass


@functools.lru_cache(maxsize=None)
def _inflate(text: str) -> bytes:
    return zlib.decompress(base64.b64decode(text))


@dataclass(frozen=True)
class Capture:
    name: str
    note: str
    command: int  # first byte of the request; -1 for connection-phase exchanges
    capabilities: int
    request: bytes
    _response: bytes | str
    cursor: bool = False  # COM_STMT_EXECUTE with a cursor
    big: bool = False

    @property
    def response(self) -> bytes:
        if self.big:
            return _inflate(self._response)  # type: ignore[arg-type]
        return self._response  # type: ignore[return-value]

    def packets(self) -> list[tuple[int, bytes]]:
        """(sequence id, payload) of each physical packet of ``response``."""
        data = self.response
        out = []
        pos = 0
        while pos < len(data):
            n = int.from_bytes(data[pos : pos + 3], "little")
            out.append((data[pos + 3], data[pos + 4 : pos + 4 + n]))
            pos += 4 + n
        return out


SERVER_VERSION = {server_version!r}
CAPS_EOF = 0x{caps_eof:08x}
CAPS_DEPRECATE_EOF = 0x{caps_deof:08x}
CAPS_OLD = 0x{caps_old:08x}

# The server's greeting (HandshakeV10, sequence id 0) on a new TCP connection.
GREETING = {greeting}
'''


def write_module(path: Path, server_version: str, greeting_raw: bytes, caps: dict[str, int],
                 captures: list[Capture]) -> None:
    parts = [HEADER.format(
        server_version=server_version,
        date=time.strftime("%Y-%m-%d"),
        caps_eof=caps["EOF"],
        caps_deof=caps["DEPRECATE_EOF"],
        caps_old=caps["OLD"],
        greeting=_hex_literal(greeting_raw, "    "),
    )]
    for cap in captures:
        command = "-1" if cap.command < 0 else f"0x{cap.command:02x}"
        if cap.big:
            digest = hashlib.sha256(cap.response).hexdigest()
            resp = _b64_literal(cap.response)
            extra = f"    big=True,  # {len(cap.response)} bytes, sha256 {digest}\n"
        else:
            resp = _hex_literal(cap.response)
            extra = ""
        if cap.cursor:
            extra += "    cursor=True,\n"
        note = "\n".join("# " + line for line in textwrap.wrap(cap.note, 100))
        parts.append(
            f"\n{note}\n{cap.name} = Capture(\n"
            f"    {cap.name!r},\n"
            f"    {cap.note!r},\n"
            f"    {command},\n"
            f"    0x{cap.capabilities:08x},\n"
            f"    {_hex_literal(cap.request)},\n"
            f"    {resp},\n"
            f"{extra})\n"
        )
    parts.append("\nALL = [\n" + "".join(f"    {c.name},\n" for c in captures) + "]\n")
    path.write_text("".join(parts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "fixtures.py")
    args = parser.parse_args(argv)

    from myrouter_testbed.mariadb import start_cluster

    cluster = start_cluster(replicas=0)
    try:
        primary = cluster.primary
        conn = primary.connect()
        try:
            with conn.cursor() as cur:
                for sql in SETUP_SQL:
                    cur.execute(sql)
        finally:
            conn.close()
        captures: list[Capture] = []
        caps = {}
        greeting_raw = b""
        for profile in PROFILES:
            before = len(captures)
            capture_session(primary.host, primary.port, profile, captures)
            caps[profile] = captures[before].capabilities
        # a fresh greeting for the record and for the client libraries
        probe = socket.create_connection((primary.host, primary.port), timeout=FIRST_BYTE_TIMEOUT)
        try:
            greeting_raw = read_quiet(probe)
        finally:
            probe.close()
        capture_auth(primary.host, primary.port, captures)
        capture_clients(greeting_raw, captures)
        server_version = HandshakeV10.parse(split_packets(greeting_raw)[0][1]).server_version
    finally:
        cluster.stop()
    write_module(args.out, server_version, greeting_raw, caps, captures)
    print(f"wrote {len(captures)} captures to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
