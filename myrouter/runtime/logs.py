"""The proxy's own logs: the query log, the audit log (JSON lines) and the process log's throttle.

A change of ``mysql-eventslog_filename`` / ``mysql-auditlog_filename`` opens the new file
first (:meth:`Logs.prepare`): one that cannot be opened refuses the whole runtime change.

With worker processes every worker appends to the same files (one write per record, O_APPEND), and
only the supervisor rotates them (``rotates``): past ``*_filesize`` (``rotate_oversized``, from the
file's size whoever wrote it) and on ``PROXYSQL FLUSH LOGS``; the workers then ``reopen``.
"""

from __future__ import annotations

from ..config import MySQLVariables
from ..protocol.errors import MySQLError
from ..stats.auditlog import AuditLog
from ..stats.logsafe import LogThrottle
from ..stats.querylog import QueryLog

Writer = QueryLog | AuditLog
_KINDS: tuple[tuple[str, type[QueryLog] | type[AuditLog]], ...] = (("eventslog", QueryLog), ("auditlog", AuditLog))


class Logs:
    def __init__(self, v: MySQLVariables, *, rotates: bool = True) -> None:
        self.rotates = rotates  # False in a worker: the supervisor rotates the shared files
        self.query_log: QueryLog | None = open_log(QueryLog, "eventslog", v, rotates)  # type: ignore[assignment]
        self.audit_log: AuditLog | None = open_log(AuditLog, "auditlog", v, rotates)  # type: ignore[assignment]
        self.log_throttle = LogThrottle()  # process-log lines that clients can repeat at will

    def prepare(self, old: MySQLVariables, new: MySQLVariables) -> dict[str, Writer | None]:
        """Open the files that ``new`` names and ``old`` did not; MySQLError (nothing left open) if one fails."""
        opened: dict[str, Writer | None] = {}
        try:
            for prefix, cls in _KINDS:
                if getattr(new, prefix + "_filename") != getattr(old, prefix + "_filename"):
                    opened[prefix] = open_log(cls, prefix, new, self.rotates)
        except OSError as exc:
            self.discard(opened)
            raise MySQLError(1105, exc.strerror or str(exc), "HY000") from exc
        return opened

    @staticmethod
    def discard(opened: dict[str, Writer | None]) -> None:
        """Close files ``prepare`` opened for a change that is not made after all."""
        for writer in opened.values():
            if writer is not None:
                writer.close()

    def apply(self, opened: dict[str, Writer | None], v: MySQLVariables) -> None:
        """Swap in the files ``prepare`` opened, resize the others."""
        if "eventslog" in opened:
            if self.query_log is not None:
                self.query_log.close()
            self.query_log = opened["eventslog"]  # type: ignore[assignment]
        if "auditlog" in opened:
            if self.audit_log is not None:
                self.audit_log.close()
            self.audit_log = opened["auditlog"]  # type: ignore[assignment]
        if self.query_log is not None and self.rotates:
            self.query_log.max_bytes = v.eventslog_filesize
        if self.audit_log is not None and self.rotates:
            self.audit_log.max_bytes = v.auditlog_filesize

    def flush(self) -> list[str]:
        """``PROXYSQL FLUSH LOGS``: rotate the query log and the audit log. OSError if one fails."""
        rotated = []
        for writer in (self.query_log, self.audit_log):
            if writer is not None:
                name = writer.rotate()
                if name is not None:
                    rotated.append(name)
        return rotated

    def reopen(self) -> None:
        """The files were rotated by another process (the supervisor): write to the new ones. OSError
        if one cannot be opened (that log keeps writing to the rotated file)."""
        for writer in (self.query_log, self.audit_log):
            if writer is not None:
                writer.reopen()

    def rotate_oversized(self) -> list[str]:
        """Rotate the files grown past their ``*_filesize`` by every process writing them; the rotated
        names. OSError if a rotation fails."""
        rotated = []
        for writer in (self.query_log, self.audit_log):
            if writer is not None and writer.max_bytes and writer.file_size() > writer.max_bytes:
                name = writer.rotate()
                if name is not None:
                    rotated.append(name)
        return rotated

    def close(self) -> None:
        for writer in (self.query_log, self.audit_log):
            if writer is not None:
                writer.close()


def open_log(cls, prefix: str, v: MySQLVariables, rotates: bool = True) -> Writer | None:
    """The ``mysql-<prefix>_filename`` log of ``v`` (None when empty); OSError naming the variable.
    ``rotates=False``: never past its size (another process rotates the file)."""
    filename = getattr(v, prefix + "_filename")
    if not filename:
        return None
    try:
        return cls(filename, getattr(v, prefix + "_filesize") if rotates else 0)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot open mysql-{prefix}_filename {filename!r}: {exc.strerror or exc}") from exc
