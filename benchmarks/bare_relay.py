#!/usr/bin/env python3
"""A bare Trio byte relay: the yardstick for what Python + Trio cost on this machine.

    python benchmarks/bare_relay.py LISTEN_PORT BACKEND_PORT

Listens on 127.0.0.1:LISTEN_PORT; each client gets a connection to
127.0.0.1:BACKEND_PORT and two tasks that copy bytes, one each way. It
understands nothing of the protocol (no authentication, routing, pooling or
statistics), so it is the floor of what any Trio proxy spends per query: the
same socket calls and event-loop waits as myrouter and nothing else. It prints
``ready`` once it listens and runs until killed. Used by bench_bare_relay.py.
"""

from __future__ import annotations

import socket
import sys

import trio


async def _pump(src: trio.socket.SocketType, dst: trio.socket.SocketType) -> None:
    try:
        while data := await src.recv(65536):
            view = memoryview(data)
            while view:
                view = view[await dst.send(view):]
    except OSError:
        pass  # either side went away: the other side is shut down below
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


async def _serve(client: trio.socket.SocketType, backend_port: int) -> None:
    with client, trio.socket.socket() as server:
        for s in (client, server):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await server.connect(("127.0.0.1", backend_port))
        except OSError as exc:
            print(f"bare_relay: cannot reach the backend: {exc}", file=sys.stderr, flush=True)
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_pump, client, server)
            nursery.start_soon(_pump, server, client)


async def main(listen_port: int, backend_port: int) -> None:
    listener = trio.socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    await listener.bind(("127.0.0.1", listen_port))
    listener.listen(256)
    print("ready", flush=True)
    async with trio.open_nursery() as nursery:
        while True:
            client, _ = await listener.accept()
            nursery.start_soon(_serve, client, backend_port)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    try:
        trio.run(main, int(sys.argv[1]), int(sys.argv[2]))
    except KeyboardInterrupt:
        pass
