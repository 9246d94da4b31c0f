"""Small helpers shared by the benchmark scripts (stdlib only).

* ``ProcCPU``: CPU time (user + system) of a process from ``/proc/<pid>/stat``;
  ``ProcTreeCPU``: the same for a process and its descendants (myrouter's workers).
* ``median``, ``format_table``: reporting.
* ``top_frames``: read a py-spy "raw" (collapsed stacks) profile and rank frames.

Run the scripts as ``python benchmarks/<name>.py``: this directory is then on
``sys.path`` and ``import _common`` works.
"""

from __future__ import annotations

import os
import re
import resource
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------
# CPU time of a process


def proc_cpu_times(pid: int) -> tuple[float, float]:
    """(utime, stime) of ``pid`` in seconds (all its threads; not its children).

    Resolution is one clock tick (usually 10 ms): measure over seconds, not
    milliseconds. Raises ``ProcessLookupError`` if the process is gone.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None
    # the command name (field 2) is in parentheses and may hold spaces or ')':
    # the fields that follow start after the last ')'
    fields = data[data.rindex(b")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds."""
    user, system = proc_cpu_times(pid)
    return user + system


def all_processes_cpu() -> dict[int, tuple[str, float]]:
    """pid -> (command name, utime + stime seconds) of every process visible now."""
    out: dict[int, tuple[str, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue  # gone meanwhile
        close = data.rindex(b")")
        name = data[data.index(b"(") + 1 : close].decode(errors="replace")
        fields = data[close + 2 :].split()
        out[int(entry)] = (name, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return out


def top_cpu_users(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], *,
                  exclude: set[int], limit: int = 3) -> list[tuple[str, float]]:
    """The processes (alive at both ends) that used the most CPU seconds between two snapshots."""
    used = []
    for pid, (name, cpu) in after.items():
        if pid in exclude or pid not in before or before[pid][0] != name:
            continue
        delta = cpu - before[pid][1]
        if delta > 0:
            used.append((f"{name}[{pid}]", round(delta, 2)))
    used.sort(key=lambda x: -x[1])
    return used[:limit]


@dataclass
class CPUSample:
    user: float  # CPU seconds in user mode between start() and stop()
    system: float  # ... in the kernel (system calls: for a proxy, mostly socket I/O)

    @property
    def seconds(self) -> float:
        return self.user + self.system

    def per_unit_us(self, units: float, which: str = "seconds") -> float | None:
        return getattr(self, which) / units * 1e6 if units else None


class ProcCPU:
    """CPU seconds a process spends between ``start()`` and ``stop()``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._start: tuple[float, float] | None = None

    @property
    def pids(self) -> set[int]:
        """The processes measured."""
        return {self.pid}

    def start(self) -> None:
        self._start = proc_cpu_times(self.pid)

    def stop(self) -> CPUSample:
        assert self._start is not None, "stop() without start()"
        user, system = proc_cpu_times(self.pid)
        return CPUSample(user - self._start[0], system - self._start[1])


def child_pids(pid: int) -> list[int]:
    """The children of ``pid`` now (``/proc/<pid>/task/*/children``: children of any of its threads)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            continue  # the thread ended meanwhile
    return out


def proc_context_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of ``pid``'s threads so far (``/proc/<pid>/status``
    counts the main thread only; the task directory has every thread)."""
    vol = invol = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches:"):
                    vol += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    invol += int(line.split()[1])
    return vol, invol


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants now (parents before children)."""
    tree, i = [pid], 0
    while i < len(tree):
        tree += [c for c in child_pids(tree[i]) if c not in tree]
        i += 1
    return tree


class ProcTreeCPU:
    """CPU seconds a process and its descendants spend between ``start()`` and ``stop()``.

    The tree is read at both ends: a descendant born in between counts with all its CPU time (its
    whole life is in the window); one that ended in between is in ``gone`` and its time since
    ``start()`` is lost (it went to its parent's cutime, which is not counted). After ``stop()``,
    ``parts`` holds each process's own sample.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._start: dict[int, tuple[float, float]] | None = None
        self._switches_start: dict[int, tuple[int, int]] = {}
        self.parts: dict[int, CPUSample] = {}
        self.gone: set[int] = set()
        # (voluntary, involuntary) context switches of the processes alive at both ends: a process
        # that sleeps for want of work makes voluntary ones, one preempted involuntary ones
        self.switches: tuple[int, int] = (0, 0)

    @property
    def pids(self) -> set[int]:
        """The processes measured (at either end)."""
        return {self.pid, *(self._start or {}), *self.parts, *self.gone}

    @staticmethod
    def _read(pids: list[int], sample: Callable[[int], tuple[Any, Any]] = proc_cpu_times) -> dict[int, tuple]:
        """``sample(pid)`` of each of ``pids`` that still exists."""
        out = {}
        for p in pids:
            try:
                out[p] = sample(p)
            except (ProcessLookupError, FileNotFoundError):
                continue
        return out

    def start(self) -> None:
        tree = process_tree(self.pid)
        self._start = self._read(tree)
        self._switches_start = self._read(tree, proc_context_switches)
        self.parts, self.gone = {}, set()

    def stop(self) -> CPUSample:
        assert self._start is not None, "stop() without start()"
        tree = process_tree(self.pid)
        switches = self._read(tree, proc_context_switches)
        vol = sum(v - self._switches_start[p][0] for p, (v, _) in switches.items() if p in self._switches_start)
        invol = sum(n - self._switches_start[p][1] for p, (_, n) in switches.items() if p in self._switches_start)
        self.switches = (vol, invol)
        now = self._read(tree)
        for p, (user, system) in now.items():
            u0, s0 = self._start.get(p, (0.0, 0.0))
            self.parts[p] = CPUSample(user - u0, system - s0)
        self.gone = set(self._start) - set(now)
        return CPUSample(sum(x.user for x in self.parts.values()), sum(x.system for x in self.parts.values()))


class MachineCPU:
    """Share of the machine's CPU time that was idle / stolen by the hypervisor between start() and stop()."""

    @staticmethod
    def _read() -> list[int]:
        with open("/proc/stat") as f:
            first = f.readline().split()
        # cpu user nice system idle iowait irq softirq steal guest guest_nice
        return [int(x) for x in first[1:9]]

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> dict[str, float]:
        """idle_pct / steal_pct: shares of all CPUs; busy_s, irq_s: CPU seconds (all CPUs together)."""
        now = self._read()
        delta = [b - a for a, b in zip(self._start, now)]
        total = sum(delta) or 1
        return {
            "idle_pct": round(100.0 * (delta[3] + delta[4]) / total, 1),
            "steal_pct": round(100.0 * delta[7] / total, 1),
            "busy_s": (total - delta[3] - delta[4] - delta[7]) / CLK_TCK,
            # interrupt and softirq time (loopback TCP is mostly softirq), not charged to any process
            "irq_s": (delta[5] + delta[6]) / CLK_TCK,
        }


class ChildrenCPU:
    """CPU seconds of the children this process reaped between start() and stop() (``RUSAGE_CHILDREN``)."""

    @staticmethod
    def _read() -> float:
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return ru.ru_utime + ru.ru_stime

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> float:
        return self._read() - self._start


# ---------------------------------------------------------------------------
# reporting


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value: object, spec: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and spec:
        return format(value, spec)
    return str(value)


def format_table(headers: list[str], rows: list[list[str]], *, left: tuple[int, ...] = ()) -> str:
    """A plain-text table; columns whose index is in ``left`` are left-aligned, the rest right-aligned."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: list[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            out.append(cell.ljust(widths[i]) if i in left else cell.rjust(widths[i]))
        return "  ".join(out).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


# ---------------------------------------------------------------------------
# py-spy profiles

# py-spy frame labels look like "function (path/to/file.py:123)" (with --lines)
# or "function (path/to/file.py)"; idle frames may be "<idle>" or similar.
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


@dataclass
class FrameStats:
    total_samples: int
    own: Counter  # frame label -> samples where it is the innermost frame
    inclusive: Counter  # frame label -> samples where it is anywhere on the stack (counted once per stack)


def _short_label(frame: str, keep_lines: bool) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    path = m.group("file")
    idx = path.rfind("myrouter/")
    if idx >= 0:
        path = path[idx:]
    else:
        for marker in ("site-packages/", "lib/python3"):
            j = path.find(marker)
            if j >= 0:
                path = path[j + len(marker) :]
                break
    line = m.group("line")
    if keep_lines and line:
        return f"{m.group('func')} ({path}:{line})"
    return f"{m.group('func')} ({path})"


def read_collapsed(path: Path, *, keep_lines: bool = False) -> FrameStats:
    """Parse py-spy ``--format raw`` output (``frame;frame;... count`` per line)."""
    own: Counter = Counter()
    inclusive: Counter = Counter()
    total = 0
    for raw in Path(path).read_text(errors="replace").splitlines():
        stack, _, count_text = raw.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short_label(f, keep_lines) for f in stack.split(";") if f]
        # py-spy puts the thread name first ("process 123:..."/"thread 0x..") when asked; skip such labels
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for f in set(frames):
            inclusive[f] += count
    return FrameStats(total, own, inclusive)


def top_frames_report(stats: FrameStats, *, limit: int = 25, only: str | None = None, own_only: bool = False) -> str:
    """Rankings by own (self) samples and (unless ``own_only``) by inclusive samples.

    ``only`` keeps the labels that contain this substring; shares stay relative to all samples.
    """
    if not stats.total_samples:
        return "(no samples)"

    def rank(counter: Counter) -> list[list[str]]:
        rows = []
        for label, n in counter.most_common():
            if only is not None and only not in label:
                continue
            rows.append([f"{100.0 * n / stats.total_samples:5.1f}%", str(n), label])
            if len(rows) >= limit:
                break
        return rows

    parts = [
        f"{stats.total_samples} samples" + (f"; frames containing {only!r}" if only else ""),
        "",
        "by own time (innermost frame):",
        format_table(["share", "samples", "frame"], rank(stats.own), left=(2,)),
    ]
    if not own_only:
        parts += [
            "",
            "by inclusive time (anywhere on the stack):",
            format_table(["share", "samples", "frame"], rank(stats.inclusive), left=(2,)),
        ]
    return "\n".join(parts)
