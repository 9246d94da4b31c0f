"""The Trio side of ``[cluster]``: publish on LOAD, follow the watch, heartbeat.

One :class:`ClusterNode` per proxy (``Proxy.cluster``), run as a service task:

* **start**: read the cluster's configuration; modules absent from etcd are seeded
  from this instance's runtime (a compare-and-swap on "absent", so two first
  instances cannot both seed), present ones replace the file's configuration;
* **publish** (:meth:`ClusterNode.load_to_runtime`, from ``LOAD ... TO RUNTIME``):
  validate locally, then one etcd transaction that compares every module's
  ``mod_revision`` with the one this instance last saw and writes them all; only
  when etcd accepted it is it applied here. A lost race or an unreachable etcd is an
  error and nothing changes;
* **follow**: a watch on the config keys; each revision is decoded, validated as a
  LOAD is, applied atomically (or refused and logged, the last good configuration
  staying); a broken watch is re-established on another endpoint after a new read,
  which also catches up what was missed;
* **heartbeat**: ``nodes/<instance>`` under a lease (what ``stats_cluster_nodes``
  shows on every instance), and a check that what runs here is what etcd holds
  (``myrouter_cluster_seconds_since_sync``).

All changes of the running configuration happen under one lock, so a LOAD and a
revision from the watch never interleave.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import time
from contextlib import aclosing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from myrouter.admin.validate import AdminValidationError
from myrouter.config import ClusterConfig, Config
from myrouter.protocol.errors import ER_UNKNOWN_ERROR, MySQLError
from myrouter.routing.rules import RuleSet

from .candidate import ModuleTables, build_from_modules, module_tables
from .etcd import KV, EtcdClient, EtcdError, EtcdUnavailable, b64, header_revision
from .model import (
    LOCAL_MYSQL_VARIABLES,
    MODULE_OF_COMMAND,
    MODULES,
    Book,
    ClusterValueError,
    KeyLayout,
    NodeInfo,
    decode_module,
    decode_node,
    encode_module,
    encode_node,
    group_events,
    module_writer,
    prefix_end,
)

if TYPE_CHECKING:
    from myrouter.admin.commands import LoadSave
    from myrouter.admin.layers import Layers
    from myrouter.admin.core import Admin
    from myrouter.runtime.config import RuntimeConfig

log = logging.getLogger("myrouter.cluster")

__all__ = ["ClusterNode"]

HEARTBEAT_INTERVAL = 1.0  # seconds between heartbeats (and consistency checks)
LEASE_TTL = 10  # seconds a node stays listed after its last heartbeat
STARTUP_WAIT = 5.0  # how long the start waits for etcd before serving with the file's configuration
REQUEST_TIMEOUT = 2.0  # one etcd request, per endpoint


class ClusterNode:
    def __init__(self, running: RuntimeConfig, admin: Admin, settings: ClusterConfig,
                 listen_addresses: Callable[[], list[tuple[str, int]]]) -> None:
        self.running = running  # the running configuration and rules, which the cluster's revisions replace
        self.admin = admin  # whose layers apply a revision (LOAD ... TO RUNTIME)
        self.settings = settings
        self._listen_addresses = listen_addresses  # the client port's, once listening (the instance's name)
        self.keys = KeyLayout(settings.name)
        self.book = Book()
        self.instance = settings.instance
        self.address = ""
        self.connected = False
        self.last_sync: float | None = None  # monotonic time this instance last confirmed it runs etcd's revisions
        self.nodes: list[NodeInfo] = []  # every instance's heartbeat, from the last read
        self._lock = trio.Lock()
        self._client: EtcdClient | None = None
        self._lease = 0  # the heartbeat's lease (0: none yet)
        self._watch_scope: trio.CancelScope | None = None  # the running watch, cancelled if it falls behind
        self._behind = 0  # heartbeats in a row that found etcd ahead of this instance

    # ------------------------------------------------------------------ public

    def shares(self, modules: tuple[str, ...]) -> bool:
        return any(m in MODULE_OF_COMMAND for m in modules)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        s = self.settings
        addresses = self._listen_addresses()
        host, port = addresses[0] if addresses else ("", 0)
        if not self.instance:
            self.instance = f"{socket.gethostname()}:{port}"
        self.address = f"{socket.gethostname() if host in ('0.0.0.0', '::', '') else host}:{port}"
        self._client = EtcdClient(s.etcd_endpoints, timeout=REQUEST_TIMEOUT, ca=s.etcd_ca, cert=s.etcd_cert,
                                  key=s.etcd_key, username=s.etcd_username, password=s.etcd_password)
        try:
            revision = None
            with trio.move_on_after(STARTUP_WAIT) as waited:
                try:
                    revision = await self._sync(starting=True)
                except EtcdError as exc:
                    log.warning("%s: etcd not reachable at start (%s): serving with the file's "
                                "configuration until it is", self.where, exc)
            if waited.cancelled_caught:
                log.warning("%s: no answer from etcd within %.0f s: serving with the file's configuration; "
                            "LOAD ... TO RUNTIME is refused until etcd answers", self.where, STARTUP_WAIT)
            task_status.started()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._follow, revision)
                nursery.start_soon(self._heartbeat)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await self._leave()
                await self._client.aclose()

    async def load_to_runtime(self, cmd: LoadSave, layers: Layers) -> str:
        """``LOAD ... TO RUNTIME`` of shared modules: validate, publish with CAS, then apply here."""
        running = self.running
        modules = [MODULE_OF_COMMAND[m] for m in cmd.modules if m in MODULE_OF_COMMAND]
        async with self._lock:
            config, rules = layers._validate(cmd, running.config, running.rules, "running")
            tables = module_tables(config, rules if rules is not None else running.rules, modules)
            self._build(config, rules if rules is not None else running.rules, tables, cmd.text)  # as followers will
            revision = await self._publish(cmd.text, tables)
            base = running.config  # unchanged while the lock is held, except per-instance admin variables
            if "ADMIN VARIABLES" in cmd.modules:
                base = dataclasses.replace(base, admin_variables=config.admin_variables)
            config, rules = self._build(base, running.rules, tables, cmd.text)
            now = time.time()
            try:
                info = await layers.apply_validated(cmd.text, config, rules)
            except MySQLError as exc:
                for m in modules:
                    self.book.refuse(m, revision, exc.message)
                log.error("%s: %s was published as revision %d but cannot run here: %s",
                          self.where, cmd.text, revision, exc.message)
                raise
            for m in modules:
                self.book.applied(m, revision, self.instance, now)
            self.last_sync = time.monotonic()
        log.info("%s: %s published as revision %d by %s (%s)", self.where, cmd.text, revision,
                 self.instance, ", ".join(modules))
        note = f"cluster revision {revision}"
        return f"{info}; {note}" if info else note

    # ------------------------------------------------------------------ tables and metrics

    def node_rows(self) -> list[tuple]:
        """``stats_cluster_nodes``: every instance's last heartbeat (this one's from its own state)."""
        now = time.time()
        rows = []
        others = [n for n in self.nodes if n.instance != self.instance]
        for n in [self._own_node(now), *others]:
            status = n.status
            if n.instance != self.instance and now - n.heartbeat > 3 * HEARTBEAT_INTERVAL:
                status = f"no heartbeat for {now - n.heartbeat:.0f} s (last: {status})"
            rows.append((n.instance, n.address, int(n.heartbeat), *(n.applied.get(m, 0) for m in MODULES), status))
        return rows

    def runtime_rows(self) -> list[tuple]:
        """``runtime_cluster``: per module the revision running here, who wrote it, and etcd's."""
        return [(m, st.applied, st.written_by, int(st.applied_at), st.seen, st.status)
                for m, st in self.book.modules.items()]

    def seconds_since_sync(self) -> float | None:
        return None if self.last_sync is None else time.monotonic() - self.last_sync

    # ------------------------------------------------------------------ etcd I/O

    async def _publish(self, what: str, tables: dict[str, dict[str, list[tuple]]]) -> int:
        """One transaction: every module's mod_revision as last seen -> write them all. Its revision."""
        assert self._client is not None
        expected = self.book.compares(tables)
        compare = [{"key": b64(self.keys.config_key(m)), "target": "MOD", "result": "EQUAL",
                    "mod_revision": str(rev)} for m, rev in expected.items()]
        success = [{"request_put": {"key": b64(self.keys.config_key(m)),
                                    "value": b64(encode_module(m, t, self.instance))}} for m, t in tables.items()]
        failure = [{"request_range": {"key": b64(self.keys.config_key(m))}} for m in tables]
        try:
            answer = await self._client.txn(compare, success, failure)
            if answer.get("succeeded"):
                return header_revision(answer)
            current = {m: KV(kvs[0]) if kvs else None for m, response in zip(tables, answer.get("responses", []))
                       for kvs in [response.get("response_range", {}).get("kvs", [])]}
        except EtcdUnavailable as exc:
            raise MySQLError(ER_UNKNOWN_ERROR, f"{what} refused, nothing changed: etcd is unreachable, so the "
                                               f"change cannot be shared with the cluster ({exc})", "HY000") from None
        except EtcdError as exc:
            raise MySQLError(ER_UNKNOWN_ERROR, f"{what} refused, nothing changed: etcd refused the write: {exc}",
                             "HY000") from None
        newer = []
        for m, kv in current.items():
            revision = kv.mod_revision if kv is not None else 0
            if revision != expected[m]:
                writer = module_writer(kv.value) if kv is not None else ""
                newer.append(f"{m} is at revision {revision}" + (f" (written by {writer})" if writer else "")
                             + f", this instance last saw {expected[m]}")
        raise MySQLError(ER_UNKNOWN_ERROR, f"{what} refused, nothing changed: another instance changed the "
                                           f"cluster's configuration meanwhile: {'; '.join(newer)}. It is applied "
                                           "here within seconds; check the memory tables and LOAD again", "HY000")

    async def _sync(self, *, starting: bool = False) -> int:
        """Read the config keys: seed absent modules, apply newer ones. The store revision read."""
        assert self._client is not None
        revision, kvs = await self._client.range_prefix(self.keys.config_prefix, prefix_end(self.keys.config_prefix))
        current = {m: kv for kv in kvs if (m := self.keys.module_of(kv.key)) is not None}
        self._set_connected(True)
        async with self._lock:
            newer = {m: kv for m, kv in current.items() if kv.mod_revision != self.book.modules[m].seen}
            if newer:
                if starting:
                    log.info("%s: taking the cluster's configuration over the file's: %s", self.where,
                             ", ".join(f"{m} revision {kv.mod_revision}" for m, kv in sorted(newer.items())))
                else:
                    log.info("%s: catching up: %s", self.where,
                             ", ".join(f"{m} revision {kv.mod_revision}" for m, kv in sorted(newer.items())))
                await self._apply({m: (kv.mod_revision, kv.value) for m, kv in newer.items()})
            for m in MODULES:
                if m not in current and self.book.modules[m].seen:
                    self.book.deleted(m, revision)
            missing = [m for m in MODULES if m not in current]
            if missing:
                await self._seed(missing)
        # the watch starts after the revision read, not after the seed: what others wrote in between comes too
        return revision

    async def _seed(self, modules: list[str]) -> int:
        """Write this instance's runtime for modules etcd does not have (if still absent). The revision or 0."""
        assert self._client is not None
        running = self.running
        tables = module_tables(running.config, running.rules, modules)
        compare = [{"key": b64(self.keys.config_key(m)), "target": "MOD", "result": "EQUAL", "mod_revision": "0"}
                   for m in modules]
        success = [{"request_put": {"key": b64(self.keys.config_key(m)),
                                    "value": b64(encode_module(m, t, self.instance))}} for m, t in tables.items()]
        answer = await self._client.txn(compare, success, [])
        if not answer.get("succeeded"):
            log.info("%s: another instance seeded the cluster first; its configuration follows",
                     self.where)
            return 0
        revision = header_revision(answer)
        # what runs here: the seeded rows (users' passwords as hashes), the same as other instances will run
        await self._apply({m: (revision, encode_module(m, t, self.instance)) for m, t in tables.items()}, quiet=True)
        log.info("%s: seeded from this instance's runtime as revision %d: %s", self.where, revision,
                 ", ".join(modules))
        return revision

    async def _follow(self, revision: int | None) -> None:
        assert self._client is not None
        delay = 0.1
        failures = 0
        while True:
            try:
                if revision is None:
                    revision = await self._sync()
                failures, delay = 0, 0.1
                watch = self._client.watch(self.keys.config_prefix, prefix_end(self.keys.config_prefix), revision + 1)
                with trio.CancelScope() as self._watch_scope:
                    async with aclosing(watch) as results:
                        async for result in results:
                            async with self._lock:  # never between a LOAD's validation and its apply
                                revision = await self._on_watch_result(result, revision)
                # cancelled by the heartbeat: etcd has revisions the watch did not bring (a silent stream)
                log.info("%s: the watch fell behind etcd; reading the configuration again", self.where)
                revision = None
            except EtcdError as exc:
                revision = None  # read everything again on reconnect: catch up what was missed
                failures += 1
                if failures == 1 and self.connected:
                    # the member we watched on went away: the other endpoints are tried at once
                    log.info("%s: %s; reconnecting", self.where, exc)
                    continue
                if self.connected:
                    log.warning("%s: lost etcd (%s): serving with the configuration it has (%s); "
                                "LOAD ... TO RUNTIME is refused until etcd is back", self.where, exc,
                                _revisions(self.book))
                self._set_connected(False)
                await trio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _on_watch_result(self, result: dict[str, Any], revision: int) -> int:
        """Apply one watch answer's events (grouped by revision); the newest revision known."""
        self._set_connected(True)
        events = []
        for ev in result.get("events", []):
            kv = KV(ev.get("kv", {}))
            module = self.keys.module_of(kv.key)
            if module is None:
                log.warning("%s: ignoring key %r under the config prefix (not a module)",
                            self.where, kv.key.decode("utf-8", "replace"))
                continue
            events.append((kv.mod_revision, module, ev.get("type") == "DELETE", kv.value))
            revision = max(revision, kv.mod_revision)
        for rev, changes in group_events(events):
            await self._apply_changes(rev, changes)
        return max(revision, header_revision(result))

    async def _leave(self) -> None:
        """At shutdown: revoke the heartbeat's lease, so the node leaves stats_cluster_nodes at once."""
        if self._lease and self._client is not None:
            try:
                await self._client.lease_revoke(self._lease)
            except EtcdError as exc:
                log.info("%s: could not remove the heartbeat at shutdown (%s); it expires within %d s",
                         self.where, exc, LEASE_TTL)

    async def _heartbeat(self) -> None:
        assert self._client is not None
        client = self._client
        while True:
            try:
                if self._lease and await client.lease_keepalive(self._lease) == 0:
                    self._lease = 0
                if not self._lease:
                    self._lease = await client.lease_grant(LEASE_TTL)
                now = time.time()
                await client.put(self.keys.node_key(self.instance), encode_node(self._own_node(now)), self._lease)
                _, kvs = await client.range_prefix(self.keys.root, prefix_end(self.keys.root))
                self._read_root(kvs)
            except EtcdError as exc:
                log.debug("%s: heartbeat failed: %s", self.where, exc)
                if not isinstance(exc, EtcdUnavailable):
                    self._lease = 0
            await trio.sleep(HEARTBEAT_INTERVAL)

    def _read_root(self, kvs: list[KV]) -> None:
        nodes = []
        current = {m: 0 for m in MODULES}
        for kv in kvs:
            if kv.key.startswith(self.keys.nodes_prefix):
                name = kv.key[len(self.keys.nodes_prefix):].decode("utf-8", "replace")
                nodes.append(decode_node(kv.value, name))
            elif (m := self.keys.module_of(kv.key)) is not None:
                current[m] = kv.mod_revision
        self.nodes = sorted(nodes, key=lambda n: n.instance)
        if self.book.processed(current):
            self.last_sync = time.monotonic()
            self._behind = 0
            return
        self._behind += 1
        if self._behind >= 3 and self._watch_scope is not None:  # not a change in flight: a stalled watch
            self._behind = 0
            self._watch_scope.cancel()

    # ------------------------------------------------------------------ applying revisions

    async def _apply_changes(self, revision: int, changes: dict[str, bytes | None]) -> None:
        fresh: dict[str, tuple[int, bytes]] = {}
        for m, value in changes.items():
            if value is None:
                log.warning("%s: %s deleted from etcd at revision %d: keeping the running configuration; "
                            "the next LOAD %s TO RUNTIME writes it again", self.where, m, revision,
                            m.replace("_", " ").upper())
                self.book.deleted(m, revision)
            elif revision > self.book.modules[m].seen:
                fresh[m] = (revision, value)
        if fresh:
            await self._apply(fresh)

    async def _apply(self, values: dict[str, tuple[int, bytes]], *, quiet: bool = False) -> None:
        """Decode, validate and apply module values (module -> (revision, value)) as one change."""
        running = self.running
        name = self.where
        decoded: dict[str, dict[str, list[tuple]]] = {}
        writers: dict[str, str] = {}
        for m, (rev, data) in values.items():
            try:
                decoded[m], writers[m] = decode_module(m, data)
            except ClusterValueError as exc:
                self.book.refuse(m, rev, f"malformed value: {exc}")
                log.error("%s: %s revision %d refused (malformed value: %s); keeping the last good "
                          "configuration", name, m, rev, exc)
        if not decoded:
            return
        what = ", ".join(f"{m} revision {values[m][0]} (written by {writers[m]})" for m in decoded)
        try:
            config, rules = build_from_modules(running.config, running.rules, decoded)
            await self.admin.layers.apply_validated(f"{name}: {what}", config, rules)
        except (AdminValidationError, MySQLError) as exc:
            reason = exc.message if isinstance(exc, MySQLError) else str(exc)
            for m in decoded:
                self.book.refuse(m, values[m][0], reason)
            log.error("%s: %s refused: %s; keeping the last good configuration", name, what, reason)
            return
        now = time.time()
        for m in decoded:
            self.book.applied(m, values[m][0], writers[m], now)
        self._update_memory(decoded)
        if not quiet:
            log.info("%s: applied %s", name, what)

    def _update_memory(self, decoded: dict[str, dict[str, list[tuple]]]) -> None:
        """The memory layer shows what the cluster runs (as ProxySQL's cluster sync does)."""
        admin = self.admin
        with admin.internal():
            for m, tables in decoded.items():
                if m == "mysql_variables":  # the shared mysql-* rows; this instance's own ones stay
                    local = sorted(LOCAL_MYSQL_VARIABLES)
                    admin.db.execute("DELETE FROM main.global_variables WHERE variable_name LIKE 'mysql-%' "
                                     f"AND variable_name NOT IN ({', '.join('?' * len(local))})", local)
                    admin.db.executemany("INSERT OR REPLACE INTO main.global_variables VALUES (?, ?)",
                                         tables["global_variables"])
                    continue
                for table, rows in tables.items():
                    admin.replace_rows(f"main.{table}", rows)

    def _build(self, base: Config, base_rules: RuleSet, tables: ModuleTables, what: str) -> tuple[Config, RuleSet]:
        try:
            return build_from_modules(base, base_rules, tables)
        except AdminValidationError as exc:
            raise MySQLError(ER_UNKNOWN_ERROR, f"{what} refused, nothing changed: {exc}", "HY000") from None

    # ------------------------------------------------------------------ state

    @property
    def where(self) -> str:
        """How log lines name this instance and its cluster."""
        return f"cluster {self.settings.name} ({self.instance})"

    def _own_node(self, now: float) -> NodeInfo:
        status = self.book.status() if self.connected else "etcd unreachable"
        return NodeInfo(self.instance, self.address, now, self.book.applied_revisions(), status)

    def _set_connected(self, connected: bool) -> None:
        if connected and not self.connected and self.last_sync is not None:
            log.info("%s: etcd reachable again", self.where)
        self.connected = connected


def _revisions(book: Book) -> str:
    return ", ".join(f"{m} revision {st.applied}" for m, st in book.modules.items())
