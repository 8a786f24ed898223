"""The admission queue on SQLite, PostgreSQL and MariaDB: positions, fairness, leaving, the estimate.

Memory providers (a provider that fills up or answers QuotaExceeded on demand) and a clock the test moves;
the queue on real LXC and in the browser is tests/e2e/test_queue.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.support.engine import settle as settle_on_test_clock
from tests.support.engine import write_lab
from tests.support.memory_provider import MemoryProvider

from stacklab.errors import CapacityExhausted, Conflict
from stacklab.store import queue
from stacklab.types import Desired, Observed, Progress
from stacklab.wiring import App

pytestmark = pytest.mark.db

ONE_RUNNING = "- {name: a, type: local, capacity: 1, capacity_counts: running}"


async def settle(app: App, env_id: str) -> str:
    """Drive one environment until it settles; bounded in real time (the test's clock stands still)."""
    return await asyncio.wait_for(settle_on_test_clock(app, env_id), 30)


async def look(app: App, *env_ids: str) -> None:
    """One pass over each, in the order given."""
    for env_id in env_ids:
        await app.controller.reconcile(env_id)


def spot(app: App, env_id: str) -> tuple[int | None, float | None]:
    return app.environments.queue_spot(app.repo.get(env_id))


def reasons(app: App, env_id: str, kind: str = "queue") -> list[str]:
    return [t.reason for t in app.repo.history(env_id) if t.kind == kind]


async def test_full_provider_queues_first_come_first_served(app: App, tmp_path: Path) -> None:
    envs, clock = app.environments, app.controller.clock
    lab = write_lab(tmp_path, ONE_RUNNING)
    first = envs.launch(lab, "l1")
    assert await settle(app, first.id) == Observed.RUNNING
    second = envs.launch(lab, "l2")
    clock.now += 1  # type: ignore[attr-defined]
    third = envs.launch(lab, "l3")
    await look(app, third.id, second.id)  # the later arrival's pass runs first: it still comes second
    for record in (app.repo.get(second.id), app.repo.get(third.id)):
        assert (record.observed, record.progress, record.desired) == (
            Observed.NEW,
            Progress.QUEUED,
            "running",
        )
        assert record.queued_at is not None and record.last_reason is None
    assert spot(app, second.id) == (1, None) and spot(app, third.id) == (2, None)
    assert reasons(app, second.id) == ["Queued"]

    envs.request(first.id, Desired.SUSPENDED, "test")  # its place goes back: the head of the line is woken
    assert await settle(app, first.id) == Observed.SUSPENDED
    assert set(app.repo.due_ids(clock(), 10)) >= {second.id}  # woken through the database, no timer
    await look(app, third.id)  # the later one looks first and does not overtake
    assert app.repo.get(third.id).capacity_held is None
    assert await settle(app, second.id) == Observed.RUNNING
    assert reasons(app, second.id) == ["Queued", "Admitted"] and app.repo.get(second.id).queued_at is None
    assert spot(app, second.id) == (None, None) and spot(app, third.id)[0] == 1

    clock.now += 1  # type: ignore[attr-defined]
    envs.request(first.id, Desired.RUNNING, "ResumeRequested")  # a resume needs room again: behind l3
    await look(app, first.id)
    record = app.repo.get(first.id)
    assert (record.observed, record.progress, spot(app, first.id)[0]) == (Observed.SUSPENDED, "suspended", 2)

    with pytest.raises(Conflict):
        envs.leave_queue(second.id)  # running: not in line
    envs.leave_queue(third.id)  # an explicit cancel
    await look(app, third.id)
    record = app.repo.get(third.id)
    assert (record.desired, record.queued_at, spot(app, third.id)) == ("suspended", None, (None, None))
    assert reasons(app, third.id)[-1] == "LeftQueue" and spot(app, first.id)[0] == 1

    clock.now += app.settings.queue_leave_after_s + 1  # type: ignore[attr-defined]
    assert spot(app, first.id) == (None, None)  # its page stopped asking: not counted at once
    await look(app, first.id)
    record = app.repo.get(first.id)
    assert (record.desired, record.observed, record.queued_at) == ("suspended", Observed.SUSPENDED, None)
    desired = [(t.reason, t.message) for t in app.repo.history(first.id) if t.kind == "desired"]
    assert desired[-1][0] == "LeftQueue" and "stopped asking" in desired[-1][1]

    envs.launch(lab, "l3")  # back again: at the back of the line, and the page keeps it there
    await look(app, third.id)
    clock.now += app.settings.queue_leave_after_s - 1  # type: ignore[attr-defined]
    envs.seen(app.repo.get(third.id))
    clock.now += 2  # type: ignore[attr-defined]
    await look(app, third.id)
    assert spot(app, third.id)[0] == 1 and app.repo.get(third.id).desired == "running"
    assert app.repo.usage() == {"a": 1}

    envs.presence(third.id, "closed")  # the page's pagehide beacon: out of line once the grace has passed
    clock.now += 30  # type: ignore[attr-defined]
    await look(app, third.id)
    assert app.repo.get(third.id).desired == "running"
    clock.now += 20  # type: ignore[attr-defined]  # past close_grace (45 s by default)
    await look(app, third.id)
    record = app.repo.get(third.id)
    assert (record.desired, record.queued_at) == ("suspended", None)
    assert "was closed" in [t.message for t in app.repo.history(third.id) if t.kind == "desired"][-1]


async def test_estimate_follows_the_pace_of_releases(app: App, tmp_path: Path) -> None:
    envs, clock = app.environments, app.controller.clock
    lab = write_lab(tmp_path, ONE_RUNNING)
    ids = []
    for i in range(3):
        clock.now += 1  # type: ignore[attr-defined]
        ids.append(envs.launch(lab, f"p{i}").id)
    assert await settle(app, ids[0]) == Observed.RUNNING
    await look(app, ids[1], ids[2])
    for holder, nxt in ((ids[0], ids[1]), (ids[1], ids[2])):  # two releases, 120 s apart
        clock.now += 120  # type: ignore[attr-defined]
        for waiting in ids[1:]:
            envs.seen(app.repo.get(waiting))
        envs.request(holder, Desired.SUSPENDED, "test")
        assert await settle(app, holder) == Observed.SUSPENDED
        assert await settle(app, nxt) == Observed.RUNNING
    envs.request(ids[0], Desired.RUNNING, "ResumeRequested")
    await look(app, ids[0])
    place, estimate = spot(app, ids[0])
    assert place == 1 and estimate == pytest.approx(120.0)
    assert queue.estimate_s(app.repo, ["a"], 3, clock()) == pytest.approx(360.0)
    clock.now += 300  # type: ignore[attr-defined]  # nothing released for longer than the average
    assert queue.estimate_s(app.repo, ["a"], 1, clock()) == pytest.approx(300.0)


async def test_quota_exceeded_everywhere_waits_in_line(
    app: App, tmp_path: Path, providers: dict[str, MemoryProvider]
) -> None:
    envs, clock = app.environments, app.controller.clock
    providers["a"].fail_create = CapacityExhausted("maximum stacks per tenant", reason="QuotaExceeded")
    lab = write_lab(tmp_path, "- {name: a, type: local}")  # no capacity: the cloud's quota is the limit
    first = envs.launch(lab, "q1")
    await look(app, first.id)
    record = app.repo.get(first.id)
    assert (record.observed, record.progress, record.attempts) == (Observed.NEW, Progress.QUEUED, 0)
    assert spot(app, first.id)[0] == 1 and app.repo.usage() == {"a": 0}
    clock.now += 1  # type: ignore[attr-defined]
    second = envs.launch(lab, "q2")
    creates = len(providers["a"].calls)
    await look(app, second.id)  # behind the head: the cloud is not even asked
    assert len(providers["a"].calls) == creates and spot(app, second.id)[0] == 2

    providers["a"].fail_create = None  # quota back
    clock.now += app.settings.queue_recheck_s  # type: ignore[attr-defined]
    for env_id in (first.id, second.id):
        envs.seen(app.repo.get(env_id))
    await look(app, second.id)  # still behind the head until the head has its place
    assert app.repo.get(second.id).capacity_held is None
    assert await settle(app, first.id) == Observed.RUNNING
    assert await settle(app, second.id) == Observed.RUNNING
    assert app.repo.get(first.id).ready_at <= app.repo.get(second.id).ready_at  # type: ignore[operator]
