"""``SAVE ... TO DISK``: rewrite the TOML files the proxy started from, keeping the operator's layout.

The disk layer *is* the configuration file and the rule files, so they stay
the reviewable source of truth (in git). Edits are made with tomlkit, in place:

* a value that did not change is not touched (a list written over several
  lines with comments stays as it is); a changed value is replaced keeping
  its line's trailing comment and its style (literal ``'...'`` strings stay
  literal, ``true``/``false`` stay booleans, ``0``/``1`` stay integers);
* a column that becomes NULL (rules) is removed; a column that was absent
  is added only when it differs from the default;
* a new row becomes a new ``[[table]]`` after the last one of its kind
  (new query rules go to the config file when it already holds rules,
  otherwise to ``admin.toml`` in the rules directory);
* a deleted row's ``[[table]]`` is removed; comments that followed it (which
  tomlkit attaches to it but which describe what comes next) are kept.

Files are replaced atomically: temporary file in the same directory, fsync,
rename, fsync of the directory. A file whose text does not change is not
rewritten.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, Bool, Comment, Integer, String, StringType, Table, Whitespace
from tomlkit.toml_document import TOMLDocument

from myrouter.routing.digest import parse_digest

log = logging.getLogger("myrouter.admin")

__all__ = ["TomlFile", "atomic_write", "sync_rows", "sync_variables", "ADMIN_RULES_FILE"]

ADMIN_RULES_FILE = "admin.toml"
_ADMIN_RULES_HEADER = (
    "# Query rules saved through the admin interface (SAVE MYSQL QUERY RULES TO DISK).\n"
    "# Rules are evaluated in rule_id order across all rule files; edit freely.\n"
)

_LIST_COLUMNS = ("match_kind", "match_tables", "match_flags")


class TomlFile:
    """One TOML file parsed with tomlkit, written back only if its text changed."""

    def __init__(self, path: Path, *, header: str = "") -> None:
        self.path = path
        if path.exists():
            self.original = path.read_text(encoding="utf-8")
        else:
            self.original = ""
        self.doc: TOMLDocument = tomlkit.parse(self.original or header)

    @property
    def changed(self) -> bool:
        return tomlkit.dumps(self.doc) != self.original

    def write(self) -> bool:
        """Write the file (atomically) if its text changed; True if it was written."""
        text = tomlkit.dumps(self.doc)
        if text == self.original:
            return False
        atomic_write(self.path, text)
        self.original = text
        return True


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: temporary file in the same directory, fsync, rename, fsync the directory."""
    directory = path.parent
    mode = None
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# ---------------------------------------------------------------------------
# trivia (comments and blank lines) handling


def _container(item: Table | TOMLDocument):
    return item if isinstance(item, TOMLDocument) else item.value


def _pop_trailing_trivia(table: Table) -> list[tuple[Any, Any]]:
    body = table.value.body
    i = len(body)
    while i > 0 and body[i - 1][0] is None and isinstance(body[i - 1][1], (Comment, Whitespace)):
        i -= 1
    trailing = body[i:]
    del body[i:]
    return trailing


def _push_trivia(table: Table, trivia: list[tuple[Any, Any]]) -> None:
    """Append comments/blank lines to a table's body, never two blank-line items in a row."""
    body = table.value.body
    for entry in trivia:
        if isinstance(entry[1], Whitespace) and body and body[-1][0] is None and isinstance(body[-1][1], Whitespace):
            continue
        body.append(entry)


def _add_key(table: Table, key: str, value: Any) -> None:
    """Add ``key`` after the table's last key (before the comments that end its body)."""
    trailing = _pop_trailing_trivia(table)
    table[key] = value
    _push_trivia(table, trailing)


def _ends_with_newline(table: Table) -> bool:
    body = table.value.body
    return bool(body) and body[-1][0] is None and isinstance(body[-1][1], Whitespace)


def _previous_table(doc: TOMLDocument, name: str) -> Table | None:
    """The table just before the array of tables ``name`` in the document, if it is one."""
    prev = None
    for key, item in doc.body:
        if key is not None and key.key == name:
            break
        if isinstance(item, Table):
            prev = item
        elif isinstance(item, AoT):
            prev = item.body[-1] if item.body else None
        elif key is not None:
            prev = None
    return prev


def _remove_element(doc: TOMLDocument, name: str, index: int) -> None:
    """Remove ``[[name]]`` number ``index``, keeping the comments that followed it."""
    aot: AoT = doc[name]
    element = aot.body[index]
    trailing = _pop_trailing_trivia(element)
    if index > 0:
        target = aot.body[index - 1]
    else:
        target = _previous_table(doc, name)
    if target is not None:
        _push_trivia(target, trailing)
    elif any(isinstance(item, Comment) for _, item in trailing):
        log.info("%s: comments after the removed [[%s]] could not be kept", "TOML", name)
    if len(aot.body) == 1:
        del doc[name]
    else:
        del aot[index]


def _append_element(doc: TOMLDocument, name: str, values: dict[str, Any], style: Callable[[str, Any, Any], Any]) -> None:
    table = tomlkit.table()
    for key, value in values.items():
        table.add(key, style(key, None, value))
    if name in doc:
        aot: AoT = doc[name]
        last = aot.body[-1]
        trailing = _pop_trailing_trivia(last)
        _push_trivia(last, [(None, Whitespace("\n"))])
        _push_trivia(table, trailing)  # what followed the last table now follows the new one
        aot.append(table)
    else:
        text = tomlkit.dumps(doc)
        if text and not text.endswith("\n\n"):
            doc.add(tomlkit.nl())
            if not text.endswith("\n"):
                doc.add(tomlkit.nl())
        aot = AoT([], name=name, parsed=True)  # "parsed": blank lines between tables are ours to manage
        aot.append(table)
        doc.append(name, aot)


# ---------------------------------------------------------------------------
# values


def _names(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(v.strip().lower() for v in items if isinstance(v, str) and v.strip())


def same_value(column: str, old: Any, new: Any) -> bool:
    """Whether a TOML value and a table value mean the same (``1`` and ``true``, list and 'a,b' ...)."""
    if column in _LIST_COLUMNS:
        return _names(old) == _names(new) if isinstance(old, (str, list)) else False
    if column == "digest":
        try:
            return parse_digest(old) == parse_digest(new)
        except (TypeError, ValueError):
            return False
    if isinstance(old, bool) or isinstance(new, bool):
        if isinstance(old, (bool, int)) and isinstance(new, (bool, int)):
            return bool(old) == bool(new) and int(old) in (0, 1) and int(new) in (0, 1)
        return False
    if type(old) is not type(new):
        return False
    return old == new


def styled(column: str, old_item: Any, value: Any) -> Any:
    """A tomlkit item for ``value``, in the style of the item it replaces (if any)."""
    if column in _LIST_COLUMNS and isinstance(value, str):
        names = _names(value)
        if old_item is not None and isinstance(old_item.unwrap(), list):
            arr = tomlkit.array()
            arr.extend(names)
            return arr
        return ",".join(names)
    if isinstance(value, bool):
        return int(value) if isinstance(old_item, Integer) else value
    if isinstance(value, int):
        if isinstance(old_item, Bool) and value in (0, 1):
            return bool(value)
        return value
    if isinstance(value, str):
        literal_ok = "'" not in value and "\n" not in value and "\r" not in value
        if isinstance(old_item, String):
            if old_item.type is StringType.SLL and literal_ok:
                return tomlkit.string(value, literal=True)
            return tomlkit.string(value)
        if "\\" in value and literal_ok:
            return tomlkit.string(value, literal=True)
        return tomlkit.string(value)
    return value


def _update_table(table: Table, desired: dict[str, Any], defaults: dict[str, Any], aliases: dict[str, str],
                  casefold: bool) -> None:
    def canon(key: str) -> str:
        k = key.lower() if casefold else key
        return aliases.get(k, k)

    present: dict[str, str] = {canon(key): key for key in list(table.keys())}
    wanted = {canon(column): column for column in desired}
    for column, value in desired.items():
        written = present.get(canon(column))
        if written is not None:
            old_item = table.item(written)
            if not same_value(column, old_item.unwrap(), value):
                table[written] = styled(column, old_item, value)
        elif column not in defaults or not same_value(column, defaults[column], value):
            _add_key(table, column, styled(column, None, value))
    for key, written in present.items():
        if key in wanted:
            continue
        column = next((c for c in defaults if canon(c) == key), None)
        if column is not None and defaults[column] is not None:
            old_item = table.item(written)
            if not same_value(column, old_item.unwrap(), defaults[column]):
                table[written] = styled(column, old_item, defaults[column])
        else:
            del table[written]


def sync_rows(doc: TOMLDocument, name: str, desired: Sequence[dict[str, Any]], key: Callable[[dict[str, Any]], Any],
              defaults: dict[str, Any], aliases: dict[str, str] | None = None, *, add_new: bool = True,
              casefold: bool = False) -> list[dict]:
    """Make the ``[[name]]`` tables of ``doc`` hold ``desired`` (TOML-shaped rows, NULL columns left out).

    Rows are matched by ``key(row)`` (in order, for rows sharing a key). Tables
    whose row is gone are removed; new rows are appended when ``add_new``,
    else returned (the caller puts them in another file).
    """
    aliases = aliases or {}
    existing: list[tuple[int, Any]] = []
    if name in doc:
        aot = doc[name]
        for i, table in enumerate(aot.body):
            resolved = {}
            for k, v in table.unwrap().items():
                k2 = k.lower() if casefold else k
                resolved[aliases.get(k2, k2)] = v
            existing.append((i, key(resolved)))
    used: set[int] = set()
    new_rows: list[dict] = []
    for row in desired:
        k = key(row)
        match = next((i for i, ek in existing if ek == k and i not in used), None)
        if match is None:
            new_rows.append(row)
            continue
        used.add(match)
        _update_table(doc[name].body[match], row, defaults, aliases, casefold=casefold)
    for i, _ in sorted(existing, reverse=True):
        if i not in used:
            _remove_element(doc, name, i)
    if add_new:
        for row in new_rows:
            _append_element(doc, name, {k: v for k, v in row.items() if k not in defaults or not same_value(
                k, defaults[k], v) or k in _required(name)}, lambda c, old, v: styled(c, old, v))
        return []
    return new_rows


def _required(name: str) -> tuple[str, ...]:
    return {
        "mysql_servers": ("hostgroup_id", "hostname", "port"),
        "mysql_users": ("username", "password", "default_hostgroup"),
        "mysql_replication_hostgroups": ("writer_hostgroup", "reader_hostgroup"),
        "mysql_query_rules": ("rule_id", "active"),
    }.get(name, ())


def append_rows(doc: TOMLDocument, name: str, rows: Sequence[dict[str, Any]], defaults: dict[str, Any]) -> None:
    for row in rows:
        _append_element(doc, name, {k: v for k, v in row.items() if k not in defaults or not same_value(
            k, defaults[k], v) or k in _required(name)}, lambda c, old, v: styled(c, old, v))


def sync_variables(doc: TOMLDocument, section: str, desired: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Make ``[section]`` hold ``desired`` (variable -> typed value).

    A variable written in the file is updated in place (keys match
    case-insensitively, as the loader reads them); one not written is added
    only when it differs from its default; one written but now at its default
    keeps its line with the default value.
    """
    if section not in doc:
        if all(same_value(k, defaults.get(k), v) for k, v in desired.items() if k in defaults):
            return
        text = tomlkit.dumps(doc)
        if text and not text.endswith("\n\n"):
            doc.add(tomlkit.nl())
        doc.add(section, tomlkit.table())
    table = doc[section]
    present = {k.lower(): k for k in table.keys()}
    for name, value in desired.items():
        written = present.get(name.lower())
        if written is not None:
            old_item = table.item(written)
            if not same_value(name, old_item.unwrap(), value):
                table[written] = styled(name, old_item, value)
        elif name not in defaults or not same_value(name, defaults[name], value):
            _add_key(table, name, styled(name, None, value))
    desired_lower = {k.lower() for k in desired}
    for lower, written in present.items():
        if lower in desired_lower:
            continue
        default_key = next((k for k in defaults if k.lower() == lower), None)
        if default_key is not None:
            old_item = table.item(written)
            if not same_value(default_key, old_item.unwrap(), defaults[default_key]):
                table[written] = styled(default_key, old_item, defaults[default_key])


def new_rules_file(path: Path) -> TomlFile:
    return TomlFile(path, header=_ADMIN_RULES_HEADER)
