"""Failed admin logins per client address, and the addresses blocked for them (sans-I/O).

MySQL's ``max_connect_errors`` and ProxySQL's ``mysql-client_host_error_counts``
(client port) keep a count of connection errors per client address and refuse
an address that reached the limit. The admin port does the same for its logins,
with ``admin-client_host_error_counts`` failures (wrong password, unknown user,
a broken or abandoned handshake) and ``admin-client_host_block_time_ms``:

* each failure counts for its address; a successful login from the address
  clears its count (as ProxySQL);
* an address with ``client_host_error_counts`` failures, the last one less than
  ``client_host_block_time_ms`` ago, is blocked: its connections get ERR 1129
  (MySQL's ER_HOST_IS_BLOCKED) instead of the greeting, whatever password they
  would send. Blocked attempts do not count, so the block ends
  ``client_host_block_time_ms`` after the last real failure (unlike MySQL, where
  only FLUSH HOSTS ends it: an operator locked out of the admin port could not
  send that);
* failures older than ``client_host_block_time_ms`` are forgotten;
* ``PROXYSQL FLUSH MYSQL CLIENT HOSTS`` clears everything;
* at most :data:`MAX_HOSTS` addresses are remembered (the least recently failed
  one makes room), so a scan from many addresses cannot grow it without bound.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["HostErrors", "MAX_HOSTS"]

MAX_HOSTS = 10_000


class HostErrors:
    """Failed logins per address: ``failed``/``succeeded`` after a login, ``blocked_for`` before one."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_hosts: int = MAX_HOSTS) -> None:
        self._clock = clock
        self._max_hosts = max_hosts
        self._hosts: OrderedDict[str, tuple[int, float]] = OrderedDict()  # host -> (failures, last failure)
        self.refused = 0  # connections refused because their address was blocked

    def __len__(self) -> int:
        return len(self._hosts)

    def failures(self, host: str, block_time: float) -> int:
        """The failures counted now for ``host`` (0 once the last is ``block_time`` seconds old)."""
        entry = self._hosts.get(host)
        if entry is None:
            return 0
        count, last = entry
        if self._clock() - last >= block_time:
            del self._hosts[host]
            return 0
        return count

    def blocked_for(self, host: str, limit: int, block_time: float) -> float:
        """Seconds ``host`` stays blocked (0.0: not blocked). ``limit`` 0: never blocked."""
        if limit <= 0 or self.failures(host, block_time) < limit:
            return 0.0
        return max(block_time - (self._clock() - self._hosts[host][1]), 0.001)

    def failed(self, host: str, block_time: float) -> int:
        """Count a failed login from ``host``; returns its failures now."""
        count = self.failures(host, block_time) + 1
        self._hosts[host] = (count, self._clock())
        self._hosts.move_to_end(host)
        while len(self._hosts) > self._max_hosts:
            self._hosts.popitem(last=False)
        return count

    def succeeded(self, host: str) -> None:
        self._hosts.pop(host, None)

    def flush(self) -> int:
        """Forget every address (PROXYSQL FLUSH MYSQL CLIENT HOSTS); returns how many there were."""
        n = len(self._hosts)
        self._hosts.clear()
        return n
