"""Pure parts of prepared statements under multiplexing: EXECUTE rewriting and cached PREPARE replies."""

from __future__ import annotations

import pytest

from myrouter.backend.connection import split_payloads
from myrouter.backend.stmts import ClientStmt, StmtMeta, StmtRegistry, execute_for_backend
from myrouter.protocol.errors import MalformedPacket
from myrouter.protocol.messages import PrepareOK
from myrouter.protocol.packets import frame


def stmt(num_params: int) -> ClientStmt:
    meta = StmtMeta(("test", b"SELECT ?", True), b"SELECT ?", num_params, 1, 0, [b"param-def", b"col-def"])
    return ClientStmt(7, meta, classification=None, decision=None)


def execute(stmt_id: int, params: int, *, bound: bool, types: bytes = b"", values: bytes = b"") -> bytes:
    head = b"\x17" + stmt_id.to_bytes(4, "little") + b"\x00" + (1).to_bytes(4, "little")
    if not params:
        return head
    return head + bytes((params + 7) // 8) + (b"\x01" + types if bound else b"\x00") + values


def test_no_parameters_only_the_id_changes():
    out = execute_for_backend(execute(7, 0, bound=False), 99, stmt(0))
    assert out == execute(99, 0, bound=False)


def test_bound_types_are_recorded_and_passed_on():
    st = stmt(2)
    types = b"\x08\x00\xfd\x00"
    pkt = execute(7, 2, bound=True, types=types, values=b"\x01" * 8 + b"\x03abc")
    out = execute_for_backend(pkt, 42, st)
    assert out == execute(42, 2, bound=True, types=types, values=b"\x01" * 8 + b"\x03abc")
    assert st.types == types


def test_types_are_put_back_when_the_client_relies_on_earlier_ones():
    st = stmt(2)
    st.types = b"\x08\x00\xfd\x00"
    values = b"\x02" * 8 + b"\x01z"
    out = execute_for_backend(execute(7, 2, bound=False, values=values), 5, st)
    # another backend statement never saw the types: they are sent with the bound flag set
    assert out == execute(5, 2, bound=True, types=st.types, values=values)


def test_nine_parameters_take_two_bitmap_bytes():
    st = stmt(9)
    st.types = bytes(18)
    out = execute_for_backend(execute(7, 9, bound=False, values=b"v"), 3, st)
    assert out == execute(3, 9, bound=True, types=bytes(18), values=b"v")


@pytest.mark.parametrize("cut", [10, 11, 12, 14])
def test_truncated_execute_is_malformed(cut):
    pkt = execute(7, 2, bound=True, types=b"\x08\x00\xfd\x00")
    with pytest.raises(MalformedPacket):
        execute_for_backend(pkt[:cut], 1, stmt(2))


def test_cached_prepare_reply_carries_the_clients_id():
    st = stmt(1)
    reply = split_payloads(st.meta.client_response(12))
    assert PrepareOK.parse(reply[0]) == PrepareOK(12, 1, 1, 0)
    assert reply[1:] == [b"param-def", b"col-def"]
    # sequence ids run from 1
    raw = st.meta.client_response(12)
    assert raw[3] == 1 and raw.endswith(frame(b"col-def", 3))


def test_registry_is_bounded_lru():
    reg = StmtRegistry(2)
    metas = [StmtMeta((None, bytes([i]), False), bytes([i]), 0, 0, 0, []) for i in range(3)]
    reg.put(metas[0])
    reg.put(metas[1])
    assert reg.get(metas[0].key) is metas[0]  # now the most recent
    reg.put(metas[2])
    assert reg.peek(metas[1].key) is None and reg.peek(metas[0].key) is metas[0]
    assert (reg.hits, reg.misses) == (1, 0)
