"""Variables that change traffic do what their names say, through a real proxy and real MariaDB;
values myrouter cannot honour are refused, in the TOML file and through the admin interface alike.

use_tcp_keepalive / tcp_keepalive_time, query_digests (+ _lowercase, _max_query_length,
_max_digest_length), commands_stats, connect_retries_on_failure / connect_retries_delay,
connection_delay_multiplex_ms, client_session_track_gtid, and the refusals:
keep_multiplexing_variables, enable_server_deprecate_eof, eventslog_format.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pymysql
import pytest

from conftest import REPO, RunningProxy, admin_sql, wait_for
from myrouter.config import load_config
from myrouter.errors import ConfigError
from myrouter.routing.digest import digest


def _keepalive(sock: socket.socket) -> tuple[int, int]:
    return (sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE))


def _sockets(rp: RunningProxy) -> tuple[list[socket.socket], list[socket.socket]]:
    """The client sockets of the proxy's sessions and the sockets of its backend connections."""
    def grab():
        return ([s.client.sock for s in rp.proxy.sessions.values()], [be.stream.sock for be in rp.proxy.backends])
    return rp.call(grab)


# ---------------------------------------------------------------------------------- keepalive


def test_tcp_keepalive_is_set_on_client_and_backend_sockets(proxy_factory) -> None:
    rp = proxy_factory(variables={"use_tcp_keepalive": True, "tcp_keepalive_time": 77})
    conn = rp.connect()
    with conn.cursor() as cur:
        cur.execute("BEGIN")  # keeps the backend connection with the session
        cur.execute("SELECT 1")
        clients, backends = _sockets(rp)
        assert clients and backends
        for sock in clients + backends:
            assert _keepalive(sock) == (1, 77)
        cur.execute("COMMIT")
    conn.close()


def test_tcp_keepalive_off_leaves_sockets_without_it(proxy_factory) -> None:
    rp = proxy_factory(variables={"use_tcp_keepalive": False, "tcp_keepalive_time": 77})
    conn = rp.connect()
    with conn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT 1")
        clients, backends = _sockets(rp)
        assert clients and backends
        for sock in clients + backends:
            assert _keepalive(sock)[0] == 0
        cur.execute("COMMIT")
    conn.close()


# ------------------------------------------------------------------------------------ digests


def _digest_rows(rp: RunningProxy) -> list[tuple]:
    """The digests of the tests' SELECTs (not the drivers' SET NAMES and the like)."""
    return admin_sql(rp, "SELECT hostgroup, digest, digest_text, count_star FROM stats_mysql_query_digest "
                         "WHERE digest_text LIKE 'select %' ORDER BY digest_text")


def _run(rp: RunningProxy, *statements: str) -> None:
    conn = rp.connect(autocommit=True)  # reads outside a transaction may go to the replicas
    try:
        with conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
                cur.fetchall()
    finally:
        conn.close()


def test_query_digests_off_records_no_digest_and_on_again_at_runtime(proxy_factory) -> None:
    rp = proxy_factory(variables={"query_digests": False})
    _run(rp, "SELECT 1 FROM DUAL", "SELECT 2 FROM DUAL")
    assert _digest_rows(rp) == []
    admin_sql(rp, "SET mysql-query_digests='true'", "LOAD MYSQL VARIABLES TO RUNTIME")
    _run(rp, "SELECT 3 FROM DUAL")
    assert [r[2:] for r in _digest_rows(rp)] == [("SELECT ? FROM DUAL", 1)]


def test_query_digests_lowercase_folds_case(proxy_factory) -> None:
    rp = proxy_factory(variables={"query_digests_lowercase": True})
    _run(rp, "SELECT 1 FROM DUAL", "select 2 from dual", "Select 3 From Dual")
    rows = _digest_rows(rp)
    assert [r[2:] for r in rows] == [("select ? from dual", 3)]
    explained = dict(admin_sql(rp, "EXPLAIN ROUTING 'SELECT 4 FROM DUAL'"))  # the digest the sessions use
    assert (explained["digest"], explained["digest_text"]) == (rows[0][1], "select ? from dual")


def test_query_digests_lowercase_off_keeps_case(proxy_factory) -> None:
    rp = proxy_factory()
    _run(rp, "SELECT 1 FROM DUAL", "select 2 from dual")
    assert [r[2:] for r in _digest_rows(rp)] == [("SELECT ? FROM DUAL", 1), ("select ? from dual", 1)]


def test_digest_stops_at_query_digests_max_query_length(proxy_factory) -> None:
    """A 3 MB statement is digested up to query_digests_max_query_length: statements that agree
    up to there share a digest row, yet each is classified on its own (a locking read of the same
    prefix still goes to the writer)."""
    rp = proxy_factory(rules_dir=REPO / "rules", variables={"query_digests_max_query_length": 200})
    prefix = "SELECT id FROM test.digest_cap WHERE id IN ("
    long_read = prefix + ",".join(str(i) for i in range(500_000)) + ")"
    assert len(long_read) > 3_000_000
    conn = rp.connect()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS test.digest_cap (id INT PRIMARY KEY)")
    conn.close()
    admin_sql(rp, "SELECT * FROM stats_mysql_query_digest_reset")
    _run(rp, long_read, long_read.replace("IN (0,", "IN (7,"), long_read + " FOR UPDATE")
    rows = _digest_rows(rp)
    expected_text = digest(long_read[:200])[0]
    assert len(expected_text) < 200
    by_hostgroup = {hg: (text, count) for hg, _, text, count in rows}
    assert by_hostgroup == {1: (expected_text, 2), 0: (expected_text, 1)}, rows


def test_digest_text_is_cut_at_query_digests_max_digest_length(proxy_factory) -> None:
    rp = proxy_factory(variables={"query_digests_max_digest_length": 16})
    _run(rp, "SELECT 1 AS first_column FROM DUAL", "SELECT 1 AS other_column FROM DUAL")
    rows = _digest_rows(rp)
    assert [r[2] for r in rows] == ["SELECT ? AS firs", "SELECT ? AS othe"]
    assert rows[0][1] != rows[1][1]  # different statements keep different digests


# ------------------------------------------------------------------------------ commands_stats


def _select_count(rp: RunningProxy) -> int:
    return admin_sql(rp, "SELECT Total_cnt FROM stats_mysql_commands_counters WHERE Command = 'SELECT'")[0][0]


def test_commands_stats_off_leaves_commands_counters_empty(proxy_factory) -> None:
    rp = proxy_factory(variables={"commands_stats": False})
    _run(rp, "SELECT 1", "SELECT 2")
    assert admin_sql(rp, "SELECT SUM(Total_cnt) FROM stats_mysql_commands_counters")[0][0] == 0
    admin_sql(rp, "SET mysql-commands_stats='true'", "LOAD MYSQL VARIABLES TO RUNTIME")
    _run(rp, "SELECT 3")
    assert _select_count(rp) == 1


def test_commands_stats_on_counts_commands(proxy_factory) -> None:
    rp = proxy_factory()
    _run(rp, "SELECT 1", "SELECT 2")
    assert _select_count(rp) == 2


# ----------------------------------------------------------------------------- connect retries


class FlakyServer:
    """A TCP front for a real MariaDB server: the first ``failures`` connections are accepted and
    closed at once (the server went away), later ones are relayed to the server."""

    def __init__(self, target_port: int, failures: int) -> None:
        self.target_port = target_port
        self.failures = failures
        self.accepted: list[float] = []  # time.monotonic() of each accepted connection
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            self.accepted.append(time.monotonic())
            if len(self.accepted) <= self.failures:
                conn.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._open += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass  # the other direction closed both sockets
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already shut down by the other direction

    def close(self) -> None:
        self.listener.close()
        for s in self._open:
            s.close()


@pytest.fixture
def flaky(cluster):
    made: list[FlakyServer] = []

    def make(failures: int) -> FlakyServer:
        f = FlakyServer(cluster.primary.port, failures)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


def _flaky_proxy(proxy_factory, server: FlakyServer, **variables) -> RunningProxy:
    return proxy_factory(
        servers=[{"hostgroup_id": 0, "hostname": "127.0.0.1", "port": server.port}],
        users=[{"username": "app", "password": "app", "default_hostgroup": 0}],  # no default schema to check
        variables={"monitor_enabled": False, "server_version": "10.11.0-MariaDB", "shun_on_failures": 1000,
                   **variables},
    )


def _run_without_schema(rp: RunningProxy, sql: str) -> None:
    """``sql`` from a client that names no database: its login needs no server (a login that names
    one has it checked on a server connection first, which would count among the attempts)."""
    conn = rp.connect(autocommit=True, database=None)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def test_backend_connect_is_retried_with_the_delay(proxy_factory, flaky) -> None:
    server = flaky(failures=2)
    rp = _flaky_proxy(proxy_factory, server, connect_retries_on_failure=3, connect_retries_delay=150)
    conn = rp.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT @@port")
        assert cur.fetchone() == (server.target_port,)  # relayed to the real server
        cur.execute("SELECT 41 + 1")
        assert cur.fetchone() == (42,)
    conn.close()
    assert len(server.accepted) == 3  # two failures, then the retry that worked
    gaps = [b - a for a, b in zip(server.accepted, server.accepted[1:])]
    assert all(gap >= 0.14 for gap in gaps), gaps  # connect_retries_delay apart


def test_backend_connect_without_retries_fails_at_once(proxy_factory, flaky) -> None:
    server = flaky(failures=2)
    rp = _flaky_proxy(proxy_factory, server, connect_retries_on_failure=0)
    with pytest.raises(pymysql.err.OperationalError) as info:
        _run_without_schema(rp, "SELECT 1")  # the driver's first statement needs a server connection
    assert info.value.args[0] == 9001
    assert len(server.accepted) == 1


def test_backend_connect_gives_up_after_the_retries(proxy_factory, flaky) -> None:
    server = flaky(failures=10)
    rp = _flaky_proxy(proxy_factory, server, connect_retries_on_failure=2, connect_retries_delay=10,
                      shun_on_failures=2)
    with pytest.raises(pymysql.err.OperationalError) as info:
        _run_without_schema(rp, "SELECT 1")  # the driver's first statement needs a server connection
    assert info.value.args[0] == 9001
    # a connect and its retries are one failure: shun_on_failures=2 does not shun the server yet
    assert admin_sql(rp, "SELECT status FROM runtime_mysql_servers") == [("ONLINE",)]
    assert len(server.accepted) == 3  # the first attempt and two retries


# --------------------------------------------------------------- connection_delay_multiplex_ms


def _backend_id(conn) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT @@pseudo_thread_id")  # the backend thread (CONNECTION_ID() is the session's)
        return cur.fetchone()[0]


def _in_use(rp: RunningProxy) -> int:
    return rp.stats().backend_connections_in_use


def test_connection_delay_multiplex_keeps_the_connection_then_gives_it_back(proxy_factory) -> None:
    rp = proxy_factory(variables={"connection_delay_multiplex_ms": 1500})
    a = rp.connect(autocommit=True)
    b = rp.connect(autocommit=True)
    first = _backend_id(a)
    assert _in_use(rp) == 1  # kept by a after its statement, though nothing pins it
    other = _backend_id(b)
    assert other != first  # so b cannot have it
    assert _backend_id(a) == first  # a's next statement within the delay runs on it again
    wait_for("the delayed connections to go back to the pool", lambda: _in_use(rp) == 0, timeout=10)
    st = rp.stats()
    assert (st.backend_connections_idle, st.client_connections_connected) == (2, 2)  # idle, clients still on
    assert {_backend_id(a), _backend_id(b)} == {first, other}  # borrowed from the pool again
    a.close()
    b.close()
    rp.wait_idle()


def test_without_connection_delay_multiplex_the_connection_goes_back_at_once(proxy_factory) -> None:
    rp = proxy_factory()
    a = rp.connect(autocommit=True)
    b = rp.connect(autocommit=True)
    first = _backend_id(a)
    assert _in_use(rp) == 0
    assert _backend_id(b) == first  # the pool's warmest idle connection: the one a just used
    a.close()
    b.close()


def test_connection_delay_multiplex_with_a_pin_and_at_session_end(proxy_factory) -> None:
    rp = proxy_factory(variables={"connection_delay_multiplex_ms": 60000})
    a = rp.connect(autocommit=True)
    with a.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT 1")
        cur.execute("COMMIT")  # the transaction pin ends; the delay keeps the connection
    assert _in_use(rp) == 1
    a.close()  # the session ends long before the delay: the connection goes back
    st = rp.wait_idle()
    assert st.backend_connections_in_use == 0 and st.backend_connections_connected >= 1


def test_connection_delay_multiplex_lets_go_of_a_server_taken_offline(proxy_factory, cluster) -> None:
    """An idle session that keeps a connection only for the delay is not ended when that server goes
    OFFLINE_HARD: the connection goes back (and is closed) and the session carries on elsewhere."""
    ports = [cluster.primary.port, cluster.replicas[0].port]
    rp = proxy_factory(servers=[{"hostgroup_id": 0, "hostname": "127.0.0.1", "port": port} for port in ports],
                       variables={"connection_delay_multiplex_ms": 60000, "monitor_enabled": False})
    a = rp.connect(autocommit=True)
    with a.cursor() as cur:
        cur.execute("SELECT @@port")
        port = cur.fetchone()[0]
    assert _in_use(rp) == 1
    admin_sql(rp, f"UPDATE mysql_servers SET status = 'OFFLINE_HARD' WHERE port = {port}",
              "LOAD MYSQL SERVERS TO RUNTIME")
    with a.cursor() as cur:
        cur.execute("SELECT @@port")
        assert cur.fetchone()[0] == next(p for p in ports if p != port)
    a.close()


# ---------------------------------------------------------------------------------- refusals

REFUSED = {
    "keep_multiplexing_variables": ('"tx_isolation,version,sql_mode"', "keep_multiplexing_variables",
                                    "SELECT @@variable never disables multiplexing"),
    "enable_server_deprecate_eof": ("false", "enable_server_deprecate_eof",
                                    "set enable_client_deprecate_eof = false as well"),
    "eventslog_format": (1, "eventslog_format", "only 2 is accepted"),
    "enforce_autocommit_on_reads": ("false", "enforce_autocommit_on_reads",
                                    "reads always run inside its transaction"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_unsupported_value_is_refused_in_the_toml_file(tmp_path: Path, name: str) -> None:
    value, key, words = REFUSED[name]
    path = tmp_path / "myrouter.toml"
    path.write_text(f"[mysql_variables]\n{name} = {value}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:2: mysql_variables.{key}: ")
    assert "is not supported by myrouter" in str(info.value) and words in str(info.value)


@pytest.mark.parametrize("name", list(REFUSED))
def test_unsupported_value_is_refused_by_load_mysql_variables_to_runtime(proxy, name: str) -> None:
    value, _, words = REFUSED[name]
    text = str(value).strip('"')
    with pytest.raises(pymysql.MySQLError) as info:
        admin_sql(proxy, f"SET mysql-{name}='{text}'", "LOAD MYSQL VARIABLES TO RUNTIME")
    message = info.value.args[1]
    assert f"variable_name='mysql-{name}'" in message and "is not supported by myrouter" in message, message
    assert words in message
    shown = admin_sql(proxy, f"SELECT variable_value FROM runtime_global_variables "
                             f"WHERE variable_name = 'mysql-{name}'")
    assert shown and shown[0][0] != text  # the runtime keeps its value


def _tracked_state(port: int, *statements: bytes) -> list[list[tuple[int, object]]]:
    """Log in as a client that asks for session tracking; the session-state entries of the OK
    packet of each statement."""
    from rawclient import CLIENT_CAPS, RawClient

    from myrouter.protocol.auth import native_token
    from myrouter.protocol.constants import Capability as C
    from myrouter.protocol.messages import OK, HandshakeResponse41, parse_session_state
    from myrouter.protocol.packets import frame

    caps = CLIENT_CAPS | C.SESSION_TRACK
    client = RawClient(port)
    try:
        greeting = client.read_greeting()
        client.send(frame(HandshakeResponse41(caps, 1 << 24, 45, "app", native_token(b"app", greeting.auth_data),
                                              "test", "mysql_native_password").encode(), 1))
        assert client.read_packet().payload[:1] == b"\x00"
        out = []
        for sql in statements:
            ok = client.command(b"\x03" + sql)
            assert ok[:1] == b"\x00", ok
            out.append(parse_session_state(OK.parse(ok, int(caps)).session_state))
        return out
    finally:
        client.close()


def _last_gtids(state: list[tuple[int, object]]) -> list[str]:
    from myrouter.protocol.constants import SessionTrack

    return [value[1] for kind, value in state if kind == SessionTrack.SYSTEM_VARIABLES and value[0] == "last_gtid"]


def _variables(state: list[tuple[int, object]]) -> dict:
    from myrouter.protocol.constants import SessionTrack

    return dict(value for kind, value in state if kind == SessionTrack.SYSTEM_VARIABLES)


WRITE = (b"CREATE TABLE IF NOT EXISTS test.gtid_track (id INT)", b"INSERT INTO test.gtid_track VALUES (1)",
         b"SET SESSION sql_mode = 'ANSI_QUOTES'")


def test_client_session_track_gtid_on_sends_the_write_gtid(proxy) -> None:
    """A client that asks for session tracking finds the GTID of its write (MariaDB's last_gtid)
    in the OK packet."""
    _, insert, set_mode = _tracked_state(proxy.port, *WRITE)
    gtids = _last_gtids(insert)
    assert gtids and gtids[0].count("-") == 2, insert  # domain-server-sequence
    assert _variables(set_mode).get("sql_mode") == "ANSI_QUOTES"


def test_client_session_track_gtid_off_keeps_gtids_from_clients(proxy_factory) -> None:
    """Off: the GTID is taken out of the OK packets (other tracked state still reaches the client),
    while the proxy itself still knows the session's last write (causal reads need it)."""
    rp = proxy_factory(variables={"client_session_track_gtid": False})
    _, insert, set_mode = _tracked_state(rp.port, *WRITE)
    assert _last_gtids(insert) == [], insert
    assert _variables(set_mode).get("sql_mode") == "ANSI_QUOTES"
    assert rp.call(lambda: rp.proxy.global_gtid())  # the proxy noted the write's GTID for itself


def test_server_deprecate_eof_off_with_client_deprecate_eof_off(proxy_factory) -> None:
    """The one combination that honours enable_server_deprecate_eof = false: no connection to a
    server asks for DEPRECATE_EOF, and result sets end with EOF packets end to end."""
    rp = proxy_factory(variables={"enable_server_deprecate_eof": False, "enable_client_deprecate_eof": False})
    conn = rp.connect()
    with conn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT 1, 'a'")
        assert cur.fetchone() == (1, "a")
        caps = rp.call(lambda: [be.capabilities for be in rp.proxy.backends])
        assert caps and all(not c & (1 << 24) for c in caps)  # CLIENT_DEPRECATE_EOF
        cur.execute("COMMIT")
    conn.close()
