#!/usr/bin/env python3
"""Run every benchmark with its defaults, one after the other (``make bench``).

* ``bench_sysbench.py``: sysbench through the proxy versus straight to MariaDB;
* ``bench_bare_relay.py``: the same workload through a bare Trio byte relay, the yardstick;
* ``bench_connections.py``: 10,000 client connections held on a few backend connections
  (memory per connection, backend connections, connect rate versus direct);
* ``bench_classify.py`` (if present): the statement digest/classification path;
* ``bench_hotpath.py`` (if present): ns per non-I/O step of a point select.

Each runs as its own subprocess with this interpreter; its output is shown as it
comes. ``--json-dir DIR`` asks bench_sysbench.py to write ``DIR/sysbench.json``.
Exit status: 0 if every benchmark exited 0, else the first non-zero status.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(name: str, args: list[str]) -> int:
    script = HERE / name
    cmd = [sys.executable, str(script), *args]
    print(f"\n===== {name} =====", flush=True)
    print("$ " + " ".join(cmd), flush=True)
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=HERE.parent)

    def forward(signum: int, frame: object) -> None:
        # SIGTERM to us: pass it on to the benchmark, which stops what it started and exits
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    interrupted = False
    try:
        while True:
            try:
                code = proc.wait()
                break
            except KeyboardInterrupt:
                # a terminal's Ctrl-C reached the benchmark too: let it clean up (its MariaDB
                # servers and proxy) instead of killing it, and stop after it
                print(f"===== {name}: interrupted; waiting for it to clean up =====", flush=True)
                interrupted = True
                continue
    finally:
        signal.signal(signal.SIGTERM, previous)
    if interrupted:
        raise KeyboardInterrupt
    verdict = "ok" if code == 0 else f"FAILED (exit {code})"
    print(f"===== {name}: {verdict} in {time.monotonic() - started:.0f} s =====", flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json-dir", type=Path, help="write machine-readable results here (sysbench.json)")
    a = p.parse_args(argv)

    results: list[tuple[str, int]] = []
    sysbench_args: list[str] = []
    if a.json_dir is not None:
        sysbench_args += ["--json", str(a.json_dir / "sysbench.json")]
    for name, args in (("bench_sysbench.py", sysbench_args), ("bench_bare_relay.py", []), ("bench_connections.py", []), ("bench_classify.py", []),
                       ("bench_hotpath.py", [])):
        if not (HERE / name).exists():
            print(f"\n({name} not present: skipped)", flush=True)
            continue
        results.append((name, run(name, args)))
        if results[-1][1] in (130, -signal.SIGINT, -signal.SIGTERM):
            print("\ninterrupted: not running the other benchmarks", flush=True)
            break

    print("\n===== summary =====")
    for name, code in results:
        print(f"  {name:<20} {'ok' if code == 0 else f'FAILED (exit {code})'}")
    return next((code for _, code in results if code != 0), 0)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
