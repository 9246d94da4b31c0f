"""Errors shared across myrouter's layers that are not wire-protocol errors.

Wire-level errors (the ones that turn into an ERR packet) live in
``myrouter.protocol.errors``; this module holds the configuration error, which
the CLI turns into a message naming file, line and key, and exit status 2.
"""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration or rule file that cannot be used.

    ``str()`` gives ``file:line: key: message`` with the parts that are known,
    which is what the CLI prints before exiting with status 2.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.key = key

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = str(self.file)
            if self.line:
                where += f":{self.line}"
            where += ": "
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{self.message}"
