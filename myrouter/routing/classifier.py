"""Statement classification: kind, tables and flags, cached per digest.

:func:`classify_statement` is the pure classifier; :class:`Classifier` adds a
bounded LRU cache keyed by the digest hash (see :mod:`.digest`), so a
statement shape seen before costs a digest and a dict lookup, never a parse.

How a statement is classified
-----------------------------
The first keyword (from the digest text: comments dropped, executable
comments ``/*! ... */`` unwrapped since the server runs their content) picks a
family:

* ``SELECT``/``WITH``/``TABLE``/``VALUES``/``(`` and ``INSERT``/``REPLACE``/
  ``UPDATE``/``DELETE`` are parsed with sqlglot (``dialect="mysql"``), which
  is the source of truth for the statement type, the tables and the locking
  clauses.  A few MySQL forms sqlglot rejects are rewritten first, for the
  parse only: DML modifiers (``LOW_PRIORITY``, ``DELAYED``, ``QUICK``,
  ``IGNORE``...), ``REPLACE`` (parsed as ``INSERT``), MariaDB ``NEXT VALUE FOR``
  and ``SELECT ... INTO OUTFILE/DUMPFILE/@var`` (the ``INTO`` clause is cut
  out and recorded as flags).  When sqlglot cannot parse the statement it is
  classified WRITE with ``is_unparsable=True`` and the error text in
  ``parse_error`` (safe default: it goes to the writer); tables then come from
  a best-effort scan of the digest text.
* Statements sqlglot parses as a generic ``Command`` or not at all (SHOW,
  KILL, LOCK/UNLOCK TABLES, HANDLER, XA, SAVEPOINT, PREPARE/EXECUTE, CALL,
  DO, LOAD DATA, GRANT, ...) are classified from their keywords.  DDL is DDL
  by keyword; sqlglot only supplies its tables when it can.
* ``SET`` is parsed by a small dedicated parser that also returns the
  assigned variables and their value texts (:class:`SetVariable`); sqlglot
  validates it and finds tables in subqueries.

Function and variable flags (GET_LOCK, LAST_INSERT_ID, ``@x``...) come from a
scan of the digest text, where literals and comments are already gone, so a
function name inside a string never counts.

Tables
------
``tables`` holds lower-case names as written: a schema-qualified reference is
``"schema.table"``, an unqualified one ``"table"``.  CTE names and ``DUAL`` are
not tables.  ``table_keys`` is ``tables`` plus the bare table name of every
qualified reference, so a query rule with ``match_tables = ["orders"]``
matches ``shop.orders`` too (rules with a qualified name only match that
schema, see :mod:`.rules`).

Caching
-------
The cache maps a digest hash to a classification.  Everything in a
classification is derived from the statement's structure, which the digest
keeps (kind, flags, tables, command, ``USE`` schema), except the values of SET
statements, which are literals.  Those are never served from the cache: on a
hit for a statement that assigns variables, ``set_variables`` is re-extracted
from the current statement text with the (fast, sqlglot-free) SET parser;
everything else is reused.  One consequence worth knowing: whether sqlglot can
parse a statement can depend on a literal (a malformed one); the first
statement seen for a digest decides for all of them.
"""

from __future__ import annotations

import enum
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Callable, NamedTuple

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from .digest import digest, digest_text, split_statements

__all__ = [
    "StatementKind",
    "StatementFlag",
    "SetVariable",
    "Classification",
    "ClassifierStatistics",
    "Classifier",
    "classify_statement",
    "parse_set_statement",
]

_log = logging.getLogger(__name__)


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


# ---------------------------------------------------------------------------
# Lexical helpers

# Exceptions sqlglot is known to raise on bad input: its own errors, and a few
# internal ones seen when fuzzing (IndexError, AttributeError on odd token
# sequences; RecursionError on deep nesting).
_SQLGLOT_ERRORS: tuple[type[BaseException], ...] = (
    SqlglotError,
    RecursionError,
    IndexError,
    AttributeError,
    KeyError,
    TypeError,
    ValueError,
)

_DIALECT = sqlglot.Dialect.get_or_raise("mysql")

# Quoted things and comments, so that scans skip their content.
_Q_SQ = r"'[^'\\]*+(?:(?:\\[\s\S]|'')[^'\\]*+)*+(?:'|\\?\Z)"
_Q_DQ = r'"[^"\\]*+(?:(?:\\[\s\S]|"")[^"\\]*+)*+(?:"|\\?\Z)'
_Q_BT = r"`[^`]*+(?:``[^`]*+)*+(?:`|\Z)"

_EXEC_SCAN = re.compile(
    _Q_SQ + "|" + _Q_DQ + "|" + _Q_BT
    + r"|(/\*M?!\d*)"  # 1: executable comment opener
    + r"|(\*/)"  # 2: a comment closer (ends an executable comment)
    + r"|/\*[\s\S]*?(?:\*/|\Z)|--(?=\s|\Z)[^\n]*|\#[^\n]*"
)


def unwrap_executable_comments(sql: str) -> str:
    """Replace ``/*!NNNNN`` / ``/*M!NNNNNN`` openers and their ``*/`` with spaces.

    The server executes the content of such comments, so the classifier must
    see it.  Quote and comment aware; returns ``sql`` unchanged when there is
    nothing to unwrap.
    """
    if "/*!" not in sql and "/*M!" not in sql:
        return sql
    out: list[str] = []
    pos = 0
    depth = 0
    for m in _EXEC_SCAN.finditer(sql):
        if m.lastindex == 1:
            out.append(sql[pos : m.start()])
            out.append(" ")
            pos = m.end()
            depth += 1
        elif m.lastindex == 2 and depth:
            out.append(sql[pos : m.start()])
            out.append(" ")
            pos = m.end()
            depth -= 1
    out.append(sql[pos:])
    return "".join(out)


_NAME_PART = r"(?:`(?:[^`]|``)*`|[\w$]+)"
_NAME = _NAME_PART + r"(?:\s*\.\s*" + _NAME_PART + r")?"
_NAME_PARTS_RE = re.compile(r"`((?:[^`]|``)*)`|([\w$]+)")


def _norm_name(raw: str) -> str:
    """``\\`Shop\\`.\\`Orders\\``` -> ``shop.orders``."""
    parts = [
        (q.replace("``", "`") if q is not None and b is None else b).lower()
        for q, b in ((m.group(1), m.group(2)) for m in _NAME_PARTS_RE.finditer(raw))
    ]
    return ".".join(parts[-2:])


def _names_in(raw_list: str) -> set[str]:
    return {_norm_name(m.group()) for m in re.finditer(_NAME, raw_list)}


_FIRST_WORD = re.compile(r"[(\s]*([A-Za-z_]\w*)")

# Flags found by scanning the digest text (literals and comments are gone).
_FUNC_FLAGS = {
    "GET_LOCK": _F.GET_LOCK,
    "RELEASE_LOCK": _F.RELEASE_LOCK,
    "RELEASE_ALL_LOCKS": _F.RELEASE_LOCK,
    "IS_USED_LOCK": _F.LOCK_INFO,
    "IS_FREE_LOCK": _F.LOCK_INFO,
    "LAST_INSERT_ID": _F.LAST_INSERT_ID,
    "FOUND_ROWS": _F.FOUND_ROWS,
    "ROW_COUNT": _F.ROW_COUNT,
    "NEXTVAL": _F.SEQUENCE,
    "LASTVAL": _F.SEQUENCE,
    "SETVAL": _F.SEQUENCE,
    "SLEEP": _F.SLEEP,
    "CONNECTION_ID": _F.CONNECTION_ID,
}
_SCAN_RE = re.compile(
    r"(?<![\w$@.`])(" + "|".join(_FUNC_FLAGS) + r")\s*\("  # 1: functions
    r"|(?<![\w$@.`])(?:NEXT|PREVIOUS)\s+VALUE\s+FOR\b()"  # 2: MariaDB sequences
    r"|(?<![\w$])(SQL_CALC_FOUND_ROWS)(?![\w$])"  # 3
    r"|(?<![@\w$?'\"`])(@(?!@)(?:`(?:[^`]|``)*`|\?|[\w$.]+))(\s*:=)?"  # 4: @var, 5: :=
    r"|(@@(?:session\.|local\.)?(?:warning_count|error_count))(?![\w$])"  # 6
    r"|(?<![\w$@])(`?PROCESSLIST`?)(?![\w$])"  # 7
    r"|(?<![\w$@.`])(KILL)(?![\w$`])",  # 8
    re.IGNORECASE,
)
_INTO_VARS_RE = re.compile(
    r"\bINTO\s+(@(?!@)(?:`(?:[^`]|``)*`|\?|[\w$.]+)(?:\s*,\s*@(?!@)(?:`(?:[^`]|``)*`|\?|[\w$.]+))*)",
    re.IGNORECASE,
)
_USER_VAR_RE = re.compile(r"(?<![@\w$?'\"`])@(?!@)(?:`(?:[^`]|``)*`|\?|[\w$.]+)")


def _scan_flags(dtext: str, set_targets: int = 0) -> StatementFlag:
    """Flags visible in the digest text.

    ``set_targets`` is the number of ``@var`` assignment targets of a SET
    statement (they are references, but not reads).
    """
    flags = _F.NONE
    refs = 0
    assigns = 0
    for m in _SCAN_RE.finditer(dtext):
        g = m.lastindex
        if g == 1:
            flags |= _FUNC_FLAGS[m.group(1).upper()]
        elif g == 2:
            flags |= _F.SEQUENCE
        elif g == 3:
            flags |= _F.SQL_CALC_FOUND_ROWS
        elif g in (4, 5):
            refs += 1
            if m.group(5):
                assigns += 1
        elif g == 6:
            flags |= _F.DIAGNOSTICS
        elif g == 7:
            flags |= _F.PROCESSLIST
        elif g == 8:
            flags |= _F.KILL
    into = _INTO_VARS_RE.search(dtext)
    if into:
        flags |= _F.SELECT_INTO | _F.USER_VARIABLE_ASSIGN
        assigns += len(_USER_VAR_RE.findall(into.group(1)))
    assigns += set_targets
    if assigns:
        flags |= _F.USER_VARIABLE_ASSIGN
    if refs > assigns:
        flags |= _F.USER_VARIABLE_READ
    return flags


# ---------------------------------------------------------------------------
# sqlglot helpers


def _parse(text: str) -> tuple[list[exp.Expression], str | None]:
    """Parse with sqlglot; return (statements, error text or None)."""
    try:
        trees = _DIALECT.parse(text)
    except _SQLGLOT_ERRORS as e:
        return [], f"{type(e).__name__}: {_short(str(e))}"
    return [t for t in trees if t is not None], None


def _short(msg: str) -> str:
    msg = re.sub(r"\x1b\[[0-9;]*m", "", msg)  # sqlglot underlines with ANSI codes
    msg = " ".join(msg.split())
    return msg if len(msg) <= 300 else msg[:297] + "..."


def _ast_tables(tree: exp.Expression) -> set[str]:
    """Tables a statement references: lower-case, ``schema.table`` when qualified.

    Not tables: CTE names, DUAL, table functions, and alias references
    (``DELETE a FROM t a``, ``FOR UPDATE OF a``), which sqlglot also
    represents as Table nodes.
    """
    tables = list(tree.find_all(exp.Table))
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    aliases = {t.alias.lower() for t in tables if t.alias}
    out: set[str] = set()
    for t in tables:
        name = t.name
        if not name or not isinstance(t.this, exp.Identifier):
            continue  # table functions, variables
        if t.find_ancestor(exp.Into) is not None or isinstance(t.parent, exp.Lock):
            continue
        db = t.db
        lname = name.lower()
        if not db and (lname in ctes or lname == "dual" or (not t.alias and lname in aliases)):
            continue
        out.add(f"{db.lower()}.{lname}" if db else lname)
    return out


def _ast_locking(tree: exp.Expression) -> bool:
    return next(tree.find_all(exp.Lock), None) is not None


_QUERY_TYPES = (exp.Query, exp.Values)
_WRITE_TYPES = (exp.Insert, exp.Update, exp.Delete, exp.Merge)
_DDL_TYPES = (exp.Create, exp.Drop, exp.Alter, exp.TruncateTable)


# ---------------------------------------------------------------------------
# Pre-parse rewrites (for sqlglot only)

_DML_MODIFIERS = re.compile(
    r"^(\s*(?:INSERT|REPLACE|UPDATE|DELETE)\b(?:\s*/\*\+[\s\S]*?\*/)?)"
    r"((?:\s+(?:LOW_PRIORITY|DELAYED|HIGH_PRIORITY|QUICK|IGNORE)\b)+)",
    re.IGNORECASE,
)
_REPLACE_KW = re.compile(r"^(\s*)REPLACE\b", re.IGNORECASE)
_SEQ_SYNTAX = re.compile(r"\b(NEXT|PREVIOUS)\s+VALUE\s+FOR\s+(" + _NAME + ")", re.IGNORECASE)

_TOKEN_SCAN = re.compile(
    _Q_SQ + "|" + _Q_DQ + "|" + _Q_BT
    + r"|/\*[\s\S]*?(?:\*/|\Z)|--(?=\s|\Z)[^\n]*|\#[^\n]*"
    + r"|([A-Za-z_][\w$]*)"  # 1: word
    + r"|(\()|(\))|(;)"  # 2, 3, 4
)
_INTO_STOP_WORDS = frozenset(
    ("FROM", "WHERE", "GROUP", "HAVING", "ORDER", "LIMIT", "FOR", "LOCK", "UNION",
     "WINDOW", "PROCEDURE", "EXCEPT", "INTERSECT")
)


def _cut_select_into(text: str) -> tuple[str, StatementFlag]:
    """Remove a top-level ``INTO OUTFILE/DUMPFILE/@vars`` clause from a SELECT."""
    depth = 0
    start = -1
    for m in _TOKEN_SCAN.finditer(text):
        g = m.lastindex
        if g == 2:
            depth += 1
        elif g == 3:
            depth -= 1
            if start >= 0 and depth < 0:
                return text[:start] + " " + text[m.start() :], _F.SELECT_INTO
        elif g == 4 and start >= 0:
            return text[:start] + " " + text[m.start() :], _F.SELECT_INTO
        elif g == 1 and depth == 0:
            word = m.group(1).upper()
            if start < 0:
                if word == "INTO":
                    start = m.start()
            elif word in _INTO_STOP_WORDS:
                return text[:start] + " " + text[m.start() :], _F.SELECT_INTO
    if start >= 0:
        return text[:start], _F.SELECT_INTO
    return text, _F.NONE


# ---------------------------------------------------------------------------
# The SET parser


_SET_SCOPES = {
    "GLOBAL": "global",
    "SESSION": "session",
    "LOCAL": "session",
    "PERSIST": "persist",
    "PERSIST_ONLY": "persist_only",
}
_SET_SPLIT = re.compile(
    _Q_SQ + "|" + _Q_DQ + "|" + _Q_BT
    + r"|/\*[\s\S]*?(?:\*/|\Z)|--(?=\s|\Z)[^\n]*|\#[^\n]*"
    + r"|(\()|(\))|(,)"
)
_SET_HEAD = re.compile(r"\s*SET\b", re.IGNORECASE)
_SET_ITEM = re.compile(
    r"\s*(?:(GLOBAL|SESSION|LOCAL|PERSIST_ONLY|PERSIST)\s+)?"  # 1: scope keyword
    r"(?:"
    r"(NAMES)\b\s*(.*)"  # 2, 3
    r"|(CHARACTER\s+SET|CHARSET)\b\s*(.*)"  # 4, 5
    r"|@@(?:(GLOBAL|SESSION|LOCAL|PERSIST_ONLY|PERSIST)\s*\.\s*)?"  # 6: @@scope.
    r"(`(?:[^`]|``)*`|[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)?)\s*:?=\s*(.*)"  # 7, 8
    r"|(@(?:`(?:[^`]|``)*`|'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\"|[\w$.]+))\s*:?=\s*(.*)"  # 9, 10
    r"|(`(?:[^`]|``)*`|[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)?)\s*:?=\s*(.*)"  # 11, 12
    r")\s*\Z",
    re.IGNORECASE | re.DOTALL,
)
_SET_TRANSACTION = re.compile(
    r"\s*SET\s+(?:(GLOBAL|SESSION|LOCAL)\s+)?TRANSACTION\b(.*)\Z", re.IGNORECASE | re.DOTALL
)
_TX_CHARACTERISTIC = re.compile(
    r"\s*(?:ISOLATION\s+LEVEL\s+(READ\s+UNCOMMITTED|READ\s+COMMITTED|REPEATABLE\s+READ|SERIALIZABLE)"
    r"|READ\s+(ONLY|WRITE))\s*\Z",
    re.IGNORECASE,
)
_NON_VARIABLE_SET = re.compile(
    r"\s*SET\s+(?:(PASSWORD|DEFAULT\s+ROLE|ROLE|STATEMENT|RESOURCE\s+GROUP)\b)", re.IGNORECASE
)


def _strip_comments(text: str) -> str:
    """Remove comments (not hints) from a statement, keeping everything else."""
    if "/*" not in text and "--" not in text and "#" not in text:
        return text
    return _COMMENT_STRIP.sub(lambda m: m.group(1) or " ", text)


_COMMENT_STRIP = re.compile(
    "(" + _Q_SQ + "|" + _Q_DQ + "|" + _Q_BT + r")"
    + r"|/\*(?!\+)[\s\S]*?(?:\*/|\Z)|--(?=\s|\Z)[^\n]*|\#[^\n]*"
)


def _unquote_ident(name: str) -> str:
    if name.startswith("`") and name.endswith("`") and len(name) >= 2:
        return name[1:-1].replace("``", "`")
    return name


def parse_set_statement(sql: str) -> tuple[SetVariable, ...] | None:
    """Parse ``SET ...`` into its assignments; ``None`` if not understood.

    Handles ``[GLOBAL|SESSION|LOCAL|PERSIST|PERSIST_ONLY] name = expr``,
    ``@@[scope.]name = expr``, ``@user = expr`` (``=`` or ``:=``), ``NAMES
    ... [COLLATE ...]``, ``CHARACTER SET``/``CHARSET``, ``TRANSACTION ...`` and
    comma-separated lists of these, with MySQL's rule that a scope keyword
    applies to the following assignments that have none.  Statements that set
    no variable (``SET PASSWORD``, ``SET ROLE``, ``SET STATEMENT ... FOR``,
    ``SET DEFAULT ROLE``, ``SET RESOURCE GROUP``) give ``None`` here; the
    classifier handles them itself.
    """
    text = _strip_comments(sql).strip().rstrip(";").rstrip()
    m = _SET_TRANSACTION.match(text)
    if m:
        return _parse_set_transaction(m.group(1), m.group(2))
    head = _SET_HEAD.match(text)
    if head is None or _NON_VARIABLE_SET.match(text):
        return None
    body = text[head.end() :]
    # split on top-level commas
    if "," not in body:
        items = [body]
    else:
        items = []
        depth = 0
        start = 0
        for t in _SET_SPLIT.finditer(body):
            g = t.lastindex
            if g == 1:
                depth += 1
            elif g == 2:
                depth -= 1
            elif g == 3 and depth == 0:
                items.append(body[start : t.start()])
                start = t.end()
        items.append(body[start:])
    out: list[SetVariable] = []
    sticky = "session"
    for item in items:
        im = _SET_ITEM.match(item)
        if im is None:
            return None
        if im.group(1):
            sticky = _SET_SCOPES[im.group(1).upper()]
        if im.group(2):
            value = im.group(3).strip()
            if not value:
                return None
            out.append(SetVariable("names", value, sticky))
        elif im.group(4):
            value = im.group(5).strip()
            if not value:
                return None
            out.append(SetVariable("charset", value, sticky))
        elif im.group(7):
            if im.group(1):
                return None  # "SESSION @@x = 1" is not valid
            scope = _SET_SCOPES[im.group(6).upper()] if im.group(6) else "session"
            value = im.group(8).strip()
            if not value:
                return None
            out.append(SetVariable(_unquote_ident(im.group(7)).lower(), value, scope))
        elif im.group(9):
            if im.group(1):
                return None
            value = im.group(10).strip()
            if not value:
                return None
            raw = im.group(9)
            name = raw[1:]
            if name[:1] in ("`", "'", '"'):
                name = name[1:-1]
            out.append(SetVariable("@" + name.lower(), value, "user"))
        else:
            value = im.group(12).strip()
            if not value:
                return None
            out.append(SetVariable(_unquote_ident(im.group(11)).lower(), value, sticky))
    return tuple(out)


_ISOLATION_VALUES = {
    "READUNCOMMITTED": "'READ-UNCOMMITTED'",
    "READCOMMITTED": "'READ-COMMITTED'",
    "REPEATABLEREAD": "'REPEATABLE-READ'",
    "SERIALIZABLE": "'SERIALIZABLE'",
}


def _parse_set_transaction(scope_kw: str | None, rest: str) -> tuple[SetVariable, ...] | None:
    scope = _SET_SCOPES[scope_kw.upper()] if scope_kw else "next_transaction"
    out: list[SetVariable] = []
    for part in rest.split(","):
        m = _TX_CHARACTERISTIC.match(part)
        if m is None:
            return None
        if m.group(1):
            level = "".join(m.group(1).upper().split())
            out.append(SetVariable("transaction_isolation", _ISOLATION_VALUES[level], scope))
        else:
            out.append(
                SetVariable("transaction_read_only", "ON" if m.group(2).upper() == "ONLY" else "OFF", scope)
            )
    return tuple(out) if out else None


def _set_flags(variables: tuple[SetVariable, ...] | None) -> StatementFlag:
    if variables is None:
        return _F.SET_SESSION_VARIABLE
    flags = _F.NONE
    for v in variables:
        if v.scope == "user":
            continue  # counted by _scan_flags as an assignment target
        if v.scope in ("global", "persist", "persist_only"):
            flags |= _F.SET_GLOBAL_VARIABLE
            continue
        flags |= _F.SET_SESSION_VARIABLE
        if v.name == "autocommit":
            flags |= _F.SET_AUTOCOMMIT
        elif v.name == "sql_log_bin":
            flags |= _F.SET_SQL_LOG_BIN
    return flags


# ---------------------------------------------------------------------------
# Family handlers.  Each takes (text, dtext, keyword): the statement text with
# executable comments unwrapped, its digest text, and the upper-case first
# keyword; and returns a Classification without the digest-scan flags (added
# by the caller).

_Handler = Callable[[str, str, str], Classification]


def _unparsable(dtext: str, command: str, error: str, flags: StatementFlag = _F.NONE) -> Classification:
    """The safe default: a WRITE, with whatever the digest text tells.

    Tables come from a best-effort scan (names after FROM, JOIN, INTO, TABLE
    and a leading UPDATE), so that ``match_tables`` rules still see them.
    """
    tables = {_norm_name(m.group(1)) for m in _FALLBACK_TABLES.finditer(dtext)} - _NOT_TABLES
    if _FALLBACK_LOCKING.search(dtext):
        flags |= _F.LOCKING
    return _make(_K.WRITE, flags, tables, command, is_unparsable=True, parse_error=error)


_FALLBACK_TABLES = re.compile(
    r"(?:\b(?:FROM|JOIN|INTO|TABLE)|^\s*UPDATE)\s+(" + _NAME + ")", re.IGNORECASE
)
_NOT_TABLES = frozenset(("dual", "where", "select", "set", "values", "value", "lateral", "outfile", "dumpfile"))
_FALLBACK_LOCKING = re.compile(
    r"\bFOR\s+(?:UPDATE|SHARE)\b|\bLOCK\s+IN\s+SHARE\s+MODE\b", re.IGNORECASE
)


def _classify_tree(tree: exp.Expression) -> tuple[StatementKind, StatementFlag] | None:
    """Kind and flags of one sqlglot statement tree; None if not a statement we know."""
    if isinstance(tree, _QUERY_TYPES):
        if _ast_locking(tree):
            return _K.LOCKING_READ, _F.LOCKING
        return _K.READ, _F.NONE
    if isinstance(tree, _WRITE_TYPES):
        return _K.WRITE, (_F.LOCKING if _ast_locking(tree) else _F.NONE)
    if isinstance(tree, _DDL_TYPES):
        return _K.DDL, _F.IMPLICIT_COMMIT
    if isinstance(tree, exp.Describe):
        return _K.UTILITY, _F.NONE
    if isinstance(tree, exp.Set):
        return _K.SESSION, _F.NONE
    if isinstance(tree, (exp.Transaction, exp.Commit, exp.Rollback)):
        return _K.TRANSACTION, _F.NONE
    return None


def _sqlglot_family(text: str, dtext: str, keyword: str, *, is_query: bool) -> Classification:
    """SELECT-like and DML statements: sqlglot decides."""
    command = "SELECT" if keyword in ("WITH", "TABLE", "VALUES", "(") else keyword
    extra = _F.NONE
    ptext = text
    if is_query and _INTO_WORD.search(dtext):
        ptext, extra = _cut_select_into(ptext)
    else:
        ptext = _DML_MODIFIERS.sub(r"\1", _strip_comments(ptext), count=1)
        if keyword == "REPLACE":
            ptext = _REPLACE_KW.sub(r"\1INSERT", ptext, count=1)
    if "VALUE" in dtext.upper():
        ptext = _SEQ_SYNTAX.sub(
            lambda m: ("NEXTVAL(" if m.group(1).upper() == "NEXT" else "LASTVAL(") + m.group(2) + ")",
            ptext,
        )
    trees, error = _parse(ptext)
    if error is not None or not trees:
        return _unparsable(dtext, command, error or "sqlglot returned no statement", extra)
    kind = _K.READ
    flags = extra
    tables: set[str] = set()
    for tree in trees:
        got = _classify_tree(tree)
        if got is None:
            return _unparsable(dtext, command, f"not a statement: sqlglot parsed it as {type(tree).__name__}", extra)
        k, f = got
        kind = max(kind, k)
        flags |= f
        tables |= _ast_tables(tree)
        if isinstance(tree, exp.Select) and tree.args.get("into") is not None:
            flags |= _F.SELECT_INTO
    if keyword == "WITH" and len(trees) == 1:
        command = _COMMAND_OF_TREE.get(type(trees[0]), command)
    return _make(kind, flags, tables, command)


_COMMAND_OF_TREE = {exp.Update: "UPDATE", exp.Delete: "DELETE", exp.Insert: "INSERT"}


_INTO_WORD = re.compile(r"\bINTO\b", re.IGNORECASE)


def _query(text: str, dtext: str, keyword: str) -> Classification:
    return _sqlglot_family(text, dtext, keyword, is_query=True)


def _dml(text: str, dtext: str, keyword: str) -> Classification:
    return _sqlglot_family(text, dtext, keyword, is_query=False)


_LOAD_TABLE = re.compile(r"\bINTO\s+TABLE\s+(" + _NAME + ")", re.IGNORECASE)


def _load(text: str, dtext: str, keyword: str) -> Classification:
    if re.match(r"LOAD\s+INDEX\b", dtext, re.IGNORECASE):
        return _make(_K.UTILITY, _F.IMPLICIT_COMMIT, command="LOAD")
    if re.match(r"LOAD\s+(?:DATA|XML)\b", dtext, re.IGNORECASE):
        m = _LOAD_TABLE.search(dtext)
        return _make(_K.WRITE, _F.NONE, {_norm_name(m.group(1))} if m else set(), "LOAD")
    return _unparsable(dtext, "LOAD", "unknown LOAD statement")


_ACCOUNT_DDL = re.compile(
    r"(?:(?:CREATE|ALTER|DROP|RENAME)\s+(?:USER|ROLE)|GRANT|REVOKE)\b", re.IGNORECASE
)
_DDL_OBJECT = re.compile(
    r"(?:CREATE|ALTER|DROP)\s+(?:OR\s+REPLACE\s+)?(?:TEMPORARY\s+)?"
    r"(?:(?:UNIQUE|FULLTEXT|SPATIAL)\s+)?"
    r"(?:ALGORITHM\s*=\s*\w+\s+)?(?:DEFINER\s*=\s*\S+\s+)?(?:SQL\s+SECURITY\s+\w+\s+)?"
    r"(?:ONLINE\s+|OFFLINE\s+|IGNORE\s+)?"
    r"(TABLE|VIEW|INDEX|TRIGGER|SEQUENCE|DATABASE|SCHEMA|PROCEDURE|FUNCTION|EVENT|SERVER|TABLESPACE|LOGFILE)\b",
    re.IGNORECASE,
)
_DDL_TABLE_LIST = re.compile(
    r"\b(?:TABLE|VIEW|SEQUENCE)\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?("
    + _NAME + r"(?:\s*,\s*" + _NAME + r")*)",
    re.IGNORECASE,
)
_DDL_ON_TABLE = re.compile(r"\bON\s+(" + _NAME + ")", re.IGNORECASE)
_RENAME_PAIRS = re.compile(r"(" + _NAME + r")\s+TO\s+(" + _NAME + ")", re.IGNORECASE)
_TEMPORARY = re.compile(r"(CREATE|DROP)\s+TEMPORARY\s+TABLE\b", re.IGNORECASE)


def _ddl(text: str, dtext: str, keyword: str) -> Classification:
    if keyword == "DROP" and re.match(r"DROP\s+PREPARE\b", dtext, re.IGNORECASE):
        return _make(_K.SESSION, _F.DEALLOCATE, command="DEALLOCATE")
    if _ACCOUNT_DDL.match(dtext):
        return _make(_K.DDL, _F.IMPLICIT_COMMIT, command=keyword)
    flags = _F.IMPLICIT_COMMIT
    tm = _TEMPORARY.match(dtext)
    if tm:
        flags = _F.CREATE_TEMPORARY_TABLE if tm.group(1).upper() == "CREATE" else _F.DROP_TEMPORARY_TABLE
    if keyword == "RENAME":
        tables: set[str] = set()
        if re.match(r"RENAME\s+TABLES?\b", dtext, re.IGNORECASE):
            for m in _RENAME_PAIRS.finditer(dtext, re.match(r"RENAME\s+TABLES?", dtext, re.I).end()):  # type: ignore[union-attr]
                tables.add(_norm_name(m.group(1)))
                tables.add(_norm_name(m.group(2)))
        return _make(_K.DDL, flags, tables, keyword)
    if keyword == "TRUNCATE":
        m = re.match(r"TRUNCATE\s+(?:TABLE\s+)?(" + _NAME + ")", dtext, re.IGNORECASE)
        return _make(_K.DDL, flags, {_norm_name(m.group(1))} if m else set(), keyword)
    om = _DDL_OBJECT.match(dtext)
    obj = om.group(1).upper() if om else ""
    error: str | None = None
    tables = set()
    if obj == "INDEX" and keyword == "DROP":
        tables = _ddl_tables_by_regex(dtext, obj)  # sqlglot reports the index as a table
    elif obj in ("TABLE", "VIEW", "INDEX"):
        trees, error = _parse(text)
        if error is None and trees and all(isinstance(t, _DDL_TYPES) for t in trees):
            for tree in trees:
                tables |= _ast_tables(tree)
        else:
            if error is None:
                error = "sqlglot parsed it as " + ", ".join(type(t).__name__ for t in trees)
            tables = _ddl_tables_by_regex(dtext, obj)
    elif obj in ("TRIGGER", "SEQUENCE"):
        tables = _ddl_tables_by_regex(dtext, obj)
    return _make(_K.DDL, flags, tables, keyword, parse_error=error)


def _ddl_tables_by_regex(dtext: str, obj: str) -> set[str]:
    if obj in ("INDEX", "TRIGGER"):
        m = _DDL_ON_TABLE.search(dtext)
        return {_norm_name(m.group(1))} if m else set()
    m = _DDL_TABLE_LIST.search(dtext)
    return _names_in(m.group(1)) if m else set()


def _set(text: str, dtext: str, keyword: str) -> Classification:
    special = _NON_VARIABLE_SET.match(_strip_comments(text))
    if special:
        what = " ".join(special.group(1).upper().split())
        if what == "STATEMENT":
            return _set_statement(text, dtext)
        if what == "PASSWORD" or what == "DEFAULT ROLE":
            return _make(_K.DDL, _F.IMPLICIT_COMMIT, command="SET")
        # SET ROLE / SET RESOURCE GROUP: session state we do not model
        return _make(_K.SESSION, _F.SET_SESSION_VARIABLE, command="SET", set_variables=None)
    variables = parse_set_statement(text)
    trees, error = _parse(text)
    tables: set[str] = set()
    for tree in trees:
        tables |= _ast_tables(tree)
    if variables is None and error is not None:
        # nobody understood it: a write, and the session state is unknown
        return replace(_unparsable(dtext, "SET", error, _F.SET_SESSION_VARIABLE), set_variables=None)
    if error is None and not all(isinstance(t, exp.Set) for t in trees):
        error = "sqlglot parsed it as " + ", ".join(type(t).__name__ for t in trees)
    flags = _set_flags(variables)
    if variables and any(v.scope == "user" for v in variables):
        flags |= _F.USER_VARIABLE_ASSIGN
    return _make(_K.SESSION, flags, tables, "SET", set_variables=variables, parse_error=error)


def _set_statement(text: str, dtext: str) -> Classification:
    """MariaDB ``SET STATEMENT var=value [, ...] FOR <statement>``: the inner statement."""
    for m in _TOKEN_SCAN.finditer(text):
        if m.lastindex == 1 and m.group(1).upper() == "FOR":
            inner = _classify_single(text[m.end() :])
            return replace(inner, command=inner.command or "SET")
    return _unparsable(dtext, "SET", "SET STATEMENT without FOR")


def _use(text: str, dtext: str, keyword: str) -> Classification:
    m = re.match(r"USE\s+(" + _NAME_PART + r")\s*\Z", dtext, re.IGNORECASE)
    if m is None:
        return _unparsable(dtext, "USE", "USE without a schema name")
    return _make(_K.SESSION, _F.CHANGE_SCHEMA, command="USE", schema=_norm_name(m.group(1)))


def _transaction(text: str, dtext: str, keyword: str) -> Classification:
    d = dtext.upper()
    if keyword == "BEGIN":
        if re.match(r"BEGIN(?:\s+WORK)?\s*\Z", d):
            return _make(_K.TRANSACTION, _F.IMPLICIT_COMMIT, command="BEGIN")
        return _unparsable(dtext, "BEGIN", "BEGIN followed by something other than WORK")
    if keyword == "START":
        if re.match(r"START\s+TRANSACTION\b", d):
            flags = _F.IMPLICIT_COMMIT
            if re.search(r"\bREAD\s+ONLY\b", d):
                flags |= _F.START_TRANSACTION_READ_ONLY | _F.READ_ONLY_TRANSACTION
            return _make(_K.TRANSACTION, flags, command="START TRANSACTION")
        # START SLAVE / REPLICA / GROUP_REPLICATION
        return _make(_K.UTILITY, _F.IMPLICIT_COMMIT, command="START")
    if keyword == "COMMIT":
        return _make(_K.TRANSACTION, command="COMMIT")
    if keyword == "ROLLBACK":
        if re.match(r"ROLLBACK(?:\s+WORK)?\s+TO\b", d):
            return _make(_K.TRANSACTION, _F.SAVEPOINT, command="ROLLBACK")
        return _make(_K.TRANSACTION, command="ROLLBACK")
    if keyword in ("SAVEPOINT", "RELEASE"):
        if keyword == "RELEASE" and not re.match(r"RELEASE\s+SAVEPOINT\b", d):
            return _unparsable(dtext, keyword, "RELEASE without SAVEPOINT")
        return _make(_K.TRANSACTION, _F.SAVEPOINT, command=keyword)
    if keyword == "XA":
        return _make(_K.TRANSACTION, _F.XA, command="XA")
    if keyword == "LOCK":
        if re.match(r"LOCK\s+INSTANCE\b", d):
            return _make(_K.TRANSACTION, _F.LOCK_TABLES, command="LOCK")
        m = re.match(r"LOCK\s+TABLES?\s+(.*)\Z", dtext, re.IGNORECASE | re.DOTALL)
        if m is None:
            return _unparsable(dtext, "LOCK", "LOCK without TABLES")
        tables = set()
        for item in m.group(1).split(","):
            nm = re.match(r"\s*(" + _NAME + ")", item)
            if nm:
                tables.add(_norm_name(nm.group(1)))
        return _make(_K.TRANSACTION, _F.LOCK_TABLES | _F.IMPLICIT_COMMIT, tables, "LOCK")
    if keyword == "UNLOCK":
        if re.match(r"UNLOCK\s+(?:TABLES?|INSTANCE)\s*\Z", d):
            return _make(_K.TRANSACTION, _F.UNLOCK_TABLES | _F.IMPLICIT_COMMIT, command="UNLOCK")
        return _unparsable(dtext, "UNLOCK", "UNLOCK without TABLES")
    raise AssertionError(keyword)  # the dispatch table only sends the keywords above


def _prepared(text: str, dtext: str, keyword: str) -> Classification:
    if keyword == "PREPARE":
        return _make(_K.SESSION, _F.TEXT_PREPARE, command="PREPARE")
    if keyword == "EXECUTE":
        return _make(_K.UNKNOWN, _F.TEXT_EXECUTE, command="EXECUTE")
    if re.match(r"DEALLOCATE\s+PREPARE\b", dtext, re.IGNORECASE):
        return _make(_K.SESSION, _F.DEALLOCATE, command="DEALLOCATE")
    return _unparsable(dtext, keyword, "DEALLOCATE without PREPARE")


_SHOW_TABLE = re.compile(
    r"SHOW\s+(?:(?:FULL|EXTENDED)\s+)*(?:COLUMNS|FIELDS|INDEX|INDEXES|KEYS)\s+(?:FROM|IN)\s+("
    + _NAME + r")(?:\s+(?:FROM|IN)\s+(" + _NAME_PART + "))?"
    r"|SHOW\s+CREATE\s+(?:TABLE|VIEW|SEQUENCE)\s+(" + _NAME + ")",
    re.IGNORECASE,
)
_SHOW_DIAGNOSTICS = re.compile(
    r"SHOW\s+(?:WARNINGS|ERRORS|COUNT\s*\(\s*\*\s*\)\s+(?:WARNINGS|ERRORS))\b", re.IGNORECASE
)


def _show(text: str, dtext: str, keyword: str) -> Classification:
    flags = _F.DIAGNOSTICS if _SHOW_DIAGNOSTICS.match(dtext) else _F.NONE
    tables: set[str] = set()
    m = _SHOW_TABLE.match(dtext)
    if m:
        if m.group(1):
            name = _norm_name(m.group(1))
            if m.group(2) and "." not in name:
                name = _norm_name(m.group(2)) + "." + name
            tables.add(name)
        else:
            tables.add(_norm_name(m.group(3)))
    return _make(_K.UTILITY, flags, tables, "SHOW")


_EXPLAIN_STMT = re.compile(
    r"\s*(?:EXPLAIN|DESCRIBE|DESC|ANALYZE)\b((?:\s+(?:ANALYZE|EXTENDED|PARTITIONS|FORMAT\s*=\s*\w+))*)"
    r"\s*(?=(?:SELECT|WITH|TABLE|VALUES|INSERT|REPLACE|UPDATE|DELETE)\b|\()",
    re.IGNORECASE,
)
_EXPLAIN_TABLE = re.compile(r"(?:EXPLAIN|DESCRIBE|DESC)\s+(" + _NAME + r")(?:\s+\S+)?\s*\Z", re.IGNORECASE)


def _explain(text: str, dtext: str, keyword: str) -> Classification:
    """EXPLAIN/DESCRIBE: a utility.  ``EXPLAIN ANALYZE`` and MariaDB ``ANALYZE
    <statement>`` execute the statement, so a write stays a write (and keeps
    its flags)."""
    stripped = _strip_comments(text)
    m = _EXPLAIN_STMT.match(stripped)
    if m and keyword == "ANALYZE" and re.match(r"ANALYZE\s+TABLES?\b", dtext, re.IGNORECASE):
        m = None  # ANALYZE TABLE t: the maintenance statement, not ANALYZE of "TABLE t"
    if m:
        executes = keyword == "ANALYZE" or "ANALYZE" in m.group(1).upper()
        inner = _classify_single(stripped[m.end() :])
        if executes:
            kind = inner.kind if inner.kind > _K.UTILITY else _K.UTILITY
            flags = inner.flags
        else:
            kind = _K.UTILITY
            flags = inner.flags & _F.LOCKING
        return _make(kind, flags, inner.tables, keyword, parse_error=inner.parse_error)
    if keyword == "ANALYZE":
        return _utility(text, dtext, keyword)
    m2 = _EXPLAIN_TABLE.match(dtext)
    if m2:
        return _make(_K.UTILITY, _F.NONE, {_norm_name(m2.group(1))}, keyword)
    return _make(_K.UTILITY, _F.NONE, set(), keyword)


_TABLE_LIST_AFTER = re.compile(
    r"\bTABLES?\s+(?!WITH\b|FOR\b)(" + _NAME + r"(?:\s*,\s*" + _NAME + r")*)", re.IGNORECASE
)
_ADMIN_TABLE_CMDS = frozenset(("ANALYZE", "CHECK", "CHECKSUM", "OPTIMIZE", "REPAIR", "FLUSH"))
_IMPLICIT_COMMIT_UTILS = frozenset(
    ("ANALYZE", "CHECK", "OPTIMIZE", "REPAIR", "FLUSH", "RESET", "CACHE", "INSTALL", "UNINSTALL",
     "CHANGE", "STOP", "PURGE")
)


def _utility(text: str, dtext: str, keyword: str) -> Classification:
    flags = _F.IMPLICIT_COMMIT if keyword in _IMPLICIT_COMMIT_UTILS else _F.NONE
    tables: set[str] = set()
    d = dtext.upper()
    if keyword in _ADMIN_TABLE_CMDS:
        m = _TABLE_LIST_AFTER.search(dtext)
        if m:
            tables = _names_in(m.group(1))
        if keyword == "FLUSH" and re.search(r"\bWITH\s+READ\s+LOCK\b|\bFOR\s+EXPORT\b", d):
            flags |= _F.LOCK_TABLES
    elif keyword == "BACKUP":
        if re.match(r"BACKUP\s+LOCK\b", d):
            flags |= _F.LOCK_TABLES
            m = re.match(r"BACKUP\s+LOCK\s+(" + _NAME + ")", dtext, re.IGNORECASE)
            if m:
                tables.add(_norm_name(m.group(1)))
        elif re.match(r"BACKUP\s+UNLOCK\b", d):
            flags |= _F.UNLOCK_TABLES
    elif keyword == "GET" and re.match(r"GET\s+(?:CURRENT\s+|STACKED\s+)?DIAGNOSTICS\b", d):
        flags |= _F.DIAGNOSTICS
    elif keyword == "HANDLER":
        flags |= _F.HANDLER
        m = re.match(r"HANDLER\s+(" + _NAME + ")", dtext, re.IGNORECASE)
        if m:
            tables.add(_norm_name(m.group(1)))
    elif keyword == "DO":
        trees, error = _parse("SELECT " + _strip_comments(text).lstrip()[2:])
        for tree in trees:
            tables |= _ast_tables(tree)
        return _make(_K.UTILITY, flags, tables, keyword, parse_error=error)
    return _make(_K.UTILITY, flags, tables, keyword)


def _call(text: str, dtext: str, keyword: str) -> Classification:
    # OUT/INOUT parameters assign the variables passed in: a @var argument may
    # be read and/or assigned.
    flags = _F.NONE
    if _USER_VAR_RE.search(dtext):
        flags = _F.USER_VARIABLE_ASSIGN | _F.USER_VARIABLE_READ
    return _make(_K.UTILITY, flags, set(), "CALL")


def _other(text: str, dtext: str, keyword: str) -> Classification:
    """An unknown first keyword: let sqlglot try, else unparsable."""
    trees, error = _parse(text)
    if error is not None or not trees:
        return _unparsable(dtext, keyword, error or "sqlglot returned no statement")
    kind = _K.READ
    flags = _F.NONE
    tables: set[str] = set()
    for tree in trees:
        got = _classify_tree(tree)
        if got is None:
            return _unparsable(dtext, keyword, f"not a statement: sqlglot parsed it as {type(tree).__name__}")
        kind = max(kind, got[0])
        flags |= got[1]
        tables |= _ast_tables(tree)
    return _make(kind, flags, tables, keyword)


_HANDLERS: dict[str, _Handler] = {
    "SELECT": _query, "WITH": _query, "TABLE": _query, "VALUES": _query,
    "INSERT": _dml, "UPDATE": _dml, "DELETE": _dml, "REPLACE": _dml,
    "LOAD": _load,
    "CREATE": _ddl, "ALTER": _ddl, "DROP": _ddl, "TRUNCATE": _ddl, "RENAME": _ddl,
    "GRANT": _ddl, "REVOKE": _ddl,
    "SET": _set,
    "USE": _use,
    "BEGIN": _transaction, "START": _transaction, "COMMIT": _transaction, "ROLLBACK": _transaction,
    "SAVEPOINT": _transaction, "RELEASE": _transaction, "XA": _transaction,
    "LOCK": _transaction, "UNLOCK": _transaction,
    "PREPARE": _prepared, "EXECUTE": _prepared, "DEALLOCATE": _prepared,
    "SHOW": _show,
    "EXPLAIN": _explain, "DESCRIBE": _explain, "DESC": _explain, "ANALYZE": _explain,
    "CALL": _call,
    **{
        k: _utility
        for k in (
            "DO", "HANDLER", "KILL", "HELP", "CHECK", "CHECKSUM", "OPTIMIZE", "REPAIR",
            "FLUSH", "RESET", "PURGE", "CACHE", "INSTALL", "UNINSTALL", "SHUTDOWN",
            "RESTART", "BINLOG", "CHANGE", "STOP", "CLONE", "GET", "SIGNAL", "RESIGNAL",
            "BACKUP", "IMPORT",
        )
    },
}

_EMPTY = _make(_K.UNKNOWN, command="")


#: Statements longer than this (characters) are not given to sqlglot as they are: it takes about
#: a microsecond a character, on the event loop (a 3 MB bulk INSERT: 2.4 s, every time, as a
#: digest capped at query_digests_max_query_length is never remembered). A query or DML statement
#: is classified by its digest instead, whose literals and value lists are folded (``IN (?,...)``,
#: ``VALUES (?,...),...``): what it reads, writes, locks or calls is all still there.
LONG_STATEMENT = 32 * 1024
#: Beyond this, even the digest would cost the event loop too much (about 20 ns a character, up to
#: max_allowed_packet, 64 MiB): such a statement is a WRITE judged by its head alone, for the writer.
HUGE_STATEMENT = 4 * 1024 * 1024
_BY_DIGEST = frozenset(("(", "SELECT", "WITH", "TABLE", "VALUES", "INSERT", "REPLACE", "UPDATE", "DELETE"))


def _digest_as_sql(dtext: str) -> str:
    """A digest text sqlglot can parse: folded lists back to one placeholder."""
    return dtext.replace("?,...", "?").replace("),...", ")")


def _classify_single(stmt: str) -> Classification:
    """Classify one statement (no top-level ``;`` inside)."""
    if len(stmt) > HUGE_STATEMENT:
        head = digest_text(unwrap_executable_comments(stmt[:LONG_STATEMENT]))
        m = _FIRST_WORD.match(head)
        return _unparsable(head, m.group(1).upper() if m else "",
                           f"longer than {HUGE_STATEMENT} characters: judged by its head, not parsed")
    text = unwrap_executable_comments(stmt)
    dtext = digest_text(text)
    if not dtext:
        return _EMPTY
    if dtext[0] == "(":
        keyword = "("
        handler: _Handler = _query
    else:
        m = _FIRST_WORD.match(dtext)
        if m is None:
            return _unparsable(dtext, "", "does not start with a keyword")
        keyword = m.group(1).upper()
        handler = _HANDLERS.get(keyword, _other)
    if len(text) > LONG_STATEMENT and keyword in _BY_DIGEST:
        text = _digest_as_sql(dtext)
        if len(text) > LONG_STATEMENT:  # nothing folded (a list of names...): its head, unparsed
            return _unparsable(dtext[:LONG_STATEMENT], keyword,
                               f"longer than {LONG_STATEMENT} characters even as a digest: judged by its head")
    result = handler(text, dtext, keyword)
    set_targets = 0
    if result.set_variables:  # @var targets of SET are references, not reads
        set_targets = sum(1 for v in result.set_variables if v.scope == "user")
    flags = result.flags | _scan_flags(dtext, set_targets)
    if flags != result.flags:
        result = replace(result, flags=flags)
    return result


def classify_statement(sql: str) -> Classification:
    """Classify a statement text (single or multi-statement), uncached.

    Never raises for any input string; see :class:`Classification`.
    """
    pieces = split_statements(sql)
    if len(pieces) <= 1:
        return _classify_single(pieces[0] if pieces else "")
    results = [r for r in map(_classify_single, pieces) if r is not _EMPTY]
    if not results:
        return _EMPTY
    if len(results) == 1:
        return results[0]
    kind = max(r.kind for r in results)
    flags = _F.MULTI_STATEMENT
    tables: set[str] = set()
    set_vars: list[SetVariable] | None = []
    schema = None
    error = None
    for r in results:
        flags |= r.flags
        tables |= r.tables
        if r.set_variables is None:
            set_vars = None
        elif set_vars is not None:
            set_vars.extend(r.set_variables)
        schema = r.schema or schema
        error = error or r.parse_error
    return _make(
        kind,
        flags,
        tables,
        results[0].command,
        set_variables=None if set_vars is None else tuple(set_vars),
        schema=schema,
        statement_count=len(results),
        is_unparsable=any(r.is_unparsable for r in results),
        parse_error=error,
    )


def _fresh_set_variables(sql: str) -> tuple[SetVariable, ...] | None:
    """``set_variables`` of ``sql`` as :func:`classify_statement` computes them,
    without sqlglot (for cache hits)."""
    pieces = split_statements(sql)
    if len(pieces) == 1:
        return _set_variables_of_piece(pieces[0])
    out: list[SetVariable] = []
    for piece in pieces:
        got = _set_variables_of_piece(piece)
        if got is None:
            return None
        out.extend(got)
    return tuple(out)


def _set_variables_of_piece(piece: str) -> tuple[SetVariable, ...] | None:
    text = unwrap_executable_comments(piece)
    stripped = _strip_comments(text).lstrip()
    if not _SET_HEAD.match(stripped):
        return ()
    special = _NON_VARIABLE_SET.match(stripped)
    if special:
        what = " ".join(special.group(1).upper().split())
        if what == "STATEMENT":
            return ()
        return () if what in ("PASSWORD", "DEFAULT ROLE") else None
    return parse_set_statement(text)


def _with_set_variables(c: Classification, sv: tuple[SetVariable, ...] | None) -> Classification:
    # positional construction: several times faster than dataclasses.replace
    return Classification(
        c.kind, c.flags, c.tables, c.table_keys, c.command, sv, c.schema,
        c.statement_count, c.is_unparsable, c.parse_error,
    )


# ---------------------------------------------------------------------------
# The cache


@dataclass(frozen=True, slots=True)
class ClassifierStatistics:
    """A snapshot of a :class:`Classifier`'s counters."""

    hits: int
    misses: int
    size: int
    capacity: int
    evictions: int
    unparsable: int
    internal_errors: int


class Classifier:
    """Classify statements, caching per digest hash in a bounded LRU.

    A hit costs the digest (when not given) and a dict lookup; only statements
    that assign variables re-extract their values (see the module docstring).
    Not thread-safe (one per worker / event loop).
    """

    __slots__ = ("_cache", "_capacity", "_hits", "_misses", "_evictions", "_unparsable", "_internal_errors")

    def __init__(self, cache_size: int = 10000) -> None:
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self._cache: OrderedDict[int, Classification] = OrderedDict()
        self._capacity = cache_size
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._unparsable = 0
        self._internal_errors = 0

    def __repr__(self) -> str:
        return (
            f"<Classifier size={len(self._cache)}/{self._capacity} hits={self._hits} "
            f"misses={self._misses} evictions={self._evictions}>"
        )

    def classify(self, sql: str, digest_hash: int | None = None, *, remember: bool = True) -> Classification:
        """Classify ``sql``; ``digest_hash`` is its digest hash if already known.

        ``remember=False``: the digest does not stand for the whole statement (a digest capped
        at ``query_digests_max_query_length``), so it is classified afresh and not remembered.
        Never raises: a statement nothing understands is a WRITE with
        ``is_unparsable`` set.
        """
        if not remember:
            digest_hash = -1  # not a 64-bit digest: never found, and not stored below
        elif digest_hash is None:
            digest_hash = digest(sql)[1]
        cache = self._cache
        c = cache.get(digest_hash)
        if c is not None:
            cache.move_to_end(digest_hash)
            self._hits += 1
            sv = c.set_variables
            if sv is None or sv:
                c = _with_set_variables(c, _fresh_set_variables(sql))
            return c
        self._misses += 1
        try:
            c = classify_statement(sql)
        except Exception as e:  # noqa: BLE001 - a classifier bug must not kill the session
            # Not silent: counted, logged, and kept on the classification.
            self._internal_errors += 1
            _log.exception("internal classifier error for digest 0x%016X", digest_hash)
            c = _make(
                _K.WRITE, command="", is_unparsable=True,
                parse_error=f"internal classifier error: {type(e).__name__}: {e}",
            )
        if c.is_unparsable:
            self._unparsable += 1
        if digest_hash < 0:
            return c
        cache[digest_hash] = c
        if len(cache) > self._capacity:
            cache.popitem(last=False)
            self._evictions += 1
        return c

    def count_hit(self) -> None:
        """A caller reused a classification this cache gave it (a session's own memo)."""
        self._hits += 1

    @staticmethod
    def reusable(c: Classification) -> bool:
        """Whether ``c`` holds for every statement with the same digest (``classify`` re-reads
        the assigned values of a SET from each statement's text)."""
        return c.set_variables is not None and not c.set_variables

    def statistics(self) -> ClassifierStatistics:
        return ClassifierStatistics(
            hits=self._hits,
            misses=self._misses,
            size=len(self._cache),
            capacity=self._capacity,
            evictions=self._evictions,
            unparsable=self._unparsable,
            internal_errors=self._internal_errors,
        )

    def clear(self) -> None:
        """Drop all cached classifications (counters are kept)."""
        self._cache.clear()
