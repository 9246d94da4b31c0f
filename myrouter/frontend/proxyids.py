"""Connection ids as a client sees them: the proxy's session ids, never a pooled backend's thread id.

A backend connection is shared by many sessions, so its thread id (what the server's
``CONNECTION_ID()``, ``SHOW PROCESSLIST`` and ``information_schema.PROCESSLIST`` would show)
means nothing to a client, and ``KILL <that id>`` sent to a backend ends some unrelated
connection. This module (sans-I/O) finds those forms in statement text and says what the
session does instead:

* ``parse_kill``: every KILL form MariaDB knows, comments allowed anywhere, as a ``Kill``
  the session carries out on its own sessions; a form it cannot carry out (``KILL QUERY
  ID``, an unreadable one) is refused, never passed on.
* ``rewrite_connection_id``: ``CONNECTION_ID()`` becomes the session id as a literal (a
  select-list item keeps its column name through an alias).
* ``show_processlist`` / ``rewrite_processlist``: ``SHOW [FULL] PROCESSLIST`` answered from
  the proxy's sessions; ``information_schema.PROCESSLIST`` in a SELECT replaced by a derived
  table of the proxy's sessions, so the server evaluates the rest of the query as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..protocol.errors import MySQLError

ER_NOT_SUPPORTED_YET = 1235

# literals, quoted names and comments (MySQL lexical rules; backslash escapes assumed, which only
# makes a literal with a trailing backslash under NO_BACKSLASH_ESCAPES end later)
_LEXEME_RE = re.compile(r"""'(?:[^'\\]|\\.|'')*'?|"(?:[^"\\]|\\.|"")*"?|`(?:[^`]|``)*`?"""
                        r"""|/\*.*?(?:\*/|\Z)|(?:--(?=[\s]|\Z)|\#)[^\n]*""", re.S)


def mask_sql(sql: str) -> str:
    """``sql`` with the contents of string literals and comments blanked (same length, same
    positions), so code can be searched without matching inside them. Quoted names stay."""
    def blank(m: re.Match) -> str:
        text = m.group()
        if text[0] == "`":
            return text
        if text[0] in "'\"":
            return text[0] + " " * (len(text) - 2) + text[-1] if len(text) > 1 else text
        return " " * len(text)
    return _LEXEME_RE.sub(blank, sql)


def strip_comments(sql: str) -> str:
    """``sql`` without its comments (executable ``/*! */`` comments included)."""
    return _LEXEME_RE.sub(lambda m: " " if m.group()[0] in "/-#" else m.group(), sql)


# ----------------------------------------------------------------------------------------- KILL

_NAME = r"""(?:'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*"|`(?:[^`]|``)*`|[\w$.%-]+)"""
_KILL_RE = re.compile(
    r"\s*KILL\s+(?:(?P<mode>HARD|SOFT)\s+)?(?:(?P<what>CONNECTION|QUERY)\s+)?(?:(?P<qid>ID)\s+)?"
    r"(?:(?P<id>\d+)|USER\s+(?P<user>" + _NAME + r")(?:\s*@\s*(?P<host>" + _NAME + r"))?(?P<cu>\s*\(\s*\))?)"
    r"\s*;?\s*\Z", re.I | re.S)
_STARTS_WITH_KILL_RE = re.compile(r"\s*KILL\b", re.I)
_MULTI_RE = re.compile(r";\s*\S")


@dataclass(frozen=True, slots=True)
class Kill:
    """One KILL statement: of a session id, or of every session of a user (``host`` None: any)."""

    query_only: bool
    thread_id: int | None = None
    user: str | None = None
    host: str | None = None
    current_user: bool = False  # KILL USER CURRENT_USER[()]


def _unquote(name: str) -> str:
    if name[:1] in ("'", '"', "`") and len(name) >= 2:
        q = name[0]
        body = name[1:-1].replace(q + q, q)
        return re.sub(r"\\(.)", r"\1", body, flags=re.S) if q != "`" else body
    return name


def _refused(what: str) -> MySQLError:
    return MySQLError(ER_NOT_SUPPORTED_YET, f"{what} is not supported by myrouter (it would reach a backend "
                      "connection shared by other sessions); use KILL [HARD|SOFT] [CONNECTION|QUERY] <id> with "
                      "an id from CONNECTION_ID() or SHOW PROCESSLIST, or KILL [CONNECTION|QUERY] USER <name>",
                      "42000")


def parse_kill(sql: str) -> Kill:
    """The KILL statement ``sql`` (comments anywhere). MySQLError 1235 for what the proxy does not
    carry out: KILL QUERY ID, a KILL among several statements, a text it cannot read."""
    text = strip_comments(sql)
    if _MULTI_RE.search(mask_sql(text)):
        raise _refused("KILL in a multi-statement")
    m = _KILL_RE.match(text)
    if m is None:
        raise _refused("this form of KILL")
    if m.group("qid"):
        raise _refused("KILL QUERY ID <query_id>")
    query_only = (m.group("what") or "").upper() == "QUERY"
    if m.group("id") is not None:
        return Kill(query_only, thread_id=int(m.group("id")))
    user = m.group("user")
    if user.upper() == "CURRENT_USER" and m.group("host") is None:
        return Kill(query_only, current_user=True)
    if m.group("cu"):
        raise _refused("this form of KILL")
    host = m.group("host")
    return Kill(query_only, user=_unquote(user), host=_unquote(host) if host is not None else None)


def mentions_kill(sql: str) -> bool:
    """Whether ``sql`` starts with KILL once comments are gone (the fast path's regex did not read it)."""
    return _STARTS_WITH_KILL_RE.match(strip_comments(sql)) is not None


_STRING = r"""'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*\""""
_DYNAMIC_SQL_RE = re.compile(r"\b(?:PREPARE\s+\S+\s+FROM|EXECUTE\s+IMMEDIATE)\s*(" + _STRING + ")", re.I | re.S)


def check_dynamic_kill(sql: str) -> None:
    """MySQLError 1235 if ``sql`` prepares or runs a KILL from a literal (PREPARE s FROM 'KILL ..',
    EXECUTE IMMEDIATE 'KILL ..'): the server would run it with its own thread ids."""
    for m in _DYNAMIC_SQL_RE.finditer(sql):
        if mentions_kill(_unquote(m.group(1))):
            raise _refused("KILL in PREPARE or EXECUTE IMMEDIATE")


def host_matches(pattern: str | None, host: str) -> bool:
    """A KILL USER host part (``%`` and ``_`` wildcards, case-insensitive) against a client host."""
    if pattern is None or pattern == "%":
        return True
    rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, host, re.I | re.S) is not None


# ------------------------------------------------------------------------------- CONNECTION_ID()

_CONNECTION_ID_RE = re.compile(r"(?<![\w$@.`])CONNECTION_ID\s*\(\s*\)", re.I)
_TOKEN_RE = re.compile(r"[A-Za-z_][\w$]*|[(),;]|\S")
# words that end a select list (at the depth of its SELECT)
_END_OF_SELECT_LIST = frozenset((
    "FROM", "INTO", "WHERE", "GROUP", "HAVING", "ORDER", "LIMIT", "UNION", "EXCEPT", "INTERSECT", "WINDOW",
    "FOR", "LOCK", "PROCEDURE", "OFFSET", "FETCH", "RETURNING"))
_SELECT_MODIFIERS = frozenset((
    "ALL", "DISTINCT", "DISTINCTROW", "HIGH_PRIORITY", "STRAIGHT_JOIN", "SQL_SMALL_RESULT", "SQL_BIG_RESULT",
    "SQL_BUFFER_RESULT", "SQL_CACHE", "SQL_NO_CACHE", "SQL_CALC_FOUND_ROWS"))


def _tokens(masked: str, spans: dict[int, int]) -> list[tuple[str, int]]:
    """Upper-cased tokens of ``masked`` with their positions; each span is one token ``()``."""
    out: list[tuple[str, int]] = []
    pos = 0
    while pos < len(masked):
        if pos in spans:
            out.append(("()", pos))
            pos = spans[pos]
            continue
        m = _TOKEN_RE.search(masked, pos)
        if m is None:
            break
        if m.start() in spans:
            pos = m.start()
            continue
        out.append((m.group().upper(), m.start()))
        pos = m.end()
    return out


def _select_list_items(masked: str, spans: list[tuple[int, int]]) -> set[int]:
    """Which of ``spans`` (start, end) are a whole select-list item without an alias."""
    tokens = _tokens(masked, dict(spans))
    whole: set[int] = set()
    in_list = [False]  # per parenthesis depth: inside a SELECT's select list
    for i, (tok, pos) in enumerate(tokens):
        if tok == "()":
            prev = tokens[i - 1][0] if i else ""
            nxt = tokens[i + 1][0] if i + 1 < len(tokens) else ""
            if in_list[-1] and (prev in ("SELECT", ",") or prev in _SELECT_MODIFIERS) \
                    and (nxt in ("", ",", ";", ")") or nxt in _END_OF_SELECT_LIST):
                whole.add(pos)
        elif tok == "(":
            in_list.append(False)
        elif tok == ")":
            if len(in_list) > 1:
                in_list.pop()
        elif tok == "SELECT":
            in_list[-1] = True
        elif tok in _END_OF_SELECT_LIST or tok == ";":
            in_list[-1] = False
    return whole


def rewrite_connection_id(sql: str, session_id: int) -> str | None:
    """``sql`` with each ``CONNECTION_ID()`` replaced by ``session_id`` (a bare select-list item
    keeps its column name: ``5 AS `CONNECTION_ID()```); None if there is none outside literals."""
    masked = mask_sql(sql)
    spans = [(m.start(), m.end()) for m in _CONNECTION_ID_RE.finditer(masked)]
    if not spans:
        return None
    whole = _select_list_items(masked, spans)
    out = []
    last = 0
    for start, end in spans:
        out.append(sql[last:start])
        if start in whole:
            literal = f"{session_id} AS `" + sql[start:end].replace("`", "``") + "`"
        else:
            literal = f"({session_id})"  # in parentheses: nothing next to it can glue onto it
        out.append(literal)
        last = end
    out.append(sql[last:])
    return "".join(out)


# ----------------------------------------------------------------------------------- PROCESSLIST


@dataclass(frozen=True, slots=True)
class ProcessRow:
    """One session as a PROCESSLIST row."""

    id: int
    user: str
    host: str
    db: str | None
    command: str
    time_ms: int
    state: str
    info: str | None


# SHOW PROCESSLIST's columns (MariaDB): name, type code, length, flags
SHOW_COLUMNS = ("Id", "User", "Host", "db", "Command", "Time", "State", "Info", "Progress")
_SHOW_RE = re.compile(r"\s*SHOW\s+(FULL\s+)?PROCESSLIST\s*;?\s*\Z", re.I)
_INFO_SHORT = 100  # SHOW PROCESSLIST without FULL: Info cut to 100 characters


def show_processlist(sql: str) -> bool | None:
    """For ``SHOW [FULL] PROCESSLIST`` alone: whether FULL; else None."""
    m = _SHOW_RE.match(strip_comments(sql))
    if m is None:
        return None
    return bool(m.group(1))


def show_rows(rows: list[ProcessRow], full: bool) -> list[list[object]]:
    out = []
    for r in sorted(rows, key=lambda r: r.id):
        info = r.info if full or r.info is None else r.info[:_INFO_SHORT]
        out.append([r.id, r.user, r.host, r.db, r.command, r.time_ms // 1000, r.state, info, "0.000"])
    return out


def _hex_text(value: str | None) -> str:
    if value is None:
        return "NULL"
    if not value:
        return "''"
    return "CONVERT(X'" + value.encode("utf-8", "surrogateescape").hex() + "' USING utf8mb4)"


def processlist_table(rows: list[ProcessRow]) -> str:
    """A derived table with information_schema.PROCESSLIST's columns (MariaDB 10.11) holding ``rows``
    (strings as hex literals: right whatever the session's sql_mode and character set)."""
    selects = []
    for r in sorted(rows, key=lambda r: r.id):
        values = (
            ("ID", str(r.id)), ("USER", _hex_text(r.user)), ("HOST", _hex_text(r.host)), ("DB", _hex_text(r.db)),
            ("COMMAND", _hex_text(r.command)), ("TIME", str(r.time_ms // 1000)), ("STATE", _hex_text(r.state)),
            ("INFO", _hex_text(r.info)), ("TIME_MS", f"{r.time_ms}.000"), ("STAGE", "0"), ("MAX_STAGE", "0"),
            ("PROGRESS", "0.000"), ("MEMORY_USED", "0"), ("MAX_MEMORY_USED", "0"), ("EXAMINED_ROWS", "0"),
            ("QUERY_ID", "0"), ("INFO_BINARY", "NULL" if r.info is None else "X'" + r.info.encode(
                "utf-8", "surrogateescape").hex() + "'"), ("TID", "0"))
        if not selects:
            selects.append("SELECT " + ", ".join(f"{v} AS `{k}`" for k, v in values))
        else:
            selects.append("SELECT " + ", ".join(v for _, v in values))
    return "(" + " UNION ALL ".join(selects) + ")"


_TABLE_REF_RE = re.compile(
    r"(?P<lead>\b(?:FROM|JOIN)\s+|,\s*)"
    r"(?P<table>(?:`information_schema`|information_schema)\s*\.\s*(?:`processlist`|processlist)"
    r"|(?:`processlist`|processlist))(?![\w$`])(?!\s*\.)", re.I)
_ANY_REF_RE = re.compile(r"(?<![\w$`.])`?information_schema`?\s*\.\s*`?processlist`?(?![\w$`])(?!\s*\.)", re.I)
_ALIAS_RE = re.compile(r"\s*(?:AS\b|`|(?!(?:WHERE|JOIN|INNER|LEFT|RIGHT|CROSS|NATURAL|STRAIGHT_JOIN|ON|USING|GROUP"
                       r"|ORDER|LIMIT|HAVING|UNION|EXCEPT|INTERSECT|WINDOW|FOR|LOCK|INTO|PROCEDURE|FULL|USE|IGNORE"
                       r"|FORCE|PARTITION|RETURNING|OFFSET|FETCH)\b)[A-Za-z_])", re.I)
_FIRST_WORD_RE = re.compile(r"[\s(]*([A-Za-z_]+)(?:\s+(FULL\s+)?([A-Za-z_]+))?")
_READS = frozenset(("SELECT", "WITH", "VALUES", "TABLE"))
_METADATA = frozenset(("SHOW", "DESC", "DESCRIBE", "EXPLAIN", "ANALYZE", "HELP"))


def _statements(masked: str) -> list[tuple[int, int]]:
    out = []
    start = 0
    for m in re.finditer(";", masked):
        out.append((start, m.start()))
        start = m.end()
    out.append((start, len(masked)))
    return out


def rewrite_processlist(sql: str, table_sql: str, schema: str | None) -> str | None:
    """``sql`` with every PROCESSLIST it reads (``SHOW [FULL] PROCESSLIST`` among several statements,
    ``information_schema.PROCESSLIST`` in a SELECT) reading ``table_sql`` instead; None if it reads
    none. MySQLError 1235 for a statement of another kind that reads it (CREATE VIEW ... AS SELECT,
    INSERT ... SELECT: a snapshot there would be wrong later)."""
    masked = mask_sql(sql)
    in_schema = (schema or "").lower() == "information_schema"
    edits: list[tuple[int, int, str]] = []
    for start, end in _statements(masked):
        stmt = masked[start:end]
        first = _FIRST_WORD_RE.match(stmt)
        if first is None:
            continue
        word = first.group(1).upper()
        if word == "SHOW" and (first.group(3) or "").upper() == "PROCESSLIST":
            full = bool(first.group(2))
            info = "INFO" if full else f"LEFT(INFO, {_INFO_SHORT})"
            edits.append((start, end, " SELECT ID AS Id, USER AS User, HOST AS Host, DB AS db, COMMAND AS Command, "
                                      f"TIME AS Time, STATE AS State, {info} AS Info, PROGRESS AS Progress FROM "
                                      f"{table_sql} AS PROCESSLIST ORDER BY ID"))
            continue
        if word in _METADATA:
            continue
        found = False
        for m in _TABLE_REF_RE.finditer(stmt):
            if "." not in m.group("table") and not in_schema:
                continue
            if word not in _READS:
                raise MySQLError(ER_NOT_SUPPORTED_YET, "myrouter answers information_schema.PROCESSLIST in SELECT "
                                 f"statements only, not in {word}: the proxy's sessions are not a table the "
                                 "server has", "42000")
            found = True
            alias = "" if _ALIAS_RE.match(stmt, m.end()) else " AS PROCESSLIST"
            edits.append((start + m.start("table"), start + m.end("table"), table_sql + alias))
        if not found and word in _READS and _ANY_REF_RE.search(stmt):
            raise MySQLError(ER_NOT_SUPPORTED_YET, "this use of information_schema.PROCESSLIST is not supported by "
                             "myrouter (only as a table in FROM or JOIN)", "42000")
    if not edits:
        return None
    out = []
    last = 0
    for s, e, text in edits:
        out.append(sql[last:s])
        out.append(text)
        last = e
    out.append(sql[last:])
    return "".join(out)


def reads_processlist(sql: str, schema: str | None) -> bool:
    """Whether ``rewrite_processlist`` would change ``sql`` (MySQLError for a form it refuses)."""
    return rewrite_processlist(sql, "()", schema) is not None


# ------------------------------------------------------------------------------------ privileges

# global privileges that let a user kill, or see, other users' sessions (MariaDB; ALL includes them)
MAY_KILL_OTHERS = frozenset(("ALL PRIVILEGES", "SUPER", "CONNECTION ADMIN"))
MAY_SEE_OTHERS = frozenset(("ALL PRIVILEGES", "PROCESS"))
_GLOBAL_GRANT_RE = re.compile(r"\s*GRANT\s+(.+?)\s+ON\s+\*\s*\.\s*\*\s+TO\s", re.I | re.S)


def global_privileges(grants: list[str]) -> frozenset[str]:
    """The global privileges (upper case, ``ALL`` spelled ``ALL PRIVILEGES``) in SHOW GRANTS lines."""
    out: set[str] = set()
    for line in grants:
        m = _GLOBAL_GRANT_RE.match(line)
        if m is None:
            continue
        for priv in m.group(1).split(","):
            name = " ".join(priv.split()).upper()
            out.add("ALL PRIVILEGES" if name == "ALL" else name)
    return frozenset(out)
