"""Why a session keeps its backend connection between statements (multiplexing off).

A session gives its connection back to the pool after each statement unless
state that lives in that connection would be lost. Each reason is a bit; a
connection held by a session carries the mask of its reasons (``be.pins``),
and the proxy counts every time a reason starts (``stats_mysql_global``
``Multiplexing_pinned_<reason>``, Prometheus ``myrouter_multiplexing_pins_total``),
so operators can see why multiplexing is off, which ProxySQL does not show.
"""

from __future__ import annotations

TRANSACTION = 1 << 0  # an open transaction (server status IN_TRANS)
LOCK_TABLES = 1 << 1  # LOCK TABLES / FLUSH TABLES WITH READ LOCK until UNLOCK TABLES
GET_LOCK = 1 << 2  # GET_LOCK() held until RELEASE_LOCK()
USER_VARIABLES = 1 << 3  # user variables (@x) assigned on this connection
TEMPORARY_TABLES = 1 << 4  # temporary tables until dropped
FOUND_ROWS = 1 << 5  # SQL_CALC_FOUND_ROWS until FOUND_ROWS() is read
TEXT_PREPARE = 1 << 6  # PREPARE ... FROM until DEALLOCATE
SAVEPOINT = 1 << 7  # savepoints (inside the transaction)
SQL_LOG_BIN = 1 << 8  # SET sql_log_bin=0 until set back to 1
RULE = 1 << 9  # a query rule with multiplex=0 or sticky_conn
LOCAL_INFILE = 1 << 10  # LOAD DATA LOCAL INFILE in progress
CURSOR = 1 << 11  # an open prepared-statement cursor
SESSION_STATE = 1 << 12  # state the proxy cannot restore elsewhere (unknown SET, COM_SET_OPTION, ...)
NEXT_TRANSACTION = 1 << 13  # SET TRANSACTION ... for the next transaction only
AUTO_INCREMENT = 1 << 14  # auto_increment_delay_multiplex statements after an insert id
HANDLER = 1 << 15  # HANDLER ... OPEN
XA = 1 << 16  # an XA transaction until XA COMMIT / ROLLBACK
POOL_MODE_SESSION = 1 << 17  # the user's pool_mode is "session" (or fast_forward)
MULTIPLEXING_OFF = 1 << 18  # mysql-multiplexing=false

NAMES: dict[int, str] = {
    TRANSACTION: "transaction",
    LOCK_TABLES: "lock_tables",
    GET_LOCK: "get_lock",
    USER_VARIABLES: "user_variables",
    TEMPORARY_TABLES: "temporary_tables",
    FOUND_ROWS: "found_rows",
    TEXT_PREPARE: "text_prepare",
    SAVEPOINT: "savepoint",
    SQL_LOG_BIN: "sql_log_bin",
    RULE: "rule_multiplex_off",
    LOCAL_INFILE: "local_infile",
    CURSOR: "cursor",
    SESSION_STATE: "session_state",
    NEXT_TRANSACTION: "next_transaction",
    AUTO_INCREMENT: "auto_increment_delay",
    HANDLER: "handler",
    XA: "xa",
    POOL_MODE_SESSION: "pool_mode_session",
    MULTIPLEXING_OFF: "multiplexing_disabled",
}


def names(mask: int) -> list[str]:
    """The reason names of a mask, in bit order."""
    return [name for bit, name in NAMES.items() if mask & bit]


class PinCounters:
    """How many times each reason started pinning a connection (monotonic counters)."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[str, int] = {name: 0 for name in NAMES.values()}

    def started(self, new_bits: int) -> None:
        for bit, name in NAMES.items():
            if new_bits & bit:
                self.counts[name] += 1
