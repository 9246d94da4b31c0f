"""Protocol errors.

Two kinds:

* ``MalformedPacket``: bytes that do not decode. Every decoder raises this and
  only this for bad input (never ``struct.error``, ``IndexError`` or an
  assertion), so callers have one thing to catch at the I/O boundary.
* ``MySQLError``: an error that carries its own reply. It turns straight into
  an ERR packet with the code, SQLSTATE and message a MySQL client expects.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class for wire-protocol failures."""


class MalformedPacket(ProtocolError):
    """The peer sent bytes that are not a valid packet of the expected kind."""


class SequenceError(MalformedPacket):
    """A packet arrived with a sequence id other than the one expected."""


class PacketTooLarge(ProtocolError):
    """A payload is larger than the configured maximum (max_allowed_packet)."""


class MySQLError(Exception):
    """An error with a MySQL error code and SQLSTATE; becomes an ERR packet."""

    def __init__(self, code: int, message: str, sqlstate: str = "HY000") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.sqlstate = sqlstate

    def __str__(self) -> str:
        return f"({self.code}, {self.sqlstate}) {self.message}"

    def __repr__(self) -> str:
        return f"MySQLError({self.code}, {self.message!r}, {self.sqlstate!r})"


# Standard server error codes used by the proxy (mysqld_error.h). Only server
# codes go on the wire; client-library codes (2000-2999) never do.
ER_CON_COUNT_ERROR = 1040  # Too many connections
ER_HANDSHAKE_ERROR = 1043  # Bad handshake
ER_ACCESS_DENIED_ERROR = 1045
ER_UNKNOWN_COM_ERROR = 1047
ER_SERVER_SHUTDOWN = 1053
ER_UNKNOWN_ERROR = 1105
ER_DBACCESS_DENIED_ERROR = 1044  # Access denied for user to database
ER_BAD_DB_ERROR = 1049  # Unknown database
ER_NO_SUCH_THREAD = 1094
ER_KILL_DENIED_ERROR = 1095
ER_NET_PACKET_TOO_LARGE = 1153
ER_NET_READ_ERROR_FROM_PIPE = 1154
ER_NET_PACKETS_OUT_OF_ORDER = 1156
ER_NET_READ_ERROR = 1158
ER_NET_READ_INTERRUPTED = 1159
ER_QUERY_INTERRUPTED = 1317
ER_USER_LIMIT_REACHED = 1226
ER_UNKNOWN_STMT_HANDLER = 1243
ER_NOT_SUPPORTED_AUTH_MODE = 1251
ER_MALFORMED_PACKET = 1835
ER_CONNECTION_KILLED = 1927
# ProxySQL's own codes, kept for compatibility with tools that match on them
PROXYSQL_ER_HOSTGROUP_TIMEOUT = 9001


def access_denied(user: str, host: str, using_password: bool) -> MySQLError:
    """ERR 1045; the user name cut to 48 characters and the host to 64, as MySQL's message
    (``'%-.48s'@'%-.64s'``) does: a client never gets an unbounded name echoed back."""
    yes = "YES" if using_password else "NO"
    return MySQLError(
        ER_ACCESS_DENIED_ERROR,
        f"Access denied for user '{user[:48]}'@'{host[:64]}' (using password: {yes})",
        "28000",
    )


def bad_handshake(detail: str = "") -> MySQLError:
    return MySQLError(ER_HANDSHAKE_ERROR, "Bad handshake" + (f": {detail}" if detail else ""), "08S01")


def packets_out_of_order() -> MySQLError:
    return MySQLError(ER_NET_PACKETS_OUT_OF_ORDER, "Got packets out of order", "08S01")


def packet_too_large() -> MySQLError:
    return MySQLError(ER_NET_PACKET_TOO_LARGE, "Got a packet bigger than 'max_allowed_packet' bytes", "08S01")


def unknown_command(command: int) -> MySQLError:
    return MySQLError(ER_UNKNOWN_COM_ERROR, f"Unknown command (0x{command:02x})", "08S01")


def malformed_packet(detail: str = "") -> MySQLError:
    return MySQLError(ER_MALFORMED_PACKET, "Malformed communication packet" + (f": {detail}" if detail else ""), "HY000")


def read_timeout() -> MySQLError:
    return MySQLError(ER_NET_READ_INTERRUPTED, "Got timeout reading communication packets", "08S01")


def too_many_connections() -> MySQLError:
    return MySQLError(ER_CON_COUNT_ERROR, "Too many connections", "08004")


def server_shutdown() -> MySQLError:
    return MySQLError(ER_SERVER_SHUTDOWN, "Server shutdown in progress", "08S01")
