"""Digest text normalization, hashing, and statement splitting."""

from __future__ import annotations

import random
import sys
from hashlib import blake2b

import pytest

from myrouter.routing.digest import (
    digest,
    digest_hash,
    digest_text,
    format_digest,
    parse_digest,
    split_statements,
)


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("SELECT c FROM sbtest1 WHERE id=4711", "SELECT c FROM sbtest1 WHERE id=?"),
        ("  SELECT   c\n\tFROM sbtest1\r\n WHERE id = 4711 ; ", "SELECT c FROM sbtest1 WHERE id = ?"),
        ("SELECT 1;;", "SELECT ?"),
        # literals
        ("SELECT 'a', \"b\", 12, 1.5, .5, 1e10, 1.5E-3, 0x1F, 0b101, X'0F', B'01', N'x', _utf8mb4'y'",
         "SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"),
        ("SELECT 'it''s', 'a\\'b', 'c\\\\'", "SELECT ?, ?, ?"),
        ("SELECT \"say \"\"hi\"\"\"", "SELECT ?"),
        # identifiers with digits are not literals
        ("SELECT t1.c2, @v3, @@x4, `9col`, 1abc FROM db5.t6", "SELECT t1.c2, @v3, @@x4, `9col`, 1abc FROM db5.t6"),
        # NULL/TRUE/FALSE/DEFAULT stay
        ("SELECT a FROM t WHERE b IS NULL AND c = TRUE AND d <> FALSE", "SELECT a FROM t WHERE b IS NULL AND c = TRUE AND d <> FALSE"),
        # signs: unary belongs to the number, binary stays an operator
        ("SELECT -1, +2, x = -3, a-4, a - 5, b - -6, (-7), f(-8)", "SELECT ?, ?, x = ?, a-?, a - ?, b - ?, (?), f(?)"),
        ("SELECT * FROM t WHERE a = 1 AND -2 < b", "SELECT * FROM t WHERE a = ? AND ? < b"),
        ("SELECT @a-1, `x`-1, t.c-1", "SELECT @a-?, `x`-?, t.c-?"),
        # lists and rows
        ("SELECT * FROM t WHERE id IN (1, 2, 3)", "SELECT * FROM t WHERE id IN (?,...)"),
        ("SELECT * FROM t WHERE id IN (1,2)", "SELECT * FROM t WHERE id IN (?,...)"),
        ("SELECT * FROM t WHERE id IN (1)", "SELECT * FROM t WHERE id IN (?)"),
        ("SELECT * FROM t WHERE id IN ('a', NULL, -1, ?)", "SELECT * FROM t WHERE id IN (?,...)"),
        ("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), (3, NULL)", "INSERT INTO t (a, b) VALUES (?,...),..."),
        ("INSERT INTO t VALUES (1),(2),(3)", "INSERT INTO t VALUES (?),..."),
        ("INSERT INTO t VALUES (1, DEFAULT)", "INSERT INTO t VALUES (?,...)"),
        ("INSERT INTO t VALUES (1, NOW())", "INSERT INTO t VALUES (?, NOW())"),
        ("SELECT * FROM t WHERE (a, b) IN ((1, 2), (3, 4))", "SELECT * FROM t WHERE (a, b) IN ((?,...),...)"),
        ("SELECT CONCAT('a', 'b'), SLEEP(1)", "SELECT CONCAT(?,...), SLEEP(?)"),
        ("SELECT * FROM t LIMIT 10, 20", "SELECT * FROM t LIMIT ?, ?"),
        # comments dropped; hints and executable comments kept
        ("SELECT /* c */ 1 -- d\n FROM t # e\n WHERE a = 1", "SELECT ? FROM t WHERE a = ?"),
        ("SELECT/*x*/1", "SELECT ?"),
        ("/* leading */ SELECT 1", "SELECT ?"),
        ("SELECT /*+ MAX_EXECUTION_TIME(1000) */ * FROM t", "SELECT /*+ MAX_EXECUTION_TIME(1000) */ * FROM t"),
        ("/*!40101 SET NAMES utf8 */", "/*!40101 SET NAMES utf8 */"),
        ("/*!40103 SET TIME_ZONE='+00:00' */", "/*!40103 SET TIME_ZONE=? */"),
        ("/*M!100100 SET x=1 */", "/*M!100100 SET x=? */"),
        ("SELECT 1 --no-space-is-not-a-comment", "SELECT ? --no-space-is-not-a-comment"),
        ("SELECT 5--1", "SELECT ?-?"),
        # quoted identifiers are kept verbatim (comment markers and quotes inside too)
        ("SELECT `a--b`, `c'd`, `e``f`, `#g` FROM `t 1`", "SELECT `a--b`, `c'd`, `e``f`, `#g` FROM `t 1`"),
        # strings hide comment markers, semicolons and quotes
        ("SELECT '--', '/*', '#', ';', '`' FROM t", "SELECT ?, ?, ?, ?, ? FROM t"),
        # multi-statements are digested whole
        ("SELECT 1; SELECT 'a'", "SELECT ?; SELECT ?"),
        # unterminated things run to the end and never crash
        ("SELECT 'unterminated", "SELECT ?"),
        ("SELECT \"unterminated", "SELECT ?"),
        ("SELECT 'ends with backslash\\", "SELECT ?"),
        ("SELECT 1 /* unterminated comment", "SELECT ?"),
        ("SELECT `unterminated", "SELECT `unterminated"),
        ("SELECT /*+ unterminated hint", "SELECT /*+ unterminated hint"),
        ("", ""),
        ("   ", ""),
        ("-- only a comment", ""),
        # placeholders stay
        ("SELECT c FROM sbtest1 WHERE id=?", "SELECT c FROM sbtest1 WHERE id=?"),
    ],
)
def test_digest_text(sql: str, expected: str) -> None:
    assert digest_text(sql) == expected
    assert digest(sql)[0] == expected
    # digesting a digest changes nothing (so rules can be written from digest texts)
    assert digest_text(expected) == expected


SAME_SHAPE = [
    ("SELECT c FROM sbtest1 WHERE id=4711", "SELECT c FROM sbtest1 WHERE id=42"),
    ("SELECT c FROM sbtest1 WHERE id=4711", "SELECT c FROM sbtest1 WHERE id=-42"),
    ("SELECT * FROM t WHERE name = 'bob'", "SELECT * FROM t WHERE name = 'it''s \\' complicated'"),
    ("SELECT * FROM t WHERE id IN (1, 2, 3)", "SELECT * FROM t WHERE id IN (4, 5, 6, 7, 8, 9)"),
    ("INSERT INTO t VALUES (1, 'a')", "INSERT INTO t VALUES (2, 'b')"),
    ("INSERT INTO t VALUES (1, 'a'), (2, 'b')", "INSERT INTO t VALUES (3, 'c'), (4, 'd'), (5, 'e')"),
    ("SELECT * FROM t WHERE a = 1 -- why", "SELECT * FROM t /* because */ WHERE a = 2"),
    ("SELECT * FROM t WHERE a = 1", "  SELECT *\n FROM t\tWHERE a = 1;"),
    ("SELECT * FROM t WHERE x = 1.5", "SELECT * FROM t WHERE x = 2e10"),
    ("SELECT * FROM t WHERE x = 0x1F", "SELECT * FROM t WHERE x = 'a'"),
]


@pytest.mark.parametrize("a, b", SAME_SHAPE)
def test_same_shape_same_digest(a: str, b: str) -> None:
    assert digest(a) == digest(b)


DIFFERENT_SHAPE = [
    ("SELECT c FROM sbtest1 WHERE id=1", "SELECT c FROM sbtest2 WHERE id=1"),
    ("SELECT c FROM t WHERE id=1", "SELECT d FROM t WHERE id=1"),
    ("SELECT * FROM t WHERE id IN (1)", "SELECT * FROM t WHERE id IN (1, 2)"),
    ("SELECT * FROM t WHERE a IS NULL", "SELECT * FROM t WHERE a IS NOT NULL"),
    ("SELECT * FROM t", "select * from t"),  # case is kept (documented)
    ("SELECT * FROM t", "SELECT /*+ NO_ICP(t) */ * FROM t"),  # hints are kept
    ("SELECT * FROM t", "SELECT * FROM t FOR UPDATE"),
    ("SELECT a-1 FROM t", "SELECT a FROM t"),
    ("SET autocommit=0", "SET autocommit=ON"),
]


@pytest.mark.parametrize("a, b", DIFFERENT_SHAPE)
def test_different_shape_different_digest(a: str, b: str) -> None:
    assert digest(a)[1] != digest(b)[1]
    assert digest(a)[0] != digest(b)[0]


def test_hash_is_blake2b_of_the_text_and_stable() -> None:
    text, h = digest("SELECT c FROM sbtest1 WHERE id=4711")
    expected = int.from_bytes(blake2b(text.encode(), digest_size=8).digest(), "little")
    assert h == expected == digest_hash(text)
    # a fixed value: the hash must not change between runs or releases
    assert format_digest(digest_hash("SELECT ?")) == format_digest(
        int.from_bytes(blake2b(b"SELECT ?", digest_size=8).digest(), "little")
    )
    assert 0 <= h < 1 << 64


def test_hash_of_non_ascii_and_lone_surrogates() -> None:
    assert digest("SELECT 'é' FROM `tablé`")[0] == "SELECT ? FROM `tablé`"
    text, h = digest("SELECT `\udcff`")  # undecodable bytes surfaced as surrogates must not raise
    assert 0 <= h < 1 << 64 and "\udcff" in text


def test_format_and_parse_digest() -> None:
    assert format_digest(0x1D2CC217C860282) == "0x01D2CC217C860282"
    assert format_digest(0) == "0x0000000000000000"
    assert parse_digest("0x01D2CC217C860282") == 0x1D2CC217C860282
    assert parse_digest("0x1d2cc217c860282") == 0x1D2CC217C860282
    assert parse_digest(12345) == 12345
    assert parse_digest("12345") == 12345
    for bad in ("0x", "xyz", "0x11112222333344445", "", "-1"):
        with pytest.raises(ValueError):
            parse_digest(bad)
    for bad_type in (True, 1.5, None, [1]):
        with pytest.raises(TypeError):
            parse_digest(bad_type)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        parse_digest(1 << 64)


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("SELECT 1", ["SELECT 1"]),
        ("SELECT 1;", ["SELECT 1"]),
        ("SELECT 1; SELECT 2", ["SELECT 1", "SELECT 2"]),
        ("SELECT ';'; SELECT \";\"; SELECT `;`", ["SELECT ';'", 'SELECT ";"', "SELECT `;`"]),
        ("SELECT 1 -- ;\n; SELECT 2 # ;\n", ["SELECT 1 -- ;", "SELECT 2 # ;"]),
        ("SELECT /* ; */ 1; ;; SELECT 2", ["SELECT /* ; */ 1", "SELECT 2"]),
        ("SELECT 'it''s;'; SELECT 'a\\';'", ["SELECT 'it''s;'", "SELECT 'a\\';'"]),
        ("", []),
        ("  ;  ; ", []),
        ("SELECT 'unterminated; SELECT 2", ["SELECT 'unterminated; SELECT 2"]),
        # stored programs are sent whole: their semicolons do not split
        ("CREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END", ["CREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END"]),
        ("/* x */ create definer=`root`@`%` trigger t before insert on x for each row begin set new.a=1; end;",
         ["/* x */ create definer=`root`@`%` trigger t before insert on x for each row begin set new.a=1; end"]),
        ("BEGIN NOT ATOMIC SELECT 1; SELECT 2; END", ["BEGIN NOT ATOMIC SELECT 1; SELECT 2; END"]),
        ("BEGIN; SELECT 1; COMMIT", ["BEGIN", "SELECT 1", "COMMIT"]),
    ],
)
def test_split_statements(sql: str, expected: list[str]) -> None:
    assert split_statements(sql) == expected


def test_split_without_compound_awareness() -> None:
    assert split_statements("CREATE PROCEDURE p() BEGIN SELECT 1; END", compound_aware=False) == [
        "CREATE PROCEDURE p() BEGIN SELECT 1",
        "END",
    ]


_ALPHABET = (
    "abcSELECTFROMWHEREselect0123456789 \t\n\r'\"`\\/*+-#!M;(),.?@=<>%_xXbBnNé\x00\u2028"
)
_FRAGMENTS = ["'", '"', "`", "/*", "*/", "/*!", "/*M!", "/*+", "--", "-- ", "#", "\\", "0x", "0b", "1e",
              "(", ")", ",", ";", "?", "-", "+", "NULL", "IN (", "VALUES (", "@", "@@", "_utf8'", "N'", "X'"]


def _random_sql(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 60)))
    return " ".join(rng.choice(_FRAGMENTS + ["SELECT", "a", "1", "'x'"]) for _ in range(rng.randint(0, 30)))


def test_random_input_never_raises_and_is_normalized() -> None:
    rng = random.Random(20240601)
    for _ in range(20000):
        sql = _random_sql(rng)
        text, h = digest(sql)
        assert 0 <= h < 1 << 64
        assert text == text.strip()
        assert "  " not in text and "\n" not in text and "\t" not in text
        assert not text.endswith(";")
        split_statements(sql)


def test_random_bytes_decoded_never_raise() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(0, 80)))
        sql = raw.decode("utf-8", "surrogateescape")
        text, h = digest(sql)
        assert 0 <= h < 1 << 64


def test_long_inputs_are_linear_enough() -> None:
    # a 10k-row insert and a 50k-element IN list digest quickly and fold
    rows = ",".join(f"({i}, 'name{i}', NULL)" for i in range(10000))
    assert digest(f"INSERT INTO t VALUES {rows}")[0] == "INSERT INTO t VALUES (?,...),..."
    in_list = ",".join(str(i) for i in range(50000))
    assert digest(f"SELECT * FROM t WHERE id IN ({in_list})")[0] == "SELECT * FROM t WHERE id IN (?,...)"
    # pathological: many quotes and parentheses
    assert digest("(" * 5000 + "'" * 5001)[0].startswith("(")


# -- the callback-free substitution for statements that hold numbers only (digest._substituted) ----------


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import myrouter.routing.digest  # noqa: E402

_digest_module = sys.modules["myrouter.routing.digest"]


def _scanned(sql: str) -> str:
    """The general scanner's substitution, which the shortcut must reproduce exactly."""
    return _digest_module._SCAN.sub(_digest_module._repl, sql)


@pytest.mark.parametrize("sql", [
    "SELECT c FROM sbtest1 WHERE id=4711",
    "SELECT 0x1F, 0b101, 1e10, 12abc, a1, $1, @2, t1 FROM t2 WHERE x=3;",
    "SELECT c FROM t WHERE k=0xZZ OR j=0b12 OR l=1e OR m=7$",
    "UPDATE sbtest3 SET k=k WHERE id=99",
])
def test_a_statement_with_numbers_only_takes_the_shortcut_with_the_scanners_text(sql) -> None:
    assert _digest_module._NEEDS_SCAN.search(sql) is None  # the shortcut is taken
    assert _digest_module._substituted(sql) == _scanned(sql)


@pytest.mark.parametrize("sql", [
    "SELECT 'a1'", "SELECT `t1`", "SELECT 1 -- 2\n", "SELECT a-1", "SELECT +1", "SELECT .5",
    "SELECT x FROM t WHERE id IN (1, 2)", "SELECT 1 # 2", "SELECT /* 3 */ 4", 'SELECT "5"',
])
def test_a_statement_with_anything_else_is_scanned(sql) -> None:
    assert _digest_module._NEEDS_SCAN.search(sql) is not None
    assert _digest_module._substituted(sql) == _scanned(sql)


_SQLISH = st.lists(st.sampled_from(list("0123456789abexXbBnN_$@ =,;<>*?!\n\t")
                                   + ["SELECT ", "WHERE ", "id", "0x", "0b", "1e", "e-", "'", "(", "-", "."]),
                   max_size=30).map("".join)


@given(_SQLISH)
@settings(max_examples=2000, deadline=None)
def test_the_shortcut_gives_the_scanners_text_for_any_statement_it_takes(sql) -> None:
    assert _digest_module._substituted(sql) == _scanned(sql)
