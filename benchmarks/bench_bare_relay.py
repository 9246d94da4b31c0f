#!/usr/bin/env python3
"""myrouter against a bare Trio byte relay and against MariaDB directly, in the same run.

The issue that set myrouter's speed floor calibrates it with "a bare Trio byte relay
that understands nothing". This measures that yardstick on the machine at hand:
sysbench (default: oltp_point_select, text protocol, 8 threads) runs in turn
straight to the primary, through ``bare_relay.py`` and through myrouter, the order
rotating each round, and prints per round and as medians:

* qps and the ratio to direct of the relay and of myrouter;
* each relay's CPU per query (user + system, from /proc/<pid>/stat);
* myrouter / bare relay: the share of the bare relay's throughput that myrouter keeps.

    .venv/bin/python benchmarks/bench_bare_relay.py                  # 3 rounds of 10 s
    .venv/bin/python benchmarks/bench_bare_relay.py --mode ps --threads 32 --rounds 5

Exit status: 0 if every run succeeded without errors, 1 otherwise, 2 when nothing
could be measured.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

from _common import proc_cpu_times  # noqa: E402
from bench_sysbench import ProxyProcess, Runner  # noqa: E402
from bench_sysbench import parse_args as sysbench_args  # noqa: E402

TARGETS = ("direct", "bare relay", "myrouter")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--mode", choices=("text", "ps"), default="text")
    p.add_argument("--time", type=float, default=10, help="seconds per sysbench run (default 10)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workload", default="oltp_point_select")
    a = p.parse_args(argv)
    if a.threads < 1 or a.rounds < 1 or a.time <= 0:
        p.error("--threads and --rounds must be >= 1, --time > 0")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    from myrouter_testbed import mariadb as testbed

    runner = Runner(sysbench_args(["--workload", a.workload]))
    cluster = proxy = bare = None
    failed = False
    try:
        cluster = testbed.start_cluster(replicas=2)
        cluster.primary.query("CREATE DATABASE IF NOT EXISTS sbtest")
        prep = runner.run(runner.command(cluster.primary.port, "prepare", workload=a.workload), timeout=600)
        if prep.returncode != 0:
            print(prep.output[-2000:], file=sys.stderr)
            return 2
        cluster.wait_replication(timeout=300)
        proxy = ProxyProcess(cluster, Path(tempfile.mkdtemp(prefix="bench-bare-")), log_level="info")
        proxy.start()
        bare_port = testbed.free_ports(1)[0]
        bare = subprocess.Popen([sys.executable, str(HERE / "bare_relay.py"), str(bare_port), str(cluster.primary.port)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        if bare.stdout.readline().strip() != "ready":
            print("the bare relay did not start", file=sys.stderr)
            return 2
        where = {"direct": (cluster.primary.port, None), "bare relay": (bare_port, bare.pid),
                 "myrouter": (proxy.port, proxy.pid)}

        def run(target: str, seconds: float):
            port, pid = where[target]
            before = proc_cpu_times(pid) if pid else (0.0, 0.0)
            res = runner.run(runner.command(port, "run", workload=a.workload, threads=a.threads, mode=a.mode,
                                            seconds=seconds), timeout=seconds + 120)
            after = proc_cpu_times(pid) if pid else (0.0, 0.0)
            us = (sum(after) - sum(before)) * 1e6 / res.queries if pid and res.queries else None
            return res, us

        for target in TARGETS:
            run(target, 3)  # warm-up: connections, caches, the proxy's memos
        print(f"sysbench {a.workload}, {a.threads} threads, {a.mode}, {a.time:g} s per run")
        qps: dict[str, list[float]] = {t: [] for t in TARGETS}
        cpu: dict[str, list[float]] = {t: [] for t in TARGETS}
        for rnd in range(a.rounds):
            order = TARGETS[rnd % 3:] + TARGETS[:rnd % 3]
            line = []
            for target in order:
                res, us = run(target, a.time)
                if not res.ok:
                    failed = True
                    print(f"  {target}: FAILED: {res.summary()}")
                    continue
                qps[target].append(res.qps)
                if us is not None:
                    cpu[target].append(us)
                line.append(f"{target} {res.qps:.0f} qps" + (f" ({us:.0f} us/query)" if us is not None else ""))
            print(f"  round {rnd + 1}: " + ", ".join(line), flush=True)
        rounds = min(len(v) for v in qps.values())
        if not rounds:
            return 2
        ratio = {t: statistics.median(q / d for q, d in zip(qps[t], qps["direct"])) for t in TARGETS[1:]}
        keep = statistics.median(m / b for m, b in zip(qps["myrouter"], qps["bare relay"]))
        print(f"median ratio to direct: bare relay {ratio['bare relay']:.3f}, myrouter {ratio['myrouter']:.3f}")
        print(f"myrouter keeps {keep:.0%} of the bare relay's throughput")
        for t in TARGETS[1:]:
            if cpu[t]:
                print(f"{t}: {statistics.median(cpu[t]):.1f} us of CPU per query (median)")
        return 1 if failed else 0
    finally:
        runner.kill_current()
        if bare is not None and bare.poll() is None:
            bare.terminate()
            try:
                bare.wait(timeout=10)
            except subprocess.TimeoutExpired:
                bare.kill()
        if proxy is not None:
            proxy.stop()
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
