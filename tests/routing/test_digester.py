"""Digester: digest() under mysql-query_digests_lowercase / _max_query_length / _max_digest_length."""

from __future__ import annotations

from myrouter.routing.digest import Digester, digest


def test_defaults_are_the_plain_digest() -> None:
    sql = "SELECT c FROM sbtest1 WHERE id = 4711"
    assert Digester()(sql) == digest(sql)
    assert not Digester().capped(sql)


def test_lowercase_folds_the_text_and_the_hash() -> None:
    d = Digester(lowercase=True)
    assert d("SELECT 1 FROM T") == d("select 2 from t")
    assert d("SELECT 1 FROM T")[0] == "select ? from t"
    assert Digester()("SELECT 1 FROM T") != Digester()("select 2 from t")


def test_only_the_first_max_query_length_characters_are_digested() -> None:
    d = Digester(max_query_length=40)
    head = "SELECT a FROM t WHERE id IN (1,2,3,4,5,"
    long_a = head + ",".join(map(str, range(100_000))) + ")"
    long_b = head + ",".join(map(str, range(50_000))) + ") FOR UPDATE"
    assert d.capped(long_a) and d.capped(long_b) and not d.capped(head[:40])
    assert d(long_a) == d(long_b) == digest(long_a[:40])


def test_digest_text_is_cut_but_the_hash_is_the_whole_texts() -> None:
    d = Digester(max_digest_length=16)
    text_a, hash_a = d("SELECT 1 AS first_column")
    text_b, hash_b = d("SELECT 1 AS first_columns")
    assert text_a == text_b == "SELECT ? AS firs"
    assert hash_a != hash_b
    assert hash_a == digest("SELECT 1 AS first_column")[1]


def test_from_vars() -> None:
    from myrouter.config import MySQLVariables

    d = Digester.from_vars(MySQLVariables(query_digests_lowercase=True, query_digests_max_query_length=100,
                                          query_digests_max_digest_length=50))
    assert (d.lowercase, d.max_query_length, d.max_digest_length) == (True, 100, 50)
