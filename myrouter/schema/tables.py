"""The schema of the configuration tables: one class per ProxySQL table row, each column with its
type, default and range written once (``[[mysql_servers]]``, ``[[mysql_users]]``,
``[[mysql_replication_hostgroups]]``; ``[[mysql_query_rules]]`` is
:mod:`myrouter.routing.query_rules.columns`).

Checks of one row live here too (a Unix socket path, a password hash, reader and writer
hostgroups that differ); checks across rows (duplicates, users' default hostgroups) are the
loader's (:mod:`myrouter.config`).
"""

import json
import os

from pydantic import field_validator, model_validator
from pydantic.dataclasses import dataclass

from myrouter.protocol.auth import is_ed25519_password, parse_ed25519_password

from .fields import Choice, Flag, Int, NonEmpty, SchemaError, Str
from .values import is_ip, is_native_hash

__all__ = ["ServerConfig", "UserConfig", "ReplicationHostgroupConfig", "SERVER_STATUSES", "CHECK_TYPES",
           "POOL_MODES", "CAUSAL_READS"]

SERVER_STATUSES = ("ONLINE", "SHUNNED", "OFFLINE_SOFT", "OFFLINE_HARD")
# ProxySQL's mysql_replication_hostgroups.check_type values.
CHECK_TYPES = (
    "read_only",
    "innodb_read_only",
    "super_read_only",
    "read_only|innodb_read_only",
    "read_only&innodb_read_only",
)
POOL_MODES = ("transaction", "session", "statement")
CAUSAL_READS = ("off", "session", "global")

_UNIX_PATH_MAX = 107  # sun_path holds 108 bytes with the final NUL

Status = Choice(SERVER_STATUSES, "upper")
CheckType = Choice(CHECK_TYPES, "lower")
PoolMode = Choice(POOL_MODES, "lower")
CausalReads = Choice(CAUSAL_READS, "lower")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """One ``[[mysql_servers]]`` row (ProxySQL's ``mysql_servers`` columns).

    In the file, ProxySQL's aliases ``address`` (for ``hostname``) and
    ``hostgroup`` (for ``hostgroup_id``) are accepted as in proxysql.cnf.
    """

    hostgroup_id: Int(0)
    hostname: NonEmpty
    port: Int(0, 65535) = 3306
    gtid_port: Int(0, 65535) = 0
    status: Status = "ONLINE"
    weight: Int(0, 10_000_000) = 1
    compression: Int(0, 102400) = 0
    max_connections: Int(0) = 1000
    max_replication_lag: Int(0, 126144000) = 0  # seconds; 0 = not checked
    use_ssl: Flag = False
    max_latency_ms: Int(0) = 0
    comment: Str = ""

    @field_validator("gtid_port")
    @classmethod
    def _no_gtid_port(cls, value: int) -> int:
        if value:
            raise ValueError("gtid_port is not supported by myrouter: causal reads take each write's GTID from "
                             "session tracking (causal_reads), not from a binlog reader; only 0 is accepted")
        return value

    @model_validator(mode="after")
    def _host(self) -> "ServerConfig":
        host = self.hostname
        if self.port == 0 or host.startswith("/"):
            # ProxySQL's convention: port 0 means hostname is the path of a Unix socket
            if self.port != 0:
                raise SchemaError(
                    f"hostname {host!r} is a Unix socket path: set port = 0 (or give a TCP host name)", "hostname")
            if not host.startswith("/"):
                raise SchemaError(f"port 0 means a Unix socket: hostname must be its absolute path, not {host!r}",
                                  "port")
            if len(os.fsencode(host)) > _UNIX_PATH_MAX:
                raise SchemaError(f"Unix socket path {host!r} is longer than {_UNIX_PATH_MAX} bytes", "hostname")
            return self
        if host != host.strip() or any(ch.isspace() for ch in host):
            raise SchemaError(f"invalid host name {host!r}", "hostname")
        if ":" in host and not is_ip(host):
            raise SchemaError(f"invalid host name {host!r}: put the port in 'port'", "hostname")
        return self

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

    username: NonEmpty
    password: Str = ""
    active: Flag = True
    use_ssl: Flag = False
    default_hostgroup: Int(0) = 0
    default_schema: Str = ""
    schema_locked: Flag = False
    transaction_persistent: Flag = True
    fast_forward: Flag = False
    backend: Flag = True
    frontend: Flag = True
    max_connections: Int(0) = 10000
    attributes: Str = ""  # "" or a JSON object (ProxySQL: JSON_VALID)
    comment: Str = ""
    pool_mode: PoolMode = "transaction"
    causal_reads: CausalReads = "off"

    @field_validator("password")
    @classmethod
    def _password(cls, value: str) -> str:
        if value.startswith("*") and not is_native_hash(value):
            raise ValueError("password starts with '*' but is not a mysql_native_password hash "
                             "('*' followed by 40 hex digits)")
        if is_ed25519_password(value) and parse_ed25519_password(value) is None:
            raise ValueError("password starts with '$ED$' but is not an ed25519 public key "
                             "('$ED$' followed by the 43 base64 characters MariaDB stores)")
        return value

    @field_validator("attributes")
    @classmethod
    def _attributes(cls, value: str) -> str:
        if not value:
            return value
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"attributes must be '' or a JSON object: {exc}") from None
        if not isinstance(parsed, dict):
            raise ValueError("attributes must be '' or a JSON object")
        if parsed:
            raise ValueError(f"attributes {sorted(parsed)} are not supported by myrouter; only '' or {{}} is "
                             "accepted")
        return value

    @field_validator("schema_locked")
    @classmethod
    def _schema_not_locked(cls, value: bool) -> bool:
        if value:
            raise ValueError("schema_locked is not supported by myrouter (nor by ProxySQL); only 0 is accepted")
        return value

    @model_validator(mode="after")
    def _has_a_role(self) -> "UserConfig":
        if not self.frontend and not self.backend:
            raise SchemaError("a user row must have frontend or backend set (both are 0)", "frontend")
        return self


@dataclass(frozen=True, slots=True)
class ReplicationHostgroupConfig:
    """One ``[[mysql_replication_hostgroups]]`` row."""

    writer_hostgroup: Int(0)
    reader_hostgroup: Int(0)
    check_type: CheckType = "read_only"
    comment: Str = ""

    @model_validator(mode="after")
    def _two_hostgroups(self) -> "ReplicationHostgroupConfig":
        if self.reader_hostgroup == self.writer_hostgroup:
            raise SchemaError("reader_hostgroup must differ from writer_hostgroup", "reader_hostgroup")
        return self
