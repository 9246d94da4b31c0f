#!/usr/bin/env python3
"""Soak: mixed sysbench read/write through myrouter while a fault script hits the test bed.

Starts the project's test bed (``myrouter_testbed.mariadb``: a MariaDB primary and 2 GTID
replicas on free ports of 127.0.0.1) and the proxy (``myrouter serve``, as
``bench_sysbench.py`` does), then for ``--duration`` seconds (default 600) runs

* ``sysbench oltp_read_write`` through the proxy (``--mysql-ignore-errors`` with the server
  errors a fault may cause: the transaction is restarted; counted per 5 s interval). A
  lost connection stops sysbench (1.0.20 cannot reconnect safely): the stop is counted
  as a client error and sysbench is started again for the time left;
* a ledger writer of its own through the proxy: numbered rows, each in a transaction;
  a row whose COMMIT was answered OK is *acknowledged* and must be found at the end;
* an admin poller (stats queries on the admin port, once a second);
* the fault script, in cycles while time remains: SIGKILL a replica and restart it;
  ``STOP SLAVE SQL_THREAD`` on a replica for 15 s; SIGSTOP a replica for 20 s, then
  SIGCONT; promote a replica (read_only switch, ``Cluster.promote``) and back; flood
  the admin port (many concurrent admin connections, stats queries, /metrics).

Then it prints the faults with the client errors seen during each (and outside any),
rows lost (acknowledged ledger rows missing on the primary; CHECKSUM TABLE of every
table on the primary against each replica; sysbench's row count), the admin flood's
figures, and the proxy's RSS and open fds at the start and the end.

    .venv/bin/python benchmarks/soak.py                     # 10 minutes
    .venv/bin/python benchmarks/soak.py --duration 180      # one fault cycle

Exit status: 0 when no acknowledged row is lost, the replicas match the primary, no
client lost its connection and no ledger or admin statement failed outside a fault
window (plus --grace seconds), and the proxy ran throughout and stopped cleanly on
SIGTERM (sysbench's ignored errors are shown, not judged: they include deadlocks
between its own transactions); 1 otherwise; 2 when the test bed or
the proxy did not start; 130 interrupted. Traffic goes to 127.0.0.1 only, and only
processes this script started are signalled, by their PID. Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
# this checkout's myrouter (test bed, config), not the one the shared venv was installed from
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from _common import format_table  # noqa: E402 - after the sys.path change
from bench_sysbench import DB, HOST, PASSWORD, USER, ProxyProcess, parse_sysbench  # noqa: E402

import pymysql  # noqa: E402

ADMIN_USER, ADMIN_PASSWORD = "admin", "admin"  # demo_config's admin_credentials
# errors a fault may cause: deadlock/lock wait (1213, 1205, 1020), read-only during a switchover (1290),
# no server in the hostgroup (9001), server or connection going away (1053, 1158, 1159, 1317, 1927),
# 2055), too many connections (1040). Not the client-side codes of a lost connection (2006, 2011, 2013, 2055):
# sysbench 1.0.20 with libmariadb crashes when it reconnects after one of them (see Sysbench).
IGNORED_ERRORS = "1020,1040,1053,1158,1159,1205,1213,1290,1317,1927,9001"
REPORT_INTERVAL = 5  # seconds between sysbench's intermediate reports
LEDGER = "soak_ledger"
ADMIN_QUERIES = (
    "SELECT * FROM stats_mysql_connection_pool",
    "SELECT * FROM stats_mysql_query_digest ORDER BY count_star DESC LIMIT 20",
    "SELECT * FROM runtime_mysql_servers",
    "SELECT * FROM stats_mysql_global",
    "SHOW PROCESSLIST",
    "SELECT hostgroup_id, hostname, port, status FROM mysql_servers",
)

log = logging.getLogger("soak")


# ---------------------------------------------------------------------------
# the timeline


@dataclass
class Window:
    name: str
    start: float  # seconds since the load started
    end: float | None = None


class Timeline:
    """Fault windows, in seconds since the load started."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.windows: list[Window] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    @contextlib.contextmanager
    def window(self, name: str):
        w = Window(name, self.now())
        self.windows.append(w)
        print(f"  [{w.start:6.1f}s] {name}", flush=True)
        try:
            yield w
        finally:
            w.end = self.now()

    def fault_at(self, start: float, end: float, grace: float) -> Window | None:
        """The fault window (extended by ``grace`` s) that overlaps [start, end], if any."""
        for w in self.windows:
            if start <= (w.end if w.end is not None else self.now()) + grace and end >= w.start:
                return w
        return None


# ---------------------------------------------------------------------------
# the proxy's resources


def rss_and_fds(pid: int) -> tuple[int, int]:
    """(resident set size in KiB, open file descriptors) of a process."""
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
                break
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


class ResourceSampler(threading.Thread):
    """Samples the proxy's RSS and fds every 2 s: the peak, and whether it is still alive."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True, name="sampler")
        self.pid = pid
        self.peak_rss = 0
        self.peak_fds = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(2):
            try:
                rss, fds = rss_and_fds(self.pid)
            except (FileNotFoundError, ProcessLookupError):
                return
            self.peak_rss, self.peak_fds = max(self.peak_rss, rss), max(self.peak_fds, fds)


# ---------------------------------------------------------------------------
# the load: sysbench


_RE_INTERVAL = re.compile(r"^\[ (\d+)s \] thds: \d+ tps: ([\d.]+) qps: ([\d.]+) .*err/s: ([\d.]+) reconn/s: ([\d.]+)",
                          re.M)


@dataclass
class Interval:
    end: float  # seconds since the load started
    tps: float
    qps: float
    errors: float  # ignored errors during the interval
    reconnects: float


@dataclass
class Abort:
    at: float  # seconds since the load started
    reason: str


class Sysbench(threading.Thread):
    """``sysbench oltp_read_write run`` through the proxy until the load's end, restarted when it stops early.

    sysbench 1.0.20 ends the whole run at the first error it does not ignore (a client connection the
    proxy closed: 2013), and with libmariadb it crashes (SIGSEGV) when it reconnects after an ignored
    2013, even straight to MariaDB: so lost connections are not ignored, and each early stop is an
    ``Abort`` (one client error) followed by a new run for the time left.
    """

    def __init__(self, args: argparse.Namespace, port: int, timeline: Timeline) -> None:
        super().__init__(daemon=True, name="sysbench")
        self.args = args
        self.port = port
        self.timeline = timeline
        self.proc: subprocess.Popen[str] | None = None
        self.outputs: list[tuple[float, str]] = []  # (start offset, output) of each run
        self.aborts: list[Abort] = []
        self.stop_event = threading.Event()
        self._lock = threading.Lock()

    def command(self, action: str, port: int, seconds: float = 0) -> list[str]:
        a = self.args
        cmd = [shutil.which("sysbench") or "sysbench", "oltp_read_write", f"--mysql-host={HOST}",
               f"--mysql-port={port}", f"--mysql-user={USER}", f"--mysql-password={PASSWORD}",
               f"--mysql-db={DB}", f"--tables={a.tables}", f"--table-size={a.table_size}"]
        if action == "run":
            cmd += [f"--threads={a.threads}", f"--time={seconds:.0f}", "--events=0",
                    f"--db-ps-mode={'auto' if a.mode == 'ps' else 'disable'}", f"--mysql-ignore-errors={a.ignore_errors}",
                    f"--report-interval={REPORT_INTERVAL}", "--histogram=off"]
        return [*cmd, action]

    def prepare(self, primary_port: int) -> None:
        out = subprocess.run(self.command("prepare", primary_port), stdin=subprocess.DEVNULL, capture_output=True,
                             text=True, timeout=600)
        if out.returncode != 0:
            raise RuntimeError(f"sysbench prepare failed (exit {out.returncode}):\n{out.stdout[-2000:]}{out.stderr}")

    def run(self) -> None:
        while not self.stop_event.is_set():
            left = self.args.duration - self.timeline.now()
            if left < 3:
                return
            start = self.timeline.now()
            with self._lock:
                if self.stop_event.is_set():
                    return
                self.proc = subprocess.Popen(self.command("run", self.port, left), stdin=subprocess.DEVNULL,
                                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                             errors="replace")
            out, _ = self.proc.communicate()
            self.outputs.append((start, out))
            code = self.proc.returncode
            if code != 0 and not self.stop_event.is_set():
                fatal = parse_sysbench(out, code).fatal
                reason = fatal[0] if fatal else f"exit {code}" + (" (SIGSEGV)" if code == -11 else "")
                self.aborts.append(Abort(self.timeline.now(), reason))
                print(f"  [{self.timeline.now():6.1f}s] sysbench stopped ({reason[:100]}); restarting", flush=True)
                self.stop_event.wait(0.5)

    def kill(self) -> None:
        self.stop_event.set()
        with self._lock:
            proc = self.proc
        if proc is not None and proc.poll() is None:
            log.warning("stopping sysbench (pid %d)", proc.pid)
            proc.kill()
            proc.wait(10)

    @property
    def output(self) -> str:
        return "".join(f"==== run started at {start:.1f}s\n{out}" for start, out in self.outputs)

    def intervals(self) -> list[Interval]:
        """Every intermediate report of every run, on the load's clock."""
        out = []
        for start, text in self.outputs:
            for m in _RE_INTERVAL.finditer(text):
                out.append(Interval(start + float(m.group(1)), float(m.group(2)), float(m.group(3)),
                                    float(m.group(4)) * REPORT_INTERVAL, float(m.group(5)) * REPORT_INTERVAL))
        return out


# ---------------------------------------------------------------------------
# the ledger writer


@dataclass
class Ledger:
    """Rows written through the proxy, one transaction each; what the client was told about each."""

    acked: set[int] = field(default_factory=set)  # COMMIT answered OK
    in_doubt: set[int] = field(default_factory=set)  # the connection died during COMMIT: may or may not be there
    errors: list[tuple[float, str]] = field(default_factory=list)  # (seconds since the load started, error)


class LedgerWriter(threading.Thread):
    def __init__(self, port: int, timeline: Timeline, rate: float) -> None:
        super().__init__(daemon=True, name="ledger")
        self.port = port
        self.timeline = timeline
        self.pause = 1 / rate if rate > 0 else 0
        self.ledger = Ledger()
        self.stop_event = threading.Event()

    def _connect(self) -> pymysql.connections.Connection:
        return pymysql.connect(host=HOST, port=self.port, user=USER, password=PASSWORD, database=DB,
                               autocommit=True, connect_timeout=10, read_timeout=30, write_timeout=30)

    def run(self) -> None:
        conn = None
        next_id = 0
        while not self.stop_event.is_set():
            next_id += 1
            phase = "connect"
            try:
                if conn is None:
                    conn = self._connect()
                with conn.cursor() as cur:
                    phase = "begin"
                    cur.execute("BEGIN")
                    phase = "insert"
                    cur.execute(f"INSERT INTO {LEDGER} (id, v) VALUES (%s, %s)", (next_id, next_id * 7 % 1000))
                    phase = "commit"
                    cur.execute("COMMIT")
                self.ledger.acked.add(next_id)
            except pymysql.MySQLError as exc:
                self.ledger.errors.append((self.timeline.now(), f"{phase}: {exc}"))
                if phase == "commit":
                    self.ledger.in_doubt.add(next_id)
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
                self.stop_event.wait(0.2)
            self.stop_event.wait(self.pause)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


# ---------------------------------------------------------------------------
# the admin port


@dataclass
class AdminFigures:
    connections: int = 0
    queries: int = 0
    metrics_scrapes: int = 0
    errors: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, connections: int = 0, queries: int = 0, scrapes: int = 0) -> None:
        with self.lock:
            self.connections += connections
            self.queries += queries
            self.metrics_scrapes += scrapes


def admin_session(port: int, figures: AdminFigures, timeline: Timeline, queries: int, offset: int = 0) -> None:
    """One admin connection running ``queries`` stats queries; errors are recorded."""
    try:
        conn = pymysql.connect(host=HOST, port=port, user=ADMIN_USER, password=ADMIN_PASSWORD, connect_timeout=10,
                               read_timeout=30, write_timeout=30)
    except pymysql.MySQLError as exc:
        figures.errors.append((timeline.now(), f"connect: {exc}"))
        return
    figures.add(connections=1)
    try:
        with conn.cursor() as cur:
            for i in range(queries):
                cur.execute(ADMIN_QUERIES[(offset + i) % len(ADMIN_QUERIES)])
                cur.fetchall()
                figures.add(queries=1)
    except pymysql.MySQLError as exc:
        figures.errors.append((timeline.now(), f"query: {exc}"))
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def scrape_metrics(port: int, figures: AdminFigures, timeline: Timeline) -> None:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=30) as resp:
            resp.read()
        figures.add(scrapes=1)
    except OSError as exc:
        figures.errors.append((timeline.now(), f"/metrics: {exc}"))


class AdminPoller(threading.Thread):
    """A monitoring tool: a few stats queries a second, all along."""

    def __init__(self, port: int, figures: AdminFigures, timeline: Timeline) -> None:
        super().__init__(daemon=True, name="admin-poller")
        self.port, self.figures, self.timeline = port, figures, timeline
        self.stop_event = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop_event.wait(1):
            admin_session(self.port, self.figures, self.timeline, 3, offset=i)
            i += 1


def admin_flood(proxy: ProxyProcess, figures: AdminFigures, timeline: Timeline, seconds: float, workers: int) -> None:
    """``workers`` threads opening admin connections (a few stats queries each) as fast as they can, and
    two scraping /metrics, for ``seconds``."""
    deadline = time.monotonic() + seconds

    def admin_worker(n: int) -> None:
        while time.monotonic() < deadline:
            admin_session(proxy.admin_port, figures, timeline, 4, offset=n)

    def metrics_worker() -> None:
        while time.monotonic() < deadline:
            scrape_metrics(proxy.metrics_port, figures, timeline)

    threads = [threading.Thread(target=admin_worker, args=(n,), daemon=True) for n in range(workers)]
    threads += [threading.Thread(target=metrics_worker, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)


# ---------------------------------------------------------------------------
# the faults


class Faults:
    """The fault script. Remembers what it left broken so that cleanup can repair it."""

    def __init__(self, cluster: Any, proxy: ProxyProcess, timeline: Timeline, args: argparse.Namespace,
                 admin: AdminFigures) -> None:
        self.cluster, self.proxy, self.timeline, self.args, self.admin = cluster, proxy, timeline, args, admin
        self.stopped_pid: int | None = None  # a replica we SIGSTOPped and did not SIGCONT yet
        self.sql_thread_stopped: Any = None

    def sleep(self, seconds: float, deadline: float) -> None:
        time.sleep(max(0.0, min(seconds, deadline - time.monotonic())))

    def cycle(self, deadline: float) -> None:
        a, c, tl = self.args, self.cluster, self.timeline
        replica = c.replicas[0]
        with tl.window(f"SIGKILL {replica.name} (port {replica.port}), restart after {a.down:g} s"):
            replica.kill()
            time.sleep(a.down)
            replica.start()
        self.sleep(a.gap, deadline)

        replica = c.replicas[-1]
        with tl.window(f"STOP SLAVE SQL_THREAD on {replica.name} for 15 s"):
            replica.stop_sql_thread()
            self.sql_thread_stopped = replica
            time.sleep(15)
            replica.start_sql_thread()
            self.sql_thread_stopped = None
        self.sleep(a.gap, deadline)

        replica = c.replicas[0]
        with tl.window(f"SIGSTOP {replica.name} (pid {replica.pid}) for 20 s, then SIGCONT"):
            self.stopped_pid = replica.pid
            os.kill(replica.pid, signal.SIGSTOP)  # our own mariadbd (testbed.Server.process)
            time.sleep(20)
            os.kill(replica.pid, signal.SIGCONT)
            self.stopped_pid = None
        self.sleep(a.gap, deadline)

        old, new = c.primary, c.replicas[-1]
        with tl.window(f"promote {new.name} (read_only switch), {old.name} becomes a replica"):
            c.primary.query("SELECT 1")  # fail here, not half-way, if the primary is unreachable
            c.promote(new, timeout=60)
        time.sleep(15)
        with tl.window(f"promote {old.name} back"):
            c.promote(old, timeout=60)
        self.sleep(a.gap, deadline)

        with tl.window(f"admin flood: {a.flood_connections} concurrent admin clients + /metrics for "
                       f"{a.flood_seconds:g} s"):
            admin_flood(self.proxy, self.admin, tl, a.flood_seconds, a.flood_connections)
        self.sleep(a.gap, deadline)

    def repair(self) -> None:
        """Undo a fault left half-way (an exception or Ctrl-C in the middle of a cycle)."""
        if self.stopped_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.stopped_pid, signal.SIGCONT)
            self.stopped_pid = None
        if self.sql_thread_stopped is not None:
            with contextlib.suppress(Exception):
                self.sql_thread_stopped.start_sql_thread()
            self.sql_thread_stopped = None
        for server in self.cluster.servers:
            if not server.running:
                with contextlib.suppress(Exception):
                    server.start()


#: an estimate of one cycle without its gaps (kill + restart, SQL thread, SIGSTOP, 2 promotions, flood)
def cycle_seconds(a: argparse.Namespace) -> float:
    return a.down + 5 + 15 + 20 + 15 + 10 + a.flood_seconds + 5 * a.gap


# ---------------------------------------------------------------------------
# the end: what was lost


def checksums(server: Any, tables: list[str]) -> dict[str, int | None]:
    rows = server.query("CHECKSUM TABLE " + ", ".join(f"{DB}.{t}" for t in tables))
    return {r["Table"].split(".", 1)[1]: r["Checksum"] for r in rows}


def check_data(cluster: Any, args: argparse.Namespace, ledger: Ledger) -> dict[str, Any]:
    tables = [f"sbtest{i}" for i in range(1, args.tables + 1)] + [LEDGER]
    cluster.wait_replication(timeout=180)
    primary = cluster.primary
    present = {r["id"] for r in primary.query(f"SELECT id FROM {DB}.{LEDGER}")}
    reference = checksums(primary, tables)
    diverged = {}
    for replica in cluster.replicas:
        theirs = checksums(replica, tables)
        bad = [t for t in tables if theirs.get(t) != reference.get(t)]
        if bad:
            diverged[replica.name] = bad
    counts = {t: primary.query(f"SELECT COUNT(*) AS n FROM {DB}.{t}")[0]["n"] for t in tables[:-1]}
    return {
        "ledger_acked": len(ledger.acked),
        "ledger_lost": sorted(ledger.acked - present),
        "ledger_in_doubt_present": len(ledger.in_doubt & present),
        "ledger_in_doubt": len(ledger.in_doubt),
        "ledger_unacked_present": len(present - ledger.acked - ledger.in_doubt),
        "checksums": reference,
        "diverged": diverged,
        "sbtest_rows": sum(counts.values()),
        "sbtest_expected": args.tables * args.table_size,
    }


# ---------------------------------------------------------------------------
# the report


def attribute(timeline: Timeline, events: list[tuple[float, float, float]], grace: float) -> dict[str, float]:
    """Sum (start, end, count) events per fault window; 'outside faults' for the rest."""
    out: dict[str, float] = {w.name: 0.0 for w in timeline.windows}
    out["outside faults"] = 0.0
    for start, end, count in events:
        if count:
            w = timeline.fault_at(start, end, grace)
            out[w.name if w else "outside faults"] += count
    return out


_LOG_LINE = re.compile(r"^\S+ \S+ (ERROR|WARNING) (.*)$", re.M)


def log_summary(text: str, limit: int = 8) -> list[tuple[str, int]]:
    """The proxy's ERROR and WARNING lines, numbers masked, by frequency."""
    counts: dict[str, int] = {}
    for m in _LOG_LINE.finditer(text):
        key = m.group(1) + " " + re.sub(r"\d+", "N", m.group(2))
        counts[key] = counts.get(key, 0) + 1
    return sorted(counts.items(), key=lambda kv: -kv[1])[:limit]


def report(a: argparse.Namespace, timeline: Timeline, sb: Sysbench, ledger: Ledger,
           admin: AdminFigures, data: dict[str, Any] | None, resources: dict[str, tuple[int, int]],
           sampler: ResourceSampler, proxy_log: str) -> int:
    intervals = sb.intervals()
    sb_errors = attribute(timeline, [(i.end - REPORT_INTERVAL, i.end, i.errors) for i in intervals], a.grace)
    sb_aborts = attribute(timeline, [(x.at, x.at, 1) for x in sb.aborts], a.grace)
    ledger_errors = attribute(timeline, [(t, t, 1) for t, _ in ledger.errors], a.grace)
    admin_errors = attribute(timeline, [(t, t, 1) for t, _ in admin.errors], a.grace)
    rows = []
    for w in [*timeline.windows, Window("outside faults", 0)]:
        when = f"{w.start:.0f}-{w.end:.0f}s" if w.end is not None and w.name != "outside faults" else ""
        rows.append([when, w.name, f"{sb_errors[w.name]:.0f}", str(int(sb_aborts[w.name])),
                     str(int(ledger_errors[w.name])), str(int(admin_errors[w.name]))])
    print("\n== faults and the client errors seen during each (window + %g s grace)" % a.grace)
    print(format_table(["when", "fault", "sysbench err", "sysbench stops", "ledger err", "admin err"], rows,
                       left=(0, 1)))

    print("\n== sysbench oltp_read_write through myrouter (from its 5 s reports)")
    seconds = REPORT_INTERVAL * len(intervals)
    transactions = sum(i.tps for i in intervals) * REPORT_INTERVAL
    queries = sum(i.qps for i in intervals) * REPORT_INTERVAL
    print(f"  {a.threads} threads, {a.mode} mode, {len(sb.outputs)} run(s) covering {seconds} s: "
          f"~{transactions:.0f} transactions ({transactions / max(seconds, 1):.0f} per s), ~{queries:.0f} queries; "
          f"lowest tps of a 5 s interval {min((i.tps for i in intervals), default=0):.0f}")
    print(f"  ignored errors ~{sum(i.errors for i in intervals):.0f} (a statement failing fast is retried at once, "
          f"so one fault can count thousands); stops (lost connections): {len(sb.aborts)}")
    for x in sb.aborts[:8]:
        print(f"    {x.at:6.1f}s {x.reason[:150]}")
    failed = False
    print("\n== ledger writer (one row per transaction, through myrouter)")
    print(f"  acknowledged {len(ledger.acked)}, errors {len(ledger.errors)}, in doubt (connection lost during "
          f"COMMIT) {len(ledger.in_doubt)}")
    for t, err in ledger.errors[:8]:
        print(f"    {t:6.1f}s {err[:150]}")
    print("\n== admin port")
    print(f"  connections {admin.connections}, queries {admin.queries}, /metrics scrapes {admin.metrics_scrapes}, "
          f"errors {len(admin.errors)}")
    for t, err in admin.errors[:5]:
        print(f"    {t:6.1f}s {err[:150]}")

    print("\n== rows lost")
    if data is None:
        print("  not checked (the end of the run failed)")
        failed = True
    else:
        print(f"  acknowledged ledger rows missing on the primary: {len(data['ledger_lost'])}"
              + (f" (ids {data['ledger_lost'][:10]})" if data["ledger_lost"] else ""))
        print(f"  in-doubt ledger rows found: {data['ledger_in_doubt_present']} of {data['ledger_in_doubt']}; "
              f"rows never acknowledged but present: {data['ledger_unacked_present']}")
        print(f"  CHECKSUM TABLE primary vs each replica: "
              + ("equal for every table" if not data["diverged"] else f"DIFFERENT: {data['diverged']}"))
        deficit = data["sbtest_expected"] - data["sbtest_rows"]
        print(f"  sysbench rows on the primary: {data['sbtest_rows']} of {data['sbtest_expected']} prepared "
              f"(deficit {deficit}; a transaction sysbench restarts after an ignored error is committed up to the "
              "failed statement by its next BEGIN, so a deficit can come from sysbench itself)")
        failed |= bool(data["ledger_lost"] or data["diverged"] or data["ledger_unacked_present"])

    print("\n== proxy resources")
    (rss0, fds0), (rss1, fds1) = resources["start"], resources.get("end", (0, 0))
    print(f"  RSS  start {rss0 / 1024:.1f} MiB, end {rss1 / 1024:.1f} MiB, peak {sampler.peak_rss / 1024:.1f} MiB")
    print(f"  fds  start {fds0}, end {fds1}, peak {sampler.peak_fds}")
    tracebacks = proxy_log.count("Traceback (most recent call last)")
    print(f"  proxy log: {tracebacks} tracebacks, {proxy_log.count(' ERROR ')} ERROR lines, "
          f"{proxy_log.count(' WARNING ')} WARNING lines; the most frequent:")
    for text, count in log_summary(proxy_log):
        print(f"    {count:6d} x {text[:160]}")

    # sysbench's ignored errors include deadlocks between its own transactions (1213), which happen
    # without any fault: they are shown above, not judged. Lost connections, ledger and admin errors are.
    outside = sb_aborts["outside faults"] + ledger_errors["outside faults"] + admin_errors["outside faults"]
    if outside:
        print(f"\n!!! {outside:.0f} client errors outside the fault windows")
        failed = True
    return 1 if failed else 0


# ---------------------------------------------------------------------------
# main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=600, help="seconds of load (default 600)")
    p.add_argument("--threads", type=int, default=8, help="sysbench threads (default 8)")
    p.add_argument("--mode", choices=("ps", "text"), default="text",
                   help="text: plain queries (default); ps: server-side prepared statements (--db-ps-mode=auto)")
    p.add_argument("--ignore-errors", default=IGNORED_ERRORS,
                   help=f"sysbench --mysql-ignore-errors (default {IGNORED_ERRORS})")
    p.add_argument("--tables", type=int, default=4)
    p.add_argument("--table-size", type=int, default=10000)
    p.add_argument("--warmup", type=float, default=15, help="seconds of load before the first fault (default 15)")
    p.add_argument("--gap", type=float, default=10, help="seconds between two faults (default 10)")
    p.add_argument("--down", type=float, default=10, help="seconds a killed replica stays down (default 10)")
    p.add_argument("--flood-seconds", type=float, default=15)
    p.add_argument("--flood-connections", type=int, default=50, help="concurrent admin clients of the flood")
    p.add_argument("--ledger-rate", type=float, default=50, help="ledger transactions per second at most")
    p.add_argument("--grace", type=float, default=10,
                   help="seconds after a fault during which client errors are still the fault's (default 10)")
    p.add_argument("--proxy-log-level", default="info")
    p.add_argument("--keep", action="store_true",
                   help="keep the work directory (proxy config and log, sysbench output) even after a good run")
    a = p.parse_args(argv)
    if a.duration < a.warmup + cycle_seconds(a) + 10:
        p.error(f"--duration must leave room for the warm-up and one fault cycle: at least "
                f"{a.warmup + cycle_seconds(a) + 10:.0f} s with these settings")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    interrupted: list[str] = []

    def on_signal(signum: int, frame: Any) -> None:
        if interrupted:
            return  # cleanup is under way
        interrupted.append(signal.Signals(signum).name)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    from myrouter_testbed import mariadb as testbed

    testbed.ensure_packages()
    workdir = Path(tempfile.mkdtemp(prefix="myrouter-soak-"))
    cluster = proxy = sb = faults = sampler = None
    threads: list[Any] = []
    timeline = Timeline()
    status = 0
    try:
        print("starting the test bed (primary + 2 replicas)...", flush=True)
        cluster = testbed.start_cluster(replicas=2)
        print(f"  primary {HOST}:{cluster.primary.port}, replicas "
              + ", ".join(f"{HOST}:{r.port}" for r in cluster.replicas), flush=True)
        proxy = ProxyProcess(cluster, workdir, log_level=a.proxy_log_level)
        sb = Sysbench(a, proxy.port, timeline)
        sb.prepare(cluster.primary.port)
        cluster.primary.query(f"CREATE TABLE {DB}.{LEDGER} (id BIGINT PRIMARY KEY, v INT NOT NULL)")
        cluster.wait_replication(timeout=300)
        print(f"  prepared {a.tables} tables x {a.table_size} rows, and {LEDGER}; replicas caught up", flush=True)
        proxy.start()
        resources = {"start": rss_and_fds(proxy.pid)}
        print(f"  myrouter pid {proxy.pid} on {HOST}:{proxy.port} (admin {proxy.admin_port}), code from "
              f"{proxy.package}; RSS {resources['start'][0] / 1024:.1f} MiB, {resources['start'][1]} fds", flush=True)

        admin = AdminFigures()
        sampler = ResourceSampler(proxy.pid)
        timeline = Timeline()
        sb.timeline = timeline
        sb.start()
        ledger = LedgerWriter(proxy.port, timeline, a.ledger_rate)
        poller = AdminPoller(proxy.admin_port, admin, timeline)
        threads = [sampler, ledger, poller]
        for t in threads:
            t.start()
        print(f"load: sysbench oltp_read_write ({a.threads} threads) for {a.duration:g} s; faults after "
              f"{a.warmup:g} s", flush=True)
        deadline = time.monotonic() + a.duration - 10  # the last fault ends before the load does
        time.sleep(a.warmup)
        faults = Faults(cluster, proxy, timeline, a, admin)
        cycles = 0
        while cycles == 0 or time.monotonic() + cycle_seconds(a) < deadline:
            faults.cycle(deadline)
            cycles += 1
        print(f"  [{timeline.now():6.1f}s] {cycles} fault cycle(s) done; the load runs to its end", flush=True)
        sb.join(max(0.0, a.duration - timeline.now()) + 120)
        if sb.is_alive():
            print("!!! sysbench still running 120 s after the end of the load: stopping it", flush=True)
            sb.kill()
            status = 1
        for t in threads:
            t.stop_event.set()
        for t in threads:
            t.join(60)
        time.sleep(5)  # client connections closed: the proxy's resources settle
        if not proxy.running():
            print(f"!!! myrouter exited during the soak (code {proxy.proc.returncode})\n{proxy.log_tail()}",
                  flush=True)
            status = 1
        else:
            resources["end"] = rss_and_fds(proxy.pid)
        data = None
        try:
            data = check_data(cluster, a, ledger.ledger)
        except Exception as exc:  # noqa: BLE001 - reported; the run fails
            print(f"!!! could not check the data: {exc}", flush=True)
        proxy_log = proxy.log_path.read_text(errors="replace")
        (workdir / "sysbench.out").write_text(sb.output)
        status = report(a, timeline, sb, ledger.ledger, admin, data, resources, sampler, proxy_log) or status
    except KeyboardInterrupt as exc:
        print(f"\ninterrupted ({exc}): cleaning up", file=sys.stderr, flush=True)
        status = 130
    except Exception as exc:  # noqa: BLE001 - report, clean up, exit non-zero
        print(f"\nsoak failed: {exc}", file=sys.stderr, flush=True)
        logging.getLogger("soak").debug("failure", exc_info=True)
        status = 2 if proxy is None or proxy.proc is None else 1
    finally:
        if not interrupted:
            interrupted.append("cleanup")
        for t in threads:
            t.stop_event.set()
        if sb is not None:
            sb.kill()
        if faults is not None:
            faults.repair()
        if proxy is not None and proxy.proc is not None:
            code, secs = proxy.stop()
            if code == 0 and secs <= proxy.drain_timeout:
                print(f"myrouter stopped with exit 0 {secs:.2f} s after SIGTERM", flush=True)
            else:
                print(f"!!! myrouter did not stop cleanly after SIGTERM (code {code}, {secs:.1f} s)\n"
                      f"{proxy.log_tail()}", flush=True)
                status = status or 1
        if cluster is not None:
            try:
                cluster.stop()
            except Exception as exc:  # noqa: BLE001
                print(f"!!! could not stop the test bed: {exc}", file=sys.stderr, flush=True)
                status = status or 1
        if status in (0, 130) and not a.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"(proxy config and log, sysbench output kept in {workdir})", file=sys.stderr, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
