"""Fixtures that run myrouter in front of the real replicated test bed.

``proxy_factory(...)`` writes a config for the session's cluster and runs the
proxy in a background thread of the test process (its own ``HostLoop`` with Trio as its guest,
as ``myrouter serve`` runs it), so
tests drive it with ordinary blocking clients and read its statistics
snapshot directly. Servers: writer hostgroup 0 (the primary), reader hostgroup 1
(the replicas); user app/app. ``proxy`` has no query rules (all to hostgroup 0).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pymysql
import pytest
import trio

from myrouter.app import Proxy
from myrouter.config import load_config
from myrouter.engine import HostLoop
from myrouter_testbed.mariadb import Cluster, ensure_packages, free_ports, start_cluster

REPO = Path(__file__).resolve().parents[2]


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(cluster: Cluster, *, port: int, variables: dict | None = None, users: list[dict] | None = None,
                  servers: list[dict] | None = None, rules_dir: Path | None = None,
                  replication_hostgroups: tuple[tuple[int, int], ...] = (), datadir: Path | None = None) -> str:
    variables = {"interfaces": f"127.0.0.1:{port}", "enable_load_data_local_infile": True,
                 "shutdown_timeout": 5000, **(variables or {})}
    if servers is None:
        servers = [{"hostgroup_id": 0, "hostname": "127.0.0.1", "port": cluster.primary.port}]
        servers += [{"hostgroup_id": 1, "hostname": "127.0.0.1", "port": r.port} for r in cluster.replicas]
    if users is None:
        users = [{"username": "app", "password": "app", "default_hostgroup": 0, "default_schema": "test"}]
    lines = [f"rules_dir = {toml_value(rules_dir or REPO / 'rules')}"]
    if datadir is not None:
        lines.append(f"datadir = {toml_value(datadir)}")
    lines += ["", "[mysql_variables]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in variables.items()]
    # port 0: the kernel picks free ports (read back from proxy.admin.listen_addresses / metrics_address)
    lines += ["", "[admin_variables]", 'mysql_ifaces = "127.0.0.1:0"', "restapi_port = 0"]
    for s in servers:
        lines += ["", "[[mysql_servers]]"] + [f"{k} = {toml_value(v)}" for k, v in s.items()]
    for u in users:
        lines += ["", "[[mysql_users]]"] + [f"{k} = {toml_value(v)}" for k, v in u.items()]
    for writer, reader in replication_hostgroups:
        lines += ["", "[[mysql_replication_hostgroups]]", f"writer_hostgroup = {writer}", f"reader_hostgroup = {reader}"]
    return "\n".join(lines) + "\n"


def writer_only(cluster: Cluster, max_connections: int) -> list[dict]:
    """``servers=`` for a proxy with the primary alone, capped at ``max_connections`` backend connections."""
    return [{"hostgroup_id": 0, "hostname": "127.0.0.1", "port": cluster.primary.port,
             "max_connections": max_connections}]


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 15.0, step: float = 0.02) -> float:
    """Poll until ``predicate()``; returns when (time.monotonic()) it became true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)
    return time.monotonic()


def assert_no_leaks(rp: RunningProxy) -> None:
    """Once every client has gone: no session, task or backend connection left in use, every open
    backend connection idle in its pool."""
    st = rp.wait_idle()
    assert st.client_connections_connected == 0, st
    assert st.backend_connections_in_use == 0, st
    assert st.backend_connections_connected == st.backend_connections_idle, st
    assert st.tasks == 0, st


def admin_port(rp: RunningProxy | int) -> int:
    """The admin port of a proxy running in this process, or the port itself (a proxy process's)."""
    return rp if isinstance(rp, int) else rp.proxy.admin.listen_addresses[0][1]


def admin_connect(rp: RunningProxy | int, user: str = "admin", password: str = "admin", **kw) -> pymysql.Connection:
    return pymysql.connect(host="127.0.0.1", port=admin_port(rp), user=user, password=password, autocommit=True,
                           connect_timeout=10, **kw)


def admin_sql(rp: RunningProxy | int, *statements: str, user: str = "admin", password: str = "admin") -> list:
    """Run statements on the proxy's admin interface; the rows of the last one."""
    conn = admin_connect(rp, user, password)
    try:
        with conn.cursor() as cur:
            rows: list = []
            for sql in statements:
                cur.execute(sql)
                rows = list(cur.fetchall())
            return rows
    finally:
        conn.close()


class RunningProxy:
    """A proxy running in a thread of the test process."""

    def __init__(self, config_path: Path, *, data_plane: bool = True) -> None:
        self.data_plane = data_plane  # False: a bare trio.run, no host loop: every session stays on Trio
        self.config = load_config(config_path)
        self.config_path = config_path
        self.proxy: Proxy | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="myrouter", daemon=True)

    def _main(self) -> None:
        try:
            if self.data_plane:
                with HostLoop() as loop:  # as `myrouter serve`: Trio as the guest of the engine's epoll loop
                    loop.run(self._serve)
            else:
                trio.run(self._serve)
        except BaseException as exc:  # reported to the test thread by start()/stop()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self.proxy = Proxy(self.config)
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            await nursery.start(self.proxy.run)
            self._ready.set()

    def start(self) -> RunningProxy:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RuntimeError("proxy failed to start") from self._error
        assert self.proxy is not None
        return self

    @property
    def port(self) -> int:
        assert self.proxy is not None
        return self.proxy.listen_addresses[0][1]

    def stats(self):
        """A frozen statistics snapshot, taken inside the proxy's event loop."""
        return trio.from_thread.run_sync(self.proxy.statistics, trio_token=self._token)

    def call(self, fn: Callable, *args):
        """Run a synchronous function inside the proxy's event loop."""
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def wait_idle(self, timeout: float = 10.0):
        """Wait until no client session or session task is left and every backend connection still open
        is idle in its pool (none handed out, none half-closed); return the stats."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.stats()
            if (st.client_connections_connected == 0 and st.backend_connections_in_use == 0 and st.tasks == 0
                    and st.backend_connections_connected == st.backend_connections_idle):
                return st
            if time.monotonic() > deadline:
                return st
            time.sleep(0.05)

    def connect(self, user: str = "app", password: str = "app", database: str | None = "test", **kw):
        return pymysql.connect(host="127.0.0.1", port=self.port, user=user, password=password,
                               database=database, **kw)

    def stop(self) -> None:
        if self._thread.is_alive() and self._token is not None:
            try:
                trio.from_thread.run(self.proxy.drain_and_stop, 5.0, trio_token=self._token)
            except trio.RunFinishedError:
                pass  # the loop already ended on its own
        self._thread.join(15)
        assert not self._thread.is_alive(), "proxy thread did not stop"
        if self._error is not None and not isinstance(self._error, trio.Cancelled):
            raise RuntimeError("proxy thread failed") from self._error


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[Cluster]:
    """A primary and 2 replicas for one test module only: for tests that crash or stop servers,
    stop replication or promote replicas, never done to the session's shared ``cluster``."""
    ensure_packages()
    with start_cluster(replicas=2) as c:
        yield c


@pytest.fixture
def proxy_factory(cluster: Cluster, tmp_path: Path, no_rules: Path) -> Iterator[Callable[..., RunningProxy]]:
    """Start proxies; without ``rules_dir=`` they have no query rules (all to hostgroup 0)."""
    started: list[RunningProxy] = []

    def make(**kw) -> RunningProxy:
        kw.setdefault("rules_dir", no_rules)
        data_plane = kw.pop("data_plane", True)
        port = free_ports(1)[0]
        path = tmp_path / f"myrouter-{len(started)}.toml"
        path.write_text(render_config(kw.pop("cluster", cluster), port=port, **kw))
        rp = RunningProxy(path, data_plane=data_plane).start()
        started.append(rp)
        return rp

    yield make
    for rp in started:
        rp.stop()


@pytest.fixture
def no_rules(tmp_path: Path) -> Path:
    """An empty rules directory: everything goes to the user's default hostgroup."""
    d = tmp_path / "no-rules"
    d.mkdir()
    return d


@pytest.fixture
def proxy(proxy_factory) -> RunningProxy:
    """Everything to the user's default hostgroup (the primary): no read/write split, so
    protocol tests read their own writes. Routing tests load rules explicitly."""
    return proxy_factory()


@pytest.fixture
def stalled_replica(cluster):
    """The first replica with its SQL thread stopped (restarted afterwards), and the table ``causal_t``
    (id, v) on every server: a row written now is on the primary only (causal reads)."""
    r = cluster.replicas[0]
    with cluster.primary.connect("app", "app", database="test") as c, c.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS causal_t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
    cluster.wait_replication()
    r.query("STOP SLAVE SQL_THREAD")
    try:
        yield r
    finally:
        r.query("START SLAVE SQL_THREAD")
        cluster.wait_replication()
