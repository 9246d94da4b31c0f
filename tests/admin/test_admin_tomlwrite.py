"""SAVE ... TO DISK's TOML editing: values in place, comments and layout kept, atomic writes."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import tomlkit

from myrouter.admin.tomlwrite import TomlFile, append_rows, atomic_write, same_value, sync_rows, sync_variables

DOC = """\
# header comment

[[t]]
id = 1
name = "one"   # the first
flag = true

# about two
[[t]]
id = 2
re = '^SELECT\\s'
match_flags = [
    "a",   # why a
    "b",
]

# about three
[[t]]
id = 3

# about the section after the array
[section]
x = 1  # keep me
"""


def key(row):
    return row.get("id")


def rows(doc) -> list[dict]:
    return [dict(t) for t in tomllib.loads(tomlkit.dumps(doc))["t"]]


def test_unchanged_rows_leave_the_text_identical() -> None:
    doc = tomlkit.parse(DOC)
    sync_rows(doc, "t", [{"id": 1, "name": "one", "flag": 1}, {"id": 2, "re": "^SELECT\\s", "match_flags": "a,b"},
                         {"id": 3}], key, {})
    assert tomlkit.dumps(doc) == DOC  # 1 == true, 'a,b' == ["a", "b"]: nothing to write


def test_changed_values_keep_comments_and_style() -> None:
    doc = tomlkit.parse(DOC)
    sync_rows(doc, "t", [{"id": 1, "name": "uno", "flag": 0}, {"id": 2, "re": "^UPDATE\\s", "match_flags": "a,b,c"},
                         {"id": 3}], key, {})
    text = tomlkit.dumps(doc)
    assert 'name = "uno"   # the first' in text
    assert "flag = false" in text  # stays a boolean
    assert "re = '^UPDATE\\s'" in text  # stays a literal string
    assert rows(doc)[1]["match_flags"] == ["a", "b", "c"]
    for comment in ("# header comment", "# about two", "# about three", "# about the section after the array",
                    "x = 1  # keep me"):
        assert comment in text


def test_removed_rows_keep_the_comments_that_followed_them() -> None:
    for gone in (1, 2, 3):
        doc = tomlkit.parse(DOC)
        keep = [r for r in ({"id": 1, "name": "one", "flag": True}, {"id": 2, "re": "^SELECT\\s", "match_flags": "a,b"},
                            {"id": 3}) if r["id"] != gone]
        sync_rows(doc, "t", keep, key, {})
        text = tomlkit.dumps(doc)
        assert [r["id"] for r in rows(doc)] == [r["id"] for r in keep]
        assert "# about the section after the array" in text and "x = 1  # keep me" in text
        assert "# header comment" in text
        if gone != 3:
            assert "# about three" in text
    doc = tomlkit.parse(DOC)
    sync_rows(doc, "t", [], key, {})
    parsed = tomllib.loads(tomlkit.dumps(doc))
    assert "t" not in parsed and parsed["section"] == {"x": 1}


def test_new_rows_are_appended_after_the_last_one() -> None:
    doc = tomlkit.parse(DOC)
    new = sync_rows(doc, "t", [{"id": 1, "name": "one", "flag": True}, {"id": 4, "re": "a\\b"}], key, {"flag": True},
                    add_new=False)
    assert new == [{"id": 4, "re": "a\\b"}]
    append_rows(doc, "t", new, {})
    text = tomlkit.dumps(doc)
    assert [r["id"] for r in rows(doc)] == [1, 4]
    assert "re = 'a\\b'" in text  # backslashes: a literal string
    assert text.index("id = 4") < text.index("# about the section after the array") < text.index("[section]")
    append_rows(doc, "other", [{"k": 1}, {"k": 2}], {})
    assert tomllib.loads(tomlkit.dumps(doc))["other"] == [{"k": 1}, {"k": 2}]
    assert "\n\n\n" not in tomlkit.dumps(doc)


def test_defaults_and_null_columns() -> None:
    doc = tomlkit.parse("[[t]]\nid = 1\nweight = 5\nnote = \"x\"\n")
    # weight back to its default keeps its line; a NULL column (absent, no default) is removed;
    # a new non-default column is added, a new default one is not
    sync_rows(doc, "t", [{"id": 1, "status": "OFFLINE_SOFT", "mode": "a"}], key, {"weight": 1, "mode": "a"})
    assert tomlkit.dumps(doc) == '[[t]]\nid = 1\nweight = 1\nstatus = "OFFLINE_SOFT"\n'


def test_aliases_and_case_insensitive_keys() -> None:
    doc = tomlkit.parse('[[s]]\nhostgroup = 1\naddress = "h"\nport = 1\n[[r]]\nRULE_ID = 5\nflagin = 2\n')
    sync_rows(doc, "s", [{"hostgroup_id": 1, "hostname": "h", "port": 2}],
              lambda r: (r.get("hostgroup_id"), r.get("hostname")), {}, {"address": "hostname", "hostgroup": "hostgroup_id"})
    sync_rows(doc, "r", [{"rule_id": 5, "flagIN": 3}], lambda r: r.get("rule_id"), {}, casefold=True)
    assert tomlkit.dumps(doc) == '[[s]]\nhostgroup = 1\naddress = "h"\nport = 2\n[[r]]\nRULE_ID = 5\nflagin = 3\n'


def test_variables_update_in_place() -> None:
    doc = tomlkit.parse("[v]\n# limits\nMax_Connections = 10   # small\nthreads = 4\n\n# next\n[w]\n")
    sync_variables(doc, "v", {"max_connections": 20, "multiplexing": False, "interfaces": "x"},
                   {"max_connections": 2048, "multiplexing": True, "interfaces": "x", "threads": 1})
    text = tomlkit.dumps(doc)
    assert text == ("[v]\n# limits\nMax_Connections = 20   # small\nthreads = 1\nmultiplexing = false\n\n# next\n"
                    "[w]\n")
    doc = tomlkit.parse("[w]\n")
    sync_variables(doc, "v", {"a": 1}, {"a": 1})
    assert "[v]" not in tomlkit.dumps(doc)  # all defaults: no section needed


def test_same_value() -> None:
    assert same_value("active", True, 1) and same_value("active", 0, False) and not same_value("active", 2, True)
    assert same_value("match_flags", ["Get_Lock", "x"], "get_lock, x")
    assert same_value("digest", "0x00000000000000FF", 255)
    assert not same_value("port", 1, "1")


def test_atomic_write_keeps_mode_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("a = 1\n")
    os.chmod(path, 0o640)
    atomic_write(path, "a = 2\n")
    assert path.read_text() == "a = 2\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["c.toml"]


def test_toml_file_writes_only_on_change(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("# c\na = 1\n")
    f = TomlFile(path)
    assert not f.changed and not f.write()
    f.doc["a"] = 2
    assert f.changed and f.write() and path.read_text() == "# c\na = 2\n"
