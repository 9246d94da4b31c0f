"""Instructions per call of each compiled kernel's per-statement step, in its compiled and its Python
form (README, "The compiled kernels"), counted by callgrind in a process that does nothing else:

    .venv/bin/python benchmarks/bench_kernels.py [--calls 50000] [--kernel decoder ...]

Repeatable to a few instructions (no peer, no timer, no scheduling in the measured loop), unlike a
whole proxy's count per statement (bench_inproc.py --callgrind --host-loop), whose background
work scales with valgrind's wall time. Each figure is (Ir with 2N calls - Ir with N) / N, the
harness's own loop included (the same in both forms): compare the two forms, not the absolute
figures. The steps, as a point select runs them:

* decoder: ``PacketDecoder.receive`` of a whole COM_QUERY request, and five reads of its
  ``buffered`` from Python (as the data plane does per statement: an attribute of a compiled class is
  a descriptor call, where a slot of a Python class is a specialised load);
* stats: ``DigestStats.record`` and ``CommandCounters.record`` of one statement;
* loop: one pass of the host loop: a poll that finds one readable descriptor, and its callback
  (a byte read, a byte written: socketpair ping-pong).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ("decoder", "stats", "loop")


def step(kernel: str, calls: int) -> None:
    """Run ``calls`` steps of ``kernel`` (in this process: the form is the one the environment chose)."""
    if kernel == "decoder":
        from myrouter.protocol.packets import PacketDecoder, frame

        request = frame(b"\x03SELECT c FROM sbtest1 WHERE id=4242", 0)
        decoder = PacketDecoder(1 << 24)
        for _ in range(calls):
            decoder.receive(request)
            decoder.buffered, decoder.buffered, decoder.buffered, decoder.buffered, decoder.buffered  # noqa: B018
    elif kernel == "stats":
        from myrouter.stats.digests import CommandCounters, DigestStats

        digests, commands = DigestStats(), CommandCounters()
        for _ in range(calls):
            digests.record(0, "sbtest", "app", "127.0.0.1", 123456789, "SELECT ?", 250, 0, 1)
            commands.record("SELECT", 250)
    else:
        _loop_passes(calls)


def _loop_passes(calls: int) -> None:
    import socket

    import trio

    from myrouter.engine import HostLoop

    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    left = [calls]

    async def main() -> None:
        token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            def echo(sock: socket.socket):
                def readable() -> None:
                    sock.recv(1)
                    left[0] -= 1
                    if left[0] <= 0:
                        loop.remove(a.fileno())
                        loop.remove(b.fileno())
                        token.run_sync_soon(scope.cancel)
                    else:
                        sock.send(b"x")  # its peer becomes readable: the next pass
                return readable

            loop.add_reader(a.fileno(), echo(a))
            loop.add_reader(b.fileno(), echo(b))
            b.send(b"x")
            await trio.sleep_forever()

    with HostLoop() as loop:
        loop.run(main)
    a.close()
    b.close()


def instructions(kernel: str, form: str, calls: int) -> int:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONHASHSEED="0")
    env.pop("MYROUTER_PURE_PYTHON", None)
    if form == "python":
        env["MYROUTER_PURE_PYTHON"] = "1"
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                          __file__, "--child", kernel, str(calls)], env=env, cwd=ROOT, capture_output=True, text=True)
    m = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode != 0 or m is None:
        raise RuntimeError(f"callgrind run failed:\n{out.stderr[-4000:]}")
    return int(m.group(1))


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        step(sys.argv[2], int(sys.argv[3]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=50_000, help="N (default 50000)")
    p.add_argument("--kernel", action="append", choices=KERNELS, help="default: all")
    a = p.parse_args()
    for kernel in a.kernel or KERNELS:
        per = {}
        for form in ("compiled", "python"):
            per[form] = (instructions(kernel, form, 2 * a.calls) - instructions(kernel, form, a.calls)) / a.calls
        print(f"{kernel:>8}: compiled {per['compiled']:7.0f}, Python {per['python']:7.0f} instructions per step "
              f"({per['compiled'] - per['python']:+.0f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
