"""Failed admin logins per address (myrouter/admin/hostblock.py) and the startup warnings about an
admin interface beyond loopback (myrouter/admin/server.py), without sockets."""

from __future__ import annotations

import dataclasses

from myrouter.admin.hostblock import HostErrors
from myrouter.admin.server import exposure_warnings
from myrouter.config import AdminVariables


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_is_blocked_after_the_limit_until_the_block_time_passes() -> None:
    clock = Clock()
    h = HostErrors(clock)
    for i in range(1, 3):
        assert h.failed("10.0.0.5", 60) == i
        assert h.blocked_for("10.0.0.5", 3, 60) == 0.0
    h.failed("10.0.0.5", 60)
    clock.now += 10
    assert h.blocked_for("10.0.0.5", 3, 60) == 50.0
    assert h.blocked_for("10.0.0.6", 3, 60) == 0.0  # per address
    clock.now += 50
    assert h.blocked_for("10.0.0.5", 3, 60) == 0.0  # 60 s after the last failure: forgotten
    assert h.failures("10.0.0.5", 60) == 0


def test_failures_are_forgotten_after_the_block_time_and_on_success() -> None:
    clock = Clock()
    h = HostErrors(clock)
    h.failed("a", 60)
    h.failed("a", 60)
    clock.now += 61
    assert h.failed("a", 60) == 1  # the old ones expired
    h.succeeded("a")
    assert h.failures("a", 60) == 0
    assert h.blocked_for("a", 0, 60) == 0.0  # limit 0: never blocked
    h.failed("b", 60)
    assert h.flush() == 1 and len(h) == 0


def test_the_table_is_bounded() -> None:
    h = HostErrors(Clock(), max_hosts=3)
    for host in ("a", "b", "c", "d"):
        h.failed(host, 60)
    assert len(h) == 3 and h.failures("a", 60) == 0 and h.failures("d", 60) == 1


def test_exposure_warnings() -> None:
    av = AdminVariables()
    assert exposure_warnings(av, [("127.0.0.1", 6032), ("::1", 6032)]) == []
    warnings = exposure_warnings(av, [("0.0.0.0", 6032)])
    assert len(warnings) == 2
    assert "admin:admin and stats:stats" in warnings[0] and "0.0.0.0:6032" in warnings[0]
    assert "without TLS" in warnings[1]
    safe = dataclasses.replace(av, admin_credentials="ops:s3cret", stats_credentials="mon:an0ther", have_ssl=True)
    assert exposure_warnings(safe, [("10.1.2.3", 6032)]) == []
    stats_only = dataclasses.replace(safe, stats_credentials="stats:stats")
    (warning,) = exposure_warnings(stats_only, [("10.1.2.3", 6032)])
    assert "stats:stats" in warning and "admin:admin" not in warning
