"""Log-safe text: capping, escaping, the rate limit of repeated lines, the text formatter."""

import logging

from myrouter.protocol.errors import access_denied
from myrouter.stats.logsafe import (
    LogThrottle,
    SafeTextFormatter,
    clip,
    escape_controls,
    log_safe,
    quiet_parser_logs,
)

FORGED = "x\n2026-12-04 00:00:00,000 CRITICAL myrouter: forged"


def test_clip_keeps_short_text_and_says_how_much_was_cut():
    assert clip("app", 8) == "app"
    assert clip("a" * 20, 8) == "aaaaaaaa...[12 more characters]"


def test_escape_controls_leaves_no_line_break():
    text = escape_controls(FORGED + "\r\x1b[31m\x00\u2028\x85")
    assert "\n" not in text and "\r" not in text and "\x1b" not in text
    assert text.splitlines() == [text]
    assert text.startswith("x\\x0a2026-12-04") and text.endswith("\\x00\\u2028\\x85")


def test_log_safe_bounds_the_escaped_text():
    assert len(log_safe("\n" * 1_000_000, 100)) < 200
    assert log_safe("plain text") == "plain text"


def _record(msg, *args):
    return logging.LogRecord("myrouter.session", logging.INFO, __file__, 1, msg, args, None)


def test_text_formatter_writes_one_line_per_record():
    fmt = SafeTextFormatter("%(levelname)s %(name)s: %(message)s")
    line = fmt.format(_record("access denied for user %r, statement %s", "u" * 1_000_000, FORGED))
    assert "\n" not in line and len(line) < 9000
    assert line.startswith("INFO myrouter.session: access denied for user 'uuu")


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def _logger(name):
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = _Lines()
    logger.handlers = [handler]
    return logger, handler


def test_throttle_writes_a_burst_then_counts_and_reports_the_rest():
    clock = _Clock()
    throttle = LogThrottle(burst=3, window=10.0, clock=clock)
    logger, out = _logger("test.logsafe.throttle")
    written = [throttle.log(logger, logging.WARNING, "refused", "session %d refused", i) for i in range(100)]
    assert written == [True] * 3 + [False] * 97
    assert out.lines == ["session 0 refused", "session 1 refused", "session 2 refused"]
    throttle.flush()  # the window has not ended: nothing yet
    assert len(out.lines) == 3
    clock.now += 10
    throttle.flush()
    assert out.lines[3] == "97 more log lines like this were suppressed in 10 s: refused"
    throttle.flush()  # reported once
    assert len(out.lines) == 4


def test_throttle_reports_the_count_in_the_next_line_of_the_kind():
    clock = _Clock()
    throttle = LogThrottle(burst=1, window=5.0, clock=clock)
    logger, out = _logger("test.logsafe.next")
    for i in range(5):
        throttle.log(logger, logging.INFO, "denied", "denied %d", i)
    throttle.log(logger, logging.INFO, "other kind", "other")  # kinds are counted apart
    clock.now += 5
    throttle.log(logger, logging.INFO, "denied", "denied %d", 5)
    assert out.lines == ["denied 0", "other", "denied 5 (4 more like this suppressed before)"]


def test_parser_logs_stay_out_of_the_process_log(capsys):
    root = logging.getLogger()
    handler = _Lines()
    root.addHandler(handler)
    try:
        quiet_parser_logs()
        logging.getLogger("sqlglot").warning("'%s' contains unsupported syntax", FORGED)
    finally:
        root.removeHandler(handler)
    assert handler.lines == []
    assert capsys.readouterr().err == ""  # not logging's last-resort handler either


def test_access_denied_cuts_the_user_name_as_mysql_does():
    err = access_denied("u" * 1_000_000, "127.0.0.1", True)
    assert err.message == f"Access denied for user '{'u' * 48}'@'127.0.0.1' (using password: YES)"


def test_throttle_pending_until_the_count_is_reported():
    clock = _Clock()
    throttle = LogThrottle(burst=1, window=1.0, clock=clock)
    logger, out = _logger("test.logsafe.pending")
    throttle.log(logger, logging.ERROR, "accept", "accept failed")
    assert not throttle.pending
    throttle.log(logger, logging.ERROR, "accept", "accept failed")
    assert throttle.pending
    clock.now += 1
    throttle.flush()
    assert not throttle.pending and out.lines[-1] == "1 more log lines like this were suppressed in 1 s: accept"


def test_json_process_log_caps_the_message_and_string_extras():
    import json

    from myrouter.stats.jsonlog import JsonFormatter

    record = _record("access denied for user %r", "u" * 1_000_000 + "\n" + FORGED)
    record.username = "v" * 1_000_000  # an extra= field
    line = JsonFormatter().format(record)
    assert "\n" not in line and len(line) < 20_000
    out = json.loads(line)
    assert out["message"].endswith("more characters]") and out["username"].endswith("more characters]")
