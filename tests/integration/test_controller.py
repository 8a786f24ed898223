"""The engine end to end on real databases (SQLite, PostgreSQL, MariaDB) and a real SSH server.

The provider here is the in-memory one, because these tests need providers that fail, fill up and lose
stacks on demand; the LXC provider has its own tests with real containers.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.support.engine import settle, write_lab
from tests.support.memory_provider import MemoryProvider

from stacklab.errors import NotFound, TerminalProviderError, TransientProviderError
from stacklab.providers.base import StackState
from stacklab.types import Desired, Observed
from stacklab.wiring import App

pytestmark = pytest.mark.db


async def test_launch_runs_and_records_history(app: App, tmp_path: Path) -> None:
    record = app.environments.launch(write_lab(tmp_path), "alice", "c1")
    assert await settle(app, record.id) == Observed.RUNNING
    reasons = [(t.kind, t.reason) for t in app.repo.history(record.id)]
    assert ("desired", "Launched") in reasons
    assert ("observed", "Creating") in reasons and ("observed", "Ready") in reasons
    assert app.repo.get(record.id).nodes == {
        "main": {"host": "127.0.0.1", "port": app.repo.get(record.id).nodes["main"]["port"]}
    }


async def test_launch_twice_and_concurrently_gives_one_environment(app: App, tmp_path: Path) -> None:
    lab = write_lab(tmp_path)
    ids = await asyncio.gather(
        *(asyncio.to_thread(lambda: app.environments.launch(lab, "bob", "c1").id) for _ in range(8))
    )
    assert len(set(ids)) == 1
    assert len(app.repo.list()) == 1
    assert app.environments.launch(lab, "bob", "c1").id == ids[0]
    assert app.environments.launch(lab, "bob", "c2").id != ids[0]


async def test_capacity_counts_suspended_and_fails_over(
    app: App, tmp_path: Path, providers: dict[str, MemoryProvider]
) -> None:
    lab = write_lab(tmp_path, "- {name: a, type: local, capacity: 1}\n- {name: b, type: local, capacity: 1}")
    first = app.environments.launch(lab, "l1")
    assert await settle(app, first.id) == Observed.RUNNING
    app.environments.request(first.id, Desired.SUSPENDED, "test")
    assert await settle(app, first.id) == Observed.SUSPENDED
    second = app.environments.launch(lab, "l2")
    assert await settle(app, second.id) == Observed.RUNNING
    assert (app.repo.get(first.id).provider, app.repo.get(second.id).provider) == ("a", "b")
    third = app.environments.launch(lab, "l3")
    await app.controller.reconcile(third.id)  # every provider full: it waits in line (not failed)
    assert app.environments.queue_spot(app.repo.get(third.id))[0] == 1
    assert app.repo.get(third.id).observed == Observed.NEW
    app.environments.request(first.id, Desired.DELETED, "test")
    assert await settle(app, first.id) == Observed.DELETED
    assert app.repo.usage() == {"a": 0, "b": 1}
    assert await settle(app, third.id) == Observed.RUNNING  # woken when first gave its place back
    assert app.repo.get(third.id).provider == "a"


async def test_failing_provider_fails_over_to_the_next(
    app: App, tmp_path: Path, providers: dict[str, MemoryProvider]
) -> None:
    providers["a"].fail_create = TerminalProviderError("wrong password", reason="AuthFailed")
    lab = write_lab(tmp_path, "- {name: a, type: local}\n- {name: b, type: local}")
    record = app.environments.launch(lab, "carol")
    assert await settle(app, record.id) == Observed.RUNNING
    assert app.repo.get(record.id).provider == "b"
    notes = [(t.from_state, t.reason) for t in app.repo.history(record.id) if t.kind == "provider"]
    assert ("a", "AuthFailed") in notes
    assert app.repo.usage() == {"a": 0, "b": 1}


async def test_launch_timeout_fails_over_and_cleans_up(
    app: App, tmp_path: Path, providers: dict[str, MemoryProvider]
) -> None:
    providers["a"].boot_polls = 10**9
    lab = write_lab(tmp_path, "- {name: a, type: local}\n- {name: b, type: local}")
    record = app.environments.launch(lab, "dave")
    await app.controller.reconcile(record.id)
    await app.controller.reconcile(record.id)
    app.controller.clock.now += 31  # type: ignore[attr-defined]
    assert await settle(app, record.id) == Observed.RUNNING
    assert app.repo.get(record.id).provider == "b"
    assert providers["a"].stacks == {}
    assert "LaunchTimeout" in [t.reason for t in app.repo.history(record.id)]


async def test_idle_suspends_activity_resumes_age_deletes(
    app: App, tmp_path: Path, providers: dict[str, MemoryProvider]
) -> None:
    record = app.environments.launch(write_lab(tmp_path), "erin")
    assert await settle(app, record.id) == Observed.RUNNING
    clock = app.controller.clock
    clock.now += 5 * 60  # type: ignore[attr-defined]
    app.environments.touch(record.id)
    clock.now += 9 * 60  # type: ignore[attr-defined]
    await app.engine.run_pass()  # the old idle deadline has come, but the learner was active since
    assert app.repo.get(record.id).observed == Observed.RUNNING
    clock.now += 2 * 60  # type: ignore[attr-defined]
    await app.engine.run_pass()
    assert app.repo.get(record.id).observed == Observed.SUSPENDED
    assert providers["a"].stacks[record.stack_name] == StackState.SUSPENDED
    assert "Idle" in [t.reason for t in app.repo.history(record.id)]
    app.environments.touch(record.id)
    await app.engine.run_pass()
    assert app.repo.get(record.id).observed == Observed.RUNNING
    clock.now += 2 * 86400  # type: ignore[attr-defined]
    await app.engine.run_pass()
    await app.engine.run_pass()
    assert app.repo.get(record.id).observed == Observed.DELETED
    assert record.stack_name not in providers["a"].stacks
    assert "Expired" in [t.reason for t in app.repo.history(record.id)]


async def test_nothing_due_means_nothing_reconciled(app: App, tmp_path: Path) -> None:
    record = app.environments.launch(write_lab(tmp_path), "frank")
    await settle(app, record.id)
    assert await app.engine.run_pass() == 0


async def test_transient_errors_retry_with_backoff_then_fail(
    app: App, tmp_path: Path, providers: dict[str, MemoryProvider]
) -> None:
    record = app.environments.launch(write_lab(tmp_path), "gina")
    await settle(app, record.id)
    providers["a"].fail_suspend = TransientProviderError("cloud busy")
    app.environments.request(record.id, Desired.SUSPENDED, "test")
    await app.controller.reconcile(record.id)
    current = app.repo.get(record.id)
    assert (current.observed, current.attempts, current.last_error) == (Observed.RUNNING, 1, "cloud busy")
    assert current.due_at == current.next_attempt_at and current.next_attempt_at > app.controller.clock()
    await app.controller.reconcile(record.id)  # not yet due: no new attempt
    assert app.repo.get(record.id).attempts == 1
    providers["a"].fail_suspend = None
    app.controller.clock.now += 1  # type: ignore[attr-defined]
    await app.controller.reconcile(record.id)
    assert app.repo.get(record.id).observed == Observed.SUSPENDED


async def test_sweep_removes_leaks_and_repairs_vanished(
    app: App, tmp_path: Path, providers: dict[str, MemoryProvider]
) -> None:
    record = app.environments.launch(write_lab(tmp_path), "hank")
    await settle(app, record.id)
    providers["a"].stacks["sl-0badc0de"] = StackState.RUNNING
    providers["a"].stacks["not-ours"] = StackState.RUNNING
    del providers["a"].stacks[record.stack_name]
    report = await app.engine.sweep()
    assert report.removed == ["sl-0badc0de"] and "not-ours" in providers["a"].stacks
    assert report.repaired == [record.id]
    assert await settle(app, record.id) == Observed.RUNNING
    assert record.stack_name in providers["a"].stacks
    assert app.repo.usage()["a"] == 1


async def test_a_dead_holder_does_not_block_the_environment(app: App, tmp_path: Path) -> None:
    record = app.environments.launch(write_lab(tmp_path), "ivy")
    host = app.controller.owner.split(":")[0]
    dead = f"{host}:999999:1"  # a crashed engine's lease, valid for another hour

    def hold(current, _session) -> None:  # type: ignore[no-untyped-def]
        current.lease_owner, current.lease_until = dead, app.controller.clock() + 3600

    app.repo.update(record.id, hold)
    assert await settle(app, record.id) == Observed.RUNNING


async def test_checks_score_and_hooks(app: App, tmp_path: Path) -> None:
    marker = Path("/tmp/stacklab-marker")
    marker.unlink(missing_ok=True)
    hook = "hooks: {before_suspend: {node: main, script: 'exit 3'}}"
    record = app.environments.launch(write_lab(tmp_path, extra=hook), "jo")
    await settle(app, record.id)
    before = await app.environments.check(record.id)
    assert (before.score, before.max_score, before.results[0].hint) == (0, 2, "create the marker")
    marker.touch()
    try:
        after = await app.environments.check(record.id)
    finally:
        marker.unlink()
    assert (after.score, after.counted) == (2, 2)
    again = await app.environments.check(record.id)
    assert (again.score, again.counted) == (0, 2)  # "best" keeps the best attempt
    app.environments.request(record.id, Desired.SUSPENDED, "test")
    assert await settle(app, record.id) == Observed.SUSPENDED
    hooks = [(t.from_state, t.reason) for t in app.repo.history(record.id) if t.kind == "hook"]
    assert hooks == [("before_suspend", "HookFailed")]


async def test_secrets_are_encrypted_at_rest(app: App, tmp_path: Path) -> None:
    record = app.environments.launch(write_lab(tmp_path), "kim")
    await settle(app, record.id)
    record = app.repo.get(record.id)
    assert b"PRIVATE KEY" not in record.sealed_secrets
    target = app.controller.targets(record, app.environments.lab_of(record))["main"]
    assert "PRIVATE KEY" in target.private_key.reveal()
    assert "PRIVATE KEY" not in repr(target)


async def test_exec_runs_on_the_node_and_counts_as_activity(app: App, tmp_path: Path) -> None:
    record = app.environments.launch(write_lab(tmp_path), "lee")
    await settle(app, record.id)
    app.controller.clock.now += 60  # type: ignore[attr-defined]
    result = await app.environments.exec(record.id, "echo out; echo err >&2; cat; exit 3")
    assert (result.exit_status, result.stdout, result.stderr) == (3, "out\n", "err\n")  # cat got EOF at once
    assert app.repo.get(record.id).last_activity_at == app.controller.clock()
    with pytest.raises(NotFound, match="no node 'nope'"):
        await app.environments.exec(record.id, "true", node="nope")


async def test_activity_bursts_are_written_once_per_throttle_interval(app: App, tmp_path: Path) -> None:
    record = app.environments.launch(write_lab(tmp_path), "fay")
    assert await settle(app, record.id) == Observed.RUNNING
    clock = app.controller.clock
    throttle = app.controller.settings.activity_throttle_s
    clock.now += 60  # type: ignore[attr-defined]
    app.environments.touch(record.id)
    first = app.repo.get(record.id).last_activity_at
    assert first == clock.now  # type: ignore[attr-defined]
    for _ in range(5):  # a burst of pings
        clock.now += throttle / 10  # type: ignore[attr-defined]
        app.environments.touch(record.id)
    assert app.repo.get(record.id).last_activity_at == first  # one write for the burst
    clock.now += throttle  # type: ignore[attr-defined]
    app.environments.touch(record.id)
    assert app.repo.get(record.id).last_activity_at == clock.now  # type: ignore[attr-defined]


async def test_one_pass_at_a_time_per_environment_within_a_process(
    app: App, tmp_path: Path, providers: dict[str, MemoryProvider]
) -> None:
    """The lease keeps other processes out; within one process, a second pass started while one is
    running (a drive next to the runner's pass) waits for the next round instead of repeating the step."""
    events: list[str] = []
    app.controller.listeners.append(lambda event, _s, _r: events.append(event))
    record = app.environments.launch(write_lab(tmp_path), "gus")
    for _ in range(20):
        await asyncio.gather(*(app.controller.reconcile(record.id) for _ in range(3)))
        if app.repo.get(record.id).observed == Observed.RUNNING:
            break
    assert app.repo.get(record.id).observed == Observed.RUNNING
    assert [call for call in providers["a"].calls if call[0] == "create"] == [("create", record.stack_name)]
    assert events.count("launched") == 1
