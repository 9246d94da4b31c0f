"""Table definitions of the admin database: ProxySQL's names, columns and checks.

Column lists follow ProxySQL 2.x's admin tables (``mysql_servers``,
``mysql_users``, ``mysql_query_rules``, ``mysql_replication_hostgroups``,
``global_variables`` and their ``runtime_`` twins; the ``stats_`` tables),
with myrouter's own columns appended where it has some: ``mysql_users``
gets ``pool_mode`` and ``causal_reads``; ``mysql_query_rules`` gets
``match_kind``, ``match_tables``, ``match_flags`` (comma-separated names) and
``causal_reads``.

Schemas, as in ProxySQL: ``main`` (the memory layer, plus ``runtime_*``
tables refilled from the live proxy when a statement reads them), ``disk``
(a mirror of the TOML files the proxy started from; read-only, written by
``SAVE ... TO DISK``) and ``stats`` (refilled from the proxy's counters when
read) and ``monitor`` (the monitor's check logs, ``mysql_server_*_log``,
refilled from :class:`myrouter.monitor.logs.MonitorLogs` when read). SQLite
finds an unqualified table in ``main`` first and then in the attached schemas,
so ``SELECT * FROM stats_mysql_global`` works as in ProxySQL.
"""

from __future__ import annotations

from myrouter.monitor.logs import LOG_TABLES
from myrouter.routing.rules import COLUMNS as RULE_COLUMNS
from myrouter.stats.digests import BUCKET_COLUMNS

__all__ = [
    "CONFIG_TABLES",
    "RUNTIME_TABLES",
    "STATS_TABLES",
    "MONITOR_TABLES",
    "RUNTIME_ONLY_TABLES",
    "COLUMNS",
    "create_statements",
    "RULE_COLUMNS",
]

_SERVERS = (
    "(hostgroup_id INT CHECK (hostgroup_id>=0) NOT NULL DEFAULT 0 , hostname VARCHAR NOT NULL , "
    "port INT CHECK (port >= 0 AND port <= 65535) NOT NULL DEFAULT 3306 , "
    "gtid_port INT CHECK ((gtid_port <> port OR gtid_port=0) AND gtid_port >= 0 AND gtid_port <= 65535) "
    "NOT NULL DEFAULT 0 , "
    "status VARCHAR CHECK (UPPER(status) IN ('ONLINE','SHUNNED','OFFLINE_SOFT', 'OFFLINE_HARD')) "
    "NOT NULL DEFAULT 'ONLINE' , "
    "weight INT CHECK (weight >= 0 AND weight <=10000000) NOT NULL DEFAULT 1 , "
    "compression INT CHECK (compression >=0 AND compression <= 102400) NOT NULL DEFAULT 0 , "
    "max_connections INT CHECK (max_connections >=0) NOT NULL DEFAULT 1000 , "
    "max_replication_lag INT CHECK (max_replication_lag >= 0 AND max_replication_lag <= 126144000) "
    "NOT NULL DEFAULT 0 , "
    "use_ssl INT CHECK (use_ssl IN(0,1)) NOT NULL DEFAULT 0 , "
    "max_latency_ms INT UNSIGNED CHECK (max_latency_ms>=0) NOT NULL DEFAULT 0 , "
    "comment VARCHAR NOT NULL DEFAULT '' , PRIMARY KEY (hostgroup_id, hostname, port) )"
)

_USERS = (
    "(username VARCHAR NOT NULL , password VARCHAR , "
    "active INT CHECK (active IN (0,1)) NOT NULL DEFAULT 1 , "
    "use_ssl INT CHECK (use_ssl IN (0,1)) NOT NULL DEFAULT 0 , "
    "default_hostgroup INT NOT NULL DEFAULT 0 , default_schema VARCHAR , "
    "schema_locked INT CHECK (schema_locked IN (0,1)) NOT NULL DEFAULT 0 , "
    "transaction_persistent INT CHECK (transaction_persistent IN (0,1)) NOT NULL DEFAULT 1 , "
    "fast_forward INT CHECK (fast_forward IN (0,1)) NOT NULL DEFAULT 0 , "
    "backend INT CHECK (backend IN (0,1)) NOT NULL DEFAULT 1 , "
    "frontend INT CHECK (frontend IN (0,1)) NOT NULL DEFAULT 1 , "
    "max_connections INT CHECK (max_connections >=0) NOT NULL DEFAULT 10000 , "
    "attributes VARCHAR CHECK (JSON_VALID(attributes) OR attributes = '') NOT NULL DEFAULT '' , "
    "comment VARCHAR NOT NULL DEFAULT '' , "
    "pool_mode VARCHAR CHECK (LOWER(pool_mode) IN ('transaction','session','statement')) "
    "NOT NULL DEFAULT 'transaction' , "
    "causal_reads VARCHAR CHECK (LOWER(causal_reads) IN ('off','session','global')) NOT NULL DEFAULT 'off' , "
    "PRIMARY KEY (username, backend) , UNIQUE (username, frontend))"
)

_RULES = (
    "(rule_id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL , "
    "active INT CHECK (active IN (0,1)) NOT NULL DEFAULT 0 , username VARCHAR , schemaname VARCHAR , "
    "flagIN INT CHECK (flagIN >= 0) NOT NULL DEFAULT 0 , client_addr VARCHAR , proxy_addr VARCHAR , "
    "proxy_port INT CHECK (proxy_port >= 0 AND proxy_port <= 65535) , digest VARCHAR , match_digest VARCHAR , "
    "match_pattern VARCHAR , negate_match_pattern INT CHECK (negate_match_pattern IN (0,1)) NOT NULL DEFAULT 0 , "
    "re_modifiers VARCHAR DEFAULT 'CASELESS' , flagOUT INT CHECK (flagOUT >= 0) , "
    "replace_pattern VARCHAR CHECK(CASE WHEN replace_pattern IS NULL THEN 1 WHEN replace_pattern IS NOT NULL "
    "AND match_pattern IS NOT NULL THEN 1 ELSE 0 END) , "
    "destination_hostgroup INT DEFAULT NULL , cache_ttl INT CHECK(cache_ttl > 0) , "
    "cache_empty_result INT CHECK (cache_empty_result IN (0,1)) DEFAULT NULL , "
    "cache_timeout INT CHECK(cache_timeout >= 0) , reconnect INT CHECK (reconnect IN (0,1)) DEFAULT NULL , "
    "timeout INT UNSIGNED CHECK (timeout >= 0) , retries INT CHECK (retries>=0 AND retries <=1000) , "
    "delay INT UNSIGNED CHECK (delay >=0) , next_query_flagIN INT UNSIGNED , mirror_flagOUT INT UNSIGNED , "
    "mirror_hostgroup INT UNSIGNED , error_msg VARCHAR , OK_msg VARCHAR , "
    "sticky_conn INT CHECK (sticky_conn IN (0,1)) , multiplex INT CHECK (multiplex IN (0,1,2)) , "
    "gtid_from_hostgroup INT UNSIGNED , log INT CHECK (log IN (0,1)) , "
    "apply INT CHECK(apply IN (0,1)) NOT NULL DEFAULT 0 , "
    "attributes VARCHAR CHECK (JSON_VALID(attributes) OR attributes = '') NOT NULL DEFAULT '' , "
    "comment VARCHAR , "
    "match_kind VARCHAR , match_tables VARCHAR , match_flags VARCHAR , "
    "causal_reads VARCHAR CHECK (causal_reads IS NULL OR LOWER(causal_reads) IN ('off','session','global')))"
)

_REPLICATION = (
    "(writer_hostgroup INT CHECK (writer_hostgroup>=0) NOT NULL PRIMARY KEY , "
    "reader_hostgroup INT NOT NULL CHECK (reader_hostgroup<>writer_hostgroup AND reader_hostgroup>=0) , "
    "check_type VARCHAR CHECK (LOWER(check_type) IN ('read_only','innodb_read_only','super_read_only',"
    "'read_only|innodb_read_only','read_only&innodb_read_only')) NOT NULL DEFAULT 'read_only' , "
    "comment VARCHAR NOT NULL DEFAULT '', UNIQUE (reader_hostgroup))"
)

_GLOBAL_VARIABLES = "(variable_name VARCHAR NOT NULL PRIMARY KEY , variable_value VARCHAR NOT NULL)"

#: configuration tables (memory layer in ``main``, mirrored in ``disk``), in load order
CONFIG_TABLES: dict[str, str] = {
    "mysql_servers": _SERVERS,
    "mysql_replication_hostgroups": _REPLICATION,
    "mysql_users": _USERS,
    "mysql_query_rules": _RULES,
    "global_variables": _GLOBAL_VARIABLES,
}

#: ``runtime_<table>`` for each configuration table
RUNTIME_TABLES: tuple[str, ...] = tuple(f"runtime_{name}" for name in CONFIG_TABLES)

_BUCKETS = " , ".join(f"{c} INT NOT NULL" for c in BUCKET_COLUMNS)
_DIGEST = (
    "(hostgroup INT , schemaname VARCHAR NOT NULL , username VARCHAR NOT NULL , "
    "client_address VARCHAR NOT NULL , digest VARCHAR NOT NULL , digest_text VARCHAR NOT NULL , "
    "count_star INTEGER NOT NULL , first_seen INTEGER NOT NULL , last_seen INTEGER NOT NULL , "
    "sum_time INTEGER NOT NULL , min_time INTEGER NOT NULL , max_time INTEGER NOT NULL , "
    "sum_rows_affected INTEGER NOT NULL , sum_rows_sent INTEGER NOT NULL , "
    "PRIMARY KEY(hostgroup, schemaname, username, client_address, digest))"
)

#: tables of the ``stats`` schema, refilled from snapshots when a statement reads them
STATS_TABLES: dict[str, str] = {
    "stats_mysql_query_digest": _DIGEST,
    "stats_mysql_query_digest_reset": _DIGEST,
    "stats_mysql_query_rules": "(rule_id INTEGER PRIMARY KEY , hits INT NOT NULL)",
    "stats_mysql_connection_pool": (
        "(hostgroup INT , srv_host VARCHAR , srv_port INT , status VARCHAR , ConnUsed INT , ConnFree INT , "
        "ConnOK INT , ConnERR INT , MaxConnUsed INT , Queries INT , Queries_GTID_sync INT , "
        "Bytes_data_sent INT , Bytes_data_recv INT , Latency_us INT)"
    ),
    "stats_mysql_commands_counters": (
        "(Command VARCHAR NOT NULL PRIMARY KEY , Total_Time_us INT NOT NULL , Total_cnt INT NOT NULL , "
        + _BUCKETS + ")"
    ),
    "stats_mysql_processlist": (
        "(ThreadID INT NOT NULL , SessionID INTEGER PRIMARY KEY , user VARCHAR , db VARCHAR , cli_host VARCHAR , "
        "cli_port INT , hostgroup INT , l_srv_host VARCHAR , l_srv_port INT , srv_host VARCHAR , srv_port INT , "
        "command VARCHAR , time_ms INT NOT NULL , info VARCHAR , status_flags INT , extended_info VARCHAR)"
    ),
    "stats_mysql_global": "(Variable_Name VARCHAR NOT NULL PRIMARY KEY , Variable_Value VARCHAR NOT NULL)",
    "stats_mysql_users": (
        "(username VARCHAR PRIMARY KEY , frontend_connections INT NOT NULL , frontend_max_connections INT NOT NULL)"
    ),
    # [cluster] (myrouter/cluster/): every instance's last heartbeat in etcd
    "stats_cluster_nodes": (
        "(instance VARCHAR PRIMARY KEY , address VARCHAR , last_heartbeat INT , mysql_servers_revision INT , "
        "mysql_users_revision INT , mysql_query_rules_revision INT , mysql_variables_revision INT , status VARCHAR)"
    ),
}

#: ``runtime_`` tables of ``main`` with no memory/disk twin, refilled from the proxy when read
RUNTIME_ONLY_TABLES: dict[str, str] = {
    # [cluster]: the revision of each module running here, who wrote it, the newest one in etcd
    "runtime_cluster": (
        "(module VARCHAR PRIMARY KEY , revision INT , written_by VARCHAR , applied_at INT , etcd_revision INT , "
        "status VARCHAR)"
    ),
}


#: tables of the ``monitor`` schema (ProxySQL's), refilled from the monitor's logs when read
MONITOR_TABLES: dict[str, str] = dict(LOG_TABLES)


def _columns(definition: str) -> tuple[str, ...]:
    """Column names of a ``(col TYPE ..., ..., PRIMARY KEY (...))`` definition."""
    body = definition.strip()[1:-1]
    names = []
    depth = 0
    part = []
    parts = []
    for ch in body:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(part))
            part = []
        else:
            part.append(ch)
    parts.append("".join(part))
    for p in parts:
        word = p.strip().split(None, 1)[0]
        if word.upper() in ("PRIMARY", "UNIQUE", "CHECK", "FOREIGN", "CONSTRAINT"):
            continue
        names.append(word)
    return tuple(names)


#: table name (config, runtime_ or stats_) -> its column names
COLUMNS: dict[str, tuple[str, ...]] = {}
for _name, _definition in CONFIG_TABLES.items():
    COLUMNS[_name] = COLUMNS[f"runtime_{_name}"] = _columns(_definition)
for _name, _definition in STATS_TABLES.items():
    COLUMNS[_name] = _columns(_definition)
for _name, _definition in MONITOR_TABLES.items():
    COLUMNS[_name] = _columns(_definition)
for _name, _definition in RUNTIME_ONLY_TABLES.items():
    COLUMNS[_name] = _columns(_definition)
assert COLUMNS["mysql_query_rules"] == RULE_COLUMNS, "mysql_query_rules columns must match the rule engine's"


def create_statements() -> list[str]:
    """``CREATE TABLE`` statements for all four schemas (``disk``, ``stats`` and ``monitor`` must be attached)."""
    out = []
    for name, definition in CONFIG_TABLES.items():
        out.append(f"CREATE TABLE main.{name} {definition}")
        out.append(f"CREATE TABLE main.runtime_{name} {definition}")
        out.append(f"CREATE TABLE disk.{name} {definition}")
    for name, definition in STATS_TABLES.items():
        out.append(f"CREATE TABLE stats.{name} {definition}")
    for name, definition in MONITOR_TABLES.items():
        out.append(f"CREATE TABLE monitor.{name} {definition}")
    for name, definition in RUNTIME_ONLY_TABLES.items():
        out.append(f"CREATE TABLE main.{name} {definition}")
    return out
