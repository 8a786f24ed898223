"""Warm pools on SQLite, PostgreSQL and MariaDB (memory providers whose nodes are a real SSH server): two
learners launching at once share one ready member between them (one takes it, the other creates), the
leak sweep leaves a handed-over stack alone, a smaller `size` in a new lab version drains the extra member
and staff lists never show members. The key rotation runs for real over SSH, in a HOME of the test's own
(the test server takes any key: tests/integration/test_warm_pools.py proves the old key is refused on LXC).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.support.engine import Clock, memory_app, settle, write_lab
from tests.support.memory_provider import MemoryProvider

from stacklab.config import Settings
from stacklab.envs.controller import unseal
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Desired, Observed
from stacklab.wiring import App

pytestmark = pytest.mark.db


def pooled_lab(tmp_path: Path, size: int) -> Path:
    return write_lab(tmp_path, "- {name: a, type: local}", f"warm: {{size: {size}, max_age: 8h}}")


async def fill(app: App, clock: Clock, count: int) -> list[EnvironmentRecord]:
    """Passes of what is due, a second apart, until `count` members wait suspended."""
    for _ in range(200):
        clock.now += 1
        await app.engine.run_pass()
        members = app.repo.list(pools=True)
        if sum(m.observed == Observed.SUSPENDED and m.desired == Desired.SUSPENDED for m in members) == count:
            return members
    raise AssertionError(
        [(m.learner, m.desired, m.observed, m.last_error) for m in app.repo.list(pools=True)]
    )


async def test_a_ready_member_goes_to_one_of_two_learners_and_the_sweep_leaves_it(
    settings: Settings,
    providers: dict[str, MemoryProvider],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # where the test SSH server's commands keep authorized_keys
    clock = Clock()
    app = memory_app(settings, providers, clock)
    try:
        lab = pooled_lab(tmp_path, 1)
        ann = app.environments.launch(lab, "ann", course="c1")
        assert await settle(app, ann.id) == Observed.RUNNING
        (member,) = await fill(app, clock, 1)
        old_public = member.public_key

        bob = app.environments.launch(lab, "bob", course="c1")
        cid = app.environments.launch(lab, "cid", course="c1")
        states = await asyncio.gather(settle(app, bob.id), settle(app, cid.id))
        assert states == [Observed.RUNNING, Observed.RUNNING]
        bob, cid = app.repo.get(bob.id), app.repo.get(cid.id)
        pooled = [r for r in (bob, cid) if r.stack_name == member.stack_name]
        assert len(pooled) == 1  # one learner got the member's stack, the other a create of its own
        other = cid if pooled[0] is bob else bob
        assert providers["a"].created[other.stack_name] == 1
        assert providers["a"].created[pooled[0].stack_name] == 1  # made once, for the member

        # The key was rotated over SSH: the new one is in authorized_keys, the pooled one is gone.
        authorized = (tmp_path / ".ssh" / "authorized_keys").read_text()
        assert pooled[0].public_key in authorized and old_public.split()[1] not in authorized
        secrets = unseal(app.controller.vault, pooled[0].sealed_secrets)
        assert secrets["key_rotated"] == "1" and "next_private_key" not in secrets

        report = await app.engine.sweep()
        assert pooled[0].stack_name not in report.removed and pooled[0].stack_name in providers["a"].stacks
        assert sorted(r.learner for r in app.repo.list(course="c1")) == ["ann", "bob", "cid"]
        await fill(app, clock, 1)  # the member filled again, under a new stack name
        assert app.repo.list(pools=True)[0].stack_name != member.stack_name
    finally:
        app.close()


async def test_a_smaller_pool_in_a_new_lab_version_drains_the_extra_member(
    settings: Settings, providers: dict[str, MemoryProvider], tmp_path: Path
) -> None:
    clock = Clock()
    app = memory_app(settings, providers, clock)
    try:
        ann = app.environments.launch(pooled_lab(tmp_path, 2), "ann", course="c1")
        assert await settle(app, ann.id) == Observed.RUNNING
        await fill(app, clock, 2)
        # The author makes the pool smaller; the next learner's create brings the pool in line.
        bob = app.environments.launch(pooled_lab(tmp_path, 1), "bob", course="c1")
        assert await settle(app, bob.id) == Observed.RUNNING
        for _ in range(100):
            clock.now += 1
            await app.engine.run_pass()
            members = {m.learner: m for m in app.repo.list(pools=True)}
            if members["~warm-a-1"].observed == Observed.DELETED and members["~warm-a-0"].desired in (
                Desired.SUSPENDED,
            ):
                break
        assert members["~warm-a-1"].desired == Desired.DELETED
        assert members["~warm-a-1"].observed == Observed.DELETED
        assert members["~warm-a-1"].due_at is None  # nothing more to do until the lab wants it again
        reasons = [t.reason for t in app.repo.history(members["~warm-a-1"].id)]
        assert "PoolShrunk" in reasons
    finally:
        app.close()


async def test_members_may_wait_running_and_are_handed_over_without_a_resume(
    settings: Settings,
    providers: dict[str, MemoryProvider],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    clock = Clock()
    app = memory_app(settings, providers, clock)
    try:
        lab = write_lab(tmp_path, "- {name: a, type: local}", "warm: {size: 1, state: running}")
        ann = app.environments.launch(lab, "ann", course="c1")
        assert await settle(app, ann.id) == Observed.RUNNING
        for _ in range(100):
            clock.now += 1
            await app.engine.run_pass()
            (member,) = app.repo.list(pools=True)
            if member.observed == Observed.RUNNING:
                break
        assert member.desired == Desired.RUNNING and member.observed == Observed.RUNNING
        clock.now += 3600  # waiting running does not make it idle: the learner policies skip members
        await app.engine.run_pass()
        assert app.repo.get(member.id).observed == Observed.RUNNING
        bob = app.environments.launch(lab, "bob", course="c1")
        assert await settle(app, bob.id) == Observed.RUNNING
        record = app.repo.get(bob.id)
        assert record.stack_name == member.stack_name
        assert ("resume", member.stack_name) not in providers["a"].calls
        assert [t.reason for t in app.repo.history(bob.id) if t.kind == "observed"] == [
            "FromPool",
            "HandedOver",
        ]
    finally:
        app.close()
