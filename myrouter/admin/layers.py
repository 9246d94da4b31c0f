"""The three configuration layers and the LOAD/SAVE commands that move data between them.

* memory: the ``main`` tables the operator edits with SQL;
* runtime: what the proxy uses (``Proxy.config``, ``Proxy.rules``,
  ``Proxy.hostgroups``), shown by the ``runtime_*`` tables;
* disk: the TOML configuration file and rule files the proxy started from,
  mirrored in the ``disk`` schema.

``memory -> runtime`` validates the whole candidate configuration first (see
:mod:`myrouter.admin.validate`) and applies it in one synchronous step: on any
error nothing changes and the error names the row. ``memory -> disk`` makes
the same checks (the files must stay something the proxy can start from) and
rewrites the files in place (:mod:`myrouter.admin.tomlwrite`).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from myrouter.config import (
    AdminVariables,
    Config,
    MySQLVariables,
    ReplicationHostgroupConfig,
    ServerConfig,
    UserConfig,
    load_config,
)
from myrouter.errors import ConfigError
from myrouter.protocol.errors import ER_UNKNOWN_ERROR, MySQLError
from myrouter.routing.rules import RuleSet
from myrouter.runtime.config import load_rules_for

from .commands import LoadSave
from .rows import (
    config_tables,
    row_tables,
    rule_rows,
    runtime_server_rows,
    user_rows,
    variable_rows,
    variables_from_rows,
)
from .runtime import release_connections
from .users import runtime_users
from .tomlwrite import ADMIN_RULES_FILE, TomlFile, append_rows, new_rules_file, sync_rows, sync_variables
from .validate import AdminValidationError, Candidate, build_config, build_rules

if TYPE_CHECKING:
    from .core import Admin

log = logging.getLogger("myrouter.admin")

__all__ = ["Layers"]


SERVERS, USERS, RULES, MYSQL_VARS, ADMIN_VARS = (
    "MYSQL SERVERS", "MYSQL USERS", "MYSQL QUERY RULES", "MYSQL VARIABLES", "ADMIN VARIABLES")


def _defaults(cls: type) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


SERVER_DEFAULTS = _defaults(ServerConfig)
USER_DEFAULTS = _defaults(UserConfig)
REPLICATION_DEFAULTS = _defaults(ReplicationHostgroupConfig)
RULE_DEFAULTS = {"active": 0, "flagIN": 0, "negate_match_pattern": 0, "re_modifiers": "CASELESS", "apply": 0}
MYSQL_VARIABLE_DEFAULTS = MySQLVariables().items()
ADMIN_VARIABLE_DEFAULTS = AdminVariables().items()
SERVER_ALIASES = {"address": "hostname", "hostgroup": "hostgroup_id"}


def _server_key(row: dict[str, Any]) -> tuple:
    return (row.get("hostgroup_id"), row.get("hostname"), row.get("port", 3306))


class Layers:
    def __init__(self, admin: Admin) -> None:
        self.admin = admin
        self.app = admin.app
        self._disk_lock = trio.Lock()

    async def run(self, cmd: LoadSave) -> str:
        """Carry out a LOAD/SAVE command; returns the OK packet's info text. Raises MySQLError."""
        direction = (cmd.source, cmd.target)
        if direction == ("memory", "runtime"):
            cluster = self.app.cluster
            if cluster is not None and cluster.shares(cmd.modules):
                return await cluster.load_to_runtime(cmd, self)  # [cluster]: published through etcd first
            return await self.memory_to_runtime(cmd)
        if direction == ("runtime", "memory"):
            return self.runtime_to_memory(cmd)
        if direction == ("disk", "memory"):
            return self.disk_to_memory(cmd)
        if direction == ("memory", "disk"):
            return await self.memory_to_disk(cmd)
        raise MySQLError(ER_UNKNOWN_ERROR, f"unsupported direction {direction}", "HY000")

    # ------------------------------------------------------------------ helpers

    def _memory(self, table: str) -> list[tuple]:
        return self.admin.rows(f"main.{table}")

    def _candidate(self, modules: tuple[str, ...], base: dict[str, list[tuple]]) -> Candidate:
        """Rows of the candidate: memory for ``modules``, ``base`` for the rest."""
        mem_gv = self._memory("global_variables") if MYSQL_VARS in modules or ADMIN_VARS in modules else []
        return Candidate(
            mysql_variables=mem_gv if MYSQL_VARS in modules else base["global_variables"],
            admin_variables=mem_gv if ADMIN_VARS in modules else base["global_variables"],
            mysql_servers=self._memory("mysql_servers") if SERVERS in modules else base["mysql_servers"],
            mysql_replication_hostgroups=(self._memory("mysql_replication_hostgroups") if SERVERS in modules
                                          else base["mysql_replication_hostgroups"]),
            mysql_users=self._memory("mysql_users") if USERS in modules else base["mysql_users"],
        )

    def _validate(self, cmd: LoadSave, base_config: Config, base_rules: RuleSet,
                  what: str) -> tuple[Config, RuleSet | None]:
        base = config_tables(base_config)
        try:
            config = build_config(self.app.config, self._candidate(cmd.modules, base))
            if RULES in cmd.modules:
                rules: RuleSet | None = build_rules(self._memory("mysql_query_rules"), config.hostgroups())
            else:
                rules = None
                if config.hostgroups() != base_config.hostgroups():
                    try:
                        build_rules(rule_rows(base_rules), config.hostgroups())
                    except AdminValidationError as exc:
                        raise AdminValidationError(f"{exc} (in the {what} query rules)") from None
        except AdminValidationError as exc:
            raise MySQLError(ER_UNKNOWN_ERROR, f"{cmd.text} refused, nothing changed: {exc}", "HY000") from None
        return config, rules

    def read_disk(self) -> tuple[Config, RuleSet]:
        """The configuration and rules the files hold now. MySQLError naming file:line on a bad file."""
        try:
            config = load_config(self.app.config.path)
            rules = load_rules_for(config)
        except ConfigError as exc:
            raise MySQLError(ER_UNKNOWN_ERROR, f"the disk layer (TOML files) cannot be read: {exc}", "HY000") from None
        return config, rules

    def refresh_disk(self, disk: tuple[Config, RuleSet] | None = None) -> None:
        """Refill the ``disk`` schema from the files."""
        config, rules = disk if disk is not None else self.read_disk()
        tables = config_tables(config)
        tables["mysql_query_rules"] = rule_rows(rules)
        with self.admin.internal():
            for name, rows in tables.items():
                self.admin.replace_rows(f"disk.{name}", rows)

    # ------------------------------------------------------------------ memory -> runtime

    async def memory_to_runtime(self, cmd: LoadSave) -> str:
        app = self.app
        config, rules = self._validate(cmd, app.config, app.rules, "running")
        return await self.apply_validated(cmd.text, config, rules)

    async def apply_validated(self, what: str, config: Config, rules: RuleSet | None) -> str:
        """Make a validated configuration the running one (a LOAD, or a revision from the cluster),
        in every process of the instance before returning."""
        app = self.app
        old = app.config
        config = runtime_users(config)  # admin-hash_passwords (a LOAD, or a revision from the cluster)
        retired = await app.apply_everywhere(config, rules)  # MySQLError before any change if it cannot apply
        admin = self.admin
        admin.apply_variables()
        soft, hard = app.topology.offline_servers(retired)
        release_connections(app, soft, hard)
        notes = _restart_notes(old, config)
        log.info("admin: %s applied%s", what, ("; " + "; ".join(notes)) if notes else "")
        return "; ".join(notes)

    def hash_runtime_passwords(self) -> None:
        """At startup, as LOAD MYSQL USERS TO RUNTIME: the runtime holds hashed passwords (admin-hash_passwords),
        memory and disk what the files say."""
        app = self.app
        config = runtime_users(app.config)
        if config is not app.config:
            app.apply_runtime(config)

    # ------------------------------------------------------------------ runtime -> memory

    def runtime_to_memory(self, cmd: LoadSave) -> str:
        app = self.app
        admin = self.admin
        with admin.internal():
            if SERVERS in cmd.modules:
                admin.replace_rows("main.mysql_servers", runtime_server_rows(app.hostgroups, app.config.mysql_servers,
                                                                             configured_status=True))
                admin.replace_rows("main.mysql_replication_hostgroups",
                                   config_tables(app.config)["mysql_replication_hostgroups"])
            if USERS in cmd.modules:
                admin.replace_rows("main.mysql_users", user_rows(app.config.mysql_users))
            if RULES in cmd.modules:
                admin.replace_rows("main.mysql_query_rules", rule_rows(app.rules))
            self._replace_variables(cmd.modules, variable_rows(app.config.mysql_variables,
                                                               app.config.admin_variables))
        return ""

    def _replace_variables(self, modules: tuple[str, ...], rows: list[tuple]) -> None:
        for module, prefix in ((MYSQL_VARS, "mysql-"), (ADMIN_VARS, "admin-")):
            if module not in modules:
                continue
            self.admin.db.execute("DELETE FROM main.global_variables WHERE variable_name LIKE ?", (prefix + "%",))
            self.admin.db.executemany("INSERT INTO main.global_variables VALUES (?, ?)",
                                      [r for r in rows if r[0].startswith(prefix)])

    # ------------------------------------------------------------------ disk -> memory

    def disk_to_memory(self, cmd: LoadSave) -> str:
        config, rules = self.read_disk()
        tables = config_tables(config)
        admin = self.admin
        with admin.internal():
            if SERVERS in cmd.modules:
                admin.replace_rows("main.mysql_servers", tables["mysql_servers"])
                admin.replace_rows("main.mysql_replication_hostgroups", tables["mysql_replication_hostgroups"])
            if USERS in cmd.modules:
                admin.replace_rows("main.mysql_users", tables["mysql_users"])
            if RULES in cmd.modules:
                admin.replace_rows("main.mysql_query_rules", rule_rows(rules))
            self._replace_variables(cmd.modules, tables["global_variables"])
        self.refresh_disk((config, rules))
        return ""

    # ------------------------------------------------------------------ memory -> disk

    async def memory_to_disk(self, cmd: LoadSave) -> str:
        async with self._disk_lock:
            files = self._edit_files(cmd)
            changed = [f for f in files if f.changed]
            if changed:
                await trio.to_thread.run_sync(_write_all, changed)
            disk = self.read_disk()
            self.refresh_disk(disk)
        if not changed:
            return "the TOML files already hold this configuration"
        names = ", ".join(str(f.path) for f in changed)
        log.info("admin: %s wrote %s", cmd.text, names)
        return f"wrote {names}"

    def _edit_files(self, cmd: LoadSave) -> list[TomlFile]:
        """Validate, then edit (in memory) the files that hold the modules of ``cmd``."""
        app = self.app
        try:
            disk_config, disk_rules = self.read_disk()
        except MySQLError as exc:
            log.warning("admin: %s: the files do not load (%s); validating against the running configuration",
                        cmd.text, exc.message)
            disk_config, disk_rules = app.config, app.rules
        self._validate(cmd, disk_config, disk_rules, "saved")
        config_file = TomlFile(Path(app.config.path))
        doc = config_file.doc
        files = [config_file]
        if SERVERS in cmd.modules:
            sync_rows(doc, "mysql_servers", row_tables("mysql_servers", self._memory("mysql_servers")),
                      _server_key, SERVER_DEFAULTS, SERVER_ALIASES)
            sync_rows(doc, "mysql_replication_hostgroups",
                      row_tables("mysql_replication_hostgroups", self._memory("mysql_replication_hostgroups")),
                      lambda r: r.get("writer_hostgroup"), REPLICATION_DEFAULTS)
        if USERS in cmd.modules:
            sync_rows(doc, "mysql_users", row_tables("mysql_users", self._memory("mysql_users")),
                      lambda r: r.get("username"), USER_DEFAULTS)
        if MYSQL_VARS in cmd.modules or ADMIN_VARS in cmd.modules:
            gv = self._memory("global_variables")
            if MYSQL_VARS in cmd.modules:
                sync_variables(doc, "mysql_variables", variables_from_rows(gv, "mysql-")[0], MYSQL_VARIABLE_DEFAULTS)
            if ADMIN_VARS in cmd.modules:
                sync_variables(doc, "admin_variables", variables_from_rows(gv, "admin-")[1], ADMIN_VARIABLE_DEFAULTS)
        if RULES in cmd.modules:
            files += self._edit_rule_files(config_file)
        return files

    def _edit_rule_files(self, config_file: TomlFile) -> list[TomlFile]:
        rules_dir = Path(self.app.config.rules_dir)
        rule_files: list[TomlFile] = []
        if rules_dir.is_dir():
            rule_files = [TomlFile(p) for p in sorted(rules_dir.glob("*.toml"), key=lambda p: p.name) if p.is_file()]
        every = [config_file, *rule_files]
        owner: dict[Any, TomlFile] = {}
        for f in every:
            for table in f.doc.get("mysql_query_rules", []):
                rid = next((v for k, v in table.items() if k.lower() == "rule_id"), None)
                owner.setdefault(rid, f)
        desired = row_tables("mysql_query_rules", self._memory("mysql_query_rules"))
        for f in every:
            mine = [r for r in desired if owner.get(r["rule_id"]) is f]
            sync_rows(f.doc, "mysql_query_rules", mine, lambda r: r.get("rule_id"), RULE_DEFAULTS, add_new=False,
                      casefold=True)
        new = [r for r in desired if r["rule_id"] not in owner]
        if new:
            if self.app.config.query_rules_raw or not rules_dir.is_dir():
                target = config_file
            else:
                path = rules_dir / ADMIN_RULES_FILE
                target = next((f for f in rule_files if f.path == path), None)
                if target is None:
                    target = new_rules_file(path)
                    rule_files.append(target)
            append_rows(target.doc, "mysql_query_rules", new, RULE_DEFAULTS)
        return rule_files


def _write_all(files: list[TomlFile]) -> None:
    for f in files:
        f.write()


def _restart_notes(old: Config, new: Config) -> list[str]:
    notes = []
    if old.mysql_variables.interfaces != new.mysql_variables.interfaces:
        notes.append("mysql-interfaces takes effect when myrouter restarts")
    if old.mysql_variables.threads != new.mysql_variables.threads:
        notes.append("mysql-threads takes effect when myrouter restarts")
    a, b = old.admin_variables, new.admin_variables
    if a.mysql_ifaces != b.mysql_ifaces:
        notes.append("admin-mysql_ifaces takes effect when myrouter restarts")
    if (a.restapi_enabled, a.restapi_port) != (b.restapi_enabled, b.restapi_port):
        notes.append("admin-restapi_enabled/restapi_port take effect when myrouter restarts")
    return notes
