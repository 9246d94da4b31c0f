#!/usr/bin/env python3
"""sysbench through myrouter versus straight to MariaDB, in the same run.

Starts the project's own test bed (a MariaDB primary and replicas, see
``myrouter_testbed.mariadb``) and the proxy as a subprocess (``myrouter serve``), prepares
the sysbench tables on the primary, then for each combination of threads x
protocol mode runs the workload alternately direct (primary port) and proxied
(proxy port), ``--rounds`` times, and prints:

* each pair: direct qps, proxied qps, ratio proxied/direct, sysbench errors,
  the proxy's CPU time per query (from /proc/<pid>/stat, utime + stime) and the
  proxy's CPU use during the run;
* per combination: the median ratio, the median qps and the median proxy CPU/query;
* beside them, in the same rounds (``--yardsticks``), two relays that understand nothing of the
  protocol, in front of the primary: ``bare_relay.py`` (the bare Trio relay: two tasks per
  connection) and ``two_plane_relay.py`` (Trio as the guest of myrouter's raw epoll loop accepts
  and connects, plain fd callbacks relay): their ratio to direct and CPU per query.

Absolute qps mean little on a shared, noisy 2-core machine: compare ratios
measured in the same run, at 8 threads or more. The proxy's CPU per query is the
figure to optimise (a bare Trio relay spends ~100-150 us per query).

    .venv/bin/python benchmarks/bench_sysbench.py                    # point selects, 10 s x 3 rounds
    .venv/bin/python benchmarks/bench_sysbench.py --time 5 --rounds 1 --threads 8
    .venv/bin/python benchmarks/bench_sysbench.py --workload oltp_read_only --json ro.json
    .venv/bin/python benchmarks/bench_sysbench.py --profile /tmp/prof  # + a py-spy profile of the proxy

Exit status: 0 if every run succeeded without errors and the proxy stopped
cleanly (exit 0 within its drain timeout after SIGTERM); 1 otherwise; 2 when
nothing could be measured (test bed or proxy did not start).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
# this checkout's myrouter (test bed, config), not the one the shared venv was installed from
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from _common import (  # noqa: E402 - after the sys.path change
    ChildrenCPU,
    MachineCPU,
    ProcCPU,
    ProcTreeCPU,
    all_processes_cpu,
    fmt,
    format_table,
    median,
    proc_cpu_seconds,
    read_collapsed,
    top_cpu_users,
    top_frames_report,
)

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
USER, PASSWORD, DB = "app", "app", "sbtest"
WORKLOADS = ("oltp_point_select", "oltp_read_only", "oltp_read_write")
MODES = {"ps": "auto", "text": "disable"}  # our label -> sysbench --db-ps-mode
DEFAULT_DRAIN_TIMEOUT = 30.0  # mysql_variables.shutdown_timeout default, in seconds
# --yardsticks: the relays measured beside myrouter (label, script in benchmarks/)
YARDSTICKS = {"bare": ("bare Trio relay", "bare_relay.py"), "two-plane": ("two-plane relay", "two_plane_relay.py")}

log = logging.getLogger("bench_sysbench")


# ---------------------------------------------------------------------------
# sysbench


@dataclass
class SysbenchResult:
    returncode: int | None  # None: killed after the timeout
    transactions: int | None = None
    tps: float | None = None
    queries: int | None = None
    qps: float | None = None
    ignored_errors: int = 0
    reconnects: int = 0
    fatal: list[str] = field(default_factory=list)  # distinct FATAL / error lines
    failed_statements: int = 0  # "returned error" lines: one per statement that failed and stopped a thread
    total_time: float | None = None
    latency_avg_ms: float | None = None
    latency_p95_ms: float | None = None
    output: str = ""

    @property
    def errors(self) -> int:
        """Errors of any kind: ignored by sysbench, statements that failed, or a missing/failed result."""
        n = self.ignored_errors + self.failed_statements
        if self.returncode != 0 or self.qps is None or self.fatal:
            n = max(n, 1)
        return n

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def summary(self) -> str:
        if self.ok:
            return "ok"
        what = []
        if self.returncode is None:
            what.append("timed out")
        elif self.returncode != 0:
            what.append(f"exit {self.returncode}")
        if self.ignored_errors:
            what.append(f"{self.ignored_errors} ignored errors")
        if self.qps is None:
            what.append("no result")
        if self.fatal:
            what.append("; ".join(self.fatal[:3]))
        return ", ".join(what)


_NUM = r"([0-9]+(?:\.[0-9]+)?)"
_RE_TRANSACTIONS = re.compile(rf"^\s*transactions:\s+(\d+)\s+\(\s*{_NUM}\s+per sec\.\)", re.M)
_RE_QUERIES = re.compile(rf"^\s*queries:\s+(\d+)\s+\(\s*{_NUM}\s+per sec\.\)", re.M)
_RE_IGNORED = re.compile(r"^\s*ignored errors:\s+(\d+)", re.M)
_RE_RECONNECTS = re.compile(r"^\s*reconnects:\s+(\d+)", re.M)
_RE_TOTAL_TIME = re.compile(rf"^\s*total time:\s+{_NUM}s", re.M)
_RE_LAT_AVG = re.compile(rf"^\s*avg:\s+{_NUM}", re.M)
_RE_LAT_P95 = re.compile(rf"^\s*95th percentile:\s+{_NUM}", re.M)
_RE_FAILED_STATEMENT = re.compile(r"returned error \d+", re.M)
_RE_FATAL = re.compile(r"^.*(?:FATAL|\bALERT\b|error \d+|Error \d+|[Ee]rror:|failed).*$", re.M)


def parse_sysbench(output: str, returncode: int | None) -> SysbenchResult:
    """Read sysbench 1.0's summary; missing lines leave fields None (and make the result an error)."""
    r = SysbenchResult(returncode=returncode, output=output)
    if m := _RE_TRANSACTIONS.search(output):
        r.transactions, r.tps = int(m.group(1)), float(m.group(2))
    if m := _RE_QUERIES.search(output):
        r.queries, r.qps = int(m.group(1)), float(m.group(2))
    if m := _RE_IGNORED.search(output):
        r.ignored_errors = int(m.group(1))
    if m := _RE_RECONNECTS.search(output):
        r.reconnects = int(m.group(1))
    if m := _RE_TOTAL_TIME.search(output):
        r.total_time = float(m.group(1))
    if m := _RE_LAT_AVG.search(output):
        r.latency_avg_ms = float(m.group(1))
    if m := _RE_LAT_P95.search(output):
        r.latency_p95_ms = float(m.group(1))
    r.failed_statements = len(_RE_FAILED_STATEMENT.findall(output))
    seen = set()
    for m in _RE_FATAL.finditer(output):
        line = m.group(0).strip()
        if "ignored errors" in line or line in seen:
            continue
        seen.add(line)
        r.fatal.append(line)
    return r


class Runner:
    """Runs sysbench commands; remembers the one running so that cleanup can end it."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sysbench = shutil.which("sysbench") or "sysbench"
        self.current: subprocess.Popen[str] | None = None
        self.helpers: list[subprocess.Popen[str]] = []  # e.g. py-spy

    def command(self, port: int, action: str, *, workload: str, threads: int = 1, mode: str = "text",
                seconds: float = 0) -> list[str]:
        a = self.args
        cmd = [
            self.sysbench, workload,
            f"--mysql-host={HOST}", f"--mysql-port={port}",
            f"--mysql-user={USER}", f"--mysql-password={PASSWORD}", f"--mysql-db={DB}",
            f"--tables={a.tables}", f"--table-size={a.table_size}",
        ]
        if action == "run":
            cmd += [f"--threads={threads}", f"--time={seconds:g}", "--events=0", f"--db-ps-mode={MODES[mode]}",
                    "--report-interval=0", "--histogram=off"]
            cmd += a.sysbench_arg
        return [*cmd, action]

    def run(self, cmd: list[str], timeout: float) -> SysbenchResult:
        log.debug("running %s", " ".join(cmd))
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace")
        self.current = proc
        try:
            out, _ = proc.communicate(timeout=timeout)
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            self.kill_current()
            out, _ = proc.communicate()
            code = None
        # (on any other exception, ``current`` stays set for kill_current() in the cleanup)
        self.current = None
        return parse_sysbench(out or "", code)

    def kill_current(self) -> None:
        """Kill the sysbench (and helpers such as py-spy) we started and that still run, by their PIDs."""
        procs = [p for p in (self.current, *self.helpers) if p is not None]
        self.current = None
        self.helpers.clear()
        for proc in procs:
            if proc.poll() is None:
                log.warning("stopping %s (pid %d)", Path(str(proc.args[0])).name, proc.pid)
                proc.kill()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass


# ---------------------------------------------------------------------------
# the proxy subprocess


class ProxyProcess:
    """``myrouter serve`` as a subprocess, run from the source tree ``source`` (default: this checkout).

    The proxy runs as ``python -m myrouter`` with ``source`` first on ``PYTHONPATH``: the shared
    virtualenv's ``bin/myrouter`` script would import the package the venv was installed from
    (an editable install of another checkout), not the code under measurement.
    """

    def __init__(self, cluster: Any, workdir: Path, *, log_level: str, source: Path = ROOT,
                 env: dict[str, str] | None = None, unix_sockets: bool = False, threads: int | None = 1,
                 routing: str = "split") -> None:
        """``threads``: ``[mysql_variables] threads``. 1 (default): one process, the one whose CPU the
        scripts measure by its pid (myrouter's own default is one worker process per CPU, with a
        supervisor that serves no client); None leaves myrouter's default. ``routing``: ``split``, the
        shipped rules (reads to the replicas); ``writer``, no rules: every statement goes to the
        user's default hostgroup, the primary, as the yardstick relays send them."""
        from myrouter_testbed.demo import demo_config
        from myrouter_testbed.mariadb import free_ports

        self.source = Path(source).resolve()
        self.extra_env = dict(env or {})
        self.port, self.admin_port, self.metrics_port = free_ports(3)
        self.config_path = workdir / "myrouter.toml"
        if routing not in ("split", "writer"):
            raise ValueError(f"routing must be split or writer, not {routing!r}")
        rules_dir = self.source / "rules"
        if routing == "writer":
            rules_dir = workdir / "no-rules"
            rules_dir.mkdir(exist_ok=True)
        config = demo_config(cluster, rules_dir=rules_dir, port=self.port, admin_port=self.admin_port,
                             metrics_port=self.metrics_port, unix_sockets=unix_sockets)
        if threads is not None:
            config = config.replace("[mysql_variables]\n", f"[mysql_variables]\nthreads = {threads}\n", 1)
        self.config_path.write_text(config)
        self.log_path = workdir / "myrouter.log"
        self.drain_timeout = _drain_timeout(self.config_path)
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60) -> None:
        cmd = [sys.executable, "-m", "myrouter", "--log-level", self.log_level, "serve",
               "--config", str(self.config_path)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.source), env.get("PYTHONPATH")) if p)
        env.update(self.extra_env)
        self._log_file = open(self.log_path, "wb")
        # its own session: a Ctrl-C in the terminal reaches us, and we stop the proxy ourselves
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
                                     cwd=self.source, env=env, start_new_session=True)
        self._wait_ready(timeout)
        self.package = self._package_dir()

    def _package_dir(self) -> str | None:
        """Where the running proxy imported myrouter from (checked: it must be ``source``)."""
        out = subprocess.run([sys.executable, "-c", "import myrouter, os; print(os.path.dirname(myrouter.__file__))"],
                             cwd=self.source, env={**os.environ, "PYTHONPATH": str(self.source)},
                             capture_output=True, text=True)
        return out.stdout.strip() or None

    def _wait_ready(self, timeout: float) -> None:
        import pymysql

        assert self.proc is not None
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"myrouter exited with code {self.proc.returncode} while starting\n"
                                   f"--- tail of {self.log_path} ---\n{self.log_tail()}")
            try:
                conn = pymysql.connect(host=HOST, port=self.port, user=USER, password=PASSWORD, database=DB,
                                       connect_timeout=2, read_timeout=5, write_timeout=5)
                try:
                    with conn.cursor() as cur:
                        cur.execute("SELECT 1")
                        cur.fetchall()
                finally:
                    conn.close()
                return
            except pymysql.MySQLError as exc:
                last = exc
            time.sleep(0.1)
        raise RuntimeError(f"myrouter did not accept a MySQL login on {HOST}:{self.port} within {timeout:.0f} s "
                           f"(last error: {last})\n--- tail of {self.log_path} ---\n{self.log_tail()}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> tuple[int | None, float]:
        """SIGTERM our proxy; wait for the drain. Returns (exit code or None if it had to be killed, seconds)."""
        assert self.proc is not None
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # Popen signals only its own pid
            try:
                self.proc.wait(timeout=self.drain_timeout + 5)
            except subprocess.TimeoutExpired:
                log.error("myrouter (pid %d) still running %.0f s after SIGTERM: killing it",
                          self.proc.pid, self.drain_timeout + 5)
                self.proc.kill()
                self.proc.wait()
                self._close_log()
                return None, time.monotonic() - started
        self._close_log()
        return self.proc.returncode, time.monotonic() - started

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


class RelayProcess:
    """A yardstick relay (``--yardsticks``) as a subprocess in front of ``backend_port``."""

    def __init__(self, key: str, backend_port: int) -> None:
        from myrouter_testbed.mariadb import free_ports

        self.key = key
        self.label, script = YARDSTICKS[key]
        self.script = HERE / script
        self.backend_port = backend_port
        self.port = free_ports(1)[0]
        self.proc: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(self.script), str(self.port), str(self.backend_port)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
                                     start_new_session=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""  # "ready", or EOF if it died
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"{self.script.name} did not start (exit {self.proc.returncode})")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """End our relay, by its Popen handle."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _drain_timeout(config_path: Path) -> float:
    try:
        from myrouter.config import load_config

        return load_config(config_path).mysql_variables.shutdown_timeout / 1000
    except Exception as exc:  # noqa: BLE001 - only a timeout to wait for; the proxy reports bad configs itself
        log.debug("could not read shutdown_timeout (%s); assuming %.0f s", exc, DEFAULT_DRAIN_TIMEOUT)
        return DEFAULT_DRAIN_TIMEOUT


# ---------------------------------------------------------------------------
# measuring


def measure(runner: Runner, *, target: str, port: int, threads: int, mode: str, proxy: ProxyProcess,
            cluster: Any, proxy_cpu: ProcCPU | ProcTreeCPU | None = None) -> dict[str, Any]:
    """One sysbench run, with the CPU time of everything involved around it.

    ``proxy_cpu``: what counts as the proxy's CPU (default: ``ProcCPU(proxy.pid)``, its process alone;
    a ``ProcTreeCPU`` adds its worker processes)."""
    a = runner.args
    cmd = runner.command(port, "run", workload=a.workload, threads=threads, mode=mode, seconds=a.time)
    proxy_cpu = proxy_cpu or ProcCPU(proxy.pid)
    machine, sysbench_cpu = MachineCPU(), ChildrenCPU()
    server_cpus = [ProcCPU(s.pid) for s in cluster.servers if s.pid]
    primary_cpu = next((c for c in server_cpus if c.pid == cluster.primary.pid), None)
    procs_before = all_processes_cpu()
    for c in (proxy_cpu, *server_cpus, machine, sysbench_cpu):
        c.start()
    started = time.monotonic()
    res = runner.run(cmd, timeout=a.time + 120)
    wall = time.monotonic() - started
    sb_s = sysbench_cpu.stop()
    pcpu = proxy_cpu.stop()
    scpu = {c.pid: c.stop() for c in server_cpus}
    mach = machine.stop()
    others = top_cpu_users(procs_before, all_processes_cpu(),
                           exclude={*proxy_cpu.pids, os.getpid(), *(c.pid for c in server_cpus)})
    servers_s = sum(x.seconds for x in scpu.values())
    queries = res.queries or 0

    def pct(seconds: float) -> float | None:
        return round(100.0 * seconds / wall, 1) if wall else None

    row: dict[str, Any] = {
        "target": target,
        "threads": threads,
        "mode": mode,
        "qps": res.qps,
        "tps": res.tps,
        "queries": res.queries,
        "transactions": res.transactions,
        "errors": res.errors,
        "ignored_errors": res.ignored_errors,
        "reconnects": res.reconnects,
        "returncode": res.returncode,
        "status": res.summary(),
        "latency_avg_ms": res.latency_avg_ms,
        "latency_p95_ms": res.latency_p95_ms,
        "wall_s": round(wall, 2),
        # CPU of the proxy over the whole sysbench process life (connect, run, disconnect)
        "proxy_cpu_s": round(pcpu.seconds, 3),
        "proxy_cpu_pct": pct(pcpu.seconds),  # % of one core
        "proxy_cpu_us_per_query": _round(pcpu.per_unit_us(queries), 1),
        "proxy_user_us_per_query": _round(pcpu.per_unit_us(queries, "user"), 1),
        "proxy_sys_us_per_query": _round(pcpu.per_unit_us(queries, "system"), 1),
        "primary_cpu_us_per_query": _round(scpu[primary_cpu.pid].per_unit_us(queries), 1) if primary_cpu else None,
        "mariadbd_cpu_pct": pct(servers_s),  # all servers of the test bed
        "sysbench_cpu_pct": pct(sb_s),
        "irq_cpu_pct": pct(mach["irq_s"]),  # kernel interrupt/softirq time (loopback TCP), of one core
        # what the machine spent on anything else (other users of a shared machine, kernel threads,
        # this script): high values mean a noisy run
        "other_cpu_pct": pct(max(0.0, mach["busy_s"] - mach["irq_s"] - pcpu.seconds - servers_s - sb_s)),
        "other_top": others,  # [(process[pid], CPU seconds)], processes alive before and after the run
        "idle_pct": mach["idle_pct"],  # % of all CPUs
        "steal_pct": mach["steal_pct"],
    }
    if not res.ok:
        row["output_tail"] = "\n".join(res.output.splitlines()[-25:])
        print(f"\n!!! sysbench {target} threads={threads} mode={mode} FAILED: {res.summary()}", flush=True)
        print("    " + "\n    ".join(res.output.splitlines()[-25:]), flush=True)
        print(f"    command: {' '.join(cmd)}", flush=True)
    return row


def _round(v: float | None, nd: int) -> float | None:
    return None if v is None else round(v, nd)


def run_pairs(runner: Runner, cluster: Any, proxy: ProxyProcess,
              relays: dict[str, RelayProcess] | None = None) -> list[dict[str, Any]]:
    a = runner.args
    primary_port = cluster.primary.port
    relays = relays or {}
    pairs = []
    combos = [(t, m) for t in a.threads for m in a.modes]
    targets = ["direct", "proxied", *relays]
    for rnd in range(1, a.rounds + 1):
        for ci, (threads, mode) in enumerate(combos):
            # rotate which side goes first, round after round, so that a drift in the machine's speed cancels out
            k = (rnd - 1 + ci) % len(targets)
            order = targets[k:] + targets[:k]
            result: dict[str, Any] = {"round": rnd, "threads": threads, "mode": mode, "order": order}
            if relays:
                result["relays"] = {}
            for target in order:
                if target == "proxied" and not proxy.running():
                    raise RuntimeError(f"myrouter exited (code {proxy.proc.returncode}) during the benchmark\n"
                                       f"--- tail of {proxy.log_path} ---\n{proxy.log_tail()}")
                if target in relays:
                    relay = relays[target]
                    if not relay.running():
                        raise RuntimeError(f"{relay.script.name} exited during the benchmark")
                    result["relays"][target] = measure(runner, target=target, port=relay.port, threads=threads,
                                                       mode=mode, proxy=relay, cluster=cluster)
                    continue
                port = primary_port if target == "direct" else proxy.port
                result[target] = measure(runner, target=target, port=port, threads=threads, mode=mode,
                                         proxy=proxy, cluster=cluster)
            d, p = result["direct"]["qps"], result["proxied"]["qps"]
            result["ratio"] = round(p / d, 3) if d and p else None
            for row in result.get("relays", {}).values():
                row["ratio"] = round(row["qps"] / d, 3) if d and row["qps"] else None
            result["noisy"] = _noisy(result, a.noisy_threshold)
            pairs.append(result)
            print(_pair_line(result), flush=True)
    return pairs


def _pair_line(r: dict[str, Any]) -> str:
    d, p = r["direct"], r["proxied"]
    return (f"  round {r['round']} threads={r['threads']:<3} {r['mode']:<4}: direct {fmt(d['qps'], '.0f')} qps, "
            f"proxied {fmt(p['qps'], '.0f')} qps, ratio {fmt(r['ratio'], '.2f')}, "
            f"proxy {fmt(p['proxy_cpu_us_per_query'], '.0f')} us/query (user {fmt(p['proxy_user_us_per_query'], '.0f')}"
            f" + sys {fmt(p['proxy_sys_us_per_query'], '.0f')}; {fmt(p['proxy_cpu_pct'], '.0f')}% CPU), "
            f"errors {d['errors']}/{p['errors']}"
            + (f"\n      noisy: other CPU {fmt(d['other_cpu_pct'], '.0f')}%/{fmt(p['other_cpu_pct'], '.0f')}%, top "
               + ", ".join(f"{n} {c:g}s" for n, c in (d.get("other_top", []) + p.get("other_top", []))[:4])
               if r.get("noisy") else "")
            + "".join(f"\n      {YARDSTICKS[k][0]}: {fmt(y['qps'], '.0f')} qps, ratio {fmt(y['ratio'], '.2f')}, "
                      f"{fmt(y['proxy_cpu_us_per_query'], '.0f')} us/query, errors {y['errors']}"
                      for k, y in r.get("relays", {}).items()))


def _noisy(pair: dict[str, Any], threshold: float) -> bool:
    """A pair during which something else used a noticeable share of the machine."""
    return any((pair[t].get("other_cpu_pct") or 0) > threshold for t in ("direct", "proxied"))


def summarise(pairs: list[dict[str, Any]], a: argparse.Namespace) -> list[dict[str, Any]]:
    for r in pairs:
        r["noisy"] = _noisy(r, a.noisy_threshold)
    out = []
    for threads in a.threads:
        for mode in a.modes:
            sel = [r for r in pairs if r["threads"] == threads and r["mode"] == mode]
            if not sel:
                continue
            out.append({
                "threads": threads,
                "mode": mode,
                "pairs": len(sel),
                "noisy_pairs": sum(1 for r in sel if r["noisy"]),
                "median_ratio": _round(median([r["ratio"] for r in sel]), 3),
                "median_ratio_quiet": _round(median([r["ratio"] for r in sel if not r["noisy"]]), 3),
                "median_direct_qps": _round(median([r["direct"]["qps"] for r in sel]), 0),
                "median_proxied_qps": _round(median([r["proxied"]["qps"] for r in sel]), 0),
                "median_proxy_cpu_us_per_query": _round(
                    median([r["proxied"]["proxy_cpu_us_per_query"] for r in sel]), 1),
                "median_proxy_user_us_per_query": _round(
                    median([r["proxied"]["proxy_user_us_per_query"] for r in sel]), 1),
                "median_proxy_sys_us_per_query": _round(
                    median([r["proxied"]["proxy_sys_us_per_query"] for r in sel]), 1),
                "errors": sum(r["direct"]["errors"] + r["proxied"]["errors"]
                              + sum(y["errors"] for y in r.get("relays", {}).values()) for r in sel),
                "side_by_side": _side_by_side(sel),
            })
    return out


def _side_by_side(sel: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians per target of one combination: direct, myrouter and each yardstick relay."""
    runs: dict[str, list[dict[str, Any]]] = {"direct": [], "myrouter": []}
    for r in sel:
        runs["direct"].append({**r["direct"], "ratio": 1.0 if r["direct"]["qps"] else None})
        runs["myrouter"].append({**r["proxied"], "ratio": r["ratio"]})
        for key, row in r.get("relays", {}).items():
            runs.setdefault(YARDSTICKS[key][0], []).append(row)
    out = []
    for name, rows in runs.items():
        relayed = name != "direct"
        out.append({
            "target": name,
            "median_qps": _round(median([x["qps"] for x in rows]), 0),
            "median_ratio": _round(median([x["ratio"] for x in rows]), 3),
            "median_cpu_us_per_query": _round(median([x["proxy_cpu_us_per_query"] for x in rows]), 1) if relayed else None,
            "median_user_us_per_query": _round(median([x["proxy_user_us_per_query"] for x in rows]), 1) if relayed else None,
            "median_sys_us_per_query": _round(median([x["proxy_sys_us_per_query"] for x in rows]), 1) if relayed else None,
            "median_cpu_pct": _round(median([x["proxy_cpu_pct"] for x in rows]), 0) if relayed else None,
            "median_p95_ms": _round(median([x["latency_p95_ms"] for x in rows]), 2),
            "errors": sum(x["errors"] for x in rows),
        })
    return out


def plane_counts(proxy: ProxyProcess) -> dict[str, int]:
    """Which plane served the proxy's commands, from its admin interface."""
    return global_counters(proxy, ("Questions", "Data_plane_commands", "Data_plane_handovers"))


def global_counters(proxy: ProxyProcess, names: tuple[str, ...]) -> dict[str, int]:
    """These ``stats_mysql_global`` values of the proxy (0 for a name it does not have)."""
    import pymysql

    conn = pymysql.connect(host=HOST, port=proxy.admin_port, user="admin", password="admin")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT Variable_Name, Variable_Value FROM stats_mysql_global WHERE Variable_Name IN "
                        f"({', '.join(repr(n) for n in names)})")
            found = {name: int(value) for name, value in cur.fetchall()}
    finally:
        conn.close()
    return {name: found.get(name, 0) for name in names}


def print_report(pairs: list[dict[str, Any]], summary: list[dict[str, Any]], a: argparse.Namespace,
                 idle_cpu: dict[str, Any]) -> None:
    print()
    routing = ("the shipped rules, reads to the replicas" if a.routing == "split"
               else "no rules, every statement to the primary")
    print(f"{a.workload}: {a.time:g} s per run, {a.rounds} round(s), {a.tables} tables x {a.table_size} rows; "
          f"qps = sysbench queries/s; ratio = proxied/direct; myrouter's routing: {routing}")
    rows = []
    for r in pairs:
        d, p = r["direct"], r["proxied"]
        rows.append([
            str(r["round"]), str(r["threads"]), r["mode"],
            fmt(d["qps"], ".0f"), fmt(p["qps"], ".0f"), fmt(r["ratio"], ".3f"),
            f"{d['errors']}/{p['errors']}",
            fmt(p["proxy_cpu_us_per_query"], ".1f"),
            fmt(p["proxy_user_us_per_query"], ".1f") + "/" + fmt(p["proxy_sys_us_per_query"], ".1f"),
            fmt(p["proxy_cpu_pct"], ".0f"),
            f"{fmt(d['other_cpu_pct'], '.0f')}/{fmt(p['other_cpu_pct'], '.0f')}" + (" noisy" if r["noisy"] else ""),
        ])
    print(format_table(
        ["round", "threads", "mode", "direct qps", "proxied qps", "ratio", "errors d/p", "proxy us/q",
         "user/sys", "proxy CPU%", "other CPU% d/p"],
        rows, left=(2,)))
    print()
    print("per combination (medians over the rounds):")
    rows = [[str(s["threads"]), s["mode"], f"{s['pairs']} ({s['noisy_pairs']})", fmt(s["median_direct_qps"], ".0f"),
             fmt(s["median_proxied_qps"], ".0f"), fmt(s["median_ratio"], ".3f"),
             fmt(s["median_ratio_quiet"], ".3f"),
             fmt(s["median_proxy_cpu_us_per_query"], ".1f"),
             fmt(s["median_proxy_user_us_per_query"], ".1f") + "/" + fmt(s["median_proxy_sys_us_per_query"], ".1f"),
             str(s["errors"])] for s in summary]
    print(format_table(["threads", "mode", "pairs (noisy)", "direct qps", "proxied qps", "median ratio",
                        "quiet pairs", "proxy us/q", "user/sys", "errors"], rows, left=(1,)))
    print()
    print("proxy us/q: CPU time (user+sys, /proc/<pid>/stat) of the myrouter process per sysbench query,\n"
          "  over the whole proxied run (logins included); user/sys: its two parts (sys: the kernel's\n"
          "  socket work, loopback TCP delivery included). proxy CPU%: of one core.\n"
          f"other CPU%: CPU (of one core; the machine has {os.cpu_count()}) used by anything but the proxy, "
          "mariadbd, sysbench and\n  softirq during the run: other users of a shared machine, kernel threads. "
          f"A pair where it exceeds\n  {a.noisy_threshold:g}% on either side is marked noisy; "
          "'quiet pairs' is the median ratio without them.")
    print(f"proxy CPU while idle (during the direct runs): {idle_cpu['us_per_s']:.0f} us per second")
    if any(r.get("relays") for r in pairs):
        print()
        print("side by side, medians per combination (ratio: to the direct run of the same round; CPU: of that\n"
              "process per query; the relays understand nothing and forward to the primary):")
        rows = [[str(s["threads"]), s["mode"], t["target"], fmt(t["median_qps"], ".0f"), fmt(t["median_ratio"], ".3f"),
                 fmt(t["median_cpu_us_per_query"], ".1f"),
                 fmt(t["median_user_us_per_query"], ".1f") + "/" + fmt(t["median_sys_us_per_query"], ".1f"),
                 fmt(t["median_cpu_pct"], ".0f"), fmt(t["median_p95_ms"], ".2f"), str(t["errors"])]
                for s in summary for t in s["side_by_side"]]
        print(format_table(["threads", "mode", "target", "qps", "ratio", "CPU us/q", "user/sys", "CPU%", "p95 ms",
                            "errors"],
                           rows, left=(1, 2)))
    bad_runs = sum(1 for r in pairs for t in ("direct", "proxied") if r[t]["errors"])
    bad_runs += sum(1 for r in pairs for y in r.get("relays", {}).values() if y["errors"])
    if bad_runs:
        print(f"\n!!! {bad_runs} sysbench run(s) with ERRORS: their figures are not comparable; see above.")


# ---------------------------------------------------------------------------
# profiling (optional)


def profile(runner: Runner, proxy: ProxyProcess, out_dir: Path, a: argparse.Namespace) -> dict[str, Any]:
    """One extra proxied run with py-spy attached to the proxy; prints its hot spots."""
    py_spy = Path(sys.executable).with_name("py-spy")
    exe = str(py_spy) if py_spy.exists() else shutil.which("py-spy")
    if exe is None:
        print("--profile: py-spy not found (.venv/bin/pip install py-spy); skipped", flush=True)
        return {"skipped": "py-spy not found"}
    out_dir.mkdir(parents=True, exist_ok=True)
    threads, mode = a.profile_threads, a.profile_mode
    raw = out_dir / f"myrouter-{a.workload}-{mode}-{threads}t.txt"
    # py-spy runs a bit shorter than sysbench: it samples only steady state
    duration = max(1, int(a.profile_time) - 2)
    spy_cmd = [exe, "record", "--pid", str(proxy.pid), "--rate", str(a.profile_rate), "--format", "raw",
               "--duration", str(duration), "--output", str(raw), "--nonblocking"]
    print(f"\nprofiling the proxy: {mode} protocol, {threads} threads, {a.profile_time:g} s "
          f"(py-spy --rate {a.profile_rate} --nonblocking); figures of this run are not comparable", flush=True)
    spy = subprocess.Popen(spy_cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    runner.helpers.append(spy)
    time.sleep(1)  # let py-spy attach before the load starts
    cmd = runner.command(proxy.port, "run", workload=a.workload, threads=threads, mode=mode,
                         seconds=a.profile_time)
    cpu = ProcCPU(proxy.pid)
    cpu.start()
    res = runner.run(cmd, timeout=a.profile_time + 120)
    sample = cpu.stop()
    try:
        spy_out, _ = spy.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy_out, _ = spy.communicate()
    info: dict[str, Any] = {"raw": str(raw), "qps": res.qps, "errors": res.errors,
                            "proxy_cpu_us_per_query": _round(sample.per_unit_us(res.queries or 0), 1),
                            "proxy_user_us_per_query": _round(sample.per_unit_us(res.queries or 0, "user"), 1),
                            "proxy_sys_us_per_query": _round(sample.per_unit_us(res.queries or 0, "system"), 1)}
    print(f"  profiled run: {fmt(res.qps, '.0f')} qps, {res.errors} errors, proxy "
          f"{fmt(info['proxy_cpu_us_per_query'], '.0f')} us/query (user {fmt(info['proxy_user_us_per_query'], '.0f')}"
          f" + sys {fmt(info['proxy_sys_us_per_query'], '.0f')}; with py-spy attached)")
    if spy.returncode != 0 or not raw.exists():
        print(f"  py-spy failed (exit {spy.returncode}):\n{spy_out[-2000:]}", flush=True)
        info["error"] = spy_out[-2000:]
        return info
    stats = read_collapsed(raw)
    print(f"  collapsed stacks written to {raw} (load into speedscope, or flamegraph.pl)")
    print("  caveat: a sampler over-represents time spent inside system calls (send/recv); weigh the\n"
          "  shares against the measured user/sys split of the proxy's CPU above.\n")
    print("== all frames")
    print(top_frames_report(stats, limit=a.profile_top))
    print("\n== myrouter frames")
    print(top_frames_report(stats, limit=a.profile_top, only="myrouter/"))
    print("\n== myrouter lines (own time)")
    print(top_frames_report(read_collapsed(raw, keep_lines=True), limit=a.profile_top, only="myrouter/",
                            own_only=True))
    info["samples"] = stats.total_samples
    return info


# ---------------------------------------------------------------------------
# main


def _git_describe() -> str | None:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def _versions() -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version(), "nproc": os.cpu_count()}
    for name, cmd in (("sysbench", ["sysbench", "--version"]), ("mariadbd", ["mariadbd", "--version"])):
        exe = shutil.which(cmd[0]) or (f"/usr/sbin/{cmd[0]}" if Path(f"/usr/sbin/{cmd[0]}").exists() else None)
        if exe is None:
            continue
        try:
            out[name] = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    try:
        out["loadavg_at_start"] = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        pass
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", choices=WORKLOADS, default="oltp_point_select")
    p.add_argument("--time", type=float, default=10, help="seconds per sysbench run (default 10)")
    p.add_argument("--rounds", type=int, default=3, help="pairs per combination (default 3)")
    p.add_argument("--threads", type=lambda s: [int(x) for x in s.split(",")], default=[8, 32],
                   help="comma-separated thread counts (default 8,32)")
    p.add_argument("--modes", type=lambda s: s.split(","), default=["ps", "text"],
                   help="comma-separated: ps (--db-ps-mode=auto), text (--db-ps-mode=disable); default ps,text")
    p.add_argument("--tables", type=int, default=4)
    p.add_argument("--table-size", type=int, default=10000)
    p.add_argument("--replicas", type=int, default=2, help="replicas in the test bed (default 2, as `make run`)")
    p.add_argument("--routing", choices=("split", "writer"), default="split",
                   help="split (default): the shipped rules, reads to the replicas; writer: no rules, every "
                        "statement to the primary, as the yardstick relays do (the proxy's own cost, like for like)")
    p.add_argument("--warmup", type=float, default=3, help="seconds of warm-up on each side first (0: none)")
    p.add_argument("--sysbench-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for each sysbench run (repeatable), e.g. --sysbench-arg=--rand-type=uniform")
    p.add_argument("--json", type=Path, metavar="PATH", help="write all results as JSON here")
    p.add_argument("--noisy-threshold", type=float, default=20,
                   help="other CPU%% (of one core) above which a pair is marked noisy (default 20)")
    p.add_argument("--yardsticks", type=lambda s: [] if s == "none" else s.split(","), default=list(YARDSTICKS),
                   help="relays measured beside myrouter in the same rounds, in front of the primary: "
                        "bare (bare_relay.py, Trio), two-plane (two_plane_relay.py, Trio as the guest of the "
                        "engine's epoll loop); comma-separated, or none (default: bare,two-plane)")
    p.add_argument("--backend", choices=("tcp", "unix"), default="tcp",
                   help="how the proxy reaches MariaDB: loopback TCP (default) or the servers' Unix sockets "
                        "(port = 0); sysbench always connects over TCP, to both")
    p.add_argument("--proxy-log-level", default="info", help="myrouter --log-level (default info)")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="after the measurements, one proxied run under py-spy; collapsed stacks go to DIR")
    p.add_argument("--profile-threads", type=int, default=8)
    p.add_argument("--profile-mode", choices=tuple(MODES), default="text")
    p.add_argument("--profile-time", type=float, default=20)
    p.add_argument("--profile-rate", type=int, default=200, help="py-spy samples per second (default 200)")
    p.add_argument("--profile-top", type=int, default=25, help="frames listed per ranking (default 25)")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    for m in a.modes:
        if m not in MODES:
            p.error(f"--modes: unknown mode {m!r} (use ps, text)")
    for y in a.yardsticks:
        if y not in YARDSTICKS:
            p.error(f"--yardsticks: unknown relay {y!r} (use {', '.join(YARDSTICKS)} or none)")
    if a.time <= 0 or a.rounds < 1 or not a.threads or min(a.threads) < 1:
        p.error("--time must be > 0, --rounds >= 1, --threads >= 1")
    return a


def _say(text: str, *, err: bool = False) -> None:
    """print() that never raises: cleanup must go on when stdout is a closed pipe (``| head``)."""
    try:
        print(text, file=sys.stderr if err else sys.stdout, flush=True)
    except (OSError, ValueError):
        pass


def install_interrupt_handlers() -> list[str]:
    """The first SIGINT/SIGTERM/SIGHUP interrupts the benchmark (KeyboardInterrupt); later ones must not
    break the cleanup (stopping the proxy and the MariaDB servers), which is bounded by its own timeouts.
    Returns the list the cleanup appends to (non-empty: signals only print a message)."""
    interrupted: list[str] = []

    def on_signal(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if interrupted:
            print(f"({name}: still cleaning up, please wait)", file=sys.stderr, flush=True)
            return
        interrupted.append(name)
        raise KeyboardInterrupt(name)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    return interrupted


def prepare_tables(runner: Runner, cluster: Any) -> None:
    """sysbench's tables on the primary, then wait until the replicas have them."""
    a = runner.args
    prep = runner.run(runner.command(cluster.primary.port, "prepare", workload="oltp_point_select"),
                      timeout=600)
    if prep.returncode != 0:
        raise RuntimeError(f"sysbench prepare failed (exit {prep.returncode}):\n{prep.output[-3000:]}")
    if a.replicas:
        cluster.wait_replication(timeout=300)
    print(f"  prepared {a.tables} tables x {a.table_size} rows in {DB}; replicas caught up", flush=True)


def stop_proxy_checked(proxy: ProxyProcess) -> tuple[dict[str, Any], bool]:
    """SIGTERM the proxy and say how it went: (its exit record, True if it exited 0 within its drain timeout)."""
    code, secs = proxy.stop()
    record = {"code": code, "seconds": round(secs, 2), "drain_timeout": proxy.drain_timeout}
    if code == 0 and secs <= proxy.drain_timeout:
        _say(f"myrouter stopped with exit 0 {secs:.2f} s after SIGTERM")
        return record, True
    if code == 0:
        _say(f"!!! myrouter exited 0 but only {secs:.1f} s after SIGTERM, beyond its drain timeout "
             f"({proxy.drain_timeout:.0f} s)", err=True)
    else:
        _say(f"!!! myrouter did not stop cleanly after SIGTERM: "
             f"{'killed after the timeout' if code is None else f'exit code {code}'} ({secs:.1f} s)\n"
             f"--- tail of {proxy.log_path} ---\n{proxy.log_tail()}", err=True)
    return record, False


def stop_testbed(cluster: Any) -> bool:
    try:
        cluster.stop()
        return True
    except Exception as exc:  # noqa: BLE001
        _say(f"!!! could not stop the test bed: {exc}", err=True)
        return False


def finish_run(cluster: Any, json_path: Path | None, results: dict[str, Any], workdir: Path, *, keep: bool,
               status: int) -> int:
    """The end of a benchmark's run, whatever happened before: the test bed stopped, the results written,
    the work directory removed, or kept (and said) when ``keep``: the proxies' configs and logs of a run
    that failed. Returns ``status``, or 1 if one of these steps failed."""
    if cluster is not None and not stop_testbed(cluster):
        status = status or 1
    if json_path is not None and not write_json(json_path, results):
        status = status or 1
    if keep:
        _say(f"(proxy configs and logs kept in {workdir})", err=True)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return status


def write_json(path: Path, results: dict[str, Any]) -> bool:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2, default=str) + "\n")
        _say(f"results written to {path}")
        return True
    except OSError as exc:
        _say(f"!!! could not write {path}: {exc}", err=True)
        return False


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO, format="%(name)s: %(message)s")
    if a.replicas < 1 and a.routing == "split":
        print("note: with no replica, the shipped rules send reads to an empty reader hostgroup and every "
              "proxied read fails", flush=True)
    if min(a.threads) < 8:
        print("note: below 8 threads the ratio mostly measures latency, not throughput; compare at >= 8",
              flush=True)

    interrupted = install_interrupt_handlers()

    from myrouter_testbed import mariadb as testbed

    testbed.ensure_packages()
    runner = Runner(a)
    workdir = Path(tempfile.mkdtemp(prefix="myrouter-bench-"))
    cluster = None
    proxy: ProxyProcess | None = None
    relays: dict[str, RelayProcess] = {}
    results: dict[str, Any] = {"meta": {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git": _git_describe(),
                                        **_versions(), "args": {k: (str(v) if isinstance(v, Path) else v)
                                                                for k, v in vars(a).items()}}}
    status = 0
    failure = False
    try:
        print(f"starting the test bed (primary + {a.replicas} replicas)...", flush=True)
        cluster = testbed.start_cluster(replicas=a.replicas)
        print(f"  primary on {HOST}:{cluster.primary.port}", flush=True)
        prepare_tables(runner, cluster)

        proxy = ProxyProcess(cluster, workdir, log_level=a.proxy_log_level, unix_sockets=a.backend == "unix",
                             routing=a.routing)
        proxy.start()
        print(f"  myrouter pid {proxy.pid} on {HOST}:{proxy.port}, code from {proxy.package} (log {proxy.log_path})",
              flush=True)

        for key in a.yardsticks:
            relays[key] = RelayProcess(key, cluster.primary.port)
            relays[key].start()
            print(f"  {relays[key].label} ({relays[key].script.name}) pid {relays[key].pid} on {HOST}:{relays[key].port}"
                  f" -> primary", flush=True)

        if a.warmup > 0:
            for port in (cluster.primary.port, proxy.port, *(r.port for r in relays.values())):
                runner.run(runner.command(port, "run", workload=a.workload, threads=max(a.threads), mode="text",
                                          seconds=a.warmup), timeout=a.warmup + 120)

        idle_before, t0 = proc_cpu_seconds(proxy.pid), time.monotonic()
        pairs = run_pairs(runner, cluster, proxy, relays)
        # idle cost of the proxy (monitor, timers): its CPU during the direct runs
        direct_wall = sum(r["direct"]["wall_s"] for r in pairs)
        direct_cpu = sum(r["direct"]["proxy_cpu_s"] for r in pairs)
        idle_cpu = {"us_per_s": direct_cpu / direct_wall * 1e6 if direct_wall else 0.0,
                    "measured_over_s": round(direct_wall, 1),
                    "total_cpu_during_pairs_s": round(proc_cpu_seconds(proxy.pid) - idle_before, 2),
                    "pairs_wall_s": round(time.monotonic() - t0, 1)}
        summary = summarise(pairs, a)
        planes = plane_counts(proxy)
        results.update(pairs=pairs, summary=summary, proxy_idle_cpu=idle_cpu, planes=planes)
        print_report(pairs, summary, a, idle_cpu)
        print(f"myrouter's commands: {planes['Questions']}, {planes['Data_plane_commands']} served wholly by the data "
              f"plane, {planes['Data_plane_handovers']} handed from it to Trio (stats_mysql_global)")
        if any(s["errors"] for s in summary):
            status = 1

        if a.profile is not None:
            results["profile"] = profile(runner, proxy, a.profile, a)
    except KeyboardInterrupt as exc:
        _say(f"\ninterrupted ({exc or 'Ctrl-C'}): cleaning up", err=True)
        status = 130
    except BrokenPipeError:
        status = 1  # whoever read our output went away (``| head``): just clean up
    except Exception as exc:  # noqa: BLE001 - report, clean up, exit non-zero
        _say(f"\nbenchmark failed: {exc}", err=True)
        status = 2
        failure = True
    finally:
        if not interrupted:
            interrupted.append("cleanup")  # from here on, signals only print a message
        # every step runs even if an earlier one failed or the output is gone (a closed pipe)
        runner.kill_current()
        for relay in relays.values():
            relay.stop()
        if proxy is not None and proxy.proc is not None:
            results["proxy_exit"], clean = stop_proxy_checked(proxy)
            if not clean:
                failure = True
                status = status or 1
        status = finish_run(cluster, a.json, results, workdir, keep=failure, status=status)
    return status


if __name__ == "__main__":
    sys.exit(main())
