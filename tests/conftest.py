"""Fixtures shared by every test package: the replicated MariaDB test bed."""

from collections.abc import Iterator

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
