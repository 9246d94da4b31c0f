"""The host loop's own state and its dispatch: ``LoopCore``, which ``HostLoop`` (hostloop.py, the
module to import; its docstring gives the guest-mode rules this loop keeps) extends.

This file is plain Python and runs as such; setup.py also compiles it with Cython, the C types of
its fields and locals coming from loop_core.pxd beside it (protocol/kernels.py: which form runs).
The dispatch, run once per pass of the loop, touches only the state typed here: the epoll object,
the eventfd Trio's other thread wakes it with, the queue of Trio's callbacks, the callbacks per
descriptor and what each descriptor is registered for. No method is added or removed without its
line in the .pxd.
"""

from __future__ import annotations

import collections
import os
import select
from collections.abc import Callable

_READABLE = select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP  # events that wake a reader
_WRITABLE = select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP  # events that wake a writer


def source_sha256() -> bytes:
    """SHA-256 (hex, ASCII) of the sources the compiled module was built from (setup.py defines it
    in C; see loop_core.pxd). Plain Python has no such name: only the compiled module answers."""
    return _SOURCE_SHA256  # noqa: F821


class LoopCore:
    """The loop's tables and its dispatch; ``_outcome`` set (by the guest run's done callback) ends it."""

    __slots__ = ("fd_batch", "_epoll", "_wakeup_fd", "_callbacks", "_readers", "_writers", "_masks", "_outcome")

    def __init__(self, fd_batch: int) -> None:
        self.fd_batch = fd_batch
        self._epoll = select.epoll()
        self._wakeup_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._epoll.register(self._wakeup_fd, select.EPOLLIN)
        self._callbacks: collections.deque[Callable[[], object]] = collections.deque()
        self._readers: dict[int, Callable[[], object]] = {}
        self._writers: dict[int, Callable[[], object]] = {}
        self._masks: dict[int, int] = {}  # what each registered fd is registered for with epoll
        self._outcome = None

    def _run_until_guest_done(self) -> None:
        callbacks = self._callbacks
        next_callback = callbacks.popleft
        readers, writers, masks = self._readers, self._writers, self._masks
        poll = self._epoll.poll
        wakeup_fd = self._wakeup_fd
        batch = self.fd_batch
        while self._outcome is None:
            for _ in range(len(callbacks)):  # Trio's, queued before this pass; theirs wait for the next
                next_callback()()
            if self._outcome is not None:
                break
            if callbacks and not masks:
                continue  # Trio has more to do and no descriptor is watched: no need to poll
            for fd, events in poll(0 if callbacks else -1, batch):
                if fd == wakeup_fd:
                    os.eventfd_read(wakeup_fd)
                    continue
                if events & _READABLE:
                    callback = readers.get(fd)
                    if callback is not None:
                        try:
                            callback()
                        except Exception:
                            self._callback_failed(fd, callback)
                            continue
                if events & _WRITABLE:
                    callback = writers.get(fd)  # looked up again: the reader may have changed it
                    if callback is not None:
                        try:
                            callback()
                        except Exception:
                            self._callback_failed(fd, callback)

    def _callback_failed(self, fd: int, callback: Callable[[], object]) -> None:
        """An exception escaped an fd callback (it is being handled): HostLoop logs it and removes ``fd``."""
        raise NotImplementedError
