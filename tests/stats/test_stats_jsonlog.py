"""JsonLinesWriter (query log and audit log files, rotation) and JsonFormatter (the process log)."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import pytest

from myrouter.stats.jsonlog import JsonFormatter, JsonLinesWriter, encode_line, local_time


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- writing -------------------------------------------------------------------------


def test_one_object_per_line_appended(tmp_path):
    path = tmp_path / "events.log"
    path.write_text('{"old":1}\n')
    w = JsonLinesWriter(str(path))
    assert w.size == len('{"old":1}\n')
    w.write({"event": "a", "n": 1})
    w.write({"event": "b", "text": "line\nbreak \"quoted\""})
    w.close()
    assert lines(path) == [{"old": 1}, {"event": "a", "n": 1}, {"event": "b", "text": "line\nbreak \"quoted\""}]
    assert w.events == 2 and w.size == path.stat().st_size and w.closed


def test_undecodable_bytes_and_unicode_stay_one_ascii_line(tmp_path):
    sql = b"SELECT '\xff\xfe', 'h\xc3\xa9llo'".decode("utf-8", "surrogateescape")
    line = encode_line({"query": sql, "when": Path("/x")})  # default=str for other types
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and line.isascii()
    back = json.loads(line)
    assert back["query"] == sql and back["when"] == "/x"


def test_unopenable_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        JsonLinesWriter(str(tmp_path / "missing" / "x.log"))
    with pytest.raises(IsADirectoryError):
        JsonLinesWriter(str(tmp_path))


def test_write_failure_is_counted_and_reported_once(caplog):
    w = JsonLinesWriter("/dev/full", what="audit log")  # every write: ENOSPC
    with caplog.at_level(logging.ERROR, logger="myrouter.logs"):
        for i in range(3):
            w.write({"n": i})
    w.close()
    assert w.write_errors == 3 and w.events == 0
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "cannot write the audit log /dev/full" in errors[0].getMessage()
    assert errors[0].log_file == "/dev/full"  # a structured field for the JSON process log


def test_writing_after_close_is_an_error_not_silence(tmp_path, caplog):
    w = JsonLinesWriter(str(tmp_path / "x.log"))
    w.close()
    w.write({"n": 1})
    assert w.write_errors == 1
    assert any("cannot write" in r.getMessage() for r in caplog.records)


# -- rotation ------------------------------------------------------------------------


def test_rotates_past_max_bytes_with_proxysql_numbering(tmp_path):
    path = tmp_path / "audit.log"
    w = JsonLinesWriter(str(path), max_bytes=300)
    event = {"event": "MySQL_Client_Connect_OK", "pad": "x" * 60}
    size = len(encode_line(event))
    for _ in range(10):
        w.write(event)
    w.close()
    rotated = sorted(tmp_path.glob("audit.log.*"))
    per_file = 300 // size + 1  # the line that passes the limit stays in the old file
    assert [p.name for p in rotated] == [f"audit.log.{i:08d}" for i in range(1, 10 // per_file + 1)]
    for p in rotated:
        assert p.stat().st_size == per_file * size
    assert sum(len(lines(p)) for p in [*rotated, path]) == 10
    assert w.rotations == len(rotated)


def test_numbering_continues_after_existing_files_and_ignores_others(tmp_path):
    path = tmp_path / "q.log"
    for name in ("q.log.00000007", "q.log.00000002", "q.log.123", "q.log.bak", "xq.log.00000099",
                 "q.log.00000008.gz"):
        (tmp_path / name).write_text("")
    path.write_text('{"n":0}\n')
    w = JsonLinesWriter(str(path))
    assert w.rotate() == str(tmp_path / "q.log.00000008")
    assert lines(tmp_path / "q.log.00000008") == [{"n": 0}]
    assert path.read_text() == "" and w.size == 0
    w.write({"n": 1})
    assert w.rotate() == str(tmp_path / "q.log.00000009")
    w.close()


def test_relative_file_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    w = JsonLinesWriter("rel.log")
    w.write({"n": 1})
    assert w.rotate() == "rel.log.00000001"
    w.close()
    assert lines(tmp_path / "rel.log.00000001") == [{"n": 1}]


def test_file_moved_away_by_logrotate_is_reopened(tmp_path):
    path = tmp_path / "audit.log"
    w = JsonLinesWriter(str(path))
    w.write({"n": 1})
    path.rename(tmp_path / "audit.log.1")  # logrotate's own naming
    assert w.rotate() is None
    w.write({"n": 2})
    w.close()
    assert lines(tmp_path / "audit.log.1") == [{"n": 1}]
    assert lines(path) == [{"n": 2}]
    assert not list(tmp_path.glob("audit.log.0*"))


def test_failed_rotation_keeps_writing_to_the_current_file(tmp_path, caplog):
    path = tmp_path / ("a" * 250)  # a valid name whose rotated name (+ ".00000001") is too long
    w = JsonLinesWriter(str(path), max_bytes=50)
    with pytest.raises(OSError) as failed:
        w.rotate()
    assert failed.value.strerror == "File name too long"
    w.write({"pad": "x" * 60})  # passes max_bytes: rotation fails, logged, writing goes on
    w.write({"n": 2})
    w.close()
    assert [e.get("n") for e in lines(path)] == [None, 2]
    assert w.write_errors == 0 and w.rotations == 0
    assert any("cannot rotate the log" in r.getMessage() for r in caplog.records)


# -- the process log's formatter ----------------------------------------------------


def _record(msg: str, *args, exc_info=None, **extra) -> logging.LogRecord:
    logger = logging.getLogger("myrouter.test")
    return logger.makeRecord(logger.name, logging.WARNING, __file__, 1, msg, args, exc_info, extra=extra)


def test_json_formatter_fields():
    rec = _record("session %d: lost backend %s", 7, "10.0.0.1:3306", server="10.0.0.1:3306", hostgroup=1,
                  where=Path("/tmp"))
    out = json.loads(JsonFormatter().format(rec))
    assert list(out)[:4] == ["ts", "level", "logger", "message"]
    assert out["level"] == "WARNING" and out["logger"] == "myrouter.test"
    assert out["message"] == "session 7: lost backend 10.0.0.1:3306"
    assert out["server"] == "10.0.0.1:3306" and out["hostgroup"] == 1 and out["where"] == "/tmp"
    assert out["ts"].endswith("Z") and out["ts"][10] == "T" and len(out["ts"]) == len("2024-01-02T03:04:05.678Z")
    assert "args" not in out and "msg" not in out and "levelno" not in out


def test_json_formatter_exception_and_name_clashes():
    try:
        raise ValueError("boom")
    except ValueError:
        rec = _record("failed", exc_info=sys.exc_info(), level="custom", ts=5)
    text = JsonFormatter().format(rec)
    assert "\n" not in text  # one line, the traceback escaped inside it
    out = json.loads(text)
    assert out["level"] == "WARNING" and out["extra_level"] == "custom" and out["extra_ts"] == 5
    assert out["exc_info"].startswith("Traceback") and "ValueError: boom" in out["exc_info"]


def test_local_time_format():
    ts = 1_700_000_000.123
    text = local_time(ts)
    assert text.endswith(".123") and len(text) == len("2023-11-14 22:13:20.123")


def test_files_are_created_private_to_the_group(tmp_path):
    old = os.umask(0)
    try:
        w = JsonLinesWriter(str(tmp_path / "a.log"))
    finally:
        os.umask(old)
    w.close()
    assert (tmp_path / "a.log").stat().st_mode & 0o777 == 0o640
