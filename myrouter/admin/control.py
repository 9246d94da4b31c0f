"""What the admin interface needs of the running proxy, written down: ``ProxyControl``.

The admin is the control surface over the whole proxy (ProxySQL's admin is too): it reads the
components' state for the stats tables and ``/metrics``, applies validated configurations, loads
TLS, rotates logs and kills sessions. ``app.Proxy`` wires the components and satisfies this
protocol; the admin depends on the protocol and on the components' own types (all in layers below
it), never on ``app`` or on the cluster package above it (``ClusterControl`` says what it uses of a
cluster node). Only annotations name these types: nothing here runs.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from myrouter.backend.connection import BackendConnection
    from myrouter.backend.pins import PinCounters
    from myrouter.backend.pool import Pools
    from myrouter.backend.stmts import StmtRegistry
    from myrouter.config import Config, MySQLVariables
    from myrouter.frontend.session import ClientSession
    from myrouter.monitor import Monitor
    from myrouter.protocol.auth import RSAKeyPair
    from myrouter.routing.cache import QueryCache
    from myrouter.routing.classifier import Classifier
    from myrouter.routing.digest import Digester
    from myrouter.routing.hostgroups import Hostgroups, Server
    from myrouter.routing.rules import RuleSet
    from myrouter.runtime.topology import Topology
    from myrouter.stats.auditlog import AuditLog
    from myrouter.stats.counters import Counters, ProxyStats
    from myrouter.stats.digests import CommandCounters, DigestStats

    from .commands import LoadSave
    from .core import Admin
    from .layers import Layers


class ClusterBook(Protocol):
    """The revisions a cluster node runs, by configuration module."""

    modules: Mapping[str, Any]  # module -> its state (``applied``: the etcd revision running here)


class ClusterControl(Protocol):
    """What the admin uses of a ``[cluster]`` node (``myrouter.cluster.node.ClusterNode``)."""

    book: ClusterBook
    connected: bool

    def shares(self, modules: tuple[str, ...]) -> bool: ...

    async def load_to_runtime(self, cmd: LoadSave, layers: Layers) -> str: ...

    def node_rows(self) -> list[tuple]: ...

    def runtime_rows(self) -> list[tuple]: ...

    def seconds_since_sync(self) -> float | None: ...


class ProxyControl(Protocol):
    """The running proxy as the admin sees it (``app.Proxy``)."""

    # the running configuration and what is derived from it
    config: Config
    vars: MySQLVariables
    rules: RuleSet
    digester: Digester
    classifier: Classifier
    server_version: str
    rsa: RSAKeyPair
    # servers, connections and sessions
    topology: Topology
    hostgroups: Hostgroups
    pools: Pools
    backends: Iterable[BackendConnection]
    sessions: Mapping[int, ClientSession]
    user_sessions: Mapping[str, int]
    monitor: Monitor
    cluster: ClusterControl | None
    admin: Admin
    # statistics
    counters: Counters
    digest_stats: DigestStats
    command_counters: CommandCounters
    pin_counters: PinCounters
    stmt_registry: StmtRegistry
    query_cache: QueryCache
    audit_log: AuditLog | None

    @property
    def tls_context(self) -> ssl.SSLContext | None: ...

    def statistics(self) -> ProxyStats: ...

    def apply_runtime(self, config: Config, rules: RuleSet | None = None) -> list[Server]: ...

    async def apply_everywhere(self, config: Config, rules: RuleSet | None = None) -> list[Server]: ...

    async def gather_stats(self, names: frozenset[str]) -> dict[str, list]: ...

    async def in_workers(self, action: str) -> int: ...

    async def kill_session(self, session_id: int, *, query_only: bool) -> bool: ...

    def load_tls(self) -> None: ...

    def flush_logs(self) -> list[str]: ...
