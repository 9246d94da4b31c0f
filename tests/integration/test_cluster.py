"""[cluster]: three myrouter instances sharing their configuration through a real 3-member etcd.

etcd comes from myrouter_testbed.etcd (Debian's etcd-server binary, members on free loopback
ports, temporary data directories); MariaDB from the session's test bed. Each test uses its own
cluster ``name`` (key prefix), so the tests share one etcd without seeing each other.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from myrouter_testbed.mariadb import ClusterError, free_ports
from myrouter_testbed.etcd import EtcdCluster, find_etcd, start_etcd

from conftest import RunningProxy, admin_sql, render_config, toml_value, wait_for

try:
    find_etcd()
except ClusterError as exc:  # etcd-server not installed: scripts/bootstrap.sh installs it
    pytest.skip(f"etcd test bed unavailable: {exc}", allow_module_level=True)

#: routes SELECT @@server_id to the replicas (hostgroup 1); without it everything goes to the primary
RULE = ("INSERT INTO mysql_query_rules (rule_id, active, match_digest, destination_hostgroup, apply) "
        "VALUES ({id}, 1, '^SELECT @@server_id', 1, 1)")


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdCluster]:
    with start_etcd(3) as e:
        yield e


class Instances:
    """myrouter instances of one cluster name, on the session's MariaDB test bed."""

    def __init__(self, cluster, tmp_path: Path, etcd: EtcdCluster, name: str, no_rules: Path) -> None:
        self.cluster, self.tmp_path, self.etcd, self.name, self.no_rules = cluster, tmp_path, etcd, name, no_rules
        self.running: list[RunningProxy] = []

    def config_path(self, index: int, **kw) -> Path:
        path = self.tmp_path / f"node{index}.toml"
        if not path.exists():
            port = free_ports(1)[0]
            text = render_config(self.cluster, port=port, rules_dir=self.no_rules, **kw)
            text += "\n[cluster]\n" + f"etcd_endpoints = [{', '.join(toml_value(e) for e in self.etcd.endpoints)}]\n"
            text += f"name = {toml_value(self.name)}\ninstance = \"node{index}\"\n"
            path.write_text(text)
        return path

    def start(self, index: int, **kw) -> RunningProxy:
        rp = RunningProxy(self.config_path(index, **kw)).start()
        self.running.append(rp)
        return rp

    def stop(self, rp: RunningProxy) -> None:
        self.running.remove(rp)
        rp.stop()


@pytest.fixture
def instances(cluster, tmp_path, etcd, no_rules, request) -> Iterator[Instances]:
    inst = Instances(cluster, tmp_path, etcd, request.node.name.replace("[", "_").replace("]", ""), no_rules)
    yield inst
    for rp in list(inst.running):
        rp.stop()


def server_id(rp: RunningProxy) -> int:
    conn = rp.connect(autocommit=True)  # autocommit off would be a transaction: on the writer
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@server_id")
            return cur.fetchone()[0]
    finally:
        conn.close()


def revisions(rp: RunningProxy) -> dict[str, tuple[int, str]]:
    rows = admin_sql(rp, "SELECT module, revision, status FROM runtime_cluster")
    return {m: (rev, status) for m, rev, status in rows}


def etcd_post(etcd: EtcdCluster, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"{etcd.endpoints[0]}/v3/{path}", data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def etcd_get(etcd: EtcdCluster, key: str) -> dict | None:
    answer = etcd_post(etcd, "kv/range", {"key": base64.b64encode(key.encode()).decode()})
    kvs = answer.get("kvs", [])
    return json.loads(base64.b64decode(kvs[0]["value"])) if kvs else None


def etcd_put(etcd: EtcdCluster, key: str, value: bytes) -> int:
    answer = etcd_post(etcd, "kv/put", {"key": base64.b64encode(key.encode()).decode(),
                                        "value": base64.b64encode(value).decode()})
    return int(answer["header"]["revision"])


def rules_revision(rp: RunningProxy) -> int:
    return revisions(rp)["mysql_query_rules"][0]


def test_first_instance_seeds_with_hashed_passwords_and_the_next_takes_the_clusters_configuration(
        instances, etcd, cluster, caplog):
    caplog.set_level(logging.INFO, logger="myrouter.cluster")
    a = instances.start(1)
    revs = revisions(a)
    assert all(rev > 0 and status == "in sync" for rev, status in revs.values()), revs
    users = etcd_get(etcd, f"/myrouter/{instances.name}/config/mysql_users")
    assert users is not None and users["instance"] == "node1"
    passwords = [row[1] for row in users["tables"]["mysql_users"]["rows"]]
    assert passwords == ["*5BCB3E6AC345B435C7C2E6B7949A04CE6F6563D3"], passwords  # SHA1(SHA1('app')), not 'app'
    assert "seeded from this instance's runtime" in caplog.text
    # the second instance's file names another user: the cluster's users win, and it says so
    b = instances.start(2, users=[{"username": "other", "password": "x", "default_hostgroup": 0}])
    assert "(node2): taking the cluster's configuration over the file's" in caplog.text
    assert admin_sql(b, "SELECT username FROM runtime_mysql_users") == [("app",)]
    assert server_id(b) == cluster.primary.query("SELECT @@server_id AS id")[0]["id"]  # app logs in through b
    with pytest.raises(pymysql.err.OperationalError) as err:
        b.connect("other", "x")
    assert err.value.args[0] == 1045
    wait_for("both nodes listed", lambda: [r[0] for r in admin_sql(
        a, "SELECT instance FROM stats_cluster_nodes ORDER BY instance")] == ["node1", "node2"], timeout=10)
    rev = revs["mysql_users"][0]
    for rp in (a, b):
        rows = admin_sql(rp, "SELECT instance, address, last_heartbeat, mysql_servers_revision, mysql_users_revision, "
                             "mysql_query_rules_revision, mysql_variables_revision, status FROM stats_cluster_nodes "
                             "ORDER BY instance")
        assert [(r[0], r[1], *r[3:]) for r in rows] == [
            ("node1", f"127.0.0.1:{a.port}", rev, rev, rev, rev, "in sync"),
            ("node2", f"127.0.0.1:{b.port}", rev, rev, rev, rev, "in sync")], rows
        assert all(abs(r[2] - time.time()) < 30 for r in rows)
    host, port = a.proxy.admin.metrics_address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as resp:
        metrics = resp.read().decode()
    assert f'myrouter_cluster_applied_revision{{module="mysql_users"}} {float(rev)}' in metrics
    assert "myrouter_cluster_connected 1.0" in metrics
    assert "myrouter_cluster_seconds_since_sync " in metrics


def test_rule_loaded_on_one_instance_routes_on_all_three(instances, cluster, caplog):
    caplog.set_level(logging.INFO, logger="myrouter.cluster")
    a, b, c = (instances.start(i) for i in (1, 2, 3))
    primary_id = cluster.primary.query("SELECT @@server_id AS id")[0]["id"]
    assert {server_id(rp) for rp in (a, b, c)} == {primary_id}
    seeded = rules_revision(a)
    # an invalid change is refused locally and never reaches etcd
    with pytest.raises(pymysql.err.OperationalError) as err:
        admin_sql(a, RULE.format(id=9).replace(", 1, 1)", ", 99, 1)"), "LOAD MYSQL QUERY RULES TO RUNTIME")
    assert "rule_id=9" in err.value.args[1] and "nothing changed" in err.value.args[1]
    assert rules_revision(a) == seeded
    admin_sql(a, "DELETE FROM mysql_query_rules")
    admin_sql(a, RULE.format(id=10), "LOAD MYSQL QUERY RULES TO RUNTIME")
    revision = rules_revision(a)
    for rp in (b, c):
        wait_for("the rule on the other instances", lambda rp=rp: rules_revision(rp) == revision, timeout=2.0)
        assert server_id(rp) != primary_id  # routed to a replica now
        assert admin_sql(rp, "SELECT rule_id FROM mysql_query_rules") == [(10,)]  # memory shows it too
    assert f"mysql_query_rules revision {revision} (written by node1)" in caplog.text
    # SAVE ... TO DISK stays per instance: b's file is untouched
    assert "rule_id" not in instances.config_path(2).read_text()


def test_two_concurrent_loads_exactly_one_wins(instances):
    a, b, c = (instances.start(i) for i in (1, 2, 3))
    for attempt in range(10):
        admin_sql(a, RULE.format(id=100 + attempt))
        admin_sql(b, RULE.format(id=200 + attempt))
        outcome: dict[str, object] = {}
        barrier = threading.Barrier(2)

        def load(name: str, rp: RunningProxy) -> None:
            conn = pymysql.connect(host="127.0.0.1", port=rp.proxy.admin.listen_addresses[0][1], user="admin",
                                   password="admin", autocommit=True)
            try:
                barrier.wait()
                with conn.cursor() as cur:
                    cur.execute("LOAD MYSQL QUERY RULES TO RUNTIME")
                outcome[name] = "ok"
            except pymysql.err.MySQLError as exc:
                outcome[name] = exc
            finally:
                conn.close()

        threads = [threading.Thread(target=load, args=(n, rp)) for n, rp in (("a", a), ("b", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        errors = [v for v in outcome.values() if v != "ok"]
        assert len(outcome) == 2 and len(errors) <= 1, outcome
        if errors:
            message = errors[0].args[1]
            assert "another instance changed the cluster's configuration meanwhile" in message, message
            assert "mysql_query_rules is at revision" in message
            break
        # both succeeded: they did not overlap (the second saw the first); try again
    else:
        pytest.fail("10 pairs of concurrent LOADs never overlapped")
    target = rules_revision(a) if outcome["a"] == "ok" else rules_revision(b)
    for rp in (a, b, c):
        wait_for("one revision everywhere", lambda rp=rp: rules_revision(rp) == target, timeout=5)
    winner = a if outcome["a"] == "ok" else b
    rules = admin_sql(winner, "SELECT rule_id FROM runtime_mysql_query_rules ORDER BY rule_id")
    for rp in (a, b, c):
        assert admin_sql(rp, "SELECT rule_id FROM runtime_mysql_query_rules ORDER BY rule_id") == rules


def test_etcd_down_keeps_serving_refuses_load_and_catches_up(instances, etcd, cluster, caplog):
    caplog.set_level(logging.INFO, logger="myrouter.cluster")
    a, b = instances.start(1), instances.start(2)
    primary_id = cluster.primary.query("SELECT @@server_id AS id")[0]["id"]
    before = rules_revision(a)
    etcd.stop_all()
    try:
        wait_for("a notices", lambda: admin_sql(a, "SELECT status FROM stats_cluster_nodes WHERE instance='node1'")
                 == [("etcd unreachable",)], timeout=15)
        assert server_id(a) == primary_id and server_id(b) == primary_id  # traffic unaffected
        with pytest.raises(pymysql.err.OperationalError) as err:
            admin_sql(a, RULE.format(id=20), "LOAD MYSQL QUERY RULES TO RUNTIME")
        assert "etcd is unreachable" in err.value.args[1]
        host, port = a.proxy.admin.metrics_address
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as resp:
            assert "myrouter_cluster_connected 0.0" in resp.read().decode()
        assert admin_sql(a, "SELECT COUNT(*) FROM runtime_mysql_query_rules") == [(0,)]  # nothing applied
        assert rules_revision(a) == before
        c = instances.start(3)  # starts without etcd: serves with its file
        assert server_id(c) == primary_id and rules_revision(c) == 0
        assert "(node3): etcd not reachable at start" in caplog.text
    finally:
        etcd.start_all()
    wait_for("a reconnects", lambda: admin_sql(
        a, "SELECT status FROM stats_cluster_nodes WHERE instance='node1'") == [("in sync",)], timeout=15)
    admin_sql(a, "LOAD MYSQL QUERY RULES TO RUNTIME")  # the rule still in memory
    for rp in (b, c):
        wait_for("the change reaches b and c", lambda rp=rp: rules_revision(rp) == rules_revision(a), timeout=5)
        assert server_id(rp) != primary_id


def test_one_etcd_member_killed_nothing_noticed(instances, etcd, cluster, caplog):
    caplog.set_level(logging.INFO, logger="myrouter.cluster")
    a, b = instances.start(1), instances.start(2)
    primary_id = cluster.primary.query("SELECT @@server_id AS id")[0]["id"]
    etcd.members[0].kill()  # the first endpoint: the one the instances talk to
    try:
        assert server_id(a) == primary_id
        admin_sql(a, RULE.format(id=30), "LOAD MYSQL QUERY RULES TO RUNTIME")
        wait_for("the change reaches b", lambda: rules_revision(b) == rules_revision(a), timeout=5)
        assert server_id(b) != primary_id
        assert "lost etcd" not in caplog.text
        for rp in (a, b):
            assert {status for _, status in revisions(rp).values()} == {"in sync"}
    finally:
        etcd.members[0].start()


def test_a_silent_etcd_member_is_noticed_and_the_change_still_arrives(instances, etcd, cluster, caplog):
    caplog.set_level(logging.INFO, logger="myrouter.cluster")
    a, b = instances.start(1), instances.start(2)
    primary_id = cluster.primary.query("SELECT @@server_id AS id")[0]["id"]
    etcd.members[0].pause()  # b's watch stays open on it and brings nothing
    try:
        admin_sql(a, RULE.format(id=35), "LOAD MYSQL QUERY RULES TO RUNTIME")  # a times out on it, uses another
        wait_for("the change reaches b", lambda: rules_revision(b) == rules_revision(a), timeout=20)
        assert server_id(b) != primary_id
        assert "(node2): the watch fell behind etcd" in caplog.text
    finally:
        etcd.members[0].resume()


def test_restarted_instance_picks_up_changes_made_while_it_was_down(instances, cluster, caplog):
    caplog.set_level(logging.INFO, logger="myrouter.cluster")
    a, b = instances.start(1), instances.start(2)
    primary_id = cluster.primary.query("SELECT @@server_id AS id")[0]["id"]
    wait_for("b listed", lambda: ("node2",) in admin_sql(a, "SELECT instance FROM stats_cluster_nodes"), timeout=10)
    instances.stop(b)
    # its heartbeat's lease is revoked at shutdown: it leaves the table without waiting for the TTL
    wait_for("b gone", lambda: admin_sql(a, "SELECT instance FROM stats_cluster_nodes") == [("node1",)], timeout=5)
    admin_sql(a, RULE.format(id=40), "LOAD MYSQL QUERY RULES TO RUNTIME")
    b = instances.start(2)  # the same file, without the rule
    assert rules_revision(b) == rules_revision(a)
    assert server_id(b) != primary_id
    assert "taking the cluster's configuration over the file's" in caplog.text


def test_malformed_or_invalid_value_in_etcd_is_refused_everywhere(instances, etcd, cluster, caplog):
    a, b = instances.start(1), instances.start(2)
    primary_id = cluster.primary.query("SELECT @@server_id AS id")[0]["id"]
    admin_sql(a, RULE.format(id=50), "LOAD MYSQL QUERY RULES TO RUNTIME")
    wait_for("b has the rule", lambda: rules_revision(b) == rules_revision(a), timeout=5)
    good = rules_revision(a)
    key = f"/myrouter/{instances.name}/config/mysql_query_rules"
    bad = etcd_put(etcd, key, b"{not json")
    for rp in (a, b):
        wait_for("refused", lambda rp=rp: revisions(rp)["mysql_query_rules"][1].startswith(
            f"refused revision {bad}: malformed value"), timeout=5)
        assert rules_revision(rp) == good and server_id(rp) != primary_id  # the last good rules still route
    value = etcd_get(etcd, f"/myrouter/{instances.name}/config/mysql_servers")
    assert value is not None
    # well-formed but invalid: a rule sending to hostgroup 99, which has no server
    rules = {"format": 1, "module": "mysql_query_rules", "instance": "by-hand", "written_at": 0,
             "tables": {"mysql_query_rules": {"columns": json.loads(json.dumps(_rule_columns())),
                                              "rows": [_rule_row(51, 99)]}}}
    invalid = etcd_put(etcd, key, json.dumps(rules).encode())
    for rp in (a, b):
        wait_for("refused", lambda rp=rp: revisions(rp)["mysql_query_rules"][1].startswith(
            f"refused revision {invalid}:"), timeout=5)
        assert "99" in revisions(rp)["mysql_query_rules"][1]
        assert rules_revision(rp) == good and server_id(rp) != primary_id
    assert "refused" in caplog.text
    # a LOAD from an instance repairs it (its compare-and-swap is on the revision it saw: the bad one)
    admin_sql(a, "LOAD MYSQL QUERY RULES TO RUNTIME")
    wait_for("repaired", lambda: revisions(b)["mysql_query_rules"] == (rules_revision(a), "in sync"), timeout=5)


def _rule_columns() -> list[str]:
    from myrouter.admin.schema import COLUMNS

    return list(COLUMNS["mysql_query_rules"])


def _rule_row(rule_id: int, hostgroup: int) -> list:
    row = {c: None for c in _rule_columns()}
    row.update(rule_id=rule_id, active=1, match_digest="^SELECT", destination_hostgroup=hostgroup, apply=1,
               flagIN=0, negate_match_pattern=0, re_modifiers="CASELESS", attributes="")
    return list(row.values())


# ---------------------------------------------------------------------------- TLS and etcd users


def make_tls_files(directory: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (no CommonName)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test etcd CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM

    def issue(name: str, usage, san: list, subject: list) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(x509.Name(subject))
                   .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
                   .add_extension(x509.ExtendedKeyUsage(usage), critical=False))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        (directory / f"{name}.pem").write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(pem))
        (directory / f"{name}-key.pem").write_bytes(key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    # serverAuth and clientAuth: etcd's gateway dials the member's own gRPC port with this certificate
    issue("server", [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
          [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
          [x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    # no CommonName: with etcd authentication on, etcd's JSON gateway refuses client certificates that have
    # one (CVE-2018-16886, etcd PR #10366); the etcd user/password says who the client is
    issue("client", [ExtendedKeyUsageOID.CLIENT_AUTH], [], [])


def test_https_with_client_certificate_and_etcd_user(cluster, tmp_path, no_rules, caplog):
    import subprocess

    caplog.set_level(logging.INFO, logger="myrouter.cluster")
    tls = tmp_path / "tls"
    make_tls_files(tls)
    with start_etcd(1, tls_dir=tls) as etcd:
        ctl = ["etcdctl", f"--endpoints={etcd.endpoints[0]}", f"--cacert={tls / 'ca.pem'}",
               f"--cert={tls / 'client.pem'}", f"--key={tls / 'client-key.pem'}"]
        for args in (["user", "add", "root:rootpw"], ["user", "grant-role", "root", "root"],
                     ["user", "add", "myrouter:s3cret"], ["role", "add", "myrouter"],
                     ["role", "grant-permission", "myrouter", "--prefix=true", "readwrite", "/myrouter/tls/"],
                     ["user", "grant-role", "myrouter", "myrouter"], ["auth", "enable"]):
            subprocess.run(ctl + args, check=True, capture_output=True, timeout=30)

        def node(index: int, password: str) -> RunningProxy:
            text = render_config(cluster, port=free_ports(1)[0], rules_dir=no_rules)
            text += (f'\n[cluster]\netcd_endpoints = ["{etcd.endpoints[0]}"]\nname = "tls"\ninstance = "tls{index}"\n'
                     f'etcd_ca = "{tls / "ca.pem"}"\netcd_cert = "{tls / "client.pem"}"\n'
                     f'etcd_key = "{tls / "client-key.pem"}"\netcd_username = "myrouter"\n'
                     f'etcd_password = "{password}"\n')
            path = tmp_path / f"tls{index}.toml"
            path.write_text(text)
            return RunningProxy(path).start()

        a = node(1, "s3cret")
        b = node(2, "wrong")
        try:
            assert revisions(a)["mysql_users"][1] == "in sync"
            admin_sql(a, RULE.format(id=60), "LOAD MYSQL QUERY RULES TO RUNTIME")
            # the key is in etcd, readable with the etcd user's credentials
            out = subprocess.run(ctl + ["--user=myrouter:s3cret", "get", "/myrouter/tls/config/mysql_query_rules",
                                        "--print-value-only"], check=True, capture_output=True, timeout=30).stdout
            assert json.loads(out)["instance"] == "tls1"
            # a wrong etcd password: that instance serves with its file and refuses LOAD, saying why
            with pytest.raises(pymysql.err.OperationalError) as err:
                admin_sql(b, RULE.format(id=61), "LOAD MYSQL QUERY RULES TO RUNTIME")
            assert "authentication" in err.value.args[1] and "s3cret" not in err.value.args[1]
            assert "wrong" not in caplog.text and "s3cret" not in caplog.text  # passwords never logged
        finally:
            a.stop()
            b.stop()


def test_user_loaded_with_a_clear_password_logs_in_everywhere_stored_as_a_hash(instances, etcd, cluster):
    cluster.primary.query("CREATE USER IF NOT EXISTS 'cl_user'@'%' IDENTIFIED BY 'cl_pw'")
    cluster.primary.query("GRANT SELECT ON test.* TO 'cl_user'@'%'")
    cluster.wait_replication()
    try:
        a, b = instances.start(1), instances.start(2)
        admin_sql(a, "INSERT INTO mysql_users (username, password, default_hostgroup) VALUES ('cl_user', 'cl_pw', 0)",
                  "LOAD MYSQL USERS TO RUNTIME")
        users = etcd_get(etcd, f"/myrouter/{instances.name}/config/mysql_users")
        stored = {row[0]: row[1] for row in users["tables"]["mysql_users"]["rows"]}
        assert stored["cl_user"].startswith("*") and len(stored["cl_user"]) == 41 and "cl_pw" not in json.dumps(users)
        wait_for("b has the user", lambda: revisions(b)["mysql_users"][0] == revisions(a)["mysql_users"][0], timeout=5)
        for rp in (a, b):
            conn = rp.connect("cl_user", "cl_pw", autocommit=True)
            with conn.cursor() as cur:
                cur.execute("SELECT CURRENT_USER()")
                assert cur.fetchone()[0] == "cl_user@%"
            conn.close()
            with pytest.raises(pymysql.err.OperationalError) as err:
                rp.connect("cl_user", "wrong")
            assert err.value.args[0] == 1045
    finally:
        cluster.primary.query("DROP USER IF EXISTS 'cl_user'@'%'")


def test_variables_and_servers_follow_but_each_instance_keeps_its_own_interfaces(instances, cluster):
    a, b = instances.start(1), instances.start(2)
    admin_sql(a, "UPDATE global_variables SET variable_value='1234' WHERE variable_name='mysql-max_connections'",
              "UPDATE mysql_servers SET weight=7 WHERE hostgroup_id=1",
              "LOAD MYSQL VARIABLES TO RUNTIME", "LOAD MYSQL SERVERS TO RUNTIME")
    wait_for("b follows", lambda: revisions(b)["mysql_servers"][0] == revisions(a)["mysql_servers"][0]
             and revisions(b)["mysql_variables"][0] == revisions(a)["mysql_variables"][0], timeout=5)
    for rp in (a, b):
        assert admin_sql(rp, "SELECT variable_value FROM runtime_global_variables "
                             "WHERE variable_name='mysql-max_connections'") == [("1234",)]
        assert {w for (w,) in admin_sql(rp, "SELECT weight FROM runtime_mysql_servers WHERE hostgroup_id=1")} == {7}
        assert admin_sql(rp, "SELECT variable_value FROM runtime_global_variables "
                             "WHERE variable_name='mysql-interfaces'") == [(f"127.0.0.1:{rp.port}",)]
        assert rp.proxy.vars.max_connections == 1234
    # b's memory layer shows the cluster's variables, and its own interfaces
    assert admin_sql(b, "SELECT variable_name, variable_value FROM global_variables WHERE variable_name IN "
                        "('mysql-max_connections', 'mysql-interfaces') ORDER BY 1") == [
        ("mysql-interfaces", f"127.0.0.1:{b.port}"), ("mysql-max_connections", "1234")]
