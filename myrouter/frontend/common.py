"""What the parts of a client session share: constants (flag tests as plain ints: enum.Flag operators
allocate and cost ~0.4 us each), the session's lifecycle states and the exception that ends it.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import re

import trio

from ..config import MySQLVariables
from ..protocol.constants import Capability, Command, Status
from ..routing.classifier import StatementFlag as _F
from ..routing.rules import RouteDecision
from .decisions import AFTER_MASK as _AFTER_MASK
# the statement flags and status bits as plain ints, defined once in decisions.py
from .decisions import (  # noqa: F401 - some only re-exported to the session's modules
    _LOCK_TABLES,
    _GET_LOCK,
    _CREATE_TEMP,
    _UV_ASSIGN,
    _UV_READ,
    _DIAGNOSTICS,
    _AUTOCOMMIT,
    _STATE_CHANGED,
    _SQL_CALC_FOUND_ROWS,
    _TEXT_PREPARE,
    _SAVEPOINT,
    _READ_ONLY_TRANSACTION,
    _HANDLER,
    _XA,
)

log = logging.getLogger("myrouter.session")

C = Capability

# What the proxy offers clients. Not offered: query attributes and optional result-set
# metadata (they change packet layouts). SSL and COMPRESS (zlib) are added when have_ssl /
# have_compress allow; zstd (MySQL 8's ZSTD_COMPRESSION_ALGORITHM) is not offered.
SERVER_CAPABILITIES = (
    C.LONG_PASSWORD | C.FOUND_ROWS | C.LONG_FLAG | C.CONNECT_WITH_DB | C.NO_SCHEMA | C.ODBC | C.LOCAL_FILES
    | C.IGNORE_SPACE | C.PROTOCOL_41 | C.INTERACTIVE | C.IGNORE_SIGPIPE | C.TRANSACTIONS | C.SECURE_CONNECTION
    | C.MULTI_STATEMENTS | C.MULTI_RESULTS | C.PS_MULTI_RESULTS | C.PLUGIN_AUTH | C.CONNECT_ATTRS
    | C.PLUGIN_AUTH_LENENC_CLIENT_DATA | C.CAN_HANDLE_EXPIRED_PASSWORDS | C.SESSION_TRACK
)

_COM_QUERY = int(Command.QUERY)
# digests whose classification and routing a session remembers (per session: they depend on its user,
# addresses and schema)
_SESSION_PLANS = 64
_wait_readable = trio.lowlevel.wait_readable
_MAYBE_KILL = frozenset((b"k", b"K", b" ", b"\t", b"\n", b"\r"))  # a cheap first test before the regex
_KILL_RE = re.compile(rb"\s*kill\s+(?:(query|connection)\s+)?(\d+)\s*;?\s*\Z", re.I)
# The largest packet a client may send before it has logged in. A HandshakeResponse41 is a
# few hundred bytes plus its connection attributes, which MySQL caps at 64 KiB; the rest
# (user, auth data, schema, plugin names) fits in 4 KiB. A header announcing more is refused
# at once (ERR 1153), before any of its payload is buffered.
MAX_HANDSHAKE_PACKET = 65535 + 4096

# Commands that never reach a backend through the proxy.
_REFUSED_COMMANDS = frozenset(
    (
        Command.SLEEP, Command.CONNECT, Command.TIME, Command.DELAYED_INSERT, Command.DAEMON,
        Command.SHUTDOWN, Command.REFRESH, Command.DEBUG, Command.CREATE_DB, Command.DROP_DB,
        Command.BINLOG_DUMP, Command.BINLOG_DUMP_GTID, Command.TABLE_DUMP, Command.CONNECT_OUT,
        Command.REGISTER_SLAVE,
    )
)


ER_QUERY_TIMEOUT = 3024
# default_query_timeout at its default means "no deadline": no cancel scope per statement
_DEFAULT_QUERY_TIMEOUT = MySQLVariables().default_query_timeout
# Statements whose result depends on the connection they run on: never retried elsewhere.
_STATEFUL = (_F.SIDE_EFFECT | _F.USER_VARIABLE_ASSIGN | _F.USER_VARIABLE_READ | _F.DIAGNOSTICS
             | _F.SQL_CALC_FOUND_ROWS | _F.SELECT_INTO | _F.LOCKING).value
# Flag tests on the hot path use plain ints: enum.Flag operators allocate and cost ~0.4 us each.
_SET_GLOBAL = _F.SET_GLOBAL_VARIABLE.value
_SESSION_TRACK = int(C.SESSION_TRACK)
_PROTOCOL_41 = int(C.PROTOCOL_41)
_TRACKING_CAPS = int(C.PROTOCOL_41 | C.SESSION_TRACK)
_CURSOR_EXISTS = int(Status.CURSOR_EXISTS)
_LAST_ROW_SENT = int(Status.LAST_ROW_SENT)
_DYNAMIC_SQL = (_F.TEXT_PREPARE | _F.TEXT_EXECUTE).value  # PREPARE s FROM '...', EXECUTE IMMEDIATE '...'
ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION = 1792
_LOCAL_ANSWERS = (_F.LAST_INSERT_ID | _F.ROW_COUNT | _F.FOUND_ROWS | _F.CONNECTION_ID).value
# Ids a client sees are the proxy's session ids (see proxyids): statements that show or use them.
_CONNECTION_ID = _F.CONNECTION_ID.value
_PROCESSLIST = _F.PROCESSLIST.value
_KILL = _F.KILL.value
_SESSION_IDS = _CONNECTION_ID | _PROCESSLIST | _KILL
_KILL_WORD = re.compile(rb"kill", re.I)  # fast_forward sessions: a cheap test before proxyids.mentions_kill
# What pool_mode=statement refuses: anything that needs the connection after the statement.
_STATEMENT_MODE_REFUSED = (_LOCK_TABLES | _GET_LOCK | _CREATE_TEMP | _UV_ASSIGN | _SQL_CALC_FOUND_ROWS
                           | _TEXT_PREPARE | _SAVEPOINT | _HANDLER | _XA)
# Classification flags that take a statement off the plain path (_plain_query): what _route,
# _after_query, the local answers or pool_mode=statement act on, and every SET.
_NOT_PLAIN = (_LOCAL_ANSWERS | _AFTER_MASK | _UV_READ | _DIAGNOSTICS | _STATEMENT_MODE_REFUSED | _SET_GLOBAL
              | _SESSION_IDS | _F.SET_AUTOCOMMIT.value | _F.SET_SESSION_VARIABLE.value | _F.SET_SQL_LOG_BIN.value)
# Rule actions the general path of _com_query acts on (besides the hostgroup and retries): a
# decision that sets none of them is plain.
_ACTING = tuple(RouteDecision._fields.index(name) for name in (
    "rewritten_query", "cache_ttl", "timeout", "delay", "next_query_flagIN", "mirror_flagOUT", "mirror_hostgroup",
    "error_msg", "OK_msg", "sticky_conn", "multiplex", "log", "causal_reads"))


# SELECT LAST_INSERT_ID() / ROW_COUNT() / FOUND_ROWS() answered by the proxy when the
# connection that ran the previous statement is no longer the session's.
_LOCAL_FN_RE = re.compile(
    r"\s*SELECT\s+(LAST_INSERT_ID\s*\(\s*\)|@@IDENTITY|@@LAST_INSERT_ID|ROW_COUNT\s*\(\s*\)|FOUND_ROWS\s*\(\s*\)"
    r"|CONNECTION_ID\s*\(\s*\))"
    r"(?:\s+(?:AS\s+)?(`[^`]+`|'[^']*'|\"[^\"]*\"|\w+))?\s*;?\s*\Z", re.I)

_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?\Z")
_CHARSET_ORDER = ("names", "charset", "character_set_client", "character_set_connection", "character_set_results",
                  "collation_connection")
# Tracked variables that are not session state to restore.
_NOT_RESTORED = frozenset(("last_gtid", "session_track_system_variables", "session_track_schema",
                           "session_track_state_change", "session_track_transaction_info",
                           "session_track_gtids", "timestamp", "rand_seed1", "rand_seed2", "insert_id",
                           "last_insert_id", "identity", "warning_count", "error_count", "sql_log_bin"))
ER_UNKNOWN_STMT_HANDLER = 1243
ER_STMT_HAS_NO_OPEN_CURSOR = 1421
ER_NOT_SUPPORTED_YET = 1235


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


class SessionState(enum.Enum):
    HANDSHAKE = "handshake"
    IDLE = "idle"  # waiting for the client's next command
    BUSY = "busy"  # running a command
    CLOSING = "closing"


class CloseSession(Exception):
    """End this session (the reply, if any, has been sent)."""
