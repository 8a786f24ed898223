"""Local labs on two hosts, with real processes: two `stacklab worker` processes standing for two LXC hosts
(`local_host` host-a and host-b, each with its own capacity, its own queue and its own "cloud": the
file-backed test provider, one file a host; test_hosts_lxc.py does it on two real LXC roots), RabbitMQ and
PostgreSQL.

Placement follows the hosts' free capacity, a lab on host B is driven only by B's worker (the workers' own
records of the passes they ran), and when B's worker is killed its labs are failed as lost after
host_lost_after_s while a lab launched again lands on A. When B's worker starts again, B's sweep deletes
its stacks of labs placed elsewhere since (and of none) and takes back the lab nobody launched again.
"""

from __future__ import annotations

import json
import sqlite3
import time

from tests.distributed.conftest import HOST_LOST_AFTER_S, Cluster, passes
from tests.distributed.shared_provider import creates_by_stack, stacks
from tests.e2e.helpers import wait_for

from stacklab.envs.host_sweep import RETURNED
from stacklab.envs.hosts import LOST
from stacklab.store import members
from stacklab.types import Observed
from stacklab.wiring import App

LOST_AFTER_S = HOST_LOST_AFTER_S


def host_env(cluster: Cluster, host: str, capacity: int) -> dict[str, str]:
    return {
        "STACKLAB_LOCAL_HOST": host,
        "STACKLAB_LOCAL_CAPACITY": str(capacity),
        "SHARED_PROVIDER": json.dumps({**cluster.shared, "path": str(cluster.tmp / f"cloud-{host}.db")}),
        "PASS_LOG": str(cluster.tmp / f"passes-{host}.log"),
    }


def observed(cluster: Cluster, env_id: str) -> str:
    return cluster.service().repo.get(env_id).observed


def test_placement_follows_capacity_each_host_drives_its_own_and_a_lost_host_fails_its_labs(
    two_hosts: Cluster,
) -> None:
    cluster = two_hosts
    (worker_a,) = cluster.start(1, env=host_env(cluster, "host-a", 2))
    (worker_b,) = cluster.start(1, env=host_env(cluster, "host-b", 3))
    app, lab = cluster.service(), cluster.lab()
    wait_for(
        lambda: {m.host for m in members.live(app.repo, "worker", time.time(), 5.0)} == {"host-a", "host-b"},
        20,
        "both hosts announce themselves",
    )

    # most free places first, ties by name: b (3 free), a (2 vs 2), b (1 vs 2)
    ids = []
    for n in range(3):
        ids.append(app.environments.launch(lab, f"learner-{n}").id)
        wait_for(lambda: app.repo.get(ids[-1]).host is not None, 20, "the lab is placed")
    placed = {env_id: app.repo.get(env_id).host for env_id in ids}
    assert [placed[env_id] for env_id in ids] == ["host-b", "host-a", "host-b"]
    wait_for(lambda: all(observed(cluster, env_id) == Observed.RUNNING for env_id in ids), 60, "all run")

    on_a = {env_id for env_id, host in placed.items() if host == "host-a"}
    on_b = {env_id for env_id, host in placed.items() if host == "host-b"}
    # each host's worker drove its own labs and no other's; each lab was created once, in its host's cloud
    assert on_a <= passes(cluster, "host-a") and not passes(cluster, "host-a") & on_b
    assert on_b <= passes(cluster, "host-b") and not passes(cluster, "host-b") & on_a
    for host, mine in (("host-a", on_a), ("host-b", on_b)):
        made = creates_by_stack(cluster.tmp / f"cloud-{host}.db")
        assert sorted(made) == sorted(app.repo.get(env_id).stack_name for env_id in mine)
        assert set(made.values()) == {1}

    # host B dies: after host_lost_after_s its labs are failed with the reason, A's are untouched
    worker_b.kill()
    worker_b.wait(10)
    wait_for(
        lambda: all(observed(cluster, env_id) == Observed.FAILED for env_id in on_b), 30, "B's labs fail"
    )
    (b_row,) = [m for m in members.every(app.repo) if m.host == "host-b"]
    for env_id in on_b:
        record = app.repo.get(env_id)
        assert record.last_reason == LOST and "host host-b was lost" in (record.last_error or "")
        (lost,) = [t for t in app.repo.history(env_id) if t.reason == LOST]
        assert lost.to_state == Observed.FAILED and lost.at - b_row.heartbeat_at >= LOST_AFTER_S
    assert all(observed(cluster, env_id) == Observed.RUNNING for env_id in on_a)

    # its learner launches one of them again: placed afresh on A (B is lost), made there from scratch
    again, kept = sorted(on_b)
    app.environments.launch(lab, app.repo.get(again).learner)
    wait_for(lambda: observed(cluster, again) == Observed.RUNNING, 30, "the lab launched again runs")
    assert app.repo.get(again).host == "host-a" and again in passes(cluster, "host-a")
    assert not passes(cluster, "host-a") & {kept}  # A never drove B's labs but the one placed on it
    assert worker_a.poll() is None

    # host B comes back with its old stacks and one no environment names: its sweep deletes the one
    # relaunched on A and the stray, and adopts the lab nobody launched again, as its stack is (running);
    # A's cloud, which holds a stack of the same name, is not touched
    cloud_a, cloud_b = (cluster.tmp / f"cloud-{host}.db" for host in ("host-a", "host-b"))
    on_a_before = stacks(cloud_a)
    stray = "sl-nolabnamesit"
    with sqlite3.connect(cloud_b) as db:
        db.execute("INSERT INTO stacks VALUES (?, 'a', 'running', 'main', '')", (stray,))
    assert set(stacks(cloud_b)) == {stack_of(app, again), stack_of(app, kept), stray}
    cluster.start(1, env=host_env(cluster, "host-b", 3))
    wait_for(lambda: set(stacks(cloud_b)) == {stack_of(app, kept)}, 30, "B's leftovers are deleted")
    wait_for(lambda: observed(cluster, kept) == Observed.RUNNING, 30, "B's lost lab is taken back")
    assert [t.reason for t in app.repo.history(kept) if t.kind == "observed"][-2:] == [LOST, RETURNED]
    assert creates_by_stack(cloud_b)[stack_of(app, kept)] == 1  # the same stack, not made again
    assert stacks(cloud_a) == on_a_before and stack_of(app, again) in on_a_before
    assert observed(cluster, again) == Observed.RUNNING and app.repo.get(again).host == "host-a"


def stack_of(app: App, env_id: str) -> str:
    return app.repo.get(env_id).stack_name
