"""Idleness on real databases with a real SSH server and a clock the test moves (envs/idleness.py).

The page's presence (hidden, closed, visible), a unit view's pre-resume and activity move the idle deadline;
each deadline is saved as the environment's `due_at`, so that the scheduler of either runner sends the pass
that pauses the lab; `keep_running_while` runs over SSH before an idle pause. (The same on real LXC and in
chromium: tests/e2e/test_idle.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.engine import settle, write_lab

from stacklab.envs.idleness import Away
from stacklab.store.repository import EnvKey
from stacklab.types import Desired, Observed
from stacklab.wiring import App

pytestmark = pytest.mark.db

TIMEOUTS = (
    "{launch: 30s, idle_suspend: 10m, delete_after: 1d, idle_suspend_hidden: 2m, close_grace: 40s, "
    "pre_resume_idle: 5m}"
)


def lab_file(tmp_path: Path, extra: str = "") -> Path:
    path = write_lab(tmp_path, extra=extra)
    path.write_text(path.read_text().replace("{launch: 30s, idle_suspend: 10m, delete_after: 1d}", TIMEOUTS))
    return path


async def running(app: App, tmp_path: Path, learner: str, extra: str = "") -> str:
    record = app.environments.launch(lab_file(tmp_path, extra), learner, "c1")
    assert await settle(app, record.id) == Observed.RUNNING
    return record.id


def advance(app: App, seconds: float) -> float:
    app.controller.clock.now += seconds  # type: ignore[attr-defined]
    return app.controller.clock()


async def pass_at_due(app: App, env_id: str) -> str:
    """Move the clock to the environment's due_at (what a scheduler would do) and run the pass then."""
    due = app.repo.get(env_id).due_at
    assert due is not None
    app.controller.clock.now = max(app.controller.clock(), due)  # type: ignore[attr-defined]
    assert env_id in app.repo.due_ids(app.controller.clock(), 100)
    return await settle(app, env_id)


def last_desire(app: App, env_id: str) -> str:
    return [t.reason for t in app.repo.history(env_id) if t.kind == "desired"][-1]


async def test_a_hidden_page_pauses_sooner_and_showing_it_ends_that(app: App, tmp_path: Path) -> None:
    env = await running(app, tmp_path, "hid")
    start = app.controller.clock()
    app.environments.presence(env, "hidden")
    record = app.repo.get(env)
    assert (record.away_kind, record.due_at) == (Away.HIDDEN, start + 120)
    app.environments.presence(env, "visible")
    assert app.repo.get(env).away_kind is None
    await settle(app, env)  # the pass at the old due time moves it to the plain idle deadline
    advance(app, 121)
    assert await settle(app, env) == Observed.RUNNING
    assert app.repo.get(env).due_at == start + 600

    app.environments.presence(env, "hidden")
    assert await pass_at_due(app, env) == Observed.SUSPENDED
    assert last_desire(app, env) == "PageHidden"
    assert app.repo.get(env).away_kind is None  # the pause used the marker


async def test_a_closed_page_pauses_after_the_grace_and_a_reload_keeps_the_lab(
    app: App, tmp_path: Path
) -> None:
    env = await running(app, tmp_path, "close")
    app.environments.presence(env, "closed")  # a reload: the old page's beacon ...
    assert app.repo.get(env).due_at == app.controller.clock() + 40
    app.environments.request(env, Desired.RUNNING, "ResumeRequested")  # ... and the new page opening
    assert app.repo.get(env).away_kind is None
    assert await pass_at_due(app, env) == Observed.RUNNING

    app.environments.presence(env, "closed")  # closed for good
    assert await pass_at_due(app, env) == Observed.SUSPENDED
    assert last_desire(app, env) == "PageClosed"
    app.environments.presence(env, "hidden")  # a paused lab's page reports nothing that matters
    assert app.repo.get(env).away_kind is None


async def test_activity_ends_a_marker_at_once_within_the_throttle(app: App, tmp_path: Path) -> None:
    env = await running(app, tmp_path, "act")
    app.environments.touch(env)  # activity just written: the next touch is within the throttle
    app.environments.presence(env, "closed")
    typed_at = advance(app, 1)
    app.environments.touch(env)
    assert app.repo.get(env).away_kind is None
    assert await pass_at_due(app, env) == Observed.RUNNING
    assert app.repo.get(env).due_at == typed_at + 600


async def test_pre_resume_wakes_a_paused_lab_that_pauses_again_without_activity(
    app: App, tmp_path: Path
) -> None:
    env = await running(app, tmp_path, "pre")
    key = EnvKey("c1", "demo", "pre")
    assert app.environments.prepare(key)[1] is False  # running: a view is not activity, nothing changes
    assert app.environments.prepare(EnvKey("c1", "demo", "nobody")) == (None, False)
    app.environments.request(env, Desired.SUSPENDED, "test")
    assert await settle(app, env) == Observed.SUSPENDED

    record, woken = app.environments.prepare(key)
    assert woken and record is not None and record.away_kind == Away.PRERESUME
    assert app.environments.prepare(key)[1] is False  # waking already: once
    advance(app, 30)
    assert await settle(app, env) == Observed.RUNNING
    ready_at = app.controller.clock()
    # Opening the page (launch from the unit, the page's resume) is not activity: the short limit stays.
    app.environments.launch(lab_file(tmp_path), "pre", "c1")
    app.environments.request(env, Desired.RUNNING, "ResumeRequested")
    assert app.repo.get(env).due_at == ready_at + 300  # counted from ready, not from the view
    assert await pass_at_due(app, env) == Observed.SUSPENDED
    assert last_desire(app, env) == "PreResumeUnused"

    app.environments.prepare(key)
    assert await settle(app, env) == Observed.RUNNING
    typed_at = app.controller.clock()
    app.environments.touch(env)  # the learner types: the lab keeps its full idle limit
    assert app.repo.get(env).away_kind is None
    assert await pass_at_due(app, env) == Observed.RUNNING
    assert app.repo.get(env).due_at == typed_at + 600


async def test_keep_running_while_defers_an_idle_pause_while_it_exits_0(app: App, tmp_path: Path) -> None:
    flag = tmp_path / "build-running"
    keep = f"keep_running_while: {{node: main, script: 'test -e {flag}', timeout: 10s}}"
    env = await running(app, tmp_path, "keep", extra=keep)
    flag.touch()  # the sshd of these tests runs scripts on this host
    app.environments.presence(env, "closed")
    assert await pass_at_due(app, env) == Observed.RUNNING
    history = app.repo.history(env)
    assert history[-1].reason == "KeptRunning" and "PageClosed deferred" in history[-1].message
    assert app.repo.get(env).desired == Desired.RUNNING
    assert app.repo.get(env).due_at == app.controller.clock() + 40  # the closed page's grace, again

    flag.unlink()  # the build ended
    assert await pass_at_due(app, env) == Observed.SUSPENDED
    reasons = [t.reason for t in app.repo.history(env)]
    assert "NotKeptRunning" in reasons and last_desire(app, env) == "PageClosed"
