"""HostLoop: a raw epoll loop with Trio as its guest, tested without the proxy; each test in both
forms of its dispatch kernel (engine/loop_core.py compiled, as under ``make test``, and as plain
Python)."""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import logging
import os
import signal
import socket
import threading

import pytest
import trio
import trio.testing

from myrouter.engine import HostLoop, hostloop
from myrouter.protocol import kernels

COMPILED = HostLoop


def _python_form() -> type:
    """HostLoop over loop_core.py as plain Python: hostloop.py executed again, its kernel the Python file."""
    core = kernels.load_python("engine.loop_core")
    name = "myrouter.engine.hostloop_with_python_core"
    spec = importlib.util.spec_from_file_location(name, hostloop.__file__)
    module = importlib.util.module_from_spec(spec)
    load = kernels.load
    kernels.load = lambda kernel: core
    try:
        spec.loader.exec_module(module)
    finally:
        kernels.load = load
    assert module.HostLoop.__mro__[1] is core.LoopCore
    return module.HostLoop


PYTHON = _python_form()


@pytest.fixture(autouse=True, params=["compiled", "python"])
def loop_form(request, monkeypatch):
    """The test's ``HostLoop``: the one myrouter.engine exports, or the same over the Python form of
    its kernel."""
    monkeypatch.setattr(request.module, "HostLoop", COMPILED if request.param == "compiled" else PYTHON)
    return request.param


def test_the_compiled_dispatch_is_the_one_exported():
    if kernels.pure_forced():
        pytest.skip(f"{kernels.PURE_ENV} is set: the Python form is the one asked for")
    assert isinstance(hostloop._core.__loader__, importlib.machinery.ExtensionFileLoader), kernels.describe()
    assert COMPILED.__mro__[1] is hostloop._core.LoopCore and "engine.loop_core compiled" in kernels.describe()


@pytest.fixture
def host():
    with HostLoop() as loop:
        yield loop


@pytest.fixture
def socketpairs():
    pairs = []

    def make(n: int = 1):
        new = [socket.socketpair() for _ in range(n)]
        for a, b in new:
            a.setblocking(False)
            b.setblocking(False)
        pairs.extend(new)
        return new

    yield make
    for a, b in pairs:
        a.close()
        b.close()


def test_guest_run_returns_its_value(host):
    async def main(x, y):
        await trio.lowlevel.checkpoint()
        return x + y

    assert host.run(main, 2, 3) == 5


def test_guest_exception_propagates(host):
    async def main():
        await trio.sleep(0)
        raise ValueError("from the guest")

    with pytest.raises(ValueError, match="from the guest"):
        host.run(main)


def test_nursery_errors_come_out_as_trio_run_gives_them(host):
    async def fail():
        raise KeyError("child")

    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fail)

    with pytest.raises(ExceptionGroup) as info:
        host.run(main)
    assert info.group_contains(KeyError)


def test_a_loop_runs_one_guest_run(host):
    async def main():
        return 1

    host.run(main)
    with pytest.raises(RuntimeError):
        host.run(main)


def test_sleep_sockets_and_threads_work_in_the_guest(host):
    host_thread = threading.get_ident()

    async def echo(stream):
        async with stream:
            async for data in stream:
                await stream.send_all(data)

    async def main():
        start = trio.current_time()
        await trio.sleep(0.05)
        slept = trio.current_time() - start
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(functools.partial(trio.serve_tcp, echo, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            async with await trio.open_tcp_stream("127.0.0.1", port) as client:
                await client.send_all(b"ping")
                got = await client.receive_some(100)
            worker = await trio.to_thread.run_sync(threading.get_ident)
            nursery.cancel_scope.cancel()
        return slept, got, worker, threading.get_ident()

    slept, got, worker, guest_thread = host.run(main)
    assert slept >= 0.05
    assert got == b"ping"
    assert worker != host_thread
    assert guest_thread == host_thread  # Trio's tasks run in the host thread


def test_fd_callback_runs_in_the_host_thread_while_trio_is_busy(host, socketpairs):
    (a, b), = socketpairs()
    seen = []
    steps = 0

    def on_readable():
        seen.append((threading.get_ident(), steps, a.recv(100)))

    async def busy():
        nonlocal steps
        host.add_reader(a.fileno(), on_readable)
        b.send(b"x")
        while not seen and steps < 10_000:
            steps += 1
            await trio.lowlevel.checkpoint()  # Trio never waits for I/O: it has work every tick
        host.remove(a.fileno())

    host.run(busy)
    assert seen, "the fd callback never ran while Trio was busy"
    thread, at_step, data = seen[0]
    assert thread == threading.get_ident()
    assert data == b"x"
    assert at_step <= 2  # the first poll after Trio's tick


def test_sessions_move_between_planes_by_plain_calls(host, socketpairs):
    """Trio registers an fd (from a run_sync_soon callback), the fd callback hands the bytes
    back to a Trio task with send_nowait, and the task unregisters the fd: no await in between."""
    (a, b), = socketpairs()
    fd = a.fileno()

    async def main():
        send, receive = trio.open_memory_channel(10)

        def on_readable():
            send.send_nowait((threading.get_ident(), a.recv(100)))

        token = trio.lowlevel.current_trio_token()
        token.run_sync_soon(host.add_reader, fd, on_readable)
        await trio.testing.wait_all_tasks_blocked()
        registered = host.watched(fd)
        b.send(b"hello")
        with trio.fail_after(5):
            thread, data = await receive.receive()
        host.remove(fd)
        return registered, thread, data, host.watched(fd)

    registered, thread, data, after = host.run(main)
    assert registered != 0
    assert thread == threading.get_ident()
    assert data == b"hello"
    assert after == 0


def test_reader_and_writer_on_one_fd(host, socketpairs):
    (a, b), = socketpairs()
    fd = a.fileno()
    events = []

    def on_writable():
        events.append("w")
        host.remove_writer(fd)
        b.send(b"x")

    def on_readable():
        events.append(("r", a.recv(10)))
        host.remove_reader(fd)

    async def main():
        host.add_reader(fd, on_readable)
        host.add_writer(fd, on_writable)
        for _ in range(1000):
            if host.watched(fd) == 0:
                break
            await trio.sleep(0.001)

    host.run(main)
    assert events == ["w", ("r", b"x")]
    assert host.watched(fd) == 0


def test_a_flood_of_ready_fds_does_not_starve_the_guest(socketpairs):
    """200 descriptors always readable: each Trio tick sees at most one batch of fd callbacks,
    and every descriptor is served in turn (epoll's ready list is round robin)."""
    batch = 16
    pairs = socketpairs(200)
    calls = []

    with HostLoop(fd_batch=batch) as loop:
        def reader(fd):
            def on_readable():
                calls.append(fd)
                if len(calls) >= 20_000:  # an unfair loop still ends, and fails below
                    loop.remove(fd)
            return on_readable

        async def main():
            for a, b in pairs:
                b.send(b"x")  # never read: level-triggered, ready at every poll
                loop.add_reader(a.fileno(), reader(a.fileno()))
            counts = []
            for _ in range(100):
                counts.append(len(calls))
                await trio.lowlevel.checkpoint()
            for a, _ in pairs:
                loop.remove(a.fileno())
            return counts

        counts = loop.run(main)
    per_tick = [after - before for before, after in zip(counts, counts[1:])]
    assert max(per_tick) <= batch
    assert sum(per_tick) >= 50 * batch  # the fds were served, not skipped
    assert set(calls) == {a.fileno() for a, _ in pairs}


def test_a_busy_guest_does_not_starve_fds(host, socketpairs):
    (a, b), = socketpairs()
    b.send(b"x")  # always readable
    calls = 0

    def on_readable():
        nonlocal calls
        calls += 1

    async def main():
        host.add_reader(a.fileno(), on_readable)
        steps = 0
        while calls < 20 and steps < 10_000:
            steps += 1
            await trio.lowlevel.checkpoint()
        host.remove(a.fileno())
        return steps

    steps = host.run(main)
    assert calls >= 20
    assert steps <= 2 * 20 + 5  # about one poll per Trio tick


def test_a_failing_fd_callback_is_logged_and_removed(host, socketpairs, caplog):
    (a, b), (c, d) = socketpairs(2)
    good = []

    def broken():
        raise RuntimeError("bug in a session")

    def fine():
        good.append(c.recv(10))

    async def main():
        host.add_reader(a.fileno(), broken)
        host.add_reader(c.fileno(), fine)
        b.send(b"x")
        d.send(b"y")
        for _ in range(1000):
            if good and host.watched(a.fileno()) == 0:
                break
            await trio.sleep(0.001)
        watched = host.watched(a.fileno())
        host.remove(c.fileno())
        return watched

    with caplog.at_level(logging.ERROR, logger="myrouter.engine"):
        assert host.run(main) == 0
    assert good == [b"y"]
    assert "bug in a session" in caplog.text
    assert f"fd {a.fileno()} removed" in caplog.text


def test_a_callback_that_closed_its_fd_and_failed_does_not_stop_the_loop(host, socketpairs, caplog):
    (a, b), = socketpairs()
    fd = a.fileno()

    def broken():
        a.close()  # without remove(): a bug, on top of the exception
        raise RuntimeError("bug after close")

    async def main():
        host.add_reader(fd, broken)
        b.send(b"x")
        for _ in range(1000):
            if host.watched(fd) == 0:
                break
            await trio.sleep(0.001)
        return host.watched(fd)

    with caplog.at_level(logging.ERROR, logger="myrouter.engine"):
        assert host.run(main) == 0
    assert "bug after close" in caplog.text
    assert f"fd {fd} was closed without remove()" in caplog.text


def test_signal_receiver_works_in_guest_mode(host):
    """SIGHUP sent from another thread while the host sleeps in epoll reaches
    trio.open_signal_receiver, as `myrouter serve` relies on."""

    async def main():
        with trio.open_signal_receiver(signal.SIGHUP) as signals:
            timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGHUP))
            timer.start()
            with trio.fail_after(10):
                async for signum in signals:
                    timer.join()
                    return signum

    assert host.run(main) == signal.SIGHUP


def test_ctrl_c_in_the_host_reaches_the_guest_as_under_trio_run(host):
    """SIGINT while the host waits in epoll is delivered to Trio's main task at its checkpoint
    (the loop is KeyboardInterrupt-protected, like Trio's own scheduler), not raised in the
    host's frame under a live guest run."""

    async def main():
        timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            await trio.sleep(10)
        except KeyboardInterrupt:
            return "delivered to the guest"
        finally:
            timer.join()

    assert host.run(main) == "delivered to the guest"


def test_ctrl_c_during_an_fd_callback_reaches_the_guest(host, socketpairs):
    """A SIGINT whose handler runs inside a data-plane callback does not blow the callback (and
    the loop) up: it is delivered to Trio's main task, as Trio does for its own scheduler."""
    (a, b), = socketpairs()
    finished = []

    def on_readable():
        a.recv(10)
        os.kill(os.getpid(), signal.SIGINT)  # the handler runs in this frame's next bytecodes
        sum(range(1000))
        finished.append(True)
        host.remove(a.fileno())

    async def main():
        host.add_reader(a.fileno(), on_readable)
        b.send(b"x")
        try:
            await trio.sleep(10)
        except KeyboardInterrupt:
            return "delivered to the guest"

    assert host.run(main) == "delivered to the guest"
    assert finished == [True]


def test_closed_loop_refuses_to_run():
    loop = HostLoop()
    loop.close()
    loop.close()  # idempotent

    async def main():
        pass

    with pytest.raises(RuntimeError):
        loop.run(main)
