"""Validate a whole candidate configuration built from admin table rows.

``LOAD ... TO RUNTIME`` (and ``SAVE ... TO DISK``, which must not write a
file the proxy could not start from) checks everything before anything
changes, with the very checks the TOML loader makes at startup: the rows are
put in the shape of a configuration file and given to the config loader
(ranges, choices, duplicate servers, unique users, users' default hostgroups,
replication hostgroup pairs, credentials on non-loopback admin addresses ...),
and the query rules to ``rules_from_rows`` (regexes compile, known columns,
hostgroups exist). Errors name the table row by its key columns.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from typing import Any

import tomlkit

from myrouter.config import Config
from myrouter.config import _Loader as _ConfigLoader  # the loader's checks, applied to admin rows
from myrouter.errors import ConfigError
from myrouter.routing.rules import RuleSet, rules_from_rows
from myrouter.tomlutil import parse_toml

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


_INDEXED_KEY = re.compile(r"(\w+)\[(\d+)\](?:\.(.+))?\Z")


def _describe(err: ConfigError, tables: dict[str, list[dict[str, Any]]]) -> str:
    key = err.key or ""
    message = err.message
    m = _INDEXED_KEY.match(key)
    if m is not None:
        table, index, column = m.group(1), int(m.group(2)), m.group(3)
        rows = tables.get(table, [])
        if 0 <= index < len(rows):
            where = f"{table} row ({row_identity(table, rows[index])})"
        else:
            where = f"{table} row {index + 1}"
        message = re.sub(r"\Arule_id \S+: ", "", message)
        if column and message.startswith(f"{column}: "):
            message = message[len(column) + 2 :]
        return f"{where}: {column}: {message}" if column else f"{where}: {message}"
    m = re.match(r"rule_id (\S+): (.*)\Z", message, re.S)
    if m is not None and (err.file == "mysql_query_rules" or key.startswith("mysql_query_rules")):
        rest = m.group(2)
        column = key.rsplit(".", 1)[-1] if key else ""
        if column and rest.startswith(f"{column}: "):
            rest = rest[len(column) + 2 :]
        return f"mysql_query_rules row (rule_id={m.group(1)}): " + (f"{column}: {rest}" if column else rest)
    if key:
        section, _, name = key.partition(".")
        if section in ("mysql_variables", "admin_variables") and name:
            prefix = "mysql-" if section == "mysql_variables" else "admin-"
            return f"global_variables row (variable_name='{prefix}{name}'): {message}"
        return f"{key}: {message}"
    return message


def build_config(base: Config, rows: Candidate) -> Config:
    """The Config the rows describe (paths and rules from ``base``); AdminValidationError if invalid."""
    try:
        mysql_vars, _ = variables_from_rows(rows.mysql_variables, "mysql-")
        _, admin_vars = variables_from_rows(rows.admin_variables, "admin-")
    except VariableError as exc:
        raise AdminValidationError(f"global_variables: {exc}") from None
    tables = {
        "mysql_servers": row_tables("mysql_servers", rows.mysql_servers),
        "mysql_replication_hostgroups": row_tables("mysql_replication_hostgroups", rows.mysql_replication_hostgroups),
        "mysql_users": row_tables("mysql_users", rows.mysql_users),
    }
    document: dict[str, Any] = {"mysql_variables": mysql_vars, "admin_variables": admin_vars}
    for name, value in tables.items():
        if value:
            document[name] = value
    text = tomlkit.dumps(document)
    try:
        doc = parse_toml(text, "<admin>")
        config = _ConfigLoader(doc).load()
    except ConfigError as exc:
        raise AdminValidationError(_describe(exc, tables)) from None
    return dataclasses.replace(config, path=base.path, rules_dir=base.rules_dir,
                               query_rules_raw=base.query_rules_raw, log_format=base.log_format,
                               datadir=base.datadir, cluster=base.cluster)


def build_rules(rule_rows: Iterable[Sequence[Any]], known_hostgroups: Iterable[int]) -> RuleSet:
    """The RuleSet of ``mysql_query_rules`` rows; AdminValidationError naming the rule if invalid."""
    dicts = [dict(zip(COLUMNS["mysql_query_rules"], row)) for row in rule_rows]
    for d in dicts:
        if d.get("attributes") == "":
            d["attributes"] = None
    try:
        return rules_from_rows(dicts, "mysql_query_rules", set(known_hostgroups))
    except ConfigError as exc:
        raise AdminValidationError(_describe(exc, {"mysql_query_rules": dicts})) from None
