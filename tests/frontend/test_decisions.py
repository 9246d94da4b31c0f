"""The session's sans-I/O decisions (myrouter/frontend/decisions.py), with classifications from
the real classifier and no sockets: where a statement goes, what it does to the transaction,
what a successful statement leaves behind, which connections stay pinned and why."""

from __future__ import annotations

import pytest

from myrouter.backend import pins as P
from myrouter.frontend.decisions import (
    SCHEMA_CHANGED,
    TRX_ENDS,
    TRX_KEEPS,
    TRX_OPENS,
    VARS_CHANGED,
    StatementState,
)
from myrouter.protocol.constants import Status
from myrouter.routing.classifier import classify_statement
from myrouter.routing.rules import RouteDecision

WRITER, READER = 10, 20
AUTOCOMMIT, IN_TRANS, STATE_CHANGED = int(Status.AUTOCOMMIT), int(Status.IN_TRANS), int(Status.SESSION_STATE_CHANGED)
TO_READERS = RouteDecision(destination_hostgroup=READER)
NO_RULE = RouteDecision()


def state(**fields) -> StatementState:
    s = StatementState(default_hostgroup=WRITER)
    for name, value in fields.items():
        setattr(s, name, value)
    return s


def after(s: StatementState, sql: str, hg: int = WRITER, decision: RouteDecision = NO_RULE,
          tracks_variables: bool = False) -> int:
    return s._after_query(hg, classify_statement(sql), decision, b"\x03" + sql.encode(), tracks_variables)


# ---------------------------------------------------------------- transaction effect

@pytest.mark.parametrize("sql, vars_, effect", [
    ("SELECT 1", {}, TRX_OPENS),
    ("INSERT INTO t VALUES (1)", {}, TRX_OPENS),
    ("SET @@session.sql_mode = ''", {}, TRX_KEEPS),
    ("USE test", {}, TRX_KEEPS),
    ("COMMIT", {}, TRX_ENDS),
    ("ROLLBACK", {}, TRX_ENDS),
    ("ROLLBACK TO SAVEPOINT s1", {}, TRX_OPENS),
    ("SAVEPOINT s1", {}, TRX_OPENS),
    ("COMMIT AND CHAIN", {}, TRX_OPENS),
    ("COMMIT AND NO CHAIN", {}, TRX_ENDS),
    ("COMMIT", {"completion_type": "'CHAIN'"}, TRX_OPENS),
    ("COMMIT", {"completion_type": "1"}, TRX_OPENS),
    ("COMMIT", {"completion_type": "'RELEASE'"}, TRX_ENDS),
    ("CREATE TABLE t2 (id INT)", {}, TRX_ENDS),  # DDL commits implicitly
    ("SELECT 1; COMMIT", {}, TRX_OPENS),  # several statements: not a lone COMMIT
])
def test_transaction_effect(sql, vars_, effect):
    assert state(vars=dict(vars_))._transaction_effect(classify_statement(sql), sql) == effect


def test_track_transaction_follows_the_in_trans_flag():
    s = state(status=AUTOCOMMIT | IN_TRANS)
    assert s._track_transaction(READER, TRX_OPENS, False) is True
    assert s.trx_hg == READER and s.trx_started > 0
    s.status = AUTOCOMMIT
    s.trx_read_only = True
    assert s._track_transaction(READER, TRX_ENDS, True) is False
    assert (s.trx_hg, s.trx_read_only, s.trx_started) == (None, False, 0.0)


def test_track_transaction_autocommit_off_opens_on_first_statement():
    s = state(status=0)
    assert s._track_transaction(WRITER, TRX_KEEPS, False) is False  # SET/USE before it: none yet
    assert s.trx_hg is None
    assert s._track_transaction(WRITER, TRX_OPENS, False) is True  # SAVEPOINT, a read of no table...
    assert s.trx_hg == WRITER
    assert s._track_transaction(WRITER, TRX_KEEPS, True) is True  # SET inside it: still open
    assert s._track_transaction(WRITER, TRX_ENDS, True) is False  # COMMIT
    assert s.trx_hg is None


def test_track_transaction_without_autocommit_false_is_transaction():
    s = state(status=0)
    s.autocommit_false_is_transaction = False
    assert s._track_transaction(WRITER, TRX_OPENS, False) is False
    assert s.trx_hg is None


# ---------------------------------------------------------------- read-only transactions

@pytest.mark.parametrize("sql, fields, expected", [
    ("START TRANSACTION READ ONLY", {}, True),
    ("START TRANSACTION", {}, False),
    ("START TRANSACTION READ ONLY", {"trx_hg": WRITER}, False),  # one is open already
    ("START TRANSACTION READ ONLY", {"sticky_hg": WRITER}, False),  # LOCK TABLES, GET_LOCK...
    ("BEGIN", {"vars": {"transaction_read_only": "1"}}, True),  # SET SESSION TRANSACTION READ ONLY
    ("START TRANSACTION READ WRITE", {"vars": {"transaction_read_only": "'ON'"}}, False),
    ("BEGIN", {"next_trx_sets": ["SET TRANSACTION READ ONLY"], "next_trx_read_only": True}, True),
    ("SELECT 1", {"vars": {"transaction_read_only": "1"}}, False),  # autocommit: no transaction
    ("SELECT 1", {"vars": {"transaction_read_only": "1"}, "status": 0}, True),  # autocommit off: it opens one
    ("UPDATE t SET a = 1", {"vars": {"transaction_read_only": "1"}, "status": 0}, False),
])
def test_opens_read_only_transaction(sql, fields, expected):
    assert state(**fields)._opens_read_only_transaction(classify_statement(sql), sql) is expected


def test_hold_next_transaction_set():
    s = state()
    rw = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED"
    assert s._hold_next_transaction_set(classify_statement(rw), rw) is False  # sent at once, as before
    ro = "SET TRANSACTION READ ONLY"
    assert s._hold_next_transaction_set(classify_statement(ro), ro) is True
    assert s.next_trx_sets == [ro] and s.next_trx_read_only is True
    assert s._hold_next_transaction_set(classify_statement(rw), rw) is True  # after a READ ONLY: held too
    assert s.next_trx_sets == [ro, rw]
    session = "SET SESSION TRANSACTION READ ONLY"
    assert s._hold_next_transaction_set(classify_statement(session), session) is False
    in_trx = state(trx_hg=WRITER)
    assert in_trx._hold_next_transaction_set(classify_statement(ro), ro) is False


# ---------------------------------------------------------------- routing

@pytest.mark.parametrize("fields, sql, decision, hg", [
    ({}, "SELECT 1", TO_READERS, READER),
    ({}, "SELECT 1", NO_RULE, WRITER),
    ({"sticky_hg": WRITER}, "SELECT 1", TO_READERS, WRITER),
    ({"trx_hg": WRITER}, "SELECT 1", TO_READERS, WRITER),
    ({"trx_hg": WRITER, "transaction_persistent": False}, "SELECT 1", TO_READERS, READER),
    ({"trx_hg": READER, "transaction_persistent": False, "trx_read_only": True}, "SELECT 1", NO_RULE, READER),
    ({"status": 0}, "SELECT 1", TO_READERS, WRITER),  # autocommit=0: every statement opens a transaction
    ({"var_hg": WRITER}, "SELECT @x", TO_READERS, WRITER),
    ({"var_hg": WRITER}, "SELECT 1", TO_READERS, READER),
    ({"last_hg": WRITER}, "SHOW WARNINGS", TO_READERS, WRITER),
    ({"temp_tables": {"tmp": WRITER}}, "SELECT * FROM tmp", TO_READERS, WRITER),
    ({"temp_tables": {"tmp": WRITER}}, "SELECT * FROM other", TO_READERS, READER),
])
def test_route(fields, sql, decision, hg):
    assert state(**fields)._route(decision, classify_statement(sql)) == hg


# ---------------------------------------------------------------- a statement inside an open transaction

@pytest.mark.parametrize("fields, sql, decision, stays", [
    ({"trx_hg": WRITER}, "SELECT 1", TO_READERS, True),  # transaction_persistent: on the writer's connection
    ({"trx_hg": WRITER}, "UPDATE t SET a = 1", NO_RULE, True),
    ({"trx_hg": WRITER, "transaction_persistent": False}, "SELECT 1", TO_READERS, False),  # a reader's
    ({"trx_hg": WRITER, "status": 0}, "SELECT 1", TO_READERS, True),  # autocommit off
    ({"trx_hg": READER, "status": 0}, "SELECT 1", NO_RULE, True),
    ({"trx_hg": READER, "status": 0, "transaction_persistent": False}, "SELECT 1", NO_RULE, False),  # writer
    ({"trx_hg": READER, "trx_read_only": True}, "SELECT 1", TO_READERS, True),
    ({"trx_hg": READER, "trx_read_only": True}, "UPDATE t SET a = 1", NO_RULE, False),  # 1792
    ({"trx_hg": WRITER, "trx_read_only": True}, "INSERT INTO t VALUES (1)", NO_RULE, False),  # the server's 1792
    ({}, "SELECT 1", NO_RULE, False),  # no transaction
    ({"trx_hg": WRITER, "sticky_hg": READER}, "SELECT 1", NO_RULE, False),
])
def test_stays_in_transaction(fields, sql, decision, stays):
    s = state(**fields)
    cls = classify_statement(sql)
    assert s._stays_in_transaction(s._route(decision, cls), cls) is stays


@pytest.mark.parametrize("sql", ["SELECT 1", "SELECT a FROM t WHERE id = 3", "UPDATE t SET a = 1 WHERE id = 2",
                                 "INSERT INTO t VALUES (1)", "DELETE FROM t WHERE id = 1",
                                 "REPLACE INTO t VALUES (1)"])
@pytest.mark.parametrize("fields", [{"trx_hg": WRITER}, {"trx_hg": READER, "trx_read_only": True},
                                    {"trx_hg": WRITER, "status": 0, "vars": {"transaction_read_only": "1"}}])
def test_a_read_or_write_in_a_transaction_only_runs_in_it(sql, fields):
    """What the data plane relies on to serve a plain statement inside a transaction with the effects
    of the general path: it neither opens a read-only transaction nor ends or keeps the open one."""
    s = state(**fields)
    cls = classify_statement(sql)
    assert s._opens_read_only_transaction(cls, sql) is False
    assert s._transaction_effect(cls, sql) == TRX_OPENS


# ---------------------------------------------------------------- after a statement

def test_plain_read_leaves_nothing():
    s = state(found_rows=3)
    assert after(s, "SELECT * FROM t WHERE id = 1", READER) == 0
    assert s.hold == {} and s.found_rows == 3


def test_write_resets_found_rows():
    s = state(found_rows=3)
    after(s, "UPDATE t SET a = 1")
    assert s.found_rows == 0


def test_lock_tables_sticks_until_unlock():
    s = state()
    after(s, "LOCK TABLES t WRITE")
    assert s.sticky_hg == WRITER and s.hold[WRITER] & P.LOCK_TABLES
    after(s, "UNLOCK TABLES")
    assert s.sticky_hg is None and not s.hold[WRITER] & P.LOCK_TABLES


def test_named_locks_count():
    s = state()
    after(s, "SELECT GET_LOCK('a', 1)")
    after(s, "SELECT GET_LOCK('b', 1)")
    after(s, "SELECT RELEASE_LOCK('a')")
    assert s.named_locks == 1 and s.sticky_hg == WRITER and s.hold[WRITER] & P.GET_LOCK
    after(s, "SELECT RELEASE_LOCK('b')")
    assert s.named_locks == 0 and s.sticky_hg is None and not s.hold[WRITER] & P.GET_LOCK


def test_rule_sticky_conn_and_multiplex():
    s = state()
    after(s, "SELECT 1", READER, RouteDecision(destination_hostgroup=READER, sticky_conn=1))
    assert s.sticky_hg == READER and s.rule_sticky and s.hold[READER] & P.RULE
    after(s, "SELECT 1", READER, RouteDecision(multiplex=1))
    assert s.sticky_hg is None and not s.rule_sticky and not s.hold[READER] & P.RULE


def test_temporary_tables():
    s = state()
    after(s, "CREATE TEMPORARY TABLE tmp (id INT)")
    assert s.temp_tables == {"tmp": WRITER} and s.hold[WRITER] & P.TEMPORARY_TABLES
    after(s, "DROP TEMPORARY TABLE tmp")
    assert s.temp_tables == {} and not s.hold[WRITER] & P.TEMPORARY_TABLES


def test_user_variables_pin_unless_multiplex_2():
    s = state()
    after(s, "SET @x = 1")
    assert s.var_hg == WRITER and s.hold[WRITER] & P.USER_VARIABLES
    s2 = state()
    after(s2, "SET @x = 1", decision=RouteDecision(multiplex=2))
    assert s2.var_hg is None and not s2.hold.get(WRITER, 0) & P.USER_VARIABLES


def test_found_rows_and_savepoint_and_xa():
    s = state()
    after(s, "SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1")
    assert s.hold[WRITER] & P.FOUND_ROWS
    after(s, "SELECT FOUND_ROWS()")
    assert not s.hold[WRITER] & P.FOUND_ROWS
    after(s, "SAVEPOINT s1")
    assert s.hold[WRITER] & P.SAVEPOINT
    after(s, "XA START 'x'")
    assert s.hold[WRITER] & P.XA
    after(s, "XA COMMIT 'x'")
    assert not s.hold[WRITER] & P.XA


def test_text_prepares_counted():
    s = state()
    after(s, "PREPARE a FROM 'SELECT 1'")
    after(s, "PREPARE b FROM 'SELECT 2'")
    after(s, "DEALLOCATE PREPARE a")
    assert s.text_prepares[WRITER] == 1 and s.hold[WRITER] & P.TEXT_PREPARE
    after(s, "DEALLOCATE PREPARE b")
    assert s.text_prepares[WRITER] == 0 and not s.hold[WRITER] & P.TEXT_PREPARE


def test_use_changes_the_schema():
    s = state(schema="a")
    assert after(s, "USE b") == SCHEMA_CHANGED
    assert s.schema == "b"


def test_set_session_variables_recorded():
    s = state()
    assert after(s, "SET @@session.sql_mode = 'ANSI', wait_timeout = 60") == VARS_CHANGED
    assert s.vars == {"sql_mode": "'ANSI'", "wait_timeout": "60"}
    assert after(s, "SET wait_timeout = DEFAULT") == VARS_CHANGED
    assert s.vars == {"sql_mode": "'ANSI'"}
    assert after(s, "SET tx_isolation = 'READ-COMMITTED'") == VARS_CHANGED  # one name per variable
    assert s.vars["transaction_isolation"] == "'READ-COMMITTED'"


def test_set_variables_tracked_by_the_server_are_not_taken_from_the_statement():
    s = state(status=AUTOCOMMIT | STATE_CHANGED)
    assert after(s, "SET @@session.sql_mode = 'ANSI'", tracks_variables=True) == 0
    assert s.vars == {}


def test_set_expression_pins_the_connection():
    s = state()
    after(s, "SET @@session.sql_mode = CONCAT(@@sql_mode, ',ANSI')")
    assert s.vars == {} and s.hold[WRITER] & P.SESSION_STATE


def test_set_next_transaction_and_sql_log_bin():
    s = state(statements=7)
    after(s, "SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
    assert s.next_trx_at == 7 and s.hold[WRITER] & P.NEXT_TRANSACTION
    after(s, "SET sql_log_bin = 0")
    assert s.hold[WRITER] & P.SQL_LOG_BIN
    after(s, "SET sql_log_bin = 1")
    assert not s.hold[WRITER] & P.SQL_LOG_BIN


# ---------------------------------------------------------------- giving connections back

def test_pins_after_command():
    s = state()
    assert s._pins_after_command(WRITER, False) == 0  # nothing: back to the pool
    assert s._pins_after_command(WRITER, True) == P.TRANSACTION
    s.mode_pins = P.POOL_MODE_SESSION
    assert s._pins_after_command(WRITER, False) == P.POOL_MODE_SESSION


def test_savepoint_outside_a_transaction_does_not_pin():
    s = state(hold={WRITER: P.SAVEPOINT | P.USER_VARIABLES})
    assert s._pins_after_command(WRITER, False) == P.USER_VARIABLES
    assert s.hold[WRITER] == P.USER_VARIABLES
    s.hold[WRITER] |= P.SAVEPOINT
    assert s._pins_after_command(WRITER, True) == P.SAVEPOINT | P.USER_VARIABLES | P.TRANSACTION


def test_next_transaction_pin_lasts_until_the_next_statement():
    s = state(hold={WRITER: P.NEXT_TRANSACTION}, statements=5, next_trx_at=5)
    assert s._pins_after_command(WRITER, False) == P.NEXT_TRANSACTION
    s.statements = 6
    assert s._pins_after_command(WRITER, False) == 0
    assert s.hold[WRITER] == 0


def test_auto_increment_pin_counts_down():
    s = state(hold={WRITER: P.AUTO_INCREMENT}, autoinc_left=2)
    assert s._pins_after_command(WRITER, False) == P.AUTO_INCREMENT
    assert s._pins_after_command(WRITER, False) == 0
    assert s.hold[WRITER] == 0


def test_forget_hostgroup_state():
    s = state(trx_hg=READER, trx_read_only=True, sticky_hg=READER, table_lock=True, var_hg=READER,
              temp_tables={"a": READER, "b": WRITER}, hold={READER: P.RULE, WRITER: P.RULE},
              text_prepares={READER: 1})
    s._forget_hostgroup_state(READER)
    assert (s.trx_hg, s.trx_read_only, s.sticky_hg, s.table_lock, s.var_hg) == (None, False, None, False, None)
    assert s.temp_tables == {"b": WRITER} and s.hold == {WRITER: P.RULE} and s.text_prepares == {}


def test_reset_statement_state():
    s = state(status=IN_TRANS, trx_hg=WRITER, vars={"a": "1"}, hold={WRITER: P.RULE}, sticky_hg=WRITER,
              temp_tables={"t": WRITER}, next_trx_sets=["SET TRANSACTION READ ONLY"])
    s._reset_statement_state()
    fresh = StatementState(default_hostgroup=WRITER)
    assert vars(s) == vars(fresh) | {"trx_started": 0.0}


# ---------------------------------------------------------------- SET answered by the proxy

# what a MariaDB server reports (information_schema.COLLATIONS), a few rows of it
COLLATIONS = {8: ("latin1", "latin1_swedish_ci"), 33: ("utf8mb3", "utf8mb3_general_ci"),
              45: ("utf8mb4", "utf8mb4_general_ci"), 46: ("utf8mb4", "utf8mb4_bin")}
COLLATION_CHARSET = {coll: cs for cs, coll in COLLATIONS.values()}
DEFAULT_COLLATION = {"latin1": "latin1_swedish_ci", "utf8mb3": "utf8mb3_general_ci",
                     "utf8mb4": "utf8mb4_general_ci"}


def record_set(s: StatementState, sql: str, charset: int = 45, collations=COLLATIONS) -> bool:
    return s._record_set(classify_statement(sql), charset, collations, COLLATION_CHARSET, DEFAULT_COLLATION)


def test_set_autocommit_recorded():
    s = state()
    assert record_set(s, "SET autocommit = 0") is True
    assert s.vars == {"autocommit": "0"} and not s.status & AUTOCOMMIT
    assert record_set(s, "SET autocommit = ON") is True
    assert s.vars == {} and s.status & AUTOCOMMIT
    assert record_set(s, "SET autocommit = @x") is False  # not a value the proxy reads: to a server


def test_set_names_recorded():
    s = state()
    assert record_set(s, "SET NAMES latin1") is True
    assert s.vars == {"character_set_client": "'latin1'", "character_set_connection": "'latin1'",
                      "character_set_results": "'latin1'", "collation_connection": "'latin1_swedish_ci'"}
    assert record_set(s, "SET NAMES utf8mb4") is True  # the handshake's character set: nothing to apply
    assert s.vars == {}
    assert record_set(s, "SET NAMES utf8mb4 COLLATE utf8mb4_bin") is True
    assert s.vars["collation_connection"] == "'utf8mb4_bin'"
    assert record_set(s, "SET NAMES utf8") is True  # MariaDB's utf8 is utf8mb3
    assert s.vars["character_set_client"] == "'utf8mb3'"


@pytest.mark.parametrize("sql", [
    "SET NAMES latin1 COLLATE utf8mb4_bin",  # mismatched: the server gives the right error
    "SET NAMES klingon",  # unknown
    "SET NAMES latin1, autocommit = 0",  # more than one assignment
    "SET GLOBAL autocommit = 0",
    "SET sql_mode = 'ANSI'",
])
def test_set_left_to_the_server(sql):
    s = state()
    assert record_set(s, sql) is False
    assert s.vars == {} and s.status == AUTOCOMMIT


def test_set_names_without_known_collations_goes_to_a_server():
    assert record_set(state(), "SET NAMES latin1", collations={}) is False
