"""Usage limits (envs/allowance.py) on the engine, on SQLite, PostgreSQL and MariaDB: time counted from the
recorded transitions across suspends and a restart, a running lab paused by the policy at the moment it
reaches a `block` limit (the deadline in the database), a resume refused past it, a grant, a new week,
per-course allowances, a course-wide limit, and `warn` that only tells."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from tests.support.engine import Clock, memory_app, settle
from tests.support.memory_provider import MemoryProvider

from stacklab.config import Settings
from stacklab.envs.allowance import WEEK_S, week_start
from stacklab.envs.transitions import Journal
from stacklab.errors import UsageLimitReached
from stacklab.store.grants import grants_of
from stacklab.store.repository import EnvKey
from stacklab.types import Desired, Observed
from stacklab.wiring import App

pytestmark = pytest.mark.db


def limited_lab(tmp_path: Path, limit: str, lab_id: str = "demo") -> Path:
    """A one-node lab (idle suspend after 8 h: only the limit pauses it here) with `usage_limit: LIMIT`."""
    path = tmp_path / f"{lab_id}.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            schema: 1
            id: {lab_id}
            title: Demo
            login_user: learner
            providers: [{{name: a, type: local}}]
            local: {{nodes: [{{name: main}}]}}
            timeouts: {{launch: 30s, idle_suspend: 8h, delete_after: 30d}}
            usage_limit: {limit}
            """
        )
    )
    return path


async def _move(app: App, env_id: str, desired: Desired, expected: Observed) -> None:
    app.environments.request(env_id, desired, "TestRequest")
    assert await settle(app, env_id) == expected


async def _when_due(app: App, clock: Clock, env_id: str) -> str:
    """Move the clock to the environment's due time and run the pass the scheduler would send then."""
    due = app.repo.get(env_id).due_at
    assert due is not None
    clock.now = max(clock.now, due)
    return await settle(app, env_id)


async def test_a_block_limit_counts_pauses_refuses_and_grants(
    settings: Settings, providers: dict[str, MemoryProvider], tmp_path: Path
) -> None:
    monday = week_start(1_800_000_000.0)
    clock = Clock(monday + 3600)  # Monday 01:00 UTC
    lab = limited_lab(tmp_path, "{hours: 1, per: week, policy: block, courses: {c2: {hours: 2}}}")
    app = memory_app(settings, providers, clock)
    try:
        env = app.environments.launch(lab, "erin").id
        assert await settle(app, env) == Observed.RUNNING
        assert app.repo.get(env).usage_limit_at == clock.now + 3600
        clock.now += 1500
        await _move(app, env, Desired.SUSPENDED, Observed.SUSPENDED)  # 25 min used
        clock.now += 4000  # paused: not counted
    finally:
        app.close()
    app = memory_app(settings, providers, clock)  # a restart: nothing above is in process memory
    try:
        allowance = app.environments.allowance(app.repo.get(env))
        assert allowance is not None and (allowance.used_s, allowance.remaining_s) == (1500, 2100)
        await _move(app, env, Desired.RUNNING, Observed.RUNNING)
        record = app.repo.get(env)
        assert record.usage_limit_at == clock.now + 2100 == record.due_at  # before the idle deadline
        # The scheduler's pass at the deadline pauses the lab, with the reason in its history.
        assert await _when_due(app, clock, env) == Observed.SUSPENDED
        assert app.repo.history(env)[-2].reason == "UsageLimit"
        assert app.environments.allowance(app.repo.get(env)).blocked  # type: ignore[union-attr]
        # Past the limit: a resume is refused; activity and a relaunch leave it paused.
        with pytest.raises(UsageLimitReached, match="used all 1h of lab time on this lab this week"):
            app.environments.request(env, Desired.RUNNING, "ResumeRequested")
        assert app.environments.touch(env).desired == Desired.SUSPENDED  # a late keystroke wakes nothing
        assert app.environments.launch(lab, "erin").desired == Desired.SUSPENDED
        assert app.environments.prepare(EnvKey("default", "demo", "erin"))[1] is False  # no pre-resume
        # Staff grant 30 minutes: the learner may resume, and is paused again when they are used.
        app.environments.grant(env, 0.5, "lost time to a broken node", "cli:tester")
        assert [g.seconds for g in grants_of(app.repo, "default", "erin")] == [1800]
        assert app.repo.history(env)[-1].reason == "UsageGranted"
        await _move(app, env, Desired.RUNNING, Observed.RUNNING)
        assert app.repo.get(env).usage_limit_at == clock.now + 1800
        assert await _when_due(app, clock, env) == Observed.SUSPENDED
        # A new week starts afresh (grants of last week no longer count).
        clock.now = monday + WEEK_S + 60
        allowance = app.environments.allowance(app.repo.get(env))
        assert allowance is not None and (allowance.used_s, allowance.granted_s) == (0, 0)
        await _move(app, env, Desired.RUNNING, Observed.RUNNING)
        # Another course run of the same lab file has 2 hours.
        other = app.environments.launch(lab, "erin", course="c2").id
        assert await settle(app, other) == Observed.RUNNING
        assert app.repo.get(other).usage_limit_at == clock.now + 7200
    finally:
        app.close()


async def test_a_running_lab_crossing_into_a_new_week_is_looked_at_then(
    settings: Settings, providers: dict[str, MemoryProvider], tmp_path: Path
) -> None:
    sunday_late = week_start(1_800_000_000.0) + WEEK_S - 600  # Sunday 23:50 UTC
    clock = Clock(sunday_late)
    lab = limited_lab(tmp_path, "{hours: 1}")  # per week, block: the defaults
    app = memory_app(settings, providers, clock)
    try:
        env = app.environments.launch(lab, "gina").id
        assert await settle(app, env) == Observed.RUNNING
        assert app.repo.get(env).usage_limit_at == sunday_late + 600  # the week ends before the hour
        assert await _when_due(app, clock, env) == Observed.RUNNING  # a fresh week: 1 h from now
        assert app.repo.get(env).usage_limit_at == clock.now + 3600
    finally:
        app.close()


async def test_a_resume_granted_time_allows_is_kept_when_it_lands_during_a_pass(
    settings: Settings, providers: dict[str, MemoryProvider], tmp_path: Path
) -> None:
    """Paused by its limit, then granted time: the learner's resume, committed while the pass the grant
    sent is under way, is merged into that pass's save and the lab runs (found under load in CI: the merge
    judged the resume against the deadline of the run the limit had ended, and paused it again)."""
    clock = Clock()
    lab = limited_lab(tmp_path, "{hours: 0.5, per: total}")
    app = memory_app(settings, providers, clock)
    try:
        env = app.environments.launch(lab, "ida").id
        assert await settle(app, env) == Observed.RUNNING
        clock.now += 1800
        assert await _when_due(app, clock, env) == Observed.SUSPENDED  # the limit paused it
        app.environments.grant(env, 1, "the cloud was down", "cli:tester")
        save = app.controller.saves.save

        async def resume_first(journal: Journal) -> None:  # the click lands between load and save
            if journal.record.id == env and journal.record.desired == Desired.SUSPENDED:
                app.environments.request(env, Desired.RUNNING, "ResumeRequested")
            await save(journal)

        app.controller.saves.save = resume_first  # type: ignore[method-assign]
        await app.controller.reconcile(env)  # the pass the grant made due
        app.controller.saves.save = save  # type: ignore[method-assign]
        assert await settle(app, env) == Observed.RUNNING
        record = app.repo.get(env)
        assert record.desired == Desired.RUNNING and record.usage_limit_at == clock.now + 3600
        assert "UsageLimit" not in [t.reason for t in app.repo.history(env)[-3:]]
    finally:
        app.close()


async def test_a_course_wide_total_limit_and_warn(
    settings: Settings, providers: dict[str, MemoryProvider], tmp_path: Path
) -> None:
    clock = Clock()
    first = limited_lab(tmp_path, "{hours: 0.5, per: total, scope: course}", "first")
    second = limited_lab(tmp_path, "{hours: 0.5, per: total, scope: course}", "second")
    warned = limited_lab(tmp_path, "{hours: 0.5, per: total, policy: warn}", "warned")
    app = memory_app(settings, providers, clock)
    try:
        one = app.environments.launch(first, "hal").id
        warn = app.environments.launch(warned, "hal").id
        assert await settle(app, one) == await settle(app, warn) == Observed.RUNNING
        assert app.repo.get(warn).usage_limit_at is None  # warn: nothing to enforce
        clock.now += 1800
        assert await _when_due(app, clock, one) == Observed.SUSPENDED
        # The course's time is used up: a first launch of another lab of the course is refused.
        with pytest.raises(UsageLimitReached, match="on this course's labs"):
            app.environments.launch(second, "hal")
        # `warn` goes on past its limit and says so.
        clock.now += 600
        app.environments.touch(warn)
        assert await settle(app, warn) == Observed.RUNNING
        allowance = app.environments.allowance(app.repo.get(warn))
        assert allowance is not None and allowance.over and not allowance.blocked
        assert "You may go on working" in allowance.sentence()
    finally:
        app.close()


def test_the_time_query_reads_the_transitions_through_their_index(tmp_path: Path) -> None:
    """SQLite's plan for the running-time query: the (env_id, kind, at) index, not a scan of the table."""
    from sqlalchemy import select, text

    from stacklab.store.database import make_engine, migrate
    from stacklab.store.usage import _intervals

    engine = make_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    migrate(engine)
    query = select(_intervals(["0000beef", "0000cafe"], Observed.RUNNING, 2e9, 1e9))
    sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as connection:
        plan = " | ".join(row[-1] for row in connection.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
    engine.dispose()
    assert "ix_transitions_env_kind_at" in plan and "SCAN transitions" not in plan, plan
