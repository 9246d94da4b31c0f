"""Query log: one JSON object per line for statements whose rule says ``log = 1``.

The file is ``mysql_variables.eventslog_filename``; the fields follow ProxySQL's
JSON events log (eventslog_format=2) so its tooling reads them.
"""

from __future__ import annotations

import json
import logging
import time

log = logging.getLogger("myrouter.querylog")


class QueryLog:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self._file = open(filename, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - kept open while serving
        self.events = 0

    def write(self, event: dict) -> None:
        try:
            self._file.write(json.dumps(event, separators=(",", ":"), default=str) + "\n")
            self.events += 1
        except OSError as exc:
            log.error("cannot write the query log %s: %s", self.filename, exc)

    def close(self) -> None:
        self._file.close()


def now_us() -> int:
    return int(time.time() * 1_000_000)
