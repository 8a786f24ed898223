"""Losing a worker, the scheduler or the broker loses no work: real processes killed with SIGKILL, a real
broker stopped and started again; every lab still converges and none is made twice."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.distributed.conftest import RABBITMQ_URL, Cluster, RedisServer, make_cluster, store
from tests.distributed.shared_provider import creates_by_stack, stacks
from tests.e2e.helpers import wait_for

from stacklab.store import leases
from stacklab.types import Desired, Observed

LABS = 8


def observed(cluster: Cluster, ids: list[str], state: Observed) -> bool:
    repo = cluster.service().repo
    return all(repo.get(env_id).observed == state for env_id in ids)


def leader(cluster: Cluster) -> str | None:
    return leases.holder(cluster.service().repo, "scheduler", time.time())


def pid_of(owner: str | None) -> int | None:
    return int(owner.split(":")[1]) if owner else None


@pytest.fixture
def slow_cluster(tmp_path: Path, ssh_banner: int, job_queue: str) -> Iterator[Cluster]:
    """RabbitMQ + PostgreSQL, with creates that take a second: a kill lands in the middle of one."""
    for url in store("postgresql"):
        for cluster in make_cluster(tmp_path, ssh_banner, RABBITMQ_URL, url, job_queue):
            cluster.create_delay_s = cluster.suspend_delay_s = 1.0
            yield cluster


def test_workers_killed_mid_launch_and_mid_suspend_lose_nothing_and_make_nothing_twice(
    slow_cluster: Cluster,
) -> None:
    cluster = slow_cluster
    workers = cluster.start(2)
    app = cluster.service()
    wait_for(lambda: leader(cluster), 20, "a scheduler is elected")
    ids = [app.environments.launch(cluster.lab(), f"learner-{n}").id for n in range(LABS)]
    victim_pid = pid_of(leader(cluster))
    victim = next(p for p in workers if p.pid == victim_pid)

    def mid_create() -> bool:  # the victim holds a pass that is inside the provider's create
        return any(
            (record := app.repo.get(env_id)).lease_owner is not None
            and pid_of(record.lease_owner) == victim_pid
            and record.observed == Observed.CREATING
            for env_id in ids
        )

    wait_for(mid_create, 20, "the scheduling worker is in the middle of a launch", interval_s=0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    survivor = next(p for p in workers if p is not victim)

    wait_for(lambda: observed(cluster, ids, Observed.RUNNING), 20, "every lab runs (within lease_s)")
    assert pid_of(leader(cluster)) == survivor.pid  # the survivor took the scheduler over
    made = creates_by_stack(cluster.cloud)
    assert set(made.values()) == {1} and len(made) == LABS, made
    assert len(stacks(cluster.cloud)) == LABS

    # the new scheduler sends what becomes due after the takeover; a worker killed mid-suspend too
    (replacement,) = cluster.start()
    for env_id in ids:
        app.environments.request(env_id, Desired.SUSPENDED, "Test")

    def mid_suspend() -> int | None:
        for env_id in ids:
            record = app.repo.get(env_id)
            if record.lease_owner and record.observed == Observed.RUNNING:
                return pid_of(record.lease_owner)
        return None

    second_victim = wait_for(mid_suspend, 20, "a worker is in the middle of a suspend", interval_s=0.02)
    killed = next(p for p in (survivor, replacement) if p.pid == second_victim)
    killed.send_signal(signal.SIGKILL)
    killed.wait(10)  # reaped, as its service manager would: a zombie's pid still looks alive
    wait_for(lambda: observed(cluster, ids, Observed.SUSPENDED), 20, "every lab is suspended")
    assert set(stacks(cluster.cloud).values()) == {"suspended"} and len(stacks(cluster.cloud)) == LABS


class Broker:
    """Stops and starts the cluster's broker: the test's own redis-server, or RabbitMQ's app."""

    def __init__(self, kind: str, redis: RedisServer) -> None:
        self.kind = kind
        self.redis = redis

    def stop(self) -> None:
        if self.kind == "redis":
            self.redis.stop()
        else:
            subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True, timeout=60, capture_output=True)

    def start(self) -> None:
        if self.kind == "redis":
            self.redis.start()
        else:
            subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True, timeout=60, capture_output=True)
            subprocess.run(
                ["rabbitmqctl", "-q", "await_startup"], check=True, timeout=60, capture_output=True
            )


@pytest.mark.parametrize("cluster", ["redis-mariadb", "rabbitmq-postgresql"], indirect=True)
def test_a_broker_stopped_and_started_again_loses_nothing_that_was_due(
    cluster: Cluster, redis_server: RedisServer
) -> None:
    broker = Broker("redis" if cluster.values["broker_url"].startswith("redis") else "rabbitmq", redis_server)
    cluster.create_delay_s = 0.3
    cluster.start(2)
    app = cluster.service()
    ids = [app.environments.launch(cluster.lab(), f"learner-{n}").id for n in range(LABS)]
    try:
        broker.stop()
        # made due while the broker is away: the submits fail, the database keeps them due
        late = [app.environments.launch(cluster.lab(), f"late-{n}").id for n in range(LABS // 2)]
        time.sleep(1.0)
    finally:
        broker.start()
    wait_for(lambda: observed(cluster, ids + late, Observed.RUNNING), 45, "every lab runs after the restart")
    made = creates_by_stack(cluster.cloud)
    assert set(made.values()) == {1} and len(made) == len(ids + late), made
