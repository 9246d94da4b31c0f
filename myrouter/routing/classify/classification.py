"""What the classifier says about a statement: its kind, flags, SET assignments and tables.

:class:`StatementKind` (what a statement does, for routing), :class:`StatementFlag` (facts the
session and multiplexing layers need), :class:`SetVariable` (one assignment of a SET statement),
:class:`Classification` (all of it for one statement text) and ``_make``, which builds one with
its ``table_keys``. See :mod:`myrouter.routing.classifier` for how a statement is classified.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple


class StatementKind(enum.IntEnum):
    """What a statement does, for routing.

    The integer order is the "strength" used to combine the statements of a
    multi-statement text (the strongest wins: a write beats a read).
    ``UNKNOWN`` (recognised but of unknown effect, e.g. ``EXECUTE stmt``) must
    be treated as a write.
    """

    READ = 0
    UTILITY = 1  # SHOW, EXPLAIN, DESCRIBE, CALL, DO, HANDLER, ANALYZE/OPTIMIZE TABLE, KILL, FLUSH...
    SESSION = 2  # SET, USE, PREPARE, DEALLOCATE
    TRANSACTION = 3  # BEGIN/START TRANSACTION/COMMIT/ROLLBACK, SAVEPOINT, XA, LOCK/UNLOCK TABLES
    LOCKING_READ = 4  # SELECT ... FOR UPDATE / FOR SHARE / LOCK IN SHARE MODE
    UNKNOWN = 5
    WRITE = 6  # INSERT, UPDATE, DELETE, REPLACE, LOAD DATA; also anything unparsable
    DDL = 7  # CREATE, ALTER, DROP, TRUNCATE, RENAME, GRANT, REVOKE...

    @property
    def label(self) -> str:
        """Lower-case name, as written in rule files (``match_kind``)."""
        return self.name.lower()


class StatementFlag(enum.Flag):
    """Facts about a statement that the session/multiplexing layers need."""

    NONE = 0
    LOCKING = 1 << 0  # FOR UPDATE / FOR SHARE / LOCK IN SHARE MODE
    GET_LOCK = 1 << 1  # GET_LOCK(): acquires a named lock held by the connection
    RELEASE_LOCK = 1 << 2  # RELEASE_LOCK() / RELEASE_ALL_LOCKS()
    LOCK_INFO = 1 << 3  # IS_USED_LOCK() / IS_FREE_LOCK()
    LAST_INSERT_ID = 1 << 4  # LAST_INSERT_ID(): per-connection value
    FOUND_ROWS = 1 << 5  # FOUND_ROWS(): per-connection value
    ROW_COUNT = 1 << 6  # ROW_COUNT(): per-connection value
    SEQUENCE = 1 << 7  # NEXTVAL/LASTVAL/SETVAL, NEXT/PREVIOUS VALUE FOR
    SLEEP = 1 << 8  # SLEEP()
    USER_VARIABLE_ASSIGN = 1 << 9  # SET @x=, SELECT @x:=, SELECT ... INTO @x, CALL p(@out)
    USER_VARIABLE_READ = 1 << 10  # @x referenced other than as an assignment target
    SQL_CALC_FOUND_ROWS = 1 << 11
    CREATE_TEMPORARY_TABLE = 1 << 12
    DROP_TEMPORARY_TABLE = 1 << 13
    TEXT_PREPARE = 1 << 14  # PREPARE stmt FROM ...
    TEXT_EXECUTE = 1 << 15  # EXECUTE stmt
    DEALLOCATE = 1 << 16  # DEALLOCATE PREPARE / DROP PREPARE
    LOCK_TABLES = 1 << 17  # LOCK TABLES, LOCK INSTANCE FOR BACKUP, FLUSH TABLES WITH READ LOCK
    UNLOCK_TABLES = 1 << 18  # UNLOCK TABLES / UNLOCK INSTANCE
    SAVEPOINT = 1 << 19  # SAVEPOINT, RELEASE SAVEPOINT, ROLLBACK TO SAVEPOINT
    XA = 1 << 20  # XA START/END/PREPARE/COMMIT/ROLLBACK/RECOVER
    SELECT_INTO = 1 << 21  # SELECT ... INTO OUTFILE / DUMPFILE / @vars
    MULTI_STATEMENT = 1 << 22
    IMPLICIT_COMMIT = 1 << 23  # statements that implicitly commit (DDL, LOCK TABLES, BEGIN...)
    SET_AUTOCOMMIT = 1 << 24
    SET_SESSION_VARIABLE = 1 << 25  # a session system variable (incl. NAMES, CHARSET, TRANSACTION)
    SET_GLOBAL_VARIABLE = 1 << 26  # SET GLOBAL / PERSIST / PERSIST_ONLY
    SET_SQL_LOG_BIN = 1 << 27
    START_TRANSACTION_READ_ONLY = 1 << 28
    HANDLER = 1 << 29  # HANDLER statements (open handles belong to the connection)
    DIAGNOSTICS = 1 << 30  # SHOW WARNINGS/ERRORS, GET DIAGNOSTICS, @@warning_count: need the previous connection
    CHANGE_SCHEMA = 1 << 31  # USE db
    #: the statement opens a transaction that is read-only by declaration: START TRANSACTION READ ONLY,
    #: or (set by the session) BEGIN / an autocommit-off session's first statement after
    #: SET [SESSION] TRANSACTION READ ONLY. Rules route the whole transaction by it (match_flags).
    READ_ONLY_TRANSACTION = 1 << 32
    CONNECTION_ID = 1 << 33  # CONNECTION_ID(): the proxy answers with the session id
    PROCESSLIST = 1 << 34  # SHOW PROCESSLIST, information_schema.PROCESSLIST: the proxy's sessions
    KILL = 1 << 35  # KILL anywhere in the text: never sent to a backend (its ids are the proxy's)

    #: any function whose result or effect is bound to the backend connection
    SIDE_EFFECT = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8)


_F = StatementFlag
_K = StatementKind


class SetVariable(NamedTuple):
    """One assignment of a SET statement.

    ``name``: lower-case, unquoted: ``sql_mode``, ``time_zone``, ``autocommit``;
    ``names`` for ``SET NAMES``, ``charset`` for ``SET CHARACTER SET``/``CHARSET``;
    ``transaction_isolation`` / ``transaction_read_only`` for ``SET
    TRANSACTION`` (normalized to the variable form); ``@x`` for a user variable.
    ``value``: the value's SQL text as written (``'TRADITIONAL'``, ``ON``,
    ``DEFAULT``, ``utf8mb4 COLLATE utf8mb4_unicode_ci``), except for ``SET
    TRANSACTION`` where it is normalized (``'READ-COMMITTED'``, ``ON``/``OFF``).
    ``scope``: ``session``, ``global``, ``persist``, ``persist_only``, ``user``
    or ``next_transaction`` (``SET TRANSACTION`` without GLOBAL/SESSION).
    """

    name: str
    value: str
    scope: str = "session"


@dataclass(frozen=True, slots=True)
class Classification:
    """The classification of one statement text (possibly multi-statement).

    ``set_variables`` is ``()`` for statements that assign nothing, the
    assignments of SET statements, or ``None`` when a SET statement could not
    be understood (the caller must then assume unknown session state).
    ``parse_error`` keeps the sqlglot (or internal) error text whenever a parse
    failed, even when the keyword fallback understood the statement;
    ``is_unparsable`` is true when nothing understood it (then kind is WRITE).
    """

    kind: StatementKind
    flags: StatementFlag = StatementFlag.NONE
    tables: frozenset[str] = frozenset()
    table_keys: frozenset[str] = frozenset()
    command: str = ""
    set_variables: tuple[SetVariable, ...] | None = ()
    schema: str | None = None
    statement_count: int = 1
    is_unparsable: bool = False
    parse_error: str | None = None
    #: ``flags`` as a plain int, for hot-path tests (enum.Flag operators are slow)
    bits: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bits", self.flags.value)

    @property
    def routes_to_writer(self) -> bool:
        """Whether nothing but the writer may run it (anything but a plain read)."""
        return self.kind is not StatementKind.READ or bool(
            self.flags & (_F.SIDE_EFFECT | _F.USER_VARIABLE_ASSIGN | _F.SELECT_INTO)
        )

    def flag_names(self) -> list[str]:
        """Names of the set flags, lower-case, in definition order."""
        return [f.name.lower() for f in StatementFlag if f.value and f in self.flags and f.name]

    def summary(self) -> str:
        """One line: ``read tables=sbtest1 flags=locking``."""
        parts = [self.kind.label]
        if self.command:
            parts.append(f"command={self.command}")
        if self.tables:
            parts.append("tables=" + ",".join(sorted(self.tables)))
        names = self.flag_names()
        if names:
            parts.append("flags=" + ",".join(names))
        if self.statement_count > 1:
            parts.append(f"statements={self.statement_count}")
        if self.is_unparsable:
            parts.append("unparsable")
        return " ".join(parts)


def _make(
    kind: StatementKind,
    flags: StatementFlag = StatementFlag.NONE,
    tables: set[str] | frozenset[str] = frozenset(),
    command: str = "",
    set_variables: tuple[SetVariable, ...] | None = (),
    schema: str | None = None,
    statement_count: int = 1,
    is_unparsable: bool = False,
    parse_error: str | None = None,
) -> Classification:
    tables = frozenset(tables)
    keys = set(tables)
    for t in tables:
        dot = t.rfind(".")
        if dot >= 0:
            keys.add(t[dot + 1 :])
    return Classification(
        kind=kind,
        flags=flags,
        tables=tables,
        table_keys=frozenset(keys),
        command=command,
        set_variables=set_variables,
        schema=schema,
        statement_count=statement_count,
        is_unparsable=is_unparsable,
        parse_error=parse_error,
    )


def _with_set_variables(c: Classification, sv: tuple[SetVariable, ...] | None) -> Classification:
    # positional construction: several times faster than dataclasses.replace
    return Classification(
        c.kind, c.flags, c.tables, c.table_keys, c.command, sv, c.schema,
        c.statement_count, c.is_unparsable, c.parse_error,
    )
