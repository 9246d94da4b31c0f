"""The admin interface's engine: the SQLite database, statement execution, the config layers.

One :class:`Admin` per proxy. Its SQLite database (stdlib ``sqlite3``, in
memory) holds ProxySQL's tables in three schemas (see
:mod:`myrouter.admin.schema`). A statement is either an admin command
(:mod:`myrouter.admin.commands`: LOAD/SAVE, EXPLAIN ROUTING, SHOW ...) or SQL
run on the tables; ``runtime_*`` and ``stats_*`` tables are refilled from the
running proxy just before a statement that names them, ``disk.*`` from the
TOML files. MySQL syntax SQLite refuses is translated with sqlglot and retried.

SQL statements run in a worker thread, one at a time, so client traffic goes
on while an operator's statement runs (what a statement reads of the running
proxy is taken on the event loop first); a statement running longer than
:data:`STATEMENT_TIME_LIMIT` is interrupted (a SQLite progress handler).
What SQLite may do at all is an allow-list (:mod:`myrouter.admin.sqlpolicy`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import trio

from myrouter.net.listen import close_listener
from myrouter.net.tls import TLSSetupError
from myrouter.protocol.auth import Credential
from myrouter.protocol.errors import ER_UNKNOWN_ERROR, MySQLError
from myrouter.routing.explain import explain

from . import stats as S
from .commands import (
    CommandError,
    ExplainRouting,
    Kill,
    LoadSave,
    ProxySQLCommand,
    SetIgnored,
    SetVariable,
    Show,
    TransactionNoop,
    Use,
    parse_command,
)
from .hostblock import HostErrors
from .layers import Layers
from .metrics import registry_for
from .results import AdminSession, OkResult, Result, ResultSet
from .rows import config_tables, rule_rows, runtime_server_rows, variable_defaults
from .schema import COLUMNS, CONFIG_TABLES, MONITOR_TABLES, RUNTIME_ONLY_TABLES, STATS_TABLES, create_statements
from .server import bind_admin, serve_admin
from .sqlpolicy import MAX_VALUE_BYTES, refusal
from .sqltext import UnknownVariable, loggable, substitute_variables, translate

if TYPE_CHECKING:
    from .control import ProxyControl

log = logging.getLogger("myrouter.admin")

__all__ = ["Admin", "AdminSession", "ResultSet", "OkResult", "STATEMENT_TIME_LIMIT"]

#: seconds an admin SQL statement may run before it is interrupted
STATEMENT_TIME_LIMIT = 2.0
#: bytes (values, roughly) of the largest result set an admin statement may return
RESULT_MAX_BYTES = 64 * 1024 * 1024
#: digest entries copied per slice, the event loop free in between (see _digest_snapshot)
DIGEST_SNAPSHOT_SLICE = 5000
VERSION_COMMENT = "(myrouter Admin Module)"

ER_PARSE_ERROR = 1064
ER_NO_SUCH_TABLE = 1146
ER_BAD_FIELD_ERROR = 1054
ER_DUP_ENTRY = 1062
ER_BAD_NULL_ERROR = 1048
ER_CONSTRAINT_FAILED = 4025  # MariaDB's CHECK constraint violation
ER_TABLEACCESS_DENIED_ERROR = 1142
ER_SPECIFIC_ACCESS_DENIED_ERROR = 1227
ER_OPEN_AS_READONLY = 1036
ER_BAD_DB_ERROR = 1049
ER_UNKNOWN_SYSTEM_VARIABLE = 1193
ER_QUERY_INTERRUPTED = 1317
ER_EMPTY_QUERY = 1065
ER_NO_SUCH_THREAD = 1094
ER_TOO_BIG_SELECT = 1104



_DYNAMIC_TABLES = sorted([f"runtime_{n}" for n in CONFIG_TABLES] + list(STATS_TABLES) + list(MONITOR_TABLES)
                         + list(RUNTIME_ONLY_TABLES), key=len, reverse=True)
_DYNAMIC_RE = re.compile(r"\b(" + "|".join(_DYNAMIC_TABLES) + r")\b", re.I)
_DISK_RE = re.compile(r"\bdisk\s*\.", re.I)
_REFUSED_SQL = re.compile(r"\s*(VACUUM|ATTACH|DETACH)\b", re.I)
_WRITE_ACTIONS = {
    sqlite3.SQLITE_INSERT: "INSERT",
    sqlite3.SQLITE_UPDATE: "UPDATE",
    sqlite3.SQLITE_DELETE: "DELETE",
}
_DDL_ACTIONS = {
    sqlite3.SQLITE_DROP_TABLE: "DROP",
    sqlite3.SQLITE_ALTER_TABLE: "ALTER",
    sqlite3.SQLITE_DROP_INDEX: "DROP INDEX",
    sqlite3.SQLITE_DROP_TRIGGER: "DROP TRIGGER",
    sqlite3.SQLITE_DROP_VIEW: "DROP VIEW",
    sqlite3.SQLITE_CREATE_TABLE: "CREATE",
    sqlite3.SQLITE_CREATE_INDEX: "CREATE INDEX",
    sqlite3.SQLITE_CREATE_TRIGGER: "CREATE TRIGGER",
    sqlite3.SQLITE_CREATE_VIEW: "CREATE VIEW",
    sqlite3.SQLITE_CREATE_TEMP_TABLE: "CREATE",
    sqlite3.SQLITE_CREATE_TEMP_INDEX: "CREATE INDEX",
    sqlite3.SQLITE_CREATE_TEMP_TRIGGER: "CREATE TRIGGER",
    sqlite3.SQLITE_CREATE_TEMP_VIEW: "CREATE VIEW",
    sqlite3.SQLITE_DROP_TEMP_TABLE: "DROP",
    sqlite3.SQLITE_DROP_TEMP_INDEX: "DROP INDEX",
    sqlite3.SQLITE_DROP_TEMP_TRIGGER: "DROP TRIGGER",
    sqlite3.SQLITE_DROP_TEMP_VIEW: "DROP VIEW",
}
_MANAGED = frozenset(list(CONFIG_TABLES) + [f"runtime_{n}" for n in CONFIG_TABLES] + list(STATS_TABLES)
                     + list(MONITOR_TABLES) + list(RUNTIME_ONLY_TABLES)
                     + ["sqlite_sequence", "sqlite_master", "sqlite_schema"])


class Admin:
    """The admin interface of one proxy: database, statements, layers, servers."""

    def __init__(self, app: ProxyControl) -> None:
        self.app = app
        self.started = time.time()
        self.listen_addresses: list[tuple[str, int]] = []
        self.metrics_address: tuple[str, int] | None = None
        self._sha2_cache: dict = {}
        self._sockets: list[socket.socket] = []
        self._session: AdminSession | None = None
        self._internal = False
        self._deadline = float("inf")  # set while an operator's statement runs (see _run)
        self._deny_reason: MySQLError | None = None
        self._busy = trio.Lock()  # one statement at a time owns the database (see execute)
        self.host_errors = HostErrors()  # failed admin logins per client address
        self.scrape_tables: dict[str, list] | None = None  # the stats rows of the /metrics scrape being served
        # no statement cache: the authorizer runs when a statement is prepared, and a cached copy of an
        # internal statement (DELETE FROM stats.x) would let an operator skip it
        self.db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False, cached_statements=0)
        self.db.execute("ATTACH DATABASE ':memory:' AS disk")
        self.db.execute("ATTACH DATABASE ':memory:' AS stats")
        self.db.execute("ATTACH DATABASE ':memory:' AS monitor")
        for stmt in create_statements():
            self.db.execute(stmt)
        self._schemas = tuple(row[1] for row in self.db.execute("PRAGMA database_list").fetchall())
        self._register_functions()
        self.db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
        self.db.set_authorizer(self._authorize)
        self.db.set_progress_handler(self._progress, 20000)
        self.layers = Layers(self)
        self.apply_variables()
        self.metrics_registry = registry_for(self)
        with self.internal():
            tables = config_tables(app.config)
            tables["mysql_query_rules"] = rule_rows(app.rules)
            for name, rows in tables.items():
                self.replace_rows(f"main.{name}", rows)
                self.replace_rows(f"disk.{name}", rows)
        self.layers.hash_runtime_passwords()

    def apply_variables(self) -> None:
        """Apply the running variables the admin looks after: the digest cap, and (once serving)
        the admin port's TLS."""
        self.app.digest_stats.max_digests = self.app.vars.query_digests_max_digests
        if self.listen_addresses:
            try:
                self.ensure_tls()
            except TLSSetupError as exc:
                log.error("admin-have_ssl is on but TLS cannot be offered on the admin port: %s", exc)

    def ensure_tls(self) -> None:
        """With admin-have_ssl, the certificates (the client port's, from datadir) are loaded.
        Raises ``TLSSetupError``."""
        if self.app.config.admin_variables.have_ssl and self.app.tls_context is None:
            self.app.load_tls()

    # ------------------------------------------------------------------ accounts

    def lookup_credential(self, username: str) -> Credential | None:
        """The admin or stats account ``username`` (from the running admin variables)."""
        av = self.app.config.admin_variables
        for user, password in av.admin_accounts() + av.stats_accounts():
            if user == username:
                return Credential.from_config(password)
        return None

    def is_read_only(self, username: str) -> bool:
        av = self.app.config.admin_variables
        return not any(u == username for u, _ in av.admin_accounts())

    # ------------------------------------------------------------------ database helpers

    @contextlib.contextmanager
    def internal(self) -> Iterator[None]:
        """Run the admin's own statements: no authorizer checks, one transaction."""
        prev = self._internal
        self._internal = True
        self.db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")
        finally:
            self._internal = prev

    def replace_rows(self, table: str, rows: Sequence[Sequence[Any]]) -> None:
        """Replace a table's content (inside ``internal()``)."""
        assert self._internal
        name = table.split(".")[-1]
        columns = COLUMNS[name]
        self.db.execute(f"DELETE FROM {table}")
        if rows:
            marks = ", ".join("?" * len(columns))
            self.db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
        if name == "mysql_query_rules":
            # keep AUTOINCREMENT above the rule ids present, as a table filled by INSERTs would
            seq_table = table.split(".")[0] + ".sqlite_sequence" if "." in table else "sqlite_sequence"
            self.db.execute(f"DELETE FROM {seq_table} WHERE name = 'mysql_query_rules'")

    def rows(self, table: str, where: str = "", params: Sequence[Any] = ()) -> list[tuple]:
        columns = COLUMNS[table.split(".")[-1]]
        return self.db.execute(f"SELECT {', '.join(columns)} FROM {table} {where}", params).fetchall()

    def _register_functions(self) -> None:
        db = self.db

        def user() -> str:
            s = self._session
            return f"{s.username}@{s.client_host}" if s else ""

        def concat(*args: Any) -> Any:
            if any(a is None for a in args):
                return None
            return "".join(str(a) for a in args)

        def concat_ws(sep: Any, *args: Any) -> Any:
            if sep is None:
                return None
            return str(sep).join(str(a) for a in args if a is not None)

        def unix_timestamp(*args: Any) -> Any:
            return int(time.time()) if not args else args[0]

        def from_unixtime(ts: Any) -> Any:
            if ts is None:
                return None
            return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ts)))

        funcs: list[tuple[str, int, Any]] = [
            ("database", 0, lambda: self._session.schema if self._session else "main"),
            ("schema", 0, lambda: self._session.schema if self._session else "main"),
            ("user", 0, user),
            ("current_user", 0, user),
            ("session_user", 0, user),
            ("system_user", 0, user),
            ("version", 0, lambda: self.app.server_version),
            ("connection_id", 0, lambda: self._session.id if self._session else 0),
            ("now", 0, lambda: time.strftime("%Y-%m-%d %H:%M:%S")),
            ("unix_timestamp", -1, unix_timestamp),
            ("from_unixtime", 1, from_unixtime),
            ("concat", -1, concat),
            ("concat_ws", -1, concat_ws),
        ]
        for name, nargs, fn in funcs:
            db.create_function(name, nargs, fn, deterministic=False)

    def _progress(self) -> int:
        return 1 if time.monotonic() > self._deadline else 0

    def _authorize(self, action: int, arg1: str | None, arg2: str | None, dbname: str | None,
                   source: str | None) -> int:
        reason = refusal(action, arg1, arg2, internal=self._internal)  # the allow-list, for every statement
        if reason is not None:
            return self._deny(MySQLError(ER_SPECIFIC_ACCESS_DENIED_ERROR, reason, "42000"))
        if self._internal:
            return sqlite3.SQLITE_OK
        sess = self._session
        if action in _WRITE_ACTIONS:
            table = arg1 or ""
            if table.startswith("sqlite_"):
                return sqlite3.SQLITE_OK  # AUTOINCREMENT bookkeeping of an allowed INSERT
            verb = _WRITE_ACTIONS[action]
            if sess is not None and sess.read_only:
                return self._deny(MySQLError(
                    ER_TABLEACCESS_DENIED_ERROR,
                    f"{verb} command denied to user '{sess.username}'@'{sess.client_host}' for table '{table}' "
                    "(stats accounts are read-only)", "42000"))
            if dbname == "disk":
                return self._deny(MySQLError(
                    ER_OPEN_AS_READONLY,
                    f"Table 'disk.{table}' is read only: the disk layer is the TOML configuration files; change "
                    "the memory tables and run SAVE ... TO DISK", "HY000"))
            if dbname == "monitor" or table in MONITOR_TABLES:
                return self._deny(MySQLError(ER_OPEN_AS_READONLY, f"Table 'monitor.{table}' is read only: the "
                                             "monitor writes its check results there", "HY000"))
            if table.startswith("runtime_") or dbname == "stats" or table.startswith("stats_"):
                layer = "runtime" if table.startswith("runtime_") else "stats"
                hint = ("change the memory tables and run LOAD ... TO RUNTIME" if layer == "runtime"
                        else "stats tables are filled from the running proxy")
                return self._deny(MySQLError(ER_OPEN_AS_READONLY, f"Table '{table}' is read only: {hint}", "HY000"))
            return sqlite3.SQLITE_OK
        if action in _DDL_ACTIONS:
            verb = _DDL_ACTIONS[action]
            if sess is not None and sess.read_only:
                return self._deny(MySQLError(ER_TABLEACCESS_DENIED_ERROR,
                                             f"{verb} command denied to user '{sess.username}'@'{sess.client_host}' "
                                             "(stats accounts are read-only)", "42000"))
            table = (arg2 if action == sqlite3.SQLITE_ALTER_TABLE else arg1) or ""
            if verb in ("DROP", "ALTER") and table in _MANAGED:
                return self._deny(MySQLError(ER_SPECIFIC_ACCESS_DENIED_ERROR,
                                             f"{verb} of the admin table '{table}' is not allowed", "42000"))
            if dbname in ("disk", "stats", "monitor") and verb.startswith("CREATE"):
                return self._deny(MySQLError(ER_SPECIFIC_ACCESS_DENIED_ERROR,
                                             f"objects cannot be created in the {dbname} schema", "42000"))
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_READ and sess is not None and sess.read_only:
            table = arg1 or ""
            if dbname in ("stats", "temp") or table in ("sqlite_master", "sqlite_schema", "sqlite_temp_master"):
                return sqlite3.SQLITE_OK
            if dbname is None and not arg2 and table in STATS_TABLES:
                return sqlite3.SQLITE_OK  # COUNT(*): SQLite names no schema (nor column) for it
            return self._deny(MySQLError(
                ER_TABLEACCESS_DENIED_ERROR,
                f"SELECT command denied to user '{sess.username}'@'{sess.client_host}' for table '{table}' "
                "(stats accounts may read the stats schema only)", "42000"))
        return sqlite3.SQLITE_OK

    def _deny(self, err: MySQLError) -> int:
        if self._deny_reason is None:
            self._deny_reason = err
        return sqlite3.SQLITE_DENY

    # ------------------------------------------------------------------ execution

    async def reload_config(self) -> None:
        """SIGHUP: ``LOAD ALL FROM CONFIG`` then ``LOAD ALL TO RUNTIME``, as one operator would.

        The whole change is validated first; on an error (raised as MySQLError) the runtime
        is unchanged. Connected clients stay connected and pick the change up on their next
        statement.
        """
        sess = AdminSession(0, "SIGHUP", "localhost", read_only=False)
        await self.execute(sess, "LOAD ALL FROM CONFIG")
        await self.execute(sess, "LOAD ALL TO RUNTIME")

    async def execute(self, sess: AdminSession, statement: str) -> Result:
        """Run one statement (already split) for ``sess``. Raises MySQLError.

        One statement at a time (``_busy``): the SQLite connection, the authorizer's state
        and the tables being refilled belong to it until it ends."""
        try:
            cmd = parse_command(statement)
        except CommandError as exc:
            raise MySQLError(ER_PARSE_ERROR, str(exc), "42000") from None
        async with self._busy:
            if cmd is not None:
                try:
                    return await self._command(sess, cmd)
                except sqlite3.Error as exc:
                    raise self._error(exc) from None
            return await self.execute_sql(sess, statement)

    async def execute_sql(self, sess: AdminSession, statement: str) -> Result:
        """SQL on the tables, in a worker thread: the proxy's clients are served meanwhile.

        What the statement reads of the running proxy (runtime_/stats_/monitor tables) is
        taken here, on the event loop, where that state lives; the tables are filled with it
        and the statement runs in the thread (at most STATEMENT_TIME_LIMIT)."""
        if _REFUSED_SQL.match(statement):
            raise MySQLError(ER_SPECIFIC_ACCESS_DENIED_ERROR,
                             f"{statement.split()[0].upper()} is not allowed in the admin interface", "42000")
        try:
            sql = substitute_variables(statement, lambda name: self.session_variable(sess, name))
        except UnknownVariable as exc:
            raise MySQLError(ER_UNKNOWN_SYSTEM_VARIABLE, f"Unknown system variable '{exc.args[0]}'", "HY000") from None
        fills = await self.dynamic_fills(sql)
        return await trio.to_thread.run_sync(self._fill_and_run, sess, sql, fills)

    def _fill_and_run(self, sess: AdminSession, sql: str, fills: list[tuple[str, Any]]) -> Result:
        """(worker thread) Fill the dynamic tables ``sql`` reads, then run it."""
        if fills:
            with self.internal():
                for table, rows in fills:
                    self.replace_rows(table, rows() if callable(rows) else rows)
        try:
            return self._run(sess, sql)
        except sqlite3.OperationalError as first:
            if self._deny_reason is not None or "interrupted" in str(first):
                raise self._error(first) from None
            translated = translate(sql)
            if translated is None:
                raise self._error(first) from None
            log.debug("admin: retrying %r as %r (sqlglot)", loggable(sql), loggable(translated))
            try:
                return self._run(sess, translated)
            except sqlite3.Error as second:
                log.debug("admin: the translated statement failed too: %s", second)
                raise self._error(first) from None
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def _run(self, sess: AdminSession, sql: str) -> Result:
        self._session = sess
        self._deny_reason = None
        self._deadline = time.monotonic() + STATEMENT_TIME_LIMIT
        try:
            cur = self.db.execute(sql)
            if cur.description is None:
                insert_id = cur.lastrowid if sql.lstrip()[:6].upper() in ("INSERT", "REPLAC") else 0
                return OkResult(affected_rows=max(cur.rowcount, 0), last_insert_id=insert_id or 0)
            columns = [d[0] for d in cur.description]
            return ResultSet(columns, _fetch_bounded(cur))
        finally:
            if self.db.in_transaction:
                # BEGIN IMMEDIATE, SAVEPOINT ...: each admin statement applies at once; a transaction
                # left open would refuse the admin's own (refreshing runtime_/stats_ tables, LOAD/SAVE)
                self.db.execute("ROLLBACK")
            self._session = None
            self._deadline = float("inf")

    def _error(self, exc: sqlite3.Error) -> MySQLError:
        if self._deny_reason is not None:
            err, self._deny_reason = self._deny_reason, None
            return err
        text = str(exc)
        if "interrupted" in text:
            return MySQLError(ER_QUERY_INTERRUPTED,
                              f"Query execution was interrupted: admin statements may run {STATEMENT_TIME_LIMIT:g} s "
                              "at most", "70100")
        if isinstance(exc, sqlite3.IntegrityError):
            if text.startswith("UNIQUE constraint failed"):
                return MySQLError(ER_DUP_ENTRY, f"Duplicate entry: {text}", "23000")
            if text.startswith("NOT NULL constraint failed"):
                column = text.rsplit(".", 1)[-1]
                return MySQLError(ER_BAD_NULL_ERROR, f"Column '{column}' cannot be null ({text})", "23000")
            if text.startswith("CHECK constraint failed"):
                return MySQLError(ER_CONSTRAINT_FAILED, text, "23000")
            return MySQLError(ER_UNKNOWN_ERROR, text, "23000")
        m = re.match(r"no such table: (.+)", text)
        if m:
            return MySQLError(ER_NO_SUCH_TABLE, f"Table '{m.group(1)}' doesn't exist", "42S02")
        m = re.match(r"no such column: (.+)", text)
        if m:
            return MySQLError(ER_BAD_FIELD_ERROR, f"Unknown column '{m.group(1)}'", "42S22")
        if "syntax error" in text or "incomplete input" in text or "unrecognized token" in text:
            return MySQLError(ER_PARSE_ERROR, f"You have an error in your SQL syntax: {text}", "42000")
        return MySQLError(ER_UNKNOWN_ERROR, text, "HY000")

    # ------------------------------------------------------------------ dynamic tables

    async def dynamic_fills(self, sql: str) -> list[tuple[str, Any]]:
        """The runtime_/stats_/monitor tables ``sql`` names, each with its rows (or a function making
        them from data taken now); disk.* is refreshed here if ``sql`` names the disk schema."""
        names = {m.lower() for m in _DYNAMIC_RE.findall(sql)}
        if _DISK_RE.search(sql):
            self.layers.refresh_disk()
        fills: list[tuple[str, Any]] = []
        gathered = await self.app.gather_stats(frozenset(names))  # the workers' rows, merged (if there are workers)
        for name in sorted(names):  # ..._digest before ..._digest_reset
            schema = "main." if name.startswith("runtime_") else "monitor." if name in MONITOR_TABLES else "stats."
            if name in gathered:
                rows: Any = gathered[name]
            elif name == "stats_mysql_query_digest":
                rows: Any = functools.partial(S.digest_rows, await self._digest_snapshot())
            else:
                rows = self.dynamic_rows(name)
            fills.append((schema + name, rows))
        return fills

    async def stats_tables(self, names: frozenset[str]) -> dict[str, list]:
        """The rows of the stats tables ``names`` for the whole instance (every worker's, merged,
        when it runs several), made now."""
        tables = await self.app.gather_stats(names)
        return {**await self.own_stats_tables(names - tables.keys()), **tables}

    async def own_stats_tables(self, names: frozenset[str]) -> dict[str, list]:
        """This process's rows of the stats tables ``names``; the digest table a slice at a time, with
        the event loop free in between (``_digest_snapshot``)."""
        out = self.local_stats_tables(names - {"stats_mysql_query_digest"})
        if "stats_mysql_query_digest" in names:
            out["stats_mysql_query_digest"] = S.digest_rows(await self._digest_snapshot())
        return out

    def local_stats_tables(self, names: frozenset[str]) -> dict[str, list]:
        """This process's rows of the stats tables ``names``, taken at once (``own_stats_tables`` takes
        the digest table a slice at a time)."""
        out = {}
        for name in names:
            rows = self.dynamic_rows(name)
            out[name] = rows() if callable(rows) else rows
        return out

    async def _digest_snapshot(self) -> list:
        """The digest table's rows, copied a slice at a time with the event loop free in between
        (100,000 entries in one go stall clients for a noticeable time)."""
        stats = self.app.digest_stats
        keys = stats.keys()
        rows = []
        for start in range(0, len(keys), DIGEST_SNAPSHOT_SLICE):
            if start:
                await trio.sleep(0)
            rows += stats.rows_for(keys[start:start + DIGEST_SNAPSHOT_SLICE])
        return rows

    def dynamic_rows(self, name: str) -> list[Sequence[Any]] | Callable[[], list[Sequence[Any]]]:
        app = self.app
        if name in ("runtime_cluster", "stats_cluster_nodes"):  # [cluster]: empty without it
            if app.cluster is None:
                return []
            return app.cluster.runtime_rows() if name == "runtime_cluster" else app.cluster.node_rows()
        if name == "runtime_mysql_servers":
            return runtime_server_rows(app.hostgroups, app.config.mysql_servers)
        if name.startswith("runtime_"):
            if name == "runtime_mysql_query_rules":
                return rule_rows(app.rules)
            return config_tables(app.config)[name[len("runtime_"):]]
        if name == "stats_mysql_query_digest":
            return S.digest_rows(app.digest_stats.snapshot())
        if name == "stats_mysql_query_digest_reset":  # made and formatted in the worker thread
            taken = app.digest_stats.take()
            return lambda: S.digest_rows(taken())
        if name == "stats_mysql_query_rules":
            return S.query_rule_rows(app)
        if name == "stats_mysql_connection_pool":
            return S.connection_pool(app, app.topology.retired)
        if name == "stats_mysql_commands_counters":
            return S.commands_counters_rows(app)
        if name == "stats_mysql_processlist":
            return S.processlist_rows(app)
        if name == "stats_mysql_global":
            return S.global_status(app, self.started)
        if name == "stats_mysql_users":
            return S.user_rows(app)
        if name in MONITOR_TABLES:
            return app.monitor.logs.rows(name)
        raise KeyError(name)

    # ------------------------------------------------------------------ session variables

    def session_variable(self, sess: AdminSession | None, name: str) -> Any:
        """``@@name`` as the admin interface answers it (connectors and GUIs ask for these)."""
        app = self.app
        values: dict[str, Any] = {
            "version": app.server_version,
            "version_comment": VERSION_COMMENT,
            "version_compile_os": "Linux",
            "version_compile_machine": "x86_64",
            "protocol_version": 10,
            "hostname": socket.gethostname(),
            "port": self.listen_addresses[0][1] if self.listen_addresses else 0,
            "server_id": 0,
            "autocommit": 1,
            "auto_increment_increment": 1,
            "auto_increment_offset": 1,
            "max_allowed_packet": app.vars.max_allowed_packet,
            "net_buffer_length": 16384,
            "net_write_timeout": 60,
            "net_read_timeout": 30,
            "wait_timeout": 28800,
            "interactive_timeout": 28800,
            "character_set_client": "utf8mb4",
            "character_set_connection": "utf8mb4",
            "character_set_results": "utf8mb4",
            "character_set_server": "utf8mb4",
            "character_set_database": "utf8mb4",
            "character_set_system": "utf8mb3",
            "collation_connection": "utf8mb4_general_ci",
            "collation_server": "utf8mb4_general_ci",
            "collation_database": "utf8mb4_general_ci",
            "sql_mode": "",
            "sql_select_limit": 18446744073709551615,
            "tx_isolation": "REPEATABLE-READ",
            "transaction_isolation": "REPEATABLE-READ",
            "tx_read_only": 0,
            "transaction_read_only": 0,
            "read_only": 1 if sess is not None and sess.read_only else 0,
            "time_zone": "SYSTEM",
            "system_time_zone": time.strftime("%Z"),
            "lower_case_table_names": 0,
            "license": "Apache-2.0",
            "init_connect": "",
            "query_cache_size": 0,
            "query_cache_type": "OFF",
            "performance_schema": 0,
            "have_ssl": "YES" if self.app.config.admin_variables.have_ssl and self.app.tls_context else "DISABLED",
            "have_openssl": "YES" if self.app.config.admin_variables.have_ssl and self.app.tls_context else "DISABLED",
            "default_storage_engine": "SQLite",
            "storage_engine": "SQLite",
            "warning_count": 0,
            "error_count": 0,
            "identity": 0,
            "last_insert_id": 0,
            "session_track_gtids": "OFF",
            "gtid_mode": "OFF",
            "socket": "",
            "datadir": "",
        }
        if name not in values:
            raise UnknownVariable(name)
        return values[name]

    def session_variables(self, sess: AdminSession | None) -> list[tuple[str, Any]]:
        names = ["version", "version_comment", "autocommit", "max_allowed_packet", "character_set_client",
                 "character_set_connection", "character_set_results", "character_set_server",
                 "collation_connection", "collation_server", "sql_mode", "tx_isolation", "transaction_isolation",
                 "time_zone", "system_time_zone", "wait_timeout", "interactive_timeout", "net_write_timeout",
                 "lower_case_table_names", "license", "init_connect", "query_cache_size", "query_cache_type",
                 "performance_schema", "have_ssl", "hostname", "port", "protocol_version", "read_only",
                 "auto_increment_increment", "auto_increment_offset", "default_storage_engine"]
        return [(n, self.session_variable(sess, n)) for n in sorted(names)]

    # ------------------------------------------------------------------ commands

    async def _command(self, sess: AdminSession, cmd) -> Result:
        if isinstance(cmd, (LoadSave, ProxySQLCommand, Kill, SetVariable, ExplainRouting)) and sess.read_only:
            raise MySQLError(ER_SPECIFIC_ACCESS_DENIED_ERROR,
                             f"Access denied for user '{sess.username}': stats accounts are read-only", "42000")
        if isinstance(cmd, LoadSave):
            info = await self.layers.run(cmd)
            return OkResult(info=info)
        if isinstance(cmd, Show):
            return await self._show(sess, cmd)
        if isinstance(cmd, ExplainRouting):
            return self._explain(cmd)
        if isinstance(cmd, SetVariable):
            return self._set_variable(cmd)
        if isinstance(cmd, (SetIgnored, TransactionNoop)):
            return OkResult()
        if isinstance(cmd, Use):
            return self.use(sess, cmd.schema)
        if isinstance(cmd, ProxySQLCommand):
            return await self._proxysql(cmd)
        if isinstance(cmd, Kill):
            return await self._kill(cmd)
        raise MySQLError(ER_UNKNOWN_ERROR, f"unhandled admin command {cmd!r}", "HY000")

    def schemas(self) -> list[str]:
        """The admin's schemas (fixed once created: ATTACH is refused), without touching the database,
        which a statement may be using in its worker thread."""
        return list(self._schemas)

    async def table_columns(self, schema: str, table: str) -> list[str]:
        """Column names of ``schema.table`` (COM_FIELD_LIST); [] if there is no such table."""
        async with self._busy:
            rows = self.db.execute(f'PRAGMA "{schema}".table_info("{table.replace(chr(34), "")}")').fetchall()
        return [r[1] for r in rows]

    def use(self, sess: AdminSession, schema: str) -> Result:
        if schema not in self.schemas():
            raise MySQLError(ER_BAD_DB_ERROR, f"Unknown database '{schema}' (admin schemas: "
                             f"{', '.join(self.schemas())})", "42000")
        sess.schema = schema
        return OkResult()

    async def _show(self, sess: AdminSession, cmd: Show) -> Result:
        w = cmd.what
        if w == "tables":
            schema = cmd.schema or sess.schema
            if schema not in self.schemas():
                raise MySQLError(ER_BAD_DB_ERROR, f"Unknown database '{schema}'", "42000")
            rows = self.db.execute(
                f'SELECT name FROM "{schema}".sqlite_master WHERE type IN (\'table\', \'view\') '
                "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name").fetchall()
            return ResultSet(["tables"], [r for r in rows if _like(cmd.like, r[0])])
        if w == "databases":
            rows = self.db.execute("PRAGMA database_list").fetchall()
            return ResultSet(["seq", "name", "file"], [r for r in rows if _like(cmd.like, r[1])])
        if w == "create_table":
            schemas = [cmd.schema] if cmd.schema else [sess.schema] + [s for s in self.schemas() if s != sess.schema]
            for schema in schemas:
                if schema not in self.schemas():
                    raise MySQLError(ER_BAD_DB_ERROR, f"Unknown database '{schema}'", "42000")
                row = self.db.execute(f'SELECT sql FROM "{schema}".sqlite_master WHERE type IN (\'table\', \'view\') '
                                      "AND name = ?", (cmd.table,)).fetchone()
                if row is not None:
                    return ResultSet(["table", "Create Table"], [(cmd.table, row[0])])
            raise MySQLError(ER_NO_SUCH_TABLE, f"Table '{cmd.table}' doesn't exist", "42S02")
        if w == "processlist":  # every worker's sessions
            rows = (await self.stats_tables(frozenset({"stats_mysql_processlist"})))["stats_mysql_processlist"]
            return ResultSet(["SessionID", "user", "db", "hostgroup", "command", "time_ms", "info"],
                             [(r[1], r[2], r[3], r[6], r[11], r[12], r[13] if cmd.full or r[13] is None else r[13][:100])
                              for r in rows])
        if w in ("mysql_variables", "admin_variables"):
            if sess.read_only:
                raise MySQLError(ER_TABLEACCESS_DENIED_ERROR, f"SELECT command denied to user '{sess.username}'@"
                                 f"'{sess.client_host}' for table 'global_variables' (stats accounts may read the "
                                 "stats schema only)", "42000")
            prefix = "mysql-" if w == "mysql_variables" else "admin-"
            rows = self.db.execute("SELECT variable_name, variable_value FROM main.global_variables "
                                   "WHERE variable_name LIKE ? ORDER BY variable_name", (prefix + "%",)).fetchall()
            return ResultSet(["Variable_name", "Value"], [r for r in rows if _like(cmd.like, r[0])])
        if w in ("mysql_status", "status"):
            rows = (await self.stats_tables(frozenset({"stats_mysql_global"})))["stats_mysql_global"]
            return ResultSet(["Variable_name", "Value"], [r for r in rows if _like(cmd.like, r[0])])
        if w == "variables":
            rows = list(self.session_variables(sess))
            if not sess.read_only:
                rows += self.db.execute("SELECT variable_name, variable_value FROM main.global_variables "
                                        "ORDER BY variable_name").fetchall()
            return ResultSet(["Variable_name", "Value"], [r for r in rows if _like(cmd.like, r[0])])
        if w in ("warnings", "errors"):
            return ResultSet(["Level", "Code", "Message"], [])
        if w == "engines":
            return ResultSet(["Engine", "Support", "Comment", "Transactions", "XA", "Savepoints"],
                             [("SQLite", "DEFAULT", "myrouter admin tables (in memory)", "NO", "NO", "NO")])
        if w == "charset":
            return ResultSet(["Charset", "Description", "Default collation", "Maxlen"],
                             [r for r in [("utf8mb4", "UTF-8 Unicode", "utf8mb4_general_ci", 4)] if _like(cmd.like, r[0])])
        if w == "collation":
            return ResultSet(["Collation", "Charset", "Id", "Default", "Compiled", "Sortlen"],
                             [r for r in [("utf8mb4_general_ci", "utf8mb4", 45, "Yes", "Yes", 1)]
                              if _like(cmd.like, r[0])])
        raise MySQLError(ER_PARSE_ERROR, f"unsupported SHOW {w}", "42000")

    def _explain(self, cmd: ExplainRouting) -> Result:
        app = self.app
        username = cmd.username
        if username is None:
            first = next((u for u in app.config.mysql_users if u.frontend), None)
            username = first.username if first else None
        user = app.config.user(username) if username else None
        if cmd.username is not None and user is None:
            raise MySQLError(ER_UNKNOWN_ERROR, f"EXPLAIN ROUTING: no frontend user {cmd.username!r} in the runtime "
                             "configuration", "HY000")
        schema = cmd.schemaname if cmd.schemaname is not None else (user.default_schema if user else "") or None
        result = explain(cmd.sql, username=username, schemaname=schema, rules=app.rules, classifier=app.classifier,
                         default_hostgroup=user.default_hostgroup if user else 0, digester=app.digester)
        rows = [("user", username or ""), ("schema", schema or "")] + result.rows()
        return ResultSet(["field", "value"], rows)

    def _set_variable(self, cmd: SetVariable) -> Result:
        defaults = variable_defaults()
        canon = next((n for n in defaults if n.lower() == cmd.name), None)
        if canon is None:
            raise MySQLError(ER_UNKNOWN_SYSTEM_VARIABLE, f"Unknown variable '{cmd.name}'", "HY000")
        with self.internal():
            cur = self.db.execute("UPDATE main.global_variables SET variable_value = ? WHERE variable_name = ?",
                                  (cmd.value, canon))
            if cur.rowcount == 0:
                self.db.execute("INSERT INTO main.global_variables VALUES (?, ?)", (canon, cmd.value))
        return OkResult(affected_rows=1)

    async def _proxysql(self, cmd: ProxySQLCommand) -> Result:
        app = self.app
        if cmd.action == "FLUSH QUERY CACHE":
            n = len(app.query_cache)
            app.query_cache.clear()
            n += await app.in_workers(cmd.action)  # the other processes' caches (worker processes)
            return OkResult(affected_rows=n)
        if cmd.action == "FLUSH LOGS":
            # ProxySQL: a new query log and audit log file (here: the current ones get the
            # next number, see myrouter/stats/jsonlog.py; reopened if logrotate moved them)
            try:
                app.flush_logs()
            except OSError as exc:
                raise MySQLError(ER_UNKNOWN_ERROR, f"PROXYSQL FLUSH LOGS: cannot rotate "
                                 f"{exc.filename or 'a log file'}: {exc.strerror or exc}", "HY000") from exc
            await app.in_workers(cmd.action)  # they write to the new files from now on
            return OkResult()
        if cmd.action == "RELOAD TLS":
            # the certificate files in datadir, read again (missing ones generated): new client
            # connections use them; connections already encrypted keep theirs
            try:
                app.load_tls()
            except TLSSetupError as exc:
                raise MySQLError(ER_UNKNOWN_ERROR, f"PROXYSQL RELOAD TLS: {exc}", "HY000") from exc
            await app.in_workers(cmd.action)
            return OkResult()
        # FLUSH MYSQL CLIENT HOSTS: the admin port's failed logins per address (hostblock.py)
        return OkResult(affected_rows=self.host_errors.flush())

    async def _kill(self, cmd: Kill) -> Result:
        if not await self.app.kill_session(cmd.session_id, query_only=cmd.query_only):
            raise MySQLError(ER_NO_SUCH_THREAD, f"Unknown thread id: {cmd.session_id}", "HY000")
        return OkResult()

    # ------------------------------------------------------------------ serving

    def bind(self) -> None:
        """Bind the admin listeners and /metrics (OSError naming the address if one is taken)."""
        self.close()
        self.ensure_tls()  # bad certificate files stop the start here, as for mysql-have_ssl
        self._sockets = bind_admin(self)

    async def serve(self, *, task_status) -> None:
        """Serve what ``bind`` bound: admin clients, /metrics, the offline-server sweeper."""
        if not self._sockets:
            self.bind()
        sockets, self._sockets = self._sockets, []
        await serve_admin(self, sockets, task_status=task_status)

    def close(self) -> None:
        """Close listeners bound but never served."""
        for s in self._sockets:
            close_listener(s)
        self._sockets = []


def _fetch_bounded(cur: sqlite3.Cursor) -> list[Sequence[Any]]:
    """The rows of ``cur``, refused (ERR 1104) past RESULT_MAX_BYTES: a recursive CTE makes
    millions of rows within the time limit."""
    rows: list[Sequence[Any]] = []
    size = 0
    while True:
        chunk = cur.fetchmany(1000)
        if not chunk:
            return rows
        size += sum(len(v) + 8 if isinstance(v, (str, bytes)) else 8 for row in chunk for v in row)
        if size > RESULT_MAX_BYTES:
            raise MySQLError(ER_TOO_BIG_SELECT, f"The result is larger than the admin interface returns "
                             f"({RESULT_MAX_BYTES // (1024 * 1024)} MiB): add a WHERE or a LIMIT", "42000")
        rows.extend(chunk)


def _like(pattern: str | None, value: Any) -> bool:
    """SQL LIKE (case-insensitive, % and _, backslash escapes); None matches everything."""
    if pattern is None:
        return True
    regex = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            regex.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        regex.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.fullmatch("".join(regex), str(value), re.I | re.S) is not None
