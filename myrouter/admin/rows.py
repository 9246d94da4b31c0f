"""Conversions between the configuration model and admin table rows.

A row is a tuple in the column order of :data:`myrouter.admin.schema.COLUMNS`;
SQL NULL is ``None``. ``*_rows`` build rows from configuration objects; the
``*_tables`` functions turn rows back into the dicts a TOML file holds
(``[[mysql_servers]]`` tables and so on), with NULL columns left out, which is
how both validation (:mod:`myrouter.admin.validate`) and ``SAVE ... TO DISK``
see them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from myrouter.config import (
    ADMIN_COMPAT_VARIABLES,
    MYSQL_COMPAT_VARIABLES,
    AdminVariables,
    Config,
    MySQLVariables,
    ReplicationHostgroupConfig,
    ServerConfig,
    UserConfig,
)
from myrouter.routing.hostgroups import Hostgroups
from myrouter.routing.rules import RuleSet
from myrouter.schema import column_names, field_type, from_text

from .schema import COLUMNS

__all__ = [
    "server_rows",
    "runtime_server_rows",
    "user_rows",
    "replication_rows",
    "rule_rows",
    "variable_rows",
    "row_tables",
    "variables_from_rows",
    "VariableError",
    "variable_defaults",
    "row_identity",
    "config_tables",
]


def _flag(v: bool) -> int:
    return 1 if v else 0


def server_rows(servers: Iterable[ServerConfig]) -> list[tuple]:
    return [
        (s.hostgroup_id, s.hostname, s.port, s.gtid_port, s.status, s.weight, s.compression, s.max_connections,
         s.max_replication_lag, _flag(s.use_ssl), s.max_latency_ms, s.comment)
        for s in servers
    ]


def runtime_server_rows(hostgroups: Hostgroups, configured: Iterable[ServerConfig], *,
                        configured_status: bool = False) -> list[tuple]:
    """What is live: the Server objects (current status, weight ...) with the configured
    columns the runtime does not keep (gtid_port, compression, max_latency_ms).

    Servers the monitor added to a hostgroup (writer/reader discovery) are included, with
    the configured columns of the same host:port in another hostgroup. With
    ``configured_status`` the status column is the configured one, without the
    monitor's automatic shuns (for SAVE MYSQL SERVERS TO MEMORY: a shun is not
    configuration, and a SHUNNED status in the configuration is never lifted
    automatically)."""
    by_key = {(s.hostgroup_id, s.hostname, s.port): s for s in configured}
    by_address = {}
    for s in configured:
        by_address.setdefault((s.hostname, s.port), s)
    rows = []
    for srv in hostgroups.servers():
        cfg = by_key.get((srv.hostgroup, srv.host, srv.port)) or by_address.get((srv.host, srv.port))
        status = srv.admin_status if configured_status else srv.status
        rows.append((
            srv.hostgroup, srv.host, srv.port, cfg.gtid_port if cfg else 0, status, srv.weight,
            cfg.compression if cfg else 0, srv.max_connections, srv.max_replication_lag,
            _flag(srv.use_ssl), cfg.max_latency_ms if cfg else 0, srv.comment,
        ))
    return rows


def user_rows(users: Iterable[UserConfig]) -> list[tuple]:
    return [
        (u.username, u.password, _flag(u.active), _flag(u.use_ssl), u.default_hostgroup, u.default_schema or None,
         _flag(u.schema_locked), _flag(u.transaction_persistent), _flag(u.fast_forward), _flag(u.backend),
         _flag(u.frontend), u.max_connections, u.attributes, u.comment, u.pool_mode, u.causal_reads)
        for u in users
    ]


def replication_rows(rows: Iterable[ReplicationHostgroupConfig]) -> list[tuple]:
    return [(r.writer_hostgroup, r.reader_hostgroup, r.check_type, r.comment) for r in rows]


def rule_rows(rules: RuleSet | Iterable[dict[str, Any]]) -> list[tuple]:
    dicts = rules.rows() if isinstance(rules, RuleSet) else rules
    columns = COLUMNS["mysql_query_rules"]
    out = []
    for d in dicts:
        row = [d.get(c) for c in columns]
        if row[columns.index("attributes")] is None:
            row[columns.index("attributes")] = ""  # NOT NULL DEFAULT '' in ProxySQL's table
        out.append(tuple(row))
    return out


def variable_rows(mysql_vars: MySQLVariables, admin_vars: AdminVariables) -> list[tuple]:
    return [*mysql_vars.global_variables(), *admin_vars.global_variables()]


# -- rows -> TOML-shaped dicts -----------------------------------------------------


def row_tables(table: str, rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """Rows of a config table as TOML tables (column -> value), NULL columns left out.

    ``mysql_query_rules``: an empty ``attributes`` is left out too (TOML has
    no NULL; the rule engine treats '' and NULL alike).
    """
    columns = COLUMNS[table]
    out = []
    for row in rows:
        d = {c: v for c, v in zip(columns, row) if v is not None}
        if table == "mysql_query_rules" and d.get("attributes") == "":
            del d["attributes"]
        out.append(d)
    return out


def row_identity(table: str, row: dict[str, Any]) -> str:
    """How an error message names a row: its key columns."""
    keys = {
        "mysql_servers": ("hostgroup_id", "hostname", "port"),
        "mysql_users": ("username",),
        "mysql_replication_hostgroups": ("writer_hostgroup",),
        "mysql_query_rules": ("rule_id",),
        "global_variables": ("variable_name",),
    }[table]
    return ", ".join(f"{k}={row.get(k)!r}" for k in keys)


class VariableError(ValueError):
    """A ``global_variables`` row that cannot be used (unknown name, wrong type)."""


def variable_defaults() -> dict[str, Any]:
    """``mysql-x``/``admin-x`` -> default value (typed), for every variable myrouter knows."""
    out: dict[str, Any] = {}
    for prefix, obj in (("mysql-", MySQLVariables()), ("admin-", AdminVariables())):
        for name, value in obj.items().items():
            out[prefix + name] = value
    return out


_DEFAULTS = variable_defaults()
_BY_LOWER = {name.lower(): name for name in _DEFAULTS}
_COMPAT = {**{"mysql-" + k: v for k, v in MYSQL_COMPAT_VARIABLES.items()},
           **{"admin-" + k: v for k, v in ADMIN_COMPAT_VARIABLES.items()}}


_SCHEMA = {"mysql-": MySQLVariables, "admin-": AdminVariables}


def _typed(name: str, text: str) -> Any:
    """A variable's text typed as the schema says (a compatibility variable: like its default)."""
    prefix, _, short = name.partition("-")
    cls = _SCHEMA[prefix + "-"]
    kind = field_type(cls, short) if short in column_names(cls) else type(_DEFAULTS[name])
    try:
        return from_text(kind, text)
    except ValueError as exc:
        raise VariableError(f"variable {name}: {exc}") from None


def variables_from_rows(rows: Iterable[Sequence[Any]], prefix: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``global_variables`` rows -> ``([mysql_variables] dict, [admin_variables] dict)``.

    Values are typed like their defaults (``'true'``/``'false'`` for booleans,
    integers for integers). Accepted-but-unused ProxySQL variables are kept
    only when they differ from their default (so loading does not log them as
    set). ``prefix`` ('mysql-' or 'admin-') restricts to one family. Raises
    VariableError naming the variable.
    """
    mysql: dict[str, Any] = {}
    admin: dict[str, Any] = {}
    for name, value in rows:
        if not isinstance(name, str):
            raise VariableError(f"variable_name must be text, not {name!r}")
        canon = _BY_LOWER.get(name.lower())
        if canon is None:
            if not name.lower().startswith(("mysql-", "admin-")):
                raise VariableError(f"variable {name!r}: names start with mysql- or admin-")
            raise VariableError(f"unknown variable {name!r}")
        if prefix is not None and not canon.startswith(prefix):
            continue
        typed = _typed(canon, "" if value is None else str(value))
        if canon in _COMPAT and typed == _COMPAT[canon]:
            continue
        target = mysql if canon.startswith("mysql-") else admin
        target[canon.split("-", 1)[1]] = typed
    return mysql, admin


def config_tables(config: Config) -> dict[str, list[tuple]]:
    """All configuration tables of a Config (rules excepted: they are not in Config)."""
    return {
        "mysql_servers": server_rows(config.mysql_servers),
        "mysql_replication_hostgroups": replication_rows(config.mysql_replication_hostgroups),
        "mysql_users": user_rows(config.mysql_users),
        "global_variables": variable_rows(config.mysql_variables, config.admin_variables),
    }
