"""SQL text helpers for the admin interface: split statements, substitute @@variables,
translate MySQL syntax to SQLite with sqlglot.

Pure functions (no SQLite connection), unit-tested in ``tests/admin``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from myrouter.routing.digest import digest_text

log = logging.getLogger("myrouter.admin")

__all__ = ["split_statements", "substitute_variables", "translate", "sql_literal", "UnknownVariable"]


class UnknownVariable(KeyError):
    """``@@name`` that the admin interface does not know."""


def _skip_quoted(sql: str, i: int) -> int:
    """Index just past the quoted string/identifier starting at ``sql[i]`` (or the end if unterminated)."""
    quote = sql[i]
    n = len(sql)
    i += 1
    while i < n:
        ch = sql[i]
        if ch == "\\" and quote != "`":
            i += 2
            continue
        if ch == quote:
            if i + 1 < n and sql[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    return n


def _skip_comment(sql: str, i: int) -> int | None:
    """If a comment starts at ``sql[i]``, the index just past it; else None."""
    if sql.startswith("/*", i):
        end = sql.find("*/", i + 2)
        return len(sql) if end < 0 else end + 2
    if sql[i] == "#" or (sql.startswith("--", i) and (i + 2 >= len(sql) or sql[i + 2] in " \t\r\n")):
        end = sql.find("\n", i)
        return len(sql) if end < 0 else end + 1
    return None


def split_statements(sql: str) -> list[str]:
    """Split on ``;`` outside strings, quoted names and comments; empty statements are dropped."""
    out: list[str] = []
    start = 0
    i = 0
    n = len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            i = _skip_quoted(sql, i)
            continue
        skipped = _skip_comment(sql, i)
        if skipped is not None:
            i = skipped
            continue
        if ch == ";":
            piece = sql[start:i].strip()
            if piece:
                out.append(piece)
            start = i + 1
        i += 1
    piece = sql[start:].strip()
    if piece:
        out.append(piece)
    return out


def sql_literal(value: Any) -> str:
    """A SQLite literal for a Python value."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


_VAR = re.compile(r"@@(?:(global|session|local)\.)?([A-Za-z_][\w$]*)", re.I)
_ITEM_END = re.compile(r"\s*(?:$|,|\)|;|(?:FROM|LIMIT|WHERE|ORDER|GROUP|HAVING|UNION|INTO)\b)", re.I)
_SELECT_BEFORE = re.compile(r"(?:^|\W)SELECT\s*\Z", re.I)


def substitute_variables(sql: str, lookup: Callable[[str], Any]) -> str:
    """Replace ``@@[scope.]name`` outside strings by the literal ``lookup(name)`` returns.

    A variable that is a whole item of the select list gets its written form
    as column name (``SELECT @@version`` answers a column named ``@@version``,
    as MySQL does). ``lookup`` raises :class:`UnknownVariable` for an unknown name.
    """
    if "@@" not in sql:
        return sql
    out: list[str] = []
    i = 0
    n = len(sql)
    depth = 0
    last = 0
    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            i = _skip_quoted(sql, i)
            continue
        skipped = _skip_comment(sql, i)
        if skipped is not None:
            i = skipped
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "@" and sql.startswith("@@", i):
            m = _VAR.match(sql, i)
            if m is not None:
                value = lookup(m.group(2).lower())
                literal = sql_literal(value)
                before = sql[last:i]
                whole_item = depth == 0 and (
                    _SELECT_BEFORE.search(sql[:i]) is not None or sql[:i].rstrip().endswith(",")
                ) and _ITEM_END.match(sql, m.end()) is not None
                out.append(before)
                if whole_item:
                    out.append(f'{literal} AS "{m.group(0)}"')
                else:
                    out.append(literal)
                i = last = m.end()
                continue
        i += 1
    out.append(sql[last:])
    return "".join(out)


def loggable(sql: str, limit: int = 200) -> str:
    """An admin statement as the process log may show it: its digest (every literal a ``?``, so a
    password in ``INSERT INTO mysql_users ... VALUES (..., 'secret')`` never reaches a log), cut."""
    return digest_text(sql[: limit * 4])[:limit]


def translate(sql: str) -> str | None:
    """``sql`` (MySQL syntax) in SQLite's dialect, or None when sqlglot cannot help
    (it fails, returns the same text, or returns several statements)."""
    import sqlglot  # lazy: only when a statement needs translating to SQLite
    from sqlglot.errors import SqlglotError

    try:
        out = sqlglot.transpile(sql, read="mysql", write="sqlite")
    except (SqlglotError, ValueError, KeyError, TypeError, IndexError, RecursionError) as exc:  # IndexError: 'SHOW STORAGE'
        log.debug("sqlglot could not translate %r: %s", loggable(sql), type(exc).__name__)
        return None
    if len(out) != 1:
        return None
    text = out[0]
    if not text or text.strip() == sql.strip():
        return None
    return text
