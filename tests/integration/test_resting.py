"""A pass over an environment at rest (envs/resting.py) is one read and no write, on SQLite, PostgreSQL
and MariaDB; and the races around that read lose nothing: a change committed after the read has its
own pass, a row whose due time is not its policy deadline (a scheduler's claim) gets a full pass, a row
another process holds is left to its lease."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update
from tests.integration.test_pass_cost import counted
from tests.support.engine import settle, write_lab

from stacklab.envs.policies import policy_deadline
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Desired, Observed
from stacklab.wiring import App

pytestmark = pytest.mark.db


async def running_lab(app: App, tmp_path: Path) -> str:
    env_id = app.environments.launch(write_lab(tmp_path), "learner").id
    assert await settle(app, env_id) == Observed.RUNNING
    return env_id


def set_columns(app: App, env_id: str, **values: object) -> None:
    with app.repo.session() as session:
        session.execute(update(EnvironmentRecord).where(EnvironmentRecord.id == env_id).values(**values))


async def test_a_pass_over_a_lab_at_rest_reads_once_and_writes_nothing(app: App, tmp_path: Path) -> None:
    env_id = await running_lab(app, tmp_path)
    before = app.repo.get(env_id)
    assert before.due_at == policy_deadline(before)  # as its last pass left it
    with counted(app) as counts:
        result = await app.controller.reconcile(env_id)
    assert result.requeue_after is None
    assert (counts.statements(), counts.commits, counts.verbs["SELECT"]) == (1, 0, 1), counts.verbs
    after = app.repo.get(env_id)
    assert (after.version, after.updated_at, after.lease_owner) == (before.version, before.updated_at, None)


async def test_a_request_committed_after_the_read_gets_its_own_pass(app: App, tmp_path: Path) -> None:
    env_id = await running_lab(app, tmp_path)
    leases, unleased = app.controller.leases, app.repo.unleased

    def read_then_request(ids: list[str]) -> dict[str, EnvironmentRecord]:
        found = unleased(ids)  # the row as read: at rest
        app.environments.request(env_id, Desired.SUSPENDED, "test")  # committed after the read
        return found

    leases._unleased = read_then_request  # type: ignore[method-assign]
    assert (await app.controller.reconcile(env_id)).requeue_after is None  # nothing to do, as read
    leases._unleased = unleased  # type: ignore[method-assign]
    record = app.repo.get(env_id)
    assert record.desired == Desired.SUSPENDED and record.due_at <= app.controller.clock()  # kept, due
    await app.controller.reconcile(env_id)  # the pass its submit (or the scheduler) sends
    assert app.repo.get(env_id).observed == Observed.SUSPENDED


async def test_a_claimed_row_gets_a_full_pass_then_rests(app: App, tmp_path: Path) -> None:
    env_id = await running_lab(app, tmp_path)
    claimed = app.controller.clock() + 60.0  # store/due.py moved due_at on by its hold
    set_columns(app, env_id, due_at=claimed)
    version = app.repo.get(env_id).version
    await app.controller.reconcile(env_id)
    record = app.repo.get(env_id)
    assert (record.version, record.due_at) == (version + 1, policy_deadline(record))  # the real deadline
    await app.controller.reconcile(env_id)
    assert app.repo.get(env_id).version == version + 1  # at rest now: not written again


async def test_a_row_another_process_holds_is_left_to_its_lease(app: App, tmp_path: Path) -> None:
    env_id = await running_lab(app, tmp_path)
    until = app.controller.clock() + 60.0
    set_columns(app, env_id, lease_owner="elsewhere", lease_until=until)
    result = await app.controller.reconcile(env_id)
    assert result.requeue_after == app.settings.poll_interval_s  # held: looked at again soon
    record = app.repo.get(env_id)
    assert (record.lease_owner, record.lease_until) == ("elsewhere", until)
