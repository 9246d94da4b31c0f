"""Server-side prepared statements under multiplexing.

A client's statement ids belong to its session and never change, while the
statement is prepared lazily on whichever backend connection runs it:

* ``StmtRegistry`` (one per proxy) keeps, per statement text (and schema and
  EOF flavour), the metadata of one backend preparation: parameter and column
  definitions. A second session preparing the same text is answered from it
  without a backend round trip.
* Each backend connection maps statement keys to its own statement ids in an
  LRU (``BackendConnection.stmts``) capped at ``max_stmts_per_connection``;
  the least recently used is closed on the server (COM_STMT_CLOSE) to make
  room, so ``max_prepared_stmt_count`` is never hit by the proxy.
* COM_STMT_EXECUTE packets get the backend id in place of the client's, and
  the parameter types when the client relies on types it sent before
  (new_params_bound_flag = 0): the backend statement may never have seen them.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from ..protocol.errors import MalformedPacket
from ..protocol.messages import PrepareOK
from ..protocol.packets import frame

StmtKey = tuple  # (schema, statement bytes, deprecate_eof)


@dataclass(slots=True)
class StmtMeta:
    """One statement text's preparation, as a backend answered it."""

    key: StmtKey
    sql: bytes
    num_params: int
    num_columns: int
    warnings: int
    packets: list[bytes]  # payloads after the PREPARE_OK packet: parameter/column definitions (and EOFs)

    def client_response(self, stmt_id: int) -> bytes:
        """The framed COM_STMT_PREPARE response for a client, with its own statement id."""
        head = PrepareOK(stmt_id, self.num_columns, self.num_params, self.warnings).encode()
        parts = [frame(head, 1)]
        seq = 2
        for p in self.packets:
            parts.append(frame(p, seq & 0xFF))
            seq += 1
        return b"".join(parts)


class StmtRegistry:
    """Statement metadata shared by all sessions, bounded (LRU, ``max_stmts_cache``)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._by_key: collections.OrderedDict[StmtKey, StmtMeta] = collections.OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, key: StmtKey) -> StmtMeta | None:
        meta = self._by_key.get(key)
        if meta is None:
            self.misses += 1
            return None
        self._by_key.move_to_end(key)
        self.hits += 1
        return meta

    def peek(self, key: StmtKey) -> StmtMeta | None:
        """Like ``get`` without counting a hit or a miss."""
        return self._by_key.get(key)

    def put(self, meta: StmtMeta) -> None:
        self._by_key[meta.key] = meta
        self._by_key.move_to_end(meta.key)
        while len(self._by_key) > self.max_entries:
            self._by_key.popitem(last=False)


@dataclass(slots=True)
class ClientStmt:
    """A statement as one client sees it."""

    id: int
    meta: StmtMeta
    classification: object  # routing.classifier.Classification
    decision: object  # routing.rules.Decision at prepare time
    digest: tuple[str, int] = ("", 0)  # digest text and hash, for the digest statistics
    types: bytes | None = None  # parameter types the client bound last
    long_data: list[bytes] = field(default_factory=list)  # COM_STMT_SEND_LONG_DATA payloads, without the id
    cursor: object | None = None  # the BackendConnection holding this statement's open cursor
    cursor_hg: int | None = None


def execute_for_backend(payload: bytes, backend_id: int, stmt: ClientStmt) -> bytes:
    """A client's COM_STMT_EXECUTE payload rewritten for a backend statement id.

    Records the parameter types when the client sends them; puts the recorded
    types in when the client leaves them out.
    """
    n = stmt.meta.num_params
    head = payload[:1] + backend_id.to_bytes(4, "little")
    if n == 0:
        return head + payload[5:]
    pos = 10 + (n + 7) // 8  # command, id, flags, iteration count, NULL bitmap
    if len(payload) <= pos:
        raise MalformedPacket("COM_STMT_EXECUTE shorter than its NULL bitmap and bound flag")
    if payload[pos] == 1:
        end = pos + 1 + 2 * n
        if len(payload) < end:
            raise MalformedPacket("COM_STMT_EXECUTE shorter than its parameter types")
        stmt.types = payload[pos + 1:end]
        return head + payload[5:]
    if stmt.types is None:
        return head + payload[5:]  # the server answers that the parameters were never bound
    return head + payload[5:pos] + b"\x01" + stmt.types + payload[pos + 1:]
