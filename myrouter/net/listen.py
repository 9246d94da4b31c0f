"""Listening sockets for the client port, the admin port and /metrics: open, accept, close."""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ..stats.logsafe import LogThrottle

log = logging.getLogger(__name__)


def listen(host: str, port: int, *, reuse_port: bool = False, backlog: int | None = 4096) -> socket.socket:
    """A non-blocking listening TCP socket on host:port (IPv6 when ``host`` has a colon).

    ``reuse_port``: SO_REUSEPORT, so that every worker of the instance listens on the same port and
    the kernel spreads new connections over them. ``backlog=None``: bound, not listening (the
    supervisor holds the port so, learning the number of port 0, without taking connections)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
        if backlog is not None:
            sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def close_listener(sock: socket.socket) -> None:
    """Close ``sock`` once, waking any task waiting on it."""
    if sock.fileno() >= 0:
        trio.lowlevel.notify_closing(sock)
        sock.close()


async def accept_loop(lsock: socket.socket, nursery: trio.Nursery,
                      handler: Callable[[socket.socket, Any], Awaitable[None]], what: str) -> None:
    """Accept connections forever, starting ``handler(conn, addr)`` in ``nursery`` for each.
    A failing accept() (out of file descriptors, say) is retried after 100 ms and logged at most
    10 times in 10 s (then how many failures were not logged, once accept() works again)."""
    throttle = LogThrottle()
    while True:
        try:
            conn, addr = lsock.accept()
        except BlockingIOError:
            await trio.lowlevel.wait_readable(lsock)
            continue
        except OSError as exc:
            throttle.log(log, logging.ERROR, f"{what}: accept() failures",
                         "%s: accept() failed: %s; retrying in 100 ms", what, exc)
            await trio.sleep(0.1)
            continue
        if throttle.pending:
            throttle.flush()
        nursery.start_soon(handler, conn, addr)
