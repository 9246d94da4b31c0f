"""A throw-away replicated MariaDB test bed: one primary and N replicas.

Used by the pytest fixtures (``tests/conftest.py``) and by ``make run`` (:mod:`myrouter_testbed.demo`)::

    from myrouter_testbed.mariadb import ensure_packages, start_cluster

    ensure_packages()                    # apt-get installs MariaDB/sysbench if missing
    with start_cluster(replicas=2) as cluster:
        conn = cluster.primary.connect("app", "app")
        ...

Every server is a private ``mariadbd`` process (never the system service) with its
own datadir and unix socket under a short temporary directory, listening on a free
TCP port of 127.0.0.1 only. Replication is real GTID replication
(``MASTER_USE_GTID=slave_pos``, ``gtid_strict_mode=1``, ROW binlogs).

Accounts (created on the primary after it starts with its binlog on, so they
replicate to every replica):

====================  =========  ===================================================
user@host             password   privileges
====================  =========  ===================================================
``app@%``             app        ALL PRIVILEGES on ``*.*`` except READ_ONLY ADMIN,
                                 so ``read_only=1`` replicas refuse its writes (1290)
``monitor@%``         monitor    SELECT, PROCESS, REPLICATION CLIENT, SLAVE MONITOR
``repl@%``            repl       REPLICATION SLAVE
``root@127.0.0.1``    root       ALL PRIVILEGES WITH GRANT OPTION (admin actions)
``root@localhost``    (empty)    the install default, over the unix socket only;
                                 the test bed's own control connection
====================  =========  ===================================================

Databases: ``test`` and ``sbtest`` (for sysbench).

Do not write on a replica as root: with one GTID domain and ``gtid_strict_mode``,
a local transaction on a replica breaks replication of the primary's next one.

``python -m myrouter_testbed.mariadb`` starts a cluster and keeps it running until Ctrl-C.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import pymysql
import pymysql.cursors

from myrouter_testbed.process import OwnedProcess

__all__ = [
    "APP_PASSWORD",
    "APP_USER",
    "DATABASES",
    "MONITOR_PASSWORD",
    "MONITOR_USER",
    "REPL_PASSWORD",
    "REPL_USER",
    "ROOT_PASSWORD",
    "Cluster",
    "ClusterError",
    "ReplicationError",
    "Server",
    "ServerStartError",
    "ensure_packages",
    "start_cluster",
]

log = logging.getLogger(__name__)

HOST = "127.0.0.1"

APP_USER, APP_PASSWORD = "app", "app"
MONITOR_USER, MONITOR_PASSWORD = "monitor", "monitor"
REPL_USER, REPL_PASSWORD = "repl", "repl"
ROOT_PASSWORD = "root"  # root@127.0.0.1; root@localhost (unix socket) keeps an empty password
DATABASES = ("test", "sbtest")

PRIMARY = "primary"
REPLICA = "replica"

#: commands the test bed (and the benchmarks) need -> the Debian package providing each
REQUIRED_COMMANDS = {
    "mariadbd": "mariadb-server",
    "mariadb-install-db": "mariadb-server",
    "mariadb": "mariadb-client",
    "sysbench": "sysbench",
}
APT_PACKAGES = ("mariadb-server", "mariadb-client", "sysbench")

# InnoDB sizing shared by mariadb-install-db and mariadbd: the redo log of the
# template must have the size the servers start with, or each server resizes it.
_INNODB_ARGS = (
    "--innodb-buffer-pool-size=64M",
    "--innodb-log-file-size=16M",
)
_INSTALL_ARGS = (
    "--auth-root-authentication-method=normal",
    "--skip-test-db",
    "--skip-name-resolve",
    *_INNODB_ARGS,
)
_TEMPLATE_MARKER = ".myrouter-testbed-template"
_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux; keep a margin
_BIND_FAILURE = re.compile(r"Bind on TCP/IP port|Address already in use|Do you already have another server running")

_SLAVE_STATUS_FIELDS = (
    "Slave_IO_State",
    "Slave_IO_Running",
    "Slave_SQL_Running",
    "Last_IO_Errno",
    "Last_IO_Error",
    "Last_SQL_Errno",
    "Last_SQL_Error",
    "Using_Gtid",
    "Gtid_IO_Pos",
    "Seconds_Behind_Master",
)


class ClusterError(RuntimeError):
    """The test bed could not do what was asked; the message says why."""


class ServerStartError(ClusterError):
    """A mariadbd did not come up. ``port_in_use`` is true when it could not bind its port."""

    def __init__(self, message: str, *, port_in_use: bool = False) -> None:
        super().__init__(message)
        self.port_in_use = port_in_use


class ReplicationError(ClusterError):
    """A replica did not reach the wanted GTID position, or its replication threads failed."""


# ---------------------------------------------------------------------------
# packages and binaries


def _find_command(name: str) -> str | None:
    """Path of ``name`` on PATH or in an sbin directory (a non-root PATH often lacks /usr/sbin)."""
    found = shutil.which(name)
    if found:
        return found
    for directory in _SBIN_DIRS:
        candidate = Path(directory, name)
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _require_command(name: str) -> str:
    path = _find_command(name)
    if path is None:
        raise ClusterError(
            f"{name!r} not found: install {REQUIRED_COMMANDS.get(name, name)} "
            "(myrouter_testbed.mariadb.ensure_packages() or scripts/bootstrap.sh does it on Debian)"
        )
    return path


def ensure_packages() -> None:
    """Install MariaDB server and client and sysbench with apt-get if any command is missing.

    Does nothing (and prints nothing) when ``mariadbd``, ``mariadb-install-db``,
    ``mariadb`` and ``sysbench`` are all present. Otherwise runs ``apt-get update``
    and ``apt-get install -y mariadb-server mariadb-client sysbench`` (through
    ``sudo`` when not root). Debian's package may start its own system service:
    the test bed never uses or touches it.
    """
    missing = [name for name in REQUIRED_COMMANDS if _find_command(name) is None]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise ClusterError(
            f"missing {', '.join(missing)} and no apt-get to install them: "
            f"install {', '.join(APT_PACKAGES)} by hand"
        )
    if os.geteuid() == 0:
        prefix: list[str] = []
    elif shutil.which("sudo"):
        prefix = ["sudo"]
    else:
        raise ClusterError(f"missing {', '.join(missing)}; not root and no sudo to run apt-get")
    env_cmd = ["env", "DEBIAN_FRONTEND=noninteractive"]
    commands = [
        [*prefix, *env_cmd, "apt-get", "update"],
        [*prefix, *env_cmd, "apt-get", "install", "-y", *APT_PACKAGES],
    ]
    print(f"testbed: missing {', '.join(missing)}; installing {' '.join(APT_PACKAGES)}", flush=True)
    for command in commands:
        print(f"testbed: running: {' '.join(command)}", flush=True)
        result = subprocess.run(command, stdin=subprocess.DEVNULL, check=False)
        if result.returncode != 0:
            raise ClusterError(f"{' '.join(command)} failed with exit code {result.returncode}")
    still_missing = [name for name in REQUIRED_COMMANDS if _find_command(name) is None]
    if still_missing:
        raise ClusterError(f"apt-get install finished but {', '.join(still_missing)} still missing")


def _mariadbd_version(mariadbd: str) -> str:
    out = subprocess.run(
        [mariadbd, "--version"], capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL
    ).stdout
    match = re.search(r"Ver\s+(\S+)", out)
    if not match:
        raise ClusterError(f"cannot read the version from {mariadbd} --version: {out!r}")
    return match.group(1)


# ---------------------------------------------------------------------------
# the template datadir


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "myrouter"


def _root_args() -> list[str]:
    # mariadbd refuses to run as root unless told to
    return ["--user=root"] if os.geteuid() == 0 else []


def template_datadir() -> Path:
    """Return a ready, cached, freshly installed datadir to copy for each server.

    Built once per mariadbd version (and install options) with ``mariadb-install-db``
    under ``$XDG_CACHE_HOME/myrouter`` (or ``~/.cache/myrouter``), atomically: it is
    installed in a temporary directory beside the target and renamed into place.
    """
    mariadbd = _require_command("mariadbd")
    install_db = _require_command("mariadb-install-db")
    version = _mariadbd_version(mariadbd)
    digest = hashlib.sha256(repr((version, _INSTALL_ARGS)).encode()).hexdigest()[:10]
    name = "testbed-template-" + re.sub(r"[^A-Za-z0-9._+-]", "_", version) + "-" + digest
    cache = _cache_dir()
    target = cache / name
    if (target / _TEMPLATE_MARKER).is_file():
        return target

    cache.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f"{name}.tmp-", dir=cache))
    try:
        datadir = building / "data"
        command = [install_db, "--no-defaults", f"--datadir={datadir}", *_INSTALL_ARGS, *_root_args()]
        log.info("testbed: installing the template datadir: %s", " ".join(command))
        started = time.monotonic()
        result = subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr)[-4000:]
            raise ClusterError(
                f"mariadb-install-db failed with exit code {result.returncode}:\n{output}"
            )
        (datadir / _TEMPLATE_MARKER).write_text(version + "\n")
        log.info("testbed: template installed in %.1f s", time.monotonic() - started)
        if target.exists() and not (target / _TEMPLATE_MARKER).is_file():
            log.warning("testbed: removing an incomplete template at %s", target)
            shutil.rmtree(target)
        try:
            os.rename(datadir, target)
        except OSError:
            if (target / _TEMPLATE_MARKER).is_file():
                log.info("testbed: another process built %s first; using it", target)
            else:
                raise
    finally:
        shutil.rmtree(building, onerror=_log_rmtree_error)
    return target


def _log_rmtree_error(function: Any, path: str, exc_info: Any) -> None:
    log.warning("testbed: could not remove %s (%s): %s", path, getattr(function, "__name__", function), exc_info[1])


# ---------------------------------------------------------------------------
# servers

# servers whose mariadbd we started and have not stopped yet, stopped at exit
_RUNNING: dict[int, Server] = {}


def _stop_leftovers() -> None:
    for server in list(_RUNNING.values()):
        log.warning("testbed: stopping %s (pid %s) left running at exit", server.name, server.pid)
        try:
            server.stop(timeout=15)
        except Exception:  # one failure must not keep the others running
            log.exception("testbed: could not stop %s at exit", server.name)


atexit.register(_stop_leftovers)


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports of 127.0.0.1 that were free a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass(eq=False)
class Server(OwnedProcess):
    """One mariadbd process of the test bed: its identity, files and process.

    Files: the datadir holds everything but the socket, including ``error.log``
    (mariadbd's error log), ``console.log`` (its stdout/stderr) and ``mariadbd.pid``.
    """

    _registry = _RUNNING  # stopped at exit if still running (OwnedProcess)

    name: str
    role: str  # PRIMARY or REPLICA
    port: int
    socket: Path
    datadir: Path
    server_id: int
    host: str = HOST
    process: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)
    _console: IO[bytes] | None = field(default=None, repr=False)
    _log_offset: int = field(default=0, repr=False)

    # -- files and state

    @property
    def error_log(self) -> Path:
        return self.datadir / "error.log"

    @property
    def tmpdir(self) -> Path:
        """mariadbd's own temporary directory (internal temporary tables): not the shared /tmp,
        where another program's clean-up could delete a table under a running statement."""
        return self.socket.parent / f"{self.name}.tmp"

    @property
    def pid_file(self) -> Path:
        return self.datadir / "mariadbd.pid"

    @property
    def pid(self) -> int | None:
        """PID of the running mariadbd we started, or None."""
        return self.process.pid if self.running else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def error_log_tail(self, lines: int = 40, since_start: bool = False) -> str:
        """The last ``lines`` lines of the error log (only this start's when ``since_start``)."""
        try:
            with open(self.error_log, "rb") as f:
                if since_start:
                    f.seek(self._log_offset)
                text = f.read().decode(errors="replace")
        except FileNotFoundError:
            text = ""
        if not text.strip():
            try:
                text = (self.datadir / "console.log").read_text(errors="replace")
            except FileNotFoundError:
                return "(no error log yet)"
        return "\n".join(text.splitlines()[-lines:])

    def command(self) -> list[str]:
        """The full mariadbd command line of this server."""
        args = [
            _require_command("mariadbd"),
            "--no-defaults",
            *_root_args(),
            f"--datadir={self.datadir}",
            f"--port={self.port}",
            f"--socket={self.socket}",
            f"--pid-file={self.pid_file}",
            f"--tmpdir={self.tmpdir}",
            f"--log-error={self.error_log}",
            f"--bind-address={self.host}",
            f"--server-id={self.server_id}",
            "--log-bin=mariadb-bin",
            "--log-slave-updates",
            "--binlog-format=ROW",
            "--gtid-strict-mode=1",
            "--gtid-domain-id=0",
            "--skip-name-resolve",
            *_INNODB_ARGS,
            # a killed mariadbd (crash tests) loses nothing the OS already has:
            # flushing once a second instead of at each commit is safe for that and much faster
            "--innodb-flush-log-at-trx-commit=2",
            "--max-connections=500",
            "--max-allowed-packet=64M",
            "--local-infile=1",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
        ]
        if self.role == REPLICA:
            args += ["--read-only=1", "--relay-log=relay-bin"]
        return args + list(self.extra_args)

    # -- life cycle

    def start(self, timeout: float = 60) -> None:
        """(Re)start mariadbd on the same datadir and port; return once it accepts connections.

        Raises ServerStartError (with the tail of the error log) if it exits or does
        not accept connections within ``timeout`` seconds; it is then not running.
        """
        self._spawn()
        self._wait_ready(timeout)

    # -- connections

    def connect(self, user: str = "root", password: str = ROOT_PASSWORD, **kw: Any) -> pymysql.connections.Connection:
        """A pymysql connection over TCP to 127.0.0.1:port (autocommit on unless given)."""
        kw.setdefault("autocommit", True)
        kw.setdefault("connect_timeout", 10)
        return pymysql.connect(host=self.host, port=self.port, user=user, password=password, **kw)

    def admin_connect(self, **kw: Any) -> pymysql.connections.Connection:
        """root@localhost over this server's own unix socket (empty password): the control path."""
        kw.setdefault("autocommit", True)
        kw.setdefault("connect_timeout", 10)
        return pymysql.connect(unix_socket=str(self.socket), user="root", password="", **kw)

    def query(self, sql: str, args: Any = None) -> list[dict[str, Any]]:
        """Run one statement as root over the unix socket and return its rows as dicts."""
        conn = self.admin_connect(cursorclass=pymysql.cursors.DictCursor)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    # -- replication (replicas)

    def slave_status(self) -> dict[str, Any] | None:
        """SHOW SLAVE STATUS as a dict, or None when replication is not configured."""
        rows = self.query("SHOW SLAVE STATUS")
        return rows[0] if rows else None

    def wait_for_gtid(self, gtid_pos: str, timeout: float = 30) -> None:
        """Wait until this replica has applied ``gtid_pos`` and both replication threads run.

        Raises ReplicationError naming the server and giving the SHOW SLAVE STATUS
        error fields when that does not happen within ``timeout`` seconds, or at once
        when the SQL thread has stopped on an error.
        """
        deadline = time.monotonic() + timeout
        conn = self.admin_connect(cursorclass=pymysql.cursors.DictCursor)
        try:
            with conn.cursor() as cur:
                while True:
                    cur.execute("SHOW SLAVE STATUS")
                    status = cur.fetchone()
                    if status is None:
                        raise ReplicationError(f"{self.name} (port {self.port}): replication is not configured")
                    if status["Slave_SQL_Running"] == "No" and status["Last_SQL_Errno"]:
                        raise ReplicationError(self._replication_failure("SQL thread stopped", gtid_pos, status, cur))
                    remaining = deadline - time.monotonic()
                    cur.execute("SELECT MASTER_GTID_WAIT(%s, %s) AS r", (gtid_pos, min(0.5, max(remaining, 0.001))))
                    row = cur.fetchone()
                    reached = row is not None and row["r"] == 0
                    if reached and status["Slave_IO_Running"] == "Yes" and status["Slave_SQL_Running"] == "Yes":
                        return
                    if time.monotonic() >= deadline:
                        raise ReplicationError(
                            self._replication_failure(f"not caught up after {timeout:.0f} s", gtid_pos, status, cur)
                        )
                    if reached:
                        time.sleep(0.05)  # applied, but a thread is still (re)connecting
        finally:
            conn.close()

    def _replication_failure(self, what: str, gtid_pos: str, status: dict[str, Any], cur: Any) -> str:
        cur.execute("SELECT @@gtid_slave_pos AS p")
        row = cur.fetchone()
        fields = ", ".join(f"{k}={status.get(k)!r}" for k in _SLAVE_STATUS_FIELDS)
        return (
            f"{self.name} (port {self.port}): {what}; wanted GTID {gtid_pos!r}, "
            f"gtid_slave_pos={row['p'] if row else None!r}; {fields}"
        )

    def stop_sql_thread(self) -> None:
        """``STOP SLAVE SQL_THREAD``: the replica keeps receiving events but applies none (it lags)."""
        self.query("STOP SLAVE SQL_THREAD")

    def start_sql_thread(self) -> None:
        """``START SLAVE SQL_THREAD``: apply again (``Cluster.wait_replication`` waits for the catch-up)."""
        self.query("START SLAVE SQL_THREAD")

    def set_read_only(self, read_only: bool) -> None:
        """``SET GLOBAL read_only`` (lasts until mariadbd restarts; the role decides it then)."""
        self.query(f"SET GLOBAL read_only = {1 if read_only else 0}")

    # -- internals

    def _spawn(self) -> None:
        if self.running:
            raise ClusterError(f"{self.name} is already running (pid {self.pid})")
        if len(str(self.socket).encode()) >= _MAX_SOCKET_PATH:
            raise ClusterError(f"socket path too long for a unix socket ({len(str(self.socket))} chars): {self.socket}")
        self._forget()
        try:
            self._log_offset = self.error_log.stat().st_size
        except FileNotFoundError:
            self._log_offset = 0
        self.tmpdir.mkdir(exist_ok=True)
        command = self.command()
        log.debug("testbed: starting %s: %s", self.name, " ".join(command))
        self._console = open(self.datadir / "console.log", "ab")
        try:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=self._console,
                stderr=subprocess.STDOUT,
                # our own session: a Ctrl-C in the terminal reaches us, and we stop it cleanly
                start_new_session=True,
            )
        except BaseException:
            self._console.close()
            self._console = None
            raise
        _RUNNING[id(self)] = self

    def _wait_ready(self, timeout: float) -> None:
        """Wait until root can connect over the socket; on failure leave the server stopped."""
        proc = self.process
        assert proc is not None, "_wait_ready without _spawn"
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while True:
            code = proc.poll()
            if code is not None:
                self._forget()
                tail = self.error_log_tail(since_start=True)
                raise ServerStartError(
                    f"{self.name}: mariadbd exited with code {code} while starting on port {self.port}.\n"
                    f"--- tail of {self.error_log} ---\n{tail}",
                    port_in_use=bool(_BIND_FAILURE.search(tail)),
                )
            try:
                self.admin_connect(connect_timeout=2).close()
                log.debug("testbed: %s ready on port %d (pid %d)", self.name, self.port, proc.pid)
                return
            except pymysql.err.OperationalError as exc:
                last_error = exc
            if time.monotonic() > deadline:
                tail = self.error_log_tail(since_start=True)
                self.stop()
                raise ServerStartError(
                    f"{self.name}: mariadbd (port {self.port}) did not accept connections within "
                    f"{timeout:.0f} s; last error: {last_error}.\n--- tail of {self.error_log} ---\n{tail}"
                )
            time.sleep(0.05)


# ---------------------------------------------------------------------------
# clusters


@dataclass(eq=False)
class Cluster:
    """A primary and its replicas, all under ``base_dir``."""

    primary: Server
    replicas: list[Server]
    base_dir: Path
    keep: bool = False
    _owns_base_dir: bool = field(default=True, repr=False)
    # start_cluster(tls=True): the servers' CA, certificate and key (myrouter.net.tls file names)
    tls_dir: Path | None = None

    @property
    def servers(self) -> list[Server]:
        """Primary first, then the replicas."""
        return [self.primary, *self.replicas]

    def gtid_binlog_pos(self) -> str:
        """The primary's ``@@gtid_binlog_pos``."""
        return self.primary.query("SELECT @@gtid_binlog_pos AS p")[0]["p"]

    def wait_replication(self, timeout: float = 30, replicas: list[Server] | None = None) -> None:
        """Wait until every replica (or those given) has applied the primary's current position."""
        deadline = time.monotonic() + timeout
        position = self.gtid_binlog_pos()
        for replica in self.replicas if replicas is None else replicas:
            if not replica.running:
                raise ReplicationError(f"{replica.name} (port {replica.port}) is not running")
            replica.wait_for_gtid(position, max(0.0, deadline - time.monotonic()))

    def stop(self) -> None:
        """Stop every server, replicas first; remove ``base_dir`` unless ``keep``."""
        errors: list[BaseException] = []
        for server in reversed(self.servers):
            try:
                server.stop()
            except Exception as exc:
                log.exception("testbed: could not stop %s", server.name)
                errors.append(exc)
        if not errors and not self.keep:
            _remove_dirs(self.base_dir, self.servers, self._owns_base_dir)
        elif self.keep:
            log.info("testbed: kept %s", self.base_dir)
        if errors:
            raise ClusterError(f"could not stop {len(errors)} server(s); left {self.base_dir}") from errors[0]

    def promote(self, replica: Server, timeout: float = 30) -> None:
        """Switch over: make ``replica`` the primary and every other server its replica.

        The old primary goes read_only first, ``replica`` catches up with it, stops
        replicating (``STOP SLAVE; RESET SLAVE ALL``) and goes read_only=OFF; the old
        primary and the other replicas then replicate from it (GTID, ``slave_pos``).
        Roles are swapped, so a restarted server starts with the right read_only, and
        ``primary``/``replicas`` describe the new topology.
        """
        if replica not in self.replicas:
            raise ClusterError(f"{replica.name} is not a replica of this cluster")
        old = self.primary
        old.set_read_only(True)
        replica.wait_for_gtid(self.gtid_binlog_pos(), timeout)
        replica.query("STOP SLAVE")
        replica.query("RESET SLAVE ALL")
        replica.set_read_only(False)
        others = [r for r in self.replicas if r is not replica]
        for server in others:
            server.query("STOP SLAVE")
        old.query("SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos")
        for server in [*others, old]:
            _start_replication(server, replica)
        old.role, replica.role = REPLICA, PRIMARY
        self.primary = replica
        self.replicas = [*others, old]
        self.wait_replication(timeout)

    def summary(self) -> str:
        """Human-readable lines: each server and a ready-to-paste client command."""
        lines = []
        for server in self.servers:
            lines.append(
                f"{server.name:<9} {server.role:<7} {server.host}:{server.port}  server_id={server.server_id}  "
                f"pid={server.pid}  datadir={server.datadir}"
            )
            lines.append(f"    mariadb -h{server.host} -P{server.port} -u{APP_USER} -p{APP_PASSWORD}")
        lines.append(
            f"users: {APP_USER}/{APP_PASSWORD} (all but READ_ONLY ADMIN), {MONITOR_USER}/{MONITOR_PASSWORD}, "
            f"{REPL_USER}/{REPL_PASSWORD}, root/{ROOT_PASSWORD} (from 127.0.0.1); databases: {', '.join(DATABASES)}"
        )
        return "\n".join(lines)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _remove_dirs(base_dir: Path, servers: list[Server], owns_base_dir: bool) -> None:
    if owns_base_dir:
        if base_dir.exists():
            shutil.rmtree(base_dir, onerror=_log_rmtree_error)
        return
    for server in servers:  # a caller's directory: remove only what we made in it
        for path in (server.datadir, server.tmpdir):
            if path.exists():
                shutil.rmtree(path, onerror=_log_rmtree_error)
        server.socket.unlink(missing_ok=True)


def _short_tmp_dir() -> str:
    tmp = tempfile.gettempdir()
    return "/tmp" if len(tmp) > 40 and os.path.isdir("/tmp") else tmp


def _setup_primary(primary: Server) -> None:
    """Accounts and databases, created with the binlog on so that they replicate."""
    statements = [
        f"CREATE USER '{APP_USER}'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('{APP_PASSWORD}')",
        f"GRANT ALL PRIVILEGES ON *.* TO '{APP_USER}'@'%'",
        # in 10.11 ALL includes READ_ONLY ADMIN, which would let app write on read_only replicas
        f"REVOKE READ_ONLY ADMIN ON *.* FROM '{APP_USER}'@'%'",
        f"CREATE USER '{MONITOR_USER}'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('{MONITOR_PASSWORD}')",
        f"GRANT SELECT, PROCESS, REPLICATION CLIENT, SLAVE MONITOR ON *.* TO '{MONITOR_USER}'@'%'",
        f"CREATE USER '{REPL_USER}'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('{REPL_PASSWORD}')",
        f"GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'%'",
        f"CREATE OR REPLACE USER 'root'@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING PASSWORD('{ROOT_PASSWORD}')",
        "GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION",
        *(f"CREATE DATABASE IF NOT EXISTS `{db}`" for db in DATABASES),
    ]
    conn = primary.admin_connect()
    try:
        with conn.cursor() as cur:
            for statement in statements:
                try:
                    cur.execute(statement)
                except pymysql.MySQLError as exc:
                    raise ClusterError(f"{primary.name}: {statement!r} failed: {exc}") from exc
    finally:
        conn.close()


def _start_replication(replica: Server, primary: Server) -> None:
    conn = replica.admin_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, MASTER_PASSWORD=%s, "
                "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
                (primary.host, primary.port, REPL_USER, REPL_PASSWORD),
            )
            cur.execute("START SLAVE")
    finally:
        conn.close()


def _await_first_start(server: Server, timeout: float, attempts: int = 3) -> None:
    """Wait for a spawned server; if another process took its port meanwhile, move and retry."""
    for attempt in range(1, attempts + 1):
        try:
            server._wait_ready(timeout)
            return
        except ServerStartError as exc:
            if not exc.port_in_use or attempt == attempts:
                raise
            old = server.port
            server.port = free_ports(1)[0]
            log.warning("testbed: %s could not bind port %d; retrying on %d", server.name, old, server.port)
            server._spawn()


def start_cluster(
    replicas: int = 2,
    base_dir: Path | None = None,
    keep: bool = False,
    *,
    start_timeout: float = 60,
    replication_timeout: float = 60,
    tls: bool = False,
) -> Cluster:
    """Start a primary and ``replicas`` GTID replicas; return once all replicas have caught up.

    ``base_dir`` (default: a new ``/tmp/myrt-*``) holds one datadir and one socket per
    server; keep it short (unix socket paths must stay under 100 bytes). On any failure
    every server already started is stopped before the exception propagates.
    ``keep=True`` leaves the files behind after ``Cluster.stop()`` for debugging.
    ``tls=True`` gives every server a certificate (``Cluster.tls_dir``): they offer TLS.
    """
    if replicas < 0:
        raise ValueError("replicas must be >= 0")
    template = template_datadir()
    owns_base_dir = base_dir is None
    if base_dir is None:
        base_dir = Path(tempfile.mkdtemp(prefix="myrt-", dir=_short_tmp_dir()))
    else:
        base_dir = Path(base_dir).absolute()
        base_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    servers: list[Server] = []
    tls_dir = None
    tls_args: list[str] = []
    if tls:
        from myrouter.net import tls as tls_files

        tls_dir = base_dir / "tls"
        tls_files.load_or_create(tls_dir)
        tls_args = [f"--ssl-ca={tls_dir / tls_files.CA_FILE}", f"--ssl-cert={tls_dir / tls_files.CERT_FILE}",
                    f"--ssl-key={tls_dir / tls_files.KEY_FILE}"]
    try:
        ports = free_ports(1 + replicas)
        names = [PRIMARY] + [f"replica{i}" for i in range(1, replicas + 1)]
        for index, (name, port) in enumerate(zip(names, ports)):
            server = Server(
                name=name,
                role=PRIMARY if index == 0 else REPLICA,
                port=port,
                socket=base_dir / f"{name}.sock",
                datadir=base_dir / name,
                server_id=index + 1,
                extra_args=list(tls_args),
            )
            if server.datadir.exists():
                raise ClusterError(f"{server.datadir} already exists; use an empty base_dir")
            shutil.copytree(template, server.datadir, ignore=shutil.ignore_patterns(_TEMPLATE_MARKER))
            servers.append(server)
        for server in servers:  # start them all at once, then wait for each
            server._spawn()
        for server in servers:
            _await_first_start(server, start_timeout)
        primary, replica_servers = servers[0], servers[1:]
        _setup_primary(primary)
        for replica in replica_servers:
            _start_replication(replica, primary)
        cluster = Cluster(primary, replica_servers, base_dir, keep=keep, _owns_base_dir=owns_base_dir,
                          tls_dir=tls_dir)
        cluster.wait_replication(replication_timeout)
    except BaseException:
        log.error("testbed: cluster start failed; stopping the %d server(s) started", len(servers))
        for server in reversed(servers):
            try:
                server.stop()
            except Exception:
                log.exception("testbed: could not stop %s after a failed start", server.name)
        if not keep and not any(s.running for s in servers):
            _remove_dirs(base_dir, servers, owns_base_dir)
        raise
    log.info(
        "testbed: primary + %d replica(s) up in %.1f s under %s",
        replicas, time.monotonic() - started, base_dir,
    )
    return cluster


# ---------------------------------------------------------------------------
# python -m myrouter_testbed.mariadb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m myrouter_testbed.mariadb",
        description="Start a local MariaDB primary with GTID replicas until Ctrl-C.",
    )
    parser.add_argument("--replicas", type=int, default=2, help="number of replicas (default 2)")
    parser.add_argument("--base-dir", type=Path, default=None, help="where datadirs and sockets go (short path)")
    parser.add_argument("--keep", action="store_true", help="keep the datadirs after stopping")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)

    ensure_packages()
    cluster = start_cluster(args.replicas, args.base_dir, args.keep)
    try:
        print(cluster.summary(), flush=True)
        print("Ctrl-C stops the servers.", flush=True)
        reported: set[str] = set()
        while True:
            time.sleep(1)
            for server in cluster.servers:
                if not server.running and server.name not in reported:
                    reported.add(server.name)
                    print(
                        f"{server.name} exited unexpectedly; tail of {server.error_log}:\n{server.error_log_tail()}",
                        file=sys.stderr,
                        flush=True,
                    )
    except KeyboardInterrupt:
        print("stopping...", flush=True)
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
