"""The local channel between the supervisor and one worker: framed, versioned messages.

A frame is a header (payload length, format version) and a pickled tuple. Pickle is safe here: both
ends are processes of the same installation, and the channel is a socketpair created by the
supervisor and inherited by that one worker; nothing else can write to it. The version makes a
worker started from a newer installation (upgraded on disk while the supervisor runs) refuse to talk
instead of misreading: ``FORMAT_VERSION`` changes whenever a message changes shape.

Three kinds of message:

* ``("req", id, kind, body)``: a request; the other end answers with exactly one reply;
* ``("rep", id, ok, value)``: the reply (``ok`` false: ``value`` is ``(code, message, sqlstate)``);
* ``("note", kind, body)``: a one-way notice, handled in order, inline, by the reading task.

``FrameDecoder`` is sans-I/O (bytes in, messages out); ``Channel`` drives it over a Trio stream.
"""

from __future__ import annotations

import itertools
import logging
import pickle
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ..protocol.errors import MySQLError

log = logging.getLogger("myrouter")

FORMAT_VERSION = 1
HEADER = struct.Struct("!IH")  # payload length, format version
MAX_FRAME = 256 * 1024 * 1024  # a digest table of a busy worker is tens of MB at most


class ChannelBroken(Exception):
    """The other end closed the channel, or sent something unreadable."""


class CallTimedOut(ChannelBroken):
    """The other end did not reply in time (a wedged process): its late reply is dropped."""


def encode(message: tuple) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(payload), FORMAT_VERSION) + payload


class FrameDecoder:
    """Bytes in, messages out (sans-I/O)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple]:
        self._buf += data
        out = []
        while len(self._buf) >= HEADER.size:
            length, version = HEADER.unpack_from(self._buf)
            if version != FORMAT_VERSION:
                raise ChannelBroken(f"channel format version {version}, expected {FORMAT_VERSION}: "
                                    "supervisor and worker come from different installations")
            if length > MAX_FRAME:
                raise ChannelBroken(f"channel frame of {length} bytes")
            end = HEADER.size + length
            if len(self._buf) < end:
                break
            try:
                message = pickle.loads(self._buf[HEADER.size:end])
            except Exception as exc:  # a frame of the right size and version that is not a message
                raise ChannelBroken(f"unreadable channel frame: {exc}") from exc
            del self._buf[:end]
            if not isinstance(message, tuple) or not message:
                raise ChannelBroken(f"unreadable channel message: {type(message).__name__}")
            out.append(message)
        return out


RequestHandler = Callable[[str, dict], Awaitable[Any]]
NoteHandler = Callable[[str, dict], None]


class RemoteError(Exception):
    """A request failed on the other end with something other than a MySQLError."""


def _error_value(exc: BaseException) -> tuple:
    if isinstance(exc, MySQLError):
        return ("mysql", exc.code, exc.message, exc.sqlstate)
    return ("other", type(exc).__name__, str(exc))


def _raise_remote(value: tuple) -> None:
    if value[0] == "mysql":
        raise MySQLError(value[1], value[2], value[3])
    raise RemoteError(f"{value[1]}: {value[2]}")


class Channel:
    """Requests, replies and notices over one stream; ``run()`` reads until the other end closes.

    Sending never waits for the other end's reading: an outbox task writes frames in the order they
    were queued (``note_nowait`` may be called from synchronous code)."""

    def __init__(self, stream: trio.abc.HalfCloseableStream, *, on_request: RequestHandler | None = None,
                 on_note: NoteHandler | None = None, name: str = "channel") -> None:
        self.stream = stream
        self.name = name
        self.on_request = on_request
        self.on_note = on_note
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[trio.Event, list]] = {}
        self._out_send, self._out_recv = trio.open_memory_channel[bytes](float("inf"))
        self.closed = False
        self._nursery: trio.Nursery | None = None

    # -- sending ---------------------------------------------------------------

    def note_nowait(self, kind: str, **body: Any) -> None:
        if not self.closed:
            self._out_send.send_nowait(encode(("note", kind, body)))

    async def call(self, kind: str, *, timeout: float = float("inf"), **body: Any) -> Any:
        """Send a request and wait for its reply, at most ``timeout`` seconds (CallTimedOut); a
        MySQLError on the other end is raised here."""
        if self.closed:
            raise ChannelBroken(f"{self.name}: closed")
        rid = next(self._ids)
        event = trio.Event()
        slot: list = []
        self._waiting[rid] = (event, slot)
        try:
            self._out_send.send_nowait(encode(("req", rid, kind, body)))
            with trio.move_on_after(timeout) as scope:
                await event.wait()
        finally:
            self._waiting.pop(rid, None)
        if scope.cancelled_caught:
            raise CallTimedOut(f"{self.name}: no reply to {kind} within {timeout:g}s")
        if not slot:
            raise ChannelBroken(f"{self.name}: closed before replying to {kind}")
        ok, value = slot
        if not ok:
            _raise_remote(value)
        return value

    # -- running ---------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Read and write until the other end closes or sends something unreadable (logged); then
        close the stream and return. Pending calls fail with ChannelBroken either way."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._write_loop)
                task_status.started()
                try:
                    await self._read_loop()
                except ChannelBroken as exc:  # the other end is not to be trusted any more: end here
                    log.error("%s: %s; closing the channel", self.name, exc)
                nursery.cancel_scope.cancel()
        finally:
            self._close()
            await trio.aclose_forcefully(self.stream)

    def _close(self) -> None:
        self.closed = True
        for event, _slot in list(self._waiting.values()):
            event.set()  # empty slot: ChannelBroken in call()

    async def _write_loop(self) -> None:
        async for frame in self._out_recv:
            try:
                await self.stream.send_all(frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                log.debug("%s: cannot send: %s", self.name, exc)
                return

    async def _read_loop(self) -> None:
        decoder = FrameDecoder()
        while True:
            try:
                data = await self.stream.receive_some(1 << 20)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            for message in decoder.feed(data):
                try:
                    self._dispatch(message)
                except (ValueError, TypeError) as exc:  # a tuple of the wrong shape
                    raise ChannelBroken(f"malformed {message[0]!r} message: {exc}") from exc

    def _dispatch(self, message: tuple) -> None:
        kind = message[0]
        if kind == "rep":
            _, rid, ok, value = message
            waiting = self._waiting.get(rid)
            if waiting is not None:
                waiting[1][:] = [ok, value]
                waiting[0].set()
        elif kind == "note":
            _, what, body = message
            if self.on_note is None:
                raise ChannelBroken(f"unexpected notice {what!r}")
            try:
                self.on_note(what, body)
            except Exception:  # a notice this end cannot apply: said, and the channel goes on
                log.exception("%s: notice %s failed", self.name, what)
        elif kind == "req":
            _, rid, what, body = message
            assert self._nursery is not None
            self._nursery.start_soon(self._answer, rid, what, body)
        else:
            raise ChannelBroken(f"unknown message kind {kind!r}")

    async def _answer(self, rid: int, what: str, body: dict) -> None:
        try:
            if self.on_request is None:
                raise RemoteError(f"no requests expected here ({what})")
            value = await self.on_request(what, body)
            reply = ("rep", rid, True, value)
        except Exception as exc:  # the error goes back to the caller, who reports it
            if not isinstance(exc, MySQLError):
                log.exception("%s: request %s failed", self.name, what)
            reply = ("rep", rid, False, _error_value(exc))
        if self.closed:
            return
        try:
            frame = encode(reply)
        except Exception as exc:  # a reply that cannot be sent: the caller gets why
            log.exception("%s: the reply to %s cannot be encoded", self.name, what)
            frame = encode(("rep", rid, False, _error_value(exc)))
        self._out_send.send_nowait(frame)
