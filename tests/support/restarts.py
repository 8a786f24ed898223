"""A stacklab service that a test can kill and start again: the same database, the same cloud, a new process.

A kill is a `ProcessKilled` raised through the pass (a BaseException: nothing of the service catches it)
and, from then on, every database statement and provider call of the dead process fails, as it would
after a SIGKILL: its lease stays taken and whatever it meant to save is lost. The next process has
another owner identity on another (pretend) host, so it cannot see that the holder died; the clock moves
past the lease and the new process takes the environment over. The provider objects (the cloud) survive.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from sqlalchemy import event
from tests.support.engine import Clock
from tests.support.faulty_provider import FaultPlan, FaultyProvider, Life, ProcessKilled

from stacklab.config import Settings
from stacklab.envs.engine import SweepReport
from stacklab.labs.schema import ProviderEntry
from stacklab.providers.base import Provider
from stacklab.store.tables import EnvironmentRecord
from stacklab.wiring import App, build_app

T = TypeVar("T")

PASS_BOUND_S = 60.0
"""A pass that does not end within this (real seconds) is a test failure: something hangs uncut."""


class Service:
    """The service's current process (`app`), its clock, and the cloud it talks to."""

    def __init__(
        self, settings: Settings, clock: Clock, cloud: Mapping[str, Provider], plan: FaultPlan | None = None
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.cloud = cloud
        self.plan = plan or FaultPlan()
        self.generation = 0
        self.kills = 0
        self.app, self.life = self._start()

    def _start(self) -> tuple[App, Life]:
        self.generation += 1
        life = Life(f"process {self.generation}")

        def provider(entry: ProviderEntry) -> Provider:
            return FaultyProvider(self.cloud[entry.name], self.plan, life)

        app = build_app(self.settings, {"local": provider}, follow_requeue=False)
        app.controller.clock = app.environments.clock = self.clock
        app.controller.owner = f"host-{self.generation}.test:{os.getpid()}:0"

        def guard(*_args: Any) -> None:
            life.check()

        for engine in {app.repo.engine, app.repo.reader}:
            event.listen(engine, "before_cursor_execute", guard)
        return app, life

    async def survive(self, work: Awaitable[T]) -> T | None:
        """Run `work` in this process; None when the process died in it (it is then restarted)."""
        try:
            result = await asyncio.wait_for(work, PASS_BOUND_S)
        except ProcessKilled:
            result = None
        except TimeoutError as exc:
            raise AssertionError(f"a pass did not end within {PASS_BOUND_S:g}s") from exc
        if self.life.dead:
            self.restart()
            return None
        return result

    async def run_pass(self) -> bool:
        """One engine pass over what is due; False when the process died during it."""
        return await self.survive(self.app.engine.run_pass()) is not None

    async def sweep(self) -> SweepReport | None:
        return await self.survive(self.app.engine.sweep())

    def kill(self) -> None:
        """Kill the process between passes."""
        self.life.dead = True
        self.restart()

    def restart(self) -> None:
        """A new process on the same database and cloud, once the dead one's lease has run out."""
        self.kills += 1
        self.app.close()
        self.clock.now += self.settings.lease_s + 1
        self.app, self.life = self._start()

    def close(self) -> None:
        self.app.close()

    async def drive(
        self, env_id: str, done: Callable[[EnvironmentRecord], bool], rounds: int = 40, pause_s: float = 0.0
    ) -> EnvironmentRecord:
        """Passes until `done(record)`, the clock moved to each deadline in turn (and past the lease of
        every process that dies on the way); AssertionError when nothing is due or rounds run out."""
        for _ in range(rounds):
            record = self.app.repo.get(env_id)
            if done(record):
                return record
            if record.due_at is None:
                raise AssertionError(f"{env_id} is {record.observed}/{record.progress} with nothing due")
            self.clock.now = max(self.clock.now, record.due_at)
            await self.run_pass()
            if pause_s:
                await asyncio.sleep(pause_s)  # a real provider's work takes real time
        record = self.app.repo.get(env_id)
        raise AssertionError(f"{env_id} still {record.observed}/{record.progress} after {rounds} passes")
