"""sqlglot: parsing a statement (with the rewrites sqlglot needs first) and reading its tree.

``_parse`` is the one call into sqlglot (its errors, including the internal ones seen when
fuzzing, become an error text); ``_ast_tables``, ``_ast_locking`` and ``_classify_tree`` read
the tables, the locking clauses, and the kind of a parsed statement. The rewrites (DML
modifiers, ``REPLACE``, MariaDB ``NEXT VALUE FOR``, ``SELECT ... INTO``) are for the parse only.
"""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from .classification import StatementFlag, StatementKind, _F, _K
from .lexical import _NAME, _TOKEN_SCAN

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
