"""The data plane (myrouter/frontend/dataplane.py) and the Trio path serve the same sessions alike.

Most tests run twice: on a proxy under the engine's host loop, as ``myrouter serve`` runs it
(plain statements are served by the data plane's fd callbacks), and on one under a bare
``trio.run`` (every command on the session's Trio task). Each checks what the client sees, and
the ``Data_plane_commands`` counter says which plane served it, so a test of the data plane
cannot pass on the Trio path by accident.
"""

from __future__ import annotations

import threading
import time

import mysql.connector
import pymysql
import pytest
from conftest import REPO, admin_sql, assert_no_leaks, wait_for, writer_only
from rawclient import RawClient

from myrouter.frontend import dataplane
from myrouter.protocol.packets import PacketDecoder, frame

PLANES = pytest.mark.parametrize("data_plane", [True, False], ids=["data-plane", "trio"])


def global_stat(rp, name: str) -> int:
    rows = admin_sql(rp, f"SELECT Variable_Value FROM stats_mysql_global WHERE Variable_Name = '{name}'")
    return int(rows[0][0])


def served_on_data_plane(rp) -> int:
    return global_stat(rp, "Data_plane_commands")


def one(conn, sql: str, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()


def server_ids(cluster):
    primary = cluster.primary.query("SELECT @@server_id AS s")[0]["s"]
    replicas = {r.query("SELECT @@server_id AS s")[0]["s"] for r in cluster.replicas}
    return primary, replicas


def run_in_thread(conn, sql: str):
    """Run ``sql`` on ``conn`` in a thread; returns it and the dict it fills: ``row`` (the first row)
    or ``error`` (the MySQL error code), and ``elapsed`` (seconds)."""
    result: dict = {}

    def run():
        started = time.monotonic()
        try:
            result["row"] = one(conn, sql)
        except pymysql.MySQLError as exc:
            result["error"] = exc.args[0]
        result["elapsed"] = time.monotonic() - started

    t = threading.Thread(target=run)
    t.start()
    return t, result


def wait_until_running(rp, session_id: int) -> None:
    """Until the proxy's processlist shows the session running a statement."""
    wait_for("the statement to run", lambda: any(
        r[0] == session_id and r[1] == "Query" for r in admin_sql(
            rp, "SELECT SessionID, command FROM stats_mysql_processlist")))


def connector(rp):
    """A mysql-connector-python connection (server-side prepared statements with cursor(prepared=True))."""
    return mysql.connector.connect(host="127.0.0.1", port=rp.port, user="app", password="app", database="test",
                                   autocommit=True)


def expect_plane(rp, before: int, data_plane: bool, at_least: int) -> None:
    served = served_on_data_plane(rp) - before
    if data_plane:
        assert served >= at_least, f"only {served} commands on the data plane"
    else:
        assert served == 0


@PLANES
def test_plain_statements_follow_the_shipped_rules(proxy_factory, cluster, data_plane):
    rp = proxy_factory(rules_dir=REPO / "rules", data_plane=data_plane)
    primary, replicas = server_ids(cluster)
    conn = rp.connect(autocommit=True)
    one(conn, "CREATE TABLE IF NOT EXISTS dp_rows (id INT PRIMARY KEY, v INT)")
    one(conn, "DELETE FROM dp_rows")
    before = served_on_data_plane(rp)
    for i in range(30):
        assert one(conn, "SELECT @@server_id")[0] in replicas  # reads: the readers
        one(conn, "INSERT INTO dp_rows VALUES (%s, %s)", (i, i * i))  # writes: the writer
    assert one(conn, "SELECT COUNT(*), SUM(v) FROM dp_rows FOR UPDATE") == (30, sum(i * i for i in range(30)))
    # not all 60: a read drawn to a replica with no idle connection yet goes to the Trio path, which connects
    expect_plane(rp, before, data_plane, 40)
    hits = admin_sql(rp, "SELECT SUM(hits) FROM stats_mysql_query_rules")
    assert int(hits[0][0]) == 31  # every read hit its rule, on both planes
    digest = admin_sql(rp, "SELECT count_star FROM stats_mysql_query_digest WHERE digest_text LIKE "
                           "'INSERT INTO dp_rows%'")
    assert int(digest[0][0]) == 30
    conn.close()
    assert_no_leaks(rp)


@PLANES
def test_one_session_moves_between_the_planes_and_keeps_its_state(proxy_factory, cluster, data_plane):
    rp = proxy_factory(data_plane=data_plane)
    conn = rp.connect(autocommit=True)
    one(conn, "CREATE TABLE IF NOT EXISTS dp_moves (id INT PRIMARY KEY, v INT)")
    one(conn, "REPLACE INTO dp_moves VALUES (1, 0)")
    before = served_on_data_plane(rp)
    for i in range(1, 11):
        one(conn, "SET autocommit = 0")  # answered by the proxy; a transaction from the next statement on
        assert one(conn, "SELECT v + 1 FROM dp_moves WHERE id = 1") == (i,)
        one(conn, "ROLLBACK")
        one(conn, "SET autocommit = 1")
        # plain: the first brings the pooled connection back to autocommit (the Trio path: a round
        # trip), the second runs on the data plane
        assert one(conn, "SELECT v FROM dp_moves WHERE id = 1") == (i - 1,)
        assert one(conn, "SELECT v FROM dp_moves WHERE id = 1") == (i - 1,)
        one(conn, "BEGIN")  # a transaction: one connection to its end (test_data_plane_transactions.py)
        one(conn, "UPDATE dp_moves SET v = %s WHERE id = 1", (i,))
        assert one(conn, "SELECT v FROM dp_moves WHERE id = 1") == (i,)
        one(conn, "COMMIT")
    expect_plane(rp, before, data_plane, 10)
    one(conn, "SET @mark = 5")  # a user variable pins the connection: the Trio path from here on
    assert one(conn, "SELECT @mark") == (5,)
    assert one(conn, "SELECT v FROM dp_moves WHERE id = 1") == (10,)
    assert one(conn, "SELECT @mark") == (5,)
    conn.close()
    assert_no_leaks(rp)


@PLANES
def test_multiplexing_two_sessions_over_one_backend_connection(proxy_factory, cluster, data_plane):
    rp = proxy_factory(servers=writer_only(cluster, 1), data_plane=data_plane)
    a = rp.connect(autocommit=True)
    b = rp.connect(autocommit=True)
    before = served_on_data_plane(rp)
    for i in range(25):
        assert one(a, "SELECT %s", (i,)) == (i,)
        assert one(b, "SELECT %s + 100", (i,)) == (i + 100,)
    expect_plane(rp, before, data_plane, 40)
    assert rp.stats().backend_connections_connected == 1
    a.close()
    b.close()
    assert_no_leaks(rp)


@PLANES
def test_prepared_statements(proxy_factory, cluster, data_plane):
    rp = proxy_factory(data_plane=data_plane)
    conn = connector(rp)
    cur = conn.cursor(prepared=True)
    before = served_on_data_plane(rp)
    for i in range(30):
        cur.execute("SELECT ? * 2, CONCAT('v', ?)", (i, i))
        assert cur.fetchall() == [(i * 2, f"v{i}")]
    expect_plane(rp, before, data_plane, 25)
    executes = admin_sql(rp, "SELECT count_star FROM stats_mysql_query_digest WHERE digest_text LIKE "
                             "'SELECT ? * ?, CONCAT%'")
    assert sum(int(r[0]) for r in executes) == 30
    cur.close()
    conn.close()
    assert_no_leaks(rp)


@PLANES
def test_a_statement_evicted_from_its_connection_is_prepared_again_where_it_runs(proxy_factory, cluster,
                                                                                 data_plane):
    """Four statements over one backend connection that holds two (max_stmts_per_connection = 2): most
    executions find theirs evicted and prepare it there again first, on the data plane too."""
    rp = proxy_factory(servers=writer_only(cluster, 1), variables={"max_stmts_per_connection": 2},
                       data_plane=data_plane)
    conn = connector(rp)
    cursors = [conn.cursor(prepared=True) for _ in range(4)]
    for k, cur in enumerate(cursors):
        cur.execute(f"SELECT ? + {k}, 'c{k}'", (0,))
        cur.fetchall()
    before = served_on_data_plane(rp)
    evicted = global_stat(rp, "Stmt_Backend_evicted")
    for i in range(10):
        for k, cur in enumerate(cursors):
            cur.execute(f"SELECT ? + {k}, 'c{k}'", (i,))
            assert cur.fetchall() == [(i + k, f"c{k}")]
    assert global_stat(rp, "Stmt_Backend_evicted") - evicted >= 30  # nearly every execution prepared again
    expect_plane(rp, before, data_plane, 40)  # every execution, prepared again or not
    assert int(cluster.primary.query("SHOW GLOBAL STATUS LIKE 'Prepared_stmt_count'")[0]["Value"]) <= 2
    for cur in cursors:
        cur.close()
    conn.close()
    assert_no_leaks(rp)


@PLANES
def test_a_long_statement_prepared_again_goes_on_where_the_socket_stopped(proxy_factory, cluster, data_plane,
                                                                          monkeypatch):
    """A statement prepared again whose text the backend's socket does not take at once (8 MiB): the Trio
    path sends the rest, reads the PREPARE response and executes, with the right results."""
    monkeypatch.setattr(dataplane, "PREPARE_HERE_MAX", 1 << 30)  # let the data plane start even this one
    rp = proxy_factory(servers=writer_only(cluster, 1), variables={"max_stmts_per_connection": 1},
                       data_plane=data_plane)
    conn = connector(rp)
    long_text = "SELECT ? + 1 /* " + "x" * (8 << 20) + " */"
    big, small = conn.cursor(prepared=True), conn.cursor(prepared=True)
    for i in range(3):
        big.execute(long_text, (i,))  # prepared again on the connection each time: small evicted it
        assert big.fetchall() == [(i + 1,)]
        small.execute("SELECT ? + 2", (i,))
        assert small.fetchall() == [(i + 2,)]
    big.close()
    small.close()
    conn.close()
    assert_no_leaks(rp)


@PLANES
def test_preparing_again_fails_as_on_the_server(proxy_factory, cluster, data_plane):
    """A statement prepared again on its connection after the table changed: the server's error, or 1615
    when its shape changed, reaches the client, and the session goes on."""
    rp = proxy_factory(servers=writer_only(cluster, 1), variables={"max_stmts_per_connection": 1},
                       data_plane=data_plane)
    cluster.primary.query("DROP TABLE IF EXISTS test.dp_reprep, test.dp_gone")
    cluster.primary.query("CREATE TABLE test.dp_reprep (id INT PRIMARY KEY, v INT)")
    cluster.primary.query("INSERT INTO test.dp_reprep VALUES (1, 10)")
    conn = connector(rp)
    star, gone, other = (conn.cursor(prepared=True) for _ in range(3))
    star.execute("SELECT * FROM dp_reprep WHERE id = ?", (1,))
    assert star.fetchall() == [(1, 10)]
    cluster.primary.query("CREATE TABLE test.dp_gone (id INT)")
    gone.execute("SELECT id FROM dp_gone WHERE id = ?", (1,))
    gone.fetchall()
    other.execute("SELECT ? + 1", (1,))  # evicts the others from the connection
    other.fetchall()
    cluster.primary.query("ALTER TABLE test.dp_reprep ADD COLUMN w INT DEFAULT 7")
    cluster.primary.query("DROP TABLE test.dp_gone")
    with pytest.raises(mysql.connector.Error) as info:
        star.execute("SELECT * FROM dp_reprep WHERE id = ?", (1,))
        star.fetchall()
    assert info.value.errno == 1615
    with pytest.raises(mysql.connector.Error) as info:
        gone.execute("SELECT id FROM dp_gone WHERE id = ?", (1,))
        gone.fetchall()
    assert info.value.errno == 1146
    other.execute("SELECT ? + 1", (41,))
    assert other.fetchall() == [(42,)]
    cluster.primary.query("DROP TABLE test.dp_reprep")
    for cur in (star, gone, other):
        cur.close()
    conn.close()
    assert_no_leaks(rp)


@PLANES
def test_server_side_cursor_is_served_on_its_pinned_connection(proxy_factory, cluster, data_plane):
    rp = proxy_factory(data_plane=data_plane)
    conn = connector(rp)
    # a prepared statement executed with a cursor: fetched in batches on the connection that holds it
    cur = conn.cursor(prepared=True)
    cur.execute("SELECT seq FROM seq_1_to_100 WHERE seq > ?", (90,))
    assert [r[0] for r in cur.fetchall()] == list(range(91, 101))
    plain = conn.cursor(prepared=True)
    for i in range(5):
        plain.execute("SELECT ?", (i,))
        assert plain.fetchall() == [(i,)]
    cur.close()
    plain.close()
    conn.close()
    assert_no_leaks(rp)


@PLANES
def test_load_data_local_infile_on_a_remembered_digest(proxy_factory, cluster, data_plane, tmp_path):
    rp = proxy_factory(data_plane=data_plane)
    conn = rp.connect(autocommit=True, local_infile=True)
    one(conn, "CREATE TABLE IF NOT EXISTS dp_infile (a INT, b VARCHAR(20))")
    one(conn, "DELETE FROM dp_infile")
    for n in range(3):  # the same digest: from the second on, its plan is remembered
        path = tmp_path / f"rows{n}.csv"
        path.write_text("".join(f"{i},row{i}\n" for i in range(100 * n, 100 * n + 100)))
        with conn.cursor() as cur:
            cur.execute(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE dp_infile FIELDS TERMINATED BY ','")
            assert cur.rowcount == 100
    assert one(conn, "SELECT COUNT(*), SUM(a) FROM dp_infile") == (300, sum(range(300)))
    conn.close()
    assert_no_leaks(rp)


@PLANES
def test_kill_query_of_a_statement_running_on_the_data_plane(proxy_factory, cluster, data_plane):
    rp = proxy_factory(data_plane=data_plane)
    victim = rp.connect(autocommit=True)
    killer = rp.connect(autocommit=True)
    victim_id = one(victim, "SELECT CONNECTION_ID()")[0]
    assert one(victim, "SELECT SLEEP(0)") == (0,)  # its plan is remembered: the next one is plain
    before = served_on_data_plane(rp)
    t, result = run_in_thread(victim, "SELECT SLEEP(20)")
    wait_until_running(rp, victim_id)
    with killer.cursor() as cur:
        cur.execute(f"KILL QUERY {victim_id}")
    t.join(15)
    assert not t.is_alive()
    assert result["elapsed"] < 10
    assert result.get("row") == (1,) or result.get("error") == 1317, result
    assert one(victim, "SELECT 7") == (7,)  # KILL QUERY leaves the session
    expect_plane(rp, before, data_plane, 1)
    victim.close()
    killer.close()
    assert_no_leaks(rp)


@PLANES
def test_kill_connection_of_a_session_busy_on_the_data_plane(proxy_factory, cluster, data_plane):
    rp = proxy_factory(data_plane=data_plane)
    victim = rp.connect(autocommit=True)
    killer = rp.connect(autocommit=True)
    victim_id = one(victim, "SELECT CONNECTION_ID()")[0]
    one(victim, "SELECT SLEEP(0)")
    t, result = run_in_thread(victim, "SELECT SLEEP(20)")
    wait_until_running(rp, victim_id)
    with killer.cursor() as cur:
        cur.execute(f"KILL {victim_id}")
    t.join(15)
    assert not t.is_alive()
    # the backend's thread is killed first: the session's statement fails (1158), then it is closed
    assert result.get("error") in (1158, 1317, 1927, 2013), result
    assert one(killer, "SELECT 1") == (1,)
    killer.close()
    assert_no_leaks(rp)


@PLANES
def test_query_timeout_applies_on_both_planes(proxy_factory, cluster, data_plane):
    rp = proxy_factory(variables={"default_query_timeout": 1000}, data_plane=data_plane)
    conn = rp.connect(autocommit=True)
    for _ in range(2):  # the second with a remembered plan
        started = time.monotonic()
        with pytest.raises(pymysql.MySQLError) as info:
            one(conn, "SELECT SLEEP(5)")
        assert info.value.args[0] == 3024
        assert time.monotonic() - started < 4
    assert one(conn, "SELECT 1") == (1,)
    conn.close()
    assert_no_leaks(rp)


class ResultReader:
    """Reads one text result set off a RawClient as it comes, packet by packet."""

    def __init__(self, raw: RawClient) -> None:
        self.raw = raw
        self.decoder = PacketDecoder()
        self.header_done = False
        self.end: str | None = None  # "eof" (its final EOF), "err" (an ERR packet), "closed"
        self.got = 0

    def read(self, size: int = 262144) -> None:
        try:
            data = self.raw.sock.recv(size)
        except ConnectionResetError:
            data = b""
        if not data:
            self.end = "closed"
            return
        self.got += len(data)
        self.decoder.feed(data)
        while self.end is None and (pkt := self.decoder.next_packet()) is not None:
            p = pkt.payload
            if p[:1] == b"\xff":
                self.end = "err"
            elif p[:1] == b"\xfe" and len(p) < 9:
                if self.header_done:
                    self.end = "eof"
                self.header_done = True  # the EOF after the column definitions


def _read_result_until_end(raw: RawClient, *, kill=None, kill_after: int = 0,
                           reader: ResultReader | None = None) -> tuple[int, str]:
    """Read a text result set on ``raw`` to its end; ``kill()`` after ``kill_after`` bytes. Returns
    (bytes read, how it ended: "eof" for its final EOF, "err" for an ERR packet, "closed")."""
    reader = reader or ResultReader(raw)
    killed = False
    while reader.end is None:
        reader.read()
        if kill is not None and not killed and reader.got >= kill_after:
            kill()
            killed = True
    return reader.got, reader.end


@PLANES
def test_backend_dying_mid_result(proxy_factory, cluster, data_plane):
    rp = proxy_factory(data_plane=data_plane)
    other = rp.connect(autocommit=True)
    raw = RawClient(rp.port)
    assert raw.login()[:1] == b"\x00"
    sql = b"SELECT seq, REPEAT('x', 200) FROM seq_1_to_3000000"
    raw.send(frame(b"\x03" + sql.replace(b"3000000", b"10"), 0))  # the same digest, small: its plan
    assert _read_result_until_end(raw)[1] == "eof"
    before = served_on_data_plane(rp)

    def kill_backend():
        rows = cluster.primary.query("SELECT id FROM information_schema.processlist WHERE info LIKE "
                                     "'SELECT seq, REPEAT%'")
        assert rows, "the statement is not running on the primary"
        cluster.primary.query(f"KILL CONNECTION {rows[0]['id']}")

    raw.send(frame(b"\x03" + sql, 0))
    got, end = _read_result_until_end(raw, kill=kill_backend, kill_after=2_000_000)
    assert end in ("err", "closed")  # a proper ERR packet, or a clean close mid-packet
    assert got < 700_000_000
    raw.close()
    if data_plane:
        assert served_on_data_plane(rp) - before == 0  # the command did not complete there: handed over
        assert global_stat(rp, "Data_plane_handovers") >= 1
    assert one(other, "SELECT 1") == (1,)  # other sessions go on
    other.close()
    assert_no_leaks(rp)


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@PLANES
def test_slow_reader_of_a_300_mb_result_holds_memory_flat(proxy_factory, cluster, data_plane):
    """The proxy runs in this process: its RSS is this process's. A client that reads slowly makes
    the proxy stop reading the backend; the result is never buffered whole."""
    rp = proxy_factory(data_plane=data_plane)
    raw = RawClient(rp.port)
    assert raw.login()[:1] == b"\x00"
    sql = b"SELECT seq, REPEAT('x', 1000) FROM seq_1_to_300000"  # ~300 MB
    raw.send(frame(b"\x03" + sql.replace(b"300000", b"3"), 0))
    assert _read_result_until_end(raw)[1] == "eof"
    baseline = _rss()
    peak = [baseline]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        raw.sock.settimeout(30)
        raw.send(frame(b"\x03" + sql, 0))
        reader = ResultReader(raw)
        while reader.got < 5_000_000:  # slowly at first: 5 MB in 64 KB reads, pausing
            reader.read(65536)
            assert reader.end is None
            time.sleep(0.002)
        time.sleep(1.0)  # the client stops reading: the proxy must stop reading the backend
        got, end = _read_result_until_end(raw, reader=reader)
    finally:
        stop.set()
        sampler.join()
    assert end == "eof"
    assert got > 300_000_000
    assert peak[0] - baseline < 64 * 1024 * 1024, f"RSS grew by {(peak[0] - baseline) >> 20} MiB"
    raw.close()
    assert_no_leaks(rp)


@pytest.mark.parametrize("variables", [{"eventslog_filename": "QLOG", "eventslog_default_log": True},
                                       {"default_query_timeout": 60_000}], ids=["query-log", "query-timeout"])
def test_sessions_are_not_parked_while_every_statement_needs_the_trio_path(proxy_factory, cluster, tmp_path,
                                                                           variables):
    """With every statement logged, or given a deadline, the data plane serves none: a session waits for its
    next command on the Trio path instead of being parked and handed back for each one."""
    variables = {k: str(tmp_path / "queries.log") if v == "QLOG" else v for k, v in variables.items()}
    rp = proxy_factory(variables=variables)
    conn = rp.connect(autocommit=True)
    one(conn, "SELECT 1")
    handed, served = global_stat(rp, "Data_plane_handovers"), served_on_data_plane(rp)
    for i in range(20):
        assert one(conn, "SELECT %s", (i,)) == (i,)
    assert global_stat(rp, "Data_plane_handovers") == handed  # without the guard: one per statement
    assert served_on_data_plane(rp) == served
    conn.close()
    assert_no_leaks(rp)


def test_drain_with_sessions_on_both_planes(proxy_factory, cluster):
    rp = proxy_factory()  # under the host loop
    idle_plain = rp.connect(autocommit=True)
    one(idle_plain, "SELECT 1")  # parked on the data plane
    in_trx = rp.connect(autocommit=True)
    one(in_trx, "BEGIN")
    one(in_trx, "SELECT 1")  # holds its transaction's connection: parked too
    busy = rp.connect(autocommit=True)
    one(busy, "SELECT SLEEP(0)")
    t, result = run_in_thread(busy, "SELECT SLEEP(1)")  # running on the data plane when the drain starts
    wait_for("the statement to run", lambda: rp.stats().sessions_busy >= 1)
    before = served_on_data_plane(rp)
    rp.stop()  # drain_and_stop (as SIGTERM): running statements finish, then every session ends
    t.join(10)
    assert result.get("row") == (0,), result  # it finished
    assert rp.proxy.counters.data_plane_commands == before + 1
    for conn in (idle_plain, in_trx, busy):
        with pytest.raises(pymysql.err.OperationalError):
            one(conn, "SELECT 1")


def _kill_when_running(cluster, statement: str) -> None:
    """KILL CONNECTION, on the primary, the connection running ``statement`` as soon as it runs."""
    found: list = []

    def running() -> bool:
        found[:] = [r["id"] for r in cluster.primary.query(
            "SELECT id FROM information_schema.processlist WHERE info = %s", (statement,))]
        return bool(found)

    wait_for(f"{statement!r} to run on the primary", running, step=0.01)
    cluster.primary.query(f"KILL CONNECTION {found[0]}")


@PLANES
def test_a_read_whose_connection_dies_is_retried_and_a_write_fails_cleanly(proxy_factory, cluster, data_plane):
    """The backend connection dies before any byte of the response reached the client: a read is
    retried on another connection (the client sees nothing), a write is not (it may have run): 1158."""
    rp = proxy_factory(servers=writer_only(cluster, 2), data_plane=data_plane)
    conn = rp.connect(autocommit=True)
    one(conn, "CREATE TABLE IF NOT EXISTS dp_retry (id INT PRIMARY KEY)")
    one(conn, "DELETE FROM dp_retry")
    # a read of a second or so without side effect; the same digest with a small bound is quick
    slow_read = "SELECT COUNT(*) FROM seq_1_to_30000000 WHERE seq <= 30000000 AND seq % 7 = 3"
    assert one(conn, slow_read.replace("<= 30000000", "<= 70")) == (10,)  # the plans: the next ones are plain
    one(conn, "INSERT INTO dp_retry SELECT SLEEP(0) + 1")
    errors = rp.stats().backend_errors
    handed = global_stat(rp, "Data_plane_handovers")
    t, result = run_in_thread(conn, slow_read)
    _kill_when_running(cluster, slow_read)
    t.join(30)
    assert "error" not in result and result["row"] == (4285714,)  # retried on another connection, ran whole
    assert rp.stats().backend_errors == errors + 1
    t, result = run_in_thread(conn, "INSERT INTO dp_retry SELECT SLEEP(1) + 2")
    _kill_when_running(cluster, "INSERT INTO dp_retry SELECT SLEEP(1) + 2")
    t.join(15)
    assert "row" not in result and result["error"] == 1158
    assert one(conn, "SELECT id FROM dp_retry ORDER BY id") == (1,)
    if data_plane:  # both failed on the data plane and were handed to the Trio path (retry, error)
        assert global_stat(rp, "Data_plane_handovers") >= handed + 2
        served = served_on_data_plane(rp)
        assert one(conn, slow_read.replace("<= 30000000", "<= 7")) == (1,)  # back on the data plane
        assert served_on_data_plane(rp) == served + 1
    conn.close()
    assert_no_leaks(rp)


@PLANES
def test_causal_reads_see_every_own_write(proxy_factory, cluster, stalled_replica, data_plane):
    """causal_reads=session: a read after a write waits for (or falls back from) a replica that has not
    applied it. Such a session is never parked on the data plane: it reads its own writes on both."""
    servers = [{"hostgroup_id": 0, "hostname": "127.0.0.1", "port": cluster.primary.port},
               {"hostgroup_id": 1, "hostname": "127.0.0.1", "port": stalled_replica.port}]
    users = [{"username": "app", "password": "app", "default_hostgroup": 0, "default_schema": "test",
              "causal_reads": "session"}]
    rp = proxy_factory(servers=servers, users=users, rules_dir=REPO / "rules",
                       variables={"causal_reads_timeout_ms": 20}, data_plane=data_plane)
    conn = rp.connect(autocommit=True)
    with conn.cursor() as cur:
        for i in range(30):
            cur.execute("INSERT INTO causal_t (v) VALUES (%s)", (i,))
            rid = cur.lastrowid
            cur.execute("SELECT v FROM causal_t WHERE id = %s", (rid,))
            assert cur.fetchone() == (i,)
    assert served_on_data_plane(rp) == 0
    conn.close()
    assert_no_leaks(rp)
