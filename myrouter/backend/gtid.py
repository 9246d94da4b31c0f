"""MariaDB GTIDs (``domain-server-seq``), for causal reads."""

from __future__ import annotations


def parse_gtids(text: str) -> dict[int, tuple[int, int]]:
    """``"0-1-13,1-2-5"`` -> {0: (1, 13), 1: (2, 5)}; malformed parts are ignored."""
    out = {}
    for part in text.split(","):
        bits = part.strip().split("-")
        if len(bits) == 3 and all(b.isdigit() for b in bits):
            out[int(bits[0])] = (int(bits[1]), int(bits[2]))
    return out
