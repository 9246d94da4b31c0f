"""What the admin interface answers: a session's identity, a result set or an OK.

Below ``core`` (the statements) and ``server`` (the wire), which both use them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class AdminSession:
    """One admin client connection."""

    id: int
    username: str
    client_host: str
    read_only: bool  # a stats_credentials account
    schema: str = "main"
    connected_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class ResultSet:
    columns: list[str]
    rows: list[Sequence[Any]]


@dataclass(frozen=True)
class OkResult:
    affected_rows: int = 0
    last_insert_id: int = 0
    info: str = ""
    warnings: int = 0


Result = ResultSet | OkResult
