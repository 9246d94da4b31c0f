"""Where a server is: the address a backend connection (or the monitor's) is opened to."""

from __future__ import annotations

from dataclasses import dataclass


def is_unix_address(host: str, port: int) -> bool:
    """ProxySQL's convention for ``mysql_servers``: port 0 means the host name is the path of a
    Unix socket (a server on the same machine), e.g. ``/var/run/mysqld/mysqld.sock``."""
    return port == 0


@dataclass(frozen=True, slots=True)
class ServerAddress:
    hostgroup: int
    host: str
    port: int
    use_ssl: bool = False  # mysql_servers.use_ssl: log in over TLS (open_backend's tls context)
    compression: bool = False  # mysql_servers.compression > 0: the compressed protocol (zlib)

    def __str__(self) -> str:
        return self.host if is_unix_address(self.host, self.port) else f"{self.host}:{self.port}"
