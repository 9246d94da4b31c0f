"""TOML loading with line numbers for error messages.

``tomllib`` parses TOML into plain dicts and forgets where each value came
from. Configuration errors must name file, line and key, so this module keeps
the source text next to the parsed data and answers "on which line is key K of
the N-th ``[[table]]``?" from tomlkit's parse of the same text (tomlkit keeps
every item of the document; the parser below notes the line each key, table
header and inline table starts on). That second parse happens only when a line
is asked for (an error, a warning, a rule's provenance), never for a file that
loads cleanly and has no rules.

Usage::

    doc = load_toml(path)            # ConfigError with file and line on a syntax error
    servers = doc.data.get("mysql_servers", [])
    raise doc.error("must be 1..65535", "mysql_servers", 2, "port")
    # -> ConfigError: "conf.toml:14: mysql_servers[2].port: must be 1..65535"
"""

from __future__ import annotations

import bisect
import re
import tomllib
from pathlib import Path
from typing import Any

from tomlkit.container import Container, OutOfOrderTableProxy
from tomlkit.items import AoT, Array, InlineTable, Item, Table
from tomlkit.parser import Parser

from myrouter.errors import ConfigError

__all__ = ["TomlDoc", "load_toml", "parse_toml", "key_path"]

_LOCATION_RE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_END_RE = re.compile(r"\s*\(at end of document\)\s*$")


def key_path(table: str | None, index: int | None = None, key: str | None = None) -> str:
    """A human-readable name for a place in a document: ``table[index].key``.

    ``key_path("mysql_servers", 2, "port") == "mysql_servers[2].port"``;
    ``key_path("mysql_variables", None, "interfaces") == "mysql_variables.interfaces"``;
    ``key_path("", None, "rules_dir") == "rules_dir"``. Indexes are 0-based.
    """
    out = table or ""
    if index is not None:
        out += f"[{index}]"
    if key is not None:
        out = f"{out}.{key}" if out else key
    return out


class TomlDoc:
    """A parsed TOML document: ``data`` (what tomllib returned), ``path`` and ``text``.

    ``line_of()`` locates keys and table headers; ``error()`` builds a
    :class:`ConfigError` naming this file, the line and the key.
    """

    __slots__ = ("data", "path", "text", "_located")

    def __init__(self, data: dict[str, Any], path: Path | str, text: str) -> None:
        self.data = data
        self.path = Path(path)
        self.text = text
        self._located: _Located | None = None

    def __repr__(self) -> str:
        return f"TomlDoc(path={str(self.path)!r}, tables={sorted(self.data)!r})"

    def line_of(self, table: str, index: int | None = None, key: str | None = None) -> int | None:
        """The 1-based line of ``key = ...`` in a table, else the table's header line.

        ``table`` is the dotted table name (``""`` for the top level), ``index``
        picks the ``index``-th (0-based) element of an array of tables
        (``[[table]]`` or ``table = [{...}, ...]``) and is ``None`` for a plain
        ``[table]``. ``key`` may be dotted (``"a.b"``) for a dotted key. When
        ``key`` is ``None`` or is not found, the header line is returned (for
        ``index=None`` on an array of tables: its first element's header); when
        neither is known, ``None``. Never raises.
        """
        if self._located is None:
            self._located = _Located(self.text)
        return self._located.line_of(table, index, key)

    def error(
        self,
        message: str,
        table: str = "",
        index: int | None = None,
        key: str | None = None,
    ) -> ConfigError:
        """A ConfigError for ``table[index].key`` in this file (to be raised by the caller)."""
        return ConfigError(
            message,
            file=str(self.path),
            line=self.line_of(table, index, key),
            key=key_path(table, index, key) or None,
        )


def load_toml(path: Path | str) -> TomlDoc:
    """Read and parse a TOML file.

    Raises :class:`ConfigError` (with ``file``, and ``line`` when tomllib says
    where) when the file cannot be read, is not UTF-8, or is not valid TOML.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", file=str(path)) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError("file is not valid UTF-8", file=str(path), line=line) from exc
    return parse_toml(text, path)


def parse_toml(text: str, path: Path | str = "<string>") -> TomlDoc:
    """Parse TOML text; ``path`` is only used to name the source in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        line: int | None = None
        m = _LOCATION_RE.search(message)
        if m:
            line = int(m.group(1))
            message = message[: m.start()] + f" (column {m.group(2)})"
        else:
            m = _END_RE.search(message)
            if m:
                # "at end of document": point at the last line that has content.
                message = message[: m.start()] + " (at end of file)"
                line = _last_content_line(text)
        raise ConfigError(f"invalid TOML: {message}", file=str(path), line=line) from exc
    return TomlDoc(data, path, text)


def _last_content_line(text: str) -> int:
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip():
            return i + 1
    return max(len(lines), 1)


def _normalize_name(name: str) -> str:
    """Canonical form of a dotted name as written by callers: no spaces around dots."""
    return ".".join(part.strip() for part in name.split(".")) if name else ""


class _LineParser(Parser):
    """tomlkit's parser, noting the 1-based line where each value, table and inline table starts
    (by the identity of the item it returns)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.lines: dict[int, int] = {}
        self._newlines = [i for i, ch in enumerate(text) if ch == "\n"]

    def _line(self) -> int:
        return bisect.bisect_right(self._newlines, self._idx - 1) + 1

    def _parse_key_value(self, *args: Any, **kwargs: Any) -> Any:
        line = self._line()  # the indent before the key never spans lines
        key, value = super()._parse_key_value(*args, **kwargs)
        self.lines.setdefault(id(value), line)
        return key, value

    def _parse_inline_table(self, *args: Any, **kwargs: Any) -> Any:
        line = self._line()
        table = super()._parse_inline_table(*args, **kwargs)
        self.lines.setdefault(id(table), line)
        return table

    def _parse_table(self, *args: Any, **kwargs: Any) -> Any:
        line = self._line()  # at the header's "["
        key, result = super()._parse_table(*args, **kwargs)
        self.lines.setdefault(id(_named_table(result)), line)
        return key, result


def _named_table(item: Any) -> Any:
    """The table a header names, in what ``_parse_table`` returns: the first element of an array of
    tables, or the end of the chain of implicit super-tables of a dotted name (``[a.b.c]``)."""
    if isinstance(item, AoT):
        item = item.body[0]
    while isinstance(item, Table) and item.is_super_table():
        children = [v for _, v in item.value.body if isinstance(v, (Table, AoT))]
        if not children:
            break
        item = children[-1]
        if isinstance(item, AoT):
            item = item.body[-1]
    return item


class _Located:
    """The line numbers of one document's items (from tomlkit's parse of its text)."""

    def __init__(self, text: str) -> None:
        parser = _LineParser(text)
        try:
            self.document: Container | None = parser.parse()
        except Exception:  # noqa: BLE001 - tomllib accepted the text; without tomlkit's parse there are no lines
            self.document = None
        self.lines = parser.lines

    def line_of(self, table: str, index: int | None, key: str | None) -> int | None:
        if self.document is None:
            return None
        node: Any = self._walk(self.document, _normalize_name(table).split(".") if table else [])
        if node is None:
            return None
        if isinstance(node, (AoT, Array)):
            try:
                node = node[0 if index is None else index] if isinstance(node, Array) else \
                    node.body[0 if index is None else index]
            except IndexError:
                return None
        elif index is not None:
            return None
        if key is not None:
            line = self._first_line(self._walk(node, _normalize_name(key).split(".")))
            if line is not None:
                return line
        return self._first_line(node)

    @staticmethod
    def _walk(node: Any, parts: list[str]) -> Any:
        """The item at the dotted path ``parts`` under ``node`` (a container or a table), else None."""
        for part in parts:
            if isinstance(node, (Table, InlineTable)):
                node = node.value
            elif isinstance(node, OutOfOrderTableProxy):  # one table written in several places
                node = node._internal_container  # noqa: SLF001 - the live items, in file order
            if not isinstance(node, Container):
                return None
            try:
                node = node.item(part)
            except Exception:  # noqa: BLE001 - tomlkit raises NonExistentKey (a KeyError)
                return None
        return node

    def _first_line(self, node: Any) -> int | None:
        """The line an item starts on; for an implicit table (``a.b.c = 1`` defines ``a`` and ``a.b``),
        the first line of its contents."""
        if node is None:
            return None
        line = self.lines.get(id(node))
        if line is not None:
            return line
        if isinstance(node, AoT):
            return self._first_line(node.body[0]) if node.body else None
        if isinstance(node, OutOfOrderTableProxy):
            tables = node._tables  # noqa: SLF001 - its parts, in file order
            return self._first_line(tables[0]) if tables else None
        if isinstance(node, (Table, InlineTable)):
            lines = [self._first_line(v) for _, v in node.value.body if isinstance(v, Item)]
            found = [line for line in lines if line is not None]
            return min(found) if found else None
        return None
