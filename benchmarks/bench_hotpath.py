"""Micro-benchmarks of the per-statement work that is not I/O, for one sysbench point select.

    .venv/bin/python benchmarks/bench_hotpath.py            # ns per operation, best of --repeat
    .venv/bin/python benchmarks/bench_hotpath.py --trio     # + the event-loop cost of one wait/wake

Each line times one step of what the proxy does for ``SELECT c FROM sbtest1 WHERE id=N`` in the
text protocol, with a response captured from MariaDB 10.11 (5 packets: column count, column
definition, EOF, row, EOF). The figures are CPU time of this process in a tight loop (caches
warm), so they are lower bounds of the same steps in the proxy; they are stable enough on a
noisy machine to compare two versions of a function (run both on the same machine, minutes
apart). The sum of the steps is compared with the proxy's measured CPU per query by
``bench_sysbench.py``: the rest is the event loop, the system calls and the session code.

``--trio`` adds: a ping-pong between two Trio tasks over a socketpair, one byte each way,
as the proxy does it (wait_readable, then recv; send), per round trip; and the same with
plain blocking sockets and two threads' worth of syscalls measured in one thread, to split
the cost between the kernel and the event loop.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import timeit
from pathlib import Path

# this checkout's myrouter, not the one the shared venv was installed from (an editable install elsewhere)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from myrouter.protocol.constants import Capability  # noqa: E402
from myrouter.protocol.packets import PacketDecoder, frame  # noqa: E402
from myrouter.protocol.response import ResponseKind, ResponseTracker  # noqa: E402
from myrouter.routing.classifier import Classifier  # noqa: E402
from myrouter.routing.digest import digest  # noqa: E402
from myrouter.routing.rules import RuleContext, load_rules  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SQL = "SELECT c FROM sbtest1 WHERE id=4711"
# MariaDB 10.11's reply to SQL (no DEPRECATE_EOF: MariaDB does not offer it)
RESPONSE = (
    b"\x01\x00\x00\x01\x01,\x00\x00\x02\x03def\x06sbtest\x07sbtest1\x07sbtest1\x01c\x01c\x0c-\x00\xe0\x01\x00"
    b"\x00\xfe\x01\x00\x00\x00\x00\x05\x00\x00\x03\xfe\x00\x00\x02\x00x\x00\x00\x04w39821124155-24121370208-"
    b"05479842745-05121670529-33495891104-01011506276-48894240898-01066136230-30430839541-02701775010\x05\x00"
    b"\x00\x05\xfe\x00\x00\x02\x00"
)
# what MariaDB 10.11 grants the proxy's backend connections (a Capability IntFlag, as the backend code keeps it)
BACKEND_CAPS = Capability(0xBFB7DF)


def bench(label: str, stmt, number: int, repeat: int, results: list) -> float:
    t = min(timeit.repeat(stmt, number=number, repeat=repeat)) / number * 1e9
    results.append((label, t))
    print(f"  {label:<58} {t:8.0f} ns", flush=True)
    return t


def routing_steps(number: int, repeat: int, results: list) -> None:
    sql = SQL
    payload = b"\x03" + sql.encode()
    classifier = Classifier()
    rules = load_rules(ROOT / "rules", {0, 1})
    dtext, dhash = digest(sql)
    cls = classifier.classify(sql, dhash)

    def ctx():
        return RuleContext("app", "sbtest", "127.0.0.1", "127.0.0.1", 6033, 0, dhash, dtext, sql, cls)

    c = ctx()
    rules.evaluate(c)
    print("per statement (routing):")
    bench("decode payload (utf-8, surrogateescape)", lambda: payload[1:].decode("utf-8", "surrogateescape"),
          number, repeat, results)
    bench("digest(sql)", lambda: digest(sql), number, repeat, results)
    bench("classifier.classify(sql, hash) (hit)", lambda: classifier.classify(sql, dhash), number, repeat, results)
    bench("RuleContext(...)", ctx, number, repeat, results)
    bench("rules.evaluate(ctx) (shipped rules)", lambda: rules.evaluate(c), number, repeat, results)


def protocol_steps(number: int, repeat: int, results: list) -> None:
    payload = b"\x03" + SQL.encode()
    request = frame(payload, 0)
    kind = ResponseKind.RESULT
    caps = BACKEND_CAPS

    def decode():
        d = PacketDecoder(1 << 24)
        d.feed(request)
        return d.next_packet()

    dec = PacketDecoder(1 << 24)

    def decode_reuse():
        dec.feed(request)
        return dec.next_packet()

    def track():
        t = ResponseTracker(kind, caps)
        t.feed(RESPONSE)
        return t.done

    print("per statement (protocol):")
    bench("PacketDecoder.receive (client request, as the stream reads it)", lambda: dec.receive(request), number,
          repeat, results)
    bench("  (feed + next_packet instead)", decode_reuse, number, repeat, results)
    bench("  (feed + next_packet, new PacketDecoder)", decode, number, repeat, results)
    bench("frame(payload, 0) (request to the backend)", lambda: frame(payload, 0), number, repeat, results)
    bench("ResponseTracker(...) + feed(response) + done", track, number, repeat, results)


def trio_steps(rounds: int, results: list) -> None:
    import socket

    import trio

    print("event loop (per round trip: one wait + recv + send on each side):")
    a, b = socket.socketpair()
    for s in (a, b):
        s.setblocking(False)

    async def side(sock, first: bool, n: int):
        if first:
            sock.send(b"x")
        for _ in range(n):
            await trio.lowlevel.wait_readable(sock)
            sock.recv(65536)
            sock.send(b"x")

    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(side, a, True, rounds)
            nursery.start_soon(side, b, False, rounds)

    t0 = time.process_time()
    trio.run(main)
    per = (time.process_time() - t0) / rounds * 1e9
    results.append(("trio ping-pong round trip (2 waits, 2 recv, 2 send)", per))
    print(f"  {'trio ping-pong round trip (2 waits, 2 recv, 2 send)':<58} {per:8.0f} ns", flush=True)
    t0 = time.process_time()
    for _ in range(rounds):
        a.send(b"x")
        b.recv(65536)
        b.send(b"x")
        a.recv(65536)
    per2 = (time.process_time() - t0) / rounds * 1e9
    results.append(("same syscalls without an event loop (2 recv, 2 send)", per2))
    print(f"  {'same syscalls without an event loop (2 recv, 2 send)':<58} {per2:8.0f} ns", flush=True)
    print(f"  {'=> event loop cost per wait/wake':<58} {(per - per2) / 2:8.0f} ns", flush=True)
    a.close()
    b.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--number", type=int, default=20000, help="calls per timing (default 20000)")
    p.add_argument("--repeat", type=int, default=7, help="timings; the best is shown (default 7)")
    p.add_argument("--trio", action="store_true", help="also time the event loop's wait/wake")
    p.add_argument("--trio-rounds", type=int, default=100000)
    a = p.parse_args(argv)
    print(f"python {platform.python_version()}; best of {a.repeat} x {a.number} calls; ns per call")
    results: list = []
    routing_steps(a.number, a.repeat, results)
    protocol_steps(a.number, a.repeat, results)
    total = sum(t for label, t in results if not label.startswith("  "))
    print(f"  {'sum of the steps above (one statement)':<58} {total:8.0f} ns")
    if a.trio:
        trio_steps(a.trio_rounds, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
