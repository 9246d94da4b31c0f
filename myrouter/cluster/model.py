"""Sans-I/O part of ``[cluster]``: key layout, module values, revision bookkeeping.

Keys (``<name>`` is ``[cluster] name``, so several clusters share one etcd)::

    /myrouter/<name>/config/<module>     one JSON value per module (below)
    /myrouter/<name>/nodes/<instance>    each instance's heartbeat, under a lease

Modules are what ``LOAD ... TO RUNTIME`` moves: ``mysql_servers`` (with
``mysql_replication_hostgroups``), ``mysql_users``, ``mysql_query_rules`` and
``mysql_variables`` (``mysql-*`` global variables except the per-instance ones in
:data:`LOCAL_MYSQL_VARIABLES`). ``ADMIN VARIABLES`` and ``SAVE ... TO DISK`` stay per
instance. A module value::

    {"format": 1, "module": "mysql_query_rules", "instance": "host:6033", "written_at": 1.7e9,
     "tables": {"mysql_query_rules": {"columns": [...], "rows": [[...], ...]}}}

The columns are the admin tables' (:data:`myrouter.admin.schema.COLUMNS`); a value
with other columns, other tables, a row of the wrong width or a non-scalar cell is
refused by :func:`decode_module` (then the admin's own validation, the same as a
LOAD's, refuses what is well-formed but invalid). Passwords of ``mysql_users`` are
written as ``mysql_native_password`` hashes (:func:`hash_user_passwords`) and a value
holding a clear-text password is refused.

The revision of a module is its key's ``mod_revision``: a LOAD compares it with the
one the instance last saw (compare-and-swap), and every instance reports the one it
runs (:class:`Book`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from myrouter.admin.schema import COLUMNS
from myrouter.config import is_native_hash
from myrouter.protocol.auth import native_hash_text

__all__ = [
    "FORMAT",
    "LOCAL_MYSQL_VARIABLES",
    "MODULES",
    "MODULE_OF_COMMAND",
    "Book",
    "ClusterValueError",
    "KeyLayout",
    "ModuleState",
    "NodeInfo",
    "decode_module",
    "decode_node",
    "encode_module",
    "encode_node",
    "group_events",
    "hash_user_passwords",
    "module_writer",
    "prefix_end",
]

FORMAT = 1

#: module -> the admin tables its value holds
MODULES: dict[str, tuple[str, ...]] = {
    "mysql_servers": ("mysql_servers", "mysql_replication_hostgroups"),
    "mysql_users": ("mysql_users",),
    "mysql_query_rules": ("mysql_query_rules",),
    "mysql_variables": ("global_variables",),
}

#: LOAD/SAVE module names (myrouter.admin.commands) -> cluster module
MODULE_OF_COMMAND = {
    "MYSQL SERVERS": "mysql_servers",
    "MYSQL USERS": "mysql_users",
    "MYSQL QUERY RULES": "mysql_query_rules",
    "MYSQL VARIABLES": "mysql_variables",
}

#: mysql-* variables each instance keeps for itself (its own listening address)
LOCAL_MYSQL_VARIABLES = frozenset({"mysql-interfaces"})


class ClusterValueError(ValueError):
    """A value in etcd is malformed; the message says what and where."""


def prefix_end(prefix: bytes) -> bytes:
    """etcd's range_end for every key starting with ``prefix``."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


@dataclass(frozen=True)
class KeyLayout:
    name: str  # [cluster] name

    @property
    def root(self) -> bytes:
        return f"/myrouter/{self.name}/".encode()

    @property
    def config_prefix(self) -> bytes:
        return self.root + b"config/"

    @property
    def nodes_prefix(self) -> bytes:
        return self.root + b"nodes/"

    def config_key(self, module: str) -> bytes:
        return self.config_prefix + module.encode()

    def node_key(self, instance: str) -> bytes:
        return self.nodes_prefix + instance.encode()

    def module_of(self, key: bytes) -> str | None:
        """The module a config key belongs to; None for any other key."""
        if not key.startswith(self.config_prefix):
            return None
        module = key[len(self.config_prefix):].decode("utf-8", "replace")
        return module if module in MODULES else None


# ---------------------------------------------------------------------------- values


def hash_user_passwords(rows: Iterable[Sequence[Any]]) -> list[tuple]:
    """``mysql_users`` rows with clear-text passwords replaced by their mysql_native_password hash."""
    index = COLUMNS["mysql_users"].index("password")
    out = []
    for row in rows:
        row = list(row)
        password = row[index]
        if password and not is_native_hash(password):
            row[index] = native_hash_text(password.encode())
        out.append(tuple(row))
    return out


def shared_variable_rows(rows: Iterable[Sequence[Any]]) -> list[tuple]:
    """The ``global_variables`` rows the cluster shares: mysql-* except the per-instance ones."""
    return [tuple(r) for r in rows if str(r[0]).startswith("mysql-") and r[0] not in LOCAL_MYSQL_VARIABLES]


def encode_module(module: str, tables: Mapping[str, Sequence[Sequence[Any]]], instance: str,
                  now: float | None = None) -> bytes:
    """The JSON value of ``module`` (its tables' rows), written by ``instance``."""
    if set(tables) != set(MODULES[module]):
        raise ValueError(f"module {module} holds {MODULES[module]}, got {sorted(tables)}")
    body = {
        "format": FORMAT,
        "module": module,
        "instance": instance,
        "written_at": time.time() if now is None else now,
        "tables": {t: {"columns": list(COLUMNS[t]), "rows": [list(r) for r in tables[t]]} for t in MODULES[module]},
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def _is_cell(value: Any) -> bool:
    return value is None or (isinstance(value, (str, int, float)) and not isinstance(value, bool))


def decode_module(module: str, data: bytes) -> tuple[dict[str, list[tuple]], str]:
    """(tables, writing instance) of a module value; ClusterValueError if malformed."""
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ClusterValueError(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ClusterValueError("not a JSON object")
    if body.get("format") != FORMAT:
        raise ClusterValueError(f"format {body.get('format')!r}: this myrouter reads format {FORMAT}")
    if body.get("module") != module:
        raise ClusterValueError(f"value of module {body.get('module')!r} under the key of {module}")
    instance = body.get("instance")
    if not isinstance(instance, str):
        raise ClusterValueError("'instance' is missing or not a string")
    tables = body.get("tables")
    if not isinstance(tables, dict) or set(tables) != set(MODULES[module]):
        raise ClusterValueError(f"'tables' must hold exactly {', '.join(MODULES[module])}")
    out: dict[str, list[tuple]] = {}
    for name in MODULES[module]:
        table = tables[name]
        if not isinstance(table, dict) or not isinstance(table.get("rows"), list):
            raise ClusterValueError(f"{name}: expected {{\"columns\": [...], \"rows\": [...]}}")
        columns = list(COLUMNS[name])
        if table.get("columns") != columns:
            raise ClusterValueError(f"{name}: columns {table.get('columns')!r} are not this version's {columns!r}")
        rows = []
        for i, row in enumerate(table["rows"]):
            if not isinstance(row, list) or len(row) != len(columns):
                raise ClusterValueError(f"{name} row {i + 1}: expected a list of {len(columns)} values")
            bad = next((c for c, v in zip(columns, row) if not _is_cell(v)), None)
            if bad is not None:
                raise ClusterValueError(f"{name} row {i + 1}: {bad}: expected a string, a number or null")
            rows.append(tuple(row))
        out[name] = rows
    _check_module_rows(module, out)
    return out, instance


def _check_module_rows(module: str, tables: dict[str, list[tuple]]) -> None:
    if module == "mysql_users":
        index = COLUMNS["mysql_users"].index("password")
        for row in tables["mysql_users"]:
            password = row[index]
            if password and not (isinstance(password, str) and is_native_hash(password)):
                raise ClusterValueError(f"mysql_users row (username={row[0]!r}): the password is not a "
                                        "mysql_native_password hash: clear-text passwords are refused in etcd")
    if module == "mysql_variables":
        for row in tables["global_variables"]:
            name = row[0]
            if not isinstance(name, str) or not name.startswith("mysql-"):
                raise ClusterValueError(f"global_variables: {name!r} is not a mysql-* variable")
            if name in LOCAL_MYSQL_VARIABLES:
                raise ClusterValueError(f"global_variables: {name} is per instance, not shared")


def module_writer(data: bytes) -> str:
    """The instance that wrote a module value, for messages; "" when the value does not say."""
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return ""
    return str(body.get("instance", "")) if isinstance(body, dict) else ""


# ---------------------------------------------------------------------------- nodes


@dataclass(frozen=True)
class NodeInfo:
    instance: str
    address: str
    heartbeat: float  # unix time
    applied: dict[str, int]  # module -> revision it runs
    status: str


def encode_node(node: NodeInfo) -> bytes:
    return json.dumps({"instance": node.instance, "address": node.address, "heartbeat": node.heartbeat,
                       "applied": node.applied, "status": node.status}, sort_keys=True).encode()


def decode_node(data: bytes, key_instance: str) -> NodeInfo:
    """A heartbeat value; one that does not parse is shown as such instead of hidden."""
    try:
        body = json.loads(data)
        applied = {str(k): int(v) for k, v in dict(body.get("applied") or {}).items()}
        return NodeInfo(str(body["instance"]), str(body.get("address", "")), float(body["heartbeat"]), applied,
                        str(body.get("status", "")))
    except (ValueError, TypeError, KeyError, AttributeError):
        return NodeInfo(key_instance, "", 0.0, {}, "malformed heartbeat value")


# ---------------------------------------------------------------------------- revisions


@dataclass
class ModuleState:
    seen: int = 0  # mod_revision of the module's key last seen in etcd (0: no key); LOAD compares with it
    applied: int = 0  # the revision running here (0: this instance's own file/runtime, never synced)
    written_by: str = ""
    applied_at: float = 0.0
    refused: tuple[int, str] | None = None  # (revision, why) of the newest value refused

    @property
    def status(self) -> str:
        if self.refused is not None and self.refused[0] >= self.seen:
            return f"refused revision {self.refused[0]}: {self.refused[1]}"
        if self.seen == 0:
            return "not in etcd"
        return "in sync" if self.applied == self.seen else f"behind (etcd has revision {self.seen})"


@dataclass
class Book:
    """What this instance knows of each module's revisions."""

    modules: dict[str, ModuleState] = field(default_factory=lambda: {m: ModuleState() for m in MODULES})

    def news(self, current: Mapping[str, int]) -> list[str]:
        """Modules whose revision in ``current`` (module -> mod_revision, 0 absent) differs from the one seen."""
        return [m for m in MODULES if current.get(m, 0) != self.modules[m].seen]

    def compares(self, modules: Iterable[str]) -> dict[str, int]:
        """module -> the mod_revision a LOAD of ``modules`` expects in etcd."""
        return {m: self.modules[m].seen for m in modules}

    def applied(self, module: str, revision: int, writer: str, now: float) -> None:
        st = self.modules[module]
        st.seen = max(st.seen, revision)
        st.applied, st.written_by, st.applied_at, st.refused = revision, writer, now, None

    def refuse(self, module: str, revision: int, reason: str) -> None:
        st = self.modules[module]
        st.seen = max(st.seen, revision)
        st.refused = (revision, reason)

    def deleted(self, module: str, revision: int) -> None:
        st = self.modules[module]
        st.seen = 0
        st.refused = None

    def applied_revisions(self) -> dict[str, int]:
        return {m: st.applied for m, st in self.modules.items()}

    def processed(self, current: Mapping[str, int]) -> bool:
        """True when every revision etcd holds (``current``: module -> mod_revision, 0 absent) has been
        applied here or refused: this instance runs what the cluster says, or knows why not."""
        for m in MODULES:
            st, rev = self.modules[m], current.get(m, 0)
            if st.seen != rev:
                return False
            if rev and st.applied != rev and (st.refused is None or st.refused[0] != rev):
                return False
        return True

    def in_sync(self) -> bool:
        return all(st.applied == st.seen for st in self.modules.values())

    def status(self) -> str:
        refused = [f"{m} revision {st.refused[0]}" for m, st in self.modules.items()
                   if st.refused is not None and st.refused[0] >= st.seen]
        if refused:
            return "refused " + ", ".join(refused)
        return "in sync" if self.in_sync() else "behind"


def group_events(events: Iterable[tuple[int, str, bool, bytes]]) -> list[tuple[int, dict[str, bytes | None]]]:
    """Watch events (mod_revision, module, deleted, value) grouped by revision, oldest first:
    one transaction's puts share a revision and are applied together. ``None`` for a delete."""
    by_revision: dict[int, dict[str, bytes | None]] = {}
    for revision, module, deleted, value in events:
        by_revision.setdefault(revision, {})[module] = None if deleted else value
    return sorted(by_revision.items())
