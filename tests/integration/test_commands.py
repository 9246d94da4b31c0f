"""Commands that drivers seldom expose, spoken directly: prepared statements with a
cursor, long data, COM_FIELD_LIST, COM_SET_OPTION, COM_STATISTICS, COM_RESET_CONNECTION.
The assertions check the bytes the real server produced, as relayed by the proxy."""

from __future__ import annotations

import struct

from myrouter.protocol.constants import Command, Status
from myrouter.protocol.messages import PrepareOK, parse_err
from myrouter.protocol.packets import frame
from rawclient import RawClient, error_of


def setup_table(raw: RawClient) -> None:
    for sql in (b"DROP TABLE IF EXISTS cmd_t", b"CREATE TABLE cmd_t (id INT PRIMARY KEY, note TEXT)",
                b"INSERT INTO cmd_t VALUES (1,'a'),(2,'b'),(3,'c'),(4,'d'),(5,'e')"):
        assert raw.command(b"\x03" + sql)[:1] == b"\x00"


def test_prepared_statement_with_cursor_fetch_reset_close(proxy):
    raw = RawClient(proxy.port)
    assert raw.login()[:1] == b"\x00"
    setup_table(raw)
    raw.send(frame(b"\x16SELECT id, note FROM cmd_t WHERE id >= ? ORDER BY id", 0))
    prep = PrepareOK.parse(raw.read_packet().payload)
    assert (prep.num_params, prep.num_columns) == (1, 2)
    # 1 param def + EOF, 2 column defs + EOF
    defs = [raw.read_packet().payload for _ in range(1 + 1 + 2 + 1)]
    assert defs[1][:1] == b"\xfe" and defs[-1][:1] == b"\xfe"
    sid = struct.pack("<I", prep.statement_id)
    # execute with CURSOR_TYPE_READ_ONLY: column definitions come, rows wait for COM_STMT_FETCH
    execute = b"\x17" + sid + b"\x01" + struct.pack("<I", 1) + b"\x00" + b"\x01" + b"\x03\x00" + struct.pack("<i", 2)
    raw.send(frame(execute, 0))
    assert raw.read_packet().payload == b"\x02"  # two columns
    cols = [raw.read_packet().payload for _ in range(2)]
    eof = raw.read_packet().payload
    assert eof[:1] == b"\xfe"
    assert struct.unpack_from("<H", eof, 3)[0] & Status.CURSOR_EXISTS
    del cols
    # fetch 2 rows, then the rest
    raw.send(frame(b"\x1c" + sid + struct.pack("<I", 2), 0))
    rows = [raw.read_packet().payload for _ in range(2)]
    assert all(r[:1] == b"\x00" for r in rows)
    end = raw.read_packet().payload
    assert end[:1] == b"\xfe"
    raw.send(frame(b"\x1c" + sid + struct.pack("<I", 100), 0))
    rest = []
    while True:
        p = raw.read_packet().payload
        if p[:1] == b"\xfe":
            assert struct.unpack_from("<H", p, 3)[0] & Status.LAST_ROW_SENT
            break
        rest.append(p)
    assert len(rest) == 2  # ids 4 and 5
    # COM_STMT_RESET, then COM_STMT_CLOSE (no reply), then the statement id is gone
    assert raw.command(b"\x1a" + sid)[:1] == b"\x00"
    raw.send(frame(b"\x19" + sid, 0))
    code, _ = error_of(raw.command(execute))
    assert code == 1243  # ER_UNKNOWN_STMT_HANDLER from the backend
    assert raw.command(b"\x03SELECT 1")[:1] == b"\x01"
    raw.close()


def test_send_long_data(proxy):
    raw = RawClient(proxy.port)
    assert raw.login()[:1] == b"\x00"
    setup_table(raw)
    raw.send(frame(b"\x16INSERT INTO cmd_t VALUES (?, ?)", 0))
    prep = PrepareOK.parse(raw.read_packet().payload)
    for _ in range(prep.num_params + 1):
        raw.read_packet()
    sid = struct.pack("<I", prep.statement_id)
    for chunk in (b"hello ", b"long ", b"data"):
        raw.send(frame(b"\x18" + sid + struct.pack("<H", 1) + chunk, 0))  # no reply
    execute = (b"\x17" + sid + b"\x00" + struct.pack("<I", 1) + b"\x00" + b"\x01"
               + b"\x03\x00" + b"\xfc\x00" + struct.pack("<i", 10))
    assert raw.command(execute)[:1] == b"\x00"
    raw.send(frame(b"\x03SELECT note FROM cmd_t WHERE id = 10", 0))
    packets = [raw.read_packet().payload for _ in range(5)]  # count, coldef, EOF, row, EOF
    assert packets[3] == b"\x0fhello long data"
    raw.close()


def test_field_list_statistics_set_option_reset(proxy):
    raw = RawClient(proxy.port)
    assert raw.login()[:1] == b"\x00"
    setup_table(raw)
    raw.send(frame(bytes((Command.FIELD_LIST,)) + b"cmd_t\x00", 0))
    defs = []
    while True:
        p = raw.read_packet().payload
        if p[:1] == b"\xfe":
            break
        defs.append(p)
    assert len(defs) == 2 and b"note" in defs[1]
    assert b"Uptime" in raw.command(bytes((Command.STATISTICS,)))
    # COM_SET_OPTION MYSQL_OPTION_MULTI_STATEMENTS_OFF / ON
    assert raw.command(bytes((Command.SET_OPTION,)) + b"\x01\x00")[:1] in (b"\xfe", b"\x00")
    code, _ = error_of(raw.command(b"\x03SELECT 1; SELECT 2"))
    assert code == 1064  # multi-statements off: a syntax error from the backend
    assert raw.command(bytes((Command.SET_OPTION,)) + b"\x00\x00")[:1] in (b"\xfe", b"\x00")
    raw.send(frame(b"\x03SELECT 1; SELECT 2", 0))
    packets = [raw.read_packet().payload for _ in range(10)]  # 2 x (count, coldef, EOF, row, EOF)
    assert packets[0] == b"\x01" and packets[5] == b"\x01"
    assert struct.unpack_from("<H", packets[4], 3)[0] & Status.MORE_RESULTS_EXISTS
    assert not struct.unpack_from("<H", packets[9], 3)[0] & Status.MORE_RESULTS_EXISTS
    # COM_RESET_CONNECTION clears user variables
    assert raw.command(b"\x03SET @v = 1")[:1] == b"\x00"
    reset = raw.command(bytes((Command.RESET_CONNECTION,)))
    assert reset[:1] == b"\x00", parse_err(reset) if reset[:1] == b"\xff" else reset
    raw.close()
