"""``HostLoop``: a raw ``select.epoll`` loop that hosts a Trio run as its guest.

Two planes share one thread:

* the **data plane**: plain callbacks on file descriptors (``add_reader``, ``add_writer``,
  ``remove_reader``, ``remove_writer``, ``remove``), run straight from the loop: no task, no
  await, no scheduler between a readable socket and the code that reads it;
* the **control plane**: Trio, started with ``trio.lowlevel.start_guest_run``. Trio runs its tasks
  in callbacks it hands to the host (``run_sync_soon_threadsafe`` / ``_not_threadsafe``: a deque,
  plus an eventfd that wakes the loop when another thread queued one) and waits for its own I/O
  in a thread of its own. Trio's tasks therefore run in the host thread too: a task may call
  ``add_reader`` directly, and an fd callback may hand work back to Trio with any of Trio's
  synchronous calls (``send_nowait`` on a memory channel, ``trio.lowlevel.reschedule``, a
  ``TrioToken.run_sync_soon``): moving a session between the planes is a plain function call.

One iteration of the loop runs the Trio callbacks queued when it began (not those they queue in
turn), then takes at most ``fd_batch`` ready descriptors from epoll (without waiting when Trio has
more work queued; not asking at all while no descriptor is watched) and runs their callbacks. So a flood of ready sockets cannot starve Trio (one bounded
batch between two of its ticks), and a busy Trio cannot starve the sockets (one poll between two
of its ticks). epoll returns a level-triggered ready list round robin, so a batch smaller than the
number of ready descriptors does not always favour the same ones.

Signals: the host does not call ``signal.set_wakeup_fd`` (``host_uses_signal_set_wakeup_fd`` is
left False), so Trio installs its own wake-up socket and ``trio.open_signal_receiver`` works as
under ``trio.run``: a signal wakes Trio's I/O thread, whose hand-back wakes the host, where Python
runs the handler. Ctrl-C behaves as under ``trio.run``: Trio's SIGINT handler treats code outside
its tasks (the host's loop, the fd callbacks) as protected and delivers the KeyboardInterrupt to
its main task, instead of raising it in the loop under a live guest run.

Rules for fd callbacks: they take no argument, run in the host thread, must not block, must
tolerate a spurious wake-up (non-blocking sockets, ``BlockingIOError`` means "not yet"), and must
``remove`` a descriptor before closing it. An exception that escapes one is a bug of that
callback: it is logged with its traceback and the descriptor is removed from the loop (so one
broken session neither spins the loop nor stops the others).
"""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from ..protocol import kernels

if TYPE_CHECKING:
    import outcome

log = logging.getLogger(__name__)

T = TypeVar("T")

# The loop's tables and its dispatch (_run_until_guest_done) are in loop_core.py, a kernel that
# setup.py also compiles (protocol/kernels.py says which form runs); HostLoop adds the rest.
_core = kernels.load("engine.loop_core")

DEFAULT_FD_BATCH = 64

_running = threading.local()  # .loop: the HostLoop running its guest run in this thread


def current_host_loop() -> HostLoop | None:
    """The HostLoop whose guest run is running in this thread (so Trio code can hand descriptors to
    its data plane), or None: Trio runs on its own (``trio.run``) and every session stays on Trio."""
    return getattr(_running, "loop", None)


class HostLoop(_core.LoopCore):
    """An epoll loop that runs one Trio guest run (``run``) and fd callbacks beside it."""

    def __init__(self, *, fd_batch: int = DEFAULT_FD_BATCH) -> None:
        if fd_batch < 1:
            raise ValueError("fd_batch must be >= 1")
        # fd_batch, _epoll, _wakeup_fd, _callbacks, _readers, _writers, _masks (what each registered fd
        # is registered for with epoll), _outcome (the guest run's, once it is done)
        super().__init__(fd_batch)
        self._started = False
        self._closed = False

    # -- the guest run ---------------------------------------------------------------------------

    def run(self, async_fn: Callable[..., Awaitable[T]], *args: object) -> T:
        """Run ``async_fn(*args)`` as Trio's guest and fd callbacks until it finishes; return its
        value or raise its exception, as ``trio.run`` does. A HostLoop runs one guest run."""
        if self._closed:
            raise RuntimeError("this HostLoop is closed")
        if self._started:
            raise RuntimeError("a HostLoop runs a single guest run")
        self._started = True
        _running.loop = self
        try:
            return self._run_guest(async_fn, *args)
        finally:
            _running.loop = None

    def _run_guest(self, async_fn: Callable[..., Awaitable[T]], *args: object) -> T:
        trio.lowlevel.start_guest_run(
            async_fn, *args,
            run_sync_soon_threadsafe=self._run_sync_soon_threadsafe,
            run_sync_soon_not_threadsafe=self._callbacks.append,
            done_callback=self._guest_done,
        )
        self._run_until_guest_done()
        result, self._outcome = self._outcome, None
        assert result is not None
        return result.unwrap()

    def _run_sync_soon_threadsafe(self, fn: Callable[[], object]) -> None:
        self._callbacks.append(fn)  # deque.append is atomic; the eventfd wakes a sleeping host
        os.eventfd_write(self._wakeup_fd, 1)

    def _guest_done(self, result: outcome.Outcome[Any]) -> None:
        self._outcome = result

    def _callback_failed(self, fd: int, callback: Callable[[], object]) -> None:
        log.exception("fd callback %r failed: fd %d removed from the loop", callback, fd)
        self._readers.pop(fd, None)
        self._writers.pop(fd, None)
        if self._masks.pop(fd, 0):
            try:
                self._epoll.unregister(fd)
            except OSError as exc:  # it closed the fd before failing: epoll has dropped it already
                log.error("fd %d was closed without remove() by its failing callback: %s", fd, exc)

    # -- the data plane's descriptors ------------------------------------------------------------

    def add_reader(self, fd: int, callback: Callable[[], object]) -> None:
        """Call ``callback()`` whenever ``fd`` is readable (or hung up / in error); replaces a
        previous reader of ``fd``."""
        self._readers[fd] = callback
        try:
            self._update(fd)
        except BaseException:
            del self._readers[fd]
            raise

    def add_writer(self, fd: int, callback: Callable[[], object]) -> None:
        """Call ``callback()`` whenever ``fd`` is writable (or hung up / in error)."""
        self._writers[fd] = callback
        try:
            self._update(fd)
        except BaseException:
            del self._writers[fd]
            raise

    def remove_reader(self, fd: int) -> None:
        if self._readers.pop(fd, None) is not None:
            self._update(fd)

    def remove_writer(self, fd: int) -> None:
        if self._writers.pop(fd, None) is not None:
            self._update(fd)

    def remove(self, fd: int) -> None:
        """Forget ``fd`` altogether (call before closing it). No-op for an unknown fd."""
        self._readers.pop(fd, None)
        self._writers.pop(fd, None)
        self._update(fd)

    def watched(self, fd: int) -> int:
        """The epoll events ``fd`` is registered for (0: not in the loop)."""
        return self._masks.get(fd, 0)

    def _update(self, fd: int) -> None:
        mask = (select.EPOLLIN if fd in self._readers else 0) | (select.EPOLLOUT if fd in self._writers else 0)
        old = self._masks.get(fd, 0)
        if mask == old:
            return
        if not mask:
            del self._masks[fd]
            try:
                self._epoll.unregister(fd)
            except OSError as exc:  # closed before remove(): epoll dropped it with its last reference
                log.error("fd %d was closed while still in the loop: %s", fd, exc)
        elif not old:
            self._epoll.register(fd, mask)
            self._masks[fd] = mask
        else:
            try:
                self._epoll.modify(fd, mask)
            except FileNotFoundError:  # a new descriptor under the number of one closed while watched
                log.error("fd %d was closed while still in the loop; watching its successor", fd)
                self._epoll.register(fd, mask)
            self._masks[fd] = mask

    # -- lifetime --------------------------------------------------------------------------------

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._epoll.close()
            os.close(self._wakeup_fd)

    def __enter__(self) -> HostLoop:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<HostLoop fds={len(self._masks)} readers={len(self._readers)} writers={len(self._writers)} "
                f"queued={len(self._callbacks)} batch={self.fd_batch}{' closed' if self._closed else ''}>")
