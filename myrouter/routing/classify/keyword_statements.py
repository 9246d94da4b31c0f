"""Statement families classified from their keywords alone (no sqlglot).

LOAD, USE, transactions (BEGIN/START/COMMIT/ROLLBACK, SAVEPOINT, XA, LOCK/UNLOCK TABLES),
PREPARE/EXECUTE/DEALLOCATE, SHOW and CALL. Each handler takes (text, dtext, keyword), as the
classifier's dispatch table calls them, and returns a Classification without the digest-scan
flags (added by the caller).
"""

from __future__ import annotations

import re

from .classification import Classification, _F, _K, _make
from .lexical import _NAME, _NAME_PART, _USER_VAR_RE, _norm_name, _unparsable

_LOAD_TABLE = re.compile(r"\bINTO\s+TABLE\s+(" + _NAME + ")", re.IGNORECASE)


def _load(text: str, dtext: str, keyword: str) -> Classification:
    if re.match(r"LOAD\s+INDEX\b", dtext, re.IGNORECASE):
        return _make(_K.UTILITY, _F.IMPLICIT_COMMIT, command="LOAD")
    if re.match(r"LOAD\s+(?:DATA|XML)\b", dtext, re.IGNORECASE):
        m = _LOAD_TABLE.search(dtext)
        return _make(_K.WRITE, _F.NONE, {_norm_name(m.group(1))} if m else set(), "LOAD")
    return _unparsable(dtext, "LOAD", "unknown LOAD statement")


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


def _call(text: str, dtext: str, keyword: str) -> Classification:
    # OUT/INOUT parameters assign the variables passed in: a @var argument may
    # be read and/or assigned.
    flags = _F.NONE
    if _USER_VAR_RE.search(dtext):
        flags = _F.USER_VARIABLE_ASSIGN | _F.USER_VARIABLE_READ
    return _make(_K.UTILITY, flags, set(), "CALL")
