"""Real clients through the proxy, against the real replicated MariaDB test bed."""

from __future__ import annotations

import datetime
import decimal
import os
import re
import subprocess
import threading
import time

import MySQLdb
import mysql.connector
import pymysql
import pytest
from pymysql.constants import CLIENT


def mariadb_cli(proxy, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["mariadb", "-h127.0.0.1", f"-P{proxy.port}", "-uapp", "-papp", "--batch", "--skip-column-names", *args],
        input=input, capture_output=True, text=True, timeout=60,
    )


# --- mariadb CLI -------------------------------------------------------------


def test_mariadb_cli_queries_and_use(proxy):
    r = mariadb_cli(proxy, "-e", "SELECT 1+1; USE mysql; SELECT DATABASE(); USE test; SELECT DATABASE()")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["2", "mysql", "test"]


def test_mariadb_cli_source_file(proxy, tmp_path):
    script = tmp_path / "script.sql"
    script.write_text(
        "DROP TABLE IF EXISTS cli_src;\n"
        "CREATE TABLE cli_src (id INT PRIMARY KEY, name VARCHAR(20));\n"
        "INSERT INTO cli_src VALUES (1, 'one'), (2, 'two');\n"
        "UPDATE cli_src SET name = 'TWO' WHERE id = 2;\n"
        "SELECT name FROM cli_src ORDER BY id;\n"
    )
    r = mariadb_cli(proxy, "test", "-e", f"SOURCE {script}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["one", "TWO"]
    r = mariadb_cli(proxy, "test", input="SELECT COUNT(*) FROM cli_src;\nSELECT nosuchcol FROM cli_src;\n")
    assert r.returncode == 1
    assert "2" in r.stdout.split()
    assert "ERROR 1054" in r.stderr  # the backend's own error, forwarded unchanged


# --- PyMySQL -----------------------------------------------------------------


def test_pymysql_transactions(proxy):
    conn = proxy.connect(autocommit=False)
    cur = conn.cursor()
    cur.execute("DROP TABLE IF EXISTS tx_t")
    cur.execute("CREATE TABLE tx_t (id INT PRIMARY KEY) ENGINE=InnoDB")
    cur.execute("INSERT INTO tx_t VALUES (1)")
    conn.rollback()
    cur.execute("SELECT COUNT(*) FROM tx_t")
    assert cur.fetchone() == (0,)
    conn.begin()
    cur.execute("INSERT INTO tx_t VALUES (2)")
    cur.execute("SELECT @@in_transaction")
    assert cur.fetchone() == (1,)
    conn.commit()
    other = proxy.connect()
    with other.cursor() as c2:
        c2.execute("SELECT id FROM tx_t")
        assert c2.fetchall() == ((2,),)
    other.close()
    conn.close()


def test_pymysql_executemany_and_multi_statements(proxy):
    conn = proxy.connect(client_flag=CLIENT.MULTI_STATEMENTS, autocommit=True)
    cur = conn.cursor()
    cur.execute("DROP TABLE IF EXISTS em_t")
    cur.execute("CREATE TABLE em_t (id INT PRIMARY KEY, v VARCHAR(10))")
    n = cur.executemany("INSERT INTO em_t VALUES (%s, %s)", [(i, f"v{i}") for i in range(100)])
    assert n == 100
    cur.execute("SELECT COUNT(*) FROM em_t; SELECT v FROM em_t WHERE id = 42; UPDATE em_t SET v = 'x' WHERE id < 10")
    assert cur.fetchall() == ((100,),)
    assert cur.nextset()
    assert cur.fetchall() == (("v42",),)
    assert cur.nextset()
    assert cur.rowcount == 10
    assert not cur.nextset()
    # the connection is in a clean state afterwards
    cur.execute("SELECT 7")
    assert cur.fetchone() == (7,)
    conn.close()


def test_pymysql_call_with_several_result_sets(proxy):
    conn = proxy.connect(autocommit=True)
    cur = conn.cursor()
    cur.execute("DROP PROCEDURE IF EXISTS two_results")
    cur.execute("CREATE PROCEDURE two_results() BEGIN SELECT 1 AS a; SELECT 'x' AS b, 2 AS c; END")
    cur.execute("CALL two_results()")
    assert cur.fetchall() == ((1,),)
    assert cur.nextset()
    assert cur.fetchall() == (("x", 2),)
    assert cur.nextset()  # the final OK of the CALL
    assert not cur.nextset()
    cur.execute("SELECT 3")
    assert cur.fetchone() == (3,)
    conn.close()


def test_pymysql_20mb_blob_round_trip(proxy):
    blob = os.urandom(20 * 1024 * 1024)
    conn = proxy.connect(autocommit=True, max_allowed_packet=64 * 1024 * 1024)
    cur = conn.cursor()
    cur.execute("DROP TABLE IF EXISTS blob_t")
    cur.execute("CREATE TABLE blob_t (id INT PRIMARY KEY, b LONGBLOB)")
    cur.execute("INSERT INTO blob_t VALUES (1, %s)", (blob,))
    cur.execute("SELECT b, LENGTH(b) FROM blob_t WHERE id = 1")
    back, length = cur.fetchone()
    assert length == len(blob)
    assert back == blob
    conn.close()


def test_pymysql_unbuffered_200k_rows(proxy):
    conn = proxy.connect(cursorclass=pymysql.cursors.SSCursor)
    cur = conn.cursor()
    cur.execute("SELECT seq, REPEAT('r', 40) FROM seq_1_to_200000")
    count = 0
    total = 0
    for seq, pad in cur:
        count += 1
        total += seq
        assert len(pad) == 40
    assert count == 200_000
    assert total == 200_000 * 200_001 // 2
    cur.close()
    cur = conn.cursor()
    cur.execute("SELECT 'after'")
    assert cur.fetchone() == ("after",)
    cur.close()  # reads the rest of the unbuffered result: left to the garbage collector after conn.close(), it fails
    conn.close()


def test_pymysql_load_data_local_infile(proxy, tmp_path):
    data = tmp_path / "rows.tsv"
    data.write_text("".join(f"{i}\tname{i}\n" for i in range(5000)))
    conn = proxy.connect(local_infile=True, autocommit=True)
    cur = conn.cursor()
    cur.execute("DROP TABLE IF EXISTS infile_t")
    cur.execute("CREATE TABLE infile_t (id INT PRIMARY KEY, name VARCHAR(20))")
    cur.execute(f"LOAD DATA LOCAL INFILE '{data}' INTO TABLE infile_t")
    assert cur.rowcount == 5000
    cur.execute("SELECT COUNT(*), MAX(name) FROM infile_t")
    assert cur.fetchone() == (5000, "name999")
    # a missing file: the client sends an empty file, the session stays usable
    with pytest.raises(pymysql.err.OperationalError):
        cur.execute(f"LOAD DATA LOCAL INFILE '{tmp_path / 'missing.tsv'}' INTO TABLE infile_t")
    cur.execute("SELECT 1")
    assert cur.fetchone() == (1,)
    conn.close()


def test_kill_query_of_running_sleep(proxy):
    victim = proxy.connect()
    victim_id = victim.thread_id()  # the proxy's session id, from its greeting
    result = {}

    def run():
        start = time.monotonic()
        try:
            with victim.cursor() as cur:
                cur.execute("SELECT SLEEP(10)")
                result["value"] = cur.fetchone()
        except pymysql.MySQLError as exc:
            result["error"] = exc
        result["elapsed"] = time.monotonic() - start

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.5)
    killer = proxy.connect()
    with killer.cursor() as cur:
        cur.execute(f"KILL QUERY {victim_id}")
    t.join(15)
    assert result["elapsed"] < 5, result
    # SLEEP() interrupted by KILL QUERY returns 1 (MariaDB and MySQL), or the 1317 error
    assert result.get("value") == (1,) or result["error"].args[0] == 1317
    with victim.cursor() as cur:  # the victim's session survives KILL QUERY
        cur.execute("SELECT 5")
        assert cur.fetchone() == (5,)
    # KILL CONNECTION ends the victim's session
    with killer.cursor() as cur:
        cur.execute(f"KILL {victim_id}")
    with pytest.raises(pymysql.err.OperationalError):
        with victim.cursor() as cur:
            cur.execute("SELECT 6")
    with killer.cursor() as cur:
        with pytest.raises(pymysql.err.OperationalError) as ei:
            cur.execute("KILL QUERY 999999")
        assert ei.value.args[0] == 1094
    killer.close()
    st = proxy.wait_idle()
    assert st.backend_connections_in_use == 0
    assert st.backend_connections_connected == st.backend_connections_idle


# --- mysql-connector-python (pure) with server-side prepared statements -----

# YEAR is left out: mysql-connector-python's binary-protocol decoder misreads
# MariaDB's YEAR column and shifts every later column, directly as through the proxy.
ALL_TYPES = [
    ("c_tinyint", "TINYINT", -7),
    ("c_smallint", "SMALLINT", -300),
    ("c_mediumint", "MEDIUMINT", 70000),
    ("c_int", "INT", -2_000_000_000),
    ("c_bigint", "BIGINT", 9_000_000_000_000_000_000),
    ("c_ubigint", "BIGINT UNSIGNED", 18_000_000_000_000_000_000),
    ("c_float", "FLOAT", 1.5),
    ("c_double", "DOUBLE", 3.141592653589793),
    ("c_decimal", "DECIMAL(12,4)", decimal.Decimal("12345678.1234")),
    ("c_date", "DATE", datetime.date(2024, 2, 29)),
    ("c_datetime", "DATETIME(6)", datetime.datetime(2024, 2, 29, 13, 14, 15, 123456)),
    ("c_timestamp", "TIMESTAMP NULL", datetime.datetime(2021, 1, 2, 3, 4, 5)),
    ("c_time", "TIME", datetime.timedelta(hours=-5, minutes=-6, seconds=-7)),
    ("c_char", "CHAR(5)", "abc"),
    ("c_varchar", "VARCHAR(50)", "héllo wörld ✓"),
    ("c_binary", "BINARY(4)", b"\x00\x01\x02\x03"),
    ("c_varbinary", "VARBINARY(10)", b"\xff\x00\xfe"),
    ("c_blob", "BLOB", bytes(range(256)) * 10),
    ("c_text", "TEXT", "t" * 3000),
    ("c_enum", "ENUM('a','b','c')", "b"),
    ("c_bit", "BIT(8)", 5),
    ("c_json", "JSON", '{"k": [1, 2, 3]}'),
]


def _connector(proxy, **kw):
    return mysql.connector.connect(host="127.0.0.1", port=proxy.port, user="app", password="app", database="test",
                                   use_pure=True, **kw)


def test_mysql_connector_prepared_all_types_and_nulls(proxy, cluster):
    cols = ", ".join(f"{n} {t}" for n, t, _ in ALL_TYPES)
    conn = _connector(proxy, autocommit=True)
    cur = conn.cursor(prepared=True)
    setup = conn.cursor()
    setup.execute("DROP TABLE IF EXISTS types_t")
    setup.execute(f"CREATE TABLE types_t (id INT PRIMARY KEY, {cols})")
    names = ", ".join(n for n, _, _ in ALL_TYPES)
    marks = ", ".join("?" for _ in ALL_TYPES)
    insert = f"INSERT INTO types_t (id, {names}) VALUES (?, {marks})"
    cur.execute(insert, (1, *[v for _, _, v in ALL_TYPES]))
    cur.execute(insert, (2, *[None for _ in ALL_TYPES]))
    cur.execute(f"SELECT id, {names} FROM types_t WHERE id >= ? ORDER BY id", (1,))
    proxied = cur.fetchall()
    conn.close()
    direct = mysql.connector.connect(host="127.0.0.1", port=cluster.primary.port, user="app", password="app",
                                     database="test", use_pure=True)
    dcur = direct.cursor(prepared=True)
    dcur.execute(f"SELECT id, {names} FROM types_t WHERE id >= ? ORDER BY id", (1,))
    expected = dcur.fetchall()
    direct.close()
    assert proxied == expected
    assert len(proxied) == 2
    assert all(v is None for v in proxied[1][1:])
    row = dict(zip(["id"] + [n for n, _, _ in ALL_TYPES], proxied[0]))
    assert row["c_bigint"] == 9_000_000_000_000_000_000
    assert row["c_ubigint"] == 18_000_000_000_000_000_000
    assert row["c_decimal"] == decimal.Decimal("12345678.1234")
    assert row["c_datetime"] == datetime.datetime(2024, 2, 29, 13, 14, 15, 123456)
    assert row["c_varchar"] == "héllo wörld ✓"
    assert bytes(row["c_blob"]) == bytes(range(256)) * 10


def test_mysql_connector_change_user_and_reset(proxy):
    conn = _connector(proxy)
    cur = conn.cursor()
    cur.execute("SET @marker = 42")
    conn.cmd_reset_connection()
    cur.execute("SELECT @marker")
    assert cur.fetchall() == [(None,)]
    cur.execute("SET @marker = 43")
    conn.cmd_change_user(username="app", password="app", database="mysql")
    cur = conn.cursor()
    cur.execute("SELECT DATABASE(), @marker")
    assert cur.fetchall() == [("mysql", None)]
    with pytest.raises(mysql.connector.Error) as ei:
        conn.cmd_change_user(username="app", password="wrong", database="test")
    assert ei.value.errno == 1045
    conn.close()


# --- mysqlclient (libmariadb) -------------------------------------------------


def test_mysqlclient(proxy):
    conn = MySQLdb.connect(host="127.0.0.1", port=proxy.port, user="app", password="app", database="test")
    assert conn.thread_id() > 0
    conn.ping()
    assert "Uptime" in conn.stat()  # COM_STATISTICS
    cur = conn.cursor()
    cur.execute("DROP TABLE IF EXISTS mc_t")
    cur.execute("CREATE TABLE mc_t (id INT PRIMARY KEY, v DOUBLE)")
    cur.executemany("INSERT INTO mc_t VALUES (%s, %s)", [(1, 1.5), (2, None)])
    conn.commit()
    cur.execute("SELECT id, v FROM mc_t ORDER BY id")
    assert cur.fetchall() == ((1, 1.5), (2, None))
    conn.select_db("mysql")  # COM_INIT_DB
    cur.execute("SELECT DATABASE()")
    assert cur.fetchone() == ("mysql",)
    conn.close()


# --- sysbench ------------------------------------------------------------------


def _sysbench(port: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sysbench", "oltp_read_write", "--mysql-host=127.0.0.1", f"--mysql-port={port}", "--mysql-user=app",
         "--mysql-password=app", "--mysql-db=sbtest", "--tables=4", "--table-size=20000", *args],
        capture_output=True, text=True, timeout=180,
    )


def _innodb_deadlocks(cluster) -> int:
    return int(cluster.primary.query("SHOW GLOBAL STATUS LIKE 'Innodb_deadlocks'")[0]["Value"])


@pytest.mark.parametrize("ps_mode", ["auto", "disable"])
def test_sysbench_oltp_read_write(proxy, cluster, ps_mode):
    _sysbench(cluster.primary.port, "cleanup")
    prep = _sysbench(cluster.primary.port, "prepare")
    assert prep.returncode == 0, prep.stderr
    deadlocks_before = _innodb_deadlocks(cluster)
    # --verbosity=5 makes sysbench name each error it ignores ("DEBUG: Ignoring error 1213 ...")
    run = _sysbench(proxy.port, "--threads=8", "--time=10", f"--db-ps-mode={ps_mode}", "--verbosity=5", "run")
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    errors_line = next(line for line in out.splitlines() if "ignored errors:" in line)
    ignored = re.findall(r"Ignoring error (\d+)", out + run.stderr)
    assert int(errors_line.split()[2]) == len(ignored), errors_line
    # Zero errors from the proxy. The one error this workload can meet on its own is an InnoDB
    # deadlock between two of its transactions (about one run in six here, direct or proxied):
    # that one is allowed only when the primary itself counted the deadlock.
    assert set(ignored) <= {"1213"}, ignored
    if ignored:
        assert _innodb_deadlocks(cluster) - deadlocks_before >= len(ignored), (ignored, deadlocks_before)
    tx_line = next(line for line in out.splitlines() if line.strip().startswith("transactions:"))
    assert int(tx_line.split()[1]) > 50, tx_line
    _sysbench(cluster.primary.port, "cleanup")


def test_load_data_local_infile_disabled_by_default(proxy_factory, tmp_path):
    data = tmp_path / "rows.tsv"
    data.write_text("1\tone\n")
    proxy = proxy_factory(variables={"enable_load_data_local_infile": False})
    conn = proxy.connect(local_infile=True, autocommit=True)
    cur = conn.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS infile_off (id INT, name VARCHAR(10))")
    with pytest.raises(pymysql.err.OperationalError) as ei:
        cur.execute(f"LOAD DATA LOCAL INFILE '{data}' INTO TABLE infile_off")
    assert ei.value.args[0] in (1148, 4166)  # the backend refuses: the proxy did not pass CLIENT_LOCAL_FILES
    cur.execute("SELECT 1")
    assert cur.fetchone() == (1,)
    conn.close()
