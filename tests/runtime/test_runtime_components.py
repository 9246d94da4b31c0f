"""The runtime components (myrouter/runtime) on their own, and how the Proxy wires them: no
sockets, no servers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import trio

from myrouter.app import Proxy
from myrouter.admin.control import ProxyControl
from myrouter.config import load_config
from myrouter.protocol.errors import MySQLError
from myrouter.runtime.logs import Logs
from myrouter.runtime.sessions import SessionRegistry
from myrouter.runtime.topology import Topology

CONFIG = """\
rules_dir = "rules"

[mysql_variables]
interfaces = "127.0.0.1:16033"
server_version = "10.11.6-MariaDB"
{variables}

[admin_variables]
mysql_ifaces = "127.0.0.1:16032"
restapi_port = 16070

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
"""


def config(tmp_path: Path, variables: str = ""):
    (tmp_path / "rules").mkdir(exist_ok=True)
    path = tmp_path / "myrouter.toml"
    path.write_text(CONFIG.format(variables=variables))
    return load_config(path)


@dataclasses.dataclass
class Session:
    id: int
    username: str = "app"
    counted_user: bool = False


# -- SessionRegistry ---------------------------------------------------------------------


def test_a_session_that_ends_is_uncounted_from_its_user_and_from_max_connections():
    reg = SessionRegistry()
    a, b = Session(reg.next_session_id()), Session(reg.next_session_id())
    assert (a.id, b.id) == (1, 2)
    for s in (a, b):
        reg.add(s)
    a.counted_user = True  # a logged in (as the session does it)
    reg.user_sessions["app"] = 1
    reg.logged_in_sessions = 1
    assert reg.find(2) is b and len(reg) == 2
    reg.remove(a)
    assert reg.user_sessions == {"app": 0} and reg.logged_in_sessions == 0
    reg.remove(b)  # never logged in: nothing to uncount
    assert reg.user_sessions == {"app": 0} and reg.logged_in_sessions == 0 and reg.find(2) is None


async def test_a_drain_waits_for_the_last_session_to_leave():
    reg = SessionRegistry()
    s = Session(reg.next_session_id())
    reg.add(s)
    reg.draining = True
    left_at = []
    async with trio.open_nursery() as nursery:
        async def wait():
            await reg.wait_all_closed()
            left_at.append(trio.current_time())

        nursery.start_soon(wait)
        await trio.sleep(0.05)
        assert left_at == []
        reg.remove(s)
    assert len(left_at) == 1


async def test_a_drain_with_no_session_does_not_wait():
    reg = SessionRegistry()
    reg.draining = True
    with trio.fail_after(1):
        await reg.wait_all_closed()


# -- Topology ------------------------------------------------------------------------------


def test_replace_notifies_every_status_change_and_retires_removed_servers(tmp_path):
    cfg = config(tmp_path)
    topo = Topology(cfg)
    changes = []
    topo.on_status_change(lambda server, old: changes.append((server.port, old, server.status)))
    gone = topo.hostgroups.find(1, "127.0.0.1", 3307)
    gone.connections = 2  # still has connections when it leaves
    fewer = dataclasses.replace(cfg, mysql_servers=cfg.mysql_servers[:1])
    retired = topo.replace(lambda: topo.hostgroups.reconcile(fewer.mysql_servers, fewer.mysql_replication_hostgroups))
    assert retired == [gone] and gone.status == "OFFLINE_HARD"
    assert changes == [(3307, "ONLINE", "OFFLINE_HARD")]
    assert [s.port for s in topo.hostgroups.servers()] == [3306]
    assert topo.offline_servers(retired) == (set(), {gone})  # the admin's sweeper ends its sessions
    assert topo.offline_servers() == (set(), {gone}) and topo.retired == [gone]  # until it has no connection
    gone.connections = 0
    assert topo.offline_servers() == (set(), set()) and topo.retired == []


def test_a_server_leaving_online_forgets_what_causal_reads_knew_of_it(tmp_path):
    topo = Topology(config(tmp_path))
    replica = topo.hostgroups.find(1, "127.0.0.1", 3307)
    topo.gtid_applied[replica] = {0: 5}
    replica.set_admin_status("OFFLINE_SOFT", notify=False)
    topo.server_status_changed(replica, "ONLINE")
    assert replica not in topo.gtid_applied


def test_written_gtids_keep_the_newest_per_domain(tmp_path):
    topo = Topology(config(tmp_path))
    for gtid in ("0-1-5", "0-1-3", "1-2-7"):
        topo.note_written_gtid(gtid)
    assert topo.global_gtid() == "0-1-5,1-2-7"


# -- Logs -----------------------------------------------------------------------------------


def test_a_log_file_that_cannot_be_opened_refuses_the_change_and_leaves_nothing_open(tmp_path):
    running = config(tmp_path).mysql_variables
    logs = Logs(running)
    assert logs.query_log is None and logs.audit_log is None
    new = dataclasses.replace(running, eventslog_filename=str(tmp_path / "events.log"),
                              auditlog_filename=str(tmp_path / "no-such-dir" / "audit.log"))
    with pytest.raises(MySQLError, match="mysql-auditlog_filename"):
        logs.prepare(running, new)
    assert logs.query_log is None and logs.audit_log is None
    opened = logs.prepare(running, dataclasses.replace(new, auditlog_filename=""))
    logs.apply(opened, new)
    assert logs.query_log is not None and logs.query_log.max_bytes == new.eventslog_filesize
    logs.close()


# -- the Proxy's wiring -------------------------------------------------------------------


def test_the_sessions_see_a_runtime_change_through_their_services(tmp_path):
    """After apply_runtime, what the sessions read on their SessionServices (and the admin on the
    Proxy) is the components' new state."""
    cfg = config(tmp_path)
    proxy = Proxy(cfg)
    sv = proxy.services
    old_digester = sv.digester
    assert sv.plain_statements is True
    changed = dataclasses.replace(cfg, mysql_variables=dataclasses.replace(
        cfg.mysql_variables, query_digests_max_query_length=100, commands_stats=False,
        default_query_timeout=5000))
    assert proxy.apply_runtime(changed) == []
    assert sv.vars is proxy.vars is proxy.runtime_config.vars is changed.mysql_variables
    assert proxy.config is changed
    assert sv.digester is proxy.digester is proxy.runtime_config.digester is not old_digester
    assert sv.command_counters is proxy.command_counters and sv.command_counters.enabled is False
    assert sv.hostgroups is proxy.hostgroups is proxy.topology.hostgroups
    assert sv.rules is proxy.rules is proxy.runtime_config.rules
    # every statement now gets a deadline: no plain path, no data plane
    assert sv.plain_statements is proxy.plain_statements is False


def test_a_status_change_is_announced_by_the_topology(tmp_path):
    """A server's status change (here by the admin) reaches the topology's subscribers (the
    pools among them) through the hostgroups' policy, which the monitor wires to it."""
    proxy = Proxy(config(tmp_path))
    server = proxy.hostgroups.find(1, "127.0.0.1", 3307)
    asked = []
    proxy.topology.on_status_change(lambda s, old: asked.append((s.port, old, s.status)))
    server.set_admin_status("OFFLINE_SOFT")  # the policy notifies Topology.server_status_changed
    assert asked == [(3307, "ONLINE", "OFFLINE_SOFT")]


def test_offline_servers_with_connections_are_soft_or_hard_by_status(tmp_path):
    topo = Topology(config(tmp_path))
    writer = topo.hostgroups.find(0, "127.0.0.1", 3306)
    reader = topo.hostgroups.find(1, "127.0.0.1", 3307)
    writer.connections = reader.connections = 1
    assert topo.offline_servers() == (set(), set())  # ONLINE: nothing to release
    reader.set_admin_status("OFFLINE_SOFT", notify=False)
    writer.set_admin_status("OFFLINE_HARD", notify=False)
    assert topo.offline_servers() == ({reader}, {writer})
    reader.connections = 0
    assert topo.offline_servers() == (set(), {writer})


async def test_a_drain_is_seen_by_the_sessions_and_by_the_registry(tmp_path):
    """The sessions read ``services.draining`` after every statement (a plain attribute); the registry
    (and the audit trail through it) owns the flag."""
    proxy = Proxy(config(tmp_path))
    assert proxy.draining is False and proxy.services.draining is False
    await proxy.drain_and_stop(0.1)
    assert proxy.services.draining is True
    assert proxy.draining is True and proxy.session_registry.draining is True


def test_the_proxy_gives_the_admin_everything_its_control_protocol_names(tmp_path):
    """``admin/control.py`` writes down what the admin uses of the running proxy; ``app.Proxy`` must
    have all of it (no type checker runs in CI: this keeps the protocol and the proxy in step)."""
    proxy = Proxy(config(tmp_path))
    declared = set(ProxyControl.__annotations__)
    declared |= {name for name, value in vars(ProxyControl).items()
                 if not name.startswith("_") and (callable(value) or isinstance(value, property))}
    assert "apply_runtime" in declared and "config" in declared
    assert sorted(name for name in declared if not hasattr(proxy, name)) == []
