"""Client connections still in the handshake: bounded in total, shared fairly per source address.

A connection that has not logged in costs the proxy a socket and a task but proves
nothing, so handshakes have their own bound (``max_connections_in_handshake``), apart
from the logged-in sessions that ``max_connections`` counts. A new connection always
gets a slot. While slots are free, nobody gives way (a burst of legitimate connections
from one application host is not refused); once every slot is taken, room is made by
ending the oldest handshake of the new connection's own source when that source holds
its share already (``max_connections_in_handshake_per_host``), else of the source holding
the most. So a flood of half-open connections from one address pushes out only its own
connections, and a client from anywhere else still logs in.

Sans-I/O: the caller ends the handshakes ``admit`` returns.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable

__all__ = ["HandshakeSlots"]


class HandshakeSlots:
    def __init__(self) -> None:
        # source -> {token: admission number}, oldest first (dicts keep insertion order)
        self._by_source: dict[str, dict[Hashable, int]] = {}
        self._active = 0
        self._numbers = itertools.count()

    @property
    def active(self) -> int:
        """Handshakes holding a slot now."""
        return self._active

    def of_source(self, source: str) -> int:
        return len(self._by_source.get(source, ()))

    def admit(self, token: Hashable, source: str, *, limit: int, per_source: int) -> list[Hashable]:
        """Give ``token`` (from ``source``) a slot; return the tokens whose handshakes must end
        to make room for it, oldest first (they hold no slot any more)."""
        evicted = []
        while self._active >= max(1, limit):
            over_share = self.of_source(source) >= max(1, per_source)
            evicted.append(self._pop_oldest(source if over_share else self._most_represented()))
        self._by_source.setdefault(source, {})[token] = next(self._numbers)
        self._active += 1
        return evicted

    def release(self, token: Hashable, source: str) -> None:
        """``token``'s handshake ended (it may have been evicted already: then nothing to do)."""
        mine = self._by_source.get(source)
        if mine is not None and mine.pop(token, None) is not None:
            self._active -= 1
            if not mine:
                del self._by_source[source]

    def _pop_oldest(self, source: str) -> Hashable:
        mine = self._by_source[source]
        token = next(iter(mine))
        del mine[token]
        self._active -= 1
        if not mine:
            del self._by_source[source]
        return token

    def _most_represented(self) -> str:
        """The source holding the most slots; of equals, the one with the oldest handshake."""
        return max(self._by_source, key=lambda s: (len(self._by_source[s]), -next(iter(self._by_source[s].values()))))
