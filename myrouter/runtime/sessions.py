"""The live client sessions of the proxy: what the processlists and KILL look up."""

from __future__ import annotations

from ..protocol.constants import Command


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
