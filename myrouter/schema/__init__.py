"""One schema for the whole configuration: every table row and every variable, with its type,
default, range or choices and the checks of one row, written once as pydantic dataclasses.

Used by the TOML loader (:mod:`myrouter.config`, also on SIGHUP), by the admin interface's
``LOAD ... TO RUNTIME`` (:mod:`myrouter.admin.validate`, on the admin rows themselves) and by
the query rules (:mod:`myrouter.routing.rules`, for ``mysql_query_rules`` rows).

* :mod:`.fields`: the field types (Flag, Int, Str, Choice...), :func:`validate` and :class:`SchemaError`;
* :mod:`.variables`: ``[mysql_variables]``, ``[admin_variables]``;
* :mod:`.tables`: ``mysql_servers``, ``mysql_users``, ``mysql_replication_hostgroups``;
* ``mysql_query_rules`` columns: :mod:`myrouter.routing.query_rules.columns` (they name the classifier's kinds and flags);
* :mod:`.sections`: the top-level keys and ``[cluster]``;
* :mod:`.values`: ProxySQL's text forms (listener lists, credentials, password hashes).
"""

from .fields import (
    Choice,
    Flag,
    Int,
    NonEmpty,
    SchemaError,
    Str,
    bounds,
    column_names,
    field_type,
    from_text,
    type_name,
    unknown_key_message,
    validate,
)
from .sections import LOG_FORMATS, ClusterConfig, TopLevel
from .tables import (
    CAUSAL_READS,
    CHECK_TYPES,
    POOL_MODES,
    SERVER_STATUSES,
    ReplicationHostgroupConfig,
    ServerConfig,
    UserConfig,
)
from .values import is_ip, is_loopback_host, is_native_hash, parse_credentials, parse_interfaces
from .variables import ADMIN_COMPAT_VARIABLES, AUTH_PLUGINS, MYSQL_COMPAT_VARIABLES, AdminVariables, MySQLVariables

__all__ = [
    "Choice", "Flag", "Int", "NonEmpty", "Str", "SchemaError", "bounds", "column_names", "field_type", "from_text", "type_name",
    "unknown_key_message", "validate",
    "TopLevel", "ClusterConfig", "LOG_FORMATS",
    "ServerConfig", "UserConfig", "ReplicationHostgroupConfig", "SERVER_STATUSES", "CHECK_TYPES", "POOL_MODES",
    "CAUSAL_READS",
    "MySQLVariables", "AdminVariables", "MYSQL_COMPAT_VARIABLES", "ADMIN_COMPAT_VARIABLES", "AUTH_PLUGINS",
    "is_ip", "is_loopback_host", "is_native_hash", "parse_credentials", "parse_interfaces",
]
