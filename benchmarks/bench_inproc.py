"""The proxy's CPU per statement, measured in one process: a fake backend, the real proxy
(``Proxy``, sessions, routing with the shipped rules) and fake clients in one ``trio.run``.

    .venv/bin/python benchmarks/bench_inproc.py                        # this checkout
    .venv/bin/python benchmarks/bench_inproc.py --source base=/tmp/tree-a --source new=. --runs 5

Why: on the shared 2-core machine a sysbench run's figures move with whatever else runs
(other users' tests and benchmarks). Here nothing leaves the process but loopback TCP, the
fake peers are a few lines of Python, and the figure is this process's own CPU time
(``getrusage``), so a change of ~1 us per statement in the proxy's Python code shows.

What runs: ``--clients`` connections (default 8) each send ``--queries`` text-protocol point
selects one after the other (``SELECT c FROM sbtest1 WHERE id=N``), every one answered by the
fake backend with the 5-packet result MariaDB 10.11 sends (captured; see bench_hotpath.py).
A run measures the clients against the backend directly, then through the proxy; the proxy's
cost per statement is the difference of the two CPU times per statement (user and system
apart). The absolute figures are lower than the proxy's in production (no cross-process
wake-ups, caches warm, the peers cost almost nothing), but the differences between two
versions of the code are what this is for.

With several ``--source NAME=DIR`` (source trees holding ``myrouter/``) each run is a fresh
subprocess per tree, alternating, and the medians of ``--runs`` runs are compared.

``--callgrind --host-loop`` counts the instructions of a ``myrouter serve`` process alone (the
engine's host loop, plain statements on the data plane, as in production) while the fake peers
run in another process: guest mode's thread hand-offs would make the peers' own count vary too
much to subtract. Instructions leave out the kernel's work and the cost of thread switches, which
is where Trio's scheduler spent most of its time: compare these figures between versions of the
data plane, and CPU per query (``bench_sysbench.py``) between planes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESPONSE = (
    b"\x01\x00\x00\x01\x01,\x00\x00\x02\x03def\x06sbtest\x07sbtest1\x07sbtest1\x01c\x01c\x0c-\x00\xe0\x01\x00"
    b"\x00\xfe\x01\x00\x00\x00\x00\x05\x00\x00\x03\xfe\x00\x00\x02\x00x\x00\x00\x04w39821124155-24121370208-"
    b"05479842745-05121670529-33495891104-01011506276-48894240898-01066136230-30430839541-02701775010\x05\x00"
    b"\x00\x05\xfe\x00\x00\x02\x00"
)
MARIADB_CAPS = 0xBFB7DF  # what MariaDB 10.11 offers (no DEPRECATE_EOF)


def _config_text(backend_port: int, port: int, admin_port: int, metrics_port: int, rules_dir: Path) -> str:
    return f"""
rules_dir = "{rules_dir}"

[mysql_variables]
interfaces = "127.0.0.1:{port}"
threads = 1
server_version = "5.5.5-10.11.0-MariaDB-fake"

[admin_variables]
mysql_ifaces = "127.0.0.1:{admin_port}"
restapi_enabled = false
restapi_port = {metrics_port}

[[mysql_servers]]
hostgroup_id = 0
hostname = "127.0.0.1"
port = {backend_port}

[[mysql_servers]]
hostgroup_id = 1
hostname = "127.0.0.1"
port = {backend_port}

[[mysql_users]]
username = "app"
password = "app"
default_hostgroup = 0
"""


def run_once(clients: int, queries: int, warmup: int, phases: tuple[str, ...] = ("direct", "proxy"),
             host_loop: bool = False, command_prefix: tuple[str, ...] = ()) -> dict:
    """One measurement in this process (myrouter imported from sys.path)."""
    import socket

    import trio

    from myrouter.app import Proxy
    from myrouter.config import load_config
    from myrouter.protocol.auth import native_token
    from myrouter.protocol.constants import Capability as C
    from myrouter.protocol.messages import OK, HandshakeResponse41, HandshakeV10
    from myrouter.protocol.packets import PacketDecoder, frame
    from myrouter_testbed.mariadb import free_ports

    wait_readable = trio.lowlevel.wait_readable

    async def recv_packet(sock, dec):
        while (pkt := dec.next_packet()) is None:
            await wait_readable(sock)
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            dec.feed(data)
        return pkt

    async def backend_session(sock):
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        dec = PacketDecoder()
        greeting = HandshakeV10("5.5.5-10.11.0-MariaDB-fake", 7, b"x" * 20, MARIADB_CAPS, 45, 2,
                                "mysql_native_password")
        sock.send(frame(greeting.encode(), 0))
        try:
            pkt = await recv_packet(sock, dec)
            sock.send(frame(OK().encode(MARIADB_CAPS), pkt.seq + 1))
            ok = frame(OK().encode(MARIADB_CAPS), 1)
            while True:
                await wait_readable(sock)
                data = sock.recv(65536)
                if not data or data[4] == 0x01:  # closed, COM_QUIT
                    break
                # one request per read (the clients wait for each reply)
                sock.send(RESPONSE if data[4] == 0x03 else ok)
        except (ConnectionError, OSError):
            pass
        finally:
            sock.close()

    async def serve_backend(task_status=trio.TASK_STATUS_IGNORED):
        """The fake backend on a port of 127.0.0.1 the kernel picks (given to ``nursery.start``)."""
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(128)
        lsock.setblocking(False)
        task_status.started(lsock.getsockname()[1])
        async with trio.open_nursery() as nursery:
            while True:
                await wait_readable(lsock)
                try:
                    conn, _ = lsock.accept()
                except BlockingIOError:
                    continue
                nursery.start_soon(backend_session, conn)

    async def client(port, ready, start, done, n, results):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        dec = PacketDecoder()
        g = HandshakeV10.parse((await recv_packet(sock, dec)).payload)
        caps = (C.LONG_PASSWORD | C.PROTOCOL_41 | C.SECURE_CONNECTION | C.PLUGIN_AUTH | C.TRANSACTIONS
                | C.MULTI_RESULTS | C.PS_MULTI_RESULTS)
        resp = HandshakeResponse41(caps, 1 << 24, 45, "app", native_token(b"app", g.auth_data), "",
                                   "mysql_native_password")
        sock.send(frame(resp.encode(), 1))
        reply = (await recv_packet(sock, dec)).payload
        assert reply[:1] == b"\x00", reply
        want = len(RESPONSE)
        for phase in ("warmup", "measure"):
            if phase == "measure":
                ready.append(1)
                await start.wait()
            count = warmup if phase == "warmup" else n
            for i in range(count):
                sock.send(frame(b"\x03SELECT c FROM sbtest1 WHERE id=%d" % (i % 10000 + 1), 0))
                got = 0
                while got < want:
                    await wait_readable(sock)
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionError("closed")
                    got += len(data)
                if got != want:
                    raise AssertionError(f"unexpected reply of {got} bytes")
        results.append(n)
        sock.send(frame(b"\x01", 0))
        sock.close()
        done()

    def write_config(backend_port):
        """A proxy configuration in front of the fake backend: (its path, the proxy's client port)."""
        port, admin_port, metrics_port = free_ports(3)
        tmp = Path(tempfile.mkdtemp(prefix="inproc-"))
        import myrouter

        rules = Path(myrouter.__file__).resolve().parent.parent / "rules"
        cfg = tmp / "myrouter.toml"
        cfg.write_text(_config_text(backend_port, port, admin_port, metrics_port, rules))
        return cfg, port

    async def run_clients(nursery, port, measured=None):
        """The clients against ``port``: warm up, then (between the two calls of ``measured``, if
        given) the measured statements. Returns how many statements were measured."""
        ready: list = []
        results: list = []
        start = trio.Event()
        finished = trio.Event()
        left = [clients]

        def done():
            left[0] -= 1
            if not left[0]:
                finished.set()

        for _ in range(clients):
            nursery.start_soon(client, port, ready, start, done, queries, results)
        while len(ready) < clients:
            await trio.sleep(0.01)
        if measured is not None:
            measured()
        start.set()
        await finished.wait()
        if measured is not None:
            measured()
        return sum(results)

    def measure_proxy_process(command_prefix):
        """The proxy as a process of its own (``myrouter serve``, under the engine's host loop, as in
        production), started with ``command_prefix`` (valgrind) in front; the fake peers in this one.
        Returns the proxy process's stderr once it has stopped (SIGTERM after the clients are done)."""
        import signal
        import subprocess

        async def main():
            async with trio.open_nursery() as nursery:
                backend_port = await nursery.start(serve_backend)
                cfg, port = write_config(backend_port)
                err = cfg.with_name("stderr")
                with open(err, "wb") as err_file:
                    proc = subprocess.Popen([*command_prefix, sys.executable, "-m", "myrouter", "--log-level",
                                             "warning", "serve", "--config", str(cfg)], stderr=err_file)
                    try:
                        while True:  # until it listens
                            try:
                                socket.create_connection(("127.0.0.1", port)).close()
                                break
                            except OSError:
                                if proc.poll() is not None:
                                    raise RuntimeError(f"the proxy exited: {err.read_text()[-2000:]}")
                                await trio.sleep(0.2)
                        await run_clients(nursery, port)
                    finally:
                        proc.send_signal(signal.SIGTERM)
                        await trio.to_thread.run_sync(proc.wait)
                nursery.cancel_scope.cancel()
            return err.read_text()

        return trio.run(main)

    if phases == ("process",):
        return {"stderr": measure_proxy_process(command_prefix)}

    def measure_phase(port_of_target):
        async def main():
            async with trio.open_nursery() as nursery:
                backend_port = await nursery.start(serve_backend)
                target = backend_port
                proxy = None
                if port_of_target == "proxy":
                    cfg, _ = write_config(backend_port)
                    proxy = Proxy(load_config(cfg))
                    await nursery.start(proxy.run)
                    target = proxy.listen_addresses[0][1]
                marks: list = []

                def measured():
                    marks.append((resource.getrusage(resource.RUSAGE_SELF), trio.current_time()))

                total = await run_clients(nursery, target, measured)
                (r0, t0), (r1, t1) = marks
                wall = t1 - t0
                nursery.cancel_scope.cancel()
            return {
                "user_us": (r1.ru_utime - r0.ru_utime) / total * 1e6,
                "sys_us": (r1.ru_stime - r0.ru_stime) / total * 1e6,
                "qps": total / wall,
                "queries": total,
            }

        if host_loop:  # as `myrouter serve`: plain statements on the data plane (the peers pay guest mode)
            from myrouter.engine import HostLoop

            with HostLoop() as loop:
                return loop.run(main)
        return trio.run(main)

    if len(phases) == 1:
        only = measure_phase(phases[0])
        return {f"{phases[0]}_user_us": only["user_us"], f"{phases[0]}_sys_us": only["sys_us"]}
    direct = measure_phase("direct")
    proxied = measure_phase("proxy")
    return {
        "direct_user_us": direct["user_us"], "direct_sys_us": direct["sys_us"],
        "proxied_user_us": proxied["user_us"], "proxied_sys_us": proxied["sys_us"],
        "proxy_user_us": proxied["user_us"] - direct["user_us"],
        "proxy_sys_us": proxied["sys_us"] - direct["sys_us"],
        "proxy_us": proxied["user_us"] + proxied["sys_us"] - direct["user_us"] - direct["sys_us"],
        "proxied_qps": proxied["qps"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", action="append", default=[], metavar="NAME=DIR",
                   help="source tree to measure (repeatable; default: this checkout)")
    p.add_argument("--runs", type=int, default=3, help="runs per source (default 3)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--queries", type=int, default=5000, help="statements per client and run (default 5000)")
    p.add_argument("--warmup", type=int, default=500, help="statements per client before measuring")
    p.add_argument("--callgrind", action="store_true",
                   help="count instructions (valgrind --tool=callgrind) instead of timing: repeatable, "
                        "slow (~1 min per source and run); reports proxied instructions per statement")
    p.add_argument("--host-loop", action="store_true",
                   help="run under the engine's HostLoop (Trio as its guest), as `myrouter serve` does: plain "
                        "statements take the data plane; the fake peers then pay guest mode's costs too (they "
                        "cancel out in the difference)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child-proxied-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child-direct-only", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        import logging

        logging.basicConfig(level=logging.WARNING)
        if a.child_proxied_only or a.child_direct_only:
            _make_deterministic()
            phase = "proxy" if a.child_proxied_only else "direct"
            print(json.dumps(run_once(a.clients, a.queries, a.warmup, phases=(phase,), host_loop=a.host_loop)))
        else:
            print(json.dumps(run_once(a.clients, a.queries, a.warmup, host_loop=a.host_loop)))
        return 0
    sources = []
    for spec in a.source or [f"this={HERE.parent}"]:
        name, sep, src = spec.partition("=")
        if not sep or not (Path(src) / "myrouter").is_dir():
            raise SystemExit(f"--source {spec!r}: expected NAME=DIR with DIR/myrouter")
        sources.append((name, Path(src).resolve()))
    if a.callgrind:
        return callgrind_proxy_process(sources, a) if a.host_loop else callgrind(sources, a)
    rows: dict[str, list[dict]] = {n: [] for n, _ in sources}
    for r in range(a.runs):
        order = sources if r % 2 == 0 else list(reversed(sources))
        for name, src in order:
            env = dict(os.environ, PYTHONPATH=str(src))
            out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", "--clients",
                                  str(a.clients), "--queries", str(a.queries), "--warmup", str(a.warmup),
                                  *(["--host-loop"] if a.host_loop else [])],
                                 cwd=src, env=env, capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stdout[-2000:], out.stderr[-4000:])
                return 1
            res = json.loads(out.stdout.strip().splitlines()[-1])
            rows[name].append(res)
            print(f"  run {r + 1} {name:>10}: proxy {res['proxy_us']:6.1f} us/q (user {res['proxy_user_us']:5.1f}"
                  f" + sys {res['proxy_sys_us']:5.1f}); clients+backend alone {res['direct_user_us']:5.1f}"
                  f"+{res['direct_sys_us']:4.1f} us/q; {res['proxied_qps']:7.0f} qps proxied", flush=True)
    print(f"\nmedians over {a.runs} runs ({a.clients} clients x {a.queries} statements):")
    base = None
    for name, _ in sources:
        med = {k: statistics.median(r[k] for r in rows[name]) for k in ("proxy_us", "proxy_user_us", "proxy_sys_us")}
        if base is None:
            base = med
            delta = ""
        else:
            delta = f"  ({med['proxy_us'] - base['proxy_us']:+.1f} us/q vs {sources[0][0]})"
        print(f"  {name:>10}: proxy {med['proxy_us']:6.1f} us/q (user {med['proxy_user_us']:5.1f} + sys "
              f"{med['proxy_sys_us']:5.1f}){delta}")
    return 0


def _make_deterministic() -> None:
    """For instruction counts: no RSA key generation (a random prime search) and a fixed
    scheduling order (Trio reverses each batch at random)."""
    import trio._core._run as trio_run

    import myrouter.app

    class _NoRSA:
        size_bytes = 256
        public_pem = b""

    myrouter.app.RSAKeyPair = _NoRSA
    trio_run._r.seed(0)


def _instructions(src: Path, a, queries: int, phase: str = "proxied") -> int:
    import re

    env = dict(os.environ, PYTHONPATH=str(src), PYTHONHASHSEED="0")
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
           str(Path(__file__).resolve()), "--child", f"--child-{phase}-only", "--clients", str(a.clients),
           "--queries", str(queries), "--warmup", str(a.warmup), *(["--host-loop"] if a.host_loop else [])]
    out = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True)
    m = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode != 0 or m is None:
        raise RuntimeError(f"callgrind run failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return int(m.group(1))


def _proxy_process_instructions(src: Path, a, queries: int) -> int:
    """Instructions of a ``myrouter serve`` process (the host loop: plain statements on the data plane)
    serving ``a.clients`` x ``queries`` statements after the warm-up; the peers run in another process."""
    import re

    env = dict(os.environ, PYTHONPATH=str(src), PYTHONHASHSEED="0")
    with tempfile.TemporaryDirectory(prefix="inproc-cg-") as tmp:
        profile = Path(tmp) / "callgrind.out"
        code = ("import json, sys; sys.path.insert(0, {bench!r}); import bench_inproc as b; "
                "print(json.dumps(b.run_once({clients}, {queries}, {warmup}, phases=('process',), "
                "command_prefix=('valgrind', '--tool=callgrind', {out!r}))))").format(
            bench=str(HERE), clients=a.clients, queries=queries, warmup=a.warmup,
            out=f"--callgrind-out-file={profile}")
        out = subprocess.run([sys.executable, "-c", code], cwd=src, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"proxy process run failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
        stderr = json.loads(out.stdout.strip().splitlines()[-1])["stderr"]
        m = re.search(r"Collected : (\d+)", stderr)
        if m is None:
            raise RuntimeError(f"no instruction count from valgrind:\n{stderr[-4000:]}")
        return int(m.group(1)) - _key_generation_instructions(profile)


def _key_generation_instructions(profile: Path) -> int:
    """The instructions a ``myrouter serve`` process spent in the ``cryptography`` package's native code:
    at start-up it generates RSA keys (caching_sha2_password's pair; TLS certificates when none are
    configured), whose prime search takes a different number of instructions every run (0.5-0.85 G on
    the reference machine, more than a change of the per-statement code shows). Left out of the count;
    a point select never enters that code."""
    import re

    listing = subprocess.run(["callgrind_annotate", "--threshold=100", "--inclusive=no", str(profile)],
                             capture_output=True, text=True, check=True).stdout
    total = 0
    for line in listing.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)", line)
        if m is not None and "/cryptography/" in m.group(2):
            total += int(m.group(1).replace(",", ""))
    return total


def callgrind_proxy_process(sources, a) -> int:
    """``--callgrind --host-loop``: instructions per statement of the proxy process alone, as
    ``myrouter serve`` runs it (the data plane), the fake peers in a process of their own:
    (Ir with 2q statements - Ir with q) / (q * clients)."""
    q = a.queries
    rows: dict[str, list[float]] = {n: [] for n, _ in sources}
    for r in range(a.runs):
        order = sources if r % 2 == 0 else list(reversed(sources))
        for name, src in order:
            per = (_proxy_process_instructions(src, a, 2 * q) - _proxy_process_instructions(src, a, q)) / (q * a.clients)
            rows[name].append(per)
            print(f"  run {r + 1} {name:>10}: {per:9.0f} instructions per statement in the proxy process", flush=True)
    print(f"\nmedians over {a.runs} runs ({a.clients} clients x {q} statements, difference of two lengths):")
    base = None
    for name, _ in sources:
        med = statistics.median(rows[name])
        if base is None:
            base = med
            print(f"  {name:>10}: {med:9.0f} instructions/statement")
        else:
            print(f"  {name:>10}: {med:9.0f} instructions/statement ({med - base:+.0f}, "
                  f"{100 * (med - base) / base:+.1f}% vs {sources[0][0]})")
    return 0


def callgrind(sources, a) -> int:
    """Instructions per proxied statement: (Ir with 2q statements - Ir with q) / (q * clients), so that
    start-up, logins and warm-up cancel out, less the same for the fake clients talking to the fake
    backend directly (measured once, with the first source's Trio loop). Repeatable to about 1%
    between invocations (the peers are measured anew each time): compare sources in one invocation."""
    q = a.queries
    rows: dict[str, list[float]] = {n: [] for n, _ in sources}
    src0 = sources[0][1]
    peers = (_instructions(src0, a, 2 * q, "direct") - _instructions(src0, a, q, "direct")) / (q * a.clients)
    print(f"  the fake clients and backend alone: {peers:9.0f} instructions per statement", flush=True)
    for r in range(a.runs):
        order = sources if r % 2 == 0 else list(reversed(sources))
        for name, src in order:
            small = _instructions(src, a, q)
            big = _instructions(src, a, 2 * q)
            per = (big - small) / (q * a.clients)
            rows[name].append(per - peers)
            print(f"  run {r + 1} {name:>10}: {per - peers:9.0f} instructions per statement in the proxy "
                  f"({per:.0f} proxied, all parties)", flush=True)
    print(f"\nmedians over {a.runs} runs ({a.clients} clients x {q} statements, difference of two lengths):")
    base = None
    for name, _ in sources:
        med = statistics.median(rows[name])
        if base is None:
            base = med
            print(f"  {name:>10}: {med:9.0f} instructions/statement")
        else:
            pct = 100 * (med - base) / base
            print(f"  {name:>10}: {med:9.0f} instructions/statement ({med - base:+.0f}, {pct:+.1f}%"
                  f" vs {sources[0][0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
