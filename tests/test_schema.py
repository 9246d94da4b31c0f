"""The configuration schema (myrouter.schema): one place for every row's and variable's type,
default and range, used by the TOML loader, the admin interface and the query rules."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import ValidationError

from myrouter.admin.rows import config_tables, variables_from_rows
from myrouter.admin.validate import AdminValidationError, Candidate, build_config
from myrouter.config import load_config
from myrouter.routing.rules import COLUMNS, QueryRule
from myrouter.schema import (
    ADMIN_COMPAT_VARIABLES,
    MYSQL_COMPAT_VARIABLES,
    AdminVariables,
    MySQLVariables,
    SchemaError,
    ServerConfig,
    UserConfig,
    bounds,
    column_names,
    field_type,
    from_text,
    validate,
)
from myrouter.routing.query_rules.columns import QueryRuleColumns

VARIABLE_CLASSES = (MySQLVariables, AdminVariables)


def test_rows_built_in_code_are_validated_too() -> None:
    with pytest.raises(ValidationError):
        MySQLVariables(max_connections=0)
    with pytest.raises(ValidationError):
        dataclasses.replace(ServerConfig(0, "db"), port=70000)
    with pytest.raises(ValidationError):
        UserConfig(username="u", active=2)


@pytest.mark.parametrize(("values", "key", "message"), [
    ({"hostgroup_id": 0, "hostname": "db", "port": "3306"}, "port", "expected an integer, got a string"),
    ({"hostgroup_id": 0, "hostname": "db", "port": 3306.0}, "port", "expected an integer, got a float"),
    ({"hostgroup_id": True, "hostname": "db"}, "hostgroup_id", "expected an integer, got a boolean"),
    ({"hostgroup_id": 0, "hostname": "db", "use_ssl": "true"}, "use_ssl", "expected true/false or 0/1, got a string"),
    ({"hostgroup_id": 0, "hostname": "db", "use_ssl": 2}, "use_ssl", "expected true/false or 0/1, got 2"),
    ({"hostgroup_id": 0, "hostname": 5}, "hostname", "expected a string, got an integer"),
])
def test_no_value_is_coerced(values: dict, key: str, message: str) -> None:
    with pytest.raises(SchemaError) as info:
        validate(ServerConfig, values, table="mysql_servers")
    assert (info.value.key, info.value.message) == (key, message)


@pytest.mark.parametrize("cls", VARIABLE_CLASSES)
def test_range_messages_are_the_fields_own_ranges(cls: type) -> None:
    checked = 0
    for name in column_names(cls):
        if field_type(cls, name) is not int:
            continue
        lo, hi = bounds(cls, name)
        assert lo is not None, name  # every integer variable has a lower bound
        with pytest.raises(SchemaError) as info:
            validate(cls, {name: lo - 1})
        assert info.value.key == name
        bound = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        assert info.value.message == f"value {lo - 1} out of range: must be {bound}", info.value.message
        if hi is not None:
            with pytest.raises(SchemaError) as info:
                validate(cls, {name: hi + 1})
            assert f"..{hi}" in info.value.message
        checked += 1
    assert checked >= (40 if cls is MySQLVariables else 3)


@pytest.mark.parametrize("cls", VARIABLE_CLASSES)
def test_every_variable_reads_back_from_its_admin_text(cls: type) -> None:
    """global_variables holds text; the schema's field type reads each default back as itself."""
    prefix = "mysql-" if cls is MySQLVariables else "admin-"
    rows = cls().global_variables()
    for name, text in rows:
        short = name[len(prefix):]
        if short in column_names(cls):
            assert from_text(field_type(cls, short), text) == getattr(cls(), short), name
    typed = variables_from_rows(rows, prefix)[0 if cls is MySQLVariables else 1]
    assert validate(cls, {k: v for k, v in typed.items() if k in column_names(cls)}) == cls()


def test_query_rule_columns_are_the_schemas() -> None:
    assert COLUMNS == tuple(f.name for f in dataclasses.fields(QueryRuleColumns))
    assert issubclass(QueryRule, QueryRuleColumns)


def test_admin_errors_name_rows_not_lines_of_a_generated_file(tmp_path) -> None:
    """Admin rows are validated as they are: no TOML text is generated, so no line of one is quoted."""
    path = tmp_path / "myrouter.toml"
    path.write_text('[[mysql_servers]]\nhostgroup_id = 0\nhostname = "db"\n\n'
                    '[[mysql_users]]\nusername = "app"\npassword = "x"\n')
    config = load_config(path)
    tables = config_tables(config)
    server = tables["mysql_servers"][0]
    candidate = Candidate(tables["global_variables"], tables["global_variables"], [server, server], [],
                          tables["mysql_users"])
    with pytest.raises(AdminValidationError) as info:
        build_config(config, candidate)
    message = str(info.value)
    assert message.startswith("mysql_servers row (hostgroup_id=0, hostname='db', port=3306): duplicate server")
    assert "line" not in message


@pytest.mark.parametrize(("cls", "compat"), [(MySQLVariables, MYSQL_COMPAT_VARIABLES),
                                             (AdminVariables, ADMIN_COMPAT_VARIABLES)])
def test_no_variable_is_both_implemented_and_accepted_as_ignored(cls: type, compat: dict) -> None:
    """A name in the compatibility list is accepted and ignored: one the proxy implements must not be
    there too, or its configured value would be dropped (have_compress was, after the schema move)."""
    implemented = {f.name for f in dataclasses.fields(cls)}
    assert not implemented & set(compat)
