"""The scheduler's batches (many due ids a message, jobs/celery_runner.py): a worker killed with SIGKILL in
the middle of a batch loses none of its passes and none is done twice, with real processes."""

from __future__ import annotations

import signal

from tests.distributed.conftest import Cluster
from tests.distributed.shared_provider import creates_by_stack, stacks
from tests.distributed.test_failures import slow_cluster  # noqa: F401 (the fixture: creates of 1 s)
from tests.e2e.helpers import wait_for

from stacklab.distributed import IDS_PER_MESSAGE
from stacklab.types import Observed

LABS = IDS_PER_MESSAGE + 5  # a full batch and a short one


def test_a_worker_killed_in_the_middle_of_a_batch_loses_no_launch_and_makes_none_twice(
    slow_cluster: Cluster,  # noqa: F811 (the fixture imported above)
) -> None:
    app, workers = slow_cluster.service(), slow_cluster.start(2)
    app.engine.runner.submit = lambda env_id, delay_s=0.0: None  # type: ignore[method-assign]
    # due in the database only: the elected scheduler sends them, IDS_PER_MESSAGE a message
    ids = [app.environments.launch(slow_cluster.lab(), f"learner-{n}").id for n in range(LABS)]

    def busy_worker() -> int | None:  # a worker in the middle of several creates of one batch at once
        owners = [
            record.lease_owner
            for record in map(app.repo.get, ids)
            if record.lease_owner and record.observed == Observed.CREATING
        ]
        pids = [int(owner.split(":")[1]) for owner in owners]
        return next((pid for pid in pids if pids.count(pid) >= 2), None)

    victim_pid = wait_for(busy_worker, 30, "a worker runs several passes of a batch", interval_s=0.02)
    victim = next(p for p in workers if p.pid == victim_pid)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)  # reaped, as its service manager would

    def all_running() -> bool:
        return all(app.repo.get(env_id).observed == Observed.RUNNING for env_id in ids)

    wait_for(all_running, 40, "every lab of the batch runs")
    made = creates_by_stack(slow_cluster.cloud)
    assert set(made.values()) == {1} and len(made) == LABS, made
    assert len(stacks(slow_cluster.cloud)) == LABS
