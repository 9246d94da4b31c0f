"""Sans-I/O parts of [cluster]: key layout, module values, revision bookkeeping, candidates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from myrouter.admin.schema import COLUMNS
from myrouter.admin.validate import AdminValidationError
from myrouter.cluster.candidate import build_from_modules, module_tables
from myrouter.cluster.model import (
    MODULES,
    Book,
    ClusterValueError,
    KeyLayout,
    NodeInfo,
    decode_module,
    decode_node,
    encode_module,
    encode_node,
    group_events,
    hash_user_passwords,
    prefix_end,
)
from myrouter.config import load_config
from myrouter.routing.rules import rules_from_rows

APP_HASH = "*5BCB3E6AC345B435C7C2E6B7949A04CE6F6563D3"  # SELECT PASSWORD('app') on MariaDB


@pytest.fixture
def config(tmp_path: Path):
    (tmp_path / "rules").mkdir()
    path = tmp_path / "myrouter.toml"
    path.write_text('rules_dir = "rules"\n[mysql_variables]\ninterfaces = "127.0.0.1:7001"\n'
                    '[[mysql_servers]]\nhostgroup_id = 0\nhostname = "127.0.0.1"\nport = 3306\n'
                    '[[mysql_servers]]\nhostgroup_id = 1\nhostname = "127.0.0.1"\nport = 3307\n'
                    '[[mysql_users]]\nusername = "app"\npassword = "app"\n'
                    '[cluster]\netcd_endpoints = ["http://127.0.0.1:2379"]\nname = "prod"\n')
    return load_config(path)


def no_rules(config):
    return rules_from_rows([], "test", set(config.hostgroups()))


def test_key_layout_and_prefix_end() -> None:
    keys = KeyLayout("prod")
    assert keys.config_key("mysql_users") == b"/myrouter/prod/config/mysql_users"
    assert keys.node_key("a:6033") == b"/myrouter/prod/nodes/a:6033"
    assert keys.module_of(b"/myrouter/prod/config/mysql_users") == "mysql_users"
    assert keys.module_of(b"/myrouter/prod/config/other") is None
    assert keys.module_of(b"/myrouter/prod2/config/mysql_users") is None
    assert prefix_end(b"/myrouter/prod/") == b"/myrouter/prod0"
    assert prefix_end(b"a\xff") == b"b"


def test_passwords_are_hashed_once() -> None:
    rows = [("app", "app") + (None,) * 14, ("h", APP_HASH) + (None,) * 14, ("e", "") + (None,) * 14]
    hashed = hash_user_passwords(rows)
    assert [r[1] for r in hashed] == [APP_HASH, APP_HASH, ""]


def test_module_tables_hash_passwords_and_keep_interfaces_local(config) -> None:
    tables = module_tables(config, no_rules(config), list(MODULES))
    assert [r[1] for r in tables["mysql_users"]["mysql_users"]] == [APP_HASH]
    names = {r[0] for r in tables["mysql_variables"]["global_variables"]}
    assert "mysql-interfaces" not in names and "mysql-max_connections" in names
    assert not any(n.startswith("admin-") for n in names)


def test_encode_decode_round_trip(config) -> None:
    tables = module_tables(config, no_rules(config), list(MODULES))
    for module, t in tables.items():
        decoded, writer = decode_module(module, encode_module(module, t, "node1"))
        assert writer == "node1"
        assert decoded == {name: [tuple(r) for r in rows] for name, rows in t.items()}


@pytest.mark.parametrize(("mutate", "words"), [
    (lambda b: b"{not json", "not JSON"),
    (lambda b: b"[1]", "not a JSON object"),
    (lambda b: _edit(b, format=2), "format 2"),
    (lambda b: _edit(b, module="mysql_servers"), "under the key of mysql_users"),
    (lambda b: _edit(b, instance=None), "'instance'"),
    (lambda b: _edit(b, tables={}), "'tables' must hold exactly mysql_users"),
    (lambda b: _edit_table(b, columns=["username"]), "columns"),
    (lambda b: _edit_table(b, rows=[["app"]]), "mysql_users row 1: expected a list of"),
    (lambda b: _edit_row(b, 2, {"x": 1}), "active: expected a string, a number or null"),
    (lambda b: _edit_row(b, 1, "app"), "clear-text passwords are refused"),
])
def test_malformed_values_are_refused(config, mutate, words) -> None:
    good = encode_module("mysql_users", module_tables(config, no_rules(config), ["mysql_users"])["mysql_users"], "n")
    with pytest.raises(ClusterValueError) as err:
        decode_module("mysql_users", mutate(good))
    assert words in str(err.value)


def _edit(data: bytes, **changes) -> bytes:
    body = json.loads(data)
    body.update(changes)
    return json.dumps(body).encode()


def _edit_table(data: bytes, **changes) -> bytes:
    body = json.loads(data)
    body["tables"]["mysql_users"].update(changes)
    return json.dumps(body).encode()


def _edit_row(data: bytes, column: int, value) -> bytes:
    body = json.loads(data)
    body["tables"]["mysql_users"]["rows"][0][column] = value
    return json.dumps(body).encode()


def test_shared_variables_refuse_local_ones(config) -> None:
    tables = module_tables(config, no_rules(config), ["mysql_variables"])["mysql_variables"]
    tables["global_variables"].append(("mysql-interfaces", "0.0.0.0:1"))
    with pytest.raises(ClusterValueError, match="per instance"):
        decode_module("mysql_variables", encode_module("mysql_variables", tables, "n"))


def test_build_from_modules_lays_rows_over_the_running_config(config) -> None:
    rules = no_rules(config)
    tables = module_tables(config, rules, list(MODULES))
    rule = dict.fromkeys(COLUMNS["mysql_query_rules"])
    rule.update(rule_id=5, active=1, match_digest="^SELECT", destination_hostgroup=1, apply=1, flagIN=0,
                negate_match_pattern=0, re_modifiers="CASELESS", attributes="")
    tables["mysql_query_rules"] = {"mysql_query_rules": [tuple(rule.values())]}
    tables["mysql_variables"]["global_variables"] = [("mysql-max_connections", "77")]
    new, new_rules = build_from_modules(config, rules, tables)
    assert [r.rule_id for r in new_rules.rules] == [5]
    assert new.mysql_variables.max_connections == 77
    assert new.mysql_variables.interfaces == "127.0.0.1:7001"  # this instance's own
    assert new.mysql_users[0].password == APP_HASH
    assert new.cluster == config.cluster


def test_build_from_modules_refuses_a_rule_to_a_missing_hostgroup(config) -> None:
    rule = dict.fromkeys(COLUMNS["mysql_query_rules"])
    rule.update(rule_id=5, active=1, match_digest="^SELECT", destination_hostgroup=99, apply=1, flagIN=0,
                negate_match_pattern=0, re_modifiers="CASELESS", attributes="")
    with pytest.raises(AdminValidationError, match="rule_id=5.*99"):
        rows = {"mysql_query_rules": [tuple(rule.values())]}
        build_from_modules(config, no_rules(config), {"mysql_query_rules": rows})


def test_book_tracks_seen_applied_and_refused() -> None:
    book = Book()
    assert book.compares(["mysql_users"]) == {"mysql_users": 0}
    for m in MODULES:
        book.applied(m, 5, "a", 1.0)
    assert book.processed(dict.fromkeys(MODULES, 5)) and book.status() == "in sync"
    assert not book.processed({**dict.fromkeys(MODULES, 5), "mysql_users": 7})
    book.refuse("mysql_users", 7, "bad")
    assert book.compares(["mysql_users"]) == {"mysql_users": 7}  # a LOAD may overwrite the bad value
    assert book.modules["mysql_users"].applied == 5
    assert book.processed({**dict.fromkeys(MODULES, 5), "mysql_users": 7})  # refused counts as processed
    assert book.status() == "refused mysql_users revision 7"
    assert book.modules["mysql_users"].status == "refused revision 7: bad"
    book.applied("mysql_users", 9, "b", 2.0)
    assert book.modules["mysql_users"].status == "in sync"
    book.deleted("mysql_users", 10)
    assert book.compares(["mysql_users"]) == {"mysql_users": 0}


def test_group_events_by_revision() -> None:
    events = [(8, "mysql_users", False, b"u"), (7, "mysql_servers", False, b"s"), (8, "mysql_servers", True, b"")]
    assert group_events(events) == [(7, {"mysql_servers": b"s"}), (8, {"mysql_users": b"u", "mysql_servers": None})]


def test_node_round_trip_and_malformed_heartbeat() -> None:
    node = NodeInfo("a", "127.0.0.1:6033", 12.5, {"mysql_users": 3}, "in sync")
    assert decode_node(encode_node(node), "a") == node
    assert decode_node(b"garbage", "b").status == "malformed heartbeat value"
