"""A throw-away etcd cluster for the ``[cluster]`` tests: N members on loopback ports.

Like :mod:`myrouter_testbed.mariadb` for MariaDB, it installs nothing itself: it finds the
``etcd`` binary of Debian's ``etcd-server`` package (``/usr/bin/etcd``; scripts/bootstrap.sh
installs it) and starts private members, each with its own data directory under one
temporary directory, on free TCP ports of 127.0.0.1::

    from myrouter_testbed.etcd import start_etcd

    with start_etcd(members=3) as etcd:
        etcd.endpoints              # ["http://127.0.0.1:PORT", ...] (client URLs)
        etcd.members[0].kill()      # SIGKILL one member; .start() brings it back

Only the processes it started are ever stopped, by their PID. ``tls_dir`` makes every
member serve its client URLs over https:// with that directory's ``ca.pem``, ``server.pem``
and ``server-key.pem`` and require client certificates signed by the same CA.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

from myrouter_testbed.mariadb import HOST, ClusterError, free_ports
from myrouter_testbed.process import OwnedProcess

__all__ = ["EtcdCluster", "EtcdMember", "find_etcd", "start_etcd"]

log = logging.getLogger(__name__)

_RUNNING: dict[int, EtcdMember] = {}


def find_etcd() -> str:
    """The ``etcd`` server binary (Debian: /usr/bin/etcd from etcd-server); ClusterError if absent."""
    found = shutil.which("etcd") or ("/usr/bin/etcd" if Path("/usr/bin/etcd").is_file() else None)
    if found is None:
        raise ClusterError("'etcd' not found: install etcd-server (scripts/bootstrap.sh does it on Debian)")
    return found


@dataclass(eq=False)
class EtcdMember(OwnedProcess):
    """One etcd process of the test bed."""

    _registry = _RUNNING  # stopped at exit if still running (OwnedProcess)

    name: str
    client_port: int
    peer_port: int
    datadir: Path
    cluster_spec: str  # --initial-cluster
    tls_dir: Path | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)
    _console: IO[bytes] | None = field(default=None, repr=False)
    _started_once: bool = field(default=False, repr=False)

    @property
    def scheme(self) -> str:
        return "https" if self.tls_dir is not None else "http"

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://{HOST}:{self.client_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        cmd = [
            find_etcd(),
            "--name", self.name,
            "--data-dir", str(self.datadir),
            "--listen-client-urls", self.endpoint,
            "--advertise-client-urls", self.endpoint,
            "--listen-peer-urls", f"http://{HOST}:{self.peer_port}",
            "--initial-advertise-peer-urls", f"http://{HOST}:{self.peer_port}",
            "--initial-cluster", self.cluster_spec,
            "--initial-cluster-token", f"myrouter-test-{self.datadir.parent.name}",
            "--initial-cluster-state", "new",
            "--heartbeat-interval", "50",
            "--election-timeout", "500",
            "--logger", "zap",
            "--log-outputs", "stderr",
        ]
        if self.tls_dir is not None:
            cmd += [
                "--cert-file", str(self.tls_dir / "server.pem"),
                "--key-file", str(self.tls_dir / "server-key.pem"),
                "--trusted-ca-file", str(self.tls_dir / "ca.pem"),
                "--client-cert-auth",
            ]
        return cmd

    def spawn(self) -> None:
        if self.running:
            raise ClusterError(f"etcd member {self.name} is already running (pid {self.process.pid})")
        self.datadir.parent.mkdir(parents=True, exist_ok=True)
        self._console = open(self.datadir.parent / f"{self.name}.log", "ab")
        try:
            self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=self._console,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        except BaseException:
            self._console.close()
            self._console = None
            raise
        self._started_once = True
        _RUNNING[id(self)] = self

    def start(self, timeout: float = 30) -> None:
        """(Re)start this member on its data directory; return once it answers /health."""
        self.spawn()
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                self._forget()
                raise ClusterError(f"etcd member {self.name} exited with code {code}:\n{self.log_tail()}")
            if self.healthy():
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"etcd member {self.name} not healthy within {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def healthy(self) -> bool:
        if self.tls_dir is not None:  # /health needs a client certificate: a TCP connect tells it listens
            try:
                socket.create_connection((HOST, self.client_port), timeout=1).close()
                return True
            except OSError:
                return False
        try:
            with urllib.request.urlopen(f"{self.endpoint}/health", timeout=1) as resp:
                return json.loads(resp.read()).get("health") == "true"
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def log_tail(self, lines: int = 30) -> str:
        path = self.datadir.parent / f"{self.name}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def pause(self) -> None:
        """SIGSTOP our etcd process: it keeps its connections open but answers nothing (a partition)."""
        if self.running:
            os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.running:
            os.kill(self.process.pid, signal.SIGCONT)


@dataclass(eq=False)
class EtcdCluster:
    members: list[EtcdMember]
    base_dir: Path
    keep: bool = False

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def stop(self) -> None:
        """Stop every member (all at once), then remove the data unless ``keep``."""
        for m in self.members:
            if m.process is not None and m.process.poll() is None:
                m.process.terminate()
        for m in self.members:
            m.stop()
        if not self.keep and not any(m.running for m in self.members):
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def start_all(self, timeout: float = 30) -> None:
        """Start the members that are not running (together: a stopped quorum needs them all)."""
        stopped = [m for m in self.members if not m.running]
        for m in stopped:
            m.spawn()
        for m in stopped:
            m.wait_healthy(timeout)

    def stop_all(self) -> None:
        for m in self.members:
            if m.process is not None and m.process.poll() is None:
                m.process.terminate()
        for m in self.members:
            m.stop()

    def __enter__(self) -> EtcdCluster:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def start_etcd(members: int = 3, *, tls_dir: Path | None = None, keep: bool = False,
               timeout: float = 30) -> EtcdCluster:
    """Start ``members`` etcd members on free loopback ports; return once every one is healthy."""
    if members < 1:
        raise ValueError("members must be >= 1")
    find_etcd()
    base_dir = Path(tempfile.mkdtemp(prefix="myrt-etcd-"))
    ports = free_ports(2 * members)
    names = [f"etcd{i}" for i in range(1, members + 1)]
    spec = ",".join(f"{n}=http://{HOST}:{ports[2 * i + 1]}" for i, n in enumerate(names))
    cluster = EtcdCluster([
        EtcdMember(name=n, client_port=ports[2 * i], peer_port=ports[2 * i + 1], datadir=base_dir / n,
                   cluster_spec=spec, tls_dir=tls_dir)
        for i, n in enumerate(names)
    ], base_dir, keep=keep)
    try:
        started = time.monotonic()
        cluster.start_all(timeout)
        log.info("testbed_etcd: %d members up in %.1f s: %s", members, time.monotonic() - started,
                 ", ".join(cluster.endpoints))
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _stop_leftovers() -> None:
    for member in list(_RUNNING.values()):
        log.warning("testbed_etcd: stopping %s (pid %s) left running at exit", member.name,
                    member.process.pid if member.process else None)
        try:
            member.stop()
        except Exception:  # one failure must not keep the others running
            log.exception("testbed_etcd: could not stop %s at exit", member.name)


atexit.register(_stop_leftovers)
