"""The elected scheduler sends no more than the broker has room for (`scheduler_queued_max` messages
waiting): a burst of due passes waits in the database, not in the broker, so a learner's click is not
queued behind it and no pass waits there long enough to be claimed and sent a second time. Real broker
(RabbitMQ, Redis) and real database (PostgreSQL, MariaDB); no worker consumes, the test takes messages
itself."""

from __future__ import annotations

import asyncio
import time

from kombu import Connection
from sqlalchemy import func, select
from tests.distributed.conftest import Cluster
from tests.e2e.helpers import wait_for

from stacklab.distributed import IDS_PER_MESSAGE, celery_runner, make_scheduler
from stacklab.store.tables import EnvironmentRecord

LABS = 200
ROOM = 2  # messages waiting at most


def still_due(cluster: Cluster, now: float) -> int:
    with cluster.service().repo.read() as session:
        query = select(func.count()).select_from(EnvironmentRecord).where(EnvironmentRecord.due_at <= now)
        return int(session.scalar(query) or 0)


def take_one(cluster: Cluster) -> None:
    """A worker's share: one message taken off the queue and acknowledged."""
    with Connection(cluster.values["broker_url"]) as connection:
        message = connection.default_channel.basic_get(cluster.values["job_queue"], no_ack=True)
        assert message is not None


def purge(cluster: Cluster) -> None:
    with Connection(cluster.values["broker_url"]) as connection:
        connection.default_channel.queue_purge(cluster.values["job_queue"])


def test_a_burst_waits_in_the_database_and_the_broker_holds_what_workers_take(cluster: Cluster) -> None:
    cluster.values |= {"scheduler_queued_max": ROOM, "reconcile_batch": 500}
    app = cluster.service()
    lab = cluster.lab()
    runner = celery_runner(app)
    for n in range(LABS):  # a class launching at once: every lab due now
        app.environments.launch(lab, f"learner-{n}")
    asyncio.run(runner.idle())
    purge(cluster)  # the launches' own messages lost (the rows stay due): the scheduler's to send
    scheduler = make_scheduler(app, runner)
    now = time.time()
    assert scheduler.send_due(now) == ROOM * IDS_PER_MESSAGE
    wait_for(lambda: runner.waiting() == ROOM, 10, "the broker counts what was sent")
    assert still_due(cluster, now) == LABS - ROOM * IDS_PER_MESSAGE  # the rest waits, unclaimed
    assert scheduler.send_due(now) == 0  # no room: nothing more is claimed or sent
    take_one(cluster)
    wait_for(lambda: runner.waiting() == ROOM - 1, 10, "the broker counts what was taken")
    assert scheduler.send_due(now) == IDS_PER_MESSAGE  # room for one message: one more batch
    wait_for(lambda: runner.waiting() == ROOM, 10, "the broker counts what was sent")
    assert still_due(cluster, now) == LABS - (ROOM + 1) * IDS_PER_MESSAGE


def test_an_idle_tick_does_not_ask_the_broker_for_room(cluster: Cluster) -> None:
    app = cluster.service()
    runner = celery_runner(app)
    asked: list[int] = []
    count = runner.waiting
    runner.waiting = lambda: asked.append(1) or count()  # type: ignore[method-assign]
    scheduler = make_scheduler(app, runner)
    assert scheduler.send_due(time.time()) == 0
    assert asked == []  # nothing due: no channel opened, no queue declared, every half second
    app.environments.launch(cluster.lab(), "learner")
    asyncio.run(runner.idle())
    purge(cluster)  # the launch's own message lost: its row stays due, the scheduler's to send
    assert scheduler.send_due(time.time()) == 1
    assert asked == [1]  # something due: the room is asked before it is sent
