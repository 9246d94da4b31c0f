"""Backend connection pools: one per server, shared by every client session.

A client session borrows a connection for a statement (or for as long as
something pins it: a transaction, a lock, temporary tables...) and gives it
back; thousands of sessions so share a few backend connections.

Bookkeeping is synchronous and cheap: borrowing an idle connection is a dict
lookup and a list pop, with no await. Only opening a connection, pinging one
that sat idle for long, or waiting for a free one awaits.

Connections authenticate as the client's user and carry wire-format choices
made at login (EOF packets or not, FOUND_ROWS, multi-statements, session
tracking, the handshake character set). So an idle connection is reusable by
a session with the same :class:`PoolKey`; for another key it is closed when
its slot is needed.

Limits: a server never has more than its ``max_connections`` open connections
(opening ones included). A session that finds every server of a hostgroup full
waits in that hostgroup's FIFO queue; a connection given back goes straight to
the first waiter (no barging), and a waiter gives up after
``connect_timeout_server_max`` with ERR 9001 naming the hostgroup and the wait.
"""

from __future__ import annotations

import collections
import logging
import random
import socket
import time
from dataclasses import dataclass
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol

import trio

from ..net.stream import ConnectionLost
from ..protocol.auth import BackendSecret
from ..protocol.constants import Capability, Command
from ..protocol.errors import PROXYSQL_ER_HOSTGROUP_TIMEOUT, MalformedPacket, MySQLError
from ..protocol.messages import parse_err
from ..protocol.response import ResponseKind
from ..routing.hostgroups import ONLINE, weighted_choice
from .charsets import Charsets
from .connection import BackendConnection, BackendState, open_backend
from .opened import OpenBackends

if TYPE_CHECKING:
    import ssl

    from ..routing.hostgroups import Hostgroups, Server
    from ..stats.counters import Counters

log = logging.getLogger("myrouter.pool")

C = Capability

# Client capabilities that change what goes over a backend connection after
# login: connections are only shared between clients that agree on them.
KEY_CAPABILITIES = int(
    C.DEPRECATE_EOF | C.FOUND_ROWS | C.MULTI_STATEMENTS | C.LOCAL_FILES | C.IGNORE_SPACE
    | C.MULTI_RESULTS | C.PS_MULTI_RESULTS
)

PEEK_AFTER_IDLE = 0.25  # seconds
_RESET = bytes([Command.RESET_CONNECTION])
_RESETTABLE = (BackendState.RESERVED, BackendState.PINNED)  # between statements


class PoolKey(NamedTuple):
    username: str
    capabilities: int  # client capabilities & KEY_CAPABILITIES
    charset: int  # the handshake collation id


@dataclass(slots=True)
class Login:
    """What the pool needs to open a connection for a key (taken from the latest session)."""

    secret: BackendSecret
    client_capabilities: int
    attrs: dict[str, str]


@dataclass(frozen=True, slots=True)
class PoolSettings:
    connect_timeout: float  # seconds, one connection attempt
    wait_timeout: float  # seconds a session waits for a connection of a full hostgroup
    max_packet: int
    max_age: float  # seconds; 0 = no limit (connection_max_age_ms)
    ping_after_idle: float  # seconds idle after which a connection is pinged before reuse
    ping_timeout: float
    idle_timeout: float  # seconds idle after which surplus connections are closed; 0 = never
    min_idle: int  # idle connections kept warm per server and key in use
    free_connections_pct: int  # idle connections above this % of max_connections are surplus
    track_variables: bool  # ask backends to report every session variable change
    reset_queue_length: int = 50  # connections being reset at once (connpoll_reset_queue_length); 0: close them
    connect_retries: int = 0  # further attempts after a failed connect (connect_retries_on_failure)
    connect_retries_delay: float = 0.0  # seconds between attempts (connect_retries_delay)
    tcp_keepalive: bool = True  # SO_KEEPALIVE on server connections (use_tcp_keepalive)
    tcp_keepalive_time: int = 0  # seconds idle before the first probe; 0: the kernel's (tcp_keepalive_time)

    @classmethod
    def from_vars(cls, v) -> PoolSettings:
        return cls(
            connect_retries=v.connect_retries_on_failure,
            connect_retries_delay=v.connect_retries_delay / 1000,
            tcp_keepalive=v.use_tcp_keepalive,
            tcp_keepalive_time=v.tcp_keepalive_time,
            connect_timeout=v.connect_timeout_server / 1000,
            wait_timeout=v.connect_timeout_server_max / 1000,
            max_packet=v.max_allowed_packet,
            max_age=v.connection_max_age_ms / 1000,
            ping_after_idle=v.ping_interval_server_msec / 1000,
            ping_timeout=v.ping_timeout_server / 1000,
            idle_timeout=v.pool_idle_timeout_ms / 1000,
            min_idle=v.pool_min_idle,
            free_connections_pct=v.free_connections_pct,
            track_variables=v.session_track_variables,
            reset_queue_length=v.connpoll_reset_queue_length,
        )


class _Waiter:
    __slots__ = ("key", "event", "conn", "slot")

    def __init__(self, key: PoolKey) -> None:
        self.key = key
        self.event = trio.Event()
        self.conn: BackendConnection | None = None  # a connection handed over
        self.slot: Server | None = None  # or a free slot on this server to open one


class ServerPool:
    """The connections of one server (one hostgroup member)."""

    __slots__ = ("server", "idle", "opening", "in_use", "conn_ok", "conn_err", "latency_us", "waits", "wait_us")

    def __init__(self, server: Server) -> None:
        self.server = server
        self.idle: dict[PoolKey, list[BackendConnection]] = {}  # LIFO: the warmest connection first
        self.opening = 0
        self.in_use = 0  # handed to sessions (reserved, active or pinned)
        self.conn_ok = 0
        self.conn_err = 0
        self.latency_us = 0  # last measured ping round trip
        self.waits = 0
        self.wait_us = 0

    @property
    def idle_count(self) -> int:
        return sum(len(v) for v in self.idle.values())

    @property
    def total(self) -> int:
        return self.opening + self.in_use + self.idle_count

    def __repr__(self) -> str:
        s = self.server
        return (f"<ServerPool hg={s.hostgroup} {s.host}:{s.port} {s.status} idle={self.idle_count} "
                f"in_use={self.in_use} opening={self.opening} max={s.max_connections}>")


@dataclass(frozen=True, slots=True)
class PoolStats:
    """One server's pool, frozen (stats_mysql_connection_pool, /metrics)."""

    hostgroup: int
    host: str
    port: int
    status: str
    used: int
    free: int
    opening: int
    conn_ok: int
    conn_err: int
    max_used: int
    queries: int
    bytes_sent: int
    bytes_received: int
    latency_us: int
    waits: int
    wait_us: int


#: how often a session waiting for a usable server of its hostgroup looks again (seconds)
NO_SERVER_RECHECK = 0.05


class RunningHostgroups(Protocol):
    """Where the running hostgroups are (a LOAD ... TO RUNTIME or the monitor replaces them)."""

    hostgroups: Hostgroups


class Pools:
    """Every server's pool, the waiting queues, and the maintenance loop.

    What it needs of the rest of the proxy is given, not looked up: the running hostgroups
    (``topology.hostgroups``), the set of open backend connections, the servers' character
    sets, the counters, the TLS context for servers with use_ssl (``tls()``, it changes with
    the mysql-ssl_p2s_* variables) and what to do when opening a connection fails.
    """

    def __init__(self, settings: PoolSettings, topology: RunningHostgroups, opened: OpenBackends, charsets: Charsets,
                 counters: Counters, *, tls: Callable[[], ssl.SSLContext | None],
                 on_connect_failed: Callable[[Server, MySQLError], None], rng: random.Random | None = None) -> None:
        self.settings = settings
        self.topology = topology
        self.opened = opened
        self.charsets = charsets
        self.counters = counters
        self._tls = tls
        self._on_connect_failed = on_connect_failed
        self._rng = rng or random.Random()
        self._pools: dict[Server, ServerPool] = {}
        self._waiters: dict[int, collections.deque[_Waiter]] = {}
        self._logins: dict[PoolKey, Login] = {}
        # The server take_idle drew for (hostgroup, key) when it had no connection to give at once:
        # the acquire that follows uses that draw instead of drawing again, which would favour
        # the servers that already have idle connections (a new server, or one back from a shun,
        # would get less than its weight's share until it had some).
        self._drawn: dict[tuple[int, PoolKey], Server] = {}
        self._nursery: trio.Nursery | None = None
        self.resetting = 0  # connections between COM_RESET_CONNECTION and their return to the pool

    def __repr__(self) -> str:
        return f"<Pools servers={len(self._pools)} waiting={sum(len(q) for q in self._waiters.values())}>"

    def pool(self, server: Server) -> ServerPool:
        p = self._pools.get(server)
        if p is None:
            p = self._pools[server] = ServerPool(server)
        return p

    # -- borrowing ------------------------------------------------------------

    def take_idle(self, hostgroups: Hostgroups, hostgroup: int, key: PoolKey,
                  now: float | None = None) -> BackendConnection | None:
        """An idle connection for ``key`` in ``hostgroup`` right now (no await), or None.

        A connection that sat idle past the ping threshold is not returned here
        (``acquire`` pings it first). ``now``: ``time.monotonic()``, if the caller has read it already.
        """
        group = hostgroups.by_hostgroup.get(hostgroup)
        if not group:
            return None
        if len(group) == 1:
            server = group[0]
        else:
            # a draw that found no idle connection stands until a connection is had for it (here or by
            # acquire): a second attempt (the data plane hands the statement to the Trio path, which
            # asks again) must not draw again, or servers that have idle connections get more than
            # their weight's share
            drawn = self._drawn
            server = (drawn and drawn.pop((hostgroup, key), None)) or self._pick(group, key)
        if server is None or server.status != ONLINE or server.slow:
            return None
        p = self._pools.get(server)
        stack = p.idle.get(key) if p is not None else None
        if not stack:
            self._drawn[(hostgroup, key)] = server
            return None
        be = stack[-1]
        idle = (time.monotonic() if now is None else now) - be.last_used
        if idle > self.settings.ping_after_idle:
            self._drawn[(hostgroup, key)] = server
            return None
        stack.pop()
        p.in_use += 1
        be.state = BackendState.RESERVED
        # A connection idle for a while gets one non-blocking peek: did the server close it (KILL,
        # wait_timeout, restart)? Not on the busy path, where a failure of a connection given back
        # moments ago is handled like any lost connection (reads are retried).
        if idle > PEEK_AFTER_IDLE and self._dead(be):
            log.info("backend %s connection #%d was closed by the server while idle", server.address, be.id)
            self._discard(be, p)
            return None
        return be

    def _pick(self, group: list[Server], key: PoolKey) -> Server | None:
        """A server drawn by weight among the ONLINE ones (then its pool is asked for a connection)."""
        usable = group
        total = 0
        for srv in group:
            if srv.status != ONLINE or srv.weight <= 0 or srv.slow:  # not the common case: filter
                usable = [x for x in group if x.status == ONLINE and x.weight > 0 and not x.slow]
                total = sum(x.weight for x in usable)
                break
            total += srv.weight
        return weighted_choice(usable, total, self._rng) if usable else None

    async def acquire(self, hostgroups: Hostgroups, hostgroup: int, key: PoolKey, login: Login,
                      database: str | None) -> BackendConnection:
        """A connection for ``key`` to a server of ``hostgroup``: idle, newly opened, or after waiting.

        Raises MySQLError 9001 if the hostgroup has no usable server or the
        wait for a free connection times out.
        """
        self._logins[key] = login
        s = self.settings
        deadline = trio.current_time() + s.wait_timeout
        tried: set[Server] = set()
        last_error: MySQLError | None = None
        drawn = self._drawn.pop((hostgroup, key), None)  # take_idle's draw, if it just made one
        while True:
            group = hostgroups.by_hostgroup.get(hostgroup)
            online = [srv for srv in group or ()
                      if srv.status == ONLINE and srv.weight > 0 and not srv.slow and srv not in tried]
            if not online:
                if last_error is not None:
                    raise last_error
                # No server to try now. As ProxySQL, wait for one (a writer moved in after a
                # promotion, a shunned server back) until connect_timeout_server_max, unless the
                # session has somewhere else to go (reads falling back to the writer).
                now = trio.current_time()
                if now < deadline and hostgroups.fallback_for(hostgroup) is None:
                    await trio.sleep(min(NO_SERVER_RECHECK, deadline - now))
                    hostgroups = self.topology.hostgroups  # a LOAD or the monitor may have replaced it
                    continue
                waited = int((s.wait_timeout - max(0.0, deadline - now)) * 1000)
                if not group:
                    raise MySQLError(PROXYSQL_ER_HOSTGROUP_TIMEOUT, f"Max connect timeout reached while reaching "
                                     f"hostgroup {hostgroup} after {waited}ms: it has no servers", "HY000")
                states = ", ".join(f"{srv.host}:{srv.port} {srv.status}" for srv in group)
                raise MySQLError(PROXYSQL_ER_HOSTGROUP_TIMEOUT,
                                 f"Max connect timeout reached while reaching hostgroup {hostgroup} after "
                                 f"{waited}ms: no usable server ({states})", "HY000")
            if drawn is not None and drawn in online:
                server = drawn
            else:
                server = self._pick(online, key)
            drawn = None
            assert server is not None
            p = self.pool(server)
            # 1. an idle connection (pinged first if it sat idle for long)
            be = await self._reuse_idle(p, key)
            if be is not None:
                return be
            # 2. a free slot on some server of the group (weighted choice first, then any),
            # unless sessions already queue for this hostgroup: they come first
            queued = self._waiters.get(hostgroup)
            target = server if p.total < server.max_connections and not queued else None
            if target is None and not queued:
                for srv in online:
                    if self.pool(srv).total < srv.max_connections:
                        target = srv
                        break
            if target is None:
                # 3. a full group: make room by closing an idle connection of another key
                target = self._evict_other_key(online, key)
            if target is not None:
                try:
                    return await self._open(target, key, login, database)
                except MySQLError as exc:
                    last_error = exc
                    tried.add(target)
                    continue
            # 4. wait for a connection or a slot
            handed = await self._wait(hostgroup, key, deadline)
            if isinstance(handed, BackendConnection):
                return handed
            if handed is not None:  # a slot on that server
                try:
                    return await self._open(handed, key, login, database, reserved=True)
                except MySQLError as exc:
                    last_error = exc
                    tried.add(handed)
                    continue

    async def _reuse_idle(self, p: ServerPool, key: PoolKey) -> BackendConnection | None:
        stack = p.idle.get(key)
        while stack:
            be = stack.pop()
            p.in_use += 1
            be.state = BackendState.RESERVED
            if self._dead(be):
                self._discard(be, p)
                continue
            if time.monotonic() - be.last_used <= self.settings.ping_after_idle or await self._ping(be):
                return be
            self._discard(be, p)
        return None

    async def _ping(self, be: BackendConnection) -> bool:
        """COM_PING a connection that sat idle; False (and logged) if it is dead."""
        started = time.perf_counter()
        try:
            with trio.fail_after(self.settings.ping_timeout):
                tracker = await be.run_command(bytes((Command.PING,)), ResponseKind.SIMPLE)
            ok = tracker.error is None
        except (ConnectionLost, MalformedPacket, trio.TooSlowError) as exc:
            log.info("backend %s connection #%d failed its ping after %.0fs idle: %s", be.server, be.id,
                     time.monotonic() - be.last_used, exc)
            ok = False
        if ok:
            self.pool(be.server_ref).latency_us = int((time.perf_counter() - started) * 1_000_000)
            be.last_used = time.monotonic()
        return ok

    def _evict_other_key(self, servers: list[Server], key: PoolKey) -> Server | None:
        """Close the oldest idle connection of another key on a full server; its slot is then free."""
        best = None
        for srv in servers:
            p = self._pools.get(srv)
            if p is None:
                continue
            for k, stack in p.idle.items():
                if k != key and stack and (best is None or stack[0].last_used < best[1][0].last_used):
                    best = (p, stack, k)
        if best is None:
            return None
        p, stack, _ = best
        be = stack.pop(0)
        p.in_use += 1  # _discard counts it out of in_use
        self._discard(be, p, polite=True, notify=False)  # the slot is the caller's, not a waiter's
        return p.server

    async def _connect(self, server: Server, key: PoolKey, login: Login, database: str | None) -> BackendConnection:
        """Open and log in one connection, trying again ``connect_retries`` times, ``connect_retries_delay``
        apart, when the server cannot be reached (ERR 9001: refused, reset, timed out), as ProxySQL's
        mysql-connect_retries_on_failure; all attempts end by ``connect_timeout_server_max``. An error
        of the server itself (wrong password, unknown schema) is not retried, nor a server shunned
        meanwhile. The earlier failures are logged; the last one is raised, and counted by the caller
        as one failed connect (ConnERR, shun_on_failures, audit log)."""
        s = self.settings
        deadline = time.monotonic() + s.wait_timeout
        attempt = 0
        while True:
            try:
                return await open_backend(
                    server.address,
                    username=key.username,
                    secret=login.secret,
                    database=database,
                    client_capabilities=login.client_capabilities,
                    charset=key.charset,
                    attrs=login.attrs,
                    connect_timeout=s.connect_timeout,
                    max_packet=s.max_packet,
                    tls=self._tls(),
                    tcp_keepalive=s.tcp_keepalive,
                    tcp_keepalive_time=s.tcp_keepalive_time,
                )
            except MySQLError as exc:
                if (exc.code != PROXYSQL_ER_HOSTGROUP_TIMEOUT or attempt >= s.connect_retries
                        or time.monotonic() + s.connect_retries_delay >= deadline
                        or server.status != ONLINE):  # shunned (by these failures, say): not now
                    raise
                attempt += 1
                log.info("connect to %s failed (%s); retry %d of %d in %d ms", server.address, exc.message,
                         attempt, s.connect_retries, int(s.connect_retries_delay * 1000))
                await trio.sleep(s.connect_retries_delay)

    async def _open(self, server: Server, key: PoolKey, login: Login, database: str | None, *,
                    reserved: bool = False) -> BackendConnection:
        p = self.pool(server)
        if not reserved:
            p.opening += 1
        charsets = self.charsets
        try:
            s = self.settings
            be = await self._connect(server, key, login, database)
            if s.track_variables and be.capabilities & C.SESSION_TRACK:
                try:
                    with trio.fail_after(s.connect_timeout):
                        tracker = await be.simple_query(b"SET session_track_system_variables='*'")
                except (ConnectionLost, MalformedPacket, trio.TooSlowError) as exc:
                    be.close()
                    raise MySQLError(PROXYSQL_ER_HOSTGROUP_TIMEOUT,
                                     f"Lost connection to backend {server.address} in hostgroup "
                                     f"{server.hostgroup} after login: {exc}", "HY000") from exc
                be.tracks_variables = tracker.error is None
            if charsets.wanted():
                try:
                    with trio.fail_after(s.connect_timeout):
                        await charsets.load(be)
                except (ConnectionLost, MalformedPacket, trio.TooSlowError, MySQLError) as exc:
                    # Not fatal: SET NAMES then goes to the servers instead of being answered locally.
                    charsets.unavailable = True
                    log.warning("cannot read the character sets of %s (%s); SET NAMES will not be answered "
                                "by the proxy", server.address, exc)
                    be.close()
                    p.opening -= 1
                    return await self._open(server, key, login, database)
        except MySQLError as exc:
            p.opening -= 1
            p.conn_err += 1
            server.note_connect_error(exc.code)  # counts it; shun_on_failures errors within 1 s shun
            self._on_connect_failed(server, exc)
            self._slot_freed(server)
            raise
        except BaseException:
            p.opening -= 1
            self._slot_freed(server)
            raise
        p.opening -= 1
        p.conn_ok += 1
        server.note_connect_ok()
        p.in_use += 1
        be.key = key
        be.schema = database
        be.server_ref = server
        be.state = BackendState.RESERVED
        self.opened.opened(be)
        return be

    async def _wait(self, hostgroup: int, key: PoolKey, deadline: float):
        """Queue for a connection or a slot of ``hostgroup``; ERR 9001 after the deadline."""
        w = _Waiter(key)
        q = self._waiters.setdefault(hostgroup, collections.deque())
        q.append(w)
        started = time.perf_counter()
        try:
            with trio.move_on_at(deadline) as scope:
                await w.event.wait()
        except BaseException:
            # cancelled (KILL, drain): give back what may have been handed over meanwhile
            if w.conn is not None:
                self.release(w.conn)
            elif w.slot is not None:
                self.pool(w.slot).opening -= 1
                self._slot_freed(w.slot)
            else:
                q.remove(w)
            raise
        waited_us = int((time.perf_counter() - started) * 1_000_000)
        if w.conn is None and w.slot is None:
            try:
                q.remove(w)
            except ValueError:
                pass
        handed = w.conn or w.slot
        if handed is None and (scope.cancelled_caught or trio.current_time() >= deadline):
            ms = int(self.settings.wait_timeout * 1000)
            self.counters.pool_wait_timeouts += 1
            log.warning("no backend connection free in hostgroup %d for %d ms (user %r)", hostgroup, ms,
                        key.username)
            raise MySQLError(PROXYSQL_ER_HOSTGROUP_TIMEOUT,
                             f"Max connect timeout reached while reaching hostgroup {hostgroup} after {ms}ms: "
                             f"every backend connection is in use", "HY000")
        if handed is not None:
            srv = handed.server_ref if isinstance(handed, BackendConnection) else handed
            p = self.pool(srv)
            p.waits += 1
            p.wait_us += waited_us
        return handed

    # -- giving back ----------------------------------------------------------

    def release(self, be: BackendConnection) -> None:
        """A session is done with ``be``: hand it to a waiter, keep it idle, or close it."""
        server = be.server_ref
        p = self._pools.get(server) or self.pool(server)  # without the call, as a rule
        if be.state is BackendState.CLOSED or be.broken:
            self._discard(be, p)
            return
        now = time.monotonic()
        s = self.settings
        if server.status != ONLINE or (s.max_age and now - be.created > s.max_age) or be.retire:
            self._discard(be, p, polite=True)
            return
        be.state = BackendState.IDLE
        be.pins = 0
        q = self._waiters.get(server.hostgroup)
        if q:
            w = q[0]
            if w.key == be.key:
                q.popleft()
                be.state = BackendState.RESERVED
                w.conn = be
                w.event.set()
                return
            if p.total >= server.max_connections:
                # the first waiter needs another key: give it this connection's slot
                q.popleft()
                p.in_use -= 1
                self.opened.closed(be)
                self.opened.retire(be)
                p.opening += 1
                w.slot = server
                w.event.set()
                return
        p.in_use -= 1
        be.last_used = now
        stack = p.idle.get(be.key)
        if stack is None:
            stack = p.idle[be.key] = []
        stack.append(be)

    def reset_and_release(self, be: BackendConnection) -> bool:
        """Give back a connection that carries session state of its own (user variables, temporary tables,
        an open transaction, a changed sql_mode...) after COM_RESET_CONNECTION, in the background.

        Returns False when it cannot be reset (queue full, connection or server unusable, not a MariaDB
        server, no maintenance task): the caller closes it, as before this existed. The connection keeps
        its slot (counted in use) while it is reset.
        """
        server = be.server_ref
        if (self._nursery is None or server is None or self.resetting >= self.settings.reset_queue_length
                or be.broken or be.retire or be.state not in _RESETTABLE or server.status != ONLINE
                or "mariadb" not in be.server_version.lower()):
            # MariaDB's reset is checked to give back the handshake's character set and keep the schema
            # (tests/integration/test_pooling.py); MySQL's documentation says it restores the global one.
            return False
        self.resetting += 1
        self._nursery.start_soon(self._reset, be)
        return True

    async def _reset(self, be: BackendConnection) -> None:
        p = self.pool(be.server_ref)
        counters = self.counters
        what = "COM_RESET_CONNECTION"
        try:
            with trio.fail_after(max(self.settings.connect_timeout, self.settings.ping_timeout)):
                tracker = await be.run_command(_RESET, ResponseKind.SIMPLE)
                if tracker.error is None and be.tracks_variables:
                    what = "session tracking after the reset"  # the reset took the session's setting back too
                    tracker = await be.simple_query(b"SET session_track_system_variables='*'")
            failure = None if tracker.error is None else parse_err(tracker.error).message
        except (ConnectionLost, MalformedPacket, trio.TooSlowError) as exc:
            be.broken = True
            failure = str(exc) or type(exc).__name__
        except BaseException:
            # cancelled (proxy shutdown): the connection's state is unknown
            be.broken = True
            self._discard(be, p)
            raise
        finally:
            self.resetting -= 1
        if failure is not None:
            counters.backend_reset_failures += 1
            log.info("backend %s connection #%d: %s failed (%s); closing it", be.server, be.id, what, failure)
            self._discard(be, p, polite=not be.broken)
            return
        counters.backend_resets += 1
        be.vars = {}  # as a new connection: the handshake's character set, the server's defaults
        be.stmts.clear()  # the server deallocated them
        be.status = tracker.status
        be.in_trx = False  # the reset rolled it back
        self.release(be)

    def discard(self, be: BackendConnection) -> None:
        """A session found ``be`` broken (or its state unknown): close it and free its slot."""
        self._discard(be, self.pool(be.server_ref))

    def _discard(self, be: BackendConnection, p: ServerPool, *, polite: bool = False, notify: bool = True) -> None:
        p.in_use -= 1
        self.opened.closed(be)
        if polite and be.state is not BackendState.CLOSED and not be.broken:
            be.state = BackendState.IDLE
            self.opened.retire(be)
        else:
            be.close()
        if notify:
            self._slot_freed(p.server)

    def _slot_freed(self, server: Server) -> None:
        q = self._waiters.get(server.hostgroup)
        if not q:
            return
        p = self.pool(server)
        if server.status == ONLINE and p.total < server.max_connections:
            w = q.popleft()
            p.opening += 1
            w.slot = server
            w.event.set()

    # -- maintenance ----------------------------------------------------------

    def _close_idle(self, p: ServerPool, stack: list[BackendConnection], gone: list[BackendConnection], *,
                    polite: bool) -> int:
        """Take ``gone`` out of ``stack`` first (so a freed slot is seen as free), then close them."""
        if gone:
            stack[:] = [be for be in stack if be not in gone]
            for be in gone:
                p.in_use += 1  # _discard counts it out of in_use
                self._discard(be, p, polite=polite)
        return len(gone)

    def close_idle(self, server: Server) -> int:
        """Close every idle connection of ``server`` (it went SHUNNED/OFFLINE or left the config)."""
        p = self._pools.get(server)
        if p is None:
            return 0
        return sum(self._close_idle(p, stack, list(stack), polite=True) for stack in p.idle.values())

    def check_idle(self, server: Server) -> int:
        """A connection to ``server`` broke: close its idle connections the server has closed too
        (a crash or restart closes them all at once). Returns how many were closed."""
        p = self._pools.get(server)
        if p is None:
            return 0
        return sum(self._close_idle(p, stack, [be for be in stack if self._dead(be)], polite=False)
                   for stack in p.idle.values())

    def forget_server(self, server: Server) -> None:
        """``server`` left the configuration: close its idle connections; busy ones close when released."""
        self.close_idle(server)
        p = self._pools.get(server)
        if p is not None and p.total == 0:
            del self._pools[server]

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Once a second: close aged, surplus and dead idle connections; keep min_idle warm."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                await trio.sleep(1)
                self.maintain()

    def maintain(self) -> None:
        now = time.monotonic()
        s = self.settings
        live = set(self.topology.hostgroups.servers())
        for server, p in list(self._pools.items()):
            if server not in live or server.status != ONLINE:
                self.close_idle(server)
                if server not in live and p.total == 0:
                    del self._pools[server]
                continue
            keep_free = max(s.min_idle, server.max_connections * s.free_connections_pct // 100)
            for key, stack in p.idle.items():
                dead = [be for be in stack if self._dead(be)]
                for be in dead:
                    log.info("backend %s connection #%d closed by the server while idle", server.address, be.id)
                self._close_idle(p, stack, dead, polite=False)
                aged = [be for be in stack if s.max_age and now - be.created > s.max_age]
                self._close_idle(p, stack, aged, polite=True)
                # surplus idle connections, oldest first (stacks are LIFO: the oldest at the bottom)
                surplus = len(stack) - keep_free
                stale = [be for be in stack[:max(surplus, 0)] if s.idle_timeout and now - be.last_used > s.idle_timeout]
                self._close_idle(p, stack, stale, polite=True)
                missing = min(s.min_idle - len(stack), server.max_connections - p.total)
                if missing > 0 and self._nursery is not None and key in self._logins:
                    for _ in range(missing):
                        p.opening += 1
                        self._nursery.start_soon(self._warm, server, key)

    async def _warm(self, server: Server, key: PoolKey) -> None:
        try:
            be = await self._open(server, key, self._logins[key], None, reserved=True)
        except MySQLError as exc:
            log.info("could not open a warm connection to %s: %s", server.address, exc)
            return
        self.release(be)

    @staticmethod
    def _dead(be: BackendConnection) -> bool:
        """An idle connection the server has written to (an error before closing) or closed."""
        try:
            be.stream.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            return True
        return True  # b"" (closed) or unexpected bytes

    # -- figures --------------------------------------------------------------

    def statistics(self) -> list[PoolStats]:
        out = []
        for server in self.topology.hostgroups.servers():
            p = self._pools.get(server)
            out.append(PoolStats(
                hostgroup=server.hostgroup, host=server.host, port=server.port, status=server.status,
                used=p.in_use if p else 0, free=p.idle_count if p else 0, opening=p.opening if p else 0,
                conn_ok=p.conn_ok if p else 0, conn_err=p.conn_err if p else server.connect_errors,
                max_used=server.max_connections_used, queries=server.queries, bytes_sent=server.bytes_sent,
                bytes_received=server.bytes_received, latency_us=p.latency_us if p else 0,
                waits=p.waits if p else 0, wait_us=p.wait_us if p else 0,
            ))
        return out

    def waiting(self) -> int:
        return sum(len(q) for q in self._waiters.values())
