"""The soak in CI: 200 learners launch, use, suspend, reset and delete their labs at random while the
controller meets provider errors, hangs and kills and is restarted; afterwards nothing is lost, leaked
or stuck. Bounded by steps (the clock is fake); the seed is printed, and STACKLAB_SOAK_SEED replays one.
A longer run: bench/soak.py.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.engine import Clock, memory_app, write_lab
from tests.support.memory_provider import MemoryProvider
from tests.support.soak import Soak, soak_settings

from stacklab.config import Settings
from stacklab.types import Desired, Observed
from stacklab.wiring import App

LEARNERS = 200
STEPS = 1000


@pytest.fixture
def seed() -> int:
    chosen = int(os.environ.get("STACKLAB_SOAK_SEED") or random.SystemRandom().randrange(2**32))
    print(f"soak seed {chosen} (STACKLAB_SOAK_SEED={chosen} replays this run)")
    return chosen


async def test_soak_keeps_every_lab_owned_settled_and_single(
    tmp_path: Path, sshd_port: int, seed: int
) -> None:
    settings = soak_settings(tmp_path / "data", f"sqlite:///{tmp_path / 'soak.db'}")
    soak = Soak(settings, tmp_path, ("127.0.0.1", sshd_port), LEARNERS, seed)
    try:
        figures = await soak.run(STEPS)
    finally:
        soak.close()
    print("\n".join(figures.lines()))
    assert figures.violations == 0, "\n".join(figures.problems[:20])
    assert figures.kills > 0 and figures.creates > LEARNERS / 2, "the soak did too little to prove anything"


# ------------------------------------------------------------------------------------------------------
# what the soak found, pinned down: a learner's request made while the lab is launching


@pytest.fixture
def app(settings: Settings, cloud: dict[str, MemoryProvider], clock: Clock) -> Iterator[App]:
    built = memory_app(settings, cloud, clock)
    yield built
    built.close()


async def passes(app: App, clock: Clock, count: int = 10) -> None:
    """Passes over what is due, a second apart: whatever a learner asked for is acted on in a few."""
    for _ in range(count):
        clock.now += 1
        await app.engine.run_pass()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("request_", ["suspend", "reset"])
async def test_a_request_made_while_launching_is_carried_out_once_launched(
    app: App, tmp_path: Path, clock: Clock, request_: str
) -> None:
    record = app.environments.launch(write_lab(tmp_path), "early", "c1")
    await app.controller.reconcile(record.id)  # the create is under way
    if request_ == "suspend":
        app.environments.request(record.id, Desired.SUSPENDED, "Test")
    else:
        app.environments.reset(record.id)
    await passes(app, clock)
    current = app.repo.get(record.id)
    assert app.environments.settled(current), (current.desired, current.observed, current.reset_requested)
    expected = Observed.SUSPENDED if request_ == "suspend" else Observed.RUNNING
    assert current.observed == expected
    if request_ == "reset":
        assert "Reset" in [t.reason for t in app.repo.history(record.id)]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_reset_then_a_delete_leaves_nothing_pending(app: App, tmp_path: Path, clock: Clock) -> None:
    record = app.environments.launch(write_lab(tmp_path), "leaving", "c1")
    await passes(app, clock)
    app.environments.reset(record.id)
    app.environments.request(record.id, Desired.DELETED, "Test")
    await passes(app, clock)
    current = app.repo.get(record.id)
    assert current.observed == Observed.DELETED
    assert app.environments.settled(current) and not current.reset_requested
