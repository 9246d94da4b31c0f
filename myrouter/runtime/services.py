"""What a client session (``frontend``) uses of the proxy, in one explicit object.

``SessionServices`` holds the runtime components a session works with (running configuration,
topology, session registry, stats, logs, side connections, pools, character sets), the caches it
shares with the other sessions (classifier, query cache, prepared statements), the client port's
TLS and authentication helpers, and the host loop of the data plane. ``myrouter.app`` builds it once
and hands it to every session; the session never sees the ``Proxy``.

What is read on every statement is kept as plain attributes, not properties, so the hot path costs
one attribute load: the *views* (``vars``, ``rules``, ``digester``, ``hostgroups``, ``query_log``,
``draining``, ``plain_statements``), refreshed by :meth:`refresh_views` after each runtime change,
and direct references to the few component parts a statement touches (counters, digest and
command stats, pin counters, the log throttle) and to the component methods it may call
(``global_gtid``, ``note_written_gtid``, ``mirror``, ``kill_backend_query``).
"""

from __future__ import annotations

import ssl
from typing import Any

from ..backend.charsets import Charsets
from ..backend.pool import Pools
from ..backend.stmts import StmtRegistry
from ..config import MySQLVariables
from ..protocol.auth import RSAKeyPair
from ..routing.cache import QueryCache
from ..routing.classifier import Classifier
from ..stats.audittrail import AuditTrail
from .config import RuntimeConfig
from .logs import Logs
from .sessions import SessionRegistry
from .side import SideConnections
from .stats import Stats
from .topology import Topology

# the default of mysql-default_query_timeout: below it, every statement gets a deadline
_DEFAULT_QUERY_TIMEOUT = MySQLVariables().default_query_timeout


class SessionServices:
    """The components and shared caches a client session uses, and the per-statement views of them."""

    def __init__(self, *, runtime_config: RuntimeConfig, topology: Topology, registry: SessionRegistry,
                 stats: Stats, logs: Logs, side: SideConnections, pools: Pools, charsets: Charsets,
                 classifier: Classifier, query_cache: QueryCache, stmt_registry: StmtRegistry,
                 audit: AuditTrail, rsa: RSAKeyPair, host_loop: Any = None) -> None:
        # -- the components (cold paths reach through them: login, KILL, SET NAMES...) -------
        self.runtime_config = runtime_config  # users and credentials, server_version, TLS to servers
        self.topology = topology  # GTIDs applied/lagging per server
        self.registry = registry  # session ids, live sessions, per-user counts, handshake slots
        self.stats = stats
        self.logs = logs
        self.side = side  # KILL and mirrored statements on short-lived connections
        self.pools = pools
        self.charsets = charsets
        self.classifier = classifier
        self.query_cache = query_cache
        self.stmt_registry = stmt_registry
        self.audit = audit  # the session's audit hooks (structured logs)
        self.rsa = rsa  # caching_sha2_password's RSA key pair
        self.tls_context: ssl.SSLContext | None = None  # the client port's TLS (Proxy.load_tls)
        # the engine's host loop when the process runs one: plain sessions park on its data plane
        # (frontend/dataplane.py); None under a bare trio.run
        self.host_loop = host_loop
        # -- parts of the components read or called per statement: one attribute load ------
        self.counters = stats.counters
        self.digest_stats = stats.digest_stats
        self.command_counters = stats.command_counters
        self.pin_counters = stats.pin_counters
        self.log_throttle = logs.log_throttle
        self.global_gtid = topology.global_gtid
        self.note_written_gtid = topology.note_written_gtid
        self.mirror = side.mirror
        self.kill_backend_query = side.kill_backend_query
        self.refresh_views()

    def refresh_views(self) -> None:
        """Copy into plain attributes what the sessions read on every statement (no property call
        on the hot path), from the components that own it; run after each change of those."""
        rc = self.runtime_config
        self.vars = rc.vars
        self.rules = rc.rules
        self.digester = rc.digester
        self.hostgroups = self.topology.hostgroups
        self.query_log = self.logs.query_log
        self.draining = self.registry.draining
        # the guard of the plain path and the data plane, computed on each configuration swap: not while
        # every statement is logged (query log) or given a deadline (default_query_timeout)
        self.plain_statements = (self.query_log is None
                                 and self.vars.default_query_timeout >= _DEFAULT_QUERY_TIMEOUT)
