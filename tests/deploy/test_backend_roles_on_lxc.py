"""The backend roles galera, redis and backend_health applied for real to three local LXC nodes.

Three nodes (LocalProvider on a temporary root) play backend_servers; the roles run as cluster.yml runs
them. Checked from the host: a three-node Galera cluster (a row written on one node is read on another),
Redis replicating from the first node with a Sentinel on each, and the health endpoints the internal
Octavia load balancer probes - 200 on every synced Galera node, 200 on the Redis primary only; then
Sentinel fails the primary over and the endpoint follows. Galera's state transfers go through mariabackup
(the donor keeps serving): the two joiners of the new cluster got their state that way, and a node whose
state is wiped while a row is written elsewhere gets it back by a new mariabackup SST. The SQL account task
says "changed" on the first run and not on the second (a fingerprint of the accounts, grants and databases).
MongoDB and Meilisearch are not packaged by Debian and nodes reach no other repository here: those two roles
are covered by syntax-check and lint.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import httpx
import pytest
from tests.deploy.test_roles_on_lxc import BOOTSTRAP, HOST_CAS, LOGIN, task_result
from tests.support.lxc import lxc_nodes, run_sync

from stacklab.providers.base import NodeSpec

pytestmark = [pytest.mark.deploy, pytest.mark.lxc]

ANSIBLE = Path(__file__).resolve().parents[2] / "deploy/ansible"
DATADIR = "/var/lib/stacklab-data/mysql"
NAMES = ("b0", "b1", "b2")
SITE = (
    BOOTSTRAP
    + """
- name: Backends
  hosts: backend_servers
  become: true
  roles:
    - role: galera
    - role: redis
    - role: backend_health
"""
)


@pytest.fixture(scope="module")
def nodes() -> Iterator[dict[str, str]]:
    specs = tuple(NodeSpec(n, memory_mb=1024, pids_max=4096) for n in NAMES)
    with lxc_nodes(f"slb-{os.getpid() % 100000:05d}", LOGIN, specs) as (addresses, key_file):
        yield {**addresses, "key_file": str(key_file)}


def node_run(nodes: dict[str, str], node: str, command: str, check: bool = True) -> str:
    async def go() -> str:
        async with asyncssh.connect(
            nodes[node], username=LOGIN, client_keys=[nodes["key_file"]], known_hosts=None
        ) as conn:
            return str((await conn.run(command, check=check, timeout=60)).stdout)

    return run_sync(go())


def mariadb_journal(nodes: dict[str, str], node: str, since: str = "") -> str:
    """MariaDB's log on a node (Debian's mariadbd logs to the journal), from `since` if given."""
    since_arg = f" --since '{since}'" if since else ""
    return node_run(nodes, node, f"sudo journalctl -u mariadb --no-pager -o cat{since_arg}", False)


def health(ip: str, port: int) -> int:
    try:
        return httpx.get(f"http://{ip}:{port}/", timeout=5).status_code
    except httpx.HTTPError:
        return 0


def play(workdir: Path, nodes: dict[str, str], env: dict[str, str]) -> str:
    hosts = "\n".join(
        f"{nodes[n]} ansible_host={nodes[n]} ansible_user={LOGIN} ansible_become=true "
        f"ansible_ssh_private_key_file={nodes['key_file']} "
        "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'"
        for n in NAMES
    )
    (workdir / "inventory.ini").write_text(f"[backend_servers]\n{hosts}\n")
    (workdir / "site.yml").write_text(SITE)
    variables = {
        "host_ca_certificates": HOST_CAS,
        "galera_admin_password": "admin-password-for-the-test",
        "galera_databases": [{"name": "stacklab", "user": "stacklab", "password": "stacklab-test-pw"}],
        "redis_password": "redis-password-for-the-test",
        "backend_health_redis_password": "redis-password-for-the-test",
        "redis_sentinel_down_after_ms": 3000,
    }
    (workdir / "vars.json").write_text(json.dumps(variables))
    result = subprocess.run(
        ["ansible-playbook", "-i", "inventory.ini", "-e", "@vars.json", "site.yml"],
        cwd=workdir,
        env={
            **env,
            "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"),
            "ANSIBLE_ROLES_PATH": str(ANSIBLE / "roles"),
            "ANSIBLE_HOST_KEY_CHECKING": "False",
        },
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return result.stdout


def test_galera_redis_sentinel_and_health_on_three_lxc_nodes(
    nodes: dict[str, str], deploy_env: dict[str, str], tmp_path: Path
) -> None:
    started = time.monotonic()
    try:
        first = play(tmp_path, nodes, deploy_env)
    except AssertionError as error:
        units = "mariadb redis-server redis-sentinel stacklab-health@galera stacklab-health@redis"
        journal = node_run(
            nodes, "b0", f"sudo journalctl -n 60 --no-pager -u {units.replace(' ', ' -u ')}", False
        )
        raise AssertionError(f"{error}\n--- journal of b0 ---\n{journal}") from None
    print(f"\nbackend roles on three nodes: {time.monotonic() - started:.0f} s")

    # Galera: three synced nodes, a write on one is read on another, every node's endpoint says 200
    size = node_run(nodes, "b1", "sudo mariadb -BN -e \"SHOW STATUS LIKE 'wsrep_cluster_size'\"")
    assert size.split() == ["wsrep_cluster_size", "3"]
    node_run(
        nodes,
        "b1",
        "sudo mariadb -e 'CREATE TABLE IF NOT EXISTS stacklab.t (id INT PRIMARY KEY); "
        "REPLACE INTO stacklab.t VALUES (42)'",
    )
    read = "SET SESSION wsrep_sync_wait = 1; SELECT id FROM stacklab.t"  # once b2 has applied b1's commit
    assert node_run(nodes, "b2", f"sudo mariadb -BN -e '{read}'").split() == ["42"]
    assert [health(nodes[n], 9200) for n in NAMES] == [200, 200, 200]
    assert task_result(
        first, "galera : Create the accounts and databases (once, replicated by Galera)"
    ).startswith("changed:")

    # The joiners of the new cluster got their state from a donor by mariabackup, not rsync
    for joiner in ("b1", "b2"):
        journal = mariadb_journal(nodes, joiner)
        assert "wsrep_sst_mariabackup --role 'joiner'" in journal, journal[-3000:]
        assert "wsrep_sst_rsync" not in journal, journal[-3000:]

    # Redis: b0 primary with two replicas; only the primary's endpoint admits traffic
    auth = "REDISCLI_AUTH=redis-password-for-the-test redis-cli --no-auth-warning"
    assert "connected_slaves:2" in node_run(nodes, "b0", f"{auth} info replication")
    assert [health(nodes[n], 9201) for n in NAMES] == [200, 503, 503]

    # A second run changes nothing (Sentinel's own rewrites of its files are left alone)
    second = play(tmp_path, nodes, deploy_env)
    assert " changed=0 " in second.split("PLAY RECAP")[1], second[-3000:]
    assert task_result(
        second, "galera : Create the accounts and databases (once, replicated by Galera)"
    ).startswith("ok:")

    # A node that lost its state (no grastate.dat) while the cluster took a write: a full SST by mariabackup
    node_run(nodes, "b2", f"sudo systemctl stop mariadb && sudo rm -f {DATADIR}/grastate.dat")
    node_run(nodes, "b0", "sudo mariadb -e 'INSERT INTO stacklab.t VALUES (43)'")
    since = node_run(nodes, "b2", "date '+%Y-%m-%d %H:%M:%S'").strip()
    node_run(nodes, "b2", "sudo systemctl start --no-block mariadb")
    state = ""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and "Synced" not in state:
        time.sleep(2)
        state = node_run(
            nodes, "b2", "sudo mariadb -BN -e \"SHOW STATUS LIKE 'wsrep_local_state_comment'\"", False
        )
    journal = mariadb_journal(nodes, "b2", since)
    assert "Synced" in state, journal[-4000:]
    assert "wsrep_sst_mariabackup --role 'joiner'" in journal, journal[-4000:]
    assert node_run(nodes, "b2", "sudo mariadb -BN -e 'SELECT id FROM stacklab.t ORDER BY id'").split() == [
        "42",
        "43",
    ]
    donors = [
        n for n in ("b0", "b1") if "wsrep_sst_mariabackup --role 'donor'" in mariadb_journal(nodes, n, since)
    ]
    assert len(donors) == 1, donors
    print(f"mariabackup SST to a wiped b2 from {donors[0]}")

    # Failover: stop the primary; Sentinel promotes a replica and the health endpoint follows it
    node_run(nodes, "b0", "sudo systemctl stop redis-server")
    deadline = time.monotonic() + 90
    codes: list[int] = []
    while time.monotonic() < deadline:
        codes = [health(nodes[n], 9201) for n in NAMES]
        if codes.count(200) == 1 and codes[0] != 200:
            break
        time.sleep(1)
    assert codes.count(200) == 1 and codes[0] == 503, codes
    print(f"redis failover: the endpoint now admits {NAMES[codes.index(200)]}")
