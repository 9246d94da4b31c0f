#!/usr/bin/env python3
"""A bare byte relay on myrouter's two planes: the yardstick for the data plane.

    python benchmarks/two_plane_relay.py LISTEN_PORT BACKEND_PORT

The process's main loop is ``myrouter.engine.HostLoop`` (a raw epoll loop) with Trio as its
guest. Trio does what waits or is rare: it accepts each client on 127.0.0.1:LISTEN_PORT and
connects to 127.0.0.1:BACKEND_PORT. Then it hands both sockets to the data plane by a plain call,
and from there on the bytes are copied by fd callbacks of the host loop: read what is there, send
it on at once, and only when the peer cannot take it all stop reading and wait until it is
writable. No task, no await, no scheduler per chunk. Like ``bare_relay.py`` it understands
nothing of the protocol: beside it, it shows what the event loop costs (Trio's scheduler there,
plain callbacks here) on the same socket calls. It prints ``ready`` once it listens and runs
until killed. Used by bench_sysbench.py.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's myrouter

from myrouter.engine import HostLoop  # noqa: E402

CHUNK = 65536


class Relay:
    """A client socket and its backend socket, relayed both ways by HostLoop callbacks."""

    def __init__(self, loop: HostLoop, client: socket.socket, server: socket.socket) -> None:
        self.loop = loop
        self.socks = (client, server)
        self.open_directions = 2
        for s in self.socks:
            s.setblocking(False)
        self.pumps = (_Pump(self, client, server), _Pump(self, server, client))
        for pump in self.pumps:
            pump.start()

    def direction_done(self) -> None:
        self.open_directions -= 1
        if not self.open_directions:
            self.close()

    def close(self) -> None:
        for s in self.socks:
            if s.fileno() >= 0:
                self.loop.remove(s.fileno())
                s.close()


class _Pump:
    """One direction: bytes readable on ``src`` are sent on ``dst``; what ``dst`` cannot take yet
    is kept, and ``src`` is not read again until it is gone (backpressure)."""

    def __init__(self, relay: Relay, src: socket.socket, dst: socket.socket) -> None:
        self.relay = relay
        self.loop = relay.loop
        self.src, self.dst = src, dst
        self.src_fd, self.dst_fd = src.fileno(), dst.fileno()
        self.pending: memoryview | None = None

    def start(self) -> None:
        self.loop.add_reader(self.src_fd, self.on_readable)

    def on_readable(self) -> None:
        try:
            data = self.src.recv(CHUNK)
        except BlockingIOError:
            return  # a spurious wake-up
        except OSError:
            self.relay.close()
            return
        if not data:
            self.end_of_stream()
            return
        try:
            sent = self.dst.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.relay.close()
            return
        if sent < len(data):
            self.pending = memoryview(data)[sent:]
            self.loop.remove_reader(self.src_fd)
            self.loop.add_writer(self.dst_fd, self.on_writable)

    def on_writable(self) -> None:
        assert self.pending is not None
        try:
            sent = self.dst.send(self.pending)
        except BlockingIOError:
            return
        except OSError:
            self.relay.close()
            return
        self.pending = self.pending[sent:]
        if not self.pending:
            self.pending = None
            self.loop.remove_writer(self.dst_fd)
            self.loop.add_reader(self.src_fd, self.on_readable)

    def end_of_stream(self) -> None:
        self.loop.remove_reader(self.src_fd)
        try:
            self.dst.shutdown(socket.SHUT_WR)
        except OSError:
            self.relay.close()  # the other side is gone too
            return
        self.relay.direction_done()


async def _connect_and_hand_over(loop: HostLoop, client: trio.socket.SocketType, backend_port: int) -> None:
    server = trio.socket.socket()
    for s in (client, server):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        await server.connect(("127.0.0.1", backend_port))
    except OSError as exc:
        print(f"two_plane_relay: cannot reach the backend: {exc}", file=sys.stderr, flush=True)
        client.close()
        server.close()
        return
    # from Trio (control plane) to the callbacks (data plane): a plain call in the same thread
    Relay(loop, socket.socket(fileno=client.detach()), socket.socket(fileno=server.detach()))


async def main(loop: HostLoop, listen_port: int, backend_port: int) -> None:
    listener = trio.socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    await listener.bind(("127.0.0.1", listen_port))
    listener.listen(256)
    print("ready", flush=True)
    async with trio.open_nursery() as nursery:
        while True:
            client, _ = await listener.accept()
            nursery.start_soon(_connect_and_hand_over, loop, client, backend_port)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    try:
        with HostLoop() as host:
            host.run(main, host, int(sys.argv[1]), int(sys.argv[2]))
    except KeyboardInterrupt:
        pass
