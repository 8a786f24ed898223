"""Time used (store/usage.py) from the transitions the engine really records, on SQLite, PostgreSQL and
MariaDB: suspend/resume cycles, a service restart in between, an interval still open, a window."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.engine import Clock, memory_app, settle, write_lab
from tests.support.memory_provider import MemoryProvider

from stacklab.config import Settings
from stacklab.store.usage import IDS_PER_QUERY, running_seconds
from stacklab.types import Desired, Observed
from stacklab.wiring import App

pytestmark = pytest.mark.db


async def _move(app: App, env_id: str, desired: Desired, expected: Observed) -> None:
    app.environments.request(env_id, desired, "TestRequest")
    assert await settle(app, env_id) == expected


async def test_running_time_counts_intervals_across_a_restart(
    settings: Settings, providers: dict[str, MemoryProvider], tmp_path: Path
) -> None:
    clock = Clock()
    t0 = clock.now
    app = memory_app(settings, providers, clock)
    lab = write_lab(tmp_path)
    try:
        erin = app.environments.launch(lab, "erin").id
        assert await settle(app, erin) == Observed.RUNNING  # running from t0
        clock.now += 600
        await _move(app, erin, Desired.SUSPENDED, Observed.SUSPENDED)  # 600 s
        clock.now += 1000  # paused: not counted
        await _move(app, erin, Desired.RUNNING, Observed.RUNNING)
        frank = app.environments.launch(lab, "frank").id
        assert await settle(app, frank) == Observed.RUNNING
        clock.now += 100
        await _move(app, frank, Desired.DELETED, Observed.DELETED)  # 100 s, then gone
    finally:
        app.close()
    # A new process on the same database: nothing of the above is in memory any more.
    app = memory_app(settings, providers, clock)
    try:
        clock.now += 200
        await _move(app, erin, Desired.SUSPENDED, Observed.SUSPENDED)  # 100 + 200 s
        clock.now += 50
        await _move(app, erin, Desired.RUNNING, Observed.RUNNING)
        clock.now += 120  # still running now: counted up to now
        never = app.environments.launch(lab, "gina").id  # queued, never ran
        others = [f"x{i:05d}" for i in range(IDS_PER_QUERY + 10)]  # more ids than one query binds
        used = running_seconds(app.repo, [*others, erin, frank, never], until=clock.now)
        assert used == {erin: 600 + 300 + 120, frank: 100}
        # A window (a cost report's period): only the running time inside it.
        window = running_seconds(app.repo, [erin, frank], since=t0 + 500, until=t0 + 1700)
        assert window == {erin: 100 + 100, frank: 100}
        assert running_seconds(app.repo, [erin], until=t0 + 1700 - 1800) == {}
    finally:
        app.close()
