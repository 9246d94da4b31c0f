"""TOML loading with line numbers for error messages.

``tomllib`` parses TOML into plain dicts and forgets where each value came
from. Configuration errors must name file, line and key, so this module keeps
the source text next to the parsed data and answers "on which line is key K of
the N-th ``[[table]]``?" with a small scanner over the text.

The scanner understands what a valid TOML file may contain: ``[table]`` and
``[[array.of.tables]]`` headers (bare, quoted and dotted names), ``key = value``
lines (bare, quoted and dotted keys), single- and multi-line strings of both
kinds (so a ``[x]`` or ``k = v`` inside a string is not mistaken for a header
or a key), comments, multi-line arrays, and inline tables (including an array
of inline tables, ``servers = [{...}, {...}]``, whose elements are indexed like
``[[servers]]``). It runs only on text that ``tomllib`` accepted; where it
cannot tell, :meth:`TomlDoc.line_of` answers ``None`` rather than guessing.

Usage::

    doc = load_toml(path)            # ConfigError with file and line on a syntax error
    servers = doc.data.get("mysql_servers", [])
    raise doc.error("must be 1..65535", "mysql_servers", 2, "port")
    # -> ConfigError: "conf.toml:14: mysql_servers[2].port: must be 1..65535"
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from myrouter.errors import ConfigError

__all__ = ["TomlDoc", "load_toml", "parse_toml", "key_path"]

_LOCATION_RE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_END_RE = re.compile(r"\s*\(at end of document\)\s*$")

# Characters allowed in a bare TOML key.
_BARE_KEY_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
)


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

    __slots__ = ("data", "path", "text", "_headers", "_keys")

    def __init__(self, data: dict[str, Any], path: Path | str, text: str) -> None:
        self.data = data
        self.path = Path(path)
        self.text = text
        scanner = _Scanner(text)
        scanner.run()
        self._headers = scanner.headers
        self._keys = scanner.keys

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
        table = _normalize_name(table)
        if key is not None:
            line = self._keys.get((table, index, _normalize_name(key)))
            if line is not None:
                return line
        line = self._headers.get((table, index))
        if line is None and index is None:
            # The table as a whole, written as an array of tables: its first element.
            line = self._headers.get((table, 0))
        return line

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


class _Scanner:
    """One pass over valid TOML text, recording header and key line numbers.

    ``headers[(table, index)]`` and ``keys[(table, index, dotted_key)]`` map to
    1-based lines. Table and key parts are joined with ``.`` after unquoting
    (a quoted part that itself contains a dot cannot be told apart: best effort).
    The first occurrence of a location wins.
    """

    def __init__(self, text: str) -> None:
        self.s = text
        self.n = len(text)
        self.i = 0
        self.line = 1
        self.headers: dict[tuple[str, int | None], int] = {}
        self.keys: dict[tuple[str, int | None, str], int] = {}
        self._aot_count: dict[str, int] = {}
        # Current table context: name and array index (None for a plain table).
        self._table = ""
        self._index: int | None = None

    # -- low-level helpers -------------------------------------------------

    def _peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < self.n else ""

    def _advance(self, k: int = 1) -> None:
        end = min(self.i + k, self.n)
        self.line += self.s.count("\n", self.i, end)
        self.i = end

    def _skip_ws(self, newlines: bool) -> None:
        """Skip spaces/tabs (and newlines and comments when ``newlines``)."""
        while self.i < self.n:
            c = self.s[self.i]
            if c in " \t\r":
                self._advance()
            elif c == "\n" and newlines:
                self._advance()
            elif c == "#" and newlines:
                self._skip_comment()
            else:
                return

    def _skip_comment(self) -> None:
        end = self.s.find("\n", self.i)
        self._advance((self.n if end < 0 else end) - self.i)

    def _skip_to_eol(self) -> None:
        """Skip the rest of the line (trailing spaces and comment), and the newline."""
        end = self.s.find("\n", self.i)
        self._advance((self.n if end < 0 else end + 1) - self.i)

    def _read_string(self) -> str:
        """Consume a string of any of the four kinds at ``i``; return its raw content."""
        s = self.s
        if s.startswith('"""', self.i) or s.startswith("'''", self.i):
            delim = s[self.i : self.i + 3]
            self._advance(3)
            start = self.i
            while self.i < self.n:
                if delim == '"""' and s[self.i] == "\\":
                    self._advance(2)
                    continue
                if s.startswith(delim, self.i):
                    content = s[start : self.i]
                    self._advance(3)
                    # Up to two extra quotes right before the closing delimiter
                    # belong to the content.
                    extra = 0
                    while extra < 2 and self._peek() == delim[0]:
                        self._advance()
                        extra += 1
                    return content + delim[0] * extra
                self._advance()
            return s[start:]
        quote = s[self.i]
        self._advance()
        start = self.i
        out = []
        while self.i < self.n:
            c = s[self.i]
            if c == quote:
                out.append(s[start : self.i])
                self._advance()
                return "".join(out)
            if c == "\n":  # cannot happen in valid TOML; stop at the line end
                break
            if quote == '"' and c == "\\":
                out.append(s[start : self.i])
                out.append(self._peek(1))
                self._advance(2)
                start = self.i
                continue
            self._advance()
        out.append(s[start : self.i])
        return "".join(out)

    def _read_key(self) -> list[str]:
        """Consume a (possibly dotted, possibly quoted) key; return its parts."""
        parts: list[str] = []
        while self.i < self.n:
            self._skip_ws(newlines=False)
            c = self._peek()
            if c in ('"', "'"):
                parts.append(self._read_string())
            else:
                start = self.i
                while self.i < self.n and self.s[self.i] in _BARE_KEY_CHARS:
                    self._advance()
                if self.i == start:
                    break  # not a key character: stop (invalid, or end of key)
                parts.append(self.s[start : self.i])
            self._skip_ws(newlines=False)
            if self._peek() == ".":
                self._advance()
                continue
            break
        return parts

    # -- recording ---------------------------------------------------------

    def _record_key(self, table: str, index: int | None, parts: list[str], line: int) -> None:
        if not parts:
            return
        self.keys.setdefault((table, index, ".".join(parts)), line)
        # A dotted key ``a.b.c = 1`` in table T also defines key ``c`` of table
        # ``T.a.b`` (and ``b.c`` of ``T.a``); the first such line stands in as
        # that implicit table's header. (Inside an element of an array of
        # tables only the keys of T are recorded.)
        for split in range(1, len(parts)):
            sub = ".".join(parts[:split])
            # ``a`` (and ``a.b``) as keys of T: where that sub-table starts.
            self.keys.setdefault((table, index, sub), line)
            sub_table = f"{table}.{sub}" if table else sub
            if index is None:
                self.keys.setdefault((sub_table, None, ".".join(parts[split:])), line)
                self.headers.setdefault((sub_table, None), line)

    # -- grammar -----------------------------------------------------------

    def run(self) -> None:
        while self.i < self.n:
            self._skip_ws(newlines=True)
            if self.i >= self.n:
                return
            c = self._peek()
            if c == "[":
                self._header()
            else:
                before = self.i
                self._keyval(self._table, self._index)
                if self.i == before:
                    # Something the scanner does not understand: skip the line
                    # rather than loop.
                    self._skip_to_eol()

    def _header(self) -> None:
        line = self.line
        is_array = self.s.startswith("[[", self.i)
        self._advance(2 if is_array else 1)
        parts = self._read_key()
        self._skip_ws(newlines=False)
        self._advance(2 if is_array else 1)  # "]]" or "]"
        name = ".".join(parts)
        if is_array:
            index = self._aot_count.get(name, 0)
            self._aot_count[name] = index + 1
        else:
            index = None
        self.headers.setdefault((name, index), line)
        self._table, self._index = name, index
        self._skip_to_eol()

    def _keyval(self, table: str, index: int | None, record: bool = True) -> None:
        line = self.line
        parts = self._read_key()
        self._skip_ws(newlines=False)
        if not parts or self._peek() != "=":
            return
        self._advance()
        if record:
            self._record_key(table, index, parts, line)
        self._skip_ws(newlines=False)
        name = ".".join(parts)
        full = f"{table}.{name}" if table else name
        # Tables nested inside an element of an array of tables would need
        # compound indexes: they are scanned but not recorded (best effort).
        self._value(full, record=record and index is None)

    def _value(self, name: str, record: bool) -> None:
        """Consume one value stored under the dotted ``name``."""
        c = self._peek()
        if c in ('"', "'"):
            self._read_string()
        elif c == "[":
            self._array(name, record)
        elif c == "{":
            self._inline_table(name, None, record)
        else:
            # number, bool, date/time: runs until a delimiter
            while self.i < self.n and self.s[self.i] not in ",]}#\n":
                self._advance()

    def _array(self, name: str, record: bool) -> None:
        """An array value; inline tables in it are elements 0, 1, ... of ``name``."""
        self._advance()  # "["
        element = 0
        while self.i < self.n:
            self._skip_ws(newlines=True)
            c = self._peek()
            if c == "]":
                self._advance()
                return
            if c == ",":
                self._advance()
                continue
            before = self.i
            if c == "{":
                self._inline_table(name, element, record)
            else:
                self._value(name, record=False)
            element += 1
            if self.i == before:
                self._advance()  # never loop on an unexpected character

    def _inline_table(self, name: str, index: int | None, record: bool) -> None:
        if record:
            self.headers.setdefault((name, index), self.line)
        self._advance()  # "{"
        while self.i < self.n:
            self._skip_ws(newlines=True)
            c = self._peek()
            if c == "}":
                self._advance()
                return
            if c == ",":
                self._advance()
                continue
            before = self.i
            self._keyval(name, index, record)
            if self.i == before:
                self._advance()
