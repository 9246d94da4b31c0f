"""Client-supplied text in logs: capped, escaped, and repeated events rate-limited.

A client controls user names, schema names, connection attributes and statement text,
and unauthenticated clients can repeat an event (a refused connection, a failed
login) as fast as they can connect. This module keeps that from growing or forging
the logs:

* ``clip(text, limit)``: at most ``limit`` characters, the rest replaced by a note
  saying how many were cut;
* ``escape_controls(text)``: control characters (CR, LF, ESC, NUL, ...) and Unicode
  line separators as ``\\xNN`` / ``\\uNNNN``, so no client text starts a line of its own
  in a text log;
* ``log_safe(text, limit)``: both; what the text process log does to every message
  (``SafeTextFormatter``);
* ``LogThrottle``: at most ``burst`` lines per kind of event in ``window`` seconds; the
  lines left out are counted and the count is written later (in the next line of that
  kind, or by ``flush()``);
* ``quiet_parser_logs()``: sqlglot's own logger (its warnings quote the statement) is
  kept out of the process log.

Stdlib only, no I/O of its own.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

__all__ = ["clip", "escape_controls", "log_safe", "LogThrottle", "SafeTextFormatter", "quiet_parser_logs",
           "NAME_LIMIT", "MESSAGE_LIMIT"]

NAME_LIMIT = 128  # user and schema names in log lines (MySQL's are at most 32 and 64 characters)
MESSAGE_LIMIT = 8192  # one process-log message, after escaping

# C0 controls, DEL, C1 controls, and the Unicode line/paragraph separators that some viewers break on
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape_one(m: re.Match) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def escape_controls(text: str) -> str:
    """``text`` with every control character and line separator written as an escape."""
    return _CONTROLS.sub(_escape_one, text)


def clip(text: str, limit: int = NAME_LIMIT) -> str:
    """``text`` if it has at most ``limit`` characters, else its start and how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text) - limit} more characters]"


def log_safe(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` on one line and at most about ``limit`` characters long (escapes included)."""
    return clip(escape_controls(clip(text, limit)), limit)


class _Kind:
    __slots__ = ("started", "lines", "suppressed", "logger", "level")

    def __init__(self, started: float) -> None:
        self.started = started  # start of the current window
        self.lines = 0  # lines written in the current window
        self.suppressed = 0  # lines left out and not reported yet
        self.logger: logging.Logger | None = None
        self.level = logging.INFO


class LogThrottle:
    """At most ``burst`` log lines per kind of event in each ``window`` seconds.

    ``log(logger, level, kind, msg, *args)`` writes the line or counts it as suppressed.
    The first line of a kind written after some were suppressed says how many; ``flush()``
    (called about once a second) reports the count of a kind whose window ended with lines
    suppressed and no line since, so a flood that stops is still accounted for.
    """

    def __init__(self, burst: int = 10, window: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = burst
        self.window = window
        self.clock = clock
        self._kinds: dict[str, _Kind] = {}

    def allow(self, kind: str) -> int | None:
        """None if a line of ``kind`` is to be left out now (it is counted); otherwise how
        many were left out before it (and not reported yet)."""
        now = self.clock()
        k = self._kinds.get(kind)
        if k is None:
            k = self._kinds[kind] = _Kind(now)
        if now - k.started >= self.window:
            k.started = now
            k.lines = 0
        if k.lines >= self.burst:
            k.suppressed += 1
            return None
        k.lines += 1
        earlier, k.suppressed = k.suppressed, 0
        return earlier

    def log(self, logger: logging.Logger, level: int, kind: str, msg: str, *args) -> bool:
        """Write ``msg % args`` on ``logger`` unless ``kind`` is over its rate; True if written."""
        earlier = self.allow(kind)
        if earlier is None:
            k = self._kinds[kind]
            k.logger, k.level = logger, level
            return False
        if earlier:
            msg += " (%d more like this suppressed before)"
            args += (earlier,)
        logger.log(level, msg, *args, stacklevel=2)  # the caller's file and line
        return True

    @property
    def pending(self) -> bool:
        """Some lines were suppressed and not reported yet."""
        return any(k.suppressed for k in self._kinds.values())

    def flush(self) -> None:
        """Report the suppressed lines of every kind whose window has ended."""
        now = self.clock()
        for kind, k in self._kinds.items():
            if k.suppressed and now - k.started >= self.window and k.logger is not None:
                k.logger.log(k.level, "%d more log lines like this were suppressed in %.0f s: %s", k.suppressed,
                             now - k.started, kind)
                k.suppressed = 0
                k.started = now
                k.lines = 0


class SafeTextFormatter(logging.Formatter):
    """The text process log: each message escaped onto one line and capped (``log_safe``);
    tracebacks, which are the proxy's own, stay as they are."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = log_safe(record.message)
        return super().formatMessage(record)


def quiet_parser_logs() -> None:
    """Keep sqlglot's logger out of the process log: its warnings copy the statement text
    (literals, newlines) verbatim. The classifier records parse problems itself."""
    parser_log = logging.getLogger("sqlglot")
    parser_log.propagate = False
    if not any(isinstance(h, logging.NullHandler) for h in parser_log.handlers):
        parser_log.addHandler(logging.NullHandler())  # not logging's last-resort stderr handler
