"""``make run`` (``python -m myrouter_testbed``): a local MariaDB primary + 2 replicas and the
proxy in front of them, until Ctrl-C.

It writes a configuration for the test bed's servers (``demo_config``: writer hostgroup 0,
reader hostgroup 1, replication hostgroups by ``read_only``) to ``run/myrouter.toml``, serves
it like ``myrouter serve`` does, and stops the MariaDB servers when the proxy stops.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from myrouter.__main__ import _setup_logging, run_proxy
from myrouter.config import load_config
from myrouter_testbed.mariadb import ensure_packages, start_cluster

REPO = Path(__file__).resolve().parent.parent  # the shipped query rules are in REPO / "rules"


def cmd_demo(args) -> int:
    """Start a local MariaDB primary + 2 replicas, write a config for them, and serve."""
    ensure_packages()
    print("demo: starting a MariaDB primary and 2 replicas (GTID replication)...", flush=True)
    cluster = start_cluster(replicas=2)
    try:
        run_dir = Path(args.run_dir).resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg_path = run_dir / "myrouter.toml"
        cfg_path.write_text(demo_config(cluster, rules_dir=REPO / "rules",
                                        port=args.port, admin_port=args.admin_port,
                                        metrics_port=args.metrics_port))
        config = load_config(cfg_path)

        def ready(proxy) -> None:
            host, port = proxy.listen_addresses[0]
            print(f"\nmyrouter is ready (config: {cfg_path})", flush=True)
            print(f"  primary  : 127.0.0.1:{cluster.primary.port} (hostgroup 0, writer)")
            for r in cluster.replicas:
                print(f"  replica  : 127.0.0.1:{r.port} (hostgroup 1, reader)")
            print(f"\nConnect with:\n  mariadb -h127.0.0.1 -P{port} -uapp -papp test\n")
            print("Stop with Ctrl-C.", flush=True)

        run_proxy(config, ready=ready)  # as `myrouter serve`: the host loop, plain statements on the data plane
    finally:
        print("demo: stopping MariaDB servers...", flush=True)
        cluster.stop()
    return 0


def demo_config(cluster, *, rules_dir: Path, port: int = 6033, admin_port: int = 6032,
                metrics_port: int = 6070, unix_sockets: bool = False) -> str:
    """A myrouter config for a test-bed cluster: writer hostgroup 0, reader hostgroup 1.
    With ``unix_sockets`` the proxy reaches the servers over their Unix sockets (port 0)."""

    def address(server) -> str:
        if unix_sockets:
            return f'hostname = "{server.socket}"\nport = 0'
        return f'hostname = "127.0.0.1"\nport = {server.port}'

    servers = [f"""
[[mysql_servers]]
hostgroup_id = 0
{address(cluster.primary)}
comment = "primary"
"""]
    for i, r in enumerate(cluster.replicas, 1):
        servers.append(f"""
[[mysql_servers]]
hostgroup_id = 1
{address(r)}
comment = "replica {i}"
""")
    return f"""# Written by `make run` (myrouter_testbed.demo) for its local MariaDB primary and replicas.
rules_dir = "{rules_dir}"

[mysql_variables]
interfaces = "127.0.0.1:{port}"
monitor_username = "monitor"
monitor_password = "monitor"
enable_load_data_local_infile = true

[admin_variables]
mysql_ifaces = "127.0.0.1:{admin_port}"
restapi_port = {metrics_port}
admin_credentials = "admin:admin"
{''.join(servers)}
[[mysql_users]]
username = "app"
password = "app"
default_hostgroup = 0
default_schema = "test"

[[mysql_replication_hostgroups]]
writer_hostgroup = 0
reader_hostgroup = 1
check_type = "read_only"
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m myrouter_testbed",
        description="Start a local MariaDB primary + 2 replicas and serve the proxy in front of them until Ctrl-C.",
    )
    parser.add_argument("--log-level", default="info", help="debug, info, warning, error (default: info)")
    parser.add_argument("--port", type=int, default=6033)
    parser.add_argument("--admin-port", type=int, default=6032)
    parser.add_argument("--metrics-port", type=int, default=6070, help="Prometheus /metrics port (default 6070)")
    parser.add_argument("--run-dir", default="run", help="where the generated config is written (default: ./run)")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="process log on stderr: text lines or one JSON object per line")
    args = parser.parse_args(argv)
    _setup_logging(args.log_level, args.log_format)
    return cmd_demo(args)


if __name__ == "__main__":
    raise SystemExit(main())
