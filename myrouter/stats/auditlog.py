"""Audit log: one JSON line per connection event and per error sent to a client.

The file is ``mysql_variables.auditlog_filename`` (empty: off), rotated past
``auditlog_filesize`` (:mod:`myrouter.stats.jsonlog`). Events and fields are
ProxySQL's audit log (``MySQL_Event::write_auth``) so its tooling reads them:

* every event: ``event``, ``timestamp`` (unix milliseconds), ``time`` (local,
  ``YYYY-MM-DD HH:MM:SS.mmm``), ``thread_id`` (the proxy's session id: the
  connection id of its greeting, ``SessionID`` in ``stats_mysql_processlist``), ``username``,
  ``schemaname``, ``client_addr`` (ip:port), ``proxy_addr`` (the listener's
  ip:port), ``ssl`` (the client connection uses TLS), ``extra_info``
  (why, when there is something to say).
* ``MySQL_Client_Connect_OK`` / ``MySQL_Client_Connect_ERR``: a client logged
  in / did not. Every ERR of the handshake is a Connect_ERR (wrong password,
  unknown user, too many connections, timeout, bad handshake ...): it carries
  ``errno``, ``sqlstate``, ``error`` (the message the client got) and, for an
  authentication failure, the user it tried and why in ``extra_info``
  (``unknown user 'bob'``, ``wrong password``, ``no password given``, ``user
  'x' is not active``). Never a password, a scramble or a hash.
* ``MySQL_Client_Quit`` (the client sent COM_QUIT) and ``MySQL_Client_Close``
  (the session ended; ProxySQL's ``creation_time`` and ``duration`` (``"12.345ms"``),
  plus myrouter's ``duration_us``, ``bytes_received`` / ``bytes_sent`` (client
  side), ``errors`` (ERR packets the proxy sent this client) and
  ``extra_info`` saying why it ended).
* ``MySQL_Client_Init_DB``: COM_INIT_DB (``schemaname`` is the new schema; written
  once the session calls ``Proxy.audit.init_db``, see there).
* myrouter's own, in the same style: ``MySQL_Change_User_OK`` /
  ``MySQL_Change_User_ERR`` (COM_CHANGE_USER; ``extra_info`` as for a
  Connect_ERR), ``MySQL_Client_Error`` (an ERR packet the proxy itself sent a
  logged-in client: ``errno``, ``sqlstate``, ``error``, ``command``; errors
  forwarded from a backend are the query log's business), ``MySQL_Backend_Error``
  (a backend connection that failed: ``server_addr``, ``hostgroup_id``,
  ``errno``, ``sqlstate``, ``error``, ``during``: connect, query, kill, mirror,
  greeting).
* the admin interface: ``Admin_Connect_OK``, ``Admin_Connect_ERR``,
  ``Admin_Quit``, ``Admin_Close``.

Errors go to the same file as the connection events on purpose: a failed
login is both, a session's events and errors share ``thread_id`` and come in
order, and one file with one rotation is one thing to ship.

Every string field is cut at ``FIELD_LIMIT`` characters (``...[N more characters]``): user
names, schema names and error texts come from clients. JSON escapes control characters, so a
field never starts a line of its own.

Stdlib only: the caller passes plain values.
"""

from __future__ import annotations

import time
from typing import Any

from .jsonlog import JsonLinesWriter, local_time
from .logsafe import clip
from .querylog import mask_passwords

__all__ = [
    "AuditLog",
    "CONNECT_OK",
    "CONNECT_ERR",
    "CLIENT_QUIT",
    "CLIENT_CLOSE",
    "CLIENT_INIT_DB",
    "CHANGE_USER_OK",
    "CHANGE_USER_ERR",
    "CLIENT_ERROR",
    "BACKEND_ERROR",
    "ADMIN_CONNECT_OK",
    "ADMIN_CONNECT_ERR",
    "ADMIN_QUIT",
    "ADMIN_CLOSE",
    "error_fields",
    "close_fields",
]

# Every string field of an event is cut to this many characters: user and schema names,
# reasons and error messages come from clients (a 1 MB user name is still one short line).
FIELD_LIMIT = 1024

CONNECT_OK = "MySQL_Client_Connect_OK"
CONNECT_ERR = "MySQL_Client_Connect_ERR"
CLIENT_QUIT = "MySQL_Client_Quit"
CLIENT_CLOSE = "MySQL_Client_Close"
CLIENT_INIT_DB = "MySQL_Client_Init_DB"
CHANGE_USER_OK = "MySQL_Change_User_OK"
CHANGE_USER_ERR = "MySQL_Change_User_ERR"
CLIENT_ERROR = "MySQL_Client_Error"
BACKEND_ERROR = "MySQL_Backend_Error"
ADMIN_CONNECT_OK = "Admin_Connect_OK"
ADMIN_CONNECT_ERR = "Admin_Connect_ERR"
ADMIN_QUIT = "Admin_Quit"
ADMIN_CLOSE = "Admin_Close"


def error_fields(err: Any) -> dict[str, Any]:
    """``errno``, ``sqlstate``, ``error`` of a MySQLError (or of any exception: errno 0)."""
    code = getattr(err, "code", None)
    if isinstance(code, int):
        return {"errno": code, "sqlstate": getattr(err, "sqlstate", "HY000"),
                "error": mask_passwords(getattr(err, "message", str(err)))}
    return {"errno": 0, "sqlstate": "", "error": f"{type(err).__name__}: {err}" if str(err) else type(err).__name__}


def close_fields(created: float, now: float) -> dict[str, Any]:
    """ProxySQL's ``creation_time`` and ``duration`` of a closing session, and ``duration_us``."""
    us = max(0, int((now - created) * 1_000_000))
    return {"creation_time": local_time(created), "duration": f"{us / 1000:.3f}ms", "duration_us": us}


class AuditLog(JsonLinesWriter):
    def __init__(self, filename: str, max_bytes: int = 0) -> None:
        super().__init__(filename, max_bytes, what="audit log")

    def event(self, event: str, *, thread_id: int, username: str = "", schemaname: str = "",
              client_addr: str = "", proxy_addr: str | None = None, ssl: bool | None = False,
              extra_info: str | None = None, now: float | None = None, **fields: Any) -> dict[str, Any]:
        """Write one event (ProxySQL's fields first, then ``fields``); returns it."""
        ts = time.time() if now is None else now
        record: dict[str, Any] = {
            "event": event,
            "timestamp": int(ts * 1000),
            "time": local_time(ts),
            "thread_id": thread_id,
            "username": username,
            "schemaname": schemaname,
            "client_addr": client_addr,
        }
        if proxy_addr is not None:
            record["proxy_addr"] = proxy_addr
        if ssl is not None:
            record["ssl"] = ssl
        if extra_info is not None:
            record["extra_info"] = extra_info
        record.update(fields)
        for key, value in record.items():
            if isinstance(value, str) and len(value) > FIELD_LIMIT:
                record[key] = clip(value, FIELD_LIMIT)
        self.write(record)
        return record
