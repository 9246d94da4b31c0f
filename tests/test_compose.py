"""compose/: the docker-compose file is valid and agrees with compose/myrouter.toml.

No Docker engine is needed: ``docker-compose config`` only parses, merges and
validates the file. The second half cross-checks the proxy's configuration
against the compose services and the init scripts that create the accounts.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from myrouter.config import load_config

REPO = Path(__file__).resolve().parent.parent
COMPOSE_DIR = REPO / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
MYROUTER_TOML = COMPOSE_DIR / "myrouter.toml"

MYSQL_SERVICES = {"mysql-primary", "mysql-replica1", "mysql-replica2"}
SERVICES = MYSQL_SERVICES | {"myrouter"}
CONFIG_IN_CONTAINER = "/etc/myrouter/myrouter.toml"


def compose_source() -> dict:
    """The compose file as written (anchors and merge keys resolved by the YAML loader)."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose_config() -> dict:
    """``docker-compose config`` output: what Compose itself makes of the file."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("the docker-compose binary is not installed (Debian package docker-compose)")
    proc = subprocess.run(
        [binary, "-f", str(COMPOSE_FILE), "config"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"docker-compose config failed:\n{proc.stderr}"
    parsed = yaml.safe_load(proc.stdout)
    assert isinstance(parsed, dict), proc.stdout
    return parsed


# ---------------------------------------------------------------------------
# (a) docker-compose config
# ---------------------------------------------------------------------------


def test_compose_config_has_the_four_services(compose_config: dict) -> None:
    assert set(compose_config["services"]) == SERVICES


def test_mysql_services(compose_config: dict) -> None:
    services = compose_config["services"]
    server_ids = set()
    for name in MYSQL_SERVICES:
        svc = services[name]
        assert svc["image"] == "mysql:8.4"
        args = svc["command"]
        assert "--gtid-mode=ON" in args and "--enforce-gtid-consistency=ON" in args
        ids = [a for a in args if a.startswith("--server-id=")]
        assert len(ids) == 1
        server_ids.add(ids[0])
        assert "healthcheck" in svc and svc["healthcheck"]["test"]
        # MySQL is reached through myrouter only: no published ports.
        assert "ports" not in svc
        for volume in svc["volumes"]:
            if "/docker-entrypoint-initdb.d/" in volume:
                assert Path(volume.split(":")[0]).is_file(), volume
    assert len(server_ids) == 3, "each server needs its own server-id"
    for replica in ("mysql-replica1", "mysql-replica2"):
        assert "--read-only=ON" in services[replica]["command"]
        assert services[replica]["depends_on"]["mysql-primary"]["condition"] == "service_healthy"
    assert "--read-only=ON" not in services["mysql-primary"]["command"]


def test_myrouter_service(compose_config: dict) -> None:
    svc = compose_config["services"]["myrouter"]
    assert svc["build"]["dockerfile"] == "compose/Dockerfile"
    assert Path(svc["build"]["context"]).resolve() == REPO
    assert svc["command"] == ["myrouter", "serve", "--config", CONFIG_IN_CONTAINER]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
    assert Path(mounts[CONFIG_IN_CONTAINER]).resolve() == MYROUTER_TOML
    published = {p.split(":")[0] for p in svc["ports"]}
    assert published == {"127.0.0.1"}, "ports must be published on loopback only"
    assert {p.rsplit(":", 1)[1] for p in svc["ports"]} >= {"6033/tcp", "6032/tcp"}
    assert svc["healthcheck"]["test"]
    for dependency in MYSQL_SERVICES:
        assert svc["depends_on"][dependency]["condition"] == "service_healthy"


# ---------------------------------------------------------------------------
# (b) compose/myrouter.toml agrees with the compose services
# ---------------------------------------------------------------------------


def test_myrouter_toml_servers_are_compose_services() -> None:
    config = load_config(MYROUTER_TOML)
    services = set(compose_source()["services"])
    hostnames = {s.hostname for s in config.mysql_servers}
    assert hostnames <= services
    assert hostnames == MYSQL_SERVICES
    assert all(s.port == 3306 for s in config.mysql_servers)
    (repl,) = config.mysql_replication_hostgroups
    assert [s.hostname for s in config.servers_in(repl.writer_hostgroup)] == ["mysql-primary"]
    assert {s.hostname for s in config.servers_in(repl.reader_hostgroup)} == {"mysql-replica1", "mysql-replica2"}


def test_myrouter_toml_listeners_match_published_ports() -> None:
    config = load_config(MYROUTER_TOML)
    svc = compose_source()["services"]["myrouter"]
    container_ports = {int(p.rsplit(":", 1)[1]) for p in svc["ports"]}
    listeners = config.mysql_variables.listen_addresses() + config.admin_variables.listen_addresses()
    for host, port in listeners:
        # Inside the container the proxy must listen on all addresses to be reachable.
        assert host == "0.0.0.0"
        assert port in container_ports
    if config.admin_variables.restapi_enabled:
        assert config.admin_variables.restapi_port in container_ports


def test_myrouter_toml_accounts_exist_in_init_scripts() -> None:
    """Users and the monitor account of myrouter.toml are created by compose/initdb with the same passwords."""
    config = load_config(MYROUTER_TOML)
    sql = "\n".join(p.read_text() for p in sorted((COMPOSE_DIR / "initdb").glob("*.sql")))
    created = dict(re.findall(r"CREATE USER '([^']+)'@'%' IDENTIFIED BY '([^']*)'", sql))
    assert config.mysql_users, "compose/myrouter.toml defines no user"
    for user in config.mysql_users:
        assert created.get(user.username) == user.password, user.username
    v = config.mysql_variables
    assert created.get(v.monitor_username) == v.monitor_password
    # The replicas replicate with the account the primary creates.
    source_user = re.search(r"SOURCE_USER\s*=\s*'([^']+)'", sql)
    source_password = re.search(r"SOURCE_PASSWORD\s*=\s*'([^']*)'", sql)
    assert source_user and source_password
    assert created.get(source_user.group(1)) == source_password.group(1)
    source_host = re.search(r"SOURCE_HOST\s*=\s*'([^']+)'", sql)
    assert source_host and source_host.group(1) == "mysql-primary"


def test_dockerfile_runs_the_mounted_config() -> None:
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.M)
    assert f'"{CONFIG_IN_CONTAINER}"' in dockerfile


# ---------------------------------------------------------------------------
# (c) the [cluster] overlay: etcd and two myrouter instances sharing it
# ---------------------------------------------------------------------------

CLUSTER_FILE = COMPOSE_DIR / "docker-compose.cluster.yml"
CLUSTER_TOML = COMPOSE_DIR / "myrouter-cluster.toml"


def test_cluster_overlay_runs_two_instances_on_one_etcd() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("the docker-compose binary is not installed (Debian package docker-compose)")
    proc = subprocess.run([binary, "-f", str(COMPOSE_FILE), "-f", str(CLUSTER_FILE), "config"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"docker-compose config failed:\n{proc.stderr}"
    services = yaml.safe_load(proc.stdout)["services"]
    assert set(services) == SERVICES | {"etcd", "myrouter2"}
    for name in ("myrouter", "myrouter2"):
        svc = services[name]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        assert Path(mounts[CONFIG_IN_CONTAINER]).resolve() == CLUSTER_TOML
        assert svc["depends_on"]["etcd"]["condition"] == "service_healthy"
        assert {p.split(":")[0] for p in svc["ports"]} == {"127.0.0.1"}
    ports = [p for name in ("myrouter", "myrouter2") for p in services[name]["ports"]]
    assert len({p.rsplit(":", 2)[-2] for p in ports}) == len(ports), "host ports must differ"


def test_cluster_toml_is_myrouter_toml_plus_cluster() -> None:
    base, shared = load_config(MYROUTER_TOML), load_config(CLUSTER_TOML)
    assert shared.cluster is not None and base.cluster is None
    assert shared.cluster.etcd_endpoints == ("http://etcd:2379",)
    assert "etcd" in yaml.safe_load(CLUSTER_FILE.read_text())["services"]
    for field in ("mysql_variables", "admin_variables", "mysql_servers", "mysql_users", "mysql_replication_hostgroups"):
        assert getattr(shared, field) == getattr(base, field), field
