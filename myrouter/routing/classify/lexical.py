"""The lexical pre-scan: what the classifier reads from the text without sqlglot.

Quoting and comments (so that scans skip their content), executable comments (unwrapped: the
server runs them), names (``schema.table``, lower-case), the first keyword, the flags visible in
the digest text (functions, user variables, ``@@warning_count``...), and the safe default for a
statement nothing understands (:func:`_unparsable`: a WRITE, tables from a best-effort scan).
"""

from __future__ import annotations

import re

from .classification import Classification, StatementFlag, _F, _K, _make

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


_TOKEN_SCAN = re.compile(
    _Q_SQ + "|" + _Q_DQ + "|" + _Q_BT
    + r"|/\*[\s\S]*?(?:\*/|\Z)|--(?=\s|\Z)[^\n]*|\#[^\n]*"
    + r"|([A-Za-z_][\w$]*)"  # 1: word
    + r"|(\()|(\))|(;)"  # 2, 3, 4
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
