"""The Classifier's digest-keyed LRU cache, its statistics, and robustness."""

from __future__ import annotations

import dataclasses
import logging
import random

import pytest

import myrouter.routing.classifier as classifier_module
from myrouter.routing.classifier import Classifier, StatementKind, classify_statement
from myrouter.routing.digest import digest


def test_hits_and_misses_are_per_digest() -> None:
    c = Classifier()
    c.classify("SELECT c FROM sbtest1 WHERE id=1")
    c.classify("SELECT c FROM sbtest1 WHERE id=2")  # same digest
    c.classify("SELECT c FROM sbtest2 WHERE id=2")  # another digest
    s = c.statistics()
    assert (s.hits, s.misses, s.size, s.evictions) == (1, 2, 2, 0)


def test_a_hit_does_not_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    c = Classifier()
    first = c.classify("SELECT c FROM sbtest1 WHERE id=1 FOR UPDATE")
    calls = []

    def no_parse(*args, **kwargs):  # noqa: ANN002, ANN003
        calls.append(args)
        raise AssertionError("sqlglot must not run on a cache hit")

    monkeypatch.setattr(classifier_module._DIALECT, "parse", no_parse)
    second = c.classify("SELECT c FROM sbtest1 WHERE id=99 FOR UPDATE")
    assert second is first
    assert calls == []


def test_given_digest_hash_is_the_key() -> None:
    c = Classifier()
    _, h = digest("SELECT 1 FROM t")
    a = c.classify("SELECT 1 FROM t", h)
    # the caller vouches for the hash: the cached classification is returned
    b = c.classify("DELETE FROM t", h)
    assert b is a and b.kind is StatementKind.READ
    assert c.statistics().hits == 1


def test_lru_evicts_the_least_recently_used() -> None:
    c = Classifier(cache_size=2)
    c.classify("SELECT a FROM t")  # A
    c.classify("SELECT b FROM t")  # B
    c.classify("SELECT a FROM t")  # A hit -> B is now the oldest
    c.classify("SELECT c FROM t")  # C -> evicts B
    s = c.statistics()
    assert (s.size, s.evictions, s.hits, s.misses) == (2, 1, 1, 3)
    c.classify("SELECT a FROM t")  # still cached
    assert c.statistics().hits == 2
    c.classify("SELECT b FROM t")  # was evicted
    assert c.statistics().misses == 4


def test_statistics_is_a_frozen_snapshot() -> None:
    c = Classifier(cache_size=5)
    s = c.statistics()
    c.classify("SELECT 1")
    assert s.misses == 0 and c.statistics().misses == 1
    assert s.capacity == 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.hits = 3  # type: ignore[misc]


def test_unparsable_counter() -> None:
    c = Classifier()
    c.classify("garbage here !!")
    c.classify("garbage here !!")  # a hit: counted once
    c.classify("SELECT 1")
    assert c.statistics().unparsable == 1


def test_clear_keeps_counters() -> None:
    c = Classifier()
    c.classify("SELECT 1")
    c.clear()
    assert c.statistics().size == 0 and c.statistics().misses == 1
    c.classify("SELECT 1")
    assert c.statistics().misses == 2


def test_cache_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Classifier(cache_size=0)


def test_an_internal_error_becomes_an_unparsable_write_with_a_trace(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(sql: str):  # noqa: ANN202
        raise RuntimeError("boom")

    monkeypatch.setattr(classifier_module, "classify_statement", broken)
    c = Classifier()
    with caplog.at_level(logging.ERROR, logger="myrouter.routing.classifier"):
        result = c.classify("SELECT 1")
    assert result.kind is StatementKind.WRITE and result.is_unparsable
    assert result.parse_error == "internal classifier error: RuntimeError: boom"
    assert c.statistics().internal_errors == 1
    assert any("internal classifier error" in r.getMessage() for r in caplog.records)


def test_sqlglot_internal_exceptions_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # sqlglot raised IndexError/AttributeError/RecursionError on some inputs when fuzzed
    for exc in (IndexError("list index out of range"), AttributeError("x"), RecursionError("deep")):
        def raising(*args, _e=exc, **kwargs):  # noqa: ANN002, ANN003, ANN202
            raise _e

        monkeypatch.setattr(classifier_module._DIALECT, "parse", raising)
        c = classify_statement("SELECT * FROM t")
        assert c.kind is StatementKind.WRITE and c.is_unparsable
        assert c.parse_error is not None and c.parse_error.startswith(type(exc).__name__)


def test_deep_nesting_is_unparsable_not_a_crash() -> None:
    c = classify_statement("SELECT " + "(" * 3000 + "1" + ")" * 3000)
    assert c.is_unparsable and c.kind is StatementKind.WRITE
    assert c.parse_error is not None and "RecursionError" in c.parse_error


_WORDS = ["SELECT", "FROM", "WHERE", "(", ")", ",", "'a'", "1", "@x", "@@y", "`t`", "t", "INTO", "FOR", "UPDATE",
          "SET", "=", ":=", "UNION", "WITH", "AS", "JOIN", "ON", "VALUES", "INSERT", "DELETE", "CREATE", "TABLE",
          "DROP", "ALTER", "*", "-", "/*", "*/", "/*!", "--", "#", '"', "'", "`", "LIMIT", "?", "NULL", ";", "SHOW",
          "LOCK", "IN", "SHARE", "MODE", "CALL", "DO", "HANDLER", "XA", "KILL", "PREPARE", "EXECUTE", "USE",
          "EXPLAIN", "ANALYZE", "TRANSACTION", "NAMES", "GLOBAL", "SESSION", "REPLACE", "LOAD", "DATA", "OUTFILE",
          "BEGIN", "START", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "UNLOCK", "TABLES", "DESCRIBE", "FLUSH",
          "GET_LOCK(", "LAST_INSERT_ID(", "NEXT VALUE FOR", "STATEMENT", "PASSWORD", "ROLE", "\\", "{", "}"]


def test_random_statements_never_raise() -> None:
    rng = random.Random(1234)
    c = Classifier(cache_size=500)
    for i in range(3000):
        if i % 3 == 0:
            sql = "".join(chr(rng.randint(0, 0x2FF)) for _ in range(rng.randint(0, 30)))
        else:
            sql = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 14)))
        result = c.classify(sql)
        assert isinstance(result.kind, StatementKind)
        if result.is_unparsable:
            # WRITE, or DDL when another statement of a multi-statement is DDL
            assert result.kind >= StatementKind.WRITE and result.parse_error
    assert c.statistics().internal_errors == 0
