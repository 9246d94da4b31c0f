"""The live client sessions of the proxy: ids, who is logged in, what KILL and the processlists find.

The sessions themselves (``frontend``) register here when they start and leave when they end;
``max_connections`` and a user's ``max_connections`` are checked against the counts kept here.
"""

from __future__ import annotations

import itertools
from typing import Any

import trio

from ..net.handshakes import HandshakeSlots
from ..protocol.constants import Command
from .role import SINGLE, Peers, ProcessRole


class SessionRegistry:
    """The sessions of this process. A worker's ids are ``index + 1 + k * threads``, unique in the
    instance; ``peers`` (workers only) reaches the instance-wide counts and the other workers'
    sessions."""

    def __init__(self, role: ProcessRole = SINGLE) -> None:
        self.role = role
        self._ids = itertools.count(role.index + 1, role.threads)
        self.peers: Peers | None = None
        self.sessions: dict[int, Any] = {}  # session id -> frontend.session.ClientSession
        self.handshakes = HandshakeSlots()  # sessions not logged in yet (frontend.session._handshake)
        self.user_sessions: dict[str, int] = {}  # logged-in sessions per user name
        self.logged_in_sessions = 0  # sessions counted in user_sessions: what max_connections bounds
        self.draining = False  # the proxy is stopping: no new session, running ones end after their statement
        self._all_closed = trio.Event()

    def __len__(self) -> int:
        return len(self.sessions)

    def next_session_id(self) -> int:
        return next(self._ids)

    def add(self, session) -> None:
        self.sessions[session.id] = session

    def remove(self, session) -> None:
        """``session`` ended: forget it, uncount its user; the last one out ends a drain."""
        self.sessions.pop(session.id, None)
        if session.counted_user:
            self.user_sessions[session.username] -= 1
            self.logged_in_sessions -= 1
            if self.peers is not None:
                self.peers.left(session.username)
        if self.draining and not self.sessions:
            self._all_closed.set()

    async def admit(self, username: str, user_limit: int, limit: int) -> str | None:
        """Count a login of ``username``, unless ``limit`` logins (``max_connections``) or the user's
        ``user_limit`` are reached in the instance: then the refusal names which
        (``"max_connections"`` or ``"user"``) and nothing is counted."""
        if self.logged_in_sessions >= limit:
            return "max_connections"
        if self.user_sessions.get(username, 0) >= user_limit:
            return "user"
        if self.peers is not None:
            with trio.CancelScope(shield=True):  # counted there means counted here: never half
                refusal = await self.peers.admit(username, user_limit, limit)
            if refusal is not None:
                return refusal
        self.count_login(username)
        return None

    def count_login(self, username: str) -> None:
        self.user_sessions[username] = self.user_sessions.get(username, 0) + 1
        self.logged_in_sessions += 1

    def uncount_login(self, username: str) -> None:
        self.user_sessions[username] -= 1
        self.logged_in_sessions -= 1

    def change_user(self, old: str, new: str) -> None:
        """A counted login now belongs to ``new`` (COM_CHANGE_USER does not check the new user's limit,
        as MariaDB does not)."""
        self.user_sessions[old] -= 1
        self.user_sessions[new] = self.user_sessions.get(new, 0) + 1
        if self.peers is not None:
            self.peers.changed_user(old, new)

    def find(self, session_id: int):
        """The session KILL names, or None."""
        return self.sessions.get(session_id)

    def live(self) -> list:
        return list(self.sessions.values())

    async def wait_all_closed(self) -> None:
        """Return once every session has ended (after ``draining`` was set)."""
        if self.sessions:
            await self._all_closed.wait()


def command_name(session) -> str:
    """The ``Command`` column of both processlists (admin and SHOW PROCESSLIST) for a session."""
    state = getattr(session.state, "value", str(session.state))
    if state == "handshake":
        return "Connect"
    if state == "idle" or session.command is None:
        return "Sleep"
    try:
        return Command(session.command).name.capitalize()
    except ValueError:
        return f"Command_{session.command:#04x}"
