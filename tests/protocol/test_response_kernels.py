"""response_scan, the tracker's kernel: the compiled module is the one that runs under ``make test``,
and it behaves as its Python source does, observable for observable, on any bytes in any split
(valid responses, long packets, MORE_RESULTS, DEPRECATE_EOF on and off, ERR among the rows,
garbage). test_response.py and test_response_properties.py run against both forms too."""

from __future__ import annotations

import importlib.machinery
import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from myrouter.protocol import kernels, response
from myrouter.protocol.constants import MAX_PACKET_PAYLOAD as MAX
from myrouter.protocol.messages import OK, column_definition, encode_eof, encode_err, text_row
from myrouter.protocol.packets import frame

from .feeding import PROPERTIES, cut_positions, mutated, pieces, time_limit
from .test_response_properties import DEOF, EOFC, GARBAGE, KINDS, MORE, SAMPLES, result_sets

COMPILED = response._scan
PYTHON = kernels.load_python("protocol.response_scan")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PUBLIC = ("done", "local_infile", "in_packet", "status", "status_seen", "next_seq", "error", "last_ok", "rows",
          "results", "prepare_ok", "columns", "kind", "deprecate_eof", "cursor", "row_kind")


# --------------------------------------------------------------------------- which form runs


def test_the_compiled_tracker_is_the_one_imported():
    """Under ``make test`` (scripts/bootstrap.sh builds it) the tests exercise the compiled kernel,
    not silently the Python fallback."""
    if kernels.pure_forced():
        pytest.skip(f"{kernels.PURE_ENV} is set: the Python form is the one asked for")
    assert isinstance(COMPILED.__loader__, importlib.machinery.ExtensionFileLoader), kernels.describe()
    assert response.ResponseTracker is COMPILED.ResponseTracker
    assert "protocol.response_scan compiled" in kernels.describe()
    assert PYTHON is not COMPILED and PYTHON.__file__.endswith("response_scan.py")


def _describe_in_subprocess(env_extra: dict[str, str]) -> str:
    env = {**os.environ, **env_extra, "PYTHONPATH": ROOT}
    code = ("from myrouter.protocol import kernels\n"
            "for name in kernels.KERNELS: kernels.load(name)\n"
            "print(kernels.describe())")
    out = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_pure_python_env_var_selects_the_python_files():
    assert "protocol.response_scan" in kernels.KERNELS and "protocol.packet_decode" in kernels.KERNELS
    assert _describe_in_subprocess({kernels.PURE_ENV: "1"}) == \
        ", ".join(f"{name} Python ({kernels.PURE_ENV} is set)" for name in kernels.KERNELS)


def test_every_kernel_runs_compiled_from_its_own_sources():
    """Every .pxd under myrouter/ is a kernel that scripts/bootstrap.sh built from the sources beside it
    (a stale one would warn: an error here)."""
    if kernels.pure_forced():
        pytest.skip(f"{kernels.PURE_ENV} is set: no compiled module is loaded")
    assert _describe_in_subprocess({}) == ", ".join(f"{name} compiled" for name in kernels.KERNELS)


def test_a_stale_compiled_module_is_not_used(monkeypatch):
    """A compiled module built from other sources than those beside it (a developer edited the .py
    and did not rebuild): a RuntimeWarning, and the Python file runs."""
    if kernels.pure_forced():
        pytest.skip(f"{kernels.PURE_ENV} is set: no compiled module is loaded")
    monkeypatch.setattr(kernels, "source_sha256", lambda name: "0" * 64)
    monkeypatch.delitem(sys.modules, "myrouter.protocol.response_scan")
    monkeypatch.setattr(kernels, "_forms", {})
    monkeypatch.setattr(kernels, "_pure_modules", {})
    with pytest.warns(RuntimeWarning, match="built from other sources"):
        module = kernels.load("protocol.response_scan")
    assert module.__file__.endswith("response_scan.py")
    assert kernels.describe() == "protocol.response_scan Python (the compiled module is stale: run scripts/bootstrap.sh)"


def test_version_says_which_form_runs():
    out = subprocess.run([sys.executable, "-m", "myrouter", "--version"], env={**os.environ, "PYTHONPATH": ROOT},
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    expected = "protocol.response_scan Python" if kernels.pure_forced() else "protocol.response_scan compiled"
    assert expected in out.stdout


# --------------------------------------------------------------------------- the same behaviour


def _run(tracker, chunks, kinds_of_input):
    """Feed ``chunks`` as a relay does (resuming after a LOCAL INFILE request); the observations
    after each call: what it returned or raised, and every public attribute."""
    seen = []
    for chunk, as_type in zip(chunks, kinds_of_input):
        data = chunk if as_type is bytes else as_type(chunk)
        try:
            n = tracker.feed(data)
        except Exception as exc:  # noqa: BLE001 - the exception itself is what is compared
            seen.append(("raised", type(exc), str(exc)))
            break
        seen.append(("fed", n, *(getattr(tracker, name) for name in PUBLIC)))
        if tracker.local_infile:
            tracker.resume_after_local_infile()
            seen.append(("resumed", *(getattr(tracker, name) for name in PUBLIC)))
        elif n < len(chunk) or tracker.done:
            break
    try:
        tracker.resume_after_local_infile()
    except RuntimeError as exc:
        seen.append(("resume refused", str(exc)))
    return seen


def assert_same(kind, caps, cursor, row_kind, chunks, types):
    with time_limit(20):
        compiled = _run(COMPILED.ResponseTracker(kind, caps, cursor=cursor, row_kind=row_kind), chunks, types)
        python = _run(PYTHON.ResponseTracker(kind, caps, cursor=cursor, row_kind=row_kind), chunks, types)
    assert compiled == python


INPUT_TYPES = st.sampled_from([bytes, bytearray, memoryview])


@st.composite
def long_rows(draw):
    """A text result set whose rows include payloads of 16 MiB - 1 and more (split in several packets),
    ended by an EOF, an OK-style terminator or an ERR."""
    deprecate_eof = draw(st.booleans())
    caps = DEOF if deprecate_eof else EOFC
    seq = 1
    parts = [frame(b"\x01", 1)]
    seq = 2
    parts.append(frame(column_definition("c"), seq))
    seq += 1
    if not deprecate_eof:
        parts.append(frame(encode_eof(0), seq))
        seq += 1
    for size in draw(st.lists(st.sampled_from([1, 250, MAX - 1, MAX, MAX + 5, 2 * MAX]), min_size=1, max_size=2)):
        payload = b"\x05" + b"r" * (size - 1) if size > 1 else b"\x00"
        wire = frame(payload, seq)
        seq += (len(payload) // MAX) + 1
        parts.append(wire)
    end = draw(st.sampled_from(["eof", "err", "more"]))
    if end == "err":
        parts.append(frame(encode_err(1064, "boom", "42000"), seq))
    else:
        flags = 2 | (MORE if end == "more" else 0)
        parts.append(frame(OK(status=flags).encode(caps, header=0xFE) if deprecate_eof else encode_eof(flags), seq))
        if end == "more":
            parts.append(frame(OK(status=2).encode(caps), seq + 1))
    return caps, b"".join(parts)


@st.composite
def rows_then_error(draw):
    """A result set whose rows are cut by an ERR (the server failed mid-result), then garbage."""
    deprecate_eof = draw(st.booleans())
    caps = DEOF if deprecate_eof else EOFC
    payloads = [b"\x02", column_definition("a"), column_definition("b")]
    if not deprecate_eof:
        payloads.append(encode_eof(0))
    payloads += [text_row([b"x" * draw(st.integers(0, 300)), None]) for _ in range(draw(st.integers(0, 5)))]
    payloads.append(encode_err(1317, "Query execution was interrupted", "70100"))
    tail = draw(st.binary(max_size=20))
    return caps, b"".join(frame(p, i + 1) for i, p in enumerate(payloads)) + tail


def _cuts_and_types(draw, data: bytes):
    cuts = draw(cut_positions(data), label="cuts")
    chunks = pieces(data, cuts)
    types = draw(st.lists(INPUT_TYPES, min_size=len(chunks), max_size=len(chunks)), label="input types")
    return chunks, types


@PROPERTIES
@given(built=result_sets(), tail=st.binary(max_size=12), row_kind=st.integers(0, 2), data=st.data())
def test_same_on_valid_results_with_more_results(built, tail, row_kind, data):
    caps, wire = built[0], built[1] + tail
    chunks, types = _cuts_and_types(data.draw, wire)
    assert_same(response.ResponseKind.RESULT, caps, False, row_kind, chunks, types)


@PROPERTIES
@given(built=st.one_of(long_rows(), rows_then_error()), data=st.data())
def test_same_on_long_packets_and_errors_among_rows(built, data):
    caps, wire = built
    chunks, types = _cuts_and_types(data.draw, wire)
    assert_same(response.ResponseKind.RESULT, caps, False, 0, chunks, types)


@pytest.mark.parametrize("caps", [EOFC, DEOF], ids=["EOF", "DEPRECATE_EOF"])
@pytest.mark.parametrize(("kind", "cursor"), KINDS, ids=lambda v: getattr(v, "name", str(v)))
@PROPERTIES
@given(wire=st.one_of(GARBAGE, mutated(st.sampled_from(SAMPLES)), st.sampled_from(SAMPLES)), data=st.data())
def test_same_on_any_bytes_for_every_kind(kind, cursor, caps, wire, data):
    chunks, types = _cuts_and_types(data.draw, wire)
    assert_same(kind, caps, cursor, 0, chunks, types)


@PROPERTIES
@given(body=st.binary(max_size=24) | st.sampled_from([OK(status=s).encode(EOFC) for s in (0, 2, 0x4002)]),
       as_type=INPUT_TYPES)
def test_ok_status_same(body, as_type):
    def status(module):
        try:
            return module.ok_status(as_type(body))
        except Exception as exc:  # noqa: BLE001 - compared
            return type(exc), str(exc)

    assert status(COMPILED) == status(PYTHON)
