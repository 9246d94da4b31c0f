"""Module rows -> a validated configuration, by the admin's own checks (no I/O).

Both ways into the running configuration go through here: rows a LOAD publishes
and rows another instance wrote to etcd are laid over the running configuration
and checked by :func:`myrouter.admin.validate.build_config` / ``build_rules``,
exactly as ``LOAD ... TO RUNTIME`` checks the memory layer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from myrouter.admin.rows import config_tables, rule_rows
from myrouter.admin.validate import Candidate, build_config, build_rules
from myrouter.config import Config
from myrouter.routing.rules import RuleSet

from .model import LOCAL_MYSQL_VARIABLES, hash_user_passwords, shared_variable_rows

__all__ = ["ModuleTables", "build_from_modules", "module_tables"]

#: module -> table -> rows
ModuleTables = Mapping[str, Mapping[str, Sequence[Sequence[Any]]]]


def module_tables(config: Config, rules: RuleSet, modules: Iterable[str]) -> dict[str, dict[str, list[tuple]]]:
    """The rows ``modules`` of a (validated) configuration publish: users' clear-text passwords
    hashed, only the shared mysql-* variables."""
    tables = config_tables(config)
    out: dict[str, dict[str, list[tuple]]] = {}
    for module in modules:
        if module == "mysql_servers":
            out[module] = {"mysql_servers": tables["mysql_servers"],
                           "mysql_replication_hostgroups": tables["mysql_replication_hostgroups"]}
        elif module == "mysql_users":
            out[module] = {"mysql_users": hash_user_passwords(tables["mysql_users"])}
        elif module == "mysql_query_rules":
            out[module] = {"mysql_query_rules": rule_rows(rules)}
        elif module == "mysql_variables":
            out[module] = {"global_variables": shared_variable_rows(tables["global_variables"])}
        else:
            raise KeyError(module)
    return out


def build_from_modules(base: Config, base_rules: RuleSet, modules: ModuleTables) -> tuple[Config, RuleSet]:
    """``base`` with the tables of ``modules`` instead of its own, validated as a whole.

    Raises :class:`myrouter.admin.validate.AdminValidationError` naming the row."""
    tables = config_tables(base)
    variables = tables["global_variables"]
    if "mysql_variables" in modules:
        shared = [tuple(r) for r in modules["mysql_variables"]["global_variables"]]
        local = [r for r in variables if not r[0].startswith("mysql-") or r[0] in LOCAL_MYSQL_VARIABLES]
        variables = shared + local
    servers = modules.get("mysql_servers", tables)
    candidate = Candidate(
        mysql_variables=variables,
        admin_variables=variables,
        mysql_servers=servers["mysql_servers"],
        mysql_replication_hostgroups=servers["mysql_replication_hostgroups"],
        mysql_users=modules.get("mysql_users", tables)["mysql_users"],
    )
    config = build_config(base, candidate)
    if "mysql_query_rules" in modules:
        rows = modules["mysql_query_rules"]["mysql_query_rules"]
    else:
        rows = rule_rows(base_rules)
    return config, build_rules(rows, config.hostgroups())
