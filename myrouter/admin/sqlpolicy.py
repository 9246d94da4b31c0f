"""What admin SQL may do: the allow-list the SQLite authorizer enforces (sans-I/O).

The admin interface offers ProxySQL's tables, not SQLite. Every statement is
checked when SQLite prepares it (``Connection.set_authorizer``): an action
outside :data:`ALLOWED_ACTIONS` is refused, and so is a function outside
:data:`ALLOWED_FUNCTIONS` or a PRAGMA outside :data:`ALLOWED_PRAGMAS`. That
keeps out what SQLite can do beyond tables: virtual tables (``CREATE VIRTUAL
TABLE ... USING fts3``), ``fts3_tokenizer()`` (its two-argument form takes a
raw pointer and crashes the process; its one-argument form discloses an
address), ``load_extension()``, ATTACH/DETACH (files), PRAGMAs that read or
write files or settings, ANALYZE, triggers (their bodies would run
inside the admin's own statements, which skip the per-table checks), and
transactions (the admin's own statements manage those).

The per-table rules (read-only layers, stats accounts) are the admin's
(:meth:`myrouter.admin.core.Admin._authorize`); this module only says which
kinds of statement and which functions exist at all.
"""

from __future__ import annotations

import sqlite3

__all__ = ["ALLOWED_ACTIONS", "ALLOWED_FUNCTIONS", "ALLOWED_PRAGMAS", "refusal", "MAX_VALUE_BYTES"]

#: largest string or blob a statement may build (SQLITE_LIMIT_LENGTH): randomblob(), zeroblob(),
#: printf('%.*c', ...) and group_concat() cannot allocate more than this
MAX_VALUE_BYTES = 16 * 1024 * 1024

S = sqlite3
#: action codes of the authorizer that may happen at all (the admin checks tables on top)
ALLOWED_ACTIONS = frozenset((
    S.SQLITE_SELECT, S.SQLITE_READ, S.SQLITE_RECURSIVE, S.SQLITE_FUNCTION, S.SQLITE_PRAGMA,
    S.SQLITE_INSERT, S.SQLITE_UPDATE, S.SQLITE_DELETE,
    # the operator's own scratch tables, indexes and views (as in ProxySQL's admin)
    S.SQLITE_CREATE_TABLE, S.SQLITE_CREATE_TEMP_TABLE, S.SQLITE_CREATE_INDEX, S.SQLITE_CREATE_TEMP_INDEX,
    S.SQLITE_CREATE_VIEW, S.SQLITE_CREATE_TEMP_VIEW, S.SQLITE_DROP_TABLE, S.SQLITE_DROP_TEMP_TABLE,
    S.SQLITE_DROP_INDEX, S.SQLITE_DROP_TEMP_INDEX, S.SQLITE_DROP_VIEW, S.SQLITE_DROP_TEMP_VIEW,
    S.SQLITE_ALTER_TABLE, S.SQLITE_REINDEX,  # CREATE INDEX reports a REINDEX
))
#: what the admin's own statements need besides (BEGIN/COMMIT around a refresh)
INTERNAL_ACTIONS = ALLOWED_ACTIONS | {S.SQLITE_TRANSACTION}

#: SQLite's core scalar, aggregate, window, date, math and JSON functions, and the MySQL
#: functions the admin registers (myrouter.admin.core.Admin._register_functions)
ALLOWED_FUNCTIONS = frozenset((
    # core scalar
    "abs", "changes", "char", "coalesce", "format", "glob", "hex", "ifnull", "iif", "instr", "last_insert_rowid",
    "length", "like", "likelihood", "likely", "lower", "ltrim", "max", "min", "nullif", "printf", "quote",
    "random", "randomblob", "replace", "round", "rtrim", "sign", "soundex", "sqlite_version", "substr",
    "substring", "total_changes", "trim", "typeof", "unicode", "unlikely", "upper", "zeroblob", "octet_length",
    "unhex", "concat", "concat_ws",
    # aggregate and window
    "avg", "count", "group_concat", "string_agg", "sum", "total", "row_number", "rank", "dense_rank",
    "percent_rank", "cume_dist", "ntile", "lag", "lead", "first_value", "last_value", "nth_value",
    # date and time
    "date", "time", "datetime", "julianday", "unixepoch", "strftime", "timediff", "current_date",
    "current_time", "current_timestamp",
    # math
    "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "ceil", "ceiling", "cos", "cosh", "degrees",
    "exp", "floor", "ln", "log", "log10", "log2", "mod", "pi", "pow", "power", "radians", "sin", "sinh", "sqrt",
    "tan", "tanh", "trunc",
    # JSON (mysql_users.attributes has a JSON_VALID check)
    "json", "json_array", "json_array_length", "json_extract", "json_group_array", "json_group_object",
    "json_insert", "json_object", "json_patch", "json_quote", "json_remove", "json_replace", "json_set",
    "json_type", "json_valid", "->", "->>",
    # registered by the admin (MySQL's)
    "database", "schema", "user", "current_user", "session_user", "system_user", "version", "connection_id",
    "now", "unix_timestamp", "from_unixtime",
))

#: read-only PRAGMAs about the schema (GUIs and connectors ask for these)
ALLOWED_PRAGMAS = frozenset((
    "table_info", "table_xinfo", "index_list", "index_info", "index_xinfo", "database_list", "foreign_key_list",
    "table_list", "collation_list", "function_list",
))

#: SQLite's built-in (eponymous) virtual tables about its own internals: the database pages, the
#: connection's prepared statements (the admin's own among them). json_each/json_tree are values,
#: and the pragma_* ones are checked as their PRAGMA.
REFUSED_TABLES = frozenset(("dbstat", "sqlite_stmt", "sqlite_dbpage"))

_NAMES = {
    S.SQLITE_ATTACH: "ATTACH", S.SQLITE_DETACH: "DETACH", S.SQLITE_CREATE_VTABLE: "CREATE VIRTUAL TABLE",
    S.SQLITE_DROP_VTABLE: "DROP of a virtual table", S.SQLITE_TRANSACTION: "transaction control",
    S.SQLITE_SAVEPOINT: "SAVEPOINT", S.SQLITE_ANALYZE: "ANALYZE",
    S.SQLITE_CREATE_TRIGGER: "CREATE TRIGGER", S.SQLITE_CREATE_TEMP_TRIGGER: "CREATE TRIGGER",
    S.SQLITE_DROP_TRIGGER: "DROP TRIGGER", S.SQLITE_DROP_TEMP_TRIGGER: "DROP TRIGGER",
}


def refusal(action: int, arg1: str | None, arg2: str | None, *, internal: bool = False) -> str | None:
    """Why the statement kind ``action`` (with the authorizer's arguments) is not allowed, or None.

    ``internal``: one of the admin's own statements (it may also BEGIN/COMMIT)."""
    if action == S.SQLITE_FUNCTION:
        name = (arg2 or "").lower()
        return None if name in ALLOWED_FUNCTIONS else f"function {arg2}() is not allowed in the admin interface"
    if action == S.SQLITE_PRAGMA:
        name = (arg1 or "").lower()
        return None if name in ALLOWED_PRAGMAS else f"PRAGMA {arg1} is not allowed in the admin interface"
    if action == S.SQLITE_READ and (arg1 or "").lower() in REFUSED_TABLES:
        return f"the virtual table {arg1} is not allowed in the admin interface"
    if action in (INTERNAL_ACTIONS if internal else ALLOWED_ACTIONS):
        return None
    what = _NAMES.get(action, f"statement kind {action}")
    return f"{what} is not allowed in the admin interface"
