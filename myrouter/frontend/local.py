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
from ..runtime.sessions import command_name as _command_name  # one naming of commands for both processlists
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
    from .session import ClientSession


def process_rows(sessions) -> list[tuple[proxyids.ProcessRow, str]]:
    """Logged-in ``sessions`` as (PROCESSLIST row, client host): SHOW PROCESSLIST and KILL USER read
    them, here and (through the supervisor) from the other workers."""
    now = time.monotonic()
    rows = []
    for s in list(sessions):
        if s.state is SessionState.HANDSHAKE:
            continue
        busy = s.state is SessionState.BUSY and s.command is not None
        info = s.info[1:].decode("utf-8", "replace") if busy and s.info and s.command == _COM_QUERY else None
        rows.append((proxyids.ProcessRow(
            s.id, s.username, s.client_addr, s.schema, _command_name(s),
            int((now - (s.command_started if busy else s.idle_since)) * 1000), "executing" if busy else "", info),
            s.client_host))
    return rows


class LocalAnswers:
    """What the proxy answers itself for one session: local functions, KILL, PROCESSLIST."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session
        self.privileges: frozenset[str] | None = None  # the user's global privileges on the backend, once asked

    async def local_answer(self, sql: str, flags: int) -> bool:
        """Answer SELECT LAST_INSERT_ID() / ROW_COUNT() / FOUND_ROWS() from what the proxy saw, when the
        connection that ran the previous statement is no longer the session's. True if answered."""
        session = self.session
        m = _LOCAL_FN_RE.match(sql)
        if m is None:
            return False
        fn = m.group(1).upper().replace(" ", "")
        if fn.startswith("CONNECTION_ID"):
            value = session.id  # the session's id, never a pooled backend's thread id (see proxyids)
        elif fn.startswith(("LAST_INSERT_ID", "@@")):
            if session.last_insert_hg is not None and session.last_insert_hg in session.backends:
                return False  # the connection that made the id is still ours: it knows best
            value = session.last_insert_id
        else:
            if session.last_hg is not None and session.last_hg in session.backends:
                return False
            value = session.row_count if fn.startswith("ROW_COUNT") else session.found_rows
        name = m.group(2)
        if name is None:
            name = m.group(1)
        elif name[:1] in ("`", "'", '"'):
            name = name[1:-1]
        col = column_definition(name, type_code=MYSQL_TYPE_LONGLONG, charset=63, length=21,
                                flags=0x81 if value >= 0 else 0x01)
        await session.client.send_all(encode_result_set([col], [text_row([value])], session.capabilities,
                                                     session.status & ~_STATE_CHANGED))
        session.row_count = -1
        return True

    async def kill(self, target_id: int, query_only: bool) -> None:
        session = self.session
        registry = session.services.registry
        target = registry.sessions.get(target_id)
        if target is None and registry.peers is not None and registry.role.worker_of(target_id) != registry.role.index:
            await self._kill_elsewhere(target_id, query_only)  # the id says: another worker's session
            return
        if target is None or target.state is SessionState.HANDSHAKE:
            raise MySQLError(E.ER_NO_SUCH_THREAD, f"Unknown thread id: {target_id}", "HY000")
        if target.username != session.username and not await self._has_privilege(proxyids.MAY_KILL_OTHERS):
            raise MySQLError(E.ER_KILL_DENIED_ERROR, f"You are not owner of thread {target_id}", "HY000")
        if target is session:
            if query_only:
                await session._send_ok()  # nothing of ours is running while we ask
                return
            await session._send_err(MySQLError(E.ER_QUERY_INTERRUPTED, "Query execution was interrupted", "70100"))
            raise CloseSession
        await session.services.side.kill_session_work(target, query_only=query_only)
        await session._send_ok()

    async def _kill_elsewhere(self, target_id: int, query_only: bool) -> None:
        """KILL of another worker's session, with the same rules as of one of ours."""
        session = self.session
        peers = session.services.registry.peers
        assert peers is not None
        found = await peers.find(target_id)
        if found is None or found["state"] == SessionState.HANDSHAKE.value:
            raise MySQLError(E.ER_NO_SUCH_THREAD, f"Unknown thread id: {target_id}", "HY000")
        if found["username"] != session.username and not await self._has_privilege(proxyids.MAY_KILL_OTHERS):
            raise MySQLError(E.ER_KILL_DENIED_ERROR, f"You are not owner of thread {target_id}", "HY000")
        if not await peers.kill(target_id, query_only=query_only):
            raise MySQLError(E.ER_NO_SUCH_THREAD, f"Unknown thread id: {target_id}", "HY000")
        await session._send_ok()

    async def kill_statement(self, sql: str) -> None:
        """A KILL the fast test at the top of ``_com_query`` did not read (comments, HARD/SOFT, USER...)."""
        session = self.session
        k = proxyids.parse_kill(sql)  # MySQLError 1235 for the forms the proxy does not carry out
        if k.thread_id is not None:
            await self.kill(k.thread_id, k.query_only)
            return
        user = session.username if k.current_user else k.user
        targets = [s for s in list(session.services.registry.sessions.values())
                   if s.username == user and s.state is not SessionState.HANDSHAKE
                   and proxyids.host_matches(k.host, s.client_host)]
        peers = session.services.registry.peers
        elsewhere = [] if peers is None else [
            row.id for row, client_host in await peers.sessions()
            if row.user == user and proxyids.host_matches(k.host, client_host)]
        if (targets or elsewhere) and user != session.username \
                and not await self._has_privilege(proxyids.MAY_KILL_OTHERS):
            raise MySQLError(E.ER_KILL_DENIED_ERROR, f"Operation KILL USER failed for {user}@{k.host or '%'}", "HY000")
        for target in targets:
            if target is not session:
                await session.services.side.kill_session_work(target, query_only=k.query_only)
        killed = len(targets)
        for target_id in elsewhere:
            assert peers is not None
            killed += await peers.kill(target_id, query_only=k.query_only)
        if session in targets and not k.query_only:
            await session._send_err(MySQLError(E.ER_QUERY_INTERRUPTED, "Query execution was interrupted", "70100"))
            raise CloseSession
        await session._send_ok(affected=killed)

    async def _has_privilege(self, any_of: frozenset[str]) -> bool:
        """Whether the user has one of ``any_of`` globally on the backend: SHOW GRANTS on a connection of
        its default hostgroup, asked once per session (and again after COM_CHANGE_USER)."""
        if self.privileges is None:
            self.privileges = proxyids.global_privileges(await self._show_grants())
        return bool(self.privileges & any_of)

    async def _show_grants(self) -> list[str]:
        """SHOW GRANTS as the session's user: on the connection it holds or an idle one of its default
        hostgroup, else on a connection of its own (as KILL's), so that a full pool never blocks a KILL."""
        session = self.session
        rt = session.services
        hg = session.default_hostgroup
        be = session.backends.get(hg)
        if be is None:
            be = rt.pools.take_idle(rt.hostgroups, hg, session.pool_key)
            if be is not None:
                session.backends[hg] = be  # given back after the command, as any borrowed connection
        if be is not None:
            try:
                rows = await be.query_rows("SHOW GRANTS")
            except (ConnectionLost, MalformedPacket) as exc:
                raise session._lost_backend(be, exc) from exc
            return [r[0] or "" for r in rows if r]
        online = [s for s in rt.hostgroups.by_hostgroup.get(hg, ()) if s.status == "ONLINE"]
        if not online:
            raise MySQLError(9001, f"cannot check the privileges of '{session.username}': hostgroup {hg} has no "
                             "ONLINE server", "HY000")
        timeout = rt.vars.connect_timeout_server / 1000
        conn = await open_backend(online[0].address, username=session.username, secret=session.secret, database=None,
                                  client_capabilities=0, connect_timeout=timeout, tls=rt.runtime_config.backend_tls)
        try:
            with trio.fail_after(timeout):
                rows = await conn.query_rows("SHOW GRANTS")
        except (ConnectionLost, MalformedPacket, trio.TooSlowError) as exc:
            raise MySQLError(1158, f"cannot check the privileges of '{session.username}' on {online[0].address}: "
                             f"{exc}", "08S01") from exc
        finally:
            await conn.aclose()
        return [r[0] or "" for r in rows if r]

    async def _visible_processes(self) -> list[proxyids.ProcessRow]:
        """The instance's sessions this one may see, as PROCESSLIST rows: its user's, or all with
        PROCESS (every worker's, when the instance runs several)."""
        session = self.session
        registry = session.services.registry
        rows = [row for row, _ in process_rows(registry.sessions.values())]
        if registry.peers is not None:
            rows += [row for row, _ in await registry.peers.sessions()]
            rows.sort(key=lambda r: r.id)
        if any(r.user != session.username for r in rows) \
                and not await self._has_privilege(proxyids.MAY_SEE_OTHERS):
            rows = [r for r in rows if r.user == session.username]
        return rows

    async def send_processlist(self, full: bool) -> None:
        """SHOW [FULL] PROCESSLIST from the proxy's sessions, with MariaDB's columns."""
        session = self.session
        rows = proxyids.show_rows(await self._visible_processes(), full)
        cols = [column_definition("Id", type_code=MYSQL_TYPE_LONGLONG, charset=63, length=21, flags=0x21),
                *(column_definition(n, length=256) for n in ("User", "Host", "db", "Command")),
                column_definition("Time", type_code=3, charset=63, length=7, flags=0x01),
                column_definition("State", length=120),
                column_definition("Info", length=100 if not full else 4096),
                column_definition("Progress", type_code=246, charset=63, length=7, flags=0x01, decimals=3)]
        await session.client.send_all(encode_result_set(cols, [text_row(r) for r in rows], session.capabilities,
                                                     session.status & ~_STATE_CHANGED))

    async def session_ids_sql(self, sql: str, flags: int) -> str | None:
        """``sql`` with CONNECTION_ID() and PROCESSLIST turned into the proxy's sessions (see proxyids);
        None when answered here (SHOW PROCESSLIST alone)."""
        session = self.session
        if flags & _PROCESSLIST:
            full = proxyids.show_processlist(sql)
            if full is not None:
                await self.send_processlist(full)
                return None
            if proxyids.reads_processlist(sql, session.schema):
                table = proxyids.processlist_table(await self._visible_processes())
                sql = proxyids.rewrite_processlist(sql, table, session.schema) or sql
        if flags & _CONNECTION_ID:
            sql = proxyids.rewrite_connection_id(sql, session.id) or sql
        return sql
