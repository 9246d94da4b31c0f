#!/usr/bin/env python3
"""Connection scale: many client connections through myrouter on a few backend connections.

Starts the project's test bed (a MariaDB primary and two replicas) and the proxy
as a subprocess (``myrouter serve``, shipped read/write split rules, each
server capped at ``--max-backend-connections``), then:

1. **connect rate**, in the same run: ``--rate-connections`` logins (connect,
   authenticate, ``SELECT 1``, quit), ``--concurrency`` at a time, straight to
   the primary and through the proxy, alternating ``--rounds`` times; prints
   logins/s each way and the median ratio proxied/direct;
2. **holding**: opens ``--connections`` client connections to the proxy (10,000
   by default; the file-descriptor limit is raised to the hard limit), each
   authenticated and having run ``SELECT 1``, and holds them. Prints the
   proxy's resident memory per client connection (RSS growth over the idle
   proxy divided by the connections held), the backend connections the proxy
   holds (asked of the servers: their processlist rows for the proxy's user),
   and checks every held connection still answers.

Targets (issue 4): 10,000 connections at <= 25 KB each on <= 20 backend
connections. ProxySQL 2.7 holds 8,000 idle clients at ~16 KB each.

    .venv/bin/python benchmarks/bench_connections.py
    .venv/bin/python benchmarks/bench_connections.py --connections 2000 --rounds 1

Exit status 0 when every login and query succeeded, 1 otherwise, 2 when the
test bed or the proxy could not start.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from myrouter.backend.connection import ServerAddress, open_backend  # noqa: E402
from myrouter.protocol.auth import BackendSecret  # noqa: E402
from myrouter.protocol.constants import Capability as C  # noqa: E402

HOST = "127.0.0.1"
CAPS = int(C.PROTOCOL_41 | C.SECURE_CONNECTION | C.PLUGIN_AUTH | C.TRANSACTIONS | C.MULTI_RESULTS
           | C.DEPRECATE_EOF | C.LONG_PASSWORD)


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def login(port: int, *, query: bool = True):
    be = await open_backend(ServerAddress(0, HOST, port), username="app", secret=BackendSecret(plain=b"app"),
                            database="test", client_capabilities=CAPS, connect_timeout=60)
    if query:
        tracker = await be.simple_query("SELECT 1")
        if tracker.error is not None:
            raise RuntimeError(f"SELECT 1 failed: {tracker.error[9:]!r}")
    return be


async def connect_rate(port: int, n: int, concurrency: int) -> tuple[float, int]:
    """Logins per second (connect, auth, SELECT 1, quit), ``concurrency`` at a time; and failures."""
    limiter = trio.Semaphore(concurrency)
    failures = 0

    async def one() -> None:
        nonlocal failures
        async with limiter:
            try:
                be = await login(port)
                await be.aclose()
            except Exception as exc:  # counted and reported
                failures += 1
                if failures <= 3:
                    print(f"    login failed: {exc!r}", flush=True)

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)
    return n / (time.perf_counter() - started), failures


async def hold(port: int, n: int, concurrency: int, proxy_pid: int, servers: list[int], report) -> int:
    """Open and hold ``n`` connections; return the number of failures."""
    limiter = trio.Semaphore(concurrency)
    held = []
    failures = 0

    async def one() -> None:
        nonlocal failures
        async with limiter:
            try:
                held.append(await login(port))
            except Exception as exc:
                failures += 1
                if failures <= 3:
                    print(f"    login failed: {exc!r}", flush=True)

    base_rss = rss_kb(proxy_pid)
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)
    elapsed = time.perf_counter() - started
    await trio.sleep(1)
    rss = rss_kb(proxy_pid)
    backend = await count_backend_connections(servers)
    # every held connection still works
    bad = 0
    for be in held[:: max(1, len(held) // 500)]:
        try:
            tracker = await be.simple_query("SELECT 1")
            bad += tracker.error is not None
        except Exception:
            bad += 1
    report(held=len(held), seconds=elapsed, base_rss_kb=base_rss, rss_kb=rss, backend=backend, bad=bad)
    for be in held:
        be.close()
    return failures + bad


async def count_backend_connections(ports: list[int]) -> dict[int, int]:
    out = {}
    for port in ports:
        probe = await open_backend(ServerAddress(0, HOST, port), username="root", secret=BackendSecret(plain=b"root"),
                                   database=None, client_capabilities=CAPS)
        rows = await probe.query_rows("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'app'")
        out[port] = int(rows[0][0])
        await probe.aclose()
    return out


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, default=10_000, help="client connections to hold (default 10000)")
    p.add_argument("--rate-connections", type=int, default=2000, help="logins per rate measurement")
    p.add_argument("--concurrency", type=int, default=16, help="logins in flight at once")
    p.add_argument("--rounds", type=int, default=3, help="direct/proxied rate pairs")
    p.add_argument("--max-backend-connections", type=int, default=6, help="max_connections of each server")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = a.connections + 1000
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < need:
        print(f"note: file-descriptor limit {soft} < {need}: holding {soft - 1000} connections", flush=True)
        a.connections = max(0, soft - 1000)

    import tomlkit

    from bench_sysbench import ProxyProcess
    from myrouter_testbed import mariadb as testbed

    testbed.ensure_packages()
    workdir = Path(tempfile.mkdtemp(prefix="myrouter-bench-conn-"))
    cluster = proxy = None
    status = 0
    try:
        print("starting the test bed (primary + 2 replicas)...", flush=True)
        cluster = testbed.start_cluster(replicas=2)
        proxy = ProxyProcess(cluster, workdir, log_level="WARNING")
        doc = tomlkit.parse(proxy.config_path.read_text())
        for s in doc["mysql_servers"]:
            s["max_connections"] = a.max_backend_connections
        doc["mysql_variables"]["max_connections"] = a.connections + 500
        proxy.config_path.write_text(tomlkit.dumps(doc))
        proxy.start()  # inherits our raised file-descriptor limit
        servers = [cluster.primary.port] + [r.port for r in cluster.replicas]
        print(f"  myrouter pid {proxy.pid} on {HOST}:{proxy.port}; each server capped at "
              f"{a.max_backend_connections} backend connections", flush=True)

        print(f"\nconnect rate: {a.rate_connections} logins (connect + auth + SELECT 1 + quit), "
              f"{a.concurrency} at a time", flush=True)
        ratios = []
        for r in range(a.rounds):
            direct, f1 = trio.run(connect_rate, cluster.primary.port, a.rate_connections, a.concurrency)
            proxied, f2 = trio.run(connect_rate, proxy.port, a.rate_connections, a.concurrency)
            status |= bool(f1 or f2)
            ratios.append(proxied / direct)
            print(f"  round {r + 1}: direct {direct:8.0f}/s   proxied {proxied:8.0f}/s   ratio {proxied / direct:.2f}"
                  f"   failures {f1}+{f2}", flush=True)
        if ratios:
            print(f"  median ratio proxied/direct: {statistics.median(ratios):.2f}", flush=True)

        print(f"\nholding {a.connections} client connections through the proxy...", flush=True)

        def report(*, held, seconds, base_rss_kb, rss_kb, backend, bad):
            per = (rss_kb - base_rss_kb) * 1024 / held if held else 0
            total_backend = sum(backend.values())
            print(f"  held {held} connections (opened in {seconds:.1f} s, {held / seconds:.0f}/s)", flush=True)
            print(f"  proxy RSS {base_rss_kb / 1024:.1f} MiB -> {rss_kb / 1024:.1f} MiB: "
                  f"{per / 1024:.1f} KB per client connection (target <= 25 KB)", flush=True)
            print(f"  backend connections held by the proxy: {total_backend} "
                  f"({', '.join(f'{p}: {n}' for p, n in backend.items())}; target <= 20)", flush=True)
            print(f"  sampled held connections failing SELECT 1: {bad}", flush=True)

        failures = trio.run(hold, proxy.port, a.connections, a.concurrency, proxy.pid, servers, report)
        status |= bool(failures)
    except Exception as exc:
        print(f"benchmark failed: {exc!r}", file=sys.stderr, flush=True)
        return 2
    finally:
        if proxy is not None and proxy.running():
            code, secs = proxy.stop()
            print(f"\nmyrouter stopped: exit {code} after {secs:.1f} s", flush=True)
        if cluster is not None:
            cluster.stop()
    return 1 if status else 0


if __name__ == "__main__":
    sys.exit(main())
