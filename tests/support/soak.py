"""The soak: many learners doing random things to their labs while the service is killed and restarted.

Shared by tests/reliability/test_soak.py (a short run in CI) and bench/soak.py (a long one). Learners act
through a web process of their own (an App that runs no passes and is never killed), between and during
the controller's passes; the controller process (tests/support/restarts.py) meets random provider errors,
hangs and kills, and sweeps now and then. The clock is the test's: each step moves it a few seconds, so
the lab's idle and age policies fire within a few hundred steps. Everything is seeded: one seed, one run
(on SQLite, where nothing runs in threads).

What must hold, during the run and at its end, is counted in `Figures` (all of leaks, lost, stuck,
victims, rekeyed and duplicates are zero on a correct controller).
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.engine import Clock
from tests.support.faulty_provider import Fault, FaultPlan, ProcessKilled
from tests.support.memory_provider import MemoryProvider
from tests.support.restarts import Service

from stacklab.config import Settings
from stacklab.errors import Conflict, NotFound
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Desired, Observed
from stacklab.wiring import App, build_app

SWEEPING: contextvars.ContextVar[bool] = contextvars.ContextVar("sweeping", default=False)
"""Set in the task of a sweep: a provider delete made there is the sweep's, not a pass's."""

LAB = """\
schema: 1
id: {lab_id}
title: Soak
login_user: learner
providers:
  - {{name: a, type: local}}
local:
  nodes:
    - name: main
timeouts: {{launch: 2m, idle_suspend: 10m, delete_after: 1h}}
"""
LAUNCH_S = 120.0
ACTIONS = {"launch": 30, "touch": 30, "suspend": 10, "resume": 10, "reset": 7, "delete": 8, "idle": 5}
"""Relative weights of what a learner does in one step."""


def soak_settings(data_dir: Path, database_url: str) -> Settings:
    """Deadlines in fake seconds (the clock is the soak's); the provider timeout is real seconds."""
    return Settings(
        data_dir=str(data_dir),
        database_url=database_url,
        poll_interval_s=1.0,
        retry_backoff_s=(5.0, 15.0, 60.0),
        max_attempts=4,
        lease_s=30.0,
        provider_timeout_s=0.05,
    )


@dataclass
class Rates:
    """Chances per provider call of each fault, and per step of a kill between passes."""

    transient: float = 0.01
    terminal: float = 0.002
    unexpected: float = 0.002
    hang: float = 0.001
    kill: float = 0.002
    kill_between_passes: float = 0.01

    def per_call(self) -> list[tuple[str, float]]:
        return [
            (mode, getattr(self, mode)) for mode in ("transient", "terminal", "unexpected", "hang", "kill")
        ]


NO_FAULTS = Rates(0, 0, 0, 0, 0, 0)


class RandomFaults(FaultPlan):
    """A fault plan that strikes at random, and watches the sweep's deletes as they happen."""

    def __init__(self, rng: random.Random, rates: Rates, on_sweep_delete: Callable[[str], None]) -> None:
        super().__init__()
        self.rng = rng
        self.rates = rates
        self.on_sweep_delete = on_sweep_delete
        self.injected: Counter[str] = Counter()

    def arm(self, op: str, stack: str | None) -> Fault | None:
        self.calls[op] += 1
        if op == "delete" and stack and SWEEPING.get():
            self.on_sweep_delete(stack)
        roll = self.rng.random()
        for mode, rate in self.rates.per_call():
            if roll < rate:
                self.injected[mode] += 1
                return Fault(op, self.calls[op], mode)
            roll -= rate
        return None


@dataclass
class Figures:
    seed: int
    learners: int
    steps: int
    operations: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)
    passes: int = 0
    reconciles: int = 0
    sweeps: int = 0
    kills: int = 0
    environments: int = 0
    creates: int = 0
    deletes: int = 0
    failed: int = 0
    leaks: int = 0
    lost: int = 0
    stuck: int = 0
    victims: int = 0
    rekeyed: int = 0
    duplicates: int = 0
    fake_hours: float = 0.0
    wall_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def violations(self) -> int:
        return self.leaks + self.lost + self.stuck + self.victims + self.rekeyed + self.duplicates

    def lines(self) -> list[str]:
        ops = ", ".join(f"{name} {count}" for name, count in sorted(self.operations.items()))
        faults = ", ".join(f"{name} {count}" for name, count in sorted(self.injected.items())) or "none"
        return [
            f"seed {self.seed}: {self.learners} learners, {self.steps} steps, {self.fake_hours:.1f} h of "
            f"fake time in {self.wall_s:.1f} s of wall time",
            f"learner operations: {sum(self.operations.values())} ({ops})",
            f"controller: {self.passes} passes, {self.reconciles} environment passes, {self.sweeps} sweeps, "
            f"{self.kills} kills and restarts; injected faults: {faults}",
            f"environments: {self.environments} ({self.failed} failed); stacks: {self.creates} created, "
            f"{self.deletes} deleted",
            f"leaks {self.leaks}, lost {self.lost}, stuck {self.stuck}, swept while live {self.victims}, "
            f"two creates at once {self.rekeyed}, duplicate environments {self.duplicates}",
            *self.problems[:20],
        ]


class Soak:
    """One soak run: `await Soak(...).run(steps)` gives the figures."""

    def __init__(
        self,
        settings: Settings,
        lab_dir: Path,
        ssh: tuple[str, int],
        learners: int,
        seed: int,
        rates: Rates | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.rates = rates or Rates()
        self.clock = Clock()
        self.cloud = {name: MemoryProvider(name, {"ssh": ssh}) for name in ("local", "a")}
        self.plan = RandomFaults(self.rng, self.rates, self._check_sweep_delete)
        self.service = Service(settings, self.clock, self.cloud, self.plan)
        self.web = self._web(settings)
        self.labs = [self._write_lab(lab_dir, lab_id) for lab_id in ("soak-a", "soak-b")]
        self.learners = [f"learner-{i:04d}" for i in range(learners)]
        self.figures = Figures(seed, learners, 0)
        self._unsettled_since: dict[str, tuple[float, int]] = {}
        self._counted_stuck: set[str] = set()
        self.launched: list[str] = []  # course/lab/learner, in launch order (a seeded choice needs an order)
        self.launched_set: set[str] = set()

    def _web(self, settings: Settings) -> App:
        """The learners' side: the API process, which never runs a pass and is never killed."""
        app = build_app(settings, {"local": lambda entry: self.cloud[entry.name]}, follow_requeue=False)
        app.controller.clock = app.environments.clock = self.clock
        return app

    @staticmethod
    def _write_lab(lab_dir: Path, lab_id: str) -> Path:
        path = lab_dir / f"{lab_id}.yaml"
        path.write_text(LAB.format(lab_id=lab_id))
        return path

    def close(self) -> None:
        self.service.close()
        self.web.close()

    # learners ---------------------------------------------------------------------------------------
    def act(self) -> None:
        """One learner does one thing to one of their labs (mostly one they launched already); refusals
        (a lab being deleted, say) are part of the game."""
        action = self.rng.choices(list(ACTIONS), weights=list(ACTIONS.values()))[0]
        self.figures.operations[action] += 1
        envs = self.web.environments
        if action == "launch" or not self.launched or self.rng.random() < 0.1:
            learner = self.rng.choice(self.learners)
            course = "c1" if self.rng.random() < 0.8 else "c2"
            lab = self.labs[0] if self.rng.random() < 0.8 else self.labs[1]
            ref = f"{course}/{lab.stem}/{learner}"
            if action == "launch":
                envs.launch(lab, learner, course)
                if ref not in self.launched_set:
                    self.launched_set.add(ref)
                    self.launched.append(ref)
                return
        else:
            ref = self.rng.choice(self.launched)
        try:
            if action == "touch":
                envs.touch(ref)
            elif action == "suspend":
                envs.request(ref, Desired.SUSPENDED, "Soak")
            elif action == "resume":
                envs.request(ref, Desired.RUNNING, "Soak")
            elif action == "reset":
                envs.reset(ref)
            elif action == "delete":
                envs.request(ref, Desired.DELETED, "Soak")
        except (Conflict, NotFound):
            self.figures.operations["refused"] += 1

    async def learners_during_pass(self, count: int) -> None:
        for _ in range(count):
            await asyncio.sleep(0)  # the pass gets as far as its next provider call
            self.act()

    # the controller ---------------------------------------------------------------------------------
    def describe(self, record: EnvironmentRecord) -> str:
        """What an operator would look at: the state, the deadlines, the lease and the last transitions."""
        now = self.clock.now
        due = "none" if record.due_at is None else f"{record.due_at - now:+.0f}s"
        history = "; ".join(
            f"{now - t.at:.0f}s ago {t.kind} {t.from_state}->{t.to_state} {t.reason}"
            for t in self.web.repo.history(record.id)[-6:]
        )
        return (
            f"{record.id} {record.desired}/{record.observed}/{record.progress} "
            f"reset={record.reset_requested} "
            f"due {due} lease {record.lease_owner} attempts {record.attempts} {record.last_reason}: {history}"
        )

    def settled(self, record: EnvironmentRecord) -> bool:
        return self.web.environments.settled(record)

    async def controller_step(self) -> None:
        """A pass over what is due, now and then with a sweep alongside; maybe a kill afterwards."""
        sweeping = self.rng.random() < 0.1
        engine = self.service.app.engine
        work = asyncio.gather(
            engine.run_pass(), self._sweep() if sweeping else _nothing(), return_exceptions=True
        )
        results = await self.service.survive(work)
        self.figures.passes += 1
        self.figures.sweeps += sweeping
        for result in results or ():
            if isinstance(result, BaseException) and not isinstance(result, ProcessKilled):
                raise result
        if results is not None and isinstance(results[0], int):
            self.figures.reconciles += results[0]
        if self.rng.random() < self.rates.kill_between_passes:
            self.service.kill()

    async def _sweep(self) -> None:
        SWEEPING.set(True)  # in this task only
        await self.service.app.engine.sweep()

    def _check_sweep_delete(self, stack: str) -> None:
        """At the moment the sweep deletes a stack: is it a live environment's?"""
        for record in self.web.repo.list(limit=100_000):
            if record.stack_name == stack and record.observed != Observed.DELETED:
                self.figures.victims += 1
                self.figures.problems.append(f"the sweep deleted {stack} of {record.id} ({record.observed})")

    # one step, the run ------------------------------------------------------------------------------
    async def step(self) -> None:
        self.clock.now += self.rng.uniform(0, 20)
        for _ in range(self.rng.randint(0, 2)):
            self.act()
        await asyncio.gather(self.controller_step(), self.learners_during_pass(self.rng.randint(0, 2)))
        self.watch_progress()

    def watch_progress(self) -> None:
        """An environment may be on its way for the lab's launch time, the backoffs and one lease per
        kill on the way; longer is stuck (counted once per environment)."""
        settings = self.service.settings
        budget = LAUNCH_S + sum(settings.retry_backoff_s) + settings.lease_s
        for record in self.web.repo.list(limit=100_000):
            if self.settled(record):
                self._unsettled_since.pop(record.id, None)
                continue
            since, kills = self._unsettled_since.setdefault(record.id, (self.clock.now, self.service.kills))
            allowed = budget + (self.service.kills - kills) * (settings.lease_s + 1)
            if self.clock.now - since > allowed and record.id not in self._counted_stuck:
                self._counted_stuck.add(record.id)
                self.figures.stuck += 1
                self.figures.problems.append(
                    f"stuck for {self.clock.now - since:.0f}s: {self.describe(record)}"
                )

    async def drain(self, rounds: int = 60) -> None:
        """No more faults or learners: passes (and a sweep) until every environment has settled."""
        self.plan.rates = NO_FAULTS
        self.rates = NO_FAULTS
        for _ in range(rounds):
            records = self.web.repo.list(limit=100_000)
            if all(self.settled(r) and r.lease_owner is None for r in records):
                break
            due = [r.due_at for r in records if r.due_at is not None]
            self.clock.now = max(self.clock.now, min(due, default=self.clock.now))
            await self.controller_step()
            self.watch_progress()
        await self.service.survive(self.service.app.engine.sweep())

    async def run(self, steps: int) -> Figures:
        started, clock_started = time.perf_counter(), self.clock.now
        for _ in range(steps):
            await self.step()
        await self.drain()
        self.check_end()
        figures = self.figures
        figures.steps = steps
        figures.kills = self.service.kills
        figures.injected = self.plan.injected
        figures.wall_s = time.perf_counter() - started
        figures.fake_hours = (self.clock.now - clock_started) / 3600
        return figures

    # the end ----------------------------------------------------------------------------------------
    def check_end(self) -> None:
        """The invariants: one environment per key, every stack owned, nothing stuck or leaked."""
        figures, records, cloud = self.figures, self.web.repo.list(limit=100_000), self.cloud["a"]
        figures.environments = len(records)
        figures.duplicates = len(records) - len({(r.course, r.lab_id, r.learner) for r in records})
        figures.failed = sum(r.observed == Observed.FAILED for r in records)
        holding = {r.stack_name: r for r in records if r.provider}
        for name in cloud.stacks:
            if name not in holding:
                figures.leaks += 1
                figures.problems.append(f"leak: {name} is owned by no live environment")
        for record in records:
            if (
                record.observed in (Observed.RUNNING, Observed.SUSPENDED)
                and record.stack_name not in cloud.stacks
            ):
                figures.lost += 1
                figures.problems.append(f"lost: {record.id} is {record.observed} without its stack")
            unsettled = not self.settled(record) or record.lease_owner is not None
            if unsettled and record.id not in self._counted_stuck:
                figures.stuck += 1
                figures.problems.append(f"not settled after the drain: {record.id} {record.observed}")
        held = sum(r.capacity_held == "a" for r in records)
        if self.web.repo.usage().get("a", 0) != held:
            figures.leaks += 1
            figures.problems.append(f"slots: {self.web.repo.usage()} in use, {held} held")
        figures.creates = sum(cloud.created.values())
        figures.deletes = sum(cloud.deleted.values())
        figures.rekeyed = len(cloud.rekeyed)


async def _nothing() -> int:
    return 0
