"""Fixtures shared by every test package: the replicated MariaDB test bed; and the unit /
integration markers every test gets (``make test-unit`` runs the unit tests alone)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from myrouter_testbed.mariadb import Cluster, ensure_packages, start_cluster


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """A MariaDB primary and 2 GTID replicas on free 127.0.0.1 ports, for the whole session.

    Users: app/app, monitor/monitor, repl/repl, root/root (from 127.0.0.1);
    databases test and sbtest. Tests that stop or reconfigure a server must leave
    it running and caught up (``cluster.wait_replication()``) for the others.
    """
    ensure_packages()
    with start_cluster(replicas=2) as started:
        yield started


INTEGRATION_DIR = Path(__file__).resolve().parent / "integration"
# fixtures that start real MariaDB servers (tests/integration/conftest.py has own_cluster)
SERVER_FIXTURES = frozenset({"cluster", "own_cluster"})


def is_integration(item: pytest.Item) -> bool:
    """Under tests/integration/, using a fixture that starts real servers (directly or through
    another fixture), or marked ``integration`` by hand (a test that starts the proxy itself)."""
    return (item.path.is_relative_to(INTEGRATION_DIR)
            or not SERVER_FIXTURES.isdisjoint(getattr(item, "fixturenames", ()))
            or item.get_closest_marker("integration") is not None)


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m selection reads the markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test is ``integration`` or ``unit``, never both: ``-m unit`` is the fast set."""
    for item in items:
        if is_integration(item) and item.get_closest_marker("unit") is not None:
            raise pytest.UsageError(f"{item.nodeid} is marked unit but is an integration test")
        if is_integration(item):
            if item.get_closest_marker("integration") is None:
                item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)
