"""stats.recording, the statement statistics' kernel: the compiled module is the one digests.py builds
on under ``make test``, and its ``record`` counts as its Python source does, on any sequence of
statements (entries, their order of last use, eviction, sums beyond 64 bits, the enabled switches,
slow statements, names outside ProxySQL's list). tests/admin/test_admin_digests.py tests the
classes digests.py exports."""

from __future__ import annotations

import importlib.machinery

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from myrouter.protocol import kernels
from myrouter.stats import digests
from myrouter.stats.digests import COMMAND_NAMES, LATENCY_BUCKETS_US

COMPILED = digests._recording
PYTHON = kernels.load_python("stats.recording")
# as tests/protocol/feeding.py's: repeatable (derandomized, no example database), no deadline
PROPERTIES = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.too_slow])


def test_the_compiled_recorders_are_the_ones_used():
    if kernels.pure_forced():
        pytest.skip(f"{kernels.PURE_ENV} is set: the Python form is the one asked for")
    assert isinstance(COMPILED.__loader__, importlib.machinery.ExtensionFileLoader), kernels.describe()
    assert issubclass(digests.DigestStats, COMPILED.DigestRecorder)
    assert issubclass(digests.CommandCounters, COMPILED.CommandRecorder)
    assert "stats.recording compiled" in kernels.describe()
    assert PYTHON is not COMPILED and PYTHON.__file__.endswith("recording.py")


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.5

    def __call__(self) -> float:
        return self.now


# big values: sums past 2**64 (affected_rows is a length-encoded integer of up to 8 bytes)
NUMBERS = st.integers(0, 2_000_000) | st.sampled_from([0, 100, 101, 10_000_000, 2**63 - 1, 2**64 - 1, 2**70])
STATEMENTS = st.lists(st.one_of(
    st.tuples(st.just("record"), st.integers(-1, 2), st.sampled_from(["", "test"]), st.sampled_from(["app", "u"]),
              st.sampled_from(["127.0.0.1", ""]), st.integers(0, 5), NUMBERS, NUMBERS, NUMBERS,
              st.integers(0, 3)),
    st.tuples(st.just("enabled"), st.booleans()),
    st.tuples(st.just("evict_above"), st.integers(0, 6)),
), max_size=60)


def _digest_state(recorder):
    return ([(key, e.digest_text, e.count_star, e.first_seen, e.last_seen, e.sum_time, e.min_time, e.max_time,
              e.sum_rows_affected, e.sum_rows_sent) for key, e in recorder._entries.items()],
            recorder.evicted, recorder.enabled, recorder._max_digests)


def _run_digests(module, statements, max_digests):
    clock = Clock()
    recorder = module.DigestRecorder(clock, max_digests)
    seen = []
    for op, *args in statements:
        if op == "record":
            *args, seconds = args
            clock.now += seconds
            recorder.record(*args[:5], f"SELECT {args[4]}", *args[5:])
        elif op == "enabled":
            recorder.enabled = args[0]
        else:
            recorder._evict_above(args[0])
        seen.append(_digest_state(recorder))
    return seen


@PROPERTIES
@given(statements=STATEMENTS, max_digests=st.integers(1, 6))
def test_digest_record_same_in_both_forms(statements, max_digests):
    assert _run_digests(COMPILED, statements, max_digests) == _run_digests(PYTHON, statements, max_digests)


NAMES = st.sampled_from(COMMAND_NAMES) | st.sampled_from(["START TRANSACTION", "lock", "Desc", "with", "xa"]) | \
    st.text(max_size=12)
COMMANDS = st.lists(st.one_of(
    st.tuples(st.just("record"), NAMES, NUMBERS | st.sampled_from(LATENCY_BUCKETS_US)),
    st.tuples(st.just("enabled"), st.booleans()),
    st.tuples(st.just("slow_query_us"), st.sampled_from([0, 100, 1_000_000])),
), max_size=60)


def _run_commands(module, commands):
    recorder = module.CommandRecorder(1_000_000, COMMAND_NAMES, LATENCY_BUCKETS_US, digests._command_key)
    seen = []
    for op, *args in commands:
        if op == "record":
            recorder.record(*args)
        else:
            setattr(recorder, op, args[0])
        seen.append(([(name, c.total_time_us, c.total_cnt, list(c.buckets)) for name, c in recorder._counters.items()],
                     list(recorder._by_name), recorder.slow_queries, recorder.slow_query_us, recorder.enabled))
    return seen


@PROPERTIES
@given(commands=COMMANDS)
def test_command_record_same_in_both_forms(commands):
    assert _run_commands(COMPILED, commands) == _run_commands(PYTHON, commands)
