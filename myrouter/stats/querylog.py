"""Query log: one JSON object per line for statements whose rule says ``log = 1``.

The file is ``mysql_variables.eventslog_filename``, rotated past
``eventslog_filesize`` (see :mod:`myrouter.stats.jsonlog`); the fields follow
ProxySQL's JSON events log (eventslog_format=2) so its tooling reads them.
"""

from __future__ import annotations

from .jsonlog import JsonLinesWriter, now_us

__all__ = ["QueryLog", "now_us"]


class QueryLog(JsonLinesWriter):
    def __init__(self, filename: str, max_bytes: int = 0) -> None:
        super().__init__(filename, max_bytes, what="query log")
