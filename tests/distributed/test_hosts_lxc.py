"""Local labs on two hosts with real LXC: two worker processes standing for two hosts, each with its own LXC
root (`local_root_dir`), queue and capacity, on RabbitMQ + PostgreSQL. Each lab's containers are made under
its own host's root by its own host's worker, and deleted there. When host B's worker is killed its lab is
failed as lost; started again, B's sweep takes the lab back with its running container.

(Leftovers deleted by a returning host's sweep are tested with the file-backed provider in test_hosts.py.)
"""

from __future__ import annotations

import shutil
import tempfile
import textwrap
from pathlib import Path

import pytest
from tests.distributed.conftest import Cluster, passes
from tests.e2e.helpers import wait_for
from tests.support.lxc import IMAGE_DIR, require_lxc, run_sync, sweep_stacks

from stacklab.envs.host_sweep import RETURNED
from stacklab.envs.hosts import LOST
from stacklab.providers.local import LocalProvider
from stacklab.types import Desired, Observed

pytestmark = pytest.mark.lxc

HOSTS = ("host-a", "host-b")
LAB = """\
schema: 1
id: two-hosts
title: Two hosts
login_user: learner
providers:
  - {name: lxc, type: local}
local:
  nodes:
    - name: main
timeouts: {launch: 3m, idle_suspend: 1h, delete_after: 1d}
"""


def host_env(cluster: Cluster, roots: Path, host: str) -> dict[str, str]:
    return {
        "REAL_LOCAL": "1",
        "STACKLAB_LOCAL_HOST": host,
        "STACKLAB_LOCAL_CAPACITY": "1",
        "STACKLAB_LOCAL_ROOT_DIR": str(roots / host),
        "STACKLAB_IMAGE_DIR": IMAGE_DIR,
        "PASS_LOG": str(cluster.tmp / f"passes-{host}.log"),
    }


def stacks_under(root: Path) -> set[str]:
    return set(run_sync(LocalProvider("probe", {"root_dir": str(root), "image_dir": IMAGE_DIR}).list()))


def test_each_host_makes_and_deletes_its_own_labs_containers_under_its_own_root(two_hosts: Cluster) -> None:
    require_lxc()
    cluster = two_hosts
    roots = Path(tempfile.mkdtemp(prefix="stacklab-lxc-hosts-", dir="/var/tmp"))
    roots.chmod(0o755)
    try:
        workers = {host: cluster.start(1, env=host_env(cluster, roots, host))[0] for host in HOSTS}
        app = cluster.service()
        lab = cluster.tmp / "two-hosts.yaml"
        lab.write_text(textwrap.dedent(LAB))
        ids = {}
        for n, host in enumerate(HOSTS):  # capacities 1 and 1: a first, then b
            env_id = app.environments.launch(lab, f"learner-{n}").id
            wait_for(lambda env_id=env_id: app.repo.get(env_id).host is not None, 20, "placed")
            assert app.repo.get(env_id).host == host
            ids[host] = env_id
        wait_for(
            lambda: all(app.repo.get(i).observed == Observed.RUNNING for i in ids.values()), 150, "both run"
        )
        for host, other in (HOSTS, HOSTS[::-1]):
            record = app.repo.get(ids[host])
            assert stacks_under(roots / host) == {record.stack_name}  # its containers, on its own root
            assert ids[host] in passes(cluster, host) and ids[other] not in passes(cluster, host)

        # host B's worker dies: its lab is failed as lost, its container keeps running; when B's worker
        # starts again, B's sweep takes the lab back as its container is (running), not made again
        workers["host-b"].kill()
        workers["host-b"].wait(10)
        wait_for(lambda: app.repo.get(ids["host-b"]).last_reason == LOST, 30, "B's lab is failed as lost")
        cluster.start(1, env=host_env(cluster, roots, "host-b"))
        wait_for(
            lambda: app.repo.get(ids["host-b"]).observed == Observed.RUNNING, 60, "B's lab is taken back"
        )
        assert [t.reason for t in app.repo.history(ids["host-b"]) if t.kind == "observed"][-2:] == [
            LOST,
            RETURNED,
        ]
        assert stacks_under(roots / "host-b") == {app.repo.get(ids["host-b"]).stack_name}
        assert stacks_under(roots / "host-a") == {app.repo.get(ids["host-a"]).stack_name}

        for env_id in ids.values():
            app.environments.request(env_id, Desired.DELETED, "test")
        wait_for(
            lambda: all(app.repo.get(i).observed == Observed.DELETED for i in ids.values()),
            90,
            "both deleted",
        )
        for host, other in (HOSTS, HOSTS[::-1]):
            assert stacks_under(roots / host) == set()
            assert ids[other] not in passes(cluster, host)
    finally:
        cluster.stop()
        for host in HOSTS:
            sweep_stacks(roots / host)
        shutil.rmtree(roots, ignore_errors=True)
