"""The admin interface's own statements: what is not plain SQL for the SQLite tables.

:func:`parse_command` recognizes one statement and returns a small frozen
object saying what to do, or ``None`` when the statement is ordinary SQL for
the tables. Pure: no I/O, no SQLite, so it is unit-tested on its own.

Grammar (case-insensitive, any whitespace, an optional trailing ``;``), after
ProxySQL's admin module:

``LOAD|SAVE <module> <direction>``
    ``<module>``: ``MYSQL SERVERS`` (also ``mysql_replication_hostgroups``),
    ``MYSQL USERS``, ``MYSQL QUERY RULES``, ``MYSQL VARIABLES``,
    ``ADMIN VARIABLES``, or ``ALL`` (all of them at once).

    ============================================  ==================
    statement (and ProxySQL's synonyms)           moves
    ============================================  ==================
    ``LOAD .. TO RUNTIME`` / ``TO RUN`` /         memory -> runtime
    ``FROM MEMORY`` / ``FROM MEM``
    ``LOAD .. TO MEMORY`` / ``TO MEM`` /          disk -> memory
    ``FROM DISK``
    ``LOAD .. FROM CONFIG``                       config file -> memory (the
                                                  config file *is* the disk)
    ``SAVE .. TO DISK`` / ``FROM MEMORY`` /       memory -> disk
    ``FROM MEM``
    ``SAVE .. TO MEMORY`` / ``TO MEM`` /          runtime -> memory
    ``FROM RUNTIME`` / ``FROM RUN``
    ============================================  ==================

``EXPLAIN ROUTING [FOR USER 'name'] [SCHEMA 'name'] 'statement'``
    How the proxy would route ``statement`` for that user and schema
    (default: the first frontend user, its default schema): digest,
    classification, matched rules, destination hostgroup. The statement may
    also be written unquoted after the options (``EXPLAIN ROUTING SELECT 1``).

``PROXYSQL FLUSH QUERY CACHE`` / ``PROXYSQL FLUSH LOGS`` / ``PROXYSQL FLUSH
MYSQL CLIENT HOSTS`` / ``PROXYSQL RELOAD TLS``, ``KILL [CONNECTION|QUERY] <session id>``,
``SHOW ...`` helpers (tables, databases, create table, processlist, MySQL and
admin variables, status), ``SET`` (``SET mysql-x = v`` / ``SET admin-x = v``
update ``global_variables``; anything else GUIs send is accepted and ignored),
``USE <schema>``, ``BEGIN``/``COMMIT``/``ROLLBACK`` (accepted, no effect: each
admin statement applies at once).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "Command",
    "LoadSave",
    "ExplainRouting",
    "ProxySQLCommand",
    "Kill",
    "Show",
    "SetVariable",
    "SetIgnored",
    "Use",
    "TransactionNoop",
    "CommandError",
    "parse_command",
    "parse_string_literal",
    "MODULES",
]

#: module name (as in the statement) -> the tables it covers
MODULES: dict[str, tuple[str, ...]] = {
    "MYSQL SERVERS": ("mysql_servers", "mysql_replication_hostgroups"),
    "MYSQL USERS": ("mysql_users",),
    "MYSQL QUERY RULES": ("mysql_query_rules",),
    "MYSQL VARIABLES": ("global_variables",),
    "ADMIN VARIABLES": ("global_variables",),
}
ALL_MODULES = tuple(MODULES)


class CommandError(ValueError):
    """A statement that looks like an admin command but is not a valid one (becomes ERR 1064)."""


class Command:
    """Base class of parsed admin commands."""


@dataclass(frozen=True, slots=True)
class LoadSave(Command):
    """Move ``modules`` from layer ``source`` to layer ``target`` (``memory``, ``runtime``, ``disk``)."""

    verb: str  # LOAD or SAVE, as written (upper case)
    modules: tuple[str, ...]  # keys of MODULES
    source: str
    target: str
    text: str  # the statement, normalized, for messages


@dataclass(frozen=True, slots=True)
class ExplainRouting(Command):
    sql: str
    username: str | None = None
    schemaname: str | None = None


@dataclass(frozen=True, slots=True)
class ProxySQLCommand(Command):
    action: str  # "FLUSH QUERY CACHE", "FLUSH LOGS", "FLUSH MYSQL CLIENT HOSTS", "RELOAD TLS"


@dataclass(frozen=True, slots=True)
class Kill(Command):
    session_id: int
    query_only: bool


@dataclass(frozen=True, slots=True)
class Show(Command):
    """``what``: tables, databases, create_table, processlist, variables, status, mysql_variables,
    admin_variables, mysql_status, warnings, errors, engines, charset, collation."""

    what: str
    schema: str | None = None  # SHOW TABLES FROM x
    table: str | None = None  # SHOW CREATE TABLE x
    like: str | None = None  # ... LIKE 'pattern'
    full: bool = False


@dataclass(frozen=True, slots=True)
class SetVariable(Command):
    """``SET mysql-name = value`` / ``SET admin-name = value``: updates ``global_variables``."""

    name: str  # with its prefix, lower case
    value: str


@dataclass(frozen=True, slots=True)
class SetIgnored(Command):
    """Any other SET (session settings GUIs and connectors send): answered OK."""


@dataclass(frozen=True, slots=True)
class Use(Command):
    schema: str


@dataclass(frozen=True, slots=True)
class TransactionNoop(Command):
    word: str


_WS = re.compile(r"\s+")
_TRAILING = re.compile(r"[\s;]+\Z")

_LOAD_SAVE = re.compile(r"(LOAD|SAVE)\s+(.*?)\s+(TO|FROM)\s+(RUNTIME|RUN|MEMORY|MEM|DISK|CONFIG)", re.I | re.S)
_DIRECTIONS = {
    ("LOAD", "TO", "RUNTIME"): ("memory", "runtime"),
    ("LOAD", "FROM", "MEMORY"): ("memory", "runtime"),
    ("LOAD", "TO", "MEMORY"): ("disk", "memory"),
    ("LOAD", "FROM", "DISK"): ("disk", "memory"),
    ("LOAD", "FROM", "CONFIG"): ("disk", "memory"),
    ("SAVE", "TO", "DISK"): ("memory", "disk"),
    ("SAVE", "FROM", "MEMORY"): ("memory", "disk"),
    ("SAVE", "TO", "MEMORY"): ("runtime", "memory"),
    ("SAVE", "FROM", "RUNTIME"): ("runtime", "memory"),
}
_ABBREV = {"RUN": "RUNTIME", "MEM": "MEMORY"}


def _strip(sql: str) -> str:
    """The statement without leading/trailing whitespace, trailing ``;`` and leading comments."""
    s = sql.strip()
    while True:
        if s.startswith("/*"):
            end = s.find("*/")
            if end < 0:
                break
            s = s[end + 2 :].lstrip()
        elif s.startswith("-- ") or s.startswith("#"):
            nl = s.find("\n")
            s = "" if nl < 0 else s[nl + 1 :].lstrip()
        else:
            break
    return _TRAILING.sub("", s)


def parse_command(sql: str) -> Command | None:
    """The admin command in ``sql``, or None for ordinary SQL. Raises CommandError for a malformed one."""
    s = _strip(sql)
    if not s:
        return None
    head = s.split(None, 1)[0].upper()
    handler = _HEADS.get(head)
    if handler is None:
        return None
    return handler(s)


def _load_save(s: str) -> Command | None:
    norm = _WS.sub(" ", s).upper()
    m = _LOAD_SAVE.fullmatch(norm)
    if m is None:
        if norm.startswith("LOAD DATA") or norm.startswith("LOAD XML"):
            return None  # SQL, which SQLite will refuse with its own message
        raise CommandError(
            f"unknown command {norm!r}: expected LOAD|SAVE <MYSQL SERVERS|MYSQL USERS|MYSQL QUERY RULES|"
            "MYSQL VARIABLES|ADMIN VARIABLES|ALL> <TO RUNTIME|FROM MEMORY|TO MEMORY|FROM DISK|FROM CONFIG|"
            "TO DISK|FROM RUNTIME>"
        )
    verb, module, prep, layer = m.groups()
    layer = _ABBREV.get(layer, layer)
    direction = _DIRECTIONS.get((verb, prep, layer))
    if direction is None:
        raise CommandError(f"{verb} ... {prep} {layer} is not a valid direction for {verb} (in {norm!r})")
    if module == "ALL":
        modules = ALL_MODULES
    elif module in MODULES:
        modules = (module,)
    else:
        known = ", ".join(list(MODULES) + ["ALL"])
        raise CommandError(f"{verb} {module}: unknown module (known: {known})")
    return LoadSave(verb, modules, direction[0], direction[1], norm)


def parse_string_literal(text: str, pos: int = 0) -> tuple[str, int]:
    """A MySQL string literal ('..' or ".."; doubled quotes and backslash escapes) at ``text[pos]``.

    Returns the value and the index just past the closing quote. Raises CommandError if unterminated.
    """
    quote = text[pos]
    if quote not in "'\"":
        raise CommandError(f"expected a quoted string at {text[pos:pos + 20]!r}")
    out: list[str] = []
    i = pos + 1
    n = len(text)
    escapes = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "b": "\b", "Z": "\x1a"}
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n:
            nxt = text[i + 1]
            out.append(escapes.get(nxt, nxt))
            i += 2
            continue
        if ch == quote:
            if i + 1 < n and text[i + 1] == quote:
                out.append(quote)
                i += 2
                continue
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise CommandError("unterminated string literal")


_EXPLAIN_ROUTING = re.compile(r"EXPLAIN\s+ROUTING\b\s*", re.I)
_EXPLAIN_OPTION = re.compile(r"(FOR\s+USER|USER|SCHEMA)\s+", re.I)


def _explain(s: str) -> Command | None:
    m = _EXPLAIN_ROUTING.match(s)
    if m is None:
        return None  # EXPLAIN <sql> / EXPLAIN QUERY PLAN: SQLite's
    pos = m.end()
    user = schema = None
    while True:
        o = _EXPLAIN_OPTION.match(s, pos)
        if o is None:
            break
        word = o.group(1).upper()
        pos = o.end()
        if pos >= len(s):
            raise CommandError(f"EXPLAIN ROUTING: {word} needs a value")
        if s[pos] in "'\"`":
            if s[pos] == "`":
                end = s.find("`", pos + 1)
                if end < 0:
                    raise CommandError("EXPLAIN ROUTING: unterminated `name`")
                value, pos = s[pos + 1 : end], end + 1
            else:
                value, pos = parse_string_literal(s, pos)
        else:
            w = re.match(r"[^\s'\"]+", s[pos:])
            assert w is not None
            value = w.group(0)
            pos += len(value)
        if word == "SCHEMA":
            schema = value
        else:
            user = value
        pos = len(s) - len(s[pos:].lstrip())
    rest = s[pos:]
    if not rest:
        raise CommandError("EXPLAIN ROUTING needs a statement: EXPLAIN ROUTING [FOR USER 'u'] [SCHEMA 's'] 'SQL'")
    if rest[0] in "'\"":
        sql, end = parse_string_literal(rest, 0)
        if rest[end:].strip():
            raise CommandError(f"EXPLAIN ROUTING: unexpected text after the statement: {rest[end:].strip()[:40]!r}")
    else:
        sql = rest
    if not sql.strip():
        raise CommandError("EXPLAIN ROUTING: the statement is empty")
    return ExplainRouting(sql, user, schema)


_PROXYSQL_ACTIONS = ("FLUSH QUERY CACHE", "FLUSH LOGS", "FLUSH MYSQL CLIENT HOSTS", "RELOAD TLS")


def _proxysql(s: str) -> Command:
    norm = _WS.sub(" ", s).upper()
    action = norm[len("PROXYSQL ") :] if norm.startswith("PROXYSQL ") else ""
    if action not in _PROXYSQL_ACTIONS:
        known = ", ".join(f"PROXYSQL {a}" for a in _PROXYSQL_ACTIONS)
        raise CommandError(f"{norm!r} is not supported by myrouter (supported: {known})")
    return ProxySQLCommand(action)


_KILL = re.compile(r"KILL\s+(?:(CONNECTION|QUERY)\s+)?(\d+)", re.I)


def _kill(s: str) -> Command:
    m = _KILL.fullmatch(s)
    if m is None:
        raise CommandError("expected KILL [CONNECTION|QUERY] <session id>")
    digits = m.group(2)
    if len(digits) > 20:  # no session id has more digits (and int() refuses more than 4300)
        raise CommandError(f"KILL: session id {digits[:20]}... is out of range")
    return Kill(int(digits), (m.group(1) or "").upper() == "QUERY")


_NAME = r"(`[^`]+`|\"[^\"]+\"|'[^']+'|[\w$]+)"
_LIKE = r"(?:\s+LIKE\s+('(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\"))?"
_SHOW_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p, re.I | re.S), what)
    for p, what in (
        (r"SHOW\s+(?:FULL\s+)?TABLES(?:\s+(?:FROM|IN)\s+" + _NAME + ")?" + _LIKE, "tables"),
        (r"SHOW\s+(?:DATABASES|SCHEMAS)" + _LIKE, "databases"),
        (r"SHOW\s+CREATE\s+TABLE\s+(?:" + _NAME + r"\s*\.\s*)?" + _NAME, "create_table"),
        (r"SHOW\s+(FULL\s+)?PROCESSLIST", "processlist"),
        (r"SHOW\s+MYSQL\s+VARIABLES" + _LIKE, "mysql_variables"),
        (r"SHOW\s+ADMIN\s+VARIABLES" + _LIKE, "admin_variables"),
        (r"SHOW\s+MYSQL\s+STATUS" + _LIKE, "mysql_status"),
        (r"SHOW\s+(?:GLOBAL\s+|SESSION\s+|LOCAL\s+)?VARIABLES" + _LIKE, "variables"),
        (r"SHOW\s+(?:GLOBAL\s+|SESSION\s+|LOCAL\s+)?STATUS" + _LIKE, "status"),
        (r"SHOW\s+(?:COUNT\(\*\)\s+)?WARNINGS(?:\s+LIMIT\s+[\d\s,]+)?", "warnings"),
        (r"SHOW\s+(?:COUNT\(\*\)\s+)?ERRORS(?:\s+LIMIT\s+[\d\s,]+)?", "errors"),
        (r"SHOW\s+(?:STORAGE\s+)?ENGINES", "engines"),
        (r"SHOW\s+(?:CHARSET|CHARACTER\s+SET)" + _LIKE, "charset"),
        (r"SHOW\s+COLLATION" + _LIKE, "collation"),
    )
)


def _unquote_name(name: str | None) -> str | None:
    if name is None:
        return None
    if len(name) >= 2 and name[0] == name[-1] and name[0] in "`\"'":
        return name[1:-1]
    return name


def _like(literal: str | None) -> str | None:
    if literal is None:
        return None
    value, _ = parse_string_literal(literal, 0)
    return value


def _show(s: str) -> Command:
    for pattern, what in _SHOW_PATTERNS:
        m = pattern.fullmatch(s)
        if m is None:
            continue
        g = m.groups()
        if what == "tables":
            return Show(what, schema=_unquote_name(g[0]), like=_like(g[1]))
        if what == "create_table":
            return Show(what, schema=_unquote_name(g[0]), table=_unquote_name(g[1]))
        if what == "processlist":
            return Show(what, full=bool(g[0]))
        if what in ("warnings", "errors", "engines"):
            return Show(what)
        return Show(what, like=_like(g[0]))
    raise CommandError(
        f"unsupported SHOW statement in the admin interface: {_WS.sub(' ', s)[:80]!r} (supported: SHOW TABLES "
        "[FROM db], SHOW DATABASES, SHOW CREATE TABLE t, SHOW [FULL] PROCESSLIST, SHOW MYSQL VARIABLES, "
        "SHOW ADMIN VARIABLES, SHOW MYSQL STATUS, SHOW [GLOBAL] VARIABLES|STATUS [LIKE ...], SHOW WARNINGS)"
    )


_SET_PROXY_VAR = re.compile(r"SET\s+(?:GLOBAL\s+)?((?:mysql|admin)-[\w]+)\s*(?:=|:=|\s)\s*(.+)", re.I | re.S)


def _set(s: str) -> Command:
    m = _SET_PROXY_VAR.fullmatch(s)
    if m is None:
        return SetIgnored()
    name, raw = m.group(1).lower(), m.group(2).strip()
    if raw[:1] in "'\"":
        value, end = parse_string_literal(raw, 0)
        if raw[end:].strip():
            raise CommandError(f"SET {name}: unexpected text after the value: {raw[end:].strip()[:40]!r}")
    else:
        if not re.fullmatch(r"[\w.+\-:/,;@]+", raw):
            raise CommandError(f"SET {name}: quote the value: SET {name} = '...'")
        value = raw
    return SetVariable(name, value)


def _use(s: str) -> Command:
    m = re.fullmatch(r"USE\s+" + _NAME, s, re.I)
    if m is None:
        raise CommandError("expected USE <schema>")
    return Use(_unquote_name(m.group(1)) or "")


def _transaction(s: str) -> Command | None:
    norm = _WS.sub(" ", s).upper()
    if norm in ("BEGIN", "BEGIN WORK", "COMMIT", "COMMIT WORK", "ROLLBACK", "ROLLBACK WORK", "START TRANSACTION"):
        return TransactionNoop(norm)
    return None


_HEADS = {
    "LOAD": _load_save,
    "SAVE": _load_save,
    "EXPLAIN": _explain,
    "PROXYSQL": _proxysql,
    "KILL": _kill,
    "SHOW": _show,
    "SET": _set,
    "USE": _use,
    "BEGIN": _transaction,
    "COMMIT": _transaction,
    "ROLLBACK": _transaction,
    "START": _transaction,
}
