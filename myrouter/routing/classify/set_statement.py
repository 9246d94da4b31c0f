"""The SET parser: the variables a SET statement assigns, and their value texts.

:func:`parse_set_statement` is sqlglot-free (fast enough for every cache hit of a statement
that assigns variables: their values are literals, which the digest does not keep);
``_fresh_set_variables`` gives a statement text's assignments as :func:`classify_statement`
would; ``_set_flags`` the flags they mean.
"""

from __future__ import annotations

import re

from ..digest import split_statements
from .classification import SetVariable, StatementFlag, _F
from .lexical import _Q_BT, _Q_DQ, _Q_SQ, _strip_comments, unwrap_executable_comments


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
