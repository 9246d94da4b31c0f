"""What a server status change means for the connections already open to that server.

The pools give no new connection of a server that is not ONLINE, and close a
connection of such a server when its session gives it back. For the rest:

* ``OFFLINE_SOFT`` (and ``SHUNNED``): the idle connections in the pool are
  closed now; connections sessions hold (a transaction, a lock, temporary
  tables...) are left to finish and are closed when given back. The next
  statements go to the other servers of the hostgroup, which the client does
  not notice (the session's schema and variables are set on the new
  connection).
* ``OFFLINE_HARD``, or a server removed from ``mysql_servers``: idle
  connections are closed, and a session holding a connection to it is ended
  (its client sees the connection drop), as ProxySQL drops those connections.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from myrouter.frontend.session import SessionState

__all__ = ["release_connections"]  # which servers: Topology.offline_servers

if TYPE_CHECKING:
    from .control import ProxyControl
    from myrouter.routing.hostgroups import Server

log = logging.getLogger("myrouter.admin")

def release_connections(app: ProxyControl, soft: set[Server], hard: set[Server]) -> tuple[int, int]:
    """Close idle connections to ``soft``/``hard`` servers; end sessions holding one to a ``hard`` server.

    Returns (connections closed, sessions ended).
    """
    if not soft and not hard:
        return 0, 0
    released = ended = 0
    for srv in soft | hard:
        released += app.pools.close_idle(srv)
    if hard:
        for session in list(app.sessions.values()):
            if session.release_at and session.state is SessionState.IDLE:
                session.release_delayed()  # kept only for connection_delay_multiplex_ms: nothing binds them
            if any(be.server_ref in hard for be in session.backends.values()):
                log.info("session %d: ended: it holds a connection to a server taken OFFLINE_HARD or removed",
                         session.id)
                session.kill()
                ended += 1
    if released or ended:
        log.info("closed %d idle backend connections to offline servers; ended %d sessions", released, ended)
    return released, ended
