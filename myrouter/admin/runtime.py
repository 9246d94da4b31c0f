"""What a server status change means for the connections already open to that server.

``Hostgroups.choose`` already refuses new connections to a server that is not
ONLINE. For the connections sessions already hold (a session keeps one
backend connection per hostgroup it used):

* ``OFFLINE_SOFT`` (and ``SHUNNED`` set by hand): connections in use are left
  alone; a connection is released as soon as its session is idle with nothing
  bound to that connection (no open transaction, table lock, named lock,
  temporary table, user variable, sticky rule). The session then opens a
  connection to another server of the hostgroup on its next statement, which
  the client does not notice (its SET statements and schema are replayed).
  The admin's sweeper re-checks every second until no such connection is left.
* ``OFFLINE_HARD``, or a server removed from ``mysql_servers``: released the
  same way when that is transparent; a session that has state on such a
  connection, or a statement running on it, is ended (its client sees the
  connection drop), as ProxySQL drops those connections.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from myrouter.backend.connection import BackendState

if TYPE_CHECKING:
    from myrouter.app import Proxy
    from myrouter.routing.hostgroups import Server

log = logging.getLogger("myrouter.admin")

SOFT_STATUSES = ("OFFLINE_SOFT", "SHUNNED")
HARD_STATUSES = ("OFFLINE_HARD",)


def _bound(session, hg: int, be) -> bool:
    """Whether the session has state on its connection ``be`` of hostgroup ``hg``."""
    return (
        session.trx_hg == hg
        or session.sticky_hg == hg
        or session.var_hg == hg
        or hg in session.temp_tables.values()
        or be.state is not BackendState.IDLE
        or bool(be.status & 1)  # SERVER_STATUS_IN_TRANS
    )


def release_connections(app: Proxy, soft: set[Server], hard: set[Server]) -> tuple[int, int]:
    """Release session connections to ``soft``/``hard`` servers (see the module docstring).

    Returns (connections released, sessions ended).
    """
    if not soft and not hard:
        return 0, 0
    released = ended = 0
    for session in list(app.sessions.values()):
        idle = getattr(session.state, "value", "") == "idle"
        kill = False
        for hg, be in list(session.backends.items()):
            srv = be.server_ref
            if srv is None or be.closed:
                continue
            is_hard = srv in hard
            if not is_hard and srv not in soft:
                continue
            if idle and not _bound(session, hg, be):
                session._drop_backend(be, quit=True)
                released += 1
            elif is_hard:
                kill = True
        if kill:
            log.info("session %d: ended: it holds a connection to a server taken OFFLINE_HARD or removed", session.id)
            session.kill()
            ended += 1
    if released or ended:
        log.info("released %d backend connections to offline servers; ended %d sessions", released, ended)
    return released, ended


def offline_servers(app: Proxy, retired: list[Server]) -> tuple[set[Server], set[Server]]:
    """(soft, hard) servers that still have connections open."""
    soft = {s for s in app.hostgroups.servers() if s.status in SOFT_STATUSES and s.connections > 0}
    hard = {s for s in app.hostgroups.servers() if s.status in HARD_STATUSES and s.connections > 0}
    hard |= {s for s in retired if s.connections > 0}
    return soft, hard
