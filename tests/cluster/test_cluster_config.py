"""[cluster] in the TOML: validated with file:line errors like the other tables."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from myrouter.config import ClusterConfig, load_config
from myrouter.errors import ConfigError

BASE = """\
[[mysql_servers]]
hostgroup_id = 0
hostname = "127.0.0.1"
port = 3306
"""


def load(tmp_path: Path, cluster: str):
    path = tmp_path / "myrouter.toml"
    path.write_text(BASE + "\n[cluster]\n" + textwrap.dedent(cluster))
    return load_config(path), path


def error(tmp_path: Path, cluster: str) -> tuple[ConfigError, Path]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, cluster)
    return info.value, tmp_path / "myrouter.toml"


def test_without_cluster_table_there_is_no_cluster(tmp_path: Path) -> None:
    path = tmp_path / "myrouter.toml"
    path.write_text(BASE)
    assert load_config(path).cluster is None


def test_cluster_table_is_loaded(tmp_path: Path) -> None:
    config, _ = load(tmp_path, """\
        etcd_endpoints = ["http://127.0.0.1:2379", "http://127.0.0.1:22379/"]
        name = "prod"
        instance = "proxy-a:6033"
        etcd_username = "myrouter"
        etcd_password = "secret"
        """)
    assert config.cluster == ClusterConfig(("http://127.0.0.1:2379", "http://127.0.0.1:22379"), "prod",
                                           "proxy-a:6033", etcd_username="myrouter", etcd_password="secret")


@pytest.mark.parametrize(("body", "key", "words"), [
    ('name = "prod"\n', "cluster", "'etcd_endpoints' is missing"),
    ('etcd_endpoints = []\nname = "prod"\n', "cluster.etcd_endpoints", "non-empty array"),
    ('etcd_endpoints = ["127.0.0.1:2379"]\nname = "prod"\n', "cluster.etcd_endpoints", "not an etcd URL"),
    ('etcd_endpoints = ["http://a:1", "https://b:2"]\nname = "prod"\n', "cluster.etcd_endpoints", "same scheme"),
    ('etcd_endpoints = ["http://a:1"]\n', "cluster", "'name' is missing"),
    ('etcd_endpoints = ["http://a:1"]\nname = "a/b"\n', "cluster.name", "key prefix"),
    ('etcd_endpoints = ["http://a:1"]\nname = "p"\netcd_cert = "/nonexistent.pem"\n', "cluster.etcd_cert",
     "does not exist"),
    ('etcd_endpoints = ["http://a:1"]\nname = "p"\netcd_password = "x"\n', "cluster.etcd_password",
     "without etcd_username"),
    ('etcd_endpoints = ["http://a:1"]\nname = "p"\nheartbeat = 3\n', "cluster.heartbeat", "unknown key"),
])
def test_bad_cluster_table_names_file_line_and_key(tmp_path: Path, body: str, key: str, words: str) -> None:
    err, path = error(tmp_path, body)
    assert err.file == str(path) and err.line is not None
    assert err.key == key, str(err)
    assert words in str(err)


def test_tls_files_need_https_and_go_together(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    err, _ = error(tmp_path, f'etcd_endpoints = ["http://a:1"]\nname = "p"\netcd_ca = "{cert}"\n')
    assert "only used with https://" in str(err)
    err, _ = error(tmp_path, f'etcd_endpoints = ["https://a:1"]\nname = "p"\netcd_cert = "{cert}"\n')
    assert "etcd_key is missing" in str(err)
    config, _ = load(tmp_path, f'etcd_endpoints = ["https://a:1"]\nname = "p"\netcd_ca = "cert.pem"\n')
    assert config.cluster.etcd_ca == str(cert)  # relative to the config file
