"""``causal_reads = global`` across workers: the newest GTID each worker's sessions wrote, in shared memory.

A read that waits for "every write through the proxy" must see the writes committed through every
worker, including one whose OK reached its client a microsecond ago: asking the supervisor would race
with the writer's own message. So each worker publishes what its sessions wrote in its own region of
a memory file the supervisor creates (``memfd``; it outlives a worker's restart, so a restarted
worker's predecessor's writes stay known), synchronously, before it forwards the OK; readers merge
every region. One writer per region (the worker's single thread), many readers: a sequence counter
around each update (odd while writing) makes a reader that overlaps a write read again.

Region layout (little-endian): ``seq u64, used u32, pad u32``, then ``SLOTS`` slots of
``domain u32, server_id u32, seq u64``.
"""

from __future__ import annotations

import logging
import mmap
import os
import struct

from ..backend.gtid import parse_gtids
from ..runtime.role import ProcessRole

log = logging.getLogger("myrouter")

SLOTS = 128  # replication domains a worker can publish (MariaDB setups use a handful)
HEADER = struct.Struct("<QII")
SLOT = struct.Struct("<IIQ")
REGION = 4096
READ_ATTEMPTS = 1000  # a region being written is read again, a bounded number of times
assert HEADER.size + SLOTS * SLOT.size <= REGION


def create_board(threads: int) -> int:
    """The supervisor's memory file for ``threads`` workers; its descriptor is passed to each worker."""
    fd = os.memfd_create("myrouter-gtids", 0)
    os.ftruncate(fd, threads * REGION)
    return fd


class GtidBoard:
    def __init__(self, mem: mmap.mmap, role: ProcessRole) -> None:
        self.mem = mem
        self.threads = role.threads
        self.own = role.index * REGION
        self._slots: dict[int, int] = {}  # domain -> slot index in the own region
        self._full_logged = False
        seq, used, _ = HEADER.unpack_from(mem, self.own)
        if seq % 2:  # the predecessor died in the middle of an update: the values are complete or old
            HEADER.pack_into(mem, self.own, seq + 1, used, 0)
        for i in range(used):  # a restarted worker goes on from its predecessor's values
            domain, _, _ = SLOT.unpack_from(mem, self.own + HEADER.size + i * SLOT.size)
            self._slots[domain] = i

    @classmethod
    def attach(cls, fd: int, role: ProcessRole) -> GtidBoard:
        return cls(mmap.mmap(fd, role.threads * REGION), role)

    def note(self, gtid: str) -> None:
        """This worker's session wrote ``gtid`` (MariaDB ``domain-server-seq``, maybe several)."""
        mem, base = self.mem, self.own
        seq, used, _ = HEADER.unpack_from(mem, base)
        changes = []
        for domain, (server_id, n) in parse_gtids(gtid).items():
            slot = self._slots.get(domain)
            if slot is None:
                if used >= SLOTS:
                    if not self._full_logged:
                        self._full_logged = True
                        log.error("causal_reads=global: more than %d replication domains; writes in domain %d "
                                  "are not waited for by reads on other workers", SLOTS, domain)
                    continue
                slot = self._slots[domain] = used
                used += 1
            else:
                _, _, old = SLOT.unpack_from(mem, base + HEADER.size + slot * SLOT.size)
                if n <= old:
                    continue
            changes.append((slot, domain, server_id, n))
        if not changes:
            return
        HEADER.pack_into(mem, base, seq + 1, used, 0)  # odd: being written
        for slot, domain, server_id, n in changes:
            SLOT.pack_into(mem, base + HEADER.size + slot * SLOT.size, domain, server_id, n)
        HEADER.pack_into(mem, base, seq + 2, used, 0)

    def written(self) -> dict[int, tuple[int, int]]:
        """Every worker's newest GTID per domain: domain -> (server_id, seq)."""
        mem = self.mem
        out: dict[int, tuple[int, int]] = {}
        for w in range(self.threads):
            base = w * REGION
            for _attempt in range(READ_ATTEMPTS):
                before, used, _ = HEADER.unpack_from(mem, base)
                slots = [SLOT.unpack_from(mem, base + HEADER.size + i * SLOT.size) for i in range(used)]
                if before % 2 == 0 and HEADER.unpack_from(mem, base)[0] == before:
                    break  # no write overlapped this read
            # else: a writer that died in the middle of an update (each slot is then its old or new value)
            for domain, server_id, n in slots:
                old = out.get(domain)
                if old is None or n > old[1]:
                    out[domain] = (server_id, n)
        return out

    def global_gtid(self) -> str:
        return ",".join(f"{d}-{s}-{n}" for d, (s, n) in sorted(self.written().items()))
