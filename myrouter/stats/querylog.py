"""Query log: one JSON object per line for statements whose rule says ``log = 1``.

The file is ``mysql_variables.eventslog_filename``, rotated past
``eventslog_filesize`` (see :mod:`myrouter.stats.jsonlog`); the fields follow
ProxySQL's JSON events log (eventslog_format=2) so its tooling reads them.
Passwords in the logged statement are masked (``mask_passwords``).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from .jsonlog import JsonLinesWriter, now_us

__all__ = ["MaskPasswords", "QueryLog", "mask_passwords", "now_us"]

_LITERAL = r"""(?:'(?:[^'\\]|\\.|'')*'?|"(?:[^"\\]|\\.|"")*"?)"""
# what introduces a password literal: IDENTIFIED BY [PASSWORD] '...', IDENTIFIED WITH plugin BY|AS '...',
# [OLD_]PASSWORD('...') (also in IDENTIFIED VIA plugin USING PASSWORD('...')), SET PASSWORD ... = '...',
# MASTER_PASSWORD = '...'
_PASSWORD_RE = re.compile(
    r"(\bIDENTIFIED\s+(?:WITH\s+[\w`'\"]+\s+)?(?:BY|AS)(?:\s+PASSWORD)?\s*"
    r"|\b(?:OLD_)?PASSWORD\s*\(\s*"
    r"|\bSET\s+PASSWORD\b[^=;]*=\s*"
    r"|\b(?:MASTER|PRIMARY)_PASSWORD\s*=\s*)"
    r"(" + _LITERAL + r")",
    re.I | re.S)
_HINT_RE = re.compile(r"PASSWORD|IDENTIFIED", re.I)
MASK = "'***'"


def mask_passwords(sql: str) -> str:
    """``sql`` with the literal of every password clause replaced by ``'***'``."""
    if _HINT_RE.search(sql) is None:
        return sql  # the common statement
    return _PASSWORD_RE.sub(lambda m: m.group(1) + MASK, sql)


class QueryLog(JsonLinesWriter):
    def __init__(self, filename: str, max_bytes: int = 0) -> None:
        super().__init__(filename, max_bytes, what="query log")

    def write(self, event: dict[str, Any]) -> None:
        query = event.get("query")
        if isinstance(query, str):
            event["query"] = mask_passwords(query)
        super().write(event)


class MaskPasswords(logging.Filter):
    """A process-log filter: messages with password clauses (an error quoting a statement) masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # a malformed record: logging reports it as usual
        masked = mask_passwords(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True
