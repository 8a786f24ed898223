"""The distributed mode with real processes: two `stacklab worker` processes, a real broker and a real
shared database; learners launch through the service API (`Environments`, as every web process does)."""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from tests.distributed.conftest import Cluster
from tests.distributed.shared_provider import creates_by_stack, stacks
from tests.e2e.helpers import wait_for

from stacklab.store import members
from stacklab.types import Observed

LEARNERS = 50


def all_running(cluster: Cluster, ids: list[str]) -> bool:
    app = cluster.service()
    return all(app.repo.get(env_id).observed == Observed.RUNNING for env_id in ids)


def test_fifty_learners_launching_four_times_at_once_get_fifty_labs_made_once(cluster: Cluster) -> None:
    workers = cluster.start(2)
    app = cluster.service()
    lab = cluster.lab()
    with ThreadPoolExecutor(16) as pool:
        ids = list(
            pool.map(
                lambda n: app.environments.launch(lab, f"learner-{n % LEARNERS}").id, range(4 * LEARNERS)
            )
        )
    assert len(set(ids)) == LEARNERS and len(app.repo.list()) == LEARNERS
    wait_for(lambda: all_running(cluster, sorted(set(ids))), 60, "every lab runs")
    made = creates_by_stack(cluster.cloud)
    assert sorted(made) == sorted(app.repo.get(env_id).stack_name for env_id in set(ids))
    assert set(made.values()) == {1}, {name: n for name, n in made.items() if n != 1}
    assert len(stacks(cluster.cloud)) == LEARNERS
    # both workers are listed as live members, ran passes, and say so at /metrics with queue waits
    live = members.live(app.repo, "worker", time.time(), app.settings.member_ttl_s)
    assert sorted(int(m.id.split(":")[1]) for m in live) == sorted(w.pid for w in workers)
    for worker in workers:
        metrics = cluster.metrics(worker)
        assert metrics["stacklab_worker_jobs_total"] > 0
        assert metrics["stacklab_worker_queue_wait_seconds_count"] > 0
        assert metrics["stacklab_worker_pass_seconds_count"] == metrics["stacklab_worker_jobs_total"]


def test_sqlite_is_refused_for_the_distributed_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = subprocess.run(
        [".venv/bin/stacklab", "--data-dir", str(tmp_path), "worker"],
        env={
            "STACKLAB_RUNNER": "celery",
            "STACKLAB_BROKER_URL": "amqp://127.0.0.1//",
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "runner = celery needs a database every process shares" in result.stderr
    assert "PostgreSQL" in result.stderr and "SQLite" in result.stderr


def test_a_worker_of_the_embedded_runner_is_refused_before_it_touches_anything(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = subprocess.run(
        [".venv/bin/stacklab", "--data-dir", str(tmp_path / "data"), "scheduler"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "workers run the passes of runner = celery" in result.stderr
    assert not (tmp_path / "data").exists()  # no database made
