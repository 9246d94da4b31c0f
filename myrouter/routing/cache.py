"""Query cache: whole result sets, as the raw bytes the client received, with a TTL.

Keyed by (username, schema, statement text). Bounded in bytes: the least
recently used entries go first. Entries are stored as one ``bytes`` object so a
hit costs one dictionary lookup and one socket write.
"""

from __future__ import annotations

import time
from collections import OrderedDict


class QueryCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, tuple[float, bytes]] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.stores = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        expires, data = entry
        if time.monotonic() >= expires:
            self._remove(key)
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return data

    def put(self, key: tuple, data: bytes, ttl_ms: int) -> None:
        if len(data) > self.max_bytes // 4:
            return  # one entry may not take more than a quarter of the cache
        if key in self._entries:
            self._remove(key)
        self._entries[key] = (time.monotonic() + ttl_ms / 1000, data)
        self.bytes += len(data)
        self.stores += 1
        while self.bytes > self.max_bytes and self._entries:
            old = next(iter(self._entries))
            self._remove(old)
            self.evictions += 1

    def _remove(self, key: tuple) -> None:
        _, data = self._entries.pop(key)
        self.bytes -= len(data)

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0
