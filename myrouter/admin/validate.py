"""Validate a whole candidate configuration built from admin table rows.

``LOAD ... TO RUNTIME`` (and ``SAVE ... TO DISK``, which must not write a
file the proxy could not start from) checks everything before anything
changes, with the very checks the TOML loader makes at startup: the rows, as
column -> value dicts, go through the configuration schema and the loader's
checks across rows (:func:`myrouter.config.config_from_tables`: ranges,
choices, duplicate servers, unique users, users' default hostgroups,
replication hostgroup pairs, credentials on non-loopback admin addresses ...),
and the query rules to ``rules_from_rows`` (regexes compile, known columns,
hostgroups exist). Errors name the table row by its key columns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from myrouter.config import Config, config_from_tables
from myrouter.routing.rules import RuleSet, rules_from_rows
from myrouter.tomlutil import key_path

from .rows import VariableError, row_identity, row_tables, variables_from_rows
from .schema import COLUMNS

__all__ = ["AdminValidationError", "Candidate", "build_config", "build_rules"]


class AdminValidationError(Exception):
    """A candidate configuration is refused; the message names the row and the column."""


@dataclasses.dataclass(frozen=True)
class Candidate:
    """The rows a candidate configuration is built from (all tables, each from memory or runtime)."""

    mysql_variables: Sequence[Sequence[Any]]  # global_variables rows (mysql-* used)
    admin_variables: Sequence[Sequence[Any]]  # global_variables rows (admin-* used)
    mysql_servers: Sequence[Sequence[Any]]
    mysql_replication_hostgroups: Sequence[Sequence[Any]]
    mysql_users: Sequence[Sequence[Any]]


_VARIABLE_PREFIXES = {"mysql_variables": "mysql-", "admin_variables": "admin-"}


def where(table: str, index: int | None, column: str | None, rows: dict[str, list[dict[str, Any]]]) -> str:
    """How an admin error names a place: ``mysql_users row (username='app'): default_hostgroup``,
    ``global_variables row (variable_name='mysql-max_connections')``."""
    if table in _VARIABLE_PREFIXES and column:
        return f"global_variables row (variable_name='{_VARIABLE_PREFIXES[table]}{column}')"
    if index is not None:
        table_rows = rows.get(table, [])
        row = f"{table} row ({row_identity(table, table_rows[index])})" if 0 <= index < len(table_rows) \
            else f"{table} row {index + 1}"
        return f"{row}: {column}" if column else row
    return key_path(table, None, column)


@dataclasses.dataclass(frozen=True)
class _AdminTables:
    """Admin rows in the shape the configuration loader reads (a TomlDoc's interface): ``data`` as a
    file would hold it; errors name rows by their key columns; there are no lines."""

    data: dict[str, Any]
    path: Path

    def line_of(self, table: str, index: int | None = None, key: str | None = None) -> int | None:
        return None

    def error(self, message: str, table: str = "", index: int | None = None,
              key: str | None = None) -> AdminValidationError:
        place = where(table, index, key, self.data)
        return AdminValidationError(f"{place}: {message}" if place else message)


def build_config(base: Config, rows: Candidate) -> Config:
    """The Config the rows describe (paths and rules from ``base``); AdminValidationError if invalid."""
    try:
        mysql_vars, _ = variables_from_rows(rows.mysql_variables, "mysql-")
        _, admin_vars = variables_from_rows(rows.admin_variables, "admin-")
    except VariableError as exc:
        raise AdminValidationError(f"global_variables: {exc}") from None
    data: dict[str, Any] = {"mysql_variables": mysql_vars, "admin_variables": admin_vars}
    for table in ("mysql_servers", "mysql_replication_hostgroups", "mysql_users"):
        data[table] = row_tables(table, getattr(rows, table))
    config = config_from_tables(_AdminTables(data, base.path))
    return dataclasses.replace(config, path=base.path, rules_dir=base.rules_dir,
                               query_rules_raw=base.query_rules_raw, log_format=base.log_format,
                               datadir=base.datadir, cluster=base.cluster)


def build_rules(rule_rows: Iterable[Sequence[Any]], known_hostgroups: Iterable[int]) -> RuleSet:
    """The RuleSet of ``mysql_query_rules`` rows; AdminValidationError naming the rule if invalid."""
    dicts = [dict(zip(COLUMNS["mysql_query_rules"], row)) for row in rule_rows]
    for d in dicts:
        if d.get("attributes") == "":
            d["attributes"] = None

    def error(index: int, message: str, column: str | None, rule_id: Any) -> AdminValidationError:
        if column and message.startswith(f"{column}: "):  # the row's place names the column already
            message = message[len(column) + 2:]
        return AdminValidationError(f"{where('mysql_query_rules', index, column, {'mysql_query_rules': dicts})}: "
                                    f"{message}")

    return rules_from_rows(dicts, "mysql_query_rules", set(known_hostgroups), error=error)
