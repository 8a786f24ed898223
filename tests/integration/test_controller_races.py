"""The controller under interleavings and unexpected errors: nothing a learner owns is lost.

Each test forces one interleaving that a busy service meets by chance (a launch during a sweep, a
learner's click during a pass) or an error the controller did not plan for, on the real databases.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from tests.support.engine import memory_app, settle, write_lab
from tests.support.memory_provider import MemoryProvider

from stacklab.errors import TransientProviderError
from stacklab.providers.base import Handle, StackState
from stacklab.secrets import Vault
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Desired, Observed
from stacklab.wiring import App

pytestmark = pytest.mark.db


class GatedProvider(MemoryProvider):
    """A memory provider whose list or suspend waits at a gate the test opens, after a hook runs."""

    def __init__(self, name: str, settings: dict[str, object]) -> None:
        super().__init__(name, settings)
        self.gate = asyncio.Event()
        self.gated: set[str] = set()
        self.reached = asyncio.Event()
        self.unreachable: set[str] = set()

    async def _pass_gate(self, call: str) -> None:
        if call in self.gated:
            self.reached.set()
            await asyncio.wait_for(self.gate.wait(), 30)

    async def list(self) -> list[str]:
        await self._pass_gate("list")
        return await super().list()

    async def suspend(self, handle: Handle) -> None:
        await self._pass_gate("suspend")
        await super().suspend(handle)

    async def delete(self, handle: Handle) -> None:
        if "delete" in self.unreachable:
            raise TransientProviderError(f"{self.name} is not answering")
        await super().delete(handle)


@pytest.fixture
def providers(sshd_port: int) -> dict[str, MemoryProvider]:
    return {name: GatedProvider(name, {"ssh": ("127.0.0.1", sshd_port)}) for name in ("local", "a", "b")}


async def test_a_lab_launched_during_the_sweep_is_not_taken_for_a_leak(
    app: App, tmp_path: Path, providers: dict[str, GatedProvider]
) -> None:
    provider = providers["a"]
    lab = write_lab(tmp_path)
    assert await settle(app, app.environments.launch(lab, "oldtimer").id) == Observed.RUNNING
    provider.gated.add("list")
    sweep = asyncio.create_task(app.engine.sweep())
    await asyncio.wait_for(provider.reached.wait(), 30)
    record = app.environments.launch(lab, "newcomer")  # while the sweep lists
    assert await settle(app, record.id) == Observed.RUNNING
    provider.gate.set()
    report = await asyncio.wait_for(sweep, 30)
    assert report.removed == []
    assert provider.stacks.get(record.stack_name) == StackState.RUNNING
    assert app.repo.get(record.id).observed == Observed.RUNNING


async def test_a_leak_that_an_environment_takes_back_meanwhile_is_kept(
    app: App, tmp_path: Path, providers: dict[str, GatedProvider]
) -> None:
    """A stack with no owner when the owners are read, whose environment then runs again (another
    process relaunched it), is re-checked under that environment's lease and kept."""
    provider = providers["a"]
    record = app.environments.launch(write_lab(tmp_path), "returning")
    assert await settle(app, record.id) == Observed.RUNNING
    app.environments.request(record.id, Desired.DELETED, "test")
    assert await settle(app, record.id) == Observed.DELETED
    provider.stacks[record.stack_name] = StackState.RUNNING  # left behind: a leak
    read_owners = app.repo.stack_owners

    def owners_then_relaunch() -> dict[str, str]:
        owners = read_owners()

        def relaunched(current: EnvironmentRecord, _session: object) -> None:
            current.desired, current.observed, current.provider = Desired.RUNNING, Observed.RUNNING, "a"

        app.repo.update(record.id, relaunched)  # another process's pass brought it back
        return owners

    app.repo.stack_owners = owners_then_relaunch  # type: ignore[method-assign]
    report = await app.engine.sweep()
    assert report.removed == []
    assert record.stack_name in provider.stacks


async def test_a_wake_up_during_a_pass_is_not_lost(
    app: App, tmp_path: Path, providers: dict[str, GatedProvider]
) -> None:
    """The learner comes back while the pass is suspending their lab: the pass's save must not bury
    the wake-up, so the next pass (from any runner) resumes the lab."""
    provider = providers["a"]
    record = app.environments.launch(write_lab(tmp_path), "backsoon")
    assert await settle(app, record.id) == Observed.RUNNING
    app.environments.request(record.id, Desired.SUSPENDED, "test")
    provider.gated.add("suspend")
    suspending = asyncio.create_task(app.controller.reconcile(record.id))
    await asyncio.wait_for(provider.reached.wait(), 30)
    app.environments.touch(record.id)  # the learner is back, mid-pass
    provider.gated.clear()
    provider.gate.set()
    await asyncio.wait_for(suspending, 30)
    current = app.repo.get(record.id)
    assert current.desired == Desired.RUNNING
    assert current.due_at is not None and current.due_at <= app.controller.clock()
    await app.engine.run_pass()  # any runner: only what is due in the database is looked at
    assert app.repo.get(record.id).observed == Observed.RUNNING
    assert provider.stacks[record.stack_name] == StackState.RUNNING


async def test_an_unexpected_error_backs_off_is_recorded_and_ends_in_failed(
    app: App, tmp_path: Path, providers: dict[str, GatedProvider]
) -> None:
    provider = providers["a"]
    record = app.environments.launch(write_lab(tmp_path), "unlucky")
    assert await settle(app, record.id) == Observed.RUNNING
    provider.fail_suspend = RuntimeError("disk on fire")
    app.environments.request(record.id, Desired.SUSPENDED, "test")
    await app.controller.reconcile(record.id)
    current = app.repo.get(record.id)
    assert (current.attempts, current.last_reason, current.last_error) == (1, "RuntimeError", "disk on fire")
    assert current.due_at == current.next_attempt_at and current.next_attempt_at > app.controller.clock()
    assert current.lease_owner is None
    assert await app.engine.run_pass() == 0  # not retried every poll interval: it waits for its backoff
    for _ in range(app.controller.settings.max_attempts):
        app.controller.clock.now += 60  # type: ignore[attr-defined]
        await app.controller.reconcile(record.id)
    current = app.repo.get(record.id)
    assert (current.observed, current.last_reason) == (Observed.FAILED, "RuntimeError")
    reasons = [t.reason for t in app.repo.history(record.id)]
    assert reasons.count("RuntimeError") == app.controller.settings.max_attempts  # retries, then Failed


async def test_a_secret_that_no_longer_decrypts_is_reported_not_looped(app: App, tmp_path: Path) -> None:
    hook = "hooks: {before_suspend: {node: main, script: 'true'}}"
    record = app.environments.launch(write_lab(tmp_path, extra=hook), "rotated")
    assert await settle(app, record.id) == Observed.RUNNING
    app.controller.vault = Vault(Fernet.generate_key().decode())  # the operator changed secret_key
    app.environments.request(record.id, Desired.SUSPENDED, "test")
    await app.controller.reconcile(record.id)
    current = app.repo.get(record.id)
    assert current.attempts == 1 and "cannot be decrypted" in (current.last_error or "")
    assert current.next_attempt_at is not None and current.next_attempt_at > app.controller.clock()


async def test_a_hung_provider_call_is_cut_recorded_and_retried(
    app: App, tmp_path: Path, providers: dict[str, GatedProvider]
) -> None:
    """A cloud API call that never answers must not hold the lab (and its lease) forever."""
    provider = providers["a"]
    record = app.environments.launch(write_lab(tmp_path), "patient")
    assert await settle(app, record.id) == Observed.RUNNING
    app.controller.settings = replace(app.controller.settings, provider_timeout_s=0.2)
    provider.gated.add("suspend")  # the gate stays shut: the call hangs
    app.environments.request(record.id, Desired.SUSPENDED, "test")
    await asyncio.wait_for(app.controller.reconcile(record.id), 30)
    current = app.repo.get(record.id)
    assert (current.attempts, current.last_reason, current.lease_owner) == (1, "ProviderTimeout", None)
    assert "did not answer within 0.2s" in (current.last_error or "")
    provider.gated.clear()  # the cloud answers again
    app.controller.clock.now += 60  # type: ignore[attr-defined]
    assert await settle(app, record.id) == Observed.SUSPENDED


async def test_a_pass_that_outlived_its_lease_saves_nothing(
    app: App, tmp_path: Path, providers: dict[str, GatedProvider]
) -> None:
    """A pass stuck past its lease was taken over by another process: the slow pass must not write its
    stale outcome over the new holder's work."""
    provider = providers["a"]
    record = app.environments.launch(write_lab(tmp_path), "slowpoke")
    assert await settle(app, record.id) == Observed.RUNNING
    app.environments.request(record.id, Desired.SUSPENDED, "test")
    provider.gated.add("suspend")
    slow = asyncio.create_task(app.controller.reconcile(record.id))
    await asyncio.wait_for(provider.reached.wait(), 30)
    other = "otherhost:4242:1"

    def take_over(current: EnvironmentRecord, _session: object) -> None:
        current.lease_owner, current.lease_until = other, app.controller.clock() + 120
        current.last_error = "the other pass's work"

    app.repo.update(record.id, take_over)
    provider.gated.clear()
    provider.gate.set()
    await asyncio.wait_for(slow, 30)
    current = app.repo.get(record.id)
    assert (current.lease_owner, current.last_error) == (other, "the other pass's work")
    assert current.observed == Observed.RUNNING  # the slow pass's "Suspended" was not written
    assert "Suspended" not in [t.reason for t in app.repo.history(record.id)]


async def test_an_unreachable_provider_does_not_keep_the_lab_from_the_next_and_its_leftover_is_swept(
    app: App, tmp_path: Path, providers: dict[str, GatedProvider]
) -> None:
    """Launch timeout on provider a, which then stops answering: the lab still fails over to b; the
    stack a kept is removed by the sweep once a answers, though an environment of that name runs (on b)."""
    a, b = providers["a"], providers["b"]
    a.boot_polls = 10**9
    record = app.environments.launch(
        write_lab(tmp_path, "- {name: a, type: local}\n- {name: b, type: local}"), "x"
    )
    await app.controller.reconcile(record.id)
    await app.controller.reconcile(record.id)
    a.unreachable.add("delete")
    app.controller.clock.now += 31  # type: ignore[attr-defined]
    assert await settle(app, record.id) == Observed.RUNNING
    assert app.repo.get(record.id).provider == "b"
    notes = [(t.from_state, t.reason) for t in app.repo.history(record.id) if t.kind == "provider"]
    assert ("a", "LaunchTimeout") in notes and ("a", "LeftBehind") in notes
    assert record.stack_name in a.stacks  # left behind while a did not answer
    a.unreachable.clear()
    report = await app.engine.sweep()
    assert report.removed == [record.stack_name] and record.stack_name not in a.stacks
    assert b.stacks[record.stack_name] == StackState.RUNNING  # the lab itself is untouched
    assert app.repo.usage() == {"a": 0, "b": 1}


async def test_a_clock_step_back_does_not_stretch_a_scheduled_retry(
    app: App, tmp_path: Path, providers: dict[str, GatedProvider]
) -> None:
    provider = providers["a"]
    record = app.environments.launch(write_lab(tmp_path), "timetraveller")
    assert await settle(app, record.id) == Observed.RUNNING
    provider.fail_suspend = TransientProviderError("cloud busy")
    app.environments.request(record.id, Desired.SUSPENDED, "test")
    await app.engine.run_pass()
    assert app.repo.get(record.id).attempts == 1
    provider.fail_suspend = None
    app.controller.clock.now -= 3600  # type: ignore[attr-defined]  # NTP steps the clock back an hour
    app.controller.clock.now += max(app.controller.settings.retry_backoff_s) * 1.2 + 1  # type: ignore[attr-defined]
    await app.engine.run_pass()  # the scheduler, not a direct pass: the retry is due on the new time
    assert app.repo.get(record.id).observed == Observed.SUSPENDED
    assert "ClockSteppedBack" in [t.reason for t in app.repo.history(record.id)]


async def test_a_restarted_service_sweeps_providers_it_has_not_used_yet(
    app: App, tmp_path: Path, providers: dict[str, GatedProvider]
) -> None:
    """After a restart nothing has touched provider a yet; its leak is found all the same."""
    record = app.environments.launch(write_lab(tmp_path), "gone")
    assert await settle(app, record.id) == Observed.RUNNING
    app.environments.request(record.id, Desired.DELETED, "test")
    assert await settle(app, record.id) == Observed.DELETED
    providers["a"].stacks[record.stack_name] = StackState.RUNNING  # left behind
    restarted = memory_app(app.settings, providers, app.controller.clock)  # type: ignore[arg-type]
    try:
        assert (await restarted.engine.sweep()).removed == [record.stack_name]
    finally:
        restarted.close()


async def test_a_reset_then_a_pause_throws_the_lab_away_and_rests(
    app: App, tmp_path: Path, providers: dict[str, GatedProvider]
) -> None:
    """Reset asked for, then paused again before any pass (found by the soak): the old lab goes, the new
    one waits paused, and the environment rests instead of being due again and again."""
    record = app.environments.launch(write_lab(tmp_path), "changeofmind")
    assert await settle(app, record.id) == Observed.RUNNING
    app.environments.request(record.id, Desired.SUSPENDED, "test")
    assert await settle(app, record.id) == Observed.SUSPENDED
    app.environments.reset(record.id)
    app.environments.request(record.id, Desired.SUSPENDED, "test")
    await app.engine.run_pass()
    await app.engine.run_pass()
    current = app.repo.get(record.id)
    assert (current.desired, current.observed, current.reset_requested) == (
        Desired.SUSPENDED,
        Observed.NEW,
        False,
    )
    assert record.stack_name not in providers["a"].stacks
    assert await app.engine.run_pass() == 0  # nothing due: at rest
