"""The scheduler's store primitives on SQLite, PostgreSQL and MariaDB: the named lease (one holder,
renewed, taken over when expired, given up at once) and claims of due environments (held, skipped by
a second claim, given back when they could not be sent)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
from tests.support.engine import Clock, memory_app, write_lab
from tests.support.memory_provider import MemoryProvider

from stacklab.config import Settings
from stacklab.store import leases
from stacklab.store.due import claim_due, unclaim
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Progress

pytestmark = pytest.mark.db


def clouds() -> dict[str, MemoryProvider]:
    return {name: MemoryProvider(name) for name in ("a", "local")}


def test_one_holder_at_a_time_renewed_taken_over_when_expired_and_given_up(settings: Settings) -> None:
    app = memory_app(settings, clouds(), Clock())
    try:
        repo = app.repo
        assert leases.hold(repo, "scheduler", "a", 100.0, 10.0)
        assert not leases.hold(repo, "scheduler", "b", 105.0, 10.0)  # a holds it until 110
        assert leases.hold(repo, "scheduler", "a", 108.0, 10.0)  # renewed until 118
        assert not leases.hold(repo, "scheduler", "b", 115.0, 10.0)
        assert leases.holder(repo, "scheduler", 115.0) == "a"
        assert leases.hold(repo, "scheduler", "b", 118.5, 10.0)  # a stopped renewing: b takes over
        assert not leases.hold(repo, "scheduler", "a", 119.0, 10.0)
        leases.give_up(repo, "scheduler", "b")
        assert leases.holder(repo, "scheduler", 119.0) is None
        assert leases.hold(repo, "scheduler", "a", 119.0, 10.0)  # at once, not after b's expiry
    finally:
        app.close()


def test_due_environments_are_claimed_once_until_the_hold_ends(settings: Settings, tmp_path: Path) -> None:
    clock = Clock()
    app = memory_app(settings, clouds(), clock)
    try:
        ids = sorted(app.environments.launch(write_lab(tmp_path), f"l{n}").id for n in range(3))
        now = clock.now
        assert sorted(claim_due(app.repo, now, 10, 30.0)) == ids
        assert claim_due(app.repo, now + 29.0, 10, 30.0) == []  # held: sent once
        assert (
            sorted(claim_due(app.repo, now + 30.0, 2, 30.0) + claim_due(app.repo, now + 30.0, 2, 30.0)) == ids
        )
        unclaim(app.repo, ids[:1], now + 31.0, now + 60.0)  # the broker refused: due again at once
        assert claim_due(app.repo, now + 31.0, 10, 30.0) == ids[:1]
    finally:
        app.close()


def step(record: EnvironmentRecord, _session: object, progress: Progress, due_at: float) -> None:
    record.progress, record.due_at = progress, due_at


def test_a_step_under_way_is_claimed_before_new_work_due_earlier(settings: Settings, tmp_path: Path) -> None:
    """A class launching at once makes every launch due at the same moment; a lab whose stack is being
    made (its next look due a moment later) goes first, not after every other create."""
    clock = Clock()
    app = memory_app(settings, clouds(), clock)
    try:
        ids = [app.environments.launch(write_lab(tmp_path), f"l{n}").id for n in range(4)]
        booting, resuming = ids[2], ids[3]
        steps = ((booting, Progress.BOOTING, 1.0), (resuming, Progress.RESUMING, 2.0))
        for env_id, progress, due_in in steps:
            app.repo.update(env_id, partial(step, progress=progress, due_at=clock.now + due_in))
        now = clock.now + 3.0
        assert claim_due(app.repo, now, 1, 30.0) == [booting]
        second = claim_due(app.repo, now, 2, 30.0)
        assert second[0] == resuming and second[1] in ids[:2]  # then the rest (launched together)
        assert claim_due(app.repo, now, 10, 30.0) == [next(i for i in ids[:2] if i != second[1])]
    finally:
        app.close()
