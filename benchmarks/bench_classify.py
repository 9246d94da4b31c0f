"""Microbenchmarks of the routing hot path.

Prints microseconds per statement, over a mix of sysbench-like statements, for:

  (a) digest only
  (b) digest + cached classification + evaluation of 20 rules (cache hit)
  (c) classification on a cache miss (sqlglot parse)

and, for the record, a hand-written character-loop digest (a simplified one:
literals, comments and whitespace only, no list folding) against the regex
scanner that ``myrouter.routing.digest`` uses.

Run:  python benchmarks/bench_classify.py [--repeat N]

Each figure is the best of several repeats (the least disturbed by other
load on the machine).
"""

from __future__ import annotations

import argparse
import platform
import sys
import timeit
from pathlib import Path

# this checkout's myrouter, not the one the shared venv was installed from (an editable install elsewhere)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from myrouter.routing import (
    Classifier,
    QueryRule,
    RuleContext,
    RuleSet,
    classify_statement,
    digest,
)

STATEMENTS = [
    "SELECT c FROM sbtest1 WHERE id=4711",
    "SELECT c FROM sbtest3 WHERE id=120",
    "SELECT c FROM sbtest1 WHERE id BETWEEN 4711 AND 4810",
    "SELECT SUM(k) FROM sbtest1 WHERE id BETWEEN 4711 AND 4810",
    "SELECT c FROM sbtest1 WHERE id BETWEEN 4711 AND 4810 ORDER BY c",
    "SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN 4711 AND 4810 ORDER BY c",
    "UPDATE sbtest1 SET k=k+1 WHERE id=4711",
    "UPDATE sbtest1 SET c='83868641912-28773972837-60736120486-75162659906-27563526494-20381887404-"
    "41576422241-93426793964-56405065102-33518432330' WHERE id=4711",
    "DELETE FROM sbtest1 WHERE id=4711",
    "INSERT INTO sbtest1 (id, k, c, pad) VALUES (4711, 4992, '83868641912-28773972837-60736120486-"
    "75162659906-27563526494-20381887404-41576422241-93426793964-56405065102-33518432330', "
    "'67847967377-48000963322-62604785301-91415491898-96926520291')",
    "SELECT id FROM sbtest1 WHERE id=4711 FOR UPDATE",
    "BEGIN",
    "COMMIT",
]


def twenty_rules() -> RuleSet:
    """The shipped read/write split plus 17 rules of the usual kinds, none of
    which match sysbench traffic (so every rule is looked at)."""
    rules = [
        QueryRule(rule_id=100, active=1, match_kind=("locking_read",), destination_hostgroup=0, apply=1),
        QueryRule(rule_id=110, active=1, match_kind=("read",),
                  match_flags=("side_effect", "user_variable_assign", "user_variable_read", "select_into",
                               "sql_calc_found_rows", "diagnostics"),
                  destination_hostgroup=0, apply=1),
        QueryRule(rule_id=120, active=1, match_kind=("read",), destination_hostgroup=1, apply=1),
    ]
    for i in range(1, 8):
        rules.append(QueryRule(rule_id=i, active=1, match_digest=rf"^SELECT .* FROM report_{i}\b",
                               destination_hostgroup=2))
    for i in range(8, 12):
        rules.append(QueryRule(rule_id=i, active=1, username=f"batch{i}", destination_hostgroup=2))
    for i in range(12, 15):
        rules.append(QueryRule(rule_id=i, active=1, match_tables=(f"payments_{i}",), destination_hostgroup=0,
                               apply=1))
    for i in range(15, 18):
        rules.append(QueryRule(rule_id=i, active=1, match_pattern=rf"^DELETE FROM audit_{i}\b",
                               error_msg="no", apply=1))
    assert len(rules) == 20
    return RuleSet(rules)


def _handwritten_digest(sql: str) -> str:
    """A minimal character-loop normalizer, for comparison only."""
    out: list[str] = []
    i = 0
    n = len(sql)
    prev_ident = False
    while i < n:
        ch = sql[i]
        if ch in "'\"":
            j = i + 1
            while j < n:
                if sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == ch:
                    if j + 1 < n and sql[j + 1] == ch:
                        j += 2
                        continue
                    break
                j += 1
            out.append("?")
            i = j + 1
            prev_ident = False
        elif ch.isdigit() and not prev_ident:
            j = i
            while j < n and (sql[j].isalnum() or sql[j] == "."):
                j += 1
            out.append("?")
            i = j
        elif ch == "/" and sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
            out.append(" ")
        elif ch.isspace():
            j = i
            while j < n and sql[j].isspace():
                j += 1
            out.append(" ")
            i = j
            prev_ident = False
        else:
            out.append(ch)
            prev_ident = ch.isalnum() or ch in "_$"
            i += 1
    return "".join(out).strip()


def best_us(func, number: int, repeat: int) -> float:  # noqa: ANN001
    return min(timeit.repeat(func, number=number, repeat=repeat)) / number * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--number", type=int, default=2000, help="loops over the statement mix per repeat")
    args = parser.parse_args(argv)
    stmts = STATEMENTS
    k = len(stmts)
    number = args.number

    def run_digest() -> None:
        for s in stmts:
            digest(s)

    classifier = Classifier()
    rules = twenty_rules()
    for s in stmts:  # warm the caches
        classifier.classify(s)

    def run_hit() -> None:
        for s in stmts:
            text, h = digest(s)
            cls = classifier.classify(s, h)
            rules.evaluate(RuleContext("sbtest", "sbtest", "127.0.0.1", "127.0.0.1", 6033, 0, h, text, s, cls))

    def run_miss() -> None:
        for s in stmts:
            classify_statement(s)

    def run_handwritten() -> None:
        for s in stmts:
            _handwritten_digest(s)

    a = best_us(run_digest, number, args.repeat) / k
    b = best_us(run_hit, number, args.repeat) / k
    c = best_us(run_miss, max(1, number // 20), args.repeat) / k
    hw = best_us(run_handwritten, number, args.repeat) / k
    sel = "SELECT c FROM sbtest1 WHERE id=4711"
    a1 = best_us(lambda: digest(sel), number * 10, args.repeat)
    s = classifier.statistics()

    print(f"python {platform.python_version()} on {platform.machine()}, {k} statements in the mix")
    print(f"(a) digest only:                                   {a:7.2f} us/statement")
    print(f"    digest of {sel!r}: {a1:.2f} us")
    print(f"(b) digest + cached classification + 20 rules:     {b:7.2f} us/statement")
    print(f"(c) classification on a cache miss (sqlglot):      {c:7.2f} us/statement")
    print(f"    hand-written char-loop digest (simplified):    {hw:7.2f} us/statement (vs (a))")
    print(f"classifier cache: hits={s.hits} misses={s.misses} size={s.size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
