"""The monitor's decisions, without I/O: when a server is shunned and when it comes back.

Everything here takes the time as an argument (the monitor passes
``trio.current_time()``), so the rules are tested with plain numbers or
``autojump_clock``.

Health (per host:port, :class:`EndpointHealth`): every connect or ping
check that fails for a health reason adds to a run of consecutive failures;
``mysql-monitor_ping_max_failures`` in a row shun every hostgroup entry of
that host:port. Any passing check ends the run. A shunned host:port comes back
when its latest check passed and none failed for ``mysql-shun_recovery_time_sec``.

Replication lag (per hostgroup entry, :func:`lag_checked`): an entry with
``max_replication_lag`` > 0 whose measured lag is above it for
``mysql-monitor_replication_lag_count`` checks in a row is shunned; it comes
back when the lag is within the limit again and no check was over it for
``mysql-shun_recovery_time_sec``. Entries of a writer hostgroup of
``mysql_replication_hostgroups`` are never shunned for lag (a promoted
replica still carries its old replication status).

Traffic (per entry, :meth:`myrouter.routing.hostgroups.Server.note_connect_error`):
comes back ``mysql-shun_recovery_time_sec`` after the last connection error,
unless the monitor's latest check of that host:port failed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..routing.hostgroups import Hostgroups, Server

__all__ = ["EndpointHealth", "ReadOnlyTimeouts", "apply_health", "apply_lag", "lag_checked", "recover"]


@dataclass
class EndpointHealth:
    """Connect/ping health of one host:port."""

    host: str
    port: int
    failures: int = 0  # consecutive failed connect/ping checks
    last_check_ok: bool | None = None  # None: not checked yet
    last_failure_at: float | None = None
    last_error: str | None = None
    shunned: bool = False
    shunned_at: float | None = None
    read_only: bool | None = None  # last read_only check (None: unknown)
    read_only_timeouts: int = 0  # consecutive read_only checks that timed out
    account_error_warned: bool = False

    def passed(self) -> None:
        """A connect or ping check passed."""
        self.failures = 0
        self.last_check_ok = True
        self.account_error_warned = False

    def failed(self, now: float, error: str, max_failures: int) -> bool:
        """A connect or ping check failed for a health reason; True when this shuns it."""
        self.failures += 1
        self.last_check_ok = False
        self.last_failure_at = now
        self.last_error = error
        if not self.shunned and self.failures >= max_failures:
            self.shunned = True
            self.shunned_at = now
            return True
        return False

    def may_recover(self, now: float, recovery_s: float) -> bool:
        """Lift the shun if the latest check passed and none failed for ``recovery_s``; True if lifted."""
        if not self.shunned or self.last_check_ok is not True:
            return False
        if self.last_failure_at is not None and now - self.last_failure_at < recovery_s:
            return False
        self.shunned = False
        self.shunned_at = None
        return True


class ReadOnlyTimeouts:
    """``mysql-monitor_read_only_max_timeout_count``: after that many read_only checks in a
    row that time out, the server is taken as read_only=ON (ProxySQL: "Assuming read_only=1"),
    so a writer that cannot answer is moved out of the writer hostgroup."""

    @staticmethod
    def timed_out(ep: EndpointHealth, max_count: int) -> bool:
        ep.read_only_timeouts += 1
        return ep.read_only_timeouts >= max_count

    @staticmethod
    def answered(ep: EndpointHealth) -> None:
        ep.read_only_timeouts = 0


def apply_health(hostgroups: Hostgroups, ep: EndpointHealth) -> list[Server]:
    """Give every entry of ``ep``'s host:port its health shun; returns those whose status changed."""
    changed = []
    for s in hostgroups.entries(ep.host, ep.port):
        if s.shun_health != ep.shunned:
            s.shun_health = ep.shunned
            if s.refresh_status() is not None:
                changed.append(s)
    return changed


def lag_checked(hostgroups: Hostgroups, s: Server) -> bool:
    """Whether the lag of this entry is compared with its ``max_replication_lag``."""
    return s.max_replication_lag > 0 and not hostgroups.is_writer_hostgroup(s.hostgroup)


def apply_lag(hostgroups: Hostgroups, host: str, port: int, lag_ms: int | None, now: float,
              count_needed: int) -> list[Server]:
    """Record a lag measurement of host:port on its entries; returns the entries this shuns.

    ``lag_ms`` None: the server replicates from nobody, which is not lag. Statuses are
    refreshed (and notified) here.
    """
    shunned = []
    for s in hostgroups.entries(host, port):
        s.repl_lag_ms = lag_ms
        if not lag_checked(hostgroups, s):
            s.lag_over_count = 0
            continue
        if lag_ms is not None and lag_ms > s.max_replication_lag * 1000:
            s.lag_over_count += 1
            s.lag_failed_at = now
            if not s.shun_lag and s.lag_over_count >= count_needed:
                s.shun_lag = True
                shunned.append(s)
                s.refresh_status()
        else:
            s.lag_over_count = 0
    return shunned


def recover(hostgroups: Hostgroups, health: dict[tuple[str, int], EndpointHealth], now: float,
            recovery_s: float) -> list[Server]:
    """Lift the automatic shuns whose time has come (see the module docstring).

    Returns the entries whose status went back to ONLINE (statuses are refreshed and notified).
    """
    for ep in health.values():
        ep.may_recover(now, recovery_s)
    back = []
    for s in hostgroups.servers():
        ep = health.get(s.endpoint)
        was = s.status
        if s.shun_health and (ep is None or not ep.shunned):
            s.shun_health = False
        if s.shun_lag and (not lag_checked(hostgroups, s) or (
                s.lag_over_count == 0 and (s.lag_failed_at is None or now - s.lag_failed_at >= recovery_s))):
            s.shun_lag = False
        if s.shun_traffic and (s.last_connect_error_at is None or now - s.last_connect_error_at >= recovery_s) \
                and (ep is None or ep.last_check_ok is not False):
            s.shun_traffic = False
        if s.refresh_status() is not None and s.status != was and s.status == "ONLINE":
            back.append(s)
    return back
