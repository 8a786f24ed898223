"""Warm pools on real LXC nodes (envs/pools.py, envs/handover.py): a pool fills to its size, a learner's
launch is served from it without a create of its own and with a rotated login key (the pooled key no longer
logs in over SSH), the pool refills, drains outside its hours and fills again when they open, and a member
past max_age is replaced.

The engine runs as the service runs it (passes of what is due, from the database); the clock is the real
time plus an offset the tests move to cross session hours and ages. Creates are counted at the provider.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.support.lxc import IMAGE_DIR, require_lxc, run_sync, sweep_stacks

from stacklab.access.ssh import Target, connect
from stacklab.config import Settings
from stacklab.envs.controller import unseal
from stacklab.errors import AccessError
from stacklab.labs.schema import ProviderEntry
from stacklab.providers.base import Handle, StackRequest
from stacklab.providers.local import LocalProvider
from stacklab.secrets import Secret
from stacklab.store.tables import EnvironmentRecord
from stacklab.store.usage import state_seconds
from stacklab.types import Desired, Observed
from stacklab.wiring import App, build_app

pytestmark = pytest.mark.lxc

HOUR = 3600.0


class CountingLocal(LocalProvider):
    """The real LXC provider, counting the stacks it is asked to create."""

    def __init__(self, name: str, settings: dict[str, object], created: list[str]) -> None:
        super().__init__(name, settings)
        self.created = created

    async def create(self, request: StackRequest) -> Handle:
        if request.name not in self.created:
            self.created.append(request.name)
        return await super().create(request)


@dataclass
class Pools:
    app: App
    lab: Path
    offset: list[float]
    created: list[str] = field(default_factory=list)

    def clock(self) -> float:
        return time.time() + self.offset[0]

    def members(self) -> list[EnvironmentRecord]:
        return self.app.repo.list(course="c1", pools=True)

    async def until(self, what: str, done: Callable[[], bool], timeout_s: float = 90) -> None:
        """Passes of what is due (as the service's loop sends them) until `done()`."""
        deadline = time.monotonic() + timeout_s
        while not done():
            assert time.monotonic() < deadline, f"timed out waiting: {what}; members: {self.describe()}"
            await self.app.engine.run_pass()
            await asyncio.sleep(0.1)

    def describe(self) -> list[tuple[str, str, str, str, str | None]]:
        return [(m.learner, m.desired, m.observed, m.progress, m.last_error) for m in self.members()]

    def waiting(self, count: int) -> bool:
        members = self.members()
        settled = [m for m in members if m.observed == Observed.SUSPENDED and m.desired == Desired.SUSPENDED]
        return len(settled) == count

    async def stacks(self) -> list[str]:
        return await self.app.controller.providers.all()[0].list()


def session_hours(now: float) -> str:
    """A daily two-hour session that opened a minute before `now` (UTC)."""
    start = int(now // 60 - 1) % (24 * 60)
    end = (start + 120) % (24 * 60)
    return f"daily {start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"


@pytest.fixture
def pools(request: pytest.FixtureRequest) -> Iterator[Pools]:
    """An app on real LXC with a one-node lab that keeps `size` (the test's parameter, default 1) members
    in a session open now; everything it made is deleted afterwards."""
    require_lxc()
    size = getattr(request, "param", 1)
    data_dir = Path(tempfile.mkdtemp(prefix="stacklab-pools-", dir="/var/tmp"))
    data_dir.chmod(0o755)
    lab = data_dir / "pooled.yaml"
    lab.write_text(
        textwrap.dedent(
            f"""\
            schema: 1
            id: pooled
            title: Pooled
            login_user: learner
            local:
              nodes:
                - name: main
                  memory_mb: 256
                  setup: echo done > /etc/pool-setup-done
            warm: {{size: {size}, max_age: 1h, hours: "{session_hours(time.time())}", lead: 0s}}
            """
        )
    )
    offset = [0.0]
    created: list[str] = []
    settings = Settings(data_dir=str(data_dir), image_dir=IMAGE_DIR, poll_interval_s=0.1)

    def local(entry: ProviderEntry) -> LocalProvider:
        root = {"root_dir": settings.resolved_local_root_dir, "image_dir": IMAGE_DIR}
        return CountingLocal(entry.name, root, created)

    app = build_app(settings, {"local": local}, follow_requeue=False, serving=False)
    built = Pools(app, lab, offset, created)
    app.controller.clock = app.environments.clock = built.clock
    try:
        yield built
    finally:
        try:
            offset[0] += 3 * HOUR  # outside the session: the pool drains itself (members are not deleted
            for record in app.repo.list():  # by request: the pool would fill them again)
                app.environments.request(record.id, Desired.DELETED, "TestDone")
            run_sync(_drain(app))
        finally:
            app.close()
            sweep_stacks(data_dir / "local")
            shutil.rmtree(data_dir, ignore_errors=True)


async def _drain(app: App) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        await app.engine.run_pass()
        records = [*app.repo.list(pools=True), *app.repo.list()]
        if all(r.observed == Observed.DELETED for r in records):
            return
        await asyncio.sleep(0.2)


async def _logs_in(record: EnvironmentRecord, key: str) -> bool:
    node = (record.nodes or {})["main"]
    try:
        connection = await connect(Target(node["host"], node["port"], "learner", Secret(key)), 5)
    except AccessError as exc:
        assert "Permission denied" in str(exc), exc  # the node answers and refuses the key
        return False
    connection.close()
    return True


@pytest.mark.parametrize("pools", [2], indirect=True)
async def test_launch_is_served_from_the_pool_with_a_fresh_key_and_the_pool_refills(pools: Pools) -> None:
    app = pools.app
    # The first launch of the lab in the course starts its pool (and is an ordinary create itself).
    first = app.environments.launch(pools.lab, "ann", course="c1")
    await pools.until("ann's lab and a full pool", lambda: app.repo.get(first.id).observed == "running")
    await pools.until("two members waiting suspended", lambda: pools.waiting(2))
    members = pools.members()
    assert sorted(m.learner for m in members) == ["~warm-local-0", "~warm-local-1"]
    assert [r.learner for r in app.repo.list(course="c1")] == ["ann"]  # members are nobody's lab
    assert len(pools.created) == 3  # ann's lab and two members

    # The next learner gets a member: no create for them, the member's stack under their record.
    pooled = min(members, key=lambda m: m.ready_at or 0.0)
    pooled_key = unseal(app.controller.vault, pooled.sealed_secrets)["private_key"]
    creates_before = len(pools.created)
    bob = app.environments.launch(pools.lab, "bob", course="c1")
    await pools.until("bob's lab", lambda: app.repo.get(bob.id).observed == Observed.RUNNING)
    record = app.repo.get(bob.id)
    assert record.learner == "bob" and record.pool is None and not record.rotate_keys
    assert record.stack_name == pooled.stack_name  # the very stack the member held
    assert f"sl-{bob.id}" not in pools.created
    assert [r.reason for r in app.repo.history(bob.id) if r.kind == "observed"][-2:] == [
        "FromPool",
        "HandedOver",
    ]

    # Fresh keys: the pooled key no longer logs in, the learner's lab's key does; setup had finished.
    new_key = unseal(app.controller.vault, record.sealed_secrets)["private_key"]
    assert new_key != pooled_key
    assert not await _logs_in(record, pooled_key)
    assert await _logs_in(record, new_key)
    assert (await app.environments.exec(bob.id, "cat /etc/pool-setup-done")).stdout.strip() == "done"

    # The member fills again in the background; its time so far is the pool's, not bob's.
    await pools.until("the pool full again", lambda: pools.waiting(2))
    assert len(pools.created) == creates_before + 1
    assert app.repo.get(pooled.id).stack_name != pooled.stack_name
    assert [r.reason for r in app.repo.history(pooled.id) if r.kind == "observed"].count("HandedOver") == 1
    now = pools.clock()
    assert state_seconds(app.repo, [pooled.id], Observed.SUSPENDED, now).get(pooled.id, 0) > 0
    assert [r.learner for r in app.repo.list(course="c1")] == ["ann", "bob"]


async def test_outside_the_hours_the_pool_drains_and_it_fills_when_they_open(pools: Pools) -> None:
    app = pools.app
    app.environments.launch(pools.lab, "ann", course="c1")
    await pools.until("one member waiting", lambda: pools.waiting(1))
    member = pools.members()[0]
    assert member.stack_name in await pools.stacks()

    pools.offset[0] += 3 * HOUR  # the session is over
    await pools.until("the pool drained", lambda: pools.members()[0].observed == Observed.DELETED)
    assert member.stack_name not in await pools.stacks()
    drained = pools.members()[0]
    assert drained.desired == Desired.DELETED
    assert drained.due_at is not None and drained.due_at > pools.clock()  # the next session's opening

    pools.offset[0] += 21 * HOUR  # the next day's session
    await pools.until("the pool filled again", lambda: pools.waiting(1))
    assert len(pools.created) == 3  # ann's lab, the member, the member again


async def test_a_member_past_max_age_is_replaced(pools: Pools) -> None:
    app = pools.app
    app.environments.launch(pools.lab, "ann", course="c1")
    await pools.until("one member waiting", lambda: pools.waiting(1))
    old = pools.members()[0]

    pools.offset[0] += 61 * 60  # past max_age (1h), still in the session
    await pools.until(
        "a fresh member", lambda: pools.waiting(1) and pools.members()[0].stack_name != old.stack_name
    )
    assert old.stack_name not in await pools.stacks()
    reasons = [r.reason for r in app.repo.history(old.id)]
    assert "PoolMemberExpired" in reasons
    assert len(pools.created) == 3
