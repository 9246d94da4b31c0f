"""A/B: proxy CPU per query of several versions of myrouter, against one test bed, interleaved.

    .venv/bin/python benchmarks/bench_ab.py --variant base=HEAD~1 --variant new=. --rounds 5
    .venv/bin/python benchmarks/bench_ab.py --variant a=/tmp/tree-a --variant b=/tmp/tree-b --env b:PYTHONGC=1

Each variant is a source tree (a directory holding ``myrouter/``) or a git ref of this
repository (exported with ``git archive`` to a temporary directory). One proxy per variant
runs for the whole benchmark (an idle proxy costs ~0.3 ms of CPU per second); each round runs
sysbench once directly against the primary and once through each proxy, in an order that
rotates from round to round, so that a drift of the machine's speed spreads over all of them.

Reported per variant: medians of proxy CPU us/query (user/sys), qps, ratio to the direct run
of the same round, and the median of the per-round differences of us/query against the first
variant (paired: the figure to trust on a noisy machine). Rules of ``benchmarks/README.md``
apply: only ratios and per-query CPU mean anything, at >= 8 threads.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from _common import fmt, format_table, median  # noqa: E402
from bench_sysbench import ProxyProcess, Runner, measure  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("bench_ab")


def export_ref(ref: str, dest: Path) -> Path:
    """``git archive ref`` of this repository into ``dest``; returns ``dest``."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def resolve_variants(specs: list[str], tmp: Path) -> list[tuple[str, Path]]:
    out = []
    for spec in specs:
        name, sep, src = spec.partition("=")
        if not sep or not name or not src:
            raise SystemExit(f"--variant {spec!r}: expected NAME=DIR or NAME=GITREF")
        path = Path(src)
        if path.is_dir() and (path / "myrouter").is_dir():
            out.append((name, path.resolve()))
            continue
        try:
            rev = subprocess.run(["git", "rev-parse", "--short", src], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.strip()
        except subprocess.CalledProcessError:
            raise SystemExit(f"--variant {spec!r}: {src} is neither a source tree nor a git ref") from None
        out.append((name, export_ref(src, tmp / f"{name}-{rev}")))
    if len({n for n, _ in out}) != len(out):
        raise SystemExit("variant names must be unique")
    return out


def parse_env(specs: list[str]) -> dict[str, dict[str, str]]:
    env: dict[str, dict[str, str]] = {}
    for spec in specs:
        name, sep, kv = spec.partition(":")
        key, sep2, value = kv.partition("=")
        if not sep or not sep2 or not key:
            raise SystemExit(f"--env {spec!r}: expected NAME:KEY=VALUE")
        env.setdefault(name, {})[key] = value
    return env


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", action="append", default=[], metavar="NAME=DIR|GITREF", required=True)
    p.add_argument("--env", action="append", default=[], metavar="NAME:KEY=VALUE",
                   help="environment variable for one variant's proxy (repeatable)")
    p.add_argument("--workload", default="oltp_point_select")
    p.add_argument("--time", type=float, default=10)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--mode", choices=("text", "ps"), default="text")
    p.add_argument("--no-direct", action="store_true", help="skip the direct runs (no ratios)")
    p.add_argument("--tables", type=int, default=4)
    p.add_argument("--table-size", type=int, default=10000)
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--warmup", type=float, default=3)
    p.add_argument("--sysbench-arg", action="append", default=[], metavar="ARG")
    p.add_argument("--proxy-log-level", default="info")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")

    from myrouter_testbed import mariadb as testbed

    runner = Runner(a)
    envs = parse_env(a.env)
    proxies: list[tuple[str, ProxyProcess]] = []
    cluster = None
    with tempfile.TemporaryDirectory(prefix="myrouter-ab-") as tmpname:
        tmp = Path(tmpname)
        try:
            variants = resolve_variants(a.variant, tmp)
            cluster = testbed.start_cluster(replicas=a.replicas)
            prep = runner.run(runner.command(cluster.primary.port, "prepare", workload="oltp_point_select"),
                              timeout=600)
            if prep.returncode != 0:
                print(prep.output[-3000:])
                return 2
            if a.replicas:
                cluster.wait_replication(timeout=300)
            for name, src in variants:
                work = tmp / f"run-{name}"
                work.mkdir()
                proxy = ProxyProcess(cluster, work, log_level=a.proxy_log_level, source=src, env=envs.get(name))
                proxy.start()
                print(f"  {name}: pid {proxy.pid} port {proxy.port}, code from {proxy.package}", flush=True)
                proxies.append((name, proxy))
            if a.warmup > 0:
                for _, proxy in proxies:
                    runner.run(runner.command(proxy.port, "run", workload=a.workload, threads=a.threads,
                                              mode=a.mode, seconds=a.warmup), timeout=a.warmup + 60)
            targets: list[tuple[str, ProxyProcess | None]] = list(proxies)
            if not a.no_direct:
                targets.insert(0, ("direct", None))
            rows: dict[str, list[dict[str, Any]]] = {n: [] for n, _ in targets}
            for rnd in range(a.rounds):
                k = rnd % len(targets)
                order = targets[k:] + targets[:k]
                line = []
                for name, proxy in order:
                    port = cluster.primary.port if proxy is None else proxy.port
                    r = measure(runner, target=name, port=port, threads=a.threads, mode=a.mode,
                                proxy=proxy or proxies[0][1], cluster=cluster)
                    r["round"] = rnd
                    rows[name].append(r)
                    if proxy is None:
                        line.append(f"direct {fmt(r['qps'], '.0f')} qps")
                    else:
                        line.append(f"{name} {fmt(r['proxy_cpu_us_per_query'], '.1f')} us/q "
                                    f"({fmt(r['proxy_user_us_per_query'], '.1f')}+"
                                    f"{fmt(r['proxy_sys_us_per_query'], '.1f')}) {fmt(r['qps'], '.0f')} qps"
                                    f" err {r['errors']}")
                print(f"  round {rnd + 1}: " + "; ".join(line), flush=True)
            report(rows, proxies, a)
        finally:
            runner.kill_current()
            for name, proxy in proxies:
                if proxy.running():
                    code, secs = proxy.stop()
                    if code != 0:
                        print(f"  {name}: proxy exit {code}")
            if cluster is not None:
                cluster.stop()
    return 0


def report(rows: dict[str, list[dict[str, Any]]], proxies: list[tuple[str, ProxyProcess]], a) -> None:
    direct = {r["round"]: r for r in rows.get("direct", [])}
    base_name = proxies[0][0]
    base = {r["round"]: r for r in rows[base_name]}
    table = []
    for name, _ in proxies:
        rs = rows[name]
        ratios = [r["qps"] / direct[r["round"]]["qps"] for r in rs
                  if r["round"] in direct and r["qps"] and direct[r["round"]]["qps"]]
        diffs = [r["proxy_cpu_us_per_query"] - base[r["round"]]["proxy_cpu_us_per_query"] for r in rs
                 if r["proxy_cpu_us_per_query"] is not None and base.get(r["round"], {}).get("proxy_cpu_us_per_query")]
        table.append([
            name, str(len(rs)),
            fmt(median([r["proxy_cpu_us_per_query"] for r in rs if r["proxy_cpu_us_per_query"] is not None]), ".1f"),
            fmt(median([r["proxy_user_us_per_query"] for r in rs if r["proxy_user_us_per_query"] is not None]), ".1f"),
            fmt(median([r["proxy_sys_us_per_query"] for r in rs if r["proxy_sys_us_per_query"] is not None]), ".1f"),
            "" if name == base_name else fmt(median(diffs), "+.1f"),
            "" if name == base_name else f"{min(diffs):+.1f}..{max(diffs):+.1f}" if diffs else "",
            fmt(median([r["qps"] for r in rs if r["qps"]]), ".0f"),
            fmt(median(ratios), ".3f") if ratios else "",
            fmt(median([r["proxy_cpu_pct"] for r in rs if r["proxy_cpu_pct"] is not None]), ".0f"),
            str(sum(r["errors"] for r in rs)),
        ])
    print(f"\n{a.workload} {a.mode} {a.threads} threads, {a.time:g} s per run, {a.rounds} rounds"
          + (f"; direct median {fmt(median([r['qps'] for r in direct.values() if r['qps']]), '.0f')} qps"
             if direct else ""))
    print(format_table(["variant", "runs", "us/q", "user", "sys", f"d us/q vs {base_name}", "d range",
                        "qps", "ratio", "CPU%", "errors"], table, left=(0,)))


if __name__ == "__main__":
    sys.exit(main())
