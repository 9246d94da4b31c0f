"""The session's decisions, sans-I/O: what a statement does to the session and where it goes.

Pure code over the state a client session keeps between statements (transaction, stickiness,
pins held per hostgroup, temporary tables, user and session variables): no await, no socket, no
pool. :class:`StatementState` holds that state and the decisions over it; ``ClientSession``
(the Trio driver, :mod:`myrouter.frontend.session`) is one, and carries out the I/O the
decisions imply. A data plane that runs plain statements synchronously reuses the same code.
Unit tests: ``tests/frontend/test_decisions.py``, with classifications from the real classifier.

Flag tests use plain ints: enum.Flag operators allocate and cost ~0.4 us each.
"""

from __future__ import annotations

import re
import time

from ..backend import pins as P
from ..protocol.constants import Status
from ..routing.classifier import Classification, StatementFlag as _F, StatementKind

__all__ = ["StatementState", "TRX_OPENS", "TRX_KEEPS", "TRX_ENDS", "SCHEMA_CHANGED", "VARS_CHANGED"]

_LOCK_TABLES = _F.LOCK_TABLES.value
_UNLOCK_TABLES = _F.UNLOCK_TABLES.value
_GET_LOCK = _F.GET_LOCK.value
_RELEASE_LOCK = _F.RELEASE_LOCK.value
_CREATE_TEMP = _F.CREATE_TEMPORARY_TABLE.value
_DROP_TEMP = _F.DROP_TEMPORARY_TABLE.value
_UV_ASSIGN = _F.USER_VARIABLE_ASSIGN.value
_UV_READ = _F.USER_VARIABLE_READ.value
_DIAGNOSTICS = _F.DIAGNOSTICS.value
_CHANGE_SCHEMA = _F.CHANGE_SCHEMA.value
_SQL_CALC_FOUND_ROWS = _F.SQL_CALC_FOUND_ROWS.value
_FOUND_ROWS_FN = _F.FOUND_ROWS.value
_TEXT_PREPARE = _F.TEXT_PREPARE.value
_DEALLOCATE = _F.DEALLOCATE.value
_SAVEPOINT = _F.SAVEPOINT.value
_IMPLICIT_COMMIT = _F.IMPLICIT_COMMIT.value
_READ_ONLY_TRANSACTION = _F.READ_ONLY_TRANSACTION.value
_HANDLER = _F.HANDLER.value
_XA = _F.XA.value
_UNREADABLE_SET = (_F.SET_SESSION_VARIABLE | _F.SET_AUTOCOMMIT | _F.SET_SQL_LOG_BIN).value
_IN_TRANS = int(Status.IN_TRANS)
_AUTOCOMMIT = int(Status.AUTOCOMMIT)
_STATE_CHANGED = int(Status.SESSION_STATE_CHANGED)
# Flags _after_query acts on; a statement with none of them (and not a SET/USE) skips it.
AFTER_MASK = (_LOCK_TABLES | _UNLOCK_TABLES | _GET_LOCK | _RELEASE_LOCK | _CREATE_TEMP | _DROP_TEMP | _UV_ASSIGN
              | _SQL_CALC_FOUND_ROWS | _FOUND_ROWS_FN | _TEXT_PREPARE | _DEALLOCATE | _SAVEPOINT | _HANDLER | _XA)

# What a command does to an autocommit-off session's transaction (StatementState._track_transaction)
TRX_OPENS, TRX_KEEPS, TRX_ENDS = 1, 0, -1
# What _after_query changed that the statement's connection must be told of (its schema, its variables)
SCHEMA_CHANGED, VARS_CHANGED = 1, 2

_XA_END_RE = re.compile(r"\s*XA\s+(COMMIT|ROLLBACK)\b", re.I)
_READ_WRITE_RE = re.compile(r"\bREAD\s+WRITE\b", re.I)
_CHAIN_RE = re.compile(r"\bAND\s+(NO\s+)?CHAIN\b", re.I)
# Session variables: a value the proxy can replay as written (else it needs session tracking).
LITERAL_RE = re.compile(r"""\s*(?:'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*"|[-+]?\d+(?:\.\d+)?|[A-Za-z_][\w$]*)\s*\Z""")
NAMES_RE = re.compile(r"""\s*(?:'[^']*'|"[^"]*"|\w+)(?:\s+COLLATE\s+(?:'[^']*'|"[^"]*"|\w+))?\s*\Z""", re.I)
NAMES_PARTS_RE = re.compile(
    r"""\s*('[^']*'|"[^"]*"|`[^`]*`|\w+)(?:\s+COLLATE\s+('[^']*'|"[^"]*"|`[^`]*`|\w+))?\s*\Z""", re.I)
CHARSET_VARS = frozenset(("names", "charset", "character_set_client", "character_set_connection",
                          "character_set_results", "collation_connection"))
# Variable name aliases: one name per variable in the session's state.
VAR_ALIASES = {"tx_isolation": "transaction_isolation", "tx_read_only": "transaction_read_only"}


class StatementState:
    """What a session keeps between statements that routing and pinning depend on, and the
    decisions over it. No I/O: the caller sends, borrows and gives back connections."""

    #: mysql-autocommit_false_is_transaction (ClientSession reads the live variable instead)
    autocommit_false_is_transaction = True

    def __init__(self, default_hostgroup: int = 0) -> None:
        self.default_hostgroup = default_hostgroup
        self.transaction_persistent = True
        self.status = _AUTOCOMMIT  # the server status flags of the last response
        self.schema: str | None = None
        self.vars: dict[str, str] = {}  # session variables the client set: name -> SQL value text
        self.mode_pins = 0  # pins for every connection: pool_mode=session, multiplexing off
        self.hold: dict[int, int] = {}  # hostgroup -> pin reasons other than an open transaction
        self.text_prepares: dict[int, int] = {}  # hostgroup -> statements PREPAREd there (text protocol)
        self.statements = 0  # commands run so far
        self.next_trx_at = 0  # statement number of a SET TRANSACTION (next transaction only)
        self.autoinc_left = 0  # statements left before an insert's connection may be multiplexed
        self.found_rows = 0
        self.trx_started = 0.0  # monotonic time the open transaction started (0: none)
        self.trx_hg: int | None = None  # hostgroup where a transaction is open
        self.trx_read_only = False  # the open transaction is read-only by declaration (on trx_hg)
        # SET TRANSACTION ... (next transaction only) held by the proxy while a READ ONLY is among them:
        # run on the connection of the statement that opens that transaction (``_forward``)
        self.next_trx_sets: list[str] = []
        self.next_trx_read_only = False
        # statements that reopen a read-only transaction on another reader while none of its results
        # reached the client (its first statement after START TRANSACTION READ ONLY may be retried)
        self.ro_restart: list[str] | None = None
        self.sticky_hg: int | None = None  # locks or a rule keep the session on this hostgroup
        self.table_lock = False
        self.named_locks = 0
        self.rule_sticky = False
        self.temp_tables: dict[str, int] = {}  # temporary table -> hostgroup that has it
        self.var_hg: int | None = None  # hostgroup where user variables were assigned by a query
        self.last_hg: int | None = None

    def _reset_statement_state(self) -> None:
        """What COM_RESET_CONNECTION and COM_CHANGE_USER forget of this state."""
        self.trx_hg = None
        self.trx_read_only = False
        self.next_trx_sets = []
        self.next_trx_read_only = False
        self.ro_restart = None
        self._unstick()
        self.temp_tables.clear()
        self.var_hg = None
        self.last_hg = None
        self.hold.clear()
        self.vars.clear()
        self.text_prepares.clear()
        self.next_trx_at = 0
        self.autoinc_left = 0
        self.found_rows = 0
        self.trx_started = 0.0
        self.status = _AUTOCOMMIT

    def _forget_hostgroup_state(self, hg: int) -> None:
        """What lived in the session's connection to ``hg`` is gone with it."""
        if self.trx_hg == hg:
            self.trx_hg = None
            self.trx_read_only = False
            self.trx_started = 0.0
        if self.sticky_hg == hg:
            self._unstick()
        if self.var_hg == hg:
            self.var_hg = None
        for t, where in list(self.temp_tables.items()):
            if where == hg:
                del self.temp_tables[t]
        self.hold.pop(hg, None)
        self.text_prepares.pop(hg, None)

    def _pins_after_command(self, hg: int, in_trx: bool) -> int:
        """After a command: why the session's connection to ``hg`` stays with it (0: it may go back to
        the pool). Pins that last one statement only (a savepoint outside a transaction, SET TRANSACTION
        once its transaction ran, the auto_increment_delay_multiplex countdown) are dropped here."""
        pins = self.hold.get(hg, 0) | self.mode_pins
        if in_trx:
            pins |= P.TRANSACTION
        elif pins & (P.SAVEPOINT | P.NEXT_TRANSACTION | P.XA):
            if pins & P.NEXT_TRANSACTION and self.statements > self.next_trx_at:
                pins &= ~P.NEXT_TRANSACTION
            pins &= ~P.SAVEPOINT
            self.hold[hg] = pins & ~self.mode_pins
        if pins & P.AUTO_INCREMENT:
            self.autoinc_left -= 1
            if self.autoinc_left <= 0:
                pins &= ~P.AUTO_INCREMENT
                self.hold[hg] &= ~P.AUTO_INCREMENT
        return pins

    def _unstick(self) -> None:
        self.sticky_hg = None
        self.table_lock = False
        self.named_locks = 0
        self.rule_sticky = False

    def _track_transaction(self, hg: int, effect: int, in_trx: bool) -> bool:
        """After a command on the session's connection to ``hg`` (``in_trx``: a transaction of the
        session was open there): is one open there now? Returns the connection's new ``in_trx``.

        The server's IN_TRANS flag says so for BEGIN and for statements that touched a transactional
        table. It does not for an autocommit-off session that has run only SAVEPOINT, a read of no
        table, a failed statement...: yet its transaction (savepoints, the REPEATABLE READ snapshot,
        locks) lives on that connection from its first statement until COMMIT/ROLLBACK, as on a
        direct connection (``autocommit_false_is_transaction``, on by default). Such a connection
        stays pinned to the session (``_release_free``) and is reset, never handed on, when the
        session ends with it open (``_drop_all_backends``). ``effect`` says what the command did to
        such a transaction: opened it (or ran in it), left it as it was (SET, USE), or ended it.
        """
        st = self.status
        if st & _IN_TRANS or (not st & _AUTOCOMMIT and self.autocommit_false_is_transaction
                              and (effect == TRX_OPENS or (effect == TRX_KEEPS and in_trx))):
            if self.trx_hg is None:
                self.trx_started = time.monotonic()
            self.trx_hg = hg
            return True
        if self.trx_hg == hg:
            self.trx_hg = None
            self.trx_read_only = False
            self.trx_started = 0.0
        return False

    def _transaction_effect(self, cls: Classification, sql: str) -> int:
        """What a statement does to an autocommit-off session's transaction. Ends it: a lone COMMIT or
        ROLLBACK (not TO SAVEPOINT, not AND CHAIN, nor under completion_type=CHAIN) or a statement
        that commits implicitly (DDL; BEGIN too, but the server's IN_TRANS flag reports the
        transaction it opens). Leaves it as it was: SET and USE. Anything else opens it (or runs in it)."""
        if cls.statement_count != 1:
            return TRX_OPENS
        if cls.kind is StatementKind.SESSION:
            return TRX_KEEPS
        if cls.bits & _IMPLICIT_COMMIT:
            return TRX_ENDS
        if cls.kind is not StatementKind.TRANSACTION or cls.command not in ("COMMIT", "ROLLBACK") \
                or cls.bits & _SAVEPOINT:
            return TRX_OPENS
        m = _CHAIN_RE.search(sql)
        if m is not None:
            return TRX_ENDS if m.group(1) is not None else TRX_OPENS  # AND NO CHAIN / AND CHAIN
        completion = self.vars.get("completion_type", "").strip("'\"").upper()
        return TRX_ENDS if completion in ("", "0", "NO_CHAIN", "2", "RELEASE") else TRX_OPENS

    def _hold_next_transaction_set(self, cls: Classification, sql: str) -> bool:
        """``SET TRANSACTION READ ONLY`` (next transaction only) outside a transaction is held by the
        proxy, with any SET TRANSACTION after it, and run on the connection of the statement that
        opens that transaction (``_forward``), which may then go to a reader. True if held (answer OK)."""
        sv = cls.set_variables
        if not sv or self.trx_hg is not None or cls.statement_count != 1:
            return False
        if any(v.scope != "next_transaction" for v in sv):
            return False
        read_only = None
        for v in sv:
            if v.name == "transaction_read_only":
                read_only = v.value.upper() == "ON"
        if not self.next_trx_sets and read_only is not True:
            return False  # as before: sent at once, its connection pinned until the next transaction
        self.next_trx_sets.append(sql)
        if read_only is not None:
            self.next_trx_read_only = read_only
        return True

    def _session_read_only(self) -> bool:
        """SET SESSION TRANSACTION READ ONLY / transaction_read_only = 1 is in force."""
        value = self.vars.get("transaction_read_only")
        return value is not None and value.strip("'\"").upper() in ("1", "ON", "TRUE")

    def _opens_read_only_transaction(self, cls: Classification, sql: str) -> bool:
        """The statement opens a transaction that is read-only by declaration: START TRANSACTION READ
        ONLY; BEGIN / START TRANSACTION after SET [SESSION] TRANSACTION READ ONLY; or, in an autocommit-off
        session under one of those, a read that opens the session's next transaction."""
        if self.trx_hg is not None or self.sticky_hg is not None:
            return False
        if cls.bits & _READ_ONLY_TRANSACTION:
            return True
        if cls.statement_count != 1:
            return False
        declared = self.next_trx_read_only if self.next_trx_sets else self._session_read_only()
        if not declared:
            return False
        if cls.kind is StatementKind.TRANSACTION:
            return cls.command in ("BEGIN", "START TRANSACTION") and _READ_WRITE_RE.search(sql) is None
        return not self.status & _AUTOCOMMIT and cls.kind is StatementKind.READ

    def _route(self, decision, cls: Classification) -> int:
        """The hostgroup for a statement: rules first, then what keeps the session correct."""
        hg = decision.destination_hostgroup
        if hg is None:
            hg = self.default_hostgroup
        if self.sticky_hg is not None:
            return self.sticky_hg  # LOCK TABLES, GET_LOCK, sticky_conn, multiplex=0
        if self.trx_hg is not None and (self.transaction_persistent or self.trx_read_only):
            return self.trx_hg  # an open transaction stays where it started
        if not self.status & _AUTOCOMMIT:
            return self.default_hostgroup  # autocommit=0: every statement opens a transaction
        flags = cls.bits
        if flags & _UV_READ and self.var_hg is not None:
            return self.var_hg
        if flags & _DIAGNOSTICS and self.last_hg is not None:
            return self.last_hg
        if self.temp_tables and cls.tables:
            for t in cls.tables:
                where = self.temp_tables.get(t)
                if where is not None:
                    return where
        return hg

    def _stays_in_transaction(self, hg: int, cls: Classification) -> bool:
        """Whether a statement that ``_route`` sends to ``hg`` runs on the connection of the session's open
        transaction with no effect but running there (what the data plane needs to serve it there):
        ``hg`` is the transaction's hostgroup, and the statement is not a write in a read-only
        transaction (the general path refuses it with 1792, or the server does). Inside a transaction no
        statement opens a read-only one (``_opens_read_only_transaction``), and a plain read or write
        leaves an autocommit-off session's transaction open (``_transaction_effect``: ``TRX_OPENS``)."""
        return hg == self.trx_hg and not (self.trx_read_only and cls.kind >= StatementKind.WRITE)

    def _after_query(self, hg: int, cls: Classification, decision, payload: bytes, tracks_variables: bool) -> int:
        """Update what the session must remember after a statement succeeded on its connection to ``hg``,
        and why that connection stays (``hold``). ``tracks_variables``: that connection reports session
        variables (session tracking). Returns what its connection must be told (``SCHEMA_CHANGED``,
        ``VARS_CHANGED``: the session's schema and variables are now its own)."""
        flags = cls.bits
        if cls.kind is not StatementKind.READ:
            self.found_rows = 0
        if not flags & AFTER_MASK and cls.kind is not StatementKind.SESSION \
                and decision.sticky_conn is None and decision.multiplex is None:
            return 0
        changes = 0
        hold = old = self.hold.get(hg, 0)
        if flags & _LOCK_TABLES:
            self.table_lock = True
            self.sticky_hg = hg
            hold |= P.LOCK_TABLES
        if flags & _UNLOCK_TABLES:
            self.table_lock = False
            hold &= ~P.LOCK_TABLES
        if flags & _GET_LOCK:
            self.named_locks += 1
            self.sticky_hg = hg
            hold |= P.GET_LOCK
        if flags & _RELEASE_LOCK and self.named_locks:
            self.named_locks -= 1
            if not self.named_locks:
                hold &= ~P.GET_LOCK
        if decision.sticky_conn or decision.multiplex == 0:
            self.rule_sticky = True
            self.sticky_hg = hg
            hold |= P.RULE
        elif decision.multiplex == 1 and self.rule_sticky:
            self.rule_sticky = False
            hold &= ~P.RULE
        if self.sticky_hg is not None and not (self.table_lock or self.named_locks or self.rule_sticky):
            self.sticky_hg = None
        if flags & _CREATE_TEMP:
            for t in cls.tables:
                self.temp_tables[t] = hg
            hold |= P.TEMPORARY_TABLES
        if flags & _DROP_TEMP:
            for t in cls.tables:
                self.temp_tables.pop(t, None)
            if hg not in self.temp_tables.values():
                hold &= ~P.TEMPORARY_TABLES
        if flags & _UV_ASSIGN and decision.multiplex != 2:
            self.var_hg = hg
            hold |= P.USER_VARIABLES
        if flags & _SQL_CALC_FOUND_ROWS:
            hold |= P.FOUND_ROWS
        elif flags & _FOUND_ROWS_FN:
            hold &= ~P.FOUND_ROWS
        if flags & _TEXT_PREPARE:
            self.text_prepares[hg] = self.text_prepares.get(hg, 0) + cls.statement_count
            hold |= P.TEXT_PREPARE
        if flags & _DEALLOCATE and self.text_prepares.get(hg):
            self.text_prepares[hg] -= 1
            if not self.text_prepares[hg]:
                hold &= ~P.TEXT_PREPARE
        if flags & _SAVEPOINT:
            hold |= P.SAVEPOINT
        if flags & _HANDLER:
            hold |= P.HANDLER
        if flags & _XA:
            if _XA_END_RE.match(payload[1:].decode("utf-8", "replace")):
                hold &= ~P.XA
            else:
                hold |= P.XA
        if cls.kind is StatementKind.SESSION:
            if flags & _CHANGE_SCHEMA and cls.schema:
                self.schema = cls.schema
                changes = SCHEMA_CHANGED
            hold, vars_changed = self._apply_set(cls, hold, tracks_variables)
            if vars_changed:
                changes |= VARS_CHANGED
        if hold != old:
            self.hold[hg] = hold
        return changes

    def _apply_set(self, cls: Classification, hold: int, tracks_variables: bool) -> tuple[int, bool]:
        """Record the session variables a successful SET assigned (``tracks_variables``: its connection
        reports them itself); returns the connection's pins and whether the session's variables changed."""
        sv = cls.set_variables
        if sv is None:
            if cls.bits & _UNREADABLE_SET:
                return hold | P.SESSION_STATE, False  # a SET the proxy cannot read: keep its connection
            return hold, False
        # MariaDB (10.11) reports no session-state change for the SET @@name = ... form (without
        # SESSION): then the values are taken from the statement, as for a server without tracking.
        tracked = tracks_variables and bool(self.status & _STATE_CHANGED)
        changed = False
        for v in sv:
            scope = v.scope
            if scope == "user" or scope in ("global", "persist", "persist_only"):
                continue
            name = VAR_ALIASES.get(v.name, v.name)
            value = v.value
            if scope == "next_transaction":
                self.next_trx_at = self.statements
                hold |= P.NEXT_TRANSACTION
                continue
            if name == "sql_log_bin":
                off = value.strip("'\"").upper() in ("0", "OFF", "FALSE")
                hold = hold | P.SQL_LOG_BIN if off else hold & ~P.SQL_LOG_BIN
                continue
            if name.startswith("session_track_"):
                hold |= P.SESSION_STATE
                continue
            if tracked:
                continue  # the server reported the resulting values (see _absorb_state)
            if name in ("names", "charset"):
                if NAMES_RE.match(value):
                    self.vars[name] = value
                    changed = True
                else:
                    hold |= P.SESSION_STATE
                continue
            if value.upper() == "DEFAULT":
                changed |= self.vars.pop(name, None) is not None
            elif LITERAL_RE.match(value):
                self.vars[name] = value
                changed = True
            else:
                hold |= P.SESSION_STATE  # an expression the proxy cannot replay elsewhere
        return hold, changed

    def _record_set(self, cls: Classification, charset: int, collations: dict[int, tuple[str, str]],
                    collation_charset: dict[str, str], default_collation: dict[str, str]) -> bool:
        """``SET autocommit = ...`` or ``SET NAMES ...`` alone, recorded by the proxy without a backend
        (drivers send them on connect, so connecting costs no backend round trip); the next borrowed
        connection gets them with the other session variables. True if recorded (the caller answers
        OK). ``charset``: the session's character set id from the handshake; the other arguments: the
        servers' collations (id -> (character set, collation)), collation -> character set, and
        character set -> default collation (empty: not known, SET NAMES goes to a server)."""
        sv = cls.set_variables
        if not sv or len(sv) != 1 or sv[0].scope != "session":
            return False
        name, value = sv[0].name, sv[0].value
        if name == "autocommit":
            v = value.strip("'\"").upper()
            if v in ("1", "ON", "TRUE"):
                self.vars.pop("autocommit", None)
                self.status |= _AUTOCOMMIT
            elif v in ("0", "OFF", "FALSE"):
                self.vars["autocommit"] = "0"
                self.status &= ~_AUTOCOMMIT
            else:
                return False
        elif name == "names":
            m = NAMES_PARTS_RE.match(value)
            if m is None or not collations:
                return False
            cs = m.group(1).strip("'\"`").lower()
            coll = (m.group(2) or "").strip("'\"`").lower()
            if cs == "utf8" and "utf8" not in default_collation:
                cs = "utf8mb3"  # MariaDB's name for it (old_mode UTF8_IS_UTF8MB3)
            if coll:
                if coll == "default":
                    coll = default_collation.get(cs, "")
                if collation_charset.get(coll) != cs:
                    return False  # unknown or mismatched: the server gives the right error
            else:
                coll = default_collation.get(cs, "")
            if not coll:
                return False
            for k in ("names", "charset"):
                self.vars.pop(k, None)
            if collations.get(charset) == (cs, coll):
                for k in CHARSET_VARS:  # what the handshake set: nothing to apply anywhere
                    self.vars.pop(k, None)
            else:
                for k in ("character_set_client", "character_set_connection", "character_set_results"):
                    self.vars[k] = f"'{cs}'"
                self.vars["collation_connection"] = f"'{coll}'"
        else:
            return False
        return True

    @staticmethod
    def _autocommit_on(cls: Classification) -> bool:
        for v in cls.set_variables or ():
            if v.name == "autocommit" and v.scope == "session":
                return v.value.strip("'\"").upper() in ("1", "ON", "TRUE")
        return True

