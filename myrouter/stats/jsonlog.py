"""JSON lines: the log files (query log, audit log) and the process log's JSON formatter.

``JsonLinesWriter`` appends one JSON object per line to a file and rotates it
when it grows past ``max_bytes`` (ProxySQL's ``mysql-eventslog_filesize`` /
``mysql-auditlog_filesize``). Rotated files get ProxySQL's names: the file
name followed by an 8-digit number, one more than the highest already there
(``audit.log.00000001``, ``audit.log.00000002``, ...), so sorting by name is
sorting by age. DIFFERS from ProxySQL: the file being written keeps the
configured name itself (ProxySQL writes into the numbered files and starts a
new one at every start), so ``tail -F`` and log shippers follow one path and
the existing file is appended to after a restart. ``rotate()`` is also what
``PROXYSQL FLUSH LOGS`` does; when an external logrotate has moved the file
away, it simply opens a new one.

Writes are synchronous (a few hundred bytes, one ``write`` on a file opened
with ``O_APPEND``), as ProxySQL writes its logs from the worker threads. A
failing write (disk full) never fails the session that logs: it is counted in
``write_errors`` and reported on the process log once per failure streak.

``JsonFormatter`` is the ``logging`` formatter behind ``myrouter serve
--log-format json``: one object per line with ``ts`` (UTC, ISO 8601,
milliseconds), ``level``, ``logger``, ``message``, the record's structured
``extra`` fields, and ``exc_info`` (the formatted traceback) when there is one.

Stdlib only.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import time
from typing import Any

from .logsafe import MESSAGE_LIMIT, clip

__all__ = ["JsonLinesWriter", "JsonFormatter", "encode_line", "local_time", "now_us"]

log = logging.getLogger("myrouter.logs")

_SUFFIX_DIGITS = 8


def now_us() -> int:
    return int(time.time() * 1_000_000)


def local_time(ts: float) -> str:
    """``YYYY-MM-DD HH:MM:SS.mmm`` in local time, as ProxySQL's ``time`` field."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


def encode_line(event: dict[str, Any]) -> bytes:
    """One event as a JSON line (ASCII: non-ASCII and undecodable bytes are \\u-escaped)."""
    return json.dumps(event, separators=(",", ":"), default=str).encode("ascii") + b"\n"


class JsonLinesWriter:
    """Appends JSON lines to ``filename``; rotates past ``max_bytes`` (0: never).

    Raises OSError when the file cannot be opened (the caller names the
    variable). ``what`` names the log in messages ("query log", "audit log").
    """

    def __init__(self, filename: str, max_bytes: int = 0, *, what: str = "log") -> None:
        self.filename = filename
        self.max_bytes = max_bytes
        self.what = what
        self.events = 0
        self.write_errors = 0
        self.rotations = 0
        self._failing = False
        self._fd = self._open()
        self.size = os.fstat(self._fd).st_size

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.filename!r} size={self.size} max_bytes={self.max_bytes} "
                f"events={self.events} rotations={self.rotations}>")

    def _open(self) -> int:
        # O_APPEND: each line lands whole at the end, whoever else appends to the file.
        return os.open(self.filename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def write(self, event: dict[str, Any]) -> None:
        self.write_line(encode_line(event))

    def write_line(self, line: bytes) -> None:
        try:
            view = memoryview(line)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as exc:
            self.write_errors += 1
            if not self._failing:
                self._failing = True
                log.error("cannot write the %s %s: %s; events are lost until writes succeed again",
                          self.what, self.filename, exc.strerror or exc,
                          extra={"log_file": self.filename, "errno": exc.errno})
            return
        if self._failing:
            self._failing = False
            log.warning("the %s %s is writable again (%d events lost)", self.what, self.filename,
                        self.write_errors, extra={"log_file": self.filename})
        self.events += 1
        self.size += len(line)
        if self.max_bytes and self.size > self.max_bytes:
            try:
                self.rotate()
            except OSError as exc:
                log.error("cannot rotate the %s %s: %s; still writing to it", self.what, self.filename,
                          exc.strerror or exc, extra={"log_file": self.filename, "errno": exc.errno})
                self.size = 0  # try again after another max_bytes, not after every line

    def next_rotated_name(self) -> str:
        """``filename.NNNNNNNN``: one more than the highest number next to the file."""
        directory, base = os.path.split(os.path.abspath(self.filename))
        pattern = re.compile(re.escape(base) + rf"\.(\d{{{_SUFFIX_DIGITS}}})\Z")
        highest = 0
        for name in os.listdir(directory):
            m = pattern.match(name)
            if m is not None:
                highest = max(highest, int(m.group(1)))
        return f"{self.filename}.{highest + 1:0{_SUFFIX_DIGITS}d}"

    def rotate(self) -> str | None:
        """Move the current file to the next numbered name and start a new one.

        Returns the rotated file's name (None if the file had been moved away
        already: then only a new file is opened). Raises OSError, with the
        current file still in use, if the rename or the new file fails.
        """
        if self._fd < 0:
            raise ValueError(f"{self.what} {self.filename} is closed")
        rotated: str | None = self.next_rotated_name()
        try:
            os.rename(self.filename, rotated)
        except FileNotFoundError:
            rotated = None  # moved away (logrotate): reopen under the configured name
        fd = self._open()  # OSError: keep writing to the old descriptor (now the rotated file)
        os.close(self._fd)
        self._fd = fd
        self.size = os.fstat(fd).st_size
        self.rotations += 1
        if rotated is not None:
            log.info("%s rotated: %s -> %s", self.what, self.filename, rotated,
                     extra={"log_file": self.filename, "rotated_to": rotated})
        else:
            log.info("%s %s reopened", self.what, self.filename, extra={"log_file": self.filename})
        return rotated

    def reopen(self) -> None:
        """Write to the file under its configured name again (another process rotated it away):
        OSError keeps the old descriptor."""
        if self._fd < 0:
            return
        fd = self._open()
        os.close(self._fd)
        self._fd = fd
        self.size = os.fstat(fd).st_size

    def file_size(self) -> int:
        """The size of the file under its configured name now, whoever wrote it (0 if it is gone)."""
        try:
            return os.stat(self.filename).st_size
        except FileNotFoundError:
            return 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


# -- the process log ---------------------------------------------------------------

# Attributes every LogRecord has: anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime",
                                                                                       "taskName"}
_CORE = ("ts", "level", "logger", "message")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, extra fields, exc_info."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        out: dict[str, Any] = {
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": clip(record.getMessage(), MESSAGE_LIMIT),  # JSON escapes the control characters
        }
        for key, value in record.__dict__.items():
            if key in _RECORD_ATTRS or key.startswith("_"):
                continue
            if isinstance(value, str):
                value = clip(value, MESSAGE_LIMIT)
            out["extra_" + key if key in _CORE else key] = value
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str)
