"""The servers' character sets and collations, learned once from the first connection.

With them the proxy answers SET NAMES itself and names a handshake's collation id.
"""

from __future__ import annotations

from ..protocol.errors import MySQLError
from .connection import BackendConnection


class Charsets:
    def __init__(self) -> None:
        self.collations: dict[int, tuple[str, str]] = {}  # id -> (character set, collation)
        self.collation_charset: dict[str, str] = {}  # collation -> character set
        self.default_collation: dict[str, str] = {}  # character set -> its default collation
        self.unavailable = False  # reading them failed once: not tried again

    def wanted(self) -> bool:
        """Not learned yet, and not given up on."""
        return not self.collations and not self.unavailable

    async def load(self, be: BackendConnection) -> None:
        """Learn the servers' character sets and collations once (SET NAMES answered by the proxy)."""
        rows = await be.query_rows(
            "SELECT ID, CHARACTER_SET_NAME, COLLATION_NAME, IS_DEFAULT FROM information_schema.COLLATIONS")
        for row in rows:
            if len(row) != 4:
                raise MySQLError(1105, f"unexpected answer to the collations query from {be.server}: "
                                       f"{len(row)} columns instead of 4", "HY000")
            cid, cs, coll, default = row
            if cs is None or coll is None:
                continue
            if cid is not None:
                self.collations[int(cid)] = (cs, coll)
            self.collation_charset[coll.lower()] = cs
            if (default or "").lower() == "yes":
                self.default_collation[cs.lower()] = coll

    async def names(self, be: BackendConnection, collation_id: int) -> tuple[str, str]:
        """(character set, collation) of a handshake collation id."""
        names = self.collations.get(collation_id)
        if names is None:
            await self.load(be)
            names = self.collations.get(collation_id)
            if names is None:
                raise MySQLError(1273, f"Unknown collation id {collation_id} on {be.server}", "HY000")
        return names
