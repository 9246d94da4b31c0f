"""The admin front, property-based: whatever statement text arrives, the statement splitter,
the @@variable substitution, the MySQL->SQLite translation, the command parser and the engine
answer with a value or their own error (CommandError, UnknownVariable, MySQLError), never an
unexpected exception.

Statements are drawn from ProxySQL's admin vocabulary (so they reach deep into the grammar:
LOAD/SAVE, SHOW, SET, EXPLAIN ROUTING, KILL, ...), glued with quotes, comments and punctuation,
and from arbitrary text.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from myrouter.admin.commands import Command, CommandError, Kill, SetVariable, parse_command
from myrouter.admin.core import Admin, AdminSession, OkResult, ResultSet
from myrouter.admin.sqltext import UnknownVariable, split_statements, substitute_variables, translate
from myrouter.app import Proxy
from myrouter.config import load_config
from myrouter.protocol.errors import MySQLError

REPO = Path(__file__).resolve().parents[2]

# repeatable in CI (derandomized, no example database), no deadline on a loaded machine
PROPERTIES = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.too_slow])

WORDS = (
    "LOAD SAVE MYSQL ADMIN SERVERS USERS QUERY RULES VARIABLES ALL TO FROM RUNTIME RUN MEMORY MEM DISK CONFIG "
    "mysql_replication_hostgroups EXPLAIN ROUTING FOR USER SCHEMA PROXYSQL FLUSH CACHE LOGS CLIENT HOSTS KILL "
    "CONNECTION SHOW FULL TABLES DATABASES SCHEMAS CREATE TABLE PROCESSLIST GLOBAL SESSION LOCAL STATUS WARNINGS "
    "ERRORS LIMIT COUNT(*) ENGINES STORAGE CHARSET CHARACTER COLLATION LIKE IN SET NAMES USE BEGIN COMMIT ROLLBACK "
    "START TRANSACTION WORK SELECT INSERT INTO UPDATE DELETE WHERE VALUES mysql_servers mysql_users "
    "mysql_query_rules global_variables runtime_mysql_servers stats_mysql_query_digest disk. stats. main "
    "mysql-max_connections admin-mysql_ifaces mysql-server_version @@version @@session.autocommit @@nope = := , . "
    "( ) * 0 1 42 18446744073709551616 NULL utf8mb4 test"
).split()
PUNCT = ["'", '"', "`", ";", "\\", "/*", "*/", "-- ", "--", "#", "\n", "\t", " ", "''", "\\'", "%", "_", "\0"]
TOKEN = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from(WORDS).map(str.lower),
    st.sampled_from(PUNCT),
    st.text(max_size=6),
)
# valid admin statements (ProxySQL's and the README's examples), to damage
VALID = [
    "LOAD MYSQL SERVERS TO RUNTIME", "SAVE MYSQL USERS TO DISK", "LOAD ALL FROM CONFIG", "SAVE ALL FROM RUN",
    "LOAD MYSQL QUERY RULES FROM MEMORY", "SAVE ADMIN VARIABLES TO MEM", "LOAD mysql_replication_hostgroups TO RUN",
    "EXPLAIN ROUTING FOR USER 'app' SCHEMA 'test' 'SELECT 1'", "EXPLAIN ROUTING SELECT * FROM t FOR UPDATE",
    "EXPLAIN ROUTING USER `app` 'it''s \\'quoted\\''", "PROXYSQL FLUSH QUERY CACHE", "PROXYSQL FLUSH LOGS",
    "KILL QUERY 7", "KILL CONNECTION 12", "SHOW FULL TABLES FROM `disk` LIKE 'mysql%'", "SHOW CREATE TABLE disk.mysql_users",
    "SHOW SESSION VARIABLES LIKE \"sql\\_mode\"", "SHOW COUNT(*) WARNINGS", "SHOW WARNINGS LIMIT 1, 2",
    "SHOW CHARACTER SET LIKE 'utf8%'", "SHOW MYSQL STATUS", "SET mysql-max_connections = 100",
    "SET admin-admin_credentials='admin:x;radmin:y'", "SET GLOBAL mysql-server_version := \"8.0\"", "SET NAMES utf8mb4",
    "USE stats", "USE `disk`", "START TRANSACTION", "COMMIT WORK",
    "SELECT @@version, @@session.autocommit, 'x;y' FROM mysql_servers WHERE port = 3306 LIMIT 1",
    "UPDATE mysql_servers SET weight = 2 WHERE hostgroup_id = 1",
    "INSERT INTO mysql_query_rules (rule_id, active, match_digest, destination_hostgroup) VALUES (9, 1, '^SELECT', 1)",
    "DELETE FROM mysql_users WHERE username = 'nobody'", "SELECT * FROM stats_mysql_query_digest ORDER BY count_star",
    "SELECT IF(status = 'ONLINE', 1, 0), GROUP_CONCAT(hostname SEPARATOR ';') FROM runtime_mysql_servers",
]


@st.composite
def damaged(draw) -> str:
    """A valid admin statement with a few edits: a token dropped, doubled or replaced, text inserted, a cut."""
    tokens = draw(st.sampled_from(VALID)).split(" ")
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(tokens)))
        op = draw(st.integers(0, 4))
        if op == 0 and i < len(tokens):
            del tokens[i]
        elif op == 1 and i < len(tokens):
            tokens.insert(i, tokens[i])
        elif op == 2 and i < len(tokens):
            tokens[i] = draw(TOKEN)
        elif op == 3:
            tokens.insert(i, draw(TOKEN))
        else:
            text = " ".join(tokens)
            tokens = [text[: draw(st.integers(0, len(text)))]]
    return " ".join(tokens)


STATEMENT = st.one_of(
    damaged(),
    st.lists(TOKEN, max_size=14).flatmap(lambda ts: st.lists(st.sampled_from([" ", "", "  ", "\n"]),
                                                            min_size=len(ts), max_size=len(ts))
                                         .map(lambda seps: "".join(s + t for s, t in zip(seps, ts)))),
    st.text(max_size=60),
)


# --------------------------------------------------------------------------- the pure helpers


@PROPERTIES
@given(sql=STATEMENT)
@example(sql="KILL " + "1" * 5000)  # more digits than int() converts: a command error, not a ValueError
@example(sql="SET mysql-x =  ")
def test_parse_command_returns_a_command_none_or_a_command_error(sql):
    try:
        cmd = parse_command(sql)
    except CommandError as exc:
        assert str(exc)
        return
    assert cmd is None or isinstance(cmd, Command)
    if isinstance(cmd, Kill):
        assert cmd.session_id >= 0
    if isinstance(cmd, SetVariable):
        assert cmd.name.startswith(("mysql-", "admin-"))


@PROPERTIES
@given(sql=STATEMENT)
def test_split_statements_gives_stripped_pieces_that_split_no_further(sql):
    pieces = split_statements(sql)
    for piece in pieces:
        assert piece and piece == piece.strip()
        assert split_statements(piece) == [piece]
    if not any(c in sql for c in "'\"`#\\") and "--" not in sql and "/*" not in sql:
        assert pieces == [p.strip() for p in sql.split(";") if p.strip()]


KNOWN = {"version": "10.11.6-MariaDB", "autocommit": 1, "sql_mode": None, "max_allowed_packet": 67108864}


def lookup(name: str):
    if name not in KNOWN:
        raise UnknownVariable(name)
    return KNOWN[name]


@PROPERTIES
@given(sql=STATEMENT)
def test_substitute_variables_returns_text_or_names_the_unknown_variable(sql):
    try:
        out = substitute_variables(sql, lookup)
    except UnknownVariable as exc:
        assert exc.args[0] not in KNOWN
        return
    assert isinstance(out, str)
    if "@@" not in sql:
        assert out == sql


@PROPERTIES
@given(sql=STATEMENT)
@example(sql="SHOW STORAGE")  # sqlglot raised IndexError
def test_translate_returns_sqlite_text_or_none(sql):
    out = translate(sql)
    assert out is None or (isinstance(out, str) and out.strip() != sql.strip())


# --------------------------------------------------------------------------- the engine

CONFIG = """\
rules_dir = "rules"
datadir = "data"

[mysql_variables]
interfaces = "127.0.0.1:16033"
server_version = "10.11.6-MariaDB"

[admin_variables]
mysql_ifaces = "127.0.0.1:16032"

[[mysql_servers]]
hostgroup_id = 0
hostname = "127.0.0.1"
port = 3306

[[mysql_servers]]
hostgroup_id = 1
hostname = "127.0.0.1"
port = 3307

[[mysql_users]]
username = "app"
password = "app"
default_hostgroup = 0
"""


@pytest.fixture(scope="module")
def admin(tmp_path_factory) -> Admin:
    """One engine for every example (module scope: hypothesis runs many examples per test)."""
    path = tmp_path_factory.mktemp("admin-properties")
    (path / "rules").mkdir()
    (path / "data").mkdir()
    shutil.copy(REPO / "rules" / "00-read-write-split.toml", path / "rules")
    (path / "myrouter.toml").write_text(CONFIG)
    return Proxy(load_config(path / "myrouter.toml")).admin


SESSIONS = st.sampled_from([AdminSession(1, "admin", "127.0.0.1", read_only=False),
                            AdminSession(2, "stats", "127.0.0.1", read_only=True)])


@PROPERTIES
@given(sql=STATEMENT, sess=SESSIONS)
@example(sql="KILL " + "1" * 5000, sess=AdminSession(1, "admin", "127.0.0.1", read_only=False))
@example(sql="EXPLAIN SHOW STORAGE", sess=AdminSession(1, "admin", "127.0.0.1", read_only=False))  # sqlglot IndexError
# a transaction left open by the operator refused every later refresh of the runtime_/stats_ tables
@example(sql="SAVEPOINT a; SELECT * FROM stats_mysql_query_digest", sess=AdminSession(1, "admin", "127.0.0.1",
                                                                                      read_only=False))
@example(sql="BEGIN IMMEDIATE; LOAD MYSQL USERS TO RUNTIME", sess=AdminSession(1, "admin", "127.0.0.1", read_only=False))
async def test_any_admin_statement_gives_a_result_or_a_mysql_error(admin, sql, sess):
    for statement in split_statements(sql) or [sql]:
        try:
            result = await admin.execute(sess, statement)
        except MySQLError as exc:
            assert 1000 <= exc.code < 10000 and len(exc.sqlstate) == 5 and exc.message
            continue
        assert isinstance(result, (OkResult, ResultSet))
