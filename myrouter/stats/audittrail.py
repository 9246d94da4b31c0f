"""The proxy's side of the audit log: which lines a client session's life writes.

``Proxy.audit`` is one ``AuditTrail``. The client session calls its hooks
(one line each, marked ``# structured logs (audit)``):

* ``login(session, username, schema, error)`` in ``_handshake``, once the
  authentication is decided, and ``connected(session)`` after the OK;
* ``change_user(session, username, schema, error)`` in ``_com_change_user``,
  once the new user's authentication is decided;
* ``error(session, err)`` in ``_send_err`` and ``_try_send_err``: every ERR;
* ``init_db(session, schema, error)``: for ``_com_init_db`` (not called yet);

and ``Proxy._handle_client`` calls ``session_end`` when the session task
ends. Every hook is cheap when the audit log is off (``Proxy.audit_log`` is
None) and none raises. The events are described in
:mod:`myrouter.stats.auditlog`.

Pairing a reason with its ERR: ``login``/``change_user`` only remember who
tried and why it failed; the ERR the session sends next writes the one line
(``MySQL_Client_Connect_ERR`` / ``MySQL_Change_User_ERR``) with both, so a
failed login is one line whatever path refused it (wrong password, the user's
max_connections, a timeout ...).

Sessions and the proxy are used by duck typing (their attributes are named
where used); the only imports are the sans-I/O protocol constants.
"""

from __future__ import annotations

import time
from typing import Any

from ..protocol.constants import Command
from ..protocol.errors import ER_ACCESS_DENIED_ERROR
from . import auditlog as A

__all__ = ["AuditTrail", "command_name", "server_addr", "session_fields"]


class _SessionAudit:
    """What the trail keeps of a logged-in session until its Close line."""

    __slots__ = ("bytes_in_at_error", "errors", "last_error")

    def __init__(self) -> None:
        self.errors = 0  # ERR packets the proxy sent
        self.last_error: int | None = None
        self.bytes_in_at_error = -1  # client bytes received when the last ERR was sent


class AuditTrail:
    def __init__(self, logs: Any, settings: Any, sessions: Any) -> None:
        # the runtime components (myrouter.runtime, above this package: not imported):
        self.logs = logs  # Logs: audit_log (None: off)
        self.settings = settings  # RuntimeConfig: config, user(), lookup_credential()
        self.sessions = sessions  # SessionRegistry: draining
        self._pending: dict[int, tuple[str, str, str, str | None]] = {}  # session id -> (event, user, schema, why)
        self._sessions: dict[int, _SessionAudit] = {}  # logged-in sessions

    # -- hooks ---------------------------------------------------------------------

    def login(self, session, username: str, schema: str | None, error) -> None:
        """The handshake's authentication is decided (before its OK or ERR is sent)."""
        reason = self.denied_reason(username, error, session.tls) if error is not None else None
        self._pending[session.id] = (A.CONNECT_ERR, username, schema or "", reason)

    def connected(self, session) -> None:
        """The handshake's OK was sent: ``MySQL_Client_Connect_OK``."""
        self._pending.pop(session.id, None)
        self._sessions[session.id] = _SessionAudit()
        log = self.logs.audit_log
        if log is not None:
            log.event(A.CONNECT_OK, **session_fields(session))

    def change_user(self, session, username: str, schema: str | None, error) -> None:
        """COM_CHANGE_USER's authentication is decided (before its OK or ERR is sent).

        Success is written now (``MySQL_Change_User_OK``: the new user and schema,
        the previous user in ``extra_info``); a failure with the ERR that follows.
        """
        if error is not None:
            self._pending[session.id] = (A.CHANGE_USER_ERR, username, schema or "",
                                         self.denied_reason(username, error, session.tls))
            return
        log = self.logs.audit_log
        if log is not None:
            user = self.settings.user(username)
            fields = session_fields(session)
            fields.update(username=username, schemaname=schema or (user.default_schema if user else "") or "",
                          extra_info=f"previous user {session.username!r}")
            log.event(A.CHANGE_USER_OK, **fields)

    def init_db(self, session, schema: str, error=None) -> None:
        """COM_INIT_DB answered: ``MySQL_Client_Init_DB`` (with the error's fields if it failed)."""
        log = self.logs.audit_log
        if log is None:
            return
        fields = session_fields(session)
        fields["schemaname"] = schema
        if error is not None:
            fields.update(A.error_fields(error))
        log.event(A.CLIENT_INIT_DB, **fields)

    def error(self, session, err) -> None:
        """An ERR packet to the client: one line.

        During the handshake it is that connection's ``MySQL_Client_Connect_ERR`` (with
        the user and reason ``login`` remembered); after a failed COM_CHANGE_USER a
        ``MySQL_Change_User_ERR``; otherwise a ``MySQL_Client_Error`` naming the command.
        """
        state = self._sessions.get(session.id)
        if state is not None:
            state.errors += 1
            state.last_error = err.code
            state.bytes_in_at_error = session.client.bytes_in
        pending = self._pending.pop(session.id, None)
        log = self.logs.audit_log
        if log is None:
            return
        fields = session_fields(session)
        if pending is not None:
            event, fields["username"], fields["schemaname"], reason = pending
            fields["extra_info"] = reason if reason is not None else err.message
        elif session.state.value == "handshake":  # frontend.session.SessionState.HANDSHAKE
            event = A.CONNECT_ERR
            fields["extra_info"] = err.message
        else:
            event = A.CLIENT_ERROR
            fields["command"] = command_name(session.command)
        fields.update(A.error_fields(err))
        log.event(event, **fields)

    def backend_error(self, server, hostgroup: int, error: BaseException, *, session=None,
                      during: str = "connect") -> None:
        """A backend connection failed: ``MySQL_Backend_Error`` (see ``Proxy.log_backend_error``)."""
        log = self.logs.audit_log
        if log is None:
            return
        fields = session_fields(session) if session is not None else {"thread_id": 0, "ssl": None}
        fields.update(server_addr=server_addr(server), hostgroup_id=hostgroup, during=during)
        fields.update(A.error_fields(error))
        log.event(A.BACKEND_ERROR, **fields)

    def session_end(self, session, *, cancelled: bool, crashed: bool) -> None:
        """The session task ended: ``MySQL_Client_Quit`` (after COM_QUIT) and ``MySQL_Client_Close``.

        ``cancelled``: its cancel scope was cancelled (the idle reaper, a drain, KILL);
        ``crashed``: an unexpected exception ended it. Sessions that never logged in get
        no Close: their Connect_ERR said it all.
        """
        self._pending.pop(session.id, None)
        state = self._sessions.pop(session.id, None)
        log = self.logs.audit_log
        if state is None or log is None:
            return
        fields = session_fields(session)
        now = time.time()
        if session.command == Command.QUIT:
            log.event(A.CLIENT_QUIT, now=now, **fields)
            reason = "client sent COM_QUIT"
        elif crashed:
            reason = "internal error (see the process log)"
        elif self.sessions.draining:
            reason = "proxy shutdown"
        elif session.killed:
            reason = "killed (KILL CONNECTION)"
        elif cancelled:
            reason = f"idle for more than wait_timeout ({session.wait_timeout_ms()} ms)"
        else:
            # the client sent nothing since the last ERR: the session ended on that error
            after = (f" after error {state.last_error}" if state.last_error is not None
                     and state.bytes_in_at_error == session.client.bytes_in else "")
            if session.command is not None:  # ended while handling a command
                reason = f"closed during {command_name(session.command)}{after}"
            else:
                reason = f"closed{after}" if after else "client disconnected"
        fields["extra_info"] = reason
        fields.update(A.close_fields(session.connected_at, now))
        fields.update(bytes_received=session.client.bytes_in, bytes_sent=session.client.bytes_out,
                      errors=state.errors)
        log.event(A.CLIENT_CLOSE, now=now, **fields)

    # -- helpers -------------------------------------------------------------------

    def denied_reason(self, username: str, error, tls: bool) -> str:
        """Why a login was refused, for the audit log (never the password or its hash)."""
        if error.code != ER_ACCESS_DENIED_ERROR:
            return error.message
        user = self.settings.config.user(username)
        if self.settings.lookup_credential(username) is None:
            if user is not None and not user.active:
                return f"user {username!r} is not active"
            return f"unknown user {username!r}"
        if not tls and user is not None and user.use_ssl:
            return "user requires TLS (use_ssl=1)"  # refused over plain TCP whatever the password
        if error.message.endswith("(using password: NO)"):
            return "no password given"
        return "wrong password"


def session_fields(session) -> dict[str, Any]:
    """ProxySQL's audit fields of a client session."""
    proxy_addr = None
    if session.proxy_host is not None:
        host = session.proxy_host
        proxy_addr = f"[{host}]:{session.proxy_port}" if ":" in host else f"{host}:{session.proxy_port}"
    return {"thread_id": session.id, "username": session.username, "schemaname": session.schema or "",
            "client_addr": session.client_addr, "proxy_addr": proxy_addr, "ssl": session.tls}


def command_name(cmd: int | None) -> str:
    """``COM_QUERY`` ... for a command byte; ``0x40`` for one MySQL does not define."""
    if cmd is None:
        return ""
    try:
        return "COM_" + Command(cmd).name
    except ValueError:
        return f"0x{cmd:02x}"


def server_addr(server: Any) -> str:
    """``host:port`` of a ServerAddress, a routing Server (its ``address``) or a string."""
    address = getattr(server, "address", server)
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if host is None or port is None:
        return str(server)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
