"""Configuration loading (myrouter.config) and the TOML line locator (myrouter.tomlutil).

Error tests assert the three things a user needs to fix a file: the file name,
the line number (computed here from the test's own text, independently of the
locator) and the key.
"""

from __future__ import annotations

import logging
import os
import random
import re
import textwrap
from pathlib import Path

import pytest

from myrouter.config import (
    ADMIN_COMPAT_VARIABLES,
    MYSQL_COMPAT_VARIABLES,
    AdminVariables,
    Config,
    MySQLVariables,
    is_loopback_host,
    is_native_hash,
    load_config,
    parse_credentials,
    parse_interfaces,
)
from myrouter.errors import ConfigError
from myrouter.tomlutil import TomlDoc, key_path, load_toml, parse_toml

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config" / "myrouter.example.toml"

# A valid base: one writer, one reader, one user. Tests append to it.
BASE = """\
[[mysql_servers]]
hostgroup_id = 0
hostname = "10.0.0.1"

[[mysql_servers]]
hostgroup_id = 1
hostname = "10.0.0.2"

[[mysql_users]]
username = "app"
password = "secret"
default_hostgroup = 0
"""

NATIVE_HASH = "*" + "6BB4837EB74329105EE4568DDA7DC67ED2CA2AD9"  # PASSWORD('123456')


def write(tmp_path: Path, text: str, name: str = "myrouter.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the ``occurrence``-th line containing ``needle`` (test oracle)."""
    seen = 0
    for number, line in enumerate(textwrap.dedent(text).splitlines(), 1):
        if needle in line:
            seen += 1
            if seen == occurrence:
                return number
    raise AssertionError(f"{needle!r} not in text")


def config_error(tmp_path: Path, text: str) -> tuple[ConfigError, Path]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value, path


def assert_error(err: ConfigError, path: Path, line: int | None, key: str | None, *words: str) -> None:
    assert err.file == str(path)
    assert err.line == line, f"line {err.line} != {line}: {err}"
    if key is not None:
        assert err.key == key, str(err)
    text = str(err)
    prefix = f"{path}:{line}: " if line else f"{path}: "
    assert text.startswith(prefix), text
    if key is not None:
        assert f"{key}: " in text
    for word in words:
        assert word in text, f"{word!r} not in {text!r}"


# ---------------------------------------------------------------------------
# tomlutil
# ---------------------------------------------------------------------------

TRICKY = """\
# [not_a_header] in a comment
rules_dir = "rules"   # trailing [comment]
a.b.c = 1

[mysql_variables]
interfaces = "127.0.0.1:6033" # [fake]
banner = \"\"\"
[mysql_users]
username = "inside a multi-line string"
\"\"\"
literal = '''
[[mysql_servers]]
'''
 "quoted key" = 'lit'
quotes = \"\"\"ends with two quotes\"\"\"\"\"
after_quotes = 1
escaped = "a \\" [x] = 1"
list = [1,
  2, # ] comment
  3]

[[mysql_servers]]
hostname = "a"
port = 3306

[[mysql_servers]]
hostname = "b"

[ "mysql_users" ]
inline_rows = [ {p = 1, q = 2},
  {p = 3, q = 4} ]
point = {x = 1, y = {z = 2}}
after = true
"""


def test_line_of_headers_keys_and_arrays_of_tables() -> None:
    doc = parse_toml(TRICKY, "t.toml")
    assert doc.line_of("", None, "rules_dir") == line_of(TRICKY, "rules_dir =")
    assert doc.line_of("mysql_variables") == line_of(TRICKY, "[mysql_variables]")
    assert doc.line_of("mysql_variables", None, "interfaces") == line_of(TRICKY, "interfaces =")
    assert doc.line_of("mysql_variables", None, "quoted key") == line_of(TRICKY, '"quoted key"')
    assert doc.line_of("mysql_variables", None, "list") == line_of(TRICKY, "list = [")
    assert doc.line_of("mysql_servers", 0) == line_of(TRICKY, "[[mysql_servers]]", 2)
    assert doc.line_of("mysql_servers", 1) == line_of(TRICKY, "[[mysql_servers]]", 3)
    assert doc.line_of("mysql_servers", 0, "port") == line_of(TRICKY, "port = 3306")
    assert doc.line_of("mysql_servers", 1, "hostname") == line_of(TRICKY, 'hostname = "b"')
    # Missing key: the header line of that element.
    assert doc.line_of("mysql_servers", 1, "port") == line_of(TRICKY, "[[mysql_servers]]", 3)
    assert doc.line_of("mysql_users") == line_of(TRICKY, '[ "mysql_users" ]')
    assert doc.line_of("mysql_users", None, "after") == line_of(TRICKY, "after = true")


def test_line_of_ignores_strings_and_comments() -> None:
    doc = parse_toml(TRICKY, "t.toml")
    # "username = ..." and "[[mysql_servers]]" inside multi-line strings are not keys/headers.
    assert doc.line_of("mysql_variables", None, "username") == line_of(TRICKY, "[mysql_variables]")
    assert doc.line_of("mysql_servers", 2) is None
    assert doc.line_of("not_a_header") is None
    assert doc.line_of("mysql_variables", None, "banner") == line_of(TRICKY, "banner =")
    assert doc.line_of("mysql_variables", None, "literal") == line_of(TRICKY, "literal =")
    assert doc.line_of("mysql_variables", None, "escaped") == line_of(TRICKY, "escaped =")
    assert doc.line_of("mysql_variables", None, "after_quotes") == line_of(TRICKY, "after_quotes =")
    assert doc.line_of("x") is None  # from inside the escaped string


def test_line_of_dotted_keys_and_inline_tables() -> None:
    doc = parse_toml(TRICKY, "t.toml")
    dotted = line_of(TRICKY, "a.b.c = 1")
    assert doc.line_of("", None, "a.b.c") == dotted
    assert doc.line_of("a.b", None, "c") == dotted
    assert doc.line_of("a") == dotted
    assert doc.line_of("", None, "a") == dotted
    # An array of inline tables is indexed like [[...]].
    assert doc.line_of("mysql_users.inline_rows", 0, "q") == line_of(TRICKY, "{p = 1, q = 2}")
    assert doc.line_of("mysql_users.inline_rows", 1, "p") == line_of(TRICKY, "{p = 3, q = 4}")
    assert doc.line_of("mysql_users.point", None, "y") == line_of(TRICKY, "point = ")
    assert doc.line_of("mysql_users.point.y", None, "z") == line_of(TRICKY, "point = ")


def test_line_of_unknown_returns_none() -> None:
    doc = parse_toml("x = 1\n", "t.toml")
    assert doc.line_of("nope") is None
    assert doc.line_of("nope", 3, "k") is None
    assert doc.line_of("", None, "y") is None
    assert doc.line_of("", None, "x") == 1


def test_line_of_never_raises_on_garbage() -> None:
    """The locator answers a line or None on any text (prefixes of valid files are often invalid)."""
    rng = random.Random(1234)
    alphabet = "ab =.[]{}\"'#\n\\,1-_ \t"
    for text in [TRICKY[:n] for n in range(0, len(TRICKY) + 1, 7)] + [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))) for _ in range(300)
    ]:
        doc = TomlDoc({}, "t.toml", text)
        for table, index, key in (("", None, "a"), ("mysql_servers", 1, "hostname"), ("a.b", None, "c")):
            line = doc.line_of(table, index, key)
            assert line is None or 1 <= line <= text.count("\n") + 1


def test_load_toml_syntax_error_has_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[mysql_variables]\ninterfaces = \"x\"\nmax_connections = = 3\n")
    with pytest.raises(ConfigError) as info:
        load_toml(path)
    err = info.value
    assert err.file == str(path)
    assert err.line == 3
    assert str(err).startswith(f"{path}:3: invalid TOML: ")
    assert "column" in str(err)


def test_load_toml_error_at_end_of_file(tmp_path: Path) -> None:
    path = write(tmp_path, "a = 1\nb = [1,\n  2\n\n")
    with pytest.raises(ConfigError) as info:
        load_toml(path)
    assert info.value.line == 3
    assert "end of file" in str(info.value)


def test_load_toml_duplicate_table(tmp_path: Path) -> None:
    path = write(tmp_path, "[x]\na = 1\n[x]\nb = 2\n")
    with pytest.raises(ConfigError) as info:
        load_toml(path)
    assert info.value.line == 3


def test_load_toml_unreadable_and_not_utf8(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as info:
        load_toml(missing)
    assert info.value.file == str(missing)
    assert "cannot read" in str(info.value)

    latin = tmp_path / "latin1.toml"
    latin.write_bytes(b"a = 1\ncomment = \"caf\xe9\"\n")
    with pytest.raises(ConfigError) as info:
        load_toml(latin)
    assert info.value.line == 2
    assert "UTF-8" in str(info.value)


def test_doc_error_and_key_path(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    doc = load_toml(path)
    assert isinstance(doc, TomlDoc)
    assert doc.path == path
    assert doc.data["mysql_servers"][1]["hostname"] == "10.0.0.2"
    err = doc.error("bad", "mysql_servers", 1, "hostname")
    line = line_of(BASE, 'hostname = "10.0.0.2"')
    assert str(err) == f"{path}:{line}: mysql_servers[1].hostname: bad"
    assert key_path("", None, "rules_dir") == "rules_dir"
    assert key_path("mysql_variables", None, "interfaces") == "mysql_variables.interfaces"
    assert key_path("mysql_servers", 2, None) == "mysql_servers[2]"


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:6033", [("127.0.0.1", 6033)]),
        ("0.0.0.0:6033;127.0.0.1:7000", [("0.0.0.0", 6033), ("127.0.0.1", 7000)]),
        (" [::1]:6033 ; localhost:6034 ;", [("::1", 6033), ("localhost", 6034)]),
        ("[::]:3306", [("::", 3306)]),
        ("127.0.0.1:0", [("127.0.0.1", 0)]),
    ],
)
def test_parse_interfaces(text: str, expected: list[tuple[str, int]]) -> None:
    assert parse_interfaces(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no listener"),
        (" ; ", "no listener"),
        ("127.0.0.1", "host:port"),
        (":6033", "host:port"),
        ("127.0.0.1:http", "not a number"),
        ("127.0.0.1:65536", "1..65535"),
        ("127.0.0.1:-1", "not a number"),
        ("::1:6033", "brackets"),
        ("[::1:6033", "[ipv6]:port"),
        ("[nothex]:6033", "not an IPv6"),
        ("/tmp/proxysql.sock", "Unix socket"),
        ("a:1;a:1", "twice"),
    ],
)
def test_parse_interfaces_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_interfaces(text)


def test_parse_credentials() -> None:
    assert parse_credentials("admin:admin") == [("admin", "admin")]
    assert parse_credentials("admin:a:b;radmin:radmin") == [("admin", "a:b"), ("radmin", "radmin")]
    for bad, message in [("admin", "no ':'"), (":x", "empty user"), ("u:", "empty password"),
                         ("", "no credentials"), ("u:a;u:b", "twice")]:
        with pytest.raises(ValueError, match=message):
            parse_credentials(bad)


def test_is_native_hash() -> None:
    assert is_native_hash(NATIVE_HASH)
    assert is_native_hash(NATIVE_HASH.lower())
    assert not is_native_hash("secret")
    assert not is_native_hash(NATIVE_HASH[1:])  # no star
    assert not is_native_hash(NATIVE_HASH + "0")  # 41 hex digits
    assert not is_native_hash("*" + "G" * 40)


def test_is_loopback_host() -> None:
    assert is_loopback_host("127.0.0.1")
    assert is_loopback_host("127.1.2.3")
    assert is_loopback_host("::1")
    assert is_loopback_host("LOCALHOST")
    assert not is_loopback_host("0.0.0.0")
    assert not is_loopback_host("::")
    assert not is_loopback_host("10.0.0.1")
    assert not is_loopback_host("db.example.com")


# ---------------------------------------------------------------------------
# Loading valid files
# ---------------------------------------------------------------------------


def test_example_config_loads() -> None:
    config = load_config(EXAMPLE)
    assert isinstance(config, Config)
    assert config.path == EXAMPLE
    assert config.rules_dir == (REPO / "rules").resolve()
    assert config.rules_dir.is_absolute()
    assert config.hostgroups() == {0, 1}
    assert [s.address for s in config.servers_in(0)] == [("127.0.0.1", 3306)]
    assert [s.port for s in config.servers_in(1)] == [3307, 3308]
    assert all(s.status == "ONLINE" for s in config.mysql_servers)
    (repl,) = config.mysql_replication_hostgroups
    assert (repl.writer_hostgroup, repl.reader_hostgroup, repl.check_type) == (0, 1, "read_only")
    app = config.user("app")
    assert app is not None and app.password == "app" and app.default_hostgroup == 0
    assert app.transaction_persistent is True and app.pool_mode == "transaction"
    assert config.backend_user("app") == app
    assert config.user("nobody") is None
    v = config.mysql_variables
    assert v.listen_addresses() == [("127.0.0.1", 6033)]
    assert v.client_packet_timeout == 30000 and v.shutdown_timeout == 30000
    assert v.monitor_read_only_interval == 1500
    assert config.admin_variables.listen_addresses() == [("127.0.0.1", 6032)]
    assert config.admin_variables.admin_accounts() == [("admin", "admin")]
    assert config.query_rules_raw == ()


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    config = load_config(path)
    assert config.mysql_servers == () and config.mysql_users == ()
    assert config.mysql_variables == MySQLVariables()
    assert config.admin_variables == AdminVariables()
    v = config.mysql_variables
    assert v.interfaces == "127.0.0.1:6033"
    assert v.max_connections == 2048
    assert v.server_version == "auto"
    assert v.default_authentication_plugin == "mysql_native_password"
    assert v.max_allowed_packet == 64 * 1024 * 1024
    assert v.connect_timeout_server == 3000
    assert v.connect_timeout_client == 10000
    assert v.wait_timeout == 28_800_000
    assert v.monitor_username == "monitor" and v.monitor_enabled is True
    assert v.threads == max(1, min(255, len(os.sched_getaffinity(0))))  # one worker per usable CPU
    a = config.admin_variables
    assert (a.mysql_ifaces, a.admin_credentials, a.stats_credentials) == ("127.0.0.1:6032", "admin:admin", "stats:stats")
    assert (a.restapi_enabled, a.restapi_port) == (True, 6070)
    # Default rules_dir (absent here) is fine and absolute.
    assert config.rules_dir == (tmp_path / "rules").resolve()


def test_items_cover_typed_and_compatibility_variables(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[mysql_variables]\nquery_cache_size_MB = 64\nmultiplexing = 0\n"))
    items = config.mysql_variables.items()
    assert list(items)[0] == "interfaces"
    assert items["multiplexing"] is False
    assert items["query_cache_size_MB"] == 64
    assert set(MYSQL_COMPAT_VARIABLES) <= set(items)
    assert items["stacksize"] == 1024 * 1024
    rows = dict(config.mysql_variables.global_variables())
    assert rows["mysql-multiplexing"] == "false"
    assert rows["mysql-monitor_enabled"] == "true"
    assert rows["mysql-max_connections"] == "2048"
    admin_rows = dict(config.admin_variables.global_variables())
    assert admin_rows["admin-restapi_port"] == "6070"
    assert set(f"admin-{n}" for n in ADMIN_COMPAT_VARIABLES) <= set(admin_rows)


def test_booleans_and_flags_normalized(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + """
[mysql_variables]
multiplexing = 0
monitor_enabled = false
enforce_autocommit_on_reads = 1
use_tcp_keepalive = true

[[mysql_users]]
username = "flags"
default_hostgroup = 1
active = 0
use_ssl = true
schema_locked = 0
transaction_persistent = false
fast_forward = 0
""")
    config = load_config(path)
    v = config.mysql_variables
    assert (v.multiplexing, v.monitor_enabled, v.enforce_autocommit_on_reads, v.use_tcp_keepalive) == (
        False, False, True, True)
    u = config.user("flags")
    assert u is not None
    values = (u.active, u.use_ssl, u.schema_locked, u.transaction_persistent, u.fast_forward)
    assert values == (False, True, False, False, False)
    assert all(type(x) is bool for x in values)


def test_variable_names_case_insensitive(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[mysql_variables]\nMax_Connections = 100\nquery_cache_size_mb = 1\n"))
    assert config.mysql_variables.max_connections == 100
    assert config.mysql_variables.items()["query_cache_size_MB"] == 1


def test_compatibility_variables_are_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = "errorlog = \"/var/lib/proxysql/proxysql.log\"\n[mysql_variables]\nstacksize = 1048576\n" \
           "poll_timeout = 2000\n[admin_variables]\nrefresh_interval = 2000\n"
    with caplog.at_level(logging.WARNING, logger="myrouter.config"):
        config = load_config(write(tmp_path, text))
    assert config.mysql_variables.items()["poll_timeout"] == 2000
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "ignored" in messages
    for name in ("errorlog (line 1)", "mysql_variables.stacksize (line 3)", "mysql_variables.poll_timeout (line 4)",
                 "admin_variables.refresh_interval (line 6)"):
        assert name in messages


def test_datadir_is_resolved_against_the_config_file(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")).datadir is None
    assert load_config(write(tmp_path, 'datadir = "state"\n')).datadir == (tmp_path / "state").resolve()
    assert load_config(write(tmp_path, 'datadir = "/var/lib/myrouter"\n')).datadir == Path("/var/lib/myrouter")
    (tmp_path / "afile").write_text("")
    err, path = config_error(tmp_path, 'datadir = "afile"\n')
    assert_error(err, path, 1, "datadir", "not a directory")


def test_threads_is_the_number_of_workers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="myrouter.config"):
        config = load_config(write(tmp_path, "[mysql_variables]\nthreads = 4\n"))
    assert config.mysql_variables.threads == 4
    assert not caplog.records  # honoured (myrouter.workers), not "ignored"
    for bad in (0, 256):
        with pytest.raises(ConfigError, match="threads"):
            load_config(write(tmp_path, f"[mysql_variables]\nthreads = {bad}\n"))


def test_user_frontend_and_backend_rows(tmp_path: Path) -> None:
    text = BASE + """
[[mysql_users]]
username = "split"
password = "front"
default_hostgroup = 0
backend = 0

[[mysql_users]]
username = "split"
password = "back"
frontend = 0
"""
    config = load_config(write(tmp_path, text))
    front, back = config.user("split"), config.backend_user("split")
    assert front is not None and back is not None
    assert (front.password, back.password) == ("front", "back")


def test_server_aliases_from_proxysql_cnf(tmp_path: Path) -> None:
    text = """
[[mysql_servers]]
address = "db1"
hostgroup = 3
port = 3307
status = "offline_soft"
"""
    config = load_config(write(tmp_path, text))
    (server,) = config.mysql_servers
    assert (server.hostgroup_id, server.hostname, server.port, server.status) == (3, "db1", 3307, "OFFLINE_SOFT")


def test_native_hash_password_accepted(tmp_path: Path) -> None:
    text = BASE.replace('password = "secret"', f'password = "{NATIVE_HASH}"')
    config = load_config(write(tmp_path, text))
    user = config.user("app")
    assert user is not None and is_native_hash(user.password)


def test_reader_hostgroup_without_servers_is_a_valid_default(tmp_path: Path) -> None:
    text = BASE + """
[[mysql_replication_hostgroups]]
writer_hostgroup = 10
reader_hostgroup = 11

[[mysql_users]]
username = "reporting"
default_hostgroup = 11
"""
    config = load_config(write(tmp_path, text))
    assert config.hostgroups() == {0, 1, 10, 11}


def test_query_rules_kept_raw(tmp_path: Path) -> None:
    text = BASE + """
[[mysql_query_rules]]
rule_id = 1
match_digest = "^SELECT"
destination_hostgroup = 1
anything_goes_here = "validated by the rule loader"

[[mysql_query_rules]]
rule_id = 2
"""
    path = write(tmp_path, text)
    config = load_config(path)
    assert [(p, i, r["rule_id"]) for p, i, r in config.query_rules_raw] == [(path, 0, 1), (path, 1, 2)]
    assert config.query_rules_raw[0][2]["anything_goes_here"] == "validated by the rule loader"


def test_rules_dir_relative_to_config_file(tmp_path: Path) -> None:
    (tmp_path / "etc" / "my-rules").mkdir(parents=True)
    path = write(tmp_path, 'rules_dir = "my-rules"\n', name="etc/myrouter.toml")
    assert load_config(path).rules_dir == (tmp_path / "etc" / "my-rules").resolve()


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE))
    with pytest.raises(AttributeError):
        config.mysql_servers[0].port = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        config.mysql_variables.max_connections = 1  # type: ignore[misc]


def test_loopback_admin_may_use_default_credentials(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[admin_variables]\nmysql_ifaces = "127.0.0.1:6032;[::1]:6032"\n'))
    assert config.admin_variables.admin_accounts() == [("admin", "admin")]


def test_exposed_admin_with_other_credentials(tmp_path: Path) -> None:
    text = '[admin_variables]\nmysql_ifaces = "0.0.0.0:6032"\nadmin_credentials = "radmin:s3cret"\n'
    config = load_config(write(tmp_path, text))
    assert config.admin_variables.admin_accounts() == [("radmin", "s3cret")]


# ---------------------------------------------------------------------------
# Errors: file, line and key in every message
# ---------------------------------------------------------------------------


def test_error_unknown_table(tmp_path: Path) -> None:
    text = BASE + "\n[mysql_server]\nhostname = \"x\"\n"
    err, path = config_error(tmp_path, text)
    assert_error(err, path, line_of(text, "[mysql_server]"), "mysql_server", "unknown table", "mysql_servers")


def test_error_unsupported_proxysql_table(tmp_path: Path) -> None:
    text = BASE + "\n[[mysql_galera_hostgroups]]\nwriter_hostgroup = 0\n"
    err, path = config_error(tmp_path, text)
    assert_error(err, path, line_of(text, "[[mysql_galera_hostgroups]]"), "mysql_galera_hostgroups",
                 "not supported")


def test_error_unknown_top_level_key(tmp_path: Path) -> None:
    text = 'rule_dir = "rules"\n' + BASE
    err, path = config_error(tmp_path, text)
    assert_error(err, path, 1, "rule_dir", "unknown key", "did you mean 'rules_dir'")


def test_error_unknown_variable(tmp_path: Path) -> None:
    text = BASE + "\n[mysql_variables]\nmax_connections = 10\nmax_conections = 10\n"
    err, path = config_error(tmp_path, text)
    assert_error(err, path, line_of(text, "max_conections"), "mysql_variables.max_conections",
                 "unknown key in [mysql_variables]", "did you mean 'max_connections'")


def test_error_variable_with_proxysql_prefix(tmp_path: Path) -> None:
    text = "[mysql_variables]\n\"mysql-threads\" = 4\n"
    err, path = config_error(tmp_path, text)
    assert_error(err, path, 2, "mysql_variables.mysql-threads", "without the 'mysql-' prefix")


def test_error_unknown_admin_variable(tmp_path: Path) -> None:
    text = "[admin_variables]\nrestapi_enable = true\n"
    err, path = config_error(tmp_path, text)
    assert_error(err, path, 2, "admin_variables.restapi_enable", "did you mean 'restapi_enabled'")


def test_error_duplicate_variable_by_case(tmp_path: Path) -> None:
    text = "[mysql_variables]\nthreads = 1\nTHREADS = 2\n"
    err, path = config_error(tmp_path, text)
    assert_error(err, path, 3, "mysql_variables.THREADS", "duplicate")


def test_error_unknown_key_in_server_row(tmp_path: Path) -> None:
    text = BASE.replace('hostname = "10.0.0.2"', 'hostname = "10.0.0.2"\nwieght = 2')
    err, path = config_error(tmp_path, text)
    assert_error(err, path, line_of(text, "wieght"), "mysql_servers[1].wieght", "did you mean 'weight'")


def test_error_unknown_key_in_user_row(tmp_path: Path) -> None:
    text = BASE + "pool = \"session\"\n"
    err, path = config_error(tmp_path, text)
    assert_error(err, path, line_of(text, "pool = "), "mysql_users[0].pool", "unknown key")


@pytest.mark.parametrize(
    ("snippet", "key", "words"),
    [
        ("max_connections = \"2048\"", "max_connections", ("expected an integer", "a string")),
        ("max_connections = true", "max_connections", ("expected an integer", "a boolean")),
        ("max_connections = 1.5", "max_connections", ("expected an integer", "a float")),
        ("max_connections = 0", "max_connections", ("out of range", "1..1000000")),
        ("multiplexing = 2", "multiplexing", ("true/false or 0/1",)),
        ("multiplexing = \"yes\"", "multiplexing", ("true/false or 0/1",)),
        ("monitor_username = 5", "monitor_username", ("expected a string",)),
        ("default_authentication_plugin = \"sha256_password\"", "default_authentication_plugin",
         ("mysql_native_password", "caching_sha2_password")),
        ("interfaces = \"127.0.0.1\"", "interfaces", ("host:port",)),
        ("interfaces = \"127.0.0.1:70000\"", "interfaces", ("1..65535",)),
        ("server_version = \"latest\"", "server_version", ("auto",)),
        ("connect_timeout_client = 100", "connect_timeout_client", ("500..3600000",)),
        ("client_packet_timeout = 0", "client_packet_timeout", ("out of range",)),
        ("shutdown_timeout = -1", "shutdown_timeout", ("out of range",)),
        ("max_connections_in_handshake = 0", "max_connections_in_handshake", ("out of range", "1..1000000")),
        ("max_connections_in_handshake_per_host = \"10\"", "max_connections_in_handshake_per_host",
         ("expected an integer",)),
        ("poll_timeout = [1, 2]", "poll_timeout", ("single value",)),
    ],
)
def test_error_bad_variable_values(tmp_path: Path, snippet: str, key: str, words: tuple[str, ...]) -> None:
    text = BASE + "\n[mysql_variables]\nthreads = 1\n" + snippet + "\n"
    err, path = config_error(tmp_path, text)
    assert_error(err, path, line_of(text, snippet), f"mysql_variables.{key}", *words)


def test_error_connect_timeout_server_above_max(tmp_path: Path) -> None:
    text = "[mysql_variables]\nconnect_timeout_server = 20000\n"
    err, path = config_error(tmp_path, text)
    assert_error(err, path, 2, "mysql_variables.connect_timeout_server", "connect_timeout_server_max")


@pytest.mark.parametrize(
    ("snippet", "key", "words"),
    [
        ("port = 70000", "port", ("out of range", "0..65535")),
        ("port = 0", "port", ("Unix socket", "absolute path", "10.0.0.2")),
        ("weight = -1", "weight", ("out of range", "0..10000000")),
        ("status = \"DOWN\"", "status", ("ONLINE", "OFFLINE_HARD")),
        ("use_ssl = 3", "use_ssl", ("true/false or 0/1",)),
        ("max_connections = -5", "max_connections", ("out of range",)),
        ("compression = 200000", "compression", ("0..102400",)),
        ("hostgroup = 5", "hostgroup", ("duplicate",)),  # alias given with hostgroup_id
        ("gtid_port = 3307", "gtid_port", ("not supported", "session tracking", "only 0")),
    ],
)
def test_error_bad_server_values(tmp_path: Path, snippet: str, key: str, words: tuple[str, ...]) -> None:
    text = BASE.replace('hostname = "10.0.0.2"', 'hostname = "10.0.0.2"\n' + snippet)
    err, path = config_error(tmp_path, text)
    assert_error(err, path, line_of(text, snippet), f"mysql_servers[1].{key}", *words)


def test_error_server_missing_hostname(tmp_path: Path) -> None:
    text = "[[mysql_servers]]\nhostgroup_id = 0\nhostname = \"a\"\n\n[[mysql_servers]]\nhostgroup_id = 1\nport = 3306\n"
    err, path = config_error(tmp_path, text)
    assert_error(err, path, 5, "mysql_servers[1]", "required key 'hostname'")


def test_error_server_hostname_with_port(tmp_path: Path) -> None:
    text = "[[mysql_servers]]\nhostgroup_id = 0\nhostname = \"db:3306\"\n"
    err, path = config_error(tmp_path, text)
    assert_error(err, path, 3, "mysql_servers[0].hostname", "put the port in 'port'")


def test_unix_socket_server(tmp_path: Path) -> None:
    """ProxySQL's convention: port 0 and a path as hostname connect over a Unix socket."""
    text = "[[mysql_servers]]\nhostgroup_id = 0\nhostname = \"/run/mysqld/mysqld.sock\"\nport = 0\n"
    path = tmp_path / "myrouter.toml"
    path.write_text(text)
    (server,) = load_config(path).mysql_servers
    assert (server.hostname, server.port) == ("/run/mysqld/mysqld.sock", 0)


@pytest.mark.parametrize(
    ("snippet", "words"),
    [
        ('hostname = "/run/mysqld/mysqld.sock"\nport = 3306', ("Unix socket path", "port = 0")),
        ('hostname = "/run/mysqld/mysqld.sock"', ("Unix socket path", "port = 0")),
        ('hostname = "/' + "d" * 120 + '.sock"\nport = 0', ("longer than 107 bytes",)),
    ],
)
def test_error_unix_socket_server(tmp_path: Path, snippet: str, words: tuple[str, ...]) -> None:
    text = "[[mysql_servers]]\nhostgroup_id = 0\n" + snippet + "\n"
    err, path = config_error(tmp_path, text)
    assert_error(err, path, 3, "mysql_servers[0].hostname", *words)


def test_error_duplicate_server(tmp_path: Path) -> None:
    text = BASE + """
[[mysql_servers]]
hostgroup_id = 1
hostname = "10.0.0.2"
port = 3306
"""
    err, path = config_error(tmp_path, text)
    assert_error(err, path, line_of(text, "[[mysql_servers]]", 3), "mysql_servers[2]", "duplicate server",
                 f"mysql_servers[1] (line {line_of(text, '[[mysql_servers]]', 2)})")


def test_same_host_in_two_hostgroups_is_not_a_duplicate(tmp_path: Path) -> None:
    text = BASE + "\n[[mysql_servers]]\nhostgroup_id = 1\nhostname = \"10.0.0.1\"\n"
    assert len(load_config(write(tmp_path, text)).mysql_servers) == 3


def test_error_mysql_servers_not_an_array(tmp_path: Path) -> None:
    text = "[mysql_servers]\nhostgroup_id = 0\nhostname = \"x\"\n"
    err, path = config_error(tmp_path, text)
    assert_error(err, path, 1, "mysql_servers", "[[mysql_servers]]")


def test_error_mysql_users_scalar(tmp_path: Path) -> None:
    text = "rules_dir = \"rules\"\nmysql_users = \"app\"\n"
    (tmp_path / "rules").mkdir()
    err, path = config_error(tmp_path, text)
    assert_error(err, path, 2, "mysql_users", "array of tables", "a string")


def test_error_mysql_query_rules_not_tables(tmp_path: Path) -> None:
    text = "mysql_query_rules = [1, 2]\n"
    err, path = config_error(tmp_path, text)
    assert_error(err, path, 1, "mysql_query_rules", "array of tables")


def test_error_variables_not_a_table(tmp_path: Path) -> None:
    text = "mysql_variables = 3\n"
    err, path = config_error(tmp_path, text)
    assert_error(err, path, 1, "mysql_variables", "expected a table")


def test_error_duplicate_username(tmp_path: Path) -> None:
    text = BASE + """
[[mysql_users]]
username = "app"
password = "other"
"""
    err, path = config_error(tmp_path, text)
    first = line_of(text, 'username = "app"')
    assert_error(err, path, line_of(text, 'username = "app"', 2), "mysql_users[1].username",
                 "duplicate user 'app'", f"mysql_users[0] (line {first})")


def test_error_duplicate_backend_row(tmp_path: Path) -> None:
    text = BASE + """
[[mysql_users]]
username = "app"
frontend = 0
"""
    err, path = config_error(tmp_path, text)
    assert_error(err, path, line_of(text, 'username = "app"', 2), "mysql_users[1].username", "backend row")


def test_error_default_hostgroup_without_server(tmp_path: Path) -> None:
    text = BASE + """
[[mysql_users]]
username = "lost"
default_hostgroup = 7
"""
    err, path = config_error(tmp_path, text)
    assert_error(err, path, line_of(text, "default_hostgroup = 7"), "mysql_users[1].default_hostgroup",
                 "user 'lost'", "default_hostgroup 7", "no server", "not a replication hostgroup",
                 "known hostgroups: 0, 1")


def test_error_default_hostgroup_implicit_zero(tmp_path: Path) -> None:
    text = "[[mysql_servers]]\nhostgroup_id = 1\nhostname = \"x\"\n\n[[mysql_users]]\nusername = \"u\"\n"
    err, path = config_error(tmp_path, text)
    # default_hostgroup not written: the row's header line.
    assert_error(err, path, 5, "mysql_users[0].default_hostgroup", "default_hostgroup 0")


@pytest.mark.parametrize("password", ["*abc", "*" + "Z" * 40, NATIVE_HASH + "F"])
def test_error_bad_native_hash(tmp_path: Path, password: str) -> None:
    text = BASE.replace('password = "secret"', f'password = "{password}"')
    err, path = config_error(tmp_path, text)
    assert_error(err, path, line_of(text, "password = "), "mysql_users[0].password", "40 hex digits")


@pytest.mark.parametrize("password", ["$ED$", "$ED$abc", "$ed$" + "A" * 44, "$ED$" + "!" * 43])
def test_error_bad_ed25519_key(tmp_path: Path, password: str) -> None:
    text = BASE.replace('password = "secret"', f'password = "{password}"')
    err, path = config_error(tmp_path, text)
    assert_error(err, path, line_of(text, "password = "), "mysql_users[0].password", "43 base64 characters")


def test_ed25519_key_password_accepted(tmp_path: Path) -> None:
    key = "$ED$ZIgUREUg5PVgQ6LskhXmO+eZLS0nC8be6HPjYWR4YJY"  # MariaDB's ed25519_password("secret")
    cfg = load_config(write(tmp_path, BASE.replace('password = "secret"', f'password = "{key}"')))
    assert cfg.mysql_users[0].password == key


@pytest.mark.parametrize(
    ("snippet", "key", "words"),
    [
        ("pool_mode = \"connection\"", "pool_mode", ("transaction", "session", "statement")),
        ("causal_reads = \"on\"", "causal_reads", ("off", "global")),
        ("attributes = \"{not json\"", "attributes", ("JSON",)),
        ("attributes = \"[1]\"", "attributes", ("JSON object",)),
        ("attributes = '{\"spiffe_id\": \"x\"}'", "attributes", ("['spiffe_id']", "not supported")),
        ("schema_locked = 1", "schema_locked", ("not supported", "only 0")),
        ("username = \"\"", "username", ("must not be empty",)),
        ("active = 2", "active", ("true/false or 0/1",)),
        ("default_hostgroup = -1", "default_hostgroup", ("out of range",)),
    ],
)
def test_error_bad_user_values(tmp_path: Path, snippet: str, key: str, words: tuple[str, ...]) -> None:
    # The snippet replaces the user's line for that key, or is appended to the row.
    lines = [ln for ln in BASE.splitlines() if not ln.startswith(f"{key} = ")]
    text = "\n".join(lines) + "\n" + snippet + "\n"
    err, path = config_error(tmp_path, text)
    assert_error(err, path, line_of(text, snippet), f"mysql_users[0].{key}", *words)


def test_error_user_neither_frontend_nor_backend(tmp_path: Path) -> None:
    text = BASE + "frontend = 0\nbackend = false\n"
    err, path = config_error(tmp_path, text)
    assert_error(err, path, line_of(text, "frontend = 0"), "mysql_users[0].frontend", "frontend or backend")


def test_error_admin_default_credentials_exposed(tmp_path: Path) -> None:
    text = '[admin_variables]\nmysql_ifaces = "0.0.0.0:6032"\nadmin_credentials = "admin:admin;radmin:radmin"\n'
    err, path = config_error(tmp_path, text)
    assert_error(err, path, 3, "admin_variables.admin_credentials",
                 "admin interface on a non-loopback address must not use the default credentials")


def test_error_admin_default_credentials_implicit(tmp_path: Path) -> None:
    # admin_credentials not written: the default admin:admin; the error points at mysql_ifaces.
    text = '[admin_variables]\nmysql_ifaces = "127.0.0.1:6032;10.1.2.3:6032"\n'
    err, path = config_error(tmp_path, text)
    assert_error(err, path, 2, "admin_variables.mysql_ifaces", "must not use the default credentials",
                 "10.1.2.3:6032")


@pytest.mark.parametrize(
    ("snippet", "key", "words"),
    [
        ("admin_credentials = \"admin\"", "admin_credentials", ("user:password",)),
        ("stats_credentials = \"stats:\"", "stats_credentials", ("empty password",)),
        ("mysql_ifaces = \"localhost\"", "mysql_ifaces", ("host:port",)),
        ("restapi_port = 70000", "restapi_port", ("out of range",)),
        ("restapi_enabled = \"true\"", "restapi_enabled", ("true/false or 0/1",)),
    ],
)
def test_error_bad_admin_values(tmp_path: Path, snippet: str, key: str, words: tuple[str, ...]) -> None:
    text = "[admin_variables]\n" + snippet + "\n"
    err, path = config_error(tmp_path, text)
    assert_error(err, path, 2, f"admin_variables.{key}", *words)


def test_error_listener_port_conflict(tmp_path: Path) -> None:
    text = '[mysql_variables]\ninterfaces = "0.0.0.0:7000"\n\n[admin_variables]\nmysql_ifaces = "127.0.0.1:7000"\n'
    err, path = config_error(tmp_path, text)
    assert_error(err, path, 5, "admin_variables.mysql_ifaces", "port 7000", "mysql_variables.interfaces")


def test_error_restapi_port_conflict(tmp_path: Path) -> None:
    text = '[admin_variables]\nrestapi_port = 6032\n'
    err, path = config_error(tmp_path, text)
    assert_error(err, path, 2, "admin_variables.restapi_port", "port 6032")


def test_listeners_on_port_zero_do_not_conflict(tmp_path: Path) -> None:
    text = ('[mysql_variables]\ninterfaces = "127.0.0.1:0"\n[admin_variables]\nmysql_ifaces = "127.0.0.1:0"\n'
            "restapi_port = 0\n")
    config = load_config(write(tmp_path, text))
    assert config.mysql_variables.listen_addresses() == [("127.0.0.1", 0)]


@pytest.mark.parametrize(
    ("snippet", "key", "words"),
    [
        ("reader_hostgroup = 0", "reader_hostgroup", ("must differ",)),
        ("reader_hostgroup = 1\ncheck_type = \"read-only\"", "check_type", ("read_only|innodb_read_only",)),
        ("reader_hostgroup = -1", "reader_hostgroup", ("out of range",)),
        ("reader_hostgroup = 1\ncolor = 1", "color", ("unknown key",)),
    ],
)
def test_error_bad_replication_hostgroups(tmp_path: Path, snippet: str, key: str, words: tuple[str, ...]) -> None:
    text = BASE + "\n[[mysql_replication_hostgroups]]\nwriter_hostgroup = 0\n" + snippet + "\n"
    err, path = config_error(tmp_path, text)
    needle = snippet.splitlines()[-1]
    assert_error(err, path, line_of(text, needle), f"mysql_replication_hostgroups[0].{key}", *words)


def test_error_replication_missing_reader(tmp_path: Path) -> None:
    text = BASE + "\n[[mysql_replication_hostgroups]]\nwriter_hostgroup = 0\n"
    err, path = config_error(tmp_path, text)
    assert_error(err, path, line_of(text, "[[mysql_replication_hostgroups]]"), "mysql_replication_hostgroups[0]",
                 "required key 'reader_hostgroup'")


def test_error_replication_reader_reused(tmp_path: Path) -> None:
    text = BASE + """
[[mysql_replication_hostgroups]]
writer_hostgroup = 0
reader_hostgroup = 1

[[mysql_replication_hostgroups]]
writer_hostgroup = 2
reader_hostgroup = 1
"""
    err, path = config_error(tmp_path, text)
    assert_error(err, path, line_of(text, "reader_hostgroup = 1", 2), "mysql_replication_hostgroups[1].reader_hostgroup",
                 "already the reader_hostgroup of mysql_replication_hostgroups[0]")


def test_check_type_normalized(tmp_path: Path) -> None:
    text = BASE + '\n[[mysql_replication_hostgroups]]\nwriter_hostgroup = 0\nreader_hostgroup = 1\n' \
                  'check_type = "READ_ONLY&INNODB_READ_ONLY"\n'
    (row,) = load_config(write(tmp_path, text)).mysql_replication_hostgroups
    assert row.check_type == "read_only&innodb_read_only"


def test_error_rules_dir_missing_when_set(tmp_path: Path) -> None:
    text = 'rules_dir = "no-such-dir"\n'
    err, path = config_error(tmp_path, text)
    assert_error(err, path, 1, "rules_dir", "does not exist")


def test_error_rules_dir_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "rules").write_text("")
    err, path = config_error(tmp_path, "")
    assert_error(err, path, None, "rules_dir", "not a directory")


def test_error_syntax_error_through_load_config(tmp_path: Path) -> None:
    text = BASE + "\n[[mysql_users]]\nusername = app\n"
    err, path = config_error(tmp_path, text)
    assert_error(err, path, line_of(text, "username = app"), None, "invalid TOML")


def test_error_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert info.value.file == str(tmp_path / "nope.toml")


def test_exposed_default_stats_credentials_are_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = '[admin_variables]\nmysql_ifaces = "0.0.0.0:6032"\nadmin_credentials = "radmin:s3cret"\n'
    with caplog.at_level(logging.WARNING, logger="myrouter.config"):
        load_config(write(tmp_path, text))
    assert any("stats:stats" in r.getMessage() for r in caplog.records)


def test_config_pickles_for_worker_processes(tmp_path: Path) -> None:
    import pickle

    config = load_config(write(tmp_path, BASE + "\n[[mysql_query_rules]]\nrule_id = 1\n"))
    assert pickle.loads(pickle.dumps(config)) == config


# ---------------------------------------------------------------------------
# Every configuration error through the real command line: one line, exit 2
# ---------------------------------------------------------------------------

# A config the proxy could start from (no server needs to answer: every case fails first).
CLI_BASE = """\
[mysql_variables]
interfaces = "127.0.0.1:0"
server_version = "8.0.35"
monitor_enabled = false

[admin_variables]
mysql_ifaces = "127.0.0.1:0"
restapi_enabled = false

[[mysql_servers]]
hostgroup_id = 0
hostname = "127.0.0.1"
port = 9

[[mysql_users]]
username = "app"
password = "app"
default_hostgroup = 0
"""


def _myrouter() -> list[str]:
    """The installed ``myrouter`` console script (as an operator runs it), else ``python -m myrouter``."""
    import sys

    script = Path(sys.executable).parent / "myrouter"
    return [str(script)] if script.exists() else [sys.executable, "-m", "myrouter"]


def _run_serve(config: Path) -> "subprocess.CompletedProcess[str]":
    import subprocess

    return subprocess.run([*_myrouter(), "serve", "--config", str(config)], capture_output=True, text=True,
                          timeout=60, cwd=config.parent)


def _rule(rule_id: int, *lines: str) -> str:
    return "\n[[mysql_query_rules]]\n" + f"rule_id = {rule_id}\nactive = 1\n" + "".join(f"{x}\n" for x in lines)


# (config text added to CLI_BASE, {rules file name: text} in rules/, file that is wrong, needle on the
# wrong line, key in the message, words in the message)
CLI_CASES = {
    "rule in rules_dir names no configured hostgroup": (
        "", {"50-reads.toml": _rule(120, 'match_digest = "^SELECT"', "destination_hostgroup = 1")},
        "rules/50-reads.toml", "destination_hostgroup", "mysql_query_rules[0].destination_hostgroup",
        ("rule_id 120", "destination_hostgroup 1 is not a configured hostgroup"),
    ),
    "rule in the config file names no configured hostgroup": (
        _rule(7, "mirror_hostgroup = 3"), {}, "myrouter.toml", "mirror_hostgroup",
        "mysql_query_rules[0].mirror_hostgroup", ("rule_id 7", "mirror_hostgroup 3"),
    ),
    "bad regex in a rule": (
        "", {"10-a.toml": _rule(3, 'match_pattern = "^SELECT (a"')}, "rules/10-a.toml", "match_pattern",
        "mysql_query_rules[0].match_pattern", ("rule_id 3", "invalid regular expression"),
    ),
    "unknown column in a rule": (
        _rule(4, "destination_hostgrop = 0"), {}, "myrouter.toml", "destination_hostgrop",
        "mysql_query_rules[0].destination_hostgrop", ("unknown column",),
    ),
    "rule column of the wrong type": (
        "", {"10-a.toml": _rule(5, 'apply = "yes"')}, "rules/10-a.toml", "apply",
        "mysql_query_rules[0].apply", ("apply must be an integer",),
    ),
    "duplicate rule_id across the config file and rules_dir": (
        _rule(9), {"10-a.toml": _rule(8) + _rule(9)}, "rules/10-a.toml", "rule_id = 9",
        "mysql_query_rules[1].rule_id", ("rule_id 9 is defined twice", "myrouter.toml:"),
    ),
    "rules file with another table": (
        "", {"10-a.toml": "[mysql_variables]\nmax_connections = 5\n"}, "rules/10-a.toml", "[mysql_variables]",
        "mysql_variables", ("a rules file holds",),
    ),
    "rules file that is not TOML": (
        "", {"10-a.toml": _rule(1, "match_digest = = 1")}, "rules/10-a.toml", "match_digest = = 1",
        None, ("invalid TOML",),
    ),
    "unknown variable": (
        "", {}, "myrouter.toml", "max_conections", "mysql_variables.max_conections", ("unknown key",),
    ),
    "variable of the wrong type": (
        "", {}, "myrouter.toml", "max_connections", "mysql_variables.max_connections", ("expected an integer",),
    ),
    "user whose default_hostgroup has no server": (
        '\n[[mysql_users]]\nusername = "rep"\npassword = "x"\ndefault_hostgroup = 5\n', {}, "myrouter.toml",
        "default_hostgroup = 5", "mysql_users[1].default_hostgroup", ("default_hostgroup 5",),
    ),
    "replication hostgroup pair that is one hostgroup": (
        "\n[[mysql_replication_hostgroups]]\nwriter_hostgroup = 0\nreader_hostgroup = 0\n", {}, "myrouter.toml",
        "reader_hostgroup = 0", "mysql_replication_hostgroups[0].reader_hostgroup", ("must differ",),
    ),
    "ssl_p2s_ca file that does not load": (
        "", {}, "myrouter.toml", "ssl_p2s_ca", "mysql_variables.ssl_p2s_ca", ("No such file",),
    ),
    "datadir where the TLS files cannot be made": (
        "", {}, "myrouter.toml", "datadir", "datadir", ("TLS",),
    ),
    "replication hostgroup that is a writer and a reader": (
        "\n[[mysql_replication_hostgroups]]\nwriter_hostgroup = 0\nreader_hostgroup = 1\n"
        "\n[[mysql_replication_hostgroups]]\nwriter_hostgroup = 1\nreader_hostgroup = 2\n", {}, "myrouter.toml",
        "writer_hostgroup = 1", "mysql_replication_hostgroups[1].writer_hostgroup", ("already the reader_hostgroup",),
    ),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_config_error_is_one_line_naming_file_line_key(tmp_path: Path, case: str) -> None:
    extra, rule_files, bad_file, needle, key, words = CLI_CASES[case]
    text = CLI_BASE + extra
    if case == "unknown variable":
        text = text.replace("monitor_enabled = false\n", "monitor_enabled = false\nmax_conections = 10\n")
    if case == "variable of the wrong type":
        text = text.replace("monitor_enabled = false\n", 'monitor_enabled = false\nmax_connections = "10"\n')
    if case == "ssl_p2s_ca file that does not load":
        text = text.replace("monitor_enabled = false\n",
                            f'monitor_enabled = false\nssl_p2s_ca = "{tmp_path}/missing-ca.pem"\n')
    if case == "datadir where the TLS files cannot be made":  # /proc takes no new directory, even as root
        text = 'datadir = "/proc/myrouter-test-datadir"\n\n' + text.replace(
            "monitor_enabled = false\n", "monitor_enabled = false\nhave_ssl = true\n")
    (tmp_path / "rules").mkdir()
    for name, body in rule_files.items():
        (tmp_path / "rules" / name).write_text(body)
    config = tmp_path / "myrouter.toml"
    config.write_text(text)
    bad = tmp_path / bad_file
    line = line_of(bad.read_text(), needle)
    r = _run_serve(config)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    prefix = f"myrouter: configuration error: {bad}:{line}: " + (f"{key}: " if key else "")
    assert lines[0].startswith(prefix), (prefix, lines[0])
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_cli_explain_reports_a_bad_rule_the_same_way(tmp_path: Path) -> None:
    import subprocess

    config = tmp_path / "myrouter.toml"
    config.write_text(CLI_BASE + _rule(120, "destination_hostgroup = 1"))
    r = subprocess.run([*_myrouter(), "explain", "--config", str(config), "SELECT 1"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    line = line_of(config.read_text(), "destination_hostgroup = 1")
    assert r.stderr.strip() == (
        f"myrouter: configuration error: {config}:{line}: mysql_query_rules[0].destination_hostgroup: rule_id 120: "
        "destination_hostgroup 1 is not a configured hostgroup (known: 0)"
    )


def test_rules_in_config_file_and_rules_dir_load_together(tmp_path: Path) -> None:
    from myrouter.app import load_rules_for

    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "10-a.toml").write_text(_rule(2, "destination_hostgroup = 0"))
    config = load_config(write(tmp_path, CLI_BASE + _rule(1, 'match_digest = "^SELECT"')))
    rules = load_rules_for(config)
    assert [r.rule_id for r in rules.rules] == [1, 2]
    assert rules.rule(1).where() == f"{config.path}:{line_of(config.path.read_text(), '[[mysql_query_rules]]')}"


@pytest.mark.integration  # starts `myrouter serve` and logs in to its admin port
@pytest.mark.parametrize("where", ["rules_dir", "config file"])
def test_sighup_with_a_bad_rule_logs_one_line_and_keeps_the_running_config(tmp_path: Path, where: str) -> None:
    import signal
    import socket
    import subprocess
    import threading
    import time

    import pymysql

    from myrouter_testbed.mariadb import free_ports

    admin = free_ports(1)[0]
    base = CLI_BASE.replace('mysql_ifaces = "127.0.0.1:0"', f'mysql_ifaces = "127.0.0.1:{admin}"')
    (tmp_path / "rules").mkdir()
    rules_file = tmp_path / "rules" / "50-reads.toml"
    rules_file.write_text(_rule(120, "destination_hostgroup = 0"))
    config = tmp_path / "myrouter.toml"
    config.write_text(base)
    proc = subprocess.Popen([*_myrouter(), "serve", "--config", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, "".join(lines)
            try:
                socket.create_connection(("127.0.0.1", admin), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the admin port never opened"
                time.sleep(0.1)
        if where == "rules_dir":
            rules_file.write_text(_rule(120, "destination_hostgroup = 1"))
            bad, needle, key = rules_file, "destination_hostgroup = 1", "mysql_query_rules[0].destination_hostgroup"
        else:
            config.write_text(base + _rule(7, 'match_digest = "(unclosed"'))
            bad, needle, key = config, "match_digest", "mysql_query_rules[0].match_digest"
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while not any("reload refused" in x for x in lines):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            time.sleep(0.05)
        refused = [x for x in lines if "reload refused" in x]
        assert len(refused) == 1
        assert f"{bad}:{line_of(bad.read_text(), needle)}: {key}: " in refused[0], refused[0]
        assert "Traceback" not in "".join(lines)
        conn = pymysql.connect(host="127.0.0.1", port=admin, user="admin", password="admin", autocommit=True)
        with conn.cursor() as cur:  # the running rules are the old ones
            cur.execute("SELECT rule_id, destination_hostgroup FROM runtime_mysql_query_rules")
            assert cur.fetchall() == ((120, 0),)
        conn.close()
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()  # our own child, by its Popen handle
            proc.wait()
    reader.join(5)
    assert "Traceback" not in "".join(lines)
