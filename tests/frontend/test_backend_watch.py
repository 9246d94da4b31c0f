"""BackendWatch (frontend/dataplane.py): a pooled backend connection's socket in the host loop, which
changes hands between statements without leaving the loop and drops out on a stray event."""

from __future__ import annotations

import socket

import trio

from myrouter.engine import HostLoop
from myrouter.frontend.dataplane import BackendWatch
from myrouter.net.stream import PacketStream


async def _until(predicate) -> None:
    with trio.fail_after(10):  # a guard against a hang, not a timing assertion
        while not predicate():
            await trio.sleep(0.001)


def test_a_watch_changes_hands_in_the_loop_and_a_stray_event_takes_it_out() -> None:
    a, b = socket.socketpair()
    try:
        with HostLoop() as loop:

            async def main() -> None:
                stream = PacketStream(a)
                watch = BackendWatch(loop, stream)
                fd = a.fileno()
                got: list[tuple[str, bytes]] = []

                watch.follow(lambda: got.append(("first", a.recv(100))))  # a statement on the data plane
                assert loop.watched(fd) and stream.watched_by is loop
                b.send(b"1")
                await _until(lambda: got)
                watch.release()  # the statement ended: the socket stays in the loop, nobody follows
                assert loop.watched(fd) and watch.registered

                watch.follow(lambda: got.append(("second", a.recv(100))))  # another session's statement
                b.send(b"2")
                await _until(lambda: len(got) == 2)
                assert got == [("first", b"1"), ("second", b"2")]
                watch.release()

                b.send(b"3")  # the server speaks while the connection waits in its pool: a stray event
                await _until(lambda: not loop.watched(fd))
                assert not watch.registered and stream.watched_by is None
                assert a.recv(100) == b"3"  # left unread, for whoever uses the connection next
                assert len(got) == 2

                watch.follow(lambda: got.append(("third", a.recv(100))))  # the data plane uses it again
                assert loop.watched(fd) and watch.registered
                b.send(b"4")
                await _until(lambda: len(got) == 3)
                assert got[-1] == ("third", b"4")
                watch.stop()  # a hand-over to Trio
                assert not loop.watched(fd) and watch.follower is None

            loop.run(main)
    finally:
        a.close()
        b.close()
