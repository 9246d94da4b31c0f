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

Where the parts are
-------------------
This module holds the dispatch on the first keyword (:func:`classify_statement`), the
statement families that sqlglot parses or that classify an inner statement (SELECT and DML,
DDL, SET, EXPLAIN, utilities, unknown keywords), and the cache (:class:`Classifier`). The rest
is in :mod:`myrouter.routing.classify`: the result types (``classification``), the lexical
pre-scan (``lexical``), sqlglot parsing and tree reading (``sqlglot_tree``), the SET parser
(``set_statement``) and the families classified from their keywords alone
(``keyword_statements``). Every sqlglot parse goes through this module's ``_parse``.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Callable

from sqlglot import exp

from .classify.classification import (
    Classification,
    SetVariable,
    StatementFlag,
    StatementKind,
    _F,
    _K,
    _make,
    _with_set_variables,
)
from .classify.keyword_statements import _call, _load, _prepared, _show, _transaction, _use
from .classify.lexical import (
    _FIRST_WORD,
    _NAME,
    _TOKEN_SCAN,
    _names_in,
    _norm_name,
    _scan_flags,
    _strip_comments,
    _unparsable,
    unwrap_executable_comments,
)
from .classify.set_statement import _NON_VARIABLE_SET, _fresh_set_variables, _set_flags, parse_set_statement
from .classify.sqlglot_tree import (
    _DDL_TYPES,
    _DIALECT,  # noqa: F401 - the dialect whose parse every ``_parse`` calls (tests replace it)
    _DML_MODIFIERS,
    _REPLACE_KW,
    _SEQ_SYNTAX,
    _ast_tables,
    _classify_tree,
    _cut_select_into,
    _parse,
)
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


# ---------------------------------------------------------------------------
# Family handlers.  Each takes (text, dtext, keyword): the statement text with
# executable comments unwrapped, its digest text, and the upper-case first
# keyword; and returns a Classification without the digest-scan flags (added
# by the caller).  The families classified from their keywords alone are in
# .classify.keyword_statements.

_Handler = Callable[[str, str, str], Classification]


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
