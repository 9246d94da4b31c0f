"""Configuration model and loader: a TOML file with ProxySQL's names.

A ProxySQL user should be able to translate ``proxysql.cnf`` line by line:

========================================  =========================================
proxysql.cnf (libconfig)                  myrouter.toml
========================================  =========================================
``mysql_variables = { threads=4 ... }``   ``[mysql_variables]`` / ``threads = 4``
``admin_variables = { ... }``             ``[admin_variables]``
``mysql_servers = ( { ... }, { ... } )``  one ``[[mysql_servers]]`` per server
``mysql_users = ( { ... } )``             one ``[[mysql_users]]`` per user
``mysql_replication_hostgroups = (...)``  ``[[mysql_replication_hostgroups]]``
``mysql_query_rules = ( ... )``           ``[[mysql_query_rules]]`` (or files in ``rules_dir``)
========================================  =========================================

Variable names are ProxySQL's ``mysql-*`` / ``admin-*`` global variables
without the prefix (matched case-insensitively, as ProxySQL does), with
ProxySQL's defaults except where documented on :class:`MySQLVariables` and
:class:`AdminVariables`. Flag columns and boolean variables accept TOML
booleans or ProxySQL's 0/1 integers and are normalized to ``bool``.

Types, defaults, ranges and the checks of one row or one section are the schema's
(:mod:`myrouter.schema`, pydantic dataclasses re-exported here); this module reads
the file, hands each table to the schema, checks what spans rows (duplicates,
hostgroups, listeners) and places every error on its line.

Every problem raises :class:`myrouter.errors.ConfigError` naming the file, the
line and the key (``str(err)`` is ``file:line: key: message``). ProxySQL
variables and tables that myrouter accepts but does not act on are listed in
``MYSQL_COMPAT_VARIABLES``, ``ADMIN_COMPAT_VARIABLES`` and
``TOP_LEVEL_COMPAT_KEYS``: they are carried (so the admin interface can show
them) and logged as ignored when set, never silently dropped.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from myrouter.errors import ConfigError
from myrouter.schema import (
    ADMIN_COMPAT_VARIABLES,
    AUTH_PLUGINS,
    CAUSAL_READS,
    CHECK_TYPES,
    LOG_FORMATS,
    MYSQL_COMPAT_VARIABLES,
    POOL_MODES,
    SERVER_STATUSES,
    AdminVariables,
    ClusterConfig,
    MySQLVariables,
    ReplicationHostgroupConfig,
    SchemaError,
    ServerConfig,
    TopLevel,
    UserConfig,
    column_names,
    is_loopback_host,
    is_native_hash,
    parse_credentials,
    parse_interfaces,
    type_name,
    unknown_key_message,
    validate,
)
from myrouter.tomlutil import key_path, load_toml

__all__ = [
    "Config",
    "MySQLVariables",
    "AdminVariables",
    "ServerConfig",
    "UserConfig",
    "ReplicationHostgroupConfig",
    "ClusterConfig",
    "load_config",
    "config_from_tables",
    "parse_interfaces",
    "parse_credentials",
    "is_native_hash",
    "is_loopback_host",
    "SERVER_STATUSES",
    "CHECK_TYPES",
    "AUTH_PLUGINS",
    "LOG_FORMATS",
    "POOL_MODES",
    "CAUSAL_READS",
    "MYSQL_COMPAT_VARIABLES",
    "ADMIN_COMPAT_VARIABLES",
    "TOP_LEVEL_COMPAT_KEYS",
]

log = logging.getLogger(__name__)


# ProxySQL's "general variables" (top level of proxysql.cnf): accepted, ignored.
TOP_LEVEL_COMPAT_KEYS = (
    "errorlog",
    "restart_on_missing_heartbeats",
    "execute_on_exit_failure",
)

# ProxySQL tables myrouter does not implement: named in the error message.
_PROXYSQL_UNSUPPORTED_TABLES = (
    "mysql_group_replication_hostgroups",
    "mysql_galera_hostgroups",
    "mysql_aws_aurora_hostgroups",
    "mysql_hostgroup_attributes",
    "mysql_servers_ssl_params",
    "mysql_query_rules_fast_routing",
    "mysql_firewall_whitelist_rules",
    "mysql_firewall_whitelist_users",
    "mysql_firewall_whitelist_sqli_fingerprints",
    "proxysql_servers",
    "scheduler",
    "restapi",
    "ldap_variables",
    "sqliteserver_variables",
    "clickhouse_variables",
    "clickhouse_users",
)


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration file, validated. Immutable; safe to hand to a worker."""

    path: Path
    mysql_variables: MySQLVariables
    admin_variables: AdminVariables
    mysql_servers: tuple[ServerConfig, ...]
    mysql_users: tuple[UserConfig, ...]
    mysql_replication_hostgroups: tuple[ReplicationHostgroupConfig, ...]
    rules_dir: Path  # absolute
    # ([[mysql_query_rules]] of this file): (source file, 0-based index, raw
    # table). Validated by myrouter.routing.rules, not here.
    query_rules_raw: tuple[tuple[Path, int, dict[str, Any]], ...] = ()
    # myrouter's own (top level): format of the process log on stderr, "text" or
    # "json" (one object per line); ``myrouter serve --log-format`` overrides it.
    log_format: str = "text"
    # ProxySQL's datadir, for what myrouter keeps there: the TLS files of the client port
    # (myrouter-ca.pem, myrouter-cert.pem, myrouter-key.pem; generated when missing).
    # None: a certificate generated in memory at startup.
    datadir: Path | None = None
    # [cluster]: configuration shared with other instances through etcd; None without it
    cluster: ClusterConfig | None = None

    def error_at(self, message: str, table: str, key: str) -> ConfigError:
        """A ConfigError naming this configuration's file, the line of ``table.key`` there and the key,
        for a value found unusable only when the proxy starts (a file it names does not load, say)."""
        try:
            return load_toml(self.path).error(message, table, None, key)
        except ConfigError:  # the file changed or went away since: no line
            return ConfigError(message, file=str(self.path), key=key_path(table, None, key))

    def hostgroups(self) -> frozenset[int]:
        """Hostgroups that exist: those of servers and of replication hostgroups."""
        hgs = {s.hostgroup_id for s in self.mysql_servers}
        for r in self.mysql_replication_hostgroups:
            hgs.add(r.writer_hostgroup)
            hgs.add(r.reader_hostgroup)
        return frozenset(hgs)

    def user(self, name: str) -> UserConfig | None:
        """The frontend row (``frontend`` true) for ``name``, active or not; else None."""
        for u in self.mysql_users:
            if u.frontend and u.username == name:
                return u
        return None

    def backend_user(self, name: str) -> UserConfig | None:
        """The backend row (``backend`` true) for ``name``: credentials for the servers."""
        for u in self.mysql_users:
            if u.backend and u.username == name:
                return u
        return None

    def servers_in(self, hostgroup_id: int) -> tuple[ServerConfig, ...]:
        """The configured servers of one hostgroup, in file order."""
        return tuple(s for s in self.mysql_servers if s.hostgroup_id == hostgroup_id)


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def load_config(path: str | Path) -> Config:
    """Load and validate a configuration file. Raises ConfigError (file, line, key)."""
    doc = load_toml(path)
    return _Loader(doc).load()


class Document(Protocol):
    """What the loader reads: a TomlDoc, or admin rows in the same shape (myrouter.admin.validate)."""

    data: dict[str, Any]  # tables as a TOML file holds them
    path: Path  # relative directories are resolved against its directory

    def line_of(self, table: str, index: int | None = None, key: str | None = None) -> int | None: ...

    def error(self, message: str, table: str = "", index: int | None = None,
              key: str | None = None) -> Exception: ...


def config_from_tables(tables: Document) -> Config:
    """The Config of a document that is not a file (admin rows): its ``error`` builds the exception
    to raise (the admin interface names rows by their key columns) and ``line_of`` may be None."""
    return _Loader(tables).load()


class _Section:
    """The keys of one TOML table (a section or one row of an array of tables), as the schema sees them.

    With ``casefold``, keys match case-insensitively (ProxySQL variable names); ``aliases`` maps an
    alternative name to its canonical one. ``written`` gives a key back as the file wrote it, for
    the error's line and key.
    """

    def __init__(
        self,
        doc: Document,
        table: str,
        index: int | None,
        raw: dict[str, Any],
        *,
        casefold: bool = False,
        aliases: dict[str, str] | None = None,
    ) -> None:
        self.doc = doc
        self.table = table
        self.index = index
        # canonical key -> (key as written, value)
        self.entries: dict[str, tuple[str, Any]] = {}
        aliases = aliases or {}
        for written, value in raw.items():
            canon = written.lower() if casefold else written
            canon = aliases.get(canon, canon)
            if canon in self.entries:
                other = self.entries[canon][0]
                raise self.error(f"duplicate of {other!r} (same setting written twice)", written)
            self.entries[canon] = (written, value)

    def error(self, message: str, key: str | None = None) -> Exception:
        return self.doc.error(message, self.table, self.index, key)

    def written(self, canon: str) -> str:
        entry = self.entries.get(canon)
        return entry[0] if entry else canon

    def line(self, canon: str | None = None) -> int | None:
        key = self.written(canon) if canon is not None else None
        return self.doc.line_of(self.table, self.index, key)

    def has(self, canon: str) -> bool:
        return canon in self.entries

    def values(self, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
        return {canon: value for canon, (_, value) in self.entries.items() if canon not in leave_out}

    def build(self, cls: type, values: dict[str, Any], aliases: tuple[str, ...] = (), **fixed: Any) -> Any:
        """``cls`` validated by the schema from ``values`` (and ``fixed``, not keys of the file);
        its first problem raised at the key's line (a ConfigError for a file)."""
        try:
            return validate(cls, values, table=self.table, aliases=aliases, fixed=fixed)
        except SchemaError as exc:
            raise self.error(exc.message, self.written(exc.key) if exc.key else None) from None


class _Loader:
    _TABLES = (
        "mysql_variables",
        "admin_variables",
        "mysql_servers",
        "mysql_users",
        "mysql_replication_hostgroups",
        "mysql_query_rules",
        "cluster",
    )

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.ignored: list[str] = []  # "table.key (line N)" for the compatibility warning

    def load(self) -> Config:
        doc = self.doc
        top = doc.data
        rules_dir, log_format, datadir = self._top_level(top)
        mysql_vars = self._mysql_variables(self._table(top, "mysql_variables"))
        admin_vars = self._admin_variables(self._table(top, "admin_variables"))
        self._check_listener_conflicts(mysql_vars, admin_vars)
        servers = tuple(
            self._row(ServerConfig, "mysql_servers", i, row, {"address": "hostname", "hostgroup": "hostgroup_id"})
            for i, row in enumerate(self._rows(top, "mysql_servers"))
        )
        self._check_duplicate_servers(servers)
        repl = tuple(
            self._row(ReplicationHostgroupConfig, "mysql_replication_hostgroups", i, row)
            for i, row in enumerate(self._rows(top, "mysql_replication_hostgroups"))
        )
        self._check_replication(repl)
        users = tuple(self._row(UserConfig, "mysql_users", i, row) for i, row in enumerate(self._rows(top, "mysql_users")))
        self._check_users(users, servers, repl)
        rules = tuple(
            (doc.path, i, row) for i, row in enumerate(self._rows(top, "mysql_query_rules"))
        )
        cluster = self._cluster(top) if "cluster" in top else None
        if self.ignored:
            log.warning(
                "%s: accepted for ProxySQL compatibility and ignored by myrouter: %s",
                doc.path,
                ", ".join(self.ignored),
            )
        return Config(
            path=doc.path,
            mysql_variables=mysql_vars,
            admin_variables=admin_vars,
            mysql_servers=servers,
            mysql_users=users,
            mysql_replication_hostgroups=repl,
            rules_dir=rules_dir,
            query_rules_raw=rules,
            log_format=log_format,
            datadir=datadir,
            cluster=cluster,
        )

    # -- structure ----------------------------------------------------------

    def _top_level(self, top: dict[str, Any]) -> tuple[Path, str, Path | None]:
        doc = self.doc
        section = _Section(doc, "", None, {k: v for k, v in top.items() if k not in self._TABLES})
        for name in TOP_LEVEL_COMPAT_KEYS:
            if section.has(name):
                self.ignored.append(name + _line_note(section.line(name)))
        known = column_names(TopLevel)
        for canon, (written, value) in section.entries.items():
            if canon in known or canon in TOP_LEVEL_COMPAT_KEYS:
                continue
            table_like = _is_table_like(value)
            if canon in _PROXYSQL_UNSUPPORTED_TABLES:
                message = f"ProxySQL's {canon} is not supported by myrouter"
                # A table is located by its header; a scalar by its key line.
                raise doc.error(message, written) if table_like else section.error(message, written)
            if table_like:
                close = difflib.get_close_matches(canon, self._TABLES, n=1, cutoff=0.75)
                hint = f" (did you mean [{close[0]}]?)" if close else ""
                known_tables = ", ".join(self._TABLES)
                raise doc.error(f"unknown table [{written}]{hint}; known tables: {known_tables}", written)
            raise section.error(unknown_key_message("", canon, [*known, *TOP_LEVEL_COMPAT_KEYS]), written)
        settings = section.build(TopLevel, section.values(TOP_LEVEL_COMPAT_KEYS))
        rules_dir = self._directory(section, "rules_dir", settings.rules_dir)
        if section.has("rules_dir") and not rules_dir.exists():
            raise section.error(f"directory {str(rules_dir)!r} does not exist", "rules_dir")
        datadir = self._directory(section, "datadir", settings.datadir) if settings.datadir else None
        return rules_dir, settings.log_format, datadir

    def _directory(self, section: _Section, key: str, text: str) -> Path:
        """A directory named by ``key``: absolute, relative paths from the config file's directory."""
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = self.doc.path.resolve().parent / path
        path = path.resolve()
        if path.exists() and not path.is_dir():
            raise section.error(f"{str(path)!r} is not a directory", key)
        return path

    def _table(self, top: dict[str, Any], name: str) -> dict[str, Any]:
        value = top.get(name, {})
        if not isinstance(value, dict):
            raise self.doc.error(
                f"expected a table ([{name}]), got {type_name(value)}", "", None, name
            )
        return value

    def _rows(self, top: dict[str, Any], name: str) -> list[dict[str, Any]]:
        value = top.get(name, [])
        if isinstance(value, dict):
            # Written as [name]: point at that header.
            raise self.doc.error(
                f"expected an array of tables: write [[{name}]], not [{name}]", name
            )
        if not isinstance(value, list):
            raise self.doc.error(
                f"expected an array of tables ([[{name}]]), got {type_name(value)}", "", None, name
            )
        for i, row in enumerate(value):
            if not isinstance(row, dict):
                raise self.doc.error(
                    f"expected an array of tables ([[{name}]]), element {i} is {type_name(row)}",
                    "",
                    None,
                    name,
                )
        return value

    def _row(self, cls: type, table: str, i: int, raw: dict[str, Any], aliases: dict[str, str] | None = None) -> Any:
        section = _Section(self.doc, table, i, raw, aliases=aliases)
        return section.build(cls, section.values(), tuple(aliases or ()))

    # -- variables ------------------------------------------------------------

    def _variables(self, table: str, raw: dict[str, Any], cls: type, compat: dict[str, Any]) -> tuple[_Section, Any]:
        """The schema's ``cls`` from a variables section; ProxySQL variables that myrouter accepts and
        does not use (``compat``) are carried in ``compatibility`` and logged as ignored."""
        section = _Section(self.doc, table, None, raw, casefold=True)
        compat_lower = {name.lower(): name for name in compat}
        compat_values = dict(compat)
        for canon, (written, value) in section.entries.items():
            name = compat_lower.get(canon)
            if name is None:
                continue
            if isinstance(value, (dict, list)):
                raise section.error(f"expected a single value, got {type_name(value)}", written)
            compat_values[name] = value
            self.ignored.append(f"{table}.{written}" + _line_note(section.line(canon)))
        values = section.values(tuple(compat_lower))
        variables = section.build(cls, values, tuple(compat), compatibility=tuple(compat_values.items()))
        return section, variables

    def _mysql_variables(self, raw: dict[str, Any]) -> MySQLVariables:
        section, variables = self._variables("mysql_variables", raw, MySQLVariables, MYSQL_COMPAT_VARIABLES)
        for name in ("eventslog_filename", "auditlog_filename"):
            filename = getattr(variables, name)
            if filename and (filename.endswith("/") or Path(filename).is_dir()):
                raise section.error(f"{filename!r} is a directory: give the name of the log file",
                                    section.written(name))
        return variables

    def _admin_variables(self, raw: dict[str, Any]) -> AdminVariables:
        section, variables = self._variables("admin_variables", raw, AdminVariables, ADMIN_COMPAT_VARIABLES)
        exposed = [f"{h}:{p}" for h, p in variables.listen_addresses() if not is_loopback_host(h)]
        if exposed:
            if ("admin", "admin") in variables.admin_accounts():
                key = "admin_credentials" if section.has("admin_credentials") else "mysql_ifaces"
                raise section.error(
                    "admin interface on a non-loopback address must not use the default "
                    f"credentials (admin:admin; listening on {', '.join(exposed)})",
                    section.written(key),
                )
            if ("stats", "stats") in variables.stats_accounts():
                log.warning(
                    "%s: admin interface on %s with the default stats:stats credentials",
                    self.doc.path, ", ".join(exposed),
                )
        return variables

    def _check_listener_conflicts(self, mysql_vars: MySQLVariables, admin_vars: AdminVariables) -> None:
        listeners = [("mysql_variables", "interfaces", a) for a in mysql_vars.listen_addresses()]
        listeners += [("admin_variables", "mysql_ifaces", a) for a in admin_vars.listen_addresses()]
        if admin_vars.restapi_enabled:
            listeners.append(("admin_variables", "restapi_port", ("", admin_vars.restapi_port)))
        for i, (table_a, key_a, (host_a, port_a)) in enumerate(listeners):
            for table_b, key_b, (host_b, port_b) in listeners[i + 1 :]:
                if port_a != port_b or port_a == 0 or key_a == key_b:
                    continue
                if host_a == host_b or _is_wildcard(host_a) or _is_wildcard(host_b):
                    raise self.doc.error(
                        f"port {port_b} is also used by {table_a}.{key_a}", table_b, None, key_b
                    )

    def _cluster(self, top: dict[str, Any]) -> ClusterConfig:
        """``[cluster]``: the schema's ClusterConfig, its TLS files made absolute (relative paths from
        the config file's directory) and checked to exist."""
        section = _Section(self.doc, "cluster", None, self._table(top, "cluster"))
        cluster = section.build(ClusterConfig, section.values())
        https = cluster.etcd_endpoints[0].startswith("https:")
        files = {}
        for key in ("etcd_ca", "etcd_cert", "etcd_key"):
            text = getattr(cluster, key)
            if text:
                path = Path(text).expanduser()
                if not path.is_absolute():
                    path = self.doc.path.resolve().parent / path
                if not path.is_file():
                    raise section.error(f"file {str(path)!r} does not exist", section.written(key))
                if not https:
                    raise section.error("only used with https:// endpoints", section.written(key))
                files[key] = str(path)
        try:
            cluster.check_pairs()
        except SchemaError as exc:
            raise section.error(exc.message, section.written(exc.key or "")) from None
        return dataclasses.replace(cluster, **files)

    # -- across rows ------------------------------------------------------------

    def _check_duplicate_servers(self, servers: tuple[ServerConfig, ...]) -> None:
        seen: dict[tuple[int, str, int], int] = {}
        for i, srv in enumerate(servers):
            key = (srv.hostgroup_id, srv.hostname, srv.port)
            if key in seen:
                first = seen[key]
                raise self.doc.error(
                    f"duplicate server (hostgroup_id={srv.hostgroup_id}, hostname={srv.hostname!r}, "
                    f"port={srv.port}): already defined by mysql_servers[{first}]"
                    + _line_note(self.doc.line_of("mysql_servers", first)),
                    "mysql_servers", i, None,
                )
            seen[key] = i

    def _check_replication(self, rows: tuple[ReplicationHostgroupConfig, ...]) -> None:
        # ProxySQL: writer_hostgroup is the primary key, reader_hostgroup is
        # unique, and a hostgroup cannot be a writer in one pair and a reader
        # in another (the monitor would move servers back and forth).
        writers: dict[int, int] = {}
        readers: dict[int, int] = {}
        table = "mysql_replication_hostgroups"
        for i, row in enumerate(rows):
            for hg, key, same, other, other_key in (
                (row.writer_hostgroup, "writer_hostgroup", writers, readers, "reader_hostgroup"),
                (row.reader_hostgroup, "reader_hostgroup", readers, writers, "writer_hostgroup"),
            ):
                if hg in same:
                    raise self.doc.error(
                        f"hostgroup {hg} is already the {key} of {table}[{same[hg]}]", table, i, key
                    )
                if hg in other:
                    raise self.doc.error(
                        f"hostgroup {hg} is already the {other_key} of {table}[{other[hg]}]",
                        table, i, key,
                    )
            writers[row.writer_hostgroup] = i
            readers[row.reader_hostgroup] = i

    def _check_users(
        self,
        users: tuple[UserConfig, ...],
        servers: tuple[ServerConfig, ...],
        repl: tuple[ReplicationHostgroupConfig, ...],
    ) -> None:
        # ProxySQL: PRIMARY KEY (username, backend), UNIQUE (username, frontend):
        # one frontend row and one backend row per name (usually the same row).
        frontend_rows: dict[str, int] = {}
        backend_rows: dict[str, int] = {}
        for i, user in enumerate(users):
            for enabled, seen, role in (
                (user.frontend, frontend_rows, "frontend"),
                (user.backend, backend_rows, "backend"),
            ):
                if not enabled:
                    continue
                if user.username in seen:
                    first = seen[user.username]
                    raise self.doc.error(
                        f"duplicate user {user.username!r}: mysql_users[{first}]"
                        + _line_note(self.doc.line_of("mysql_users", first, "username"))
                        + f" is already its {role} row",
                        "mysql_users", i, "username",
                    )
                seen[user.username] = i
        hostgroups = {s.hostgroup_id for s in servers}
        repl_hgs = {r.writer_hostgroup for r in repl} | {r.reader_hostgroup for r in repl}
        for i, user in enumerate(users):
            if not user.frontend:
                continue
            hg = user.default_hostgroup
            if hg not in hostgroups and hg not in repl_hgs:
                known = ", ".join(str(h) for h in sorted(hostgroups | repl_hgs)) or "none"
                raise self.doc.error(
                    f"user {user.username!r}: default_hostgroup {hg} has no server and is not a "
                    f"replication hostgroup (known hostgroups: {known})",
                    "mysql_users", i, "default_hostgroup",
                )


def _line_note(line: int | None) -> str:
    """`` (line N)`` after a name, when the document has lines (admin rows have none)."""
    return f" (line {line})" if line else ""


def _is_table_like(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
    )


def _is_wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::", "*")
