"""What the proxy answers itself: LAST_INSERT_ID()/ROW_COUNT()/FOUND_ROWS()/CONNECTION_ID() when the
connection that knows is gone, KILL of the proxy's sessions, PROCESSLIST of the proxy's sessions
(see proxyids for the statement texts), and the privileges these need.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import trio

from ..backend.connection import open_backend
from ..net.stream import ConnectionLost
from ..protocol import errors as E
from ..protocol.errors import MalformedPacket, MySQLError
from ..protocol.messages import (
    MYSQL_TYPE_LONGLONG,
    column_definition,
    encode_result_set,
    text_row,
)
from . import proxyids
from .common import (
    CloseSession,
    SessionState,
    _COM_QUERY,
    _CONNECTION_ID,
    _LOCAL_FN_RE,
    _PROCESSLIST,
    _STATE_CHANGED,
)

if TYPE_CHECKING:
    from ..app import Proxy


class LocalMixin:
    """Answers of the proxy itself: local functions, KILL, PROCESSLIST (a part of ``ClientSession``)."""

    app: Proxy

    async def _local_answer(self, sql: str, flags: int) -> bool:
        """Answer SELECT LAST_INSERT_ID() / ROW_COUNT() / FOUND_ROWS() from what the proxy saw, when the
        connection that ran the previous statement is no longer the session's. True if answered."""
        m = _LOCAL_FN_RE.match(sql)
        if m is None:
            return False
        fn = m.group(1).upper().replace(" ", "")
        if fn.startswith("CONNECTION_ID"):
            value = self.id  # the session's id, never a pooled backend's thread id (see proxyids)
        elif fn.startswith(("LAST_INSERT_ID", "@@")):
            if self.last_insert_hg is not None and self.last_insert_hg in self.backends:
                return False  # the connection that made the id is still ours: it knows best
            value = self.last_insert_id
        else:
            if self.last_hg is not None and self.last_hg in self.backends:
                return False
            value = self.row_count if fn.startswith("ROW_COUNT") else self.found_rows
        name = m.group(2)
        if name is None:
            name = m.group(1)
        elif name[:1] in ("`", "'", '"'):
            name = name[1:-1]
        col = column_definition(name, type_code=MYSQL_TYPE_LONGLONG, charset=63, length=21,
                                flags=0x81 if value >= 0 else 0x01)
        await self.client.send_all(encode_result_set([col], [text_row([value])], self.capabilities,
                                                     self.status & ~_STATE_CHANGED))
        self.row_count = -1
        return True

    async def _kill(self, target_id: int, query_only: bool) -> None:
        target = self.app.sessions.get(target_id)
        if target is None or target.state is SessionState.HANDSHAKE:
            raise MySQLError(E.ER_NO_SUCH_THREAD, f"Unknown thread id: {target_id}", "HY000")
        if target.username != self.username and not await self._has_privilege(proxyids.MAY_KILL_OTHERS):
            raise MySQLError(E.ER_KILL_DENIED_ERROR, f"You are not owner of thread {target_id}", "HY000")
        if target is self:
            if query_only:
                await self._send_ok()  # nothing of ours is running while we ask
                return
            await self._send_err(MySQLError(E.ER_QUERY_INTERRUPTED, "Query execution was interrupted", "70100"))
            raise CloseSession
        await self.app.kill_session_work(target, query_only=query_only)
        await self._send_ok()

    async def _kill_statement(self, sql: str) -> None:
        """A KILL the fast test at the top of ``_com_query`` did not read (comments, HARD/SOFT, USER...)."""
        k = proxyids.parse_kill(sql)  # MySQLError 1235 for the forms the proxy does not carry out
        if k.thread_id is not None:
            await self._kill(k.thread_id, k.query_only)
            return
        user = self.username if k.current_user else k.user
        targets = [s for s in list(self.app.sessions.values())
                   if s.username == user and s.state is not SessionState.HANDSHAKE
                   and proxyids.host_matches(k.host, s.client_host)]
        if targets and user != self.username and not await self._has_privilege(proxyids.MAY_KILL_OTHERS):
            raise MySQLError(E.ER_KILL_DENIED_ERROR, f"Operation KILL USER failed for {user}@{k.host or '%'}", "HY000")
        for target in targets:
            if target is not self:
                await self.app.kill_session_work(target, query_only=k.query_only)
        if self in targets and not k.query_only:
            await self._send_err(MySQLError(E.ER_QUERY_INTERRUPTED, "Query execution was interrupted", "70100"))
            raise CloseSession
        await self._send_ok(affected=len(targets))

    async def _has_privilege(self, any_of: frozenset[str]) -> bool:
        """Whether the user has one of ``any_of`` globally on the backend: SHOW GRANTS on a connection of
        its default hostgroup, asked once per session (and again after COM_CHANGE_USER)."""
        if self.privileges is None:
            self.privileges = proxyids.global_privileges(await self._show_grants())
        return bool(self.privileges & any_of)

    async def _show_grants(self) -> list[str]:
        """SHOW GRANTS as the session's user: on the connection it holds or an idle one of its default
        hostgroup, else on a connection of its own (as KILL's), so that a full pool never blocks a KILL."""
        app = self.app
        hg = self.default_hostgroup
        be = self.backends.get(hg)
        if be is None:
            be = app.pools.take_idle(app.hostgroups, hg, self.pool_key)
            if be is not None:
                self.backends[hg] = be  # given back after the command, as any borrowed connection
        if be is not None:
            try:
                rows = await be.query_rows("SHOW GRANTS")
            except (ConnectionLost, MalformedPacket) as exc:
                raise self._lost_backend(be, exc) from exc
            return [r[0] or "" for r in rows if r]
        online = [s for s in app.hostgroups.by_hostgroup.get(hg, ()) if s.status == "ONLINE"]
        if not online:
            raise MySQLError(9001, f"cannot check the privileges of '{self.username}': hostgroup {hg} has no "
                             "ONLINE server", "HY000")
        timeout = app.vars.connect_timeout_server / 1000
        conn = await open_backend(online[0].address, username=self.username, secret=self.secret, database=None,
                                  client_capabilities=0, connect_timeout=timeout, tls=app.backend_tls)
        try:
            with trio.fail_after(timeout):
                rows = await conn.query_rows("SHOW GRANTS")
        except (ConnectionLost, MalformedPacket, trio.TooSlowError) as exc:
            raise MySQLError(1158, f"cannot check the privileges of '{self.username}' on {online[0].address}: "
                             f"{exc}", "08S01") from exc
        finally:
            await conn.aclose()
        return [r[0] or "" for r in rows if r]

    async def _visible_processes(self) -> list[proxyids.ProcessRow]:
        """The proxy's sessions this one may see, as PROCESSLIST rows: its user's, or all with PROCESS."""
        from ..admin.stats import _command_name  # one naming of commands for both processlists

        sessions = [s for s in list(self.app.sessions.values()) if s.state is not SessionState.HANDSHAKE]
        if any(s.username != self.username for s in sessions) \
                and not await self._has_privilege(proxyids.MAY_SEE_OTHERS):
            sessions = [s for s in sessions if s.username == self.username]
        now = time.monotonic()
        rows = []
        for s in sessions:
            busy = s.state is SessionState.BUSY and s.command is not None
            info = s.info[1:].decode("utf-8", "replace") if busy and s.info and s.command == _COM_QUERY else None
            rows.append(proxyids.ProcessRow(
                s.id, s.username, s.client_addr, s.schema, _command_name(s),
                int((now - (s.command_started if busy else s.idle_since)) * 1000), "executing" if busy else "", info))
        return rows

    async def _send_processlist(self, full: bool) -> None:
        """SHOW [FULL] PROCESSLIST from the proxy's sessions, with MariaDB's columns."""
        rows = proxyids.show_rows(await self._visible_processes(), full)
        cols = [column_definition("Id", type_code=MYSQL_TYPE_LONGLONG, charset=63, length=21, flags=0x21),
                *(column_definition(n, length=256) for n in ("User", "Host", "db", "Command")),
                column_definition("Time", type_code=3, charset=63, length=7, flags=0x01),
                column_definition("State", length=120),
                column_definition("Info", length=100 if not full else 4096),
                column_definition("Progress", type_code=246, charset=63, length=7, flags=0x01, decimals=3)]
        await self.client.send_all(encode_result_set(cols, [text_row(r) for r in rows], self.capabilities,
                                                     self.status & ~_STATE_CHANGED))

    async def _session_ids_sql(self, sql: str, flags: int) -> str | None:
        """``sql`` with CONNECTION_ID() and PROCESSLIST turned into the proxy's sessions (see proxyids);
        None when answered here (SHOW PROCESSLIST alone)."""
        if flags & _PROCESSLIST:
            full = proxyids.show_processlist(sql)
            if full is not None:
                await self._send_processlist(full)
                return None
            if proxyids.reads_processlist(sql, self.schema):
                table = proxyids.processlist_table(await self._visible_processes())
                sql = proxyids.rewrite_processlist(sql, table, self.schema) or sql
        if flags & _CONNECTION_ID:
            sql = proxyids.rewrite_connection_id(sql, self.id) or sql
        return sql

    async def _com_process_info(self, payload: bytes) -> None:
        await self._send_processlist(full=False)  # COM_PROCESS_INFO: SHOW PROCESSLIST of the proxy's sessions

    async def _com_process_kill(self, payload: bytes) -> None:
        if len(payload) < 5:
            raise MalformedPacket("COM_PROCESS_KILL without a connection id")
        await self._kill(int.from_bytes(payload[1:5], "little"), query_only=False)
