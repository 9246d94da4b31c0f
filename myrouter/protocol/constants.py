"""Numeric constants of the MySQL client/server protocol.

Names follow the MySQL source (``include/mysql_com.h``) without their prefixes
where the module name already says what they are.
"""

from __future__ import annotations

import enum

# Largest payload of one physical packet; a payload of this size or more is
# continued in the next packet (and a payload that is an exact multiple of it
# is followed by an empty packet).
MAX_PACKET_PAYLOAD = 0xFFFFFF


class Capability(enum.IntFlag):
    LONG_PASSWORD = 1 << 0  # also "CLIENT_MYSQL": cleared by MariaDB servers offering extended caps
    FOUND_ROWS = 1 << 1
    LONG_FLAG = 1 << 2
    CONNECT_WITH_DB = 1 << 3
    NO_SCHEMA = 1 << 4
    COMPRESS = 1 << 5
    ODBC = 1 << 6
    LOCAL_FILES = 1 << 7
    IGNORE_SPACE = 1 << 8
    PROTOCOL_41 = 1 << 9
    INTERACTIVE = 1 << 10
    SSL = 1 << 11
    IGNORE_SIGPIPE = 1 << 12
    TRANSACTIONS = 1 << 13
    RESERVED = 1 << 14
    SECURE_CONNECTION = 1 << 15
    MULTI_STATEMENTS = 1 << 16
    MULTI_RESULTS = 1 << 17
    PS_MULTI_RESULTS = 1 << 18
    PLUGIN_AUTH = 1 << 19
    CONNECT_ATTRS = 1 << 20
    PLUGIN_AUTH_LENENC_CLIENT_DATA = 1 << 21
    CAN_HANDLE_EXPIRED_PASSWORDS = 1 << 22
    SESSION_TRACK = 1 << 23
    DEPRECATE_EOF = 1 << 24
    OPTIONAL_RESULTSET_METADATA = 1 << 25
    ZSTD_COMPRESSION = 1 << 26
    QUERY_ATTRIBUTES = 1 << 27
    MULTI_FACTOR_AUTH = 1 << 28
    CAPABILITY_EXTENSION = 1 << 29
    SSL_VERIFY_SERVER_CERT = 1 << 30
    REMEMBER_OPTIONS = 1 << 31


class Status(enum.IntFlag):
    IN_TRANS = 1 << 0
    AUTOCOMMIT = 1 << 1
    MORE_RESULTS_EXISTS = 1 << 3
    NO_GOOD_INDEX_USED = 1 << 4
    NO_INDEX_USED = 1 << 5
    CURSOR_EXISTS = 1 << 6
    LAST_ROW_SENT = 1 << 7
    DB_DROPPED = 1 << 8
    NO_BACKSLASH_ESCAPES = 1 << 9
    METADATA_CHANGED = 1 << 10
    QUERY_WAS_SLOW = 1 << 11
    PS_OUT_PARAMS = 1 << 12
    IN_TRANS_READONLY = 1 << 13
    SESSION_STATE_CHANGED = 1 << 14


class Command(enum.IntEnum):
    SLEEP = 0x00
    QUIT = 0x01
    INIT_DB = 0x02
    QUERY = 0x03
    FIELD_LIST = 0x04
    CREATE_DB = 0x05
    DROP_DB = 0x06
    REFRESH = 0x07
    SHUTDOWN = 0x08
    STATISTICS = 0x09
    PROCESS_INFO = 0x0A
    CONNECT = 0x0B
    PROCESS_KILL = 0x0C
    DEBUG = 0x0D
    PING = 0x0E
    TIME = 0x0F
    DELAYED_INSERT = 0x10
    CHANGE_USER = 0x11
    BINLOG_DUMP = 0x12
    TABLE_DUMP = 0x13
    CONNECT_OUT = 0x14
    REGISTER_SLAVE = 0x15
    STMT_PREPARE = 0x16
    STMT_EXECUTE = 0x17
    STMT_SEND_LONG_DATA = 0x18
    STMT_CLOSE = 0x19
    STMT_RESET = 0x1A
    SET_OPTION = 0x1B
    STMT_FETCH = 0x1C
    DAEMON = 0x1D
    BINLOG_DUMP_GTID = 0x1E
    RESET_CONNECTION = 0x1F


class SessionTrack(enum.IntEnum):
    SYSTEM_VARIABLES = 0
    SCHEMA = 1
    STATE_CHANGE = 2
    GTIDS = 3
    TRANSACTION_CHARACTERISTICS = 4
    TRANSACTION_STATE = 5


# COM_STMT_EXECUTE flags
CURSOR_TYPE_NO_CURSOR = 0
CURSOR_TYPE_READ_ONLY = 1

# First bytes of response packets
OK_HEADER = 0x00
AUTH_MORE_DATA_HEADER = 0x01
LOCAL_INFILE_HEADER = 0xFB
EOF_HEADER = 0xFE  # also AuthSwitchRequest during authentication
ERR_HEADER = 0xFF

# caching_sha2_password AuthMoreData status bytes
SHA2_REQUEST_PUBLIC_KEY = 0x02
SHA2_FAST_AUTH_SUCCESS = 0x03
SHA2_PERFORM_FULL_AUTHENTICATION = 0x04

NATIVE_PASSWORD = "mysql_native_password"
CACHING_SHA2_PASSWORD = "caching_sha2_password"
SUPPORTED_AUTH_PLUGINS = (NATIVE_PASSWORD, CACHING_SHA2_PASSWORD)
# MariaDB's ed25519 (server plugin auth_ed25519): always reached through an AuthSwitchRequest
# carrying a 32-byte nonce, never offered in the greeting (whose scramble has 20 bytes)
CLIENT_ED25519 = "client_ed25519"

# utf8mb4_general_ci: the collation id the proxy announces in its greeting
DEFAULT_CHARSET = 45
