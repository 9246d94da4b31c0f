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
import ipaddress
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from myrouter.errors import ConfigError
from myrouter.protocol.auth import is_ed25519_password, parse_ed25519_password
from myrouter.tomlutil import TomlDoc, key_path, load_toml

__all__ = [
    "Config",
    "MySQLVariables",
    "AdminVariables",
    "ServerConfig",
    "UserConfig",
    "ReplicationHostgroupConfig",
    "ClusterConfig",
    "load_config",
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

SERVER_STATUSES = ("ONLINE", "SHUNNED", "OFFLINE_SOFT", "OFFLINE_HARD")
# ProxySQL's mysql_replication_hostgroups.check_type values.
CHECK_TYPES = (
    "read_only",
    "innodb_read_only",
    "super_read_only",
    "read_only|innodb_read_only",
    "read_only&innodb_read_only",
)
AUTH_PLUGINS = ("mysql_native_password", "caching_sha2_password")
LOG_FORMATS = ("text", "json")
POOL_MODES = ("transaction", "session", "statement")
CAUSAL_READS = ("off", "session", "global")

_DAY_MS = 24 * 3600 * 1000
_HEX40_RE = re.compile(r"[0-9A-Fa-f]{40}")
_VERSION_RE = re.compile(r"[0-9]+\.[0-9]+[\x21-\x7e]*")
_PORT_RE = re.compile(r"[0-9]{1,5}")
_UNIX_PATH_MAX = 107  # sun_path holds 108 bytes with the final NUL


# ---------------------------------------------------------------------------
# Variables
# ---------------------------------------------------------------------------


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
    "have_compress": True,
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
    interfaces: str = "127.0.0.1:6033"
    # Maximum logged-in client sessions (connections still in the handshake have
    # their own bounds, below). DIFFERS: ProxySQL's default is 10000.
    max_connections: int = 2048
    # Version the proxy advertises. DIFFERS: "auto" (myrouter's own value)
    # copies the first reachable backend's greeting; ProxySQL's default "8.0.11".
    server_version: str = "auto"
    default_authentication_plugin: str = "mysql_native_password"
    max_allowed_packet: int = 64 * 1024 * 1024
    # A client must finish the handshake within this.
    connect_timeout_client: int = 10000
    # myrouter's own: connections still in the handshake (not logged in; not counted in
    # max_connections) at most in total; when all are taken, a new connection ends the oldest
    # handshake of its own address if that address holds its per-host share, else the oldest
    # of the address holding the most (ERR 1040). See myrouter/net/handshakes.py.
    max_connections_in_handshake: int = 2048
    max_connections_in_handshake_per_host: int = 128
    # Idle client sessions are closed after this.
    wait_timeout: int = 8 * 3600 * 1000
    # myrouter's own: the most time allowed between the first and the last byte
    # of ONE client packet (a packet header claiming 16 MiB whose payload never
    # arrives). Idle time *between* packets is governed by wait_timeout.
    client_packet_timeout: int = 30000
    # myrouter's own: on SIGTERM, stop accepting and wait at most this long for
    # sessions to finish (in-flight statements, open transactions) before
    # closing them. ProxySQL has no equivalent.
    shutdown_timeout: int = 30000
    # Accepted for compatibility: myrouter runs one process for now (a value
    # other than 1 is logged). DIFFERS: ProxySQL's default is 4.
    threads: int = 1
    default_schema: str = "information_schema"
    # Only the default is accepted (see _unsupported_values): SELECT @@x never pins here.
    keep_multiplexing_variables: str = "tx_isolation,transaction_isolation,version"
    enable_client_deprecate_eof: bool = True
    enable_load_data_local_infile: bool = False
    # Clients that ask for session tracking get the GTID of their writes (MariaDB's last_gtid,
    # SESSION_TRACK_GTIDS) in OK packets; false removes it from them.
    client_session_track_gtid: bool = True
    # -- backend side -----------------------------------------------------
    # Backend connect timeout. DIFFERS: ProxySQL's default is 1000 (its sample
    # proxysql.cnf uses 3000).
    connect_timeout_server: int = 3000
    connect_timeout_server_max: int = 10000
    # A server connect failing with 9001 is tried again this many times, connect_retries_delay
    # ms apart, within connect_timeout_server_max.
    connect_retries_on_failure: int = 10
    connect_retries_delay: int = 1
    query_retries_on_failure: int = 1
    default_query_timeout: int = _DAY_MS
    # -- query log (rules with log=1; eventslog_default_log=1 logs every statement).
    # myrouter writes JSON lines (ProxySQL's eventslog_format=2) whatever the format says.
    # A relative file name is relative to the working directory. The file is
    # rotated past eventslog_filesize bytes: the full file is renamed to
    # "<name>.00000001", "<name>.00000002", ... (ProxySQL's numbering) and a new
    # one started. DIFFERS: ProxySQL writes into the numbered files themselves;
    # myrouter keeps writing to <name> (one path for tail -F and log shippers).
    # DIFFERS: the smallest size is 4096 (ProxySQL's: 1 MiB).
    eventslog_filename: str = ""
    eventslog_filesize: int = 100 * 1024 * 1024
    eventslog_format: int = 2  # only 2 (JSON) is accepted
    eventslog_default_log: bool = False
    # -- audit log: one JSON line per connection event (MySQL_Client_Connect_OK,
    # _ERR, _Quit, _Close, admin logins ...) and per error the proxy sends a client
    # or gets from a backend connection (see myrouter/stats/auditlog.py). Empty:
    # off. Named, rotated and sized as the query log.
    auditlog_filename: str = ""
    auditlog_filesize: int = 100 * 1024 * 1024
    # false only together with enable_client_deprecate_eof = false (EOF packets are not converted)
    enable_server_deprecate_eof: bool = True
    multiplexing: bool = True
    # TLS on the client port: the greeting offers it, clients choose (mysql_users.use_ssl
    # makes it required for a user). Certificates: see ``datadir``. DIFFERS: off unless
    # set, because most drivers (PyMySQL, Connector/Python, MySQL 8's libmysqlclient) switch
    # to TLS by themselves as soon as it is offered, which costs a handshake per connection.
    have_ssl: bool = False
    # Offer the compressed protocol (CLIENT_COMPRESS, zlib) in the greeting; clients choose
    # (`mariadb --compress`, Connector/Python and mysqlclient `compress=True`).
    have_compress: bool = True
    # TLS to servers with mysql_servers.use_ssl = 1: a CA file (ca) or a directory of hashed
    # CA certificates (capath, as `openssl rehash` makes it) verifies their certificate chain
    # (neither: encrypted, not verified, as ProxySQL); crl: a PEM file of certificate
    # revocation lists, crlpath: a directory of hashed ones (<hash>.r0), both checked for the
    # server's certificate and needing ca or capath; cert/key: a client certificate; cipher:
    # OpenSSL cipher list for TLS 1.2.
    ssl_p2s_ca: str = ""
    ssl_p2s_capath: str = ""
    ssl_p2s_crl: str = ""
    ssl_p2s_crlpath: str = ""
    ssl_p2s_cert: str = ""
    ssl_p2s_key: str = ""
    ssl_p2s_cipher: str = ""
    # A connection nothing pins stays with its session this long after a statement (the session's
    # next statement within that time reuses it), then goes back to the pool.
    connection_delay_multiplex_ms: int = 0
    auto_increment_delay_multiplex: int = 5
    free_connections_pct: int = 10
    # A connection that carries its session's own state when the session ends
    # (user variables, temporary tables, a transaction...) is reset with
    # COM_RESET_CONNECTION and given back to the pool; at most this many at a
    # time (0 = close such connections instead).
    connpoll_reset_queue_length: int = 50
    connection_max_age_ms: int = 0
    ping_interval_server_msec: int = 10000
    ping_timeout_server: int = 200
    max_transaction_time: int = 4 * 3600 * 1000
    # A session whose transaction stays open and idle this long is ended
    # (0 = off). DIFFERS: ProxySQL's default is 4 hours; off here, as an
    # idle-in-transaction cut-off must be the operator's choice.
    max_transaction_idle_time: int = 0
    # myrouter's own pool settings: idle connections kept warm per server and
    # user once the user has connected; idle connections above
    # free_connections_pct of a server's max_connections are closed after
    # pool_idle_timeout_ms (0 = never); backends report every session
    # variable change (session_track_system_variables='*') so state set inside
    # stored procedures or by SET forms the parser does not know is restored
    # on the next connection the session borrows.
    pool_min_idle: int = 0
    # myrouter's own: with causal_reads (per user or rule), how long a read
    # waits on a replica (MASTER_GTID_WAIT) for the GTID it must see before
    # it goes to the writer instead.
    causal_reads_timeout_ms: int = 100
    pool_idle_timeout_ms: int = 60000
    session_track_variables: bool = True
    max_stmts_per_connection: int = 20
    max_stmts_cache: int = 10000
    # An autocommit-off session runs every statement, reads included, inside its transaction on the
    # connection that holds it (ProxySQL's enforce_autocommit_on_reads=true). DIFFERS: ProxySQL's
    # default false runs such a session's reads with autocommit on, out of its transaction (losing
    # its REPEATABLE READ snapshot); myrouter refuses false: read-only transactions go to replicas
    # instead (README, "Read-only transactions on replicas").
    enforce_autocommit_on_reads: bool = True
    # An autocommit-off session is in a transaction from its first statement to COMMIT/ROLLBACK,
    # whatever the server's IN_TRANS flag says (MariaDB does not set it after SAVEPOINT or a read of
    # no table): its connection stays pinned meanwhile. DIFFERS: ProxySQL's default is false
    # (only IN_TRANS pins), which lets another session ROLLBACK this one's savepoints.
    autocommit_false_is_transaction: bool = True
    # A connection an autocommit-off session used is closed when given back, never reused.
    autocommit_false_not_reusable: bool = False
    # SO_KEEPALIVE (and TCP_KEEPIDLE when tcp_keepalive_time > 0) on client and server sockets
    use_tcp_keepalive: bool = True
    tcp_keepalive_time: int = 120  # seconds
    shun_on_failures: int = 5
    shun_recovery_time_sec: int = 10
    # -- statistics ---------------------------------------------------------
    # stats_mysql_commands_counters / stats_mysql_query_digest on or off; the digest limits
    # (myrouter.routing.digest.Digester) apply to statistics, the query log and match_digest.
    commands_stats: bool = True
    query_digests: bool = True
    query_digests_lowercase: bool = False
    query_digests_max_digest_length: int = 2048
    query_digests_max_query_length: int = 65000
    # myrouter's own (ProxySQL's table is unbounded): stats_mysql_query_digest keeps at
    # most this many entries; a new one beyond it evicts the least recently seen
    # (counted: stats_mysql_global Query_Digest_Evictions).
    query_digests_max_digests: int = 100000
    # -- monitor ------------------------------------------------------------
    monitor_enabled: bool = True
    monitor_username: str = "monitor"
    monitor_password: str = "monitor"
    monitor_connect_interval: int = 120000
    monitor_connect_timeout: int = 600
    monitor_ping_interval: int = 8000
    monitor_ping_timeout: int = 1000
    monitor_ping_max_failures: int = 3
    monitor_read_only_interval: int = 1000
    monitor_read_only_timeout: int = 800
    monitor_read_only_max_timeout_count: int = 3
    monitor_replication_lag_interval: int = 10000
    monitor_replication_lag_timeout: int = 1000
    monitor_replication_lag_count: int = 1
    monitor_slave_lag_when_null: int = 60  # seconds
    monitor_writer_is_also_reader: bool = True
    # How long the monitor.* log tables keep check results (they also keep at
    # most 10000 rows each; see myrouter.monitor.logs).
    monitor_history: int = 600000
    # "schema.table" of a pt-heartbeat table (columns ts, server_id): replication
    # lag is then read from it (MAX(ts) on the replica, sub-second) instead of
    # Seconds_Behind_Master. ts is UTC (pt-heartbeat --utc). "" = not used.
    monitor_replication_lag_use_percona_heartbeat: str = ""
    # myrouter's own: write that heartbeat table on the writers every this many
    # ms (the monitor account then needs CREATE, INSERT and UPDATE on it; the
    # table and its schema are created if missing). 0 = do not write: another
    # writer (pt-heartbeat --utc --update) keeps it. Writers are the servers of
    # mysql_replication_hostgroups writer hostgroups whose read_only is OFF.
    monitor_heartbeat_write_interval: int = 0
    # myrouter's own: when no server of a reader hostgroup (of
    # mysql_replication_hostgroups) can take connections (all SHUNNED or
    # OFFLINE), reads go to its writer hostgroup instead of failing.
    reader_fallback_to_writer: bool = True
    # -- accepted, not used ---------------------------------------------------
    compatibility: tuple[tuple[str, Any], ...] = tuple(MYSQL_COMPAT_VARIABLES.items())

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
    admin_credentials: str = "admin:admin"
    stats_credentials: str = "stats:stats"
    # DIFFERS: ProxySQL listens on 0.0.0.0:6032 by default; myrouter on loopback.
    mysql_ifaces: str = "127.0.0.1:6032"
    # Prometheus /metrics (ProxySQL's REST API serves it on restapi_port).
    # DIFFERS: ProxySQL's default is false.
    restapi_enabled: bool = True
    restapi_port: int = 6070
    # myrouter's own (ProxySQL's mysql-client_host_error_counts, for the admin port): an
    # address with this many failed admin logins, the last less than
    # client_host_block_time_ms ago, gets ERR 1129 until then (0 = never blocked).
    # See myrouter/admin/hostblock.py.
    client_host_error_counts: int = 10
    client_host_block_time_ms: int = 60000
    # myrouter's own: offer TLS on the admin port (the client port's certificates, see
    # datadir). DIFFERS: ProxySQL's admin port follows mysql-have_ssl.
    have_ssl: bool = False
    # mysql_users passwords in plain text become mysql_native_password hashes (*+40 hex) in the
    # runtime (runtime_mysql_users, SAVE MYSQL USERS FROM RUNTIME), as ProxySQL does
    hash_passwords: bool = True
    compatibility: tuple[tuple[str, Any], ...] = tuple(ADMIN_COMPAT_VARIABLES.items())

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

# Integer ranges (inclusive) for typed variables; ProxySQL's where it has one.
_MYSQL_RANGES: dict[str, tuple[int, int]] = {
    "max_connections": (1, 1_000_000),
    "max_allowed_packet": (8192, 1024 * 1024 * 1024),
    "connect_timeout_client": (500, 3600 * 1000),
    "max_connections_in_handshake": (1, 1_000_000),
    "max_connections_in_handshake_per_host": (1, 1_000_000),
    "wait_timeout": (0, 20 * _DAY_MS),
    "client_packet_timeout": (100, 3600 * 1000),
    "shutdown_timeout": (0, 3600 * 1000),
    "threads": (1, 255),
    "connect_timeout_server": (10, 120 * 1000),
    "connect_timeout_server_max": (10, 3600 * 1000),
    "connect_retries_on_failure": (0, 1000),
    "connect_retries_delay": (0, 10000),
    "query_retries_on_failure": (0, 1000),
    "default_query_timeout": (1000, 20 * _DAY_MS),
    "connection_delay_multiplex_ms": (0, 300 * 1000),
    "auto_increment_delay_multiplex": (0, 1_000_000),
    "free_connections_pct": (0, 100),
    "connpoll_reset_queue_length": (0, 1000),
    "connection_max_age_ms": (0, _DAY_MS),
    "ping_interval_server_msec": (1000, 7 * _DAY_MS),
    "ping_timeout_server": (10, 600 * 1000),
    "max_transaction_time": (1000, 20 * _DAY_MS),
    "max_transaction_idle_time": (0, 20 * _DAY_MS),
    "pool_min_idle": (0, 10000),
    "causal_reads_timeout_ms": (0, 60000),
    "pool_idle_timeout_ms": (0, 7 * _DAY_MS),
    "max_stmts_per_connection": (1, 1024),
    "max_stmts_cache": (128, 1024 * 1024),
    "tcp_keepalive_time": (0, 7200),
    "shun_on_failures": (0, 10_000_000),
    "shun_recovery_time_sec": (0, 3600 * 24 * 365),
    "query_digests_max_digest_length": (16, 1024 * 1024),
    "query_digests_max_query_length": (16, 1024 * 1024),
    "query_digests_max_digests": (1, 100_000_000),
    "monitor_connect_interval": (100, 7 * _DAY_MS),
    "monitor_connect_timeout": (100, 600 * 1000),
    "monitor_ping_interval": (100, 7 * _DAY_MS),
    "monitor_ping_timeout": (100, 600 * 1000),
    "monitor_ping_max_failures": (1, 1_000_000),
    "monitor_read_only_interval": (100, 7 * _DAY_MS),
    "monitor_read_only_timeout": (100, 600 * 1000),
    "monitor_read_only_max_timeout_count": (1, 1_000_000),
    "monitor_replication_lag_interval": (100, 7 * _DAY_MS),
    "monitor_replication_lag_timeout": (100, 600 * 1000),
    "monitor_replication_lag_count": (1, 10),
    "monitor_slave_lag_when_null": (0, 604800),
    "eventslog_filesize": (4096, 1024 * 1024 * 1024),
    "auditlog_filesize": (4096, 1024 * 1024 * 1024),
    "monitor_history": (1000, 7 * _DAY_MS),
    "monitor_heartbeat_write_interval": (0, _DAY_MS),
}
# restapi_port 0: any free port (for tests), as for the listener lists.
_ADMIN_RANGES: dict[str, tuple[int, int]] = {"restapi_port": (0, 65535), "client_host_error_counts": (0, 1_000_000),
                                             "client_host_block_time_ms": (1000, 7 * _DAY_MS)}
_MYSQL_CHOICES: dict[str, tuple[str, ...]] = {"default_authentication_plugin": AUTH_PLUGINS}


_MYSQL_DEFAULTS = {f.name: f.default for f in dataclasses.fields(MySQLVariables)}


def _unsupported_values(v: dict[str, Any]) -> list[tuple[str, str]]:
    """``(variable, why)`` for each value of ``[mysql_variables]`` that myrouter accepts only at its
    default: it would otherwise be read by nothing."""
    out = []
    if v["keep_multiplexing_variables"] != _MYSQL_DEFAULTS["keep_multiplexing_variables"]:
        out.append(("keep_multiplexing_variables",
                    "SELECT @@variable never disables multiplexing (session variables are restored on "
                    "every connection), so there is no list to keep; only the default is accepted"))
    if not v["enable_server_deprecate_eof"] and v["enable_client_deprecate_eof"]:
        out.append(("enable_server_deprecate_eof",
                    "result sets are forwarded without converting EOF packets, so servers use the EOF "
                    "style of each client; set enable_client_deprecate_eof = false as well"))
    if not v["enforce_autocommit_on_reads"]:
        out.append(("enforce_autocommit_on_reads",
                    "an autocommit-off session's reads always run inside its transaction (its snapshot "
                    "and savepoints live there); to send reads to replicas, declare the transaction "
                    "READ ONLY (README: read-only transactions on replicas); only true is accepted"))
    if v["eventslog_format"] != 2:
        out.append(("eventslog_format", "the query log is written as JSON lines (2); only 2 is accepted"))
    return out


def _variables_items(obj: MySQLVariables | AdminVariables) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
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


# ---------------------------------------------------------------------------
# Table rows
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """One ``[[mysql_servers]]`` row (ProxySQL's ``mysql_servers`` columns).

    In the file, ProxySQL's aliases ``address`` (for ``hostname``) and
    ``hostgroup`` (for ``hostgroup_id``) are accepted as in proxysql.cnf.
    """

    hostgroup_id: int
    hostname: str
    port: int = 3306
    gtid_port: int = 0
    status: str = "ONLINE"  # one of SERVER_STATUSES (upper case)
    weight: int = 1
    compression: int = 0
    max_connections: int = 1000
    max_replication_lag: int = 0  # seconds; 0 = not checked
    use_ssl: bool = False
    max_latency_ms: int = 0
    comment: str = ""

    @property
    def address(self) -> tuple[str, int]:
        return (self.hostname, self.port)


@dataclass(frozen=True, slots=True)
class UserConfig:
    """One ``[[mysql_users]]`` row (ProxySQL's ``mysql_users`` columns).

    ``password`` is plain text or a mysql_native_password hash (``*`` followed
    by 40 hex digits, as ``SELECT authentication_string`` shows it); see
    :func:`is_native_hash`. A plain-text password cannot start with ``*``.
    ``$ED$`` followed by MariaDB's 43-character ed25519 key (the
    ``authentication_string`` of a user ``IDENTIFIED VIA ed25519``, ProxySQL's
    format) lets clients log in with client_ed25519 only and gives the proxy no
    password for the servers; a plain-text password cannot start with ``$ED$``.
    A row with ``frontend`` is used to authenticate clients; a row with
    ``backend`` holds the credentials used to connect to the servers (the
    usual row has both).

    myrouter's own columns: ``pool_mode`` (``"transaction"``: a backend
    connection is returned to the pool after each transaction when nothing
    pins it; ``"session"``: the client keeps its backend connection;
    ``"statement"``: returned after each statement, transactions refused) and
    ``causal_reads`` (``"off"``, ``"session"``: reads routed to replicas wait
    for the session's last write GTID; ``"global"``: for the last write GTID
    of any session).
    """

    username: str
    password: str = ""
    active: bool = True
    use_ssl: bool = False
    default_hostgroup: int = 0
    default_schema: str = ""
    schema_locked: bool = False
    transaction_persistent: bool = True
    fast_forward: bool = False
    backend: bool = True
    frontend: bool = True
    max_connections: int = 10000
    attributes: str = ""  # "" or a JSON object (ProxySQL: JSON_VALID)
    comment: str = ""
    pool_mode: str = "transaction"
    causal_reads: str = "off"


@dataclass(frozen=True, slots=True)
class ReplicationHostgroupConfig:
    """One ``[[mysql_replication_hostgroups]]`` row."""

    writer_hostgroup: int
    reader_hostgroup: int
    check_type: str = "read_only"  # one of CHECK_TYPES (lower case)
    comment: str = ""


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """``[cluster]``: several myrouter instances sharing their configuration through etcd
    (myrouter/cluster/). ``instance`` empty: host name + client port, chosen at start."""

    etcd_endpoints: tuple[str, ...]
    name: str
    instance: str = ""
    etcd_ca: str = ""  # CA file for https:// endpoints (empty: the system's CAs)
    etcd_cert: str = ""  # client certificate file for https:// endpoints (with etcd_key)
    etcd_key: str = ""
    etcd_username: str = ""  # etcd's own authentication (with etcd_password)
    etcd_password: str = ""


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
# Helpers usable on their own
# ---------------------------------------------------------------------------


def parse_interfaces(s: str) -> list[tuple[str, int]]:
    """Parse ProxySQL's listener list: ``"host:port"`` or ``"host:port;host2:port2"``.

    IPv6 addresses are written in brackets (``"[::1]:6033"``) and returned
    without them. Port 0 asks the kernel for a free port (for tests; the bound
    port is then known from the socket). Raises ``ValueError`` with a readable
    message on bad input (empty list, missing port, port outside 0..65535,
    Unix socket path, duplicate entry).
    """
    if not isinstance(s, str):
        raise ValueError(f"expected a string like '127.0.0.1:6033', got {type(s).__name__}")
    out: list[tuple[str, int]] = []
    for raw in s.split(";"):
        item = raw.strip()
        if not item:
            continue
        if item.startswith("/"):
            raise ValueError(f"{item!r}: Unix socket listeners are not supported")
        if item.startswith("["):
            end = item.find("]")
            if end < 0 or not item.startswith("]:", end):
                raise ValueError(f"{item!r}: expected '[ipv6]:port'")
            host = item[1:end]
            port_text = item[end + 2 :]
            try:
                ipaddress.IPv6Address(host)
            except ValueError as exc:
                raise ValueError(f"{item!r}: {host!r} is not an IPv6 address") from exc
        else:
            host, sep, port_text = item.rpartition(":")
            if not sep or not host:
                raise ValueError(f"{item!r}: expected 'host:port'")
            if ":" in host:
                raise ValueError(f"{item!r}: write IPv6 addresses in brackets: '[{host}]:{port_text}'")
        if not _PORT_RE.fullmatch(port_text):
            raise ValueError(f"{item!r}: port {port_text!r} is not a number")
        port = int(port_text)
        if port > 65535:
            raise ValueError(f"{item!r}: port must be 1..65535 (or 0: any free port)")
        if any(ch.isspace() for ch in host):
            raise ValueError(f"{item!r}: host contains whitespace")
        if (host, port) in out:
            raise ValueError(f"{item!r} is listed twice")
        out.append((host, port))
    if not out:
        raise ValueError("no listener address given (expected 'host:port')")
    return out


def parse_credentials(s: str) -> list[tuple[str, str]]:
    """Parse ProxySQL's ``"user:pass;user2:pass2"``; the password is after the first ``:``.

    Raises ``ValueError`` for an entry without ``:``, an empty user name or
    password, or a user listed twice.
    """
    if not isinstance(s, str):
        raise ValueError(f"expected a string like 'user:password', got {type(s).__name__}")
    out: list[tuple[str, str]] = []
    for raw in s.split(";"):
        item = raw.strip()
        if not item:
            continue
        user, sep, password = item.partition(":")
        if not sep:
            raise ValueError(f"entry {user!r} has no ':' (expected 'user:password')")
        if not user:
            raise ValueError("empty user name (expected 'user:password')")
        if not password:
            raise ValueError(f"user {user!r} has an empty password")
        if any(u == user for u, _ in out):
            raise ValueError(f"user {user!r} is listed twice")
        out.append((user, password))
    if not out:
        raise ValueError("no credentials given (expected 'user:password')")
    return out


def is_native_hash(password: str) -> bool:
    """True when ``password`` is a mysql_native_password hash: ``*`` + 40 hex digits."""
    return len(password) == 41 and password[0] == "*" and _HEX40_RE.fullmatch(password, 1) is not None


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1).

    Wildcards (``0.0.0.0``, ``::``) and other host names are not loopback.
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def load_config(path: str | Path) -> Config:
    """Load and validate a configuration file. Raises ConfigError (file, line, key)."""
    doc = load_toml(path)
    return _Loader(doc).load()


_MISSING = object()


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


class _Section:
    """Typed access to one TOML table (a section or one row of an array of tables).

    Every key read is marked used; :meth:`unused` lists the rest so unknown
    keys are reported instead of ignored. With ``casefold``, keys match
    case-insensitively (ProxySQL variable names); ``aliases`` maps an
    alternative name to its canonical one.
    """

    def __init__(
        self,
        doc: TomlDoc,
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
        self.casefold = casefold
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
        self.used: set[str] = set()

    def error(self, message: str, key: str | None = None) -> ConfigError:
        return self.doc.error(message, self.table, self.index, key)

    def written(self, canon: str) -> str:
        entry = self.entries.get(canon)
        return entry[0] if entry else canon

    def line(self, canon: str | None = None) -> int | None:
        key = self.written(canon) if canon is not None else None
        return self.doc.line_of(self.table, self.index, key)

    def has(self, canon: str) -> bool:
        return canon in self.entries

    def take(self, canon: str) -> Any:
        """The raw value (or _MISSING), marking the key as used."""
        self.used.add(canon)
        entry = self.entries.get(canon)
        return _MISSING if entry is None else entry[1]

    def integer(
        self,
        canon: str,
        default: Any = _MISSING,
        lo: int | None = None,
        hi: int | None = None,
    ) -> int:
        value = self.take(canon)
        if value is _MISSING:
            if default is _MISSING:
                raise self.error(f"required key {canon!r} is missing")
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"expected an integer, got {_type_name(value)}", self.written(canon))
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            if hi is None:
                bound = f">= {lo}"
            elif lo is None:
                bound = f"<= {hi}"
            else:
                bound = f"{lo}..{hi}"
            raise self.error(f"value {value} out of range: must be {bound}", self.written(canon))
        return value

    def flag(self, canon: str, default: bool) -> bool:
        value = self.take(canon)
        if value is _MISSING:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise self.error(
            f"expected true/false or 0/1, got {value!r}" if isinstance(value, int)
            else f"expected true/false or 0/1, got {_type_name(value)}",
            self.written(canon),
        )

    def string(
        self,
        canon: str,
        default: Any = _MISSING,
        choices: tuple[str, ...] | None = None,
        fold: str | None = None,
        nonempty: bool = False,
    ) -> str:
        """A string; with ``choices``, compared after ``fold`` ("lower"/"upper")."""
        value = self.take(canon)
        if value is _MISSING:
            if default is _MISSING:
                raise self.error(f"required key {canon!r} is missing")
            return default
        if not isinstance(value, str):
            raise self.error(f"expected a string, got {_type_name(value)}", self.written(canon))
        if nonempty and not value.strip():
            raise self.error("must not be empty", self.written(canon))
        if choices is not None:
            folded = value.lower() if fold == "lower" else value.upper() if fold == "upper" else value
            if folded not in choices:
                allowed = ", ".join(repr(c) for c in choices)
                raise self.error(f"invalid value {value!r}: expected one of {allowed}", self.written(canon))
            return folded
        return value

    def unused(self) -> list[tuple[str, str, Any]]:
        """``(canonical, written, value)`` for keys nobody read, in file order."""
        return [(c, w, v) for c, (w, v) in self.entries.items() if c not in self.used]

    def reject_unused(self, known: list[str]) -> None:
        for canon, written, _value in self.unused():
            raise self.error(_unknown_key_message(self.table, canon, known), written)


def _unknown_key_message(table: str, key: str, known: list[str]) -> str:
    where = f"[{table}]" if table else "the top level"
    message = f"unknown key in {where}"
    for prefix in ("mysql-", "admin-"):
        if key.startswith(prefix) and key[len(prefix) :] in known:
            return f"{message}: write ProxySQL variables without the {prefix!r} prefix ({key[len(prefix):]!r})"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    return message


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

    def __init__(self, doc: TomlDoc) -> None:
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
            self._server(i, row) for i, row in enumerate(self._rows(top, "mysql_servers"))
        )
        self._check_duplicate_servers(servers)
        repl = tuple(
            self._replication(i, row)
            for i, row in enumerate(self._rows(top, "mysql_replication_hostgroups"))
        )
        self._check_replication(repl)
        users = tuple(self._user(i, row) for i, row in enumerate(self._rows(top, "mysql_users")))
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
        rules_dir_set = section.has("rules_dir")
        rules_text = section.string("rules_dir", "rules", nonempty=True)
        log_format = section.string("log_format", "text", choices=LOG_FORMATS, fold="lower")
        datadir_text = section.string("datadir", "")
        for name in TOP_LEVEL_COMPAT_KEYS:
            if section.has(name):
                section.take(name)
                self.ignored.append(f"{name} (line {section.line(name)})")
        for canon, written, value in section.unused():
            table_like = _is_table_like(value)
            if canon in _PROXYSQL_UNSUPPORTED_TABLES:
                message = f"ProxySQL's {canon} is not supported by myrouter"
                # A table is located by its header; a scalar by its key line.
                raise doc.error(message, written) if table_like else section.error(message, written)
            if table_like:
                close = difflib.get_close_matches(canon, self._TABLES, n=1, cutoff=0.75)
                hint = f" (did you mean [{close[0]}]?)" if close else ""
                known = ", ".join(self._TABLES)
                raise doc.error(f"unknown table [{written}]{hint}; known tables: {known}", written)
            raise section.error(
                _unknown_key_message("", canon, ["rules_dir", "log_format", "datadir", *TOP_LEVEL_COMPAT_KEYS]),
                written
            )
        rules_dir = self._directory(section, "rules_dir", rules_text)
        if rules_dir_set and not rules_dir.exists():
            raise section.error(f"directory {str(rules_dir)!r} does not exist", "rules_dir")
        datadir = self._directory(section, "datadir", datadir_text) if datadir_text else None
        return rules_dir, log_format, datadir

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
                f"expected a table ([{name}]), got {_type_name(value)}", "", None, name
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
                f"expected an array of tables ([[{name}]]), got {_type_name(value)}", "", None, name
            )
        for i, row in enumerate(value):
            if not isinstance(row, dict):
                raise self.doc.error(
                    f"expected an array of tables ([[{name}]]), element {i} is {_type_name(row)}",
                    "",
                    None,
                    name,
                )
        return value

    # -- variables ------------------------------------------------------------

    def _variables(
        self,
        table: str,
        raw: dict[str, Any],
        cls: type,
        ranges: dict[str, tuple[int, int]],
        choices: dict[str, tuple[str, ...]],
        compat: dict[str, Any],
    ) -> tuple[_Section, dict[str, Any]]:
        section = _Section(self.doc, table, None, raw, casefold=True)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "compatibility":
                continue
            default = f.default
            if isinstance(default, bool):
                values[f.name] = section.flag(f.name, default)
            elif isinstance(default, int):
                lo, hi = ranges.get(f.name, (0, None))
                values[f.name] = section.integer(f.name, default, lo, hi)
            else:
                values[f.name] = section.string(f.name, default, choices=choices.get(f.name))
        compat_lower = {name.lower(): name for name in compat}
        compat_values = dict(compat)
        for canon, written, value in section.unused():
            name = compat_lower.get(canon)
            if name is None:
                continue
            section.used.add(canon)
            if isinstance(value, (dict, list)):
                raise section.error(f"expected a single value, got {_type_name(value)}", written)
            compat_values[name] = value
            self.ignored.append(f"{table}.{written} (line {section.line(canon)})")
        known = [f.name for f in dataclasses.fields(cls) if f.name != "compatibility"] + list(compat)
        section.reject_unused(known)
        values["compatibility"] = tuple(compat_values.items())
        return section, values

    def _mysql_variables(self, raw: dict[str, Any]) -> MySQLVariables:
        section, values = self._variables(
            "mysql_variables", raw, MySQLVariables, _MYSQL_RANGES, _MYSQL_CHOICES,
            MYSQL_COMPAT_VARIABLES,
        )
        try:
            parse_interfaces(values["interfaces"])
        except ValueError as exc:
            raise section.error(str(exc), section.written("interfaces")) from exc
        version = values["server_version"]
        if version != "auto" and not _VERSION_RE.fullmatch(version):
            raise section.error(
                f"invalid value {version!r}: expected \"auto\" or a version like \"8.0.36\"",
                section.written("server_version"),
            )
        if values["threads"] != 1:
            log.warning(
                "%s:%s: mysql_variables.threads = %d: myrouter runs a single process for now; ignored",
                self.doc.path, section.line("threads"), values["threads"],
            )
        for name in ("eventslog_filename", "auditlog_filename"):
            filename = values[name]
            if filename and (filename.endswith("/") or Path(filename).is_dir()):
                raise section.error(f"{filename!r} is a directory: give the name of the log file",
                                    section.written(name))
        self._refuse_unsupported(section, values)
        if values["connect_timeout_server"] > values["connect_timeout_server_max"]:
            raise section.error(
                "connect_timeout_server must not exceed connect_timeout_server_max "
                f"({values['connect_timeout_server']} > {values['connect_timeout_server_max']})",
                section.written("connect_timeout_server"),
            )
        return MySQLVariables(**values)

    @staticmethod
    def _refuse_unsupported(section: _Section, values: dict[str, Any]) -> None:
        """ProxySQL variables whose other values myrouter cannot honour: refused, never ignored."""
        for name, why in _unsupported_values(values):
            value = values[name]
            shown = ("true" if value else "false") if isinstance(value, bool) else repr(value)
            raise section.error(f"{shown} is not supported by myrouter: {why}", section.written(name))

    def _admin_variables(self, raw: dict[str, Any]) -> AdminVariables:
        section, values = self._variables(
            "admin_variables", raw, AdminVariables, _ADMIN_RANGES, {}, ADMIN_COMPAT_VARIABLES
        )
        try:
            ifaces = parse_interfaces(values["mysql_ifaces"])
        except ValueError as exc:
            raise section.error(str(exc), section.written("mysql_ifaces")) from exc
        accounts: dict[str, list[tuple[str, str]]] = {}
        for name in ("admin_credentials", "stats_credentials"):
            try:
                accounts[name] = parse_credentials(values[name])
            except ValueError as exc:
                raise section.error(str(exc), section.written(name)) from exc
        exposed = [f"{h}:{p}" for h, p in ifaces if not is_loopback_host(h)]
        if exposed:
            if ("admin", "admin") in accounts["admin_credentials"]:
                key = "admin_credentials" if section.has("admin_credentials") else "mysql_ifaces"
                raise section.error(
                    "admin interface on a non-loopback address must not use the default "
                    f"credentials (admin:admin; listening on {', '.join(exposed)})",
                    section.written(key),
                )
            if ("stats", "stats") in accounts["stats_credentials"]:
                log.warning(
                    "%s: admin interface on %s with the default stats:stats credentials",
                    self.doc.path, ", ".join(exposed),
                )
        return AdminVariables(**values)

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
        """``[cluster]``: etcd endpoints (http:// or https:// URLs), a key prefix, TLS and etcd credentials."""
        section = _Section(self.doc, "cluster", None, self._table(top, "cluster"))
        raw = section.take("etcd_endpoints")
        if raw is _MISSING:
            raise section.error("required key 'etcd_endpoints' is missing (a list like [\"http://127.0.0.1:2379\"])")
        key = section.written("etcd_endpoints")
        if not isinstance(raw, list) or not raw or not all(isinstance(e, str) for e in raw):
            raise section.error("expected a non-empty array of URLs like \"http://127.0.0.1:2379\"", key)
        endpoints = []
        for url in raw:
            m = _ETCD_URL_RE.fullmatch(url.strip())
            if m is None:
                raise section.error(f"{url!r} is not an etcd URL like \"http://127.0.0.1:2379\" "
                                    "or \"https://etcd1:2379\"", key)
            endpoints.append(url.strip().rstrip("/"))
        schemes = {e.split(":", 1)[0] for e in endpoints}
        if len(schemes) > 1:
            raise section.error("all endpoints must use the same scheme (http:// or https://)", key)
        name = section.string("name", nonempty=True)
        if not _CLUSTER_NAME_RE.fullmatch(name):
            raise section.error(f"invalid name {name!r}: letters, digits, '_', '-' and '.' only "
                                "(it is a key prefix in etcd)", section.written("name"))
        instance = section.string("instance", "")
        if instance and not _CLUSTER_NAME_RE.fullmatch(instance.replace(":", "_")):
            raise section.error(f"invalid instance {instance!r}: letters, digits, '_', '-', '.' and ':' only",
                                section.written("instance"))
        files = {}
        for k in ("etcd_ca", "etcd_cert", "etcd_key"):
            text = section.string(k, "")
            if text:
                path = Path(text).expanduser()
                if not path.is_absolute():
                    path = self.doc.path.resolve().parent / path
                if not path.is_file():
                    raise section.error(f"file {str(path)!r} does not exist", section.written(k))
                if "https" not in schemes:
                    raise section.error("only used with https:// endpoints", section.written(k))
                text = str(path)
            files[k] = text
        if bool(files["etcd_cert"]) != bool(files["etcd_key"]):
            missing = "etcd_key" if files["etcd_cert"] else "etcd_cert"
            raise section.error(f"etcd_cert and etcd_key go together: {missing} is missing",
                                section.written("etcd_cert" if files["etcd_cert"] else "etcd_key"))
        username = section.string("etcd_username", "")
        password = section.string("etcd_password", "")
        if password and not username:
            raise section.error("etcd_password without etcd_username", section.written("etcd_password"))
        section.reject_unused(["etcd_endpoints", "name", "instance", "etcd_ca", "etcd_cert", "etcd_key",
                               "etcd_username", "etcd_password"])
        return ClusterConfig(tuple(endpoints), name, instance, files["etcd_ca"], files["etcd_cert"],
                             files["etcd_key"], username, password)

    # -- rows -----------------------------------------------------------------

    def _server(self, i: int, raw: dict[str, Any]) -> ServerConfig:
        s = _Section(
            self.doc, "mysql_servers", i, raw,
            aliases={"address": "hostname", "hostgroup": "hostgroup_id"},
        )
        server = ServerConfig(
            hostgroup_id=s.integer("hostgroup_id", lo=0),
            hostname=s.string("hostname", nonempty=True),
            port=s.integer("port", 3306, 0, 65535),
            gtid_port=s.integer("gtid_port", 0, 0, 65535),
            status=s.string("status", "ONLINE", choices=SERVER_STATUSES, fold="upper"),
            weight=s.integer("weight", 1, 0, 10_000_000),
            compression=s.integer("compression", 0, 0, 102400),
            max_connections=s.integer("max_connections", 1000, 0),
            max_replication_lag=s.integer("max_replication_lag", 0, 0, 126144000),
            use_ssl=s.flag("use_ssl", False),
            max_latency_ms=s.integer("max_latency_ms", 0, 0),
            comment=s.string("comment", ""),
        )
        s.reject_unused([f.name for f in dataclasses.fields(ServerConfig)] + ["address", "hostgroup"])
        if server.gtid_port:
            raise s.error("gtid_port is not supported by myrouter: causal reads take each write's GTID from "
                          "session tracking (causal_reads), not from a binlog reader; only 0 is accepted",
                          "gtid_port")
        host = server.hostname
        if server.port == 0 or host.startswith("/"):
            # ProxySQL's convention: port 0 means hostname is the path of a Unix socket
            if server.port != 0:
                raise s.error(
                    f"hostname {host!r} is a Unix socket path: set port = 0 (or give a TCP host name)",
                    s.written("hostname"),
                )
            if not host.startswith("/"):
                raise s.error(
                    f"port 0 means a Unix socket: hostname must be its absolute path, not {host!r}",
                    s.written("port"),
                )
            if len(os.fsencode(host)) > _UNIX_PATH_MAX:
                raise s.error(
                    f"Unix socket path {host!r} is longer than {_UNIX_PATH_MAX} bytes", s.written("hostname")
                )
            return server
        if host != host.strip() or any(ch.isspace() for ch in host):
            raise s.error(f"invalid host name {host!r}", s.written("hostname"))
        if ":" in host and not _is_ip(host):
            raise s.error(
                f"invalid host name {host!r}: put the port in 'port'", s.written("hostname")
            )
        return server

    def _check_duplicate_servers(self, servers: tuple[ServerConfig, ...]) -> None:
        seen: dict[tuple[int, str, int], int] = {}
        for i, srv in enumerate(servers):
            key = (srv.hostgroup_id, srv.hostname, srv.port)
            if key in seen:
                first = seen[key]
                raise self.doc.error(
                    f"duplicate server (hostgroup_id={srv.hostgroup_id}, hostname={srv.hostname!r}, "
                    f"port={srv.port}): already defined by mysql_servers[{first}] "
                    f"(line {self.doc.line_of('mysql_servers', first)})",
                    "mysql_servers", i, None,
                )
            seen[key] = i

    def _replication(self, i: int, raw: dict[str, Any]) -> ReplicationHostgroupConfig:
        s = _Section(self.doc, "mysql_replication_hostgroups", i, raw)
        row = ReplicationHostgroupConfig(
            writer_hostgroup=s.integer("writer_hostgroup", lo=0),
            reader_hostgroup=s.integer("reader_hostgroup", lo=0),
            check_type=s.string("check_type", "read_only", choices=CHECK_TYPES, fold="lower"),
            comment=s.string("comment", ""),
        )
        s.reject_unused([f.name for f in dataclasses.fields(ReplicationHostgroupConfig)])
        if row.reader_hostgroup == row.writer_hostgroup:
            raise s.error(
                "reader_hostgroup must differ from writer_hostgroup", s.written("reader_hostgroup")
            )
        return row

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

    def _user(self, i: int, raw: dict[str, Any]) -> UserConfig:
        s = _Section(self.doc, "mysql_users", i, raw)
        user = UserConfig(
            username=s.string("username", nonempty=True),
            password=s.string("password", ""),
            active=s.flag("active", True),
            use_ssl=s.flag("use_ssl", False),
            default_hostgroup=s.integer("default_hostgroup", 0, 0),
            default_schema=s.string("default_schema", ""),
            schema_locked=s.flag("schema_locked", False),
            transaction_persistent=s.flag("transaction_persistent", True),
            fast_forward=s.flag("fast_forward", False),
            backend=s.flag("backend", True),
            frontend=s.flag("frontend", True),
            max_connections=s.integer("max_connections", 10000, 0),
            attributes=s.string("attributes", ""),
            comment=s.string("comment", ""),
            pool_mode=s.string("pool_mode", "transaction", choices=POOL_MODES, fold="lower"),
            causal_reads=s.string("causal_reads", "off", choices=CAUSAL_READS, fold="lower"),
        )
        s.reject_unused([f.name for f in dataclasses.fields(UserConfig)])
        if user.password.startswith("*") and not is_native_hash(user.password):
            raise s.error(
                "password starts with '*' but is not a mysql_native_password hash "
                "('*' followed by 40 hex digits)",
                "password",
            )
        if is_ed25519_password(user.password) and parse_ed25519_password(user.password) is None:
            raise s.error(
                "password starts with '$ED$' but is not an ed25519 public key "
                "('$ED$' followed by the 43 base64 characters MariaDB stores)",
                "password",
            )
        if user.attributes:
            try:
                parsed = json.loads(user.attributes)
            except json.JSONDecodeError as exc:
                raise s.error(f"attributes must be '' or a JSON object: {exc}", "attributes") from exc
            if not isinstance(parsed, dict):
                raise s.error("attributes must be '' or a JSON object", "attributes")
            if parsed:
                raise s.error(f"attributes {sorted(parsed)} are not supported by myrouter; only '' or {{}} is "
                              "accepted", "attributes")
        if user.schema_locked:
            raise s.error("schema_locked is not supported by myrouter (nor by ProxySQL); only 0 is accepted",
                          "schema_locked")
        if not user.frontend and not user.backend:
            raise s.error("a user row must have frontend or backend set (both are 0)", "frontend")
        return user

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
                        f"duplicate user {user.username!r}: mysql_users[{first}] (line "
                        f"{self.doc.line_of('mysql_users', first, 'username')}) is already its "
                        f"{role} row",
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


_ETCD_URL_RE = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}/?")
_CLUSTER_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")


def _is_table_like(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
    )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::", "*")
