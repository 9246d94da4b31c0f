"""The session's backend connections: borrowing them in line with the session (schema and session
variables replayed), giving them back after each command unless something pins them, dropping
them, and what a lost connection takes with it.
"""

from __future__ import annotations

import trio

from ..backend import pins as P
from ..backend.connection import REQUIRED_CAPABILITIES as _BACKEND_CAPABILITIES, BackendConnection, BackendState
from ..net.stream import ConnectionLost
from ..protocol import errors as E
from ..protocol.constants import SessionTrack, Status
from ..protocol.errors import MalformedPacket, MySQLError
from ..protocol.messages import (
    OK,
    parse_err,
    parse_session_state,
)
from ..protocol.response import ResponseKind
from ..routing.hostgroups import ONLINE
from ..runtime.services import SessionServices
from .decisions import CHARSET_VARS as _CHARSET_VARS, VAR_ALIASES as _VAR_ALIASES
from .common import (
    _AUTOCOMMIT,
    _CHARSET_ORDER,
    _NOT_RESTORED,
    _NUMBER_RE,
    log,
)


def _sql_literal(value: str, no_backslash_escapes: bool = False) -> str:
    """A session variable's value (as session tracking reports it) as SQL text."""
    if _NUMBER_RE.match(value):
        return value
    if not no_backslash_escapes:
        value = value.replace("\\", "\\\\")
    return "'" + value.replace("'", "''") + "'"


def _keep_after_statement(be: BackendConnection) -> bool:
    """Whether connection_delay_multiplex_ms may keep ``be`` with its session: not when its server
    is draining (OFFLINE_SOFT, SHUNNED...) or it is to be retired."""
    srv = be.server_ref
    return srv is not None and srv.status == ONLINE and not be.retire and not be.broken


def _state_error(be: BackendConnection, what: str, err_payload: bytes) -> MySQLError:
    err = parse_err(err_payload)
    return MySQLError(err.code, f"while restoring session state ({what}) on {be.server}: {err.message}",
                      err.sqlstate)


def _server_var(be: BackendConnection, name: str) -> str:
    """A session variable's name as ``be``'s server spells it (MariaDB before 11.1: tx_isolation)."""
    if name.startswith("transaction_") and be.legacy_tx_names:
        return "tx_" + name[len("transaction_"):]
    return name


class BackendsMixin:
    """Borrowing, state replay and giving back of backend connections (a part of ``ClientSession``)."""

    services: SessionServices

    def _borrow_now(self, hg: int) -> BackendConnection | None:
        """``_borrow`` when it needs no await (the usual case): the connection to ``hg`` the session
        holds, else an idle one from the pool, if it is in line with the session; else None."""
        be = self.backends.get(hg)
        if be is None:
            rt = self.services
            be = rt.pools.take_idle(rt.hostgroups, hg, self.pool_key)
            if be is None:
                return None
            self.backends[hg] = be
        if be.vars != self.vars or (self.schema and be.schema != self.schema):
            return None
        return be

    async def _borrow(self, hg: int) -> BackendConnection:
        """The session's connection to ``hg``: the one it holds, else one from the pool, in line with the session."""
        be = self._borrow_now(hg)
        if be is not None:
            return be
        be = self.backends.get(hg)
        if be is None:
            rt = self.services
            be = await rt.pools.acquire(rt.hostgroups, hg, self.pool_key, self.login, self.schema)
            self.backends[hg] = be
        await self._sync_backend(be)
        return be

    async def _borrow_or_fall_back(self, hg: int) -> tuple[int, BackendConnection]:
        """``_borrow(hg)``, except that when no server of a reader hostgroup can take the statement (all
        SHUNNED or OFFLINE, or none), its writer hostgroup serves it (``Hostgroups.fallback_for``:
        mysql-reader_fallback_to_writer). Returns the hostgroup that serves and the connection. Every
        read goes through here: text statements, PREPARE and the causal-read check alike."""
        try:
            be = self._borrow_now(hg)  # a plain call: no coroutine in the usual case
            if be is None:
                be = await self._borrow(hg)
            return hg, be
        except MySQLError as exc:
            fallback = (self.services.hostgroups.fallback_for(hg) if exc.code == E.PROXYSQL_ER_HOSTGROUP_TIMEOUT
                        else None)
            if fallback is None or fallback == hg:
                raise
        return fallback, await self._borrow(fallback)

    async def _sync_backend(self, be: BackendConnection) -> None:
        """Bring a borrowed connection in line with the session: schema, then session variables, one round trip each."""
        what = ""
        try:
            if self.schema and be.schema != self.schema:
                what = "USE " + self.schema
                tracker = await be.run_command(b"\x02" + self.schema.encode("utf-8", "surrogateescape"),
                                               ResponseKind.SIMPLE)
                if tracker.error is not None:
                    raise _state_error(be, what, tracker.error)
                be.schema = self.schema
            if be.vars != self.vars:
                sql = await self._set_statement(be)
                what = sql
                if sql:
                    tracker = await be.simple_query(sql)
                    if tracker.error is not None:
                        be.broken = True  # some of the assignments may have run
                        raise _state_error(be, sql, tracker.error)
                be.vars = dict(self.vars)
        except (ConnectionLost, MalformedPacket) as exc:
            raise self._lost_backend(be, exc) from exc
        except MySQLError:
            if be.broken:
                self._drop_backend(be)
            raise

    async def _set_statement(self, be: BackendConnection) -> str:
        """One SET statement that turns ``be``'s session variables into the session's."""
        want, have = self.vars, be.vars
        charset_items: list[str] = []
        items: list[str] = []
        reset_names = any(name in _CHARSET_VARS and name not in want for name in have)
        if reset_names:
            cs, coll = await self.services.charsets.names(be, self.charset)
            charset_items.append(f"NAMES {cs} COLLATE {coll}")
        for name in have:
            if name not in want and name not in _CHARSET_VARS:
                items.append(f"@@session.{_server_var(be, name)}=DEFAULT")
        charset_changed = reset_names
        for name, value in want.items():
            if name in _CHARSET_VARS:
                charset_changed |= have.get(name) != value
            elif have.get(name) != value:
                items.append(f"@@session.{_server_var(be, name)}={value}")
        if charset_changed:
            # in an order where none undoes another: NAMES first, collation after character sets
            for name in _CHARSET_ORDER:
                value = want.get(name)
                if value is None:
                    continue
                if name == "names":
                    charset_items.append(f"NAMES {value}")
                elif name == "charset":
                    charset_items.append(f"CHARACTER SET {value}")
                else:
                    charset_items.append(f"@@session.{name}={value}")
        items = charset_items + items
        return "SET " + ", ".join(items) if items else ""

    def _release_free(self) -> None:
        """After a command: give back every held connection nothing pins; count the pins that started."""
        backends = self.backends
        delay = self.services.vars.connection_delay_multiplex_ms
        if delay:  # kept for that long after the statement (see release_delayed)
            self.release_at = trio.current_time() + delay / 1000
        if len(backends) == 1 and not self.hold and not self.mode_pins:
            # the common case: one connection, nothing pinned so far
            for be in backends.values():
                if be.in_trx or be.state is BackendState.CLOSED:
                    break
                be.pins = 0
                if not (delay and _keep_after_statement(be)):
                    backends.clear()
                    if not self.status & _AUTOCOMMIT:
                        self._autocommit_off_released(be)
                    self.services.pools.release(be)
                return
        for hg in list(backends):
            be = backends[hg]
            if be.state is BackendState.CLOSED:
                del backends[hg]
                continue
            pins = self._pins_after_command(hg, be.in_trx)
            if pins:
                started = pins & ~be.pins
                if started:
                    self.services.pin_counters.started(started)
                be.pins = pins
                be.state = BackendState.PINNED
                continue
            be.pins = 0
            if not (delay and _keep_after_statement(be)):
                del backends[hg]
                if not self.status & _AUTOCOMMIT:
                    self._autocommit_off_released(be)
                self.services.pools.release(be)

    def release_delayed(self) -> None:
        """``connection_delay_multiplex_ms`` after the last statement: the connections the session kept
        only for that delay (nothing pins them) go back to the pool."""
        self.release_at = 0.0
        for hg, be in list(self.backends.items()):
            if be.pins:  # pinned since (_release_free set the pins after the last statement)
                continue
            del self.backends[hg]
            if be.state is not BackendState.CLOSED:
                if not self.status & _AUTOCOMMIT:
                    self._autocommit_off_released(be)
                self.services.pools.release(be)

    def _autocommit_off_released(self, be: BackendConnection) -> None:
        """autocommit_false_not_reusable: a connection an autocommit-off session used is closed when
        the session gives it back, instead of serving other sessions (ProxySQL's semantics)."""
        if self.services.vars.autocommit_false_not_reusable:
            be.retire = True

    def _drop_backend(self, be: BackendConnection, *, quit: bool = False) -> None:
        """Stop using ``be`` and close it: its state is lost (or unwanted) with it."""
        for hg, b in list(self.backends.items()):
            if b is be:
                del self.backends[hg]
                self._forget_connection_state(hg)
        if quit and be.state is not BackendState.ACTIVE:
            be.retire = True
        else:
            be.broken = True
        if be.server_ref is not None:
            self.services.pools.discard(be)
        else:
            be.close()

    def _forget_connection_state(self, hg: int) -> None:
        """What lived in the session's connection to ``hg`` is gone with it."""
        self._forget_hostgroup_state(hg)
        self.prepared.forget_cursors(hg)

    def _drop_all_backends(self, *, quit: bool = False) -> None:
        """The session ends (or resets): free connections go back to the pool; pinned ones carry state of
        this session (variables, temporary tables, a transaction...): they are reset with
        COM_RESET_CONNECTION first (``Pools.reset_and_release``), or closed when that cannot be done.
        ``quit=False`` (the session was killed: so were its backend threads): every held connection is closed."""
        pools = self.services.pools
        for hg, be in list(self.backends.items()):
            pins = self.hold.get(hg, 0) | (P.TRANSACTION if be.in_trx else 0)
            if be.state is BackendState.ACTIVE or not quit or (pins and not pools.reset_and_release(be)):
                self._drop_backend(be, quit=quit)
                continue
            del self.backends[hg]
            if pins:
                self._forget_connection_state(hg)  # being reset by the pool
            else:
                pools.release(be)

    def _lost_backend(self, be: BackendConnection, exc: Exception) -> MySQLError:
        self._drop_backend(be)
        if be.server_ref is not None:
            self.services.pools.check_idle(be.server_ref)  # its siblings may be dead too (a crash)
        self.services.counters.backend_errors += 1
        self.services.audit.backend_error(be.server, be.server.hostgroup, exc, session=self, during="query")
        log.warning("session %d: lost backend %s (hostgroup %d): %s", self.id, be.server, be.server.hostgroup, exc)
        self.status &= ~(Status.IN_TRANS | Status.IN_TRANS_READONLY)
        return MySQLError(
            E.ER_NET_READ_ERROR,
            f"Lost connection to backend {be.server} (hostgroup {be.server.hostgroup}) during query: {exc}",
            "08S01",
        )

    def _publish_written_gtid(self, ok: bytes | None) -> None:
        """The GTID of a write, noted before its OK is forwarded: with worker processes, a read that
        the client sends after it has the OK, on any worker, waits for it (causal_reads=global).
        ``_absorb_state`` notes it again afterwards (no change then)."""
        if ok is None:
            return
        try:
            state = OK.parse(ok, _BACKEND_CAPABILITIES).session_state
            changes = parse_session_state(state) if state else ()
        except MalformedPacket:
            return  # _absorb_state says so
        for kind, value in changes:
            if kind == SessionTrack.SYSTEM_VARIABLES and value[0].lower() == "last_gtid" and value[1]:
                self.services.note_written_gtid(value[1])

    def _absorb_state(self, be: BackendConnection, ok: bytes) -> None:
        """Session-state changes a backend reported in an OK packet: the source of truth for variables and schema."""
        try:
            state = OK.parse(ok, be.capabilities).session_state
            changes = parse_session_state(state) if state else ()
        except MalformedPacket as exc:
            log.warning("session %d: unreadable session-state data from %s: %s", self.id, be.server, exc)
            return
        nbe = "NO_BACKSLASH_ESCAPES" in self.vars.get("sql_mode", "").upper()
        for kind, value in changes:
            if kind == SessionTrack.SYSTEM_VARIABLES:
                name, val = value
                name = _VAR_ALIASES.get(name.lower(), name.lower())
                if name == "last_gtid":
                    if val:
                        self.last_gtid = val
                        self.services.note_written_gtid(val)
                    continue
                if name in _NOT_RESTORED:
                    continue
                if name == "character_set_results" and val == "":
                    self.vars[name] = "NULL"
                else:
                    self.vars[name] = _sql_literal(val, nbe)
                if name == "sql_mode":
                    nbe = "NO_BACKSLASH_ESCAPES" in val.upper()
            elif kind == SessionTrack.SCHEMA:
                self.schema = value or None
                be.schema = self.schema
        be.vars = dict(self.vars)
