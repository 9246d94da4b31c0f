"""TCP keepalive on client and server sockets (``mysql-use_tcp_keepalive``, ``mysql-tcp_keepalive_time``).

As ProxySQL: with ``use_tcp_keepalive`` a connection gets ``SO_KEEPALIVE`` and, when
``tcp_keepalive_time`` is above 0, ``TCP_KEEPIDLE`` of that many seconds (0 leaves the
kernel's ``net.ipv4.tcp_keepalive_time``); without it, ``SO_KEEPALIVE`` is off. Unix
sockets have no keepalive and are left alone.
"""

from __future__ import annotations

import socket

__all__ = ["apply_keepalive"]


def apply_keepalive(sock: socket.socket, enabled: bool, idle_seconds: int) -> None:
    """Set the keepalive options of a connected TCP socket; a Unix socket is left as it is."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1 if enabled else 0)
    if enabled and idle_seconds > 0 and hasattr(socket, "TCP_KEEPIDLE"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle_seconds)
