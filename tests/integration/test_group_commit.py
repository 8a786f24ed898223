"""Group commit of the passes' last saves (envs/saving.py), on SQLite, PostgreSQL and MariaDB: passes that
end in the same moment are written in one commit, yet each keeps its own outcome. Commits are counted
with SQLAlchemy's events; the passes are held at the provider's status call and let go together, so
that they reach their last save in the same turn of the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.exc import OperationalError
from tests.integration.test_pass_cost import LABS, counted, running_labs_asked_to_pause
from tests.support.engine import settle, write_lab
from tests.support.memory_provider import MemoryProvider

from stacklab.events import Event
from stacklab.store.repository import CasWrite
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Observed
from stacklab.wiring import App

pytestmark = pytest.mark.db


@contextmanager
def published(app: App) -> Iterator[list[Event]]:
    """The events this process publishes (as it publishes them: on PostgreSQL, NOTIFY delivers later)."""
    events: list[Event] = []
    publish = app.events.publish

    def noted(event: Event) -> None:
        events.append(event)
        publish(event)

    app.events.publish = noted  # type: ignore[method-assign]
    try:
        yield events
    finally:
        del app.events.publish


def held_at_status(provider: MemoryProvider, passes: int, meanwhile: Callable[[], None]) -> None:
    """The provider's status call waits until `passes` passes wait in it; `meanwhile` runs then."""
    status, arrived, gate = provider.status, [0], asyncio.Event()

    async def gated(handle: Any) -> Any:
        arrived[0] += 1
        if arrived[0] == passes:
            meanwhile()
            gate.set()
        await gate.wait()
        return await status(handle)

    provider.status = gated  # type: ignore[method-assign]


async def together(app: App, ids: list[str]) -> None:
    await asyncio.gather(*(app.controller.reconcile(env_id) for env_id in ids))


def suspended_once(app: App, env_id: str) -> bool:
    reasons = [t.reason for t in app.repo.history(env_id)]
    return app.repo.get(env_id).observed == Observed.SUSPENDED and reasons.count("Suspended") == 1


async def run(
    app: App, providers: dict[str, MemoryProvider], tmp_path: Path, meanwhile: Callable[[list[str]], None]
) -> tuple[list[str], Any, list[Event]]:
    ids = sorted(await running_labs_asked_to_pause(app, tmp_path))
    held_at_status(providers["a"], LABS, lambda: meanwhile(ids))
    with counted(app) as counts, published(app) as events:
        await together(app, ids)
    return ids, counts, events


def suspended_events(events: list[Event]) -> list[str]:
    return sorted(e.env_id for e in events if e.kind == "suspended")


async def test_passes_ending_together_share_one_commit(
    app: App, providers: dict[str, MemoryProvider], tmp_path: Path
) -> None:
    ids, counts, events = await run(app, providers, tmp_path, lambda _ids: None)
    assert all(suspended_once(app, env_id) for env_id in ids)
    assert counts.commits == 2, counts.verbs  # the lease round and the save round
    # one lease UPDATE, and the round's compare-and-set UPDATEs in one executemany (one round trip on
    # PostgreSQL, psycopg's pipeline)
    assert counts.verbs["UPDATE"] == 2, counts.verbs
    assert suspended_events(events) == ids


async def test_a_lost_lease_in_a_round_costs_only_that_pass(
    app: App, providers: dict[str, MemoryProvider], tmp_path: Path
) -> None:
    def steal_and_touch(ids: list[str]) -> None:
        with app.repo.session() as session:  # another process took the first one's lease
            session.execute(
                update(EnvironmentRecord)
                .where(EnvironmentRecord.id == ids[0])
                .values(lease_owner="elsewhere", version=EnvironmentRecord.version + 1)
            )
        app.repo.touch(ids[1], app.controller.clock())  # the learner was active: merged, not lost

    ids, counts, events = await run(app, providers, tmp_path, steal_and_touch)
    lost = app.repo.get(ids[0])
    assert (lost.observed, lost.lease_owner) == (Observed.RUNNING, "elsewhere")
    assert "Suspended" not in [t.reason for t in app.repo.history(ids[0])]
    assert all(suspended_once(app, env_id) for env_id in ids[1:])
    assert app.repo.get(ids[1]).lease_owner is None
    assert counts.commits == 4, counts.verbs  # the lease round, the steal, the touch, the save round
    assert suspended_events(events) == ids[1:]


def conflict() -> OperationalError:
    class Deadlock(Exception):
        sqlstate = "40P01"

    return OperationalError("UPDATE environments", {}, Deadlock("deadlock detected"))


def failing_writes(app: App, fail: Callable[[str, int], Exception | None]) -> None:
    """The compare-and-set UPDATE runs (one environment's, or a round's batch), then raises
    `fail(env_id, call)` when that is an error (each environment of a batch counts as a call)."""
    bump, bump_many, calls = app.repo.bump_version, app.repo.bump_versions, [0]

    def check(env_id: str) -> None:
        calls[0] += 1
        error = fail(env_id, calls[0])
        if error is not None:
            raise error

    def bump_then_fail(session: Any, env_id: str, *args: Any) -> bool:
        done = bump(session, env_id, *args)
        check(env_id)
        return done

    def bump_many_then_fail(session: Any, owner: str, writes: list[CasWrite]) -> bool:
        done = bump_many(session, owner, writes)
        for write in writes:
            check(write.env_id)
        return done

    app.repo.bump_version = bump_then_fail  # type: ignore[method-assign]
    app.repo.bump_versions = bump_many_then_fail  # type: ignore[method-assign]


async def test_a_write_conflict_runs_the_round_again(
    app: App, providers: dict[str, MemoryProvider], tmp_path: Path
) -> None:
    def deadlock_once(_ids: list[str]) -> None:
        failing_writes(app, lambda _env_id, call: conflict() if call == LABS else None)

    ids, counts, events = await run(app, providers, tmp_path, deadlock_once)
    assert all(suspended_once(app, env_id) for env_id in ids)
    assert counts.commits == 2, counts.verbs  # the rolled back attempt committed nothing
    assert suspended_events(events) == ids  # once each: nothing for the attempt rolled back


async def test_a_bad_write_leaves_the_others_to_save_alone(
    app: App, providers: dict[str, MemoryProvider], tmp_path: Path
) -> None:
    failures: list[str] = []

    def broken(env_id: str, bad: str) -> Exception | None:
        if env_id != bad or len(failures) == 2:  # in the round, then alone; its retry later saves
            return None
        failures.append(env_id)
        return OperationalError("UPDATE environments", {}, Exception("value out of range"))

    ids, _counts, events = await run(
        app,
        providers,
        tmp_path,
        lambda ids: failing_writes(app, lambda env_id, _call: broken(env_id, ids[-1])),
    )
    assert failures == [ids[-1]] * 2
    assert all(suspended_once(app, env_id) for env_id in ids[:-1])
    bad = app.repo.get(ids[-1])
    assert (bad.observed, bad.last_reason, bad.lease_owner) == (Observed.RUNNING, "OperationalError", None)
    assert suspended_events(events) == ids[:-1]


async def test_idle_suspends_save_their_intent_and_outcome_in_shared_rounds(app: App, tmp_path: Path) -> None:
    """An idle suspend saves twice (the new intent before the provider is asked, then the outcome): the
    passes that run together share a commit for each, not one commit each for the first."""
    lab = write_lab(tmp_path)
    ids = sorted(app.environments.launch(lab, f"learner{n}").id for n in range(LABS))
    for env_id in ids:
        assert await settle(app, env_id) == Observed.RUNNING
    app.controller.clock.now += 11 * 60  # type: ignore[attr-defined]  # past the lab's idle_suspend (10m)
    with counted(app) as counts, published(app) as events:
        await together(app, ids)
    for env_id in ids:
        record = app.repo.get(env_id)
        assert (record.desired, record.observed, record.lease_owner) == ("suspended", "suspended", None)
        reasons = [t.reason for t in app.repo.history(env_id)]
        assert reasons[-2] == "Idle" and suspended_once(app, env_id), reasons
    assert counts.commits == 3, counts.verbs  # the lease round, the intents' round, the outcomes' round
    assert suspended_events(events) == ids
