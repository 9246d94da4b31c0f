"""The ``[mysql_variables]`` and ``[admin_variables]`` schema: every ProxySQL ``mysql-*`` /
``admin-*`` variable myrouter knows, with its type, default and range written once.

The TOML loader (:mod:`myrouter.config`) and the admin interface's ``LOAD ... VARIABLES TO
RUNTIME`` (:mod:`myrouter.admin.validate`) both build these classes through
:func:`myrouter.schema.fields.validate`. Variables accepted for compatibility and not acted on
are listed (name -> ProxySQL's default) in ``MYSQL_COMPAT_VARIABLES`` / ``ADMIN_COMPAT_VARIABLES``.
"""

import dataclasses
import os
import re
from typing import Any

from pydantic import field_validator, model_validator
from pydantic.dataclasses import dataclass

from .fields import Choice, Flag, Int, SchemaError, Str
from .values import parse_credentials, parse_interfaces

__all__ = ["MySQLVariables", "AdminVariables", "MYSQL_COMPAT_VARIABLES", "ADMIN_COMPAT_VARIABLES", "AUTH_PLUGINS"]

AUTH_PLUGINS = ("mysql_native_password", "caching_sha2_password")

_DAY_MS = 24 * 3600 * 1000
#: mysql-threads by default: one worker per CPU this process may run on
DEFAULT_THREADS = max(1, min(255, len(os.sched_getaffinity(0))))
_VERSION_RE = re.compile(r"[0-9]+\.[0-9]+[\x21-\x7e]*")


# ProxySQL mysql-* variables that myrouter accepts for compatibility and does
# not act on (name -> ProxySQL's default). Setting one logs a warning.
MYSQL_COMPAT_VARIABLES: dict[str, Any] = {
    "add_ldap_user_comment": "",
    "aurora_max_lag_ms_only_read_from_replicas": 2,
    "auto_increment_delay_multiplex_timeout_ms": 10000,
    "automatic_detect_sqli": False,
    "binlog_reader_connect_retry_msec": 3000,
    "client_host_cache_size": 0,
    "client_host_error_counts": 0,
    "connection_warming": False,
    "data_packets_history_size": 0,
    "default_charset": "utf8",
    "default_collation_connection": "utf8_general_ci",
    "default_max_latency_ms": 1000,
    "default_query_delay": 0,
    "default_reconnect": True,
    "default_session_track_gtids": "OFF",
    "evaluate_replication_lag_on_servers_load": 1,
    "firewall_whitelist_enabled": False,
    "firewall_whitelist_errormsg": "Firewall blocked this query",
    "handle_unknown_charset": 1,
    "handle_warnings": 1,
    "hostgroup_manager_verbose": 1,
    "init_connect": "",
    "kill_backend_connection_when_disconnect": True,
    "ldap_user_variable": "",
    "log_mysql_warnings_enabled": False,
    "log_unhealthy_connections": True,
    "long_query_time": 1000,
    "min_num_servers_lantency_awareness": 1000,
    "mirror_max_concurrency": 16,
    "mirror_max_queue_length": 32000,
    "monitor_aws_rds_topology_discovery_interval": 0,
    "monitor_galera_healthcheck_interval": 5000,
    "monitor_galera_healthcheck_max_timeout_count": 3,
    "monitor_galera_healthcheck_timeout": 800,
    "monitor_groupreplication_healthcheck_interval": 5000,
    "monitor_groupreplication_healthcheck_max_timeout_count": 3,
    "monitor_groupreplication_healthcheck_timeout": 800,
    "monitor_groupreplication_max_transactions_behind_count": 3,
    "monitor_groupreplication_max_transactions_behind_for_read_only": 1,
    "monitor_local_dns_cache_refresh_interval": 60000,
    "monitor_local_dns_cache_ttl": 300000,
    "monitor_local_dns_resolver_queue_maxsize": 128,
    "monitor_query_interval": 60000,
    "monitor_query_timeout": 100,
    "monitor_replication_lag_group_by_host": False,
    "monitor_threads_max": 128,
    "monitor_threads_min": 8,
    "monitor_threads_queue_maxsize": 128,
    "monitor_wait_timeout": True,
    "parse_failure_logs_digest": False,
    "poll_timeout": 2000,
    "poll_timeout_on_failure": 100,
    "proxy_protocol_networks": "",
    "query_cache_handle_warnings": 0,
    "query_cache_size_MB": 256,
    "query_cache_soft_ttl_pct": 0,
    "query_cache_stores_empty_result": True,
    "query_digests_grouping_limit": 3,
    "query_digests_groups_grouping_limit": 10,
    "query_digests_keep_comment": False,
    "query_digests_no_digits": False,
    "query_digests_normalize_digest_text": False,
    "query_digests_replace_null": False,
    "query_digests_track_hostname": False,
    "query_processor_iterations": 0,
    "query_processor_regex": 1,
    "query_rules_fast_routing_algorithm": 1,
    "reset_connection_algorithm": 2,
    "server_capabilities": 569867,
    "servers_stats": True,
    "session_debug": True,
    "session_idle_ms": 1,
    "session_idle_show_processlist": True,
    "sessions_sort": True,
    "set_parser_algorithm": 2,
    "set_query_lock_on_hostgroup": 1,
    "show_processlist_extended": 0,
    "stacksize": 1024 * 1024,
    "stats_time_backend_query": False,
    "stats_time_query_processor": False,
    "threshold_query_length": 512 * 1024,
    "threshold_resultset_size": 4 * 1024 * 1024,
    "throttle_connections_per_sec_to_hostgroup": 1000000,
    "throttle_max_bytes_per_second_to_client": 0,
    "throttle_ratio_server_to_client": 0,
    "unshun_algorithm": 0,
    "verbose_query_error": False,
}

# ProxySQL admin-* variables accepted for compatibility and not acted on.
ADMIN_COMPAT_VARIABLES: dict[str, Any] = {
    "checksum_admin_variables": True,
    "checksum_ldap_variables": True,
    "checksum_mysql_query_rules": True,
    "checksum_mysql_servers": True,
    "checksum_mysql_users": True,
    "checksum_mysql_variables": True,
    "cluster_admin_variables_diffs_before_sync": 3,
    "cluster_admin_variables_save_to_disk": True,
    "cluster_check_interval_ms": 1000,
    "cluster_check_status_frequency": 10,
    "cluster_ldap_variables_diffs_before_sync": 3,
    "cluster_ldap_variables_save_to_disk": True,
    "cluster_mysql_query_rules_diffs_before_sync": 3,
    "cluster_mysql_query_rules_save_to_disk": True,
    "cluster_mysql_servers_diffs_before_sync": 3,
    "cluster_mysql_servers_save_to_disk": True,
    "cluster_mysql_servers_sync_algorithm": 1,
    "cluster_mysql_users_diffs_before_sync": 3,
    "cluster_mysql_users_save_to_disk": True,
    "cluster_mysql_variables_diffs_before_sync": 3,
    "cluster_mysql_variables_save_to_disk": True,
    "cluster_password": "",
    "cluster_proxysql_servers_diffs_before_sync": 3,
    "cluster_proxysql_servers_save_to_disk": True,
    "cluster_username": "",
    "coredump_generation_interval_ms": 30000,
    "coredump_generation_threshold": 10,
    "debug": False,
    "debug_output": 1,
    "prometheus_memory_metrics_interval": 61,
    "read_only": False,
    "refresh_interval": 2000,
    "ssl_keylog_file": "",
    "stats_mysql_connection_pool": 60,
    "stats_mysql_connections": 60,
    "stats_mysql_query_cache": 60,
    "stats_mysql_query_digest_to_disk": 0,
    "stats_system_cpu": 60,
    "stats_system_memory": 60,
    "telnet_admin_ifaces": "",
    "telnet_stats_ifaces": "",
    "vacuum_stats": True,
    "version": "",
    "web_enabled": False,
    "web_port": 6080,
    "web_verbosity": 0,
}


@dataclass(frozen=True, slots=True)
class MySQLVariables:
    """``[mysql_variables]``: ProxySQL's ``mysql-*`` global variables that myrouter uses.

    Defaults are ProxySQL's (2.6/2.7) except where marked DIFFERS; times are
    milliseconds unless the name says otherwise. ``compatibility`` holds the
    ProxySQL variables that are accepted but not used (see
    ``MYSQL_COMPAT_VARIABLES``), with their defaults or the configured value.
    """

    # -- client side ------------------------------------------------------
    # "host:port[;host:port...]", IPv6 as "[::1]:6033". DIFFERS: ProxySQL
    # listens on 0.0.0.0:6033 by default; myrouter on loopback only.
    interfaces: Str = "127.0.0.1:6033"
    # Maximum logged-in client sessions (connections still in the handshake have
    # their own bounds, below). DIFFERS: ProxySQL's default is 10000.
    max_connections: Int(1, 1_000_000) = 2048
    # Version the proxy advertises. DIFFERS: "auto" (myrouter's own value)
    # copies the first reachable backend's greeting; ProxySQL's default "8.0.11".
    server_version: Str = "auto"
    default_authentication_plugin: Choice(AUTH_PLUGINS) = "mysql_native_password"
    max_allowed_packet: Int(8192, 1024 * 1024 * 1024) = 64 * 1024 * 1024
    # A client must finish the handshake within this.
    connect_timeout_client: Int(500, 3600 * 1000) = 10000
    # myrouter's own: connections still in the handshake (not logged in; not counted in
    # max_connections) at most in total; when all are taken, a new connection ends the oldest
    # handshake of its own address if that address holds its per-host share, else the oldest
    # of the address holding the most (ERR 1040). See myrouter/net/handshakes.py.
    max_connections_in_handshake: Int(1, 1_000_000) = 2048
    max_connections_in_handshake_per_host: Int(1, 1_000_000) = 128
    # Idle client sessions are closed after this.
    wait_timeout: Int(0, 20 * _DAY_MS) = 8 * 3600 * 1000
    # myrouter's own: the most time allowed between the first and the last byte
    # of ONE client packet (a packet header claiming 16 MiB whose payload never
    # arrives). Idle time *between* packets is governed by wait_timeout.
    client_packet_timeout: Int(100, 3600 * 1000) = 30000
    # myrouter's own: on SIGTERM, stop accepting and wait at most this long for
    # sessions to finish (in-flight statements, open transactions) before
    # closing them. ProxySQL has no equivalent.
    shutdown_timeout: Int(0, 3600 * 1000) = 30000
    # Worker processes serving clients (myrouter.workers): N > 1 runs a supervisor (admin, monitor,
    # configuration) and N workers sharing the client port; 1 runs one process. Default: the CPUs
    # this process may run on. Takes effect at start. DIFFERS: ProxySQL's are threads, default 4.
    threads: Int(1, 255) = DEFAULT_THREADS
    default_schema: Str = "information_schema"
    # Only the default is accepted (see _unsupported_values): SELECT @@x never pins here.
    keep_multiplexing_variables: Str = "tx_isolation,transaction_isolation,version"
    enable_client_deprecate_eof: Flag = True
    enable_load_data_local_infile: Flag = False
    # Clients that ask for session tracking get the GTID of their writes (MariaDB's last_gtid,
    # SESSION_TRACK_GTIDS) in OK packets; false removes it from them.
    client_session_track_gtid: Flag = True
    # -- backend side -----------------------------------------------------
    # Backend connect timeout. DIFFERS: ProxySQL's default is 1000 (its sample
    # proxysql.cnf uses 3000).
    connect_timeout_server: Int(10, 120 * 1000) = 3000
    connect_timeout_server_max: Int(10, 3600 * 1000) = 10000
    # A server connect failing with 9001 is tried again this many times, connect_retries_delay
    # ms apart, within connect_timeout_server_max.
    connect_retries_on_failure: Int(0, 1000) = 10
    connect_retries_delay: Int(0, 10000) = 1
    query_retries_on_failure: Int(0, 1000) = 1
    default_query_timeout: Int(1000, 20 * _DAY_MS) = _DAY_MS
    # -- query log (rules with log=1; eventslog_default_log=1 logs every statement).
    # myrouter writes JSON lines (ProxySQL's eventslog_format=2) whatever the format says.
    # A relative file name is relative to the working directory. The file is
    # rotated past eventslog_filesize bytes: the full file is renamed to
    # "<name>.00000001", "<name>.00000002", ... (ProxySQL's numbering) and a new
    # one started. DIFFERS: ProxySQL writes into the numbered files themselves;
    # myrouter keeps writing to <name> (one path for tail -F and log shippers).
    # DIFFERS: the smallest size is 4096 (ProxySQL's: 1 MiB).
    eventslog_filename: Str = ""
    eventslog_filesize: Int(4096, 1024 * 1024 * 1024) = 100 * 1024 * 1024
    eventslog_format: Int(0) = 2  # only 2 (JSON) is accepted
    eventslog_default_log: Flag = False
    # -- audit log: one JSON line per connection event (MySQL_Client_Connect_OK,
    # _ERR, _Quit, _Close, admin logins ...) and per error the proxy sends a client
    # or gets from a backend connection (see myrouter/stats/auditlog.py). Empty:
    # off. Named, rotated and sized as the query log.
    auditlog_filename: Str = ""
    auditlog_filesize: Int(4096, 1024 * 1024 * 1024) = 100 * 1024 * 1024
    # false only together with enable_client_deprecate_eof = false (EOF packets are not converted)
    enable_server_deprecate_eof: Flag = True
    multiplexing: Flag = True
    # TLS on the client port: the greeting offers it, clients choose (mysql_users.use_ssl
    # makes it required for a user). Certificates: see ``datadir``. DIFFERS: off unless
    # set, because most drivers (PyMySQL, Connector/Python, MySQL 8's libmysqlclient) switch
    # to TLS by themselves as soon as it is offered, which costs a handshake per connection.
    have_ssl: Flag = False
    # Offer the compressed protocol (CLIENT_COMPRESS, zlib) in the greeting; clients choose
    # (`mariadb --compress`, Connector/Python and mysqlclient `compress=True`).
    have_compress: Flag = True
    # TLS to servers with mysql_servers.use_ssl = 1: a CA file (ca) or a directory of hashed
    # CA certificates (capath, as `openssl rehash` makes it) verifies their certificate chain
    # (neither: encrypted, not verified, as ProxySQL); crl: a PEM file of certificate
    # revocation lists, crlpath: a directory of hashed ones (<hash>.r0), both checked for the
    # server's certificate and needing ca or capath; cert/key: a client certificate; cipher:
    # OpenSSL cipher list for TLS 1.2.
    ssl_p2s_ca: Str = ""
    ssl_p2s_capath: Str = ""
    ssl_p2s_crl: Str = ""
    ssl_p2s_crlpath: Str = ""
    ssl_p2s_cert: Str = ""
    ssl_p2s_key: Str = ""
    ssl_p2s_cipher: Str = ""
    # A connection nothing pins stays with its session this long after a statement (the session's
    # next statement within that time reuses it), then goes back to the pool.
    connection_delay_multiplex_ms: Int(0, 300 * 1000) = 0
    auto_increment_delay_multiplex: Int(0, 1_000_000) = 5
    free_connections_pct: Int(0, 100) = 10
    # A connection that carries its session's own state when the session ends
    # (user variables, temporary tables, a transaction...) is reset with
    # COM_RESET_CONNECTION and given back to the pool; at most this many at a
    # time (0 = close such connections instead).
    connpoll_reset_queue_length: Int(0, 1000) = 50
    connection_max_age_ms: Int(0, _DAY_MS) = 0
    ping_interval_server_msec: Int(1000, 7 * _DAY_MS) = 10000
    ping_timeout_server: Int(10, 600 * 1000) = 200
    max_transaction_time: Int(1000, 20 * _DAY_MS) = 4 * 3600 * 1000
    # A session whose transaction stays open and idle this long is ended
    # (0 = off). DIFFERS: ProxySQL's default is 4 hours; off here, as an
    # idle-in-transaction cut-off must be the operator's choice.
    max_transaction_idle_time: Int(0, 20 * _DAY_MS) = 0
    # myrouter's own pool settings: idle connections kept warm per server and
    # user once the user has connected; idle connections above
    # free_connections_pct of a server's max_connections are closed after
    # pool_idle_timeout_ms (0 = never); backends report every session
    # variable change (session_track_system_variables='*') so state set inside
    # stored procedures or by SET forms the parser does not know is restored
    # on the next connection the session borrows.
    pool_min_idle: Int(0, 10000) = 0
    # myrouter's own: with causal_reads (per user or rule), how long a read
    # waits on a replica (MASTER_GTID_WAIT) for the GTID it must see before
    # it goes to the writer instead.
    causal_reads_timeout_ms: Int(0, 60000) = 100
    pool_idle_timeout_ms: Int(0, 7 * _DAY_MS) = 60000
    session_track_variables: Flag = True
    max_stmts_per_connection: Int(1, 1024) = 20
    max_stmts_cache: Int(128, 1024 * 1024) = 10000
    # An autocommit-off session runs every statement, reads included, inside its transaction on the
    # connection that holds it (ProxySQL's enforce_autocommit_on_reads=true). DIFFERS: ProxySQL's
    # default false runs such a session's reads with autocommit on, out of its transaction (losing
    # its REPEATABLE READ snapshot); myrouter refuses false: read-only transactions go to replicas
    # instead (README, "Read-only transactions on replicas").
    enforce_autocommit_on_reads: Flag = True
    # An autocommit-off session is in a transaction from its first statement to COMMIT/ROLLBACK,
    # whatever the server's IN_TRANS flag says (MariaDB does not set it after SAVEPOINT or a read of
    # no table): its connection stays pinned meanwhile. DIFFERS: ProxySQL's default is false
    # (only IN_TRANS pins), which lets another session ROLLBACK this one's savepoints.
    autocommit_false_is_transaction: Flag = True
    # A connection an autocommit-off session used is closed when given back, never reused.
    autocommit_false_not_reusable: Flag = False
    # SO_KEEPALIVE (and TCP_KEEPIDLE when tcp_keepalive_time > 0) on client and server sockets
    use_tcp_keepalive: Flag = True
    tcp_keepalive_time: Int(0, 7200) = 120  # seconds
    shun_on_failures: Int(0, 10_000_000) = 5
    shun_recovery_time_sec: Int(0, 3600 * 24 * 365) = 10
    # -- statistics ---------------------------------------------------------
    # stats_mysql_commands_counters / stats_mysql_query_digest on or off; the digest limits
    # (myrouter.routing.digest.Digester) apply to statistics, the query log and match_digest.
    commands_stats: Flag = True
    query_digests: Flag = True
    query_digests_lowercase: Flag = False
    query_digests_max_digest_length: Int(16, 1024 * 1024) = 2048
    query_digests_max_query_length: Int(16, 1024 * 1024) = 65000
    # myrouter's own (ProxySQL's table is unbounded): stats_mysql_query_digest keeps at
    # most this many entries; a new one beyond it evicts the least recently seen
    # (counted: stats_mysql_global Query_Digest_Evictions).
    query_digests_max_digests: Int(1, 100_000_000) = 100000
    # -- monitor ------------------------------------------------------------
    monitor_enabled: Flag = True
    monitor_username: Str = "monitor"
    monitor_password: Str = "monitor"
    monitor_connect_interval: Int(100, 7 * _DAY_MS) = 120000
    monitor_connect_timeout: Int(100, 600 * 1000) = 600
    monitor_ping_interval: Int(100, 7 * _DAY_MS) = 8000
    monitor_ping_timeout: Int(100, 600 * 1000) = 1000
    monitor_ping_max_failures: Int(1, 1_000_000) = 3
    monitor_read_only_interval: Int(100, 7 * _DAY_MS) = 1000
    monitor_read_only_timeout: Int(100, 600 * 1000) = 800
    monitor_read_only_max_timeout_count: Int(1, 1_000_000) = 3
    monitor_replication_lag_interval: Int(100, 7 * _DAY_MS) = 10000
    monitor_replication_lag_timeout: Int(100, 600 * 1000) = 1000
    monitor_replication_lag_count: Int(1, 10) = 1
    monitor_slave_lag_when_null: Int(0, 604800) = 60  # seconds
    monitor_writer_is_also_reader: Flag = True
    # How long the monitor.* log tables keep check results (they also keep at
    # most 10000 rows each; see myrouter.monitor.logs).
    monitor_history: Int(1000, 7 * _DAY_MS) = 600000
    # "schema.table" of a pt-heartbeat table (columns ts, server_id): replication
    # lag is then read from it (MAX(ts) on the replica, sub-second) instead of
    # Seconds_Behind_Master. ts is UTC (pt-heartbeat --utc). "" = not used.
    monitor_replication_lag_use_percona_heartbeat: Str = ""
    # myrouter's own: write that heartbeat table on the writers every this many
    # ms (the monitor account then needs CREATE, INSERT and UPDATE on it; the
    # table and its schema are created if missing). 0 = do not write: another
    # writer (pt-heartbeat --utc --update) keeps it. Writers are the servers of
    # mysql_replication_hostgroups writer hostgroups whose read_only is OFF.
    monitor_heartbeat_write_interval: Int(0, _DAY_MS) = 0
    # myrouter's own: when no server of a reader hostgroup (of
    # mysql_replication_hostgroups) can take connections (all SHUNNED or
    # OFFLINE), reads go to its writer hostgroup instead of failing.
    reader_fallback_to_writer: Flag = True
    # -- accepted, not used ---------------------------------------------------
    compatibility: tuple[tuple[str, Any], ...] = tuple(MYSQL_COMPAT_VARIABLES.items())

    @field_validator("interfaces")
    @classmethod
    def _listeners(cls, value: str) -> str:
        parse_interfaces(value)  # ValueError: the message names the entry
        return value

    @field_validator("server_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value != "auto" and not _VERSION_RE.fullmatch(value):
            raise ValueError(f"invalid value {value!r}: expected \"auto\" or a version like \"8.0.36\"")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "MySQLVariables":
        for name, why in _unsupported_values(self):
            value = getattr(self, name)
            shown = ("true" if value else "false") if isinstance(value, bool) else repr(value)
            raise SchemaError(f"{shown} is not supported by myrouter: {why}", name)
        if self.connect_timeout_server > self.connect_timeout_server_max:
            raise SchemaError(
                "connect_timeout_server must not exceed connect_timeout_server_max "
                f"({self.connect_timeout_server} > {self.connect_timeout_server_max})",
                "connect_timeout_server",
            )
        return self

    def listen_addresses(self) -> list[tuple[str, int]]:
        """``interfaces`` parsed (it was validated when loading)."""
        return parse_interfaces(self.interfaces)

    def items(self) -> dict[str, Any]:
        """Every variable, ProxySQL's name (no prefix) -> value, in a stable order."""
        return _variables_items(self)

    def global_variables(self) -> list[tuple[str, str]]:
        """``("mysql-<name>", value)`` rows as ProxySQL's ``global_variables`` shows them."""
        return _global_variables("mysql-", self.items())


@dataclass(frozen=True, slots=True)
class AdminVariables:
    """``[admin_variables]``: ProxySQL's ``admin-*`` variables that myrouter uses."""

    # "user:pass[;user2:pass2]". admin:admin is refused on a non-loopback
    # mysql_ifaces address.
    admin_credentials: Str = "admin:admin"
    stats_credentials: Str = "stats:stats"
    # DIFFERS: ProxySQL listens on 0.0.0.0:6032 by default; myrouter on loopback.
    mysql_ifaces: Str = "127.0.0.1:6032"
    # Prometheus /metrics (ProxySQL's REST API serves it on restapi_port).
    # DIFFERS: ProxySQL's default is false.
    restapi_enabled: Flag = True
    restapi_port: Int(0, 65535) = 6070
    # myrouter's own (ProxySQL's mysql-client_host_error_counts, for the admin port): an
    # address with this many failed admin logins, the last less than
    # client_host_block_time_ms ago, gets ERR 1129 until then (0 = never blocked).
    # See myrouter/admin/hostblock.py.
    client_host_error_counts: Int(0, 1_000_000) = 10
    client_host_block_time_ms: Int(1000, 7 * _DAY_MS) = 60000
    # myrouter's own: offer TLS on the admin port (the client port's certificates, see
    # datadir). DIFFERS: ProxySQL's admin port follows mysql-have_ssl.
    have_ssl: Flag = False
    # mysql_users passwords in plain text become mysql_native_password hashes (*+40 hex) in the
    # runtime (runtime_mysql_users, SAVE MYSQL USERS FROM RUNTIME), as ProxySQL does
    hash_passwords: Flag = True
    compatibility: tuple[tuple[str, Any], ...] = tuple(ADMIN_COMPAT_VARIABLES.items())

    @field_validator("mysql_ifaces")
    @classmethod
    def _listeners(cls, value: str) -> str:
        parse_interfaces(value)
        return value

    @field_validator("admin_credentials", "stats_credentials")
    @classmethod
    def _credentials(cls, value: str) -> str:
        parse_credentials(value)
        return value

    def listen_addresses(self) -> list[tuple[str, int]]:
        """``mysql_ifaces`` parsed (it was validated when loading)."""
        return parse_interfaces(self.mysql_ifaces)

    def admin_accounts(self) -> list[tuple[str, str]]:
        """``admin_credentials`` parsed: read-write admin accounts."""
        return parse_credentials(self.admin_credentials)

    def stats_accounts(self) -> list[tuple[str, str]]:
        """``stats_credentials`` parsed: read-only accounts (stats schema only)."""
        return parse_credentials(self.stats_credentials)

    def items(self) -> dict[str, Any]:
        """Every variable, ProxySQL's name (no prefix) -> value, in a stable order."""
        return _variables_items(self)

    def global_variables(self) -> list[tuple[str, str]]:
        """``("admin-<name>", value)`` rows as ProxySQL's ``global_variables`` shows them."""
        return _global_variables("admin-", self.items())


def _unsupported_values(v: "MySQLVariables") -> list[tuple[str, str]]:
    """``(variable, why)`` for each value of ``[mysql_variables]`` that myrouter accepts only at its
    default: it would otherwise be read by nothing."""
    out = []
    default_keep = MySQLVariables.__dataclass_fields__["keep_multiplexing_variables"].default
    if v.keep_multiplexing_variables != default_keep:
        out.append(("keep_multiplexing_variables",
                    "SELECT @@variable never disables multiplexing (session variables are restored on "
                    "every connection), so there is no list to keep; only the default is accepted"))
    if not v.enable_server_deprecate_eof and v.enable_client_deprecate_eof:
        out.append(("enable_server_deprecate_eof",
                    "result sets are forwarded without converting EOF packets, so servers use the EOF "
                    "style of each client; set enable_client_deprecate_eof = false as well"))
    if not v.enforce_autocommit_on_reads:
        out.append(("enforce_autocommit_on_reads",
                    "an autocommit-off session's reads always run inside its transaction (its snapshot "
                    "and savepoints live there); to send reads to replicas, declare the transaction "
                    "READ ONLY (README: read-only transactions on replicas); only true is accepted"))
    if v.eventslog_format != 2:
        out.append(("eventslog_format", "the query log is written as JSON lines (2); only 2 is accepted"))
    return out


def _variables_items(obj: MySQLVariables | AdminVariables) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        if f.name != "compatibility":
            out[f.name] = getattr(obj, f.name)
    out.update(obj.compatibility)
    return out


def _global_variables(prefix: str, items: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for name, value in items.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        rows.append((prefix + name, text))
    return rows
