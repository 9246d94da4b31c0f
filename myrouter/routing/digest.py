"""Statement digests: normalized text and a stable 64-bit hash, in one pass.

A digest identifies the *shape* of a statement, independent of its literal
values, so that ``SELECT c FROM sbtest1 WHERE id=4711`` and ``... id=42``
share one digest.  The router uses it as the key of the classification cache
(see :mod:`myrouter.routing.classifier`), query rules match ``digest`` (the
hash) and ``match_digest`` (a regex on the text), and the stats tables group
by it, as ProxySQL's ``stats_mysql_query_digest`` does.

Normalization rules (decided here, relied upon by the classifier cache):

* String literals (``'..'`` and ``".."``, with ``''``/``\\'`` escapes and the
  ``N``/``_charset``/``X``/``B`` prefixes), numbers (integer, decimal,
  exponent, ``0x..`` hex, ``0b..`` bit) become ``?``.  A sign in unary
  position belongs to the number: ``id = -1`` gives ``id = ?`` while ``a-1``
  (binary minus) gives ``a-?``.
* ``NULL``, ``TRUE``, ``FALSE`` and ``DEFAULT`` are kept as written when they
  stand alone (``IS NULL`` is structure, not a value; this matches ProxySQL's
  default ``mysql-query_digests_replace_null=false``).  Inside a folded list
  (next point) they count as values.
* A parenthesised list of two or more values is folded to ``(?,...)``
  (ProxySQL style), so ``IN (1,2,3)`` and ``IN (4, 5)`` share a digest; a
  single value stays ``(?)``.  Consecutive value rows, as in multi-row
  ``VALUES (1,'a'),(2,'b')``, fold to the first row followed by ``,...``:
  ``VALUES (?,...),...``.
* ``--`` (followed by whitespace), ``#`` and ``/* */`` comments are dropped.
  Optimizer hints ``/*+ ... */`` are kept verbatim.  MySQL/MariaDB executable
  comments ``/*!NNNNN ... */`` and ``/*M!NNNNNN ... */`` are kept (their
  content is executed by the server); their content is normalized like the
  rest of the statement.
* Whitespace runs become one space; leading/trailing whitespace and trailing
  semicolons are removed.
* Case is kept as written (like ProxySQL's default
  ``mysql-query_digests_lowercase=false``): ``select`` and ``SELECT`` are
  different digests.  ORMs and drivers generate consistently-cased SQL, and
  identifiers can be case-sensitive on the server, so folding case would
  merge statements that are not the same.  ``match_digest`` regexes are
  case-insensitive by default (``re_modifiers='CASELESS'``) anyway.
* Backtick-quoted identifiers are kept as written (digits in them are not
  literals).

The text is produced by one ``re.sub`` pass over the statement (one compiled
regex; the callback runs only for literals, comments and quoted identifiers),
then ``' '.join(text.split())`` folds whitespace.  This was measured faster
than a hand-written character loop (see ``benchmarks/bench_classify.py``).
Malformed input (unterminated strings, quoted identifiers or comments) never
raises or loops: an unterminated string or comment extends to the end of the
text.

The hash is the first 8 bytes of BLAKE2b over the UTF-8 digest text, read as a
little-endian unsigned integer: stable across processes and machines (unlike
Python's salted ``hash``).  It is *not* ProxySQL's SpookyHash value: digests
are not comparable with a ProxySQL instance's.  :func:`format_digest` prints
it as ProxySQL does (``0x%016X``).
"""

from __future__ import annotations

import re
from hashlib import blake2b

__all__ = [
    "Digester",
    "digest",
    "digest_text",
    "digest_hash",
    "format_digest",
    "parse_digest",
    "split_statements",
]

# ---------------------------------------------------------------------------
# Pattern pieces.  Quantifiers are possessive / groups atomic (Python >= 3.11)
# so that a failed attempt never backtracks into a long string literal.

# A single-quoted / double-quoted string, with '' / "" and backslash escapes.
# An unterminated string runs to the end of the text (``\\?\Z`` also accepts
# a dangling final backslash).
_SQ = r"'[^'\\]*+(?:(?:\\[\s\S]|'')[^'\\]*+)*+(?:'|\\?\Z)"
_DQ = r'"[^"\\]*+(?:(?:\\[\s\S]|"")[^"\\]*+)*+(?:"|\\?\Z)'
# A number body: hex, bit, integer/decimal/exponent; never followed by an
# identifier character (``1abc`` is an identifier in MySQL).
_NUM_BODY = (
    r"(?>0[xX][0-9a-fA-F]++|0[bB][01]++"
    r"|\d++(?:\.\d*+)?(?:[eE][-+]?\d++)?|\.\d++(?:[eE][-+]?\d++)?)(?![\w$])"
)
# One value inside a foldable list: a string (optionally prefixed N'', X'',
# B'', _charset''), a signed number, a ``?`` placeholder, NULL/TRUE/FALSE/
# DEFAULT.  "Not preceded by an identifier character" keeps ``t1`` or
# ``x'..'`` inside longer names out.
_LIT = (
    r"(?>" + _SQ + "|" + _DQ
    + r"|(?<![\w$])(?:[nNxXbB]|_[A-Za-z0-9]++)" + _SQ
    + r"|[-+]?+\s*+" + _NUM_BODY
    + r"|\?|(?i:NULL|TRUE|FALSE|DEFAULT)(?![\w$]))"
)
_ROW = r"\(\s*+" + _LIT + r"(?:\s*+,\s*+" + _LIT + r")*+\s*+\)"

# The scanner.  Every top-level branch starts with one literal character, so
# that ``sre`` builds a first-character set for the whole pattern and skips
# uninteresting text (letters, spaces, operators) in its C search loop instead
# of trying every branch at every position: this made the pass about 2.5x
# faster.  Branches that need "not preceded by an identifier character" check
# it with a two-character lookbehind after consuming their first character.
# ``_KIND[m.lastindex]`` says what a match is (the outer group of a branch
# closes last, so it is ``lastindex``).
K_PAREN, K_STR, K_NUM, K_QID, K_COMMENT, K_KEEP = range(6)
_NOT_AFTER_IDENT = r"(?<![\w$@.].)"
_BRANCHES: list[tuple[str, str, int]] = [
    # a parenthesised value list, optionally followed by more value rows;
    # inner group A: values after the first, inner group B: the further rows
    ("(", r"\s*+" + _LIT + r"(\s*+,\s*+" + _LIT + r"(?:\s*+,\s*+" + _LIT + r")*+)?\s*+\)"
     r"((?:\s*+,\s*+" + _ROW + r")++)?", K_PAREN),
    ("'", _SQ[1:], K_STR),
    ('"', _DQ[1:], K_STR),
    ("_", r"(?<![\w$].)[A-Za-z0-9]++" + _SQ, K_STR),
    *[(c, r"(?<![\w$].)" + _SQ, K_STR) for c in "nNxXbB"],
    ("`", r"[^`]*+(?:``[^`]*+)*+(?:`|\Z)", K_QID),
    ("/", r"\*(?![+!]|M!)[\s\S]*?(?:\*/|\Z)", K_COMMENT),
    ("/", r"\*(?:\+[\s\S]*?(?:\*/|\Z)|M?!\d*+)", K_KEEP),
    ("-", r"-(?=\s|\Z)[^\n]*+", K_COMMENT),
    ("#", r"[^\n]*+", K_COMMENT),
    ("0", _NOT_AFTER_IDENT + r"(?:[xX][0-9a-fA-F]++|[bB][01]++)(?![\w$])", K_NUM),
    *[(c, _NOT_AFTER_IDENT + r"\d*+(?:\.\d*+)?(?:[eE][-+]?\d++)?(?![\w$])", K_NUM)
      for c in "0123456789"],
    (".", _NOT_AFTER_IDENT + r"\d++(?:[eE][-+]?\d++)?(?![\w$])", K_NUM),
    ("-", _NOT_AFTER_IDENT + r"\s*+" + _NUM_BODY, K_NUM),
    ("+", _NOT_AFTER_IDENT + r"\s*+" + _NUM_BODY, K_NUM),
]


def _build_scanner() -> tuple[re.Pattern[str], tuple[int | None, ...], int]:
    parts = []
    kinds: list[int | None] = [None]
    paren_group = 0
    for first, rest, kind in _BRANCHES:
        branch = re.escape(first) + "(" + rest + ")"
        inner = re.compile(branch).groups - 1
        if kind == K_PAREN:
            paren_group = len(kinds)
        kinds.append(kind)
        kinds.extend([None] * inner)
        parts.append(branch)
    pattern = re.compile("|".join(parts))
    assert pattern.groups == len(kinds) - 1
    return pattern, tuple(kinds), paren_group


_SCAN, _KIND, _G_PAREN = _build_scanner()

# A statement without any of the characters that open a string (every string prefix needs a quote),
# a quoted name, a comment, a value list, a signed number or a fraction can match only the scanner's
# unsigned-number branches, whose callback gives "?" each time: the same text comes from those
# branches alone, with a replacement string instead of a Python callback per literal (the common
# point select, ``SELECT c FROM sbtest1 WHERE id=4711``). ``_substituted`` chooses.
_NEEDS_SCAN = re.compile(r"['\"`(/#+\-.]")
_NUMBERS = re.compile("|".join(re.escape(first) + "(?:" + rest + ")" for first, rest, kind in _BRANCHES
                               if kind == K_NUM and first not in ".-+"))


def _substituted(sql: str) -> str:
    """``sql`` with its literals replaced and comments dropped (before whitespace folding)."""
    if _NEEDS_SCAN.search(sql) is None:
        return _NUMBERS.sub("?", sql)
    return _SCAN.sub(_repl, sql)
_G_PAREN_MORE_VALUES = _G_PAREN + 1
_G_PAREN_MORE_ROWS = _G_PAREN + 2

# Keywords after which a sign is unary (``SELECT -1``, ``WHERE a = 1 AND -2``).
_UNARY_AFTER_WORDS = frozenset(
    (
        "SELECT", "WHERE", "AND", "OR", "NOT", "XOR", "ON", "WHEN", "THEN",
        "ELSE", "BY", "LIMIT", "OFFSET", "VALUES", "VALUE", "IN", "SET",
        "BETWEEN", "INTERVAL", "RETURN", "HAVING", "LIKE", "IS", "CASE",
        "DIV", "MOD", "DEFAULT", "DO", "ROWS", "RANGE", "PRECEDING",
        "FOLLOWING", "ALL", "ANY", "SOME", "DISTINCT", "REGEXP", "RLIKE",
        "ESCAPE", "USING", "AS", "OF", "CALL", "KILL", "SOUNDS",
    )
)
_UNARY_AFTER_CHARS = frozenset("=(,<>!*/%+-|&^~:;")


def _sign_is_unary(text: str, pos: int) -> bool:
    """Whether the sign at ``text[pos]`` is unary (part of a number)."""
    i = pos - 1
    while i >= 0 and text[i].isspace():
        i -= 1
    if i < 0:
        return True
    ch = text[i]
    if ch in _UNARY_AFTER_CHARS:
        return True
    if ch.isalnum() or ch in "_$":
        end = i + 1
        while i >= 0 and (text[i].isalnum() or text[i] in "_$"):
            i -= 1
        if i >= 0 and text[i] in "@.`":
            return False  # a variable, qualified or quoted name
        return text[i + 1 : end].upper() in _UNARY_AFTER_WORDS
    return False


def _repl(m: re.Match[str]) -> str:
    kind = _KIND[m.lastindex]  # type: ignore[index]
    if kind == K_NUM:
        s = m.group()
        if s[0] in "+-" and not _sign_is_unary(m.string, m.start()):
            # a binary operator: keep it (and its spacing), replace the number
            body = s[1:]
            return s[0] + body[: len(body) - len(body.lstrip())] + "?"
        return "?"
    if kind == K_STR:
        return "?"
    if kind == K_COMMENT:
        return " "
    if kind == K_PAREN:
        row = "(?)" if m.start(_G_PAREN_MORE_VALUES) < 0 else "(?,...)"
        return row if m.start(_G_PAREN_MORE_ROWS) < 0 else row + ",..."
    return m.group()  # quoted identifiers, hints, executable-comment openers


def digest_text(sql: str) -> str:
    """The normalized digest text of ``sql`` (see the module docstring)."""
    out = _substituted(sql)
    out = " ".join(out.split())
    if out.endswith(";"):
        out = out.rstrip("; ")
    return out


def digest_hash(text: str) -> int:
    """The 64-bit hash of a digest text (BLAKE2b, 8 bytes, little-endian)."""
    h = _HASHES.get(text)
    if h is None:
        h = _hash_and_remember(text)
    return h


# Digest texts repeat (that is what they are for): their hashes are remembered, since a dict
# lookup costs a fraction of encoding and hashing the text again. Bounded by count and length.
_HASHES: dict[str, int] = {}
_HASHES_MAX = 8192
_HASHES_MAX_TEXT = 2048


def _hash_and_remember(text: str) -> int:
    h = int.from_bytes(blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
    if len(text) <= _HASHES_MAX_TEXT:
        if len(_HASHES) >= _HASHES_MAX:
            _HASHES.clear()
        _HASHES[text] = h
    return h


def digest(sql: str) -> tuple[str, int]:
    """Return ``(digest_text, digest_hash)`` for ``sql``.

    >>> digest("SELECT c FROM sbtest1 WHERE id=4711")[0]
    'SELECT c FROM sbtest1 WHERE id=?'
    """
    text = digest_text(sql)
    return text, digest_hash(text)


class Digester:
    """:func:`digest` under ProxySQL's ``mysql-query_digests_*`` limits.

    * ``max_query_length`` (``query_digests_max_query_length``): only the first that many
      characters of a statement are digested (a multi-megabyte statement costs no more than
      that); statements that agree up to there share a digest, as in ProxySQL. Such a
      statement is :meth:`capped`: what the proxy remembers per digest (its classification,
      a session's routing plan) does not hold for it, so callers do not cache it.
    * ``lowercase`` (``query_digests_lowercase``): the digest text is lower case, so
      ``SELECT`` and ``select`` share a digest.
    * ``max_digest_length`` (``query_digests_max_digest_length``): the digest text kept
      (statistics, query log, ``match_digest``) is cut to that many characters; the hash is
      that of the whole text, so statements that differ after the cut keep their own digests.
    """

    __slots__ = ("lowercase", "max_query_length", "max_digest_length")

    def __init__(self, *, lowercase: bool = False, max_query_length: int = 65000,
                 max_digest_length: int = 2048) -> None:
        self.lowercase = lowercase
        self.max_query_length = max_query_length
        self.max_digest_length = max_digest_length

    @classmethod
    def from_vars(cls, v) -> Digester:
        """The digester ``mysql_variables`` ``v`` ask for."""
        return cls(lowercase=v.query_digests_lowercase, max_query_length=v.query_digests_max_query_length,
                   max_digest_length=v.query_digests_max_digest_length)

    def capped(self, sql: str) -> bool:
        """Whether only a prefix of ``sql`` is digested (it is longer than ``max_query_length``)."""
        return len(sql) > self.max_query_length

    def __call__(self, sql: str) -> tuple[str, int]:
        """``(digest_text, digest_hash)`` of ``sql`` under these limits."""
        if len(sql) > self.max_query_length:
            sql = sql[: self.max_query_length]
        text = digest_text(sql)
        if self.lowercase:
            text = text.lower()
        h = digest_hash(text)
        if len(text) > self.max_digest_length:
            text = text[: self.max_digest_length]
        return text, h


def format_digest(value: int) -> str:
    """Format a digest hash as ProxySQL prints it: ``0x%016X``."""
    return "0x%016X" % value


def parse_digest(value: str | int) -> int:
    """Parse a digest as written in rules/stats (``'0x1A2B...'`` or an int)."""
    if isinstance(value, bool):
        raise TypeError("a digest is an integer or a '0x...' hex string, not a boolean")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        s = value.strip()
        if not re.fullmatch(r"0[xX][0-9a-fA-F]{1,16}|[0-9]+", s):
            raise ValueError(f"not a digest: {value!r} (expected '0x' and up to 16 hex digits)")
        n = int(s, 16) if s[:2] in ("0x", "0X") else int(s)
    else:
        raise TypeError(f"a digest is an integer or a '0x...' hex string, not {type(value).__name__}")
    if not 0 <= n < 1 << 64:
        raise ValueError(f"digest {value!r} is out of the 64-bit range")
    return n


# ---------------------------------------------------------------------------
# Statement splitting

_SPLIT = re.compile(
    r"'[^'\\]*(?:(?:\\[\s\S]|'')[^'\\]*)*(?:'|\\?\Z)"
    r'|"[^"\\]*(?:(?:\\[\s\S]|"")[^"\\]*)*(?:"|\\?\Z)'
    r"|`[^`]*(?:``[^`]*)*(?:`|\Z)"
    r"|/\*[\s\S]*?(?:\*/|\Z)"
    r"|--(?=\s|\Z)[^\n]*|\#[^\n]*"
    r"|(;)"
)

# Statements whose body contains semicolons that do not end the statement
# (stored programs sent in one piece, MariaDB anonymous blocks).
_COMPOUND = re.compile(
    r"\s*(?:CREATE\s+(?:OR\s+REPLACE\s+)?(?:DEFINER\s*=\s*\S+\s+)?"
    r"(?:(?:AGGREGATE\s+)?FUNCTION|PROCEDURE|TRIGGER|EVENT|PACKAGE)\b"
    r"|BEGIN\s+NOT\s+ATOMIC\b)",
    re.IGNORECASE,
)


def split_statements(sql: str, *, compound_aware: bool = True) -> list[str]:
    """Split a multi-statement text on ``;`` outside quotes and comments.

    Each piece is stripped of surrounding whitespace; empty pieces are
    dropped (comment-only pieces are kept: the caller decides).  With
    ``compound_aware`` (the default) a text that starts with ``CREATE
    PROCEDURE/FUNCTION/TRIGGER/EVENT`` or ``BEGIN NOT ATOMIC`` is returned as
    one statement, since the semicolons in a stored program body do not end
    it (clients send such bodies whole, using a client-side DELIMITER).
    """
    if ";" not in sql:
        s = sql.strip()
        return [s] if s else []
    if compound_aware and _COMPOUND.match(_strip_leading_comments(sql)):
        s = sql.strip().rstrip(";").strip()
        return [s] if s else []
    parts: list[str] = []
    start = 0
    for m in _SPLIT.finditer(sql):
        if m.lastindex == 1:
            piece = sql[start : m.start()].strip()
            if piece:
                parts.append(piece)
            start = m.end()
    piece = sql[start:].strip()
    if piece:
        parts.append(piece)
    return parts


_LEADING_COMMENTS = re.compile(r"(?:\s+|/\*(?![+!]|M!)[\s\S]*?(?:\*/|\Z)|--(?=\s|\Z)[^\n]*|\#[^\n]*)*")


def _strip_leading_comments(sql: str) -> str:
    return sql[_LEADING_COMMENTS.match(sql).end() :]  # type: ignore[union-attr]
