"""The unit / integration split (tests/conftest.py): every test is one or the other, and the
unit ones (``make test-unit``, ``-m unit``) start no server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SERVER_FIXTURES = {"cluster", "own_cluster"}

# a plugin for the inner pytest: what it collected, with markers and the fixtures each test uses
REPORTER = textwrap.dedent('''
    import json, os

    def pytest_collection_finish(session):
        with open(os.environ["MARKERS_REPORT"], "w") as out:
            json.dump([{"nodeid": item.nodeid,
                        "markers": sorted({m.name for m in item.iter_markers()} & {"unit", "integration"}),
                        "fixtures": sorted(item.fixturenames)} for item in session.items], out)
''')


def collect(tmp_path: Path, *args: str) -> list[dict]:
    """The whole suite as ``pytest --collect-only`` sees it (nothing runs, no server starts)."""
    (tmp_path / "markers_reporter.py").write_text(REPORTER)
    report = tmp_path / "collected.json"
    env = {**os.environ, "MARKERS_REPORT": str(report),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "-p", "markers_reporter", *args, str(TESTS)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(report.read_text())


def test_every_test_is_unit_or_integration_and_unit_ones_start_no_server(tmp_path: Path) -> None:
    collected = collect(tmp_path)
    kind = {item["nodeid"]: item["markers"] for item in collected}
    assert all(markers in (["unit"], ["integration"]) for markers in kind.values()), \
        [nodeid for nodeid, markers in kind.items() if markers not in (["unit"], ["integration"])]
    for item in collected:
        if item["nodeid"].startswith("tests/integration/") or SERVER_FIXTURES & set(item["fixtures"]):
            assert item["markers"] == ["integration"], item["nodeid"]
    assert kind["tests/test_markers.py::test_every_test_is_unit_or_integration_and_unit_ones_start_no_server"] \
        == ["unit"]
    # outside tests/integration/, a test that starts a proxy process is marked by hand
    assert kind["tests/test_config.py::test_sighup_with_a_bad_rule_logs_one_line_and_keeps_the_running_config[rules_dir]"] \
        == ["integration"]


def test_unit_selection_holds_only_unit_tests(tmp_path: Path) -> None:
    selected = collect(tmp_path, "-m", "unit")
    assert selected and all(item["markers"] == ["unit"] for item in selected)
    assert not any(SERVER_FIXTURES & set(item["fixtures"]) for item in selected)
