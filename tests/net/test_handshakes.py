"""HandshakeSlots: the bound on connections still in the handshake, and who gives way."""

from myrouter.net.handshakes import HandshakeSlots


def test_slots_are_taken_and_released():
    slots = HandshakeSlots()
    assert slots.admit("a1", "10.0.0.1", limit=4, per_source=4) == []
    assert slots.admit("b1", "10.0.0.2", limit=4, per_source=4) == []
    assert slots.active == 2 and slots.of_source("10.0.0.1") == 1
    slots.release("a1", "10.0.0.1")
    slots.release("a1", "10.0.0.1")  # twice, or after an eviction: nothing more to do
    assert slots.active == 1 and slots.of_source("10.0.0.1") == 0


def test_nobody_gives_way_while_slots_are_free():
    slots = HandshakeSlots()
    for i in range(50):  # a burst from one application host, beyond its share: all admitted
        assert slots.admit(f"a{i}", "A", limit=100, per_source=3) == []
    assert slots.of_source("A") == 50 and slots.active == 50


def test_a_source_at_its_share_gives_up_its_own_oldest_handshake_when_slots_run_out():
    slots = HandshakeSlots()
    slots.admit("b0", "B", limit=4, per_source=2)
    for i in range(3):
        assert slots.admit(f"a{i}", "A", limit=4, per_source=2) == []
    assert slots.admit("a3", "A", limit=4, per_source=2) == ["a0"]
    assert slots.admit("b1", "B", limit=4, per_source=2) == ["a1"]  # B is under its share: A gives way
    assert slots.admit("b2", "B", limit=4, per_source=2) == ["b0"]  # B holds its share: its own oldest
    assert slots.of_source("A") == 2 and slots.of_source("B") == 2 and slots.active == 4
    slots.release("a0", "A")  # the evicted handshake ends later: its slot is gone already
    assert slots.active == 4


def test_when_all_slots_are_taken_the_most_represented_source_gives_way():
    slots = HandshakeSlots()
    for i in range(3):
        slots.admit(f"a{i}", "A", limit=4, per_source=10)
    slots.admit("b0", "B", limit=4, per_source=10)
    # a new source, all 4 slots taken: A (3 handshakes) loses its oldest, B keeps its one
    assert slots.admit("c0", "C", limit=4, per_source=10) == ["a0"]
    assert slots.admit("d0", "D", limit=4, per_source=10) == ["a1"]
    # now A, B, C, D hold one each: the oldest handshake among equals goes (A's a2)
    assert slots.admit("e0", "E", limit=4, per_source=10) == ["a2"]
    assert slots.active == 4 and {s: slots.of_source(s) for s in "ABCDE"} == {"A": 0, "B": 1, "C": 1, "D": 1,
                                                                              "E": 1}


def test_a_flood_from_one_source_never_evicts_another_source():
    slots = HandshakeSlots()
    slots.admit("client", "B", limit=8, per_source=4)
    evicted = []
    for i in range(1000):
        evicted += slots.admit(i, "A", limit=8, per_source=4)
    assert "client" not in evicted and slots.of_source("B") == 1 and slots.of_source("A") == 7
    assert len(evicted) == 1000 - 7


def test_limits_lowered_at_runtime_are_applied_by_the_next_admission():
    slots = HandshakeSlots()
    for i in range(6):
        slots.admit(i, "A", limit=10, per_source=10)
    assert slots.admit(6, "A", limit=3, per_source=10) == [0, 1, 2, 3]
    assert slots.active == 3
