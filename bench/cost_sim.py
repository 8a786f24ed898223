"""What a course run costs: the real controller on a simulated clock, a week of a course, per policy.

Learners (`--learners`, 1,000) follow a week of a course with two lab sessions a day; each works 2-5 hours
in bursts of work (runs of keys between pauses to think or to wait for a command, `--think`) and behaves as
one of a documented mix (bench/cost_sim_learners.py, `--mix`). The real stacklab
drives every lab: wiring.build_app on SQLite in /dev/shm, the real Controller, its policies and engine
passes; what the page and the LMS send goes through the service functions their API endpoints call
(`Environments.request` for the page's POST /resume, `presence` for its visibility and its `pagehide`
beacon, `prepare` for the XBlock's POST /prepare at each unit view, the throttled activity writes of
`Environments.touch`); warm pools are the lab's `warm:` section, filled, suspended, handed over (key
rotation over SSH to a loopback server) and drained by the controller. Only the provider is a model
(bench/cost_sim_provider.py: stacks take the times measured on LXC and on the Heat harness) and the clock
is simulated: passes run when the database says they are due, learners act at their times, nothing sleeps.
A sample of the learners (`--sample`) is driven through the controller for each policy (the same learners
for every policy); the figures are per learner-week. The two provider models run side by side.

Printed per policy and provider: compute-hours per learner-week against the floor (hours of real
activity only) and always-on (168 h); the learner's wait to a usable prompt (median, p95) for the first
launch and for a return, against the targets (within 5 % of the floor; a return's p95 <= 1.5 s on local,
Heat's resume + 1 s on OpenStack), and which policies meet both. Policies: the lab's settings over a range
of idle timeouts (with the page's signals and pre-resume, as built), the idle timeout alone (keystrokes
only), warm pools, and a model of hastexo-xblock's defaults (no code of ours: labelled "(model)"). A PNG
plots cost against p95 wait as the idle timeout and the pool size vary (matplotlib, pip-installed into the
venv on first use).

    .venv/bin/python bench/cost_sim.py [--learners 1000] [--sample 20] [--seed 1] [--days 7]
        [--idle 15 5 2 1 0.75 0.5] [--keys-idle 15] [--pool-idle 0.5] [--pools 25 100] [--mix a=0.5,b=0.5]
        [--think 0.8:2:15,0.15:15:60,0.05:60:180 | --think none]
        [--plot /tmp/stacklab-cost-sim.png | --no-plot] [--measure-heat [--cloud heatbox] [--heat-rounds 5]]
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import importlib
import logging
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import percentile, print_machine, print_table
from bench.cost_sim_learners import DAY, HOUR, MIX, THINK, Course, Trace, make_traces, sample
from bench.cost_sim_provider import (
    HEAT,
    LOCAL,
    ModelProvider,
    ProviderModel,
    hours,
    measure_heat,
    start_nodes,
    stop_nodes,
)
from sqlalchemy import func, select
from tests.support.engine import Clock

from stacklab.config import Settings
from stacklab.envs.controller import seal
from stacklab.envs.pools import sync_pool
from stacklab.labs.loader import lab_digest, parse_lab
from stacklab.store.repository import EnvKey
from stacklab.store.tables import EnvironmentRecord, TransitionRecord
from stacklab.types import Desired, Observed, Progress
from stacklab.wiring import App, build_app

WEEK_H = 168.0
COURSE_ID, LAB_ID = "course-v1:sim+2026", "costsim"

# The lab page (frontend/src/lab.js and bench/page_open.py, 2026-11-25 quiet re-run).
PAGE_LOAD_S = 0.145  # navigation -> POST /resume sent ("page 145 ms", running lab)
API_S = 0.024  # POST /resume answered with ready for a running lab ("status ready seen 24 ms")
PROMPT_S = 0.117  # ready seen -> prompt: websocket open 82 + ready 1 + first output 1 + prompt 33 ms
STACKLAB_POLLS_S = (0.1, 0.15, 0.225, 0.3375)  # lab.js: POLL_FIRST_MS 100, x1.5 each, then POLL_MS 500
STACKLAB_POLL_MAX_S = 0.5
HASTEXO_POLL_S = 15.0  # hastexo js_timeouts.status (reference/hastexo-compat.md)

# --- policies -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """A lab's settings and what the page and the LMS send.

    activity "keys": keystrokes only (stacklab); "page": keepalives while the page is open (hastexo).
    `signals`: the lab page reports hidden / visible / closed (docs/idle.md); `pre_resume`: the XBlock
    sends POST /prepare at each unit view; `pool`: the lab's `warm.size` per 1,000 learners."""

    name: str
    idle_suspend_s: float
    activity: str = "keys"
    poll: str = "stacklab"
    hastexo_suspender: bool = False
    signals: bool = False
    pre_resume: bool = False
    pool: int = 0

    @property
    def idle_min(self) -> float:
        return self.idle_suspend_s / 60


def keys_only(idle_min: float) -> Policy:
    """The idle timeout alone: a page that sends nothing but keystrokes, no pre-resume (the 12-04 rows)."""
    return Policy(f"stacklab, keystrokes only, idle {idle_min:g} min", idle_min * 60)


def built(idle_min: float, pool: int = 0) -> Policy:
    """The lab's idle timeout with the page's signals (close 45 s, hidden idle/3) and pre-resume (5 min)."""
    name = f"stacklab, idle {idle_min:g} min + page signals + pre-resume"
    return Policy(
        name + (f" + pool {pool}/1000" if pool else ""),
        idle_min * 60,
        signals=True,
        pre_resume=True,
        pool=pool,
    )


HASTEXO = Policy(
    "hastexo-xblock defaults (model)",
    idle_suspend_s=14 * DAY,  # the controller's own idle policy is off: hastexo's suspender decides
    activity="page",
    poll="hastexo",
    hastexo_suspender=True,
)
HASTEXO_KEEPALIVE_S = 30.0  # js_timeouts.keepalive
HASTEXO_JS_IDLE_S = HOUR  # js_timeouts.idle: the page stops its keepalives after 1 h without input
HASTEXO_SUSPEND_TIMEOUT_S = 120.0  # suspend_timeout
HASTEXO_SUSPEND_INTERVAL_S = 60.0  # suspend_interval
HASTEXO_SUSPEND_CONCURRENCY = 4  # suspend_concurrency: at most 4 suspends per interval


# --- one simulated week ---------------------------------------------------------------------------------

LAB = """\
schema: 1
id: {lab_id}
title: Cost simulation
login_user: learner
providers:
  - {{name: sim, type: local}}
local:
  nodes:
    - name: main
timeouts: {{launch: 10m, idle_suspend: {idle}s, idle_warning: {warning}s, delete_after: {delete}s}}
"""
WARM = """\
warm:
  size: {size}
  hours: ["daily {hours}"]
  lead: 5m
"""


def lab_text(policy: Policy, course: Course, scale: float) -> str:
    """The lab file of a policy: its idle timeout (the page's countdown at most a third of it, so that it
    does not show while the learner types), the other timeouts at their defaults, and its warm pool."""
    text = LAB.format(
        lab_id=LAB_ID,
        idle=policy.idle_suspend_s,
        warning=min(60.0, policy.idle_suspend_s / 3),
        delete=14 * DAY,
    )
    if policy.pool:
        sessions = ", ".join(f"{a / HOUR:02.0f}:00-{b / HOUR:02.0f}:00" for a, b in course.sessions)
        text += WARM.format(size=max(1, round(policy.pool * scale)), hours=sessions)
    return text


@dataclass
class Waiting:
    """A request for the lab on its way (the page's status polls start at `asked`); `want`: when the
    learner began to wait for a prompt (None: not yet, they are reading)."""

    asked: float
    want: float | None = None
    ran: bool = False  # the lab was running when the page asked: POST /resume answered "ready"
    stall: bool = False  # a key inside a burst of work found the lab paused (not a return)


@dataclass
class Outcome:
    policy: Policy
    model: ProviderModel
    learners: int
    days: int
    running_h: float  # every stack, the pool's included
    pool_h: float
    suspended_h: float
    pool_suspended_h: float
    pool_size: int
    floor_h: float
    first_waits: list[float]
    return_waits: list[float]
    return_resumed: int
    stall_waits: list[float]
    ops: dict[str, int]
    passes: int
    wall_s: float

    def per_week(self, hours: float) -> float:
        return hours / self.learners * 7 / self.days

    @property
    def cost(self) -> float:
        """Compute-hours per learner-week, the pool's included."""
        return self.per_week(self.running_h)

    @property
    def floor(self) -> float:
        return self.per_week(self.floor_h)


class Week:
    """Drives one policy through a week for the given learners, on the real controller."""

    def __init__(
        self,
        policy: Policy,
        model: ProviderModel,
        traces: Sequence[Trace],
        course: Course,
        work: Path,
        ssh: tuple[str, int],
        scale: float,
    ) -> None:
        self.policy, self.model, self.traces, self.course = policy, model, list(traces), course
        self.clock = Clock(0.0)  # 1970-01-01 00:00 UTC: the pool's `daily` hours hold on every day
        self.scale = scale  # simulated learners / learners the policy is sized for (pool, hastexo rate)
        self.provider = ModelProvider(model, self.clock, ssh)
        self.lab = work / "lab.yaml"
        self.lab.write_text(lab_text(policy, course, scale))
        settings = Settings(data_dir=str(work / "data"), database_url=f"sqlite:///{work / 'sim.db'}")
        self.app: App = build_app(
            settings, {"local": lambda entry: self.provider}, follow_requeue=False, serving=False
        )
        self.app.controller.clock = self.app.environments.clock = self.clock
        self.throttle_s = settings.activity_throttle_s
        self.events: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self.env: dict[str, str] = {}  # learner -> environment id
        self.trace_of = {t.learner: t for t in self.traces}
        self.waiting: dict[str, Waiting] = {}
        self.first_waits: list[float] = []
        self.return_waits: list[float] = []
        self.return_resumed = 0  # returns that waited for a resume (or a launch)
        self.stall_waits: list[float] = []  # keys inside a burst that found the lab paused
        self.first_due = {t.learner for t in self.traces}  # whose first wait is still to come
        self.hx_running: set[str] = set()
        self.hx_tokens = 0.0
        self.passes = 0
        self.dirty = True  # the store may have changed since next_due last read it
        self._next_due = math.inf

    # events -----------------------------------------------------------------------------------------
    def at(self, when: float, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self.events, (when, self._seq, action))

    def schedule(self) -> None:
        for trace in self.traces:
            for opened in trace.opens:
                self.at(opened, lambda t=trace, o=opened: self.open_page(t, o))
            for closed in trace.closes:
                self.at(closed, lambda t=trace: self.presence(t, "closed"))
            for hidden, shown in trace.hides:
                self.at(hidden, lambda t=trace: self.presence(t, "hidden"))
                self.at(shown, lambda t=trace: self.presence(t, "visible"))
            returns = {start for start, _ in trace.bursts}
            for start, _ in trace.keys:
                self.at(start, lambda t=trace, s=start, r=start in returns: self.want(t, s, r))
        if self.policy.hastexo_suspender:
            ticks = int(self.course.end // HASTEXO_SUSPEND_INTERVAL_S)
            for tick in range(1, ticks + 1):
                self.at(tick * HASTEXO_SUSPEND_INTERVAL_S, self.hastexo_suspender)

    def sync_pool(self) -> None:
        """`stacklab pool sync LAB --course C` before the week: the course's pool exists before its first
        learner (the controller fills it from `lead` before each session and drains it after)."""
        text = self.lab.read_text()
        lab, digest = parse_lab(text, str(self.lab)), lab_digest(text)
        self.app.repo.save_lab(digest, lab.id, str(self.lab), text, self.clock.now)
        with self.app.repo.session() as session:
            sync_pool(session, COURSE_ID, lab, digest, self.clock.now, seal(self.app.controller.vault, {}))

    def ask(self, env_id: str, desired: Desired, reason: str) -> EnvironmentRecord:
        """What the web process does for a request: record it (the environment is due now)."""
        self.dirty = True
        return self.app.environments.request(env_id, desired, reason)

    def request_running(self, trace: Trace, asked: float) -> None:
        """The page's POST /resume (a launch the first time)."""
        env_id = self.env.get(trace.learner)
        if env_id is None:
            record = self.app.environments.launch(self.lab, trace.learner, COURSE_ID)
            self.env[trace.learner] = env_id = record.id
            self.dirty = True
        else:
            record = self.ask(env_id, Desired.RUNNING, "ResumeRequested")
        waiting = self.waiting.get(trace.learner)
        if waiting is not None:
            waiting.ran = self.ready_by(record, asked)
        self.hx_running.add(trace.learner)

    def open_page(self, trace: Trace, opened: float) -> None:
        """The unit is viewed: the XBlock tells the service (pre-resume), the lab page loads and asks for
        the lab (POST /resume)."""
        asked = opened + PAGE_LOAD_S
        self.waiting[trace.learner] = Waiting(asked)
        env_id = self.env.get(trace.learner)
        if self.policy.pre_resume and env_id is not None:  # sent only for a lab the block knows
            self.app.environments.prepare(EnvKey(COURSE_ID, LAB_ID, trace.learner))
            self.dirty = True
        self.at(asked, lambda: self.request_running(trace, asked))

    def presence(self, trace: Trace, state: str) -> None:
        """The page's visibility and its `pagehide` beacon (POST .../presence), when the page sends them."""
        env_id = self.env.get(trace.learner)
        if self.policy.signals and env_id is not None:
            self.app.environments.presence(env_id, state)  # type: ignore[arg-type]
            self.dirty = True

    def want(self, trace: Trace, start: float, returning: bool = True) -> None:
        """The learner types: at once if the lab runs, else after a resume (or the first launch). The first
        key of a burst of work is a return; a later one that finds the lab paused (the learner paused
        longer than the idle timeout inside the burst) is a stall, counted apart."""
        waiting = self.waiting.get(trace.learner)
        if waiting is not None:  # the page's request is on its way: the learner waits with it
            waiting.want = start if waiting.want is None else waiting.want
            return
        record = self.app.repo.get(self.env[trace.learner])  # every burst follows a page open
        if self.ready_by(record, start):
            if returning:
                self.record_wait(trace.learner, 0.0, resumed=False)
            return
        # "Your lab is paused" -> Resume my lab
        self.waiting[trace.learner] = Waiting(start, start, stall=not returning)
        self.request_running(trace, start)

    def record_wait(self, learner: str, wait: float, resumed: bool) -> None:
        if learner in self.first_due:
            self.first_due.discard(learner)
            self.first_waits.append(wait)
        else:
            self.return_waits.append(wait)
            self.return_resumed += resumed

    def hastexo_suspender(self) -> None:
        """hastexo's periodic task: labs without a keepalive for suspend_timeout, at most 4 per run."""
        now = self.clock.now
        rate = HASTEXO_SUSPEND_CONCURRENCY * self.scale  # scaled down with the learners simulated
        self.hx_tokens = min(self.hx_tokens + rate, max(1.0, rate))
        stale = []
        for learner in self.hx_running:
            last = self.keepalive(self.trace_of[learner], now)
            if last is not None and now - last >= HASTEXO_SUSPEND_TIMEOUT_S and learner not in self.waiting:
                stale.append((last, learner))
        for _, learner in sorted(stale):
            if self.hx_tokens < 1:
                break
            self.hx_tokens -= 1
            self.hx_running.discard(learner)
            self.ask(self.env[learner], Desired.SUSPENDED, "HastexoSuspend")

    # activity ---------------------------------------------------------------------------------------
    def keepalive(self, trace: Trace, at: float) -> float | None:
        """hastexo: the page's last keepalive by `at` (every 30 s while open, until 1 h without input)."""
        last = None
        for opened, closed in zip(trace.opens, trace.closes, strict=False):
            if opened > at:
                break
            input_at = max(trace.last_input(at) or opened, opened)
            until = min(at, closed, input_at + HASTEXO_JS_IDLE_S)
            last = opened + math.floor((until - opened) / HASTEXO_KEEPALIVE_S) * HASTEXO_KEEPALIVE_S
        return last

    def activity(self, trace: Trace, at: float) -> float | None:
        if self.policy.activity == "page":
            return self.keepalive(trace, at)
        return trace.last_write(at, self.throttle_s)

    def flush_activity(self, now: float) -> None:
        """Write, for the environments due now, the activity the web process would have written by now
        (Environments.touch: once per activity_throttle_s, and at once when it ends an away marker)."""
        learner_of = {env_id: learner for learner, env_id in self.env.items()}
        for env_id in self.app.repo.due_ids(now, 100_000):
            learner = learner_of.get(env_id)
            last = self.activity(self.trace_of[learner], now) if learner else None
            if last is None:
                continue
            record = self.app.repo.get(env_id)
            away = record.away_at is not None and last > record.away_at
            if away or last > record.last_activity_at:
                self.app.repo.touch(env_id, max(last, record.last_activity_at), clear_away=away)
                self.dirty = True

    # readiness --------------------------------------------------------------------------------------
    def ready_time(self, record: EnvironmentRecord) -> float:
        """When the lab really was ready: the pass's time plus what the provider model says it took beyond
        (a held Heat status, a synchronous resume) and a warm pool hand-over's key rotation."""
        ready = (record.ready_at or self.clock.now) + self.provider.latency.get(record.stack_name, 0.0)
        if self.policy.pool and record.learner in self.first_due and self.handed_over(record.id):
            ready += self.model.handover_s
        return ready

    def handed_over(self, env_id: str) -> bool:
        return any(t.reason == "HandedOver" for t in self.app.repo.history(env_id))

    def ready_by(self, record: EnvironmentRecord, at: float) -> bool:
        running = record.observed == Observed.RUNNING and record.desired == Desired.RUNNING
        return running and record.progress == Progress.READY and self.ready_time(record) <= at

    def seen_at(self, asked: float, ready: float) -> float:
        """When the page learns that the lab is ready (its status polls after the request)."""
        if self.policy.poll == "hastexo":
            return asked + max(1, math.ceil((ready - asked) / HASTEXO_POLL_S)) * HASTEXO_POLL_S
        t = asked
        for delay in STACKLAB_POLLS_S:
            t += delay
            if t >= ready:
                return t
        return t + math.ceil((ready - t) / STACKLAB_POLL_MAX_S) * STACKLAB_POLL_MAX_S

    def check_waiting(self) -> None:
        for learner, waiting in list(self.waiting.items()):
            env_id = self.env.get(learner)
            if env_id is None or self.clock.now < waiting.asked:
                continue
            record = self.app.repo.get(env_id)
            if not (record.observed == Observed.RUNNING and record.desired == Desired.RUNNING):
                continue
            del self.waiting[learner]
            if waiting.want is None:
                continue  # ready before the learner wanted it (reading): their first keystroke waits not
            if waiting.ran:
                seen = waiting.asked + API_S
            else:
                seen = self.seen_at(waiting.asked, self.ready_time(record))
            wait = max(0.0, seen + PROMPT_S - waiting.want)
            if waiting.stall:
                self.stall_waits.append(wait)
            else:
                self.record_wait(learner, wait, resumed=not waiting.ran)

    # the run ----------------------------------------------------------------------------------------
    def next_due(self) -> float:
        """The earliest deadline in the store (read again only after something may have moved it)."""
        if self.dirty:
            with self.app.repo.engine.connect() as connection:
                value = connection.execute(select(func.min(EnvironmentRecord.due_at))).scalar()
            self._next_due = math.inf if value is None else float(value)
            self.dirty = False
        return self._next_due

    def pool_hours(self, end: float) -> tuple[float, float]:
        """Running and suspended hours of the pool: its stacks' until each was handed over (FromPool, in
        the learner's transitions), the learners' own stacks never."""
        own = {f"sl-{env_id}" for env_id in self.env.values()}
        with self.app.repo.session() as session:
            moved = session.scalars(select(TransitionRecord).where(TransitionRecord.reason == "FromPool"))
            handed = {t.message.split()[1]: t.at for t in moved}
        running = suspended = 0.0
        for name, spent in self.provider.spent.items():
            if name not in own:
                running += hours(spent.running, handed.get(name, end))
                suspended += hours(spent.suspended, handed.get(name, end))
        return running, suspended

    async def run(self) -> Outcome:
        started = time.perf_counter()
        if self.policy.pool:
            self.sync_pool()
        self.schedule()
        end = self.course.end
        while True:
            t_event = self.events[0][0] if self.events else math.inf
            t_due = self.next_due()
            now = min(t_event, t_due)
            if now > end:
                break
            self.clock.now = max(self.clock.now, now)
            if t_event <= t_due:
                heapq.heappop(self.events)[2]()
            else:
                self.dirty = True
                self.flush_activity(self.clock.now)
                await self.app.engine.run_pass()
                self.passes += 1
            if self.waiting:
                self.check_waiting()
        self.clock.now = end
        self.provider.finish(end)
        pool_h, pool_suspended_h = self.pool_hours(end)
        self.app.close()
        return Outcome(
            policy=self.policy,
            model=self.model,
            learners=len(self.traces),
            days=self.course.days,
            running_h=self.provider.running_h(),
            pool_h=pool_h,
            suspended_h=self.provider.suspended_h(),
            pool_suspended_h=pool_suspended_h,
            pool_size=max(1, round(self.policy.pool * self.scale)) if self.policy.pool else 0,
            floor_h=sum(t.active_h for t in self.traces),
            first_waits=self.first_waits,
            return_waits=self.return_waits,
            return_resumed=self.return_resumed,
            stall_waits=self.stall_waits,
            ops=dict(self.provider.ops),
            passes=self.passes,
            wall_s=time.perf_counter() - started,
        )


async def simulate(
    policy: Policy,
    model: ProviderModel,
    traces: Sequence[Trace],
    course: Course,
    scale: float = 1.0,
) -> Outcome:
    """One policy, one provider model, these learners: a fresh database, a simulated week."""
    logging.getLogger("stacklab").setLevel(logging.WARNING)
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    server, port = await start_nodes()
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    try:
        with tempfile.TemporaryDirectory(prefix="stacklab-costsim-", dir=base) as tmp:
            return await Week(policy, model, traces, course, Path(tmp), ("127.0.0.1", port), scale).run()
    finally:
        await stop_nodes(server)


# --- figures --------------------------------------------------------------------------------------------


def target_wait_s(model: ProviderModel) -> float:
    """A returning learner's p95 wait: 1.5 s on local, Heat's resume time + 1 s on OpenStack."""
    return 1.5 if model.sync else model.resume_s + 1.0


def waits(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} / {percentile(values, 95):.2f} s (n={len(values)})"


def p95(values: Sequence[float]) -> float:
    return percentile(values, 95) if values else math.nan


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def meets(outcome: Outcome) -> tuple[bool, bool]:
    """(cost within 5 % of the floor, a return's p95 wait within the target)."""
    return outcome.cost <= outcome.floor * 1.05, p95(outcome.return_waits) <= target_wait_s(outcome.model)


def rows(outcome: Outcome) -> list[str]:
    """policy | h per learner-week | vs floor | first launch wait | return wait | targets."""
    floor, cost = outcome.floor, outcome.cost
    pool = (
        f" (pool of {outcome.pool_size}: {outcome.per_week(outcome.pool_h):.2f} running, "
        f"+{outcome.per_week(outcome.pool_suspended_h):.1f} suspended)"
        if outcome.pool_size
        else ""
    )
    over = cost / floor - 1
    cheap, quick = meets(outcome)
    returns = outcome.return_waits
    resumed = f"; {outcome.return_resumed / len(returns):.0%} resumed" if returns else ""
    return [
        outcome.policy.name,
        f"{cost:.2f}{pool}",
        f"{over:+.1%} ({verdict(cheap)}), {cost / WEEK_H:.1%} of always-on",
        waits(outcome.first_waits),
        waits(returns) + resumed,
        f"p95 <= {target_wait_s(outcome.model):.2f} s: {verdict(quick)}",
        stalls(outcome),
    ]


def stalls(outcome: Outcome) -> str:
    """How often a pause inside a burst of work outlasted the idle timeout, and what the next key waited."""
    if not outcome.stall_waits:
        return "none"
    per_week = outcome.per_week(len(outcome.stall_waits))
    return f"{per_week:.1f} / learner-week, p95 {p95(outcome.stall_waits):.2f} s"


def print_outcomes(model: ProviderModel, outcomes: Sequence[Outcome], learners: int) -> None:
    floor = outcomes[0].floor
    print(f"\n## {model.name}: {outcomes[0].learners} of {learners} learners driven through the controller")
    table = [
        ["floor: hours of real activity (bursts of work)", f"{floor:.2f}", "-", "-", "-", "-", "-"],
        ["always-on: 168 h a week", f"{WEEK_H:.2f}", f"{WEEK_H / floor - 1:+.0%}", "-", "-", "-", "-"],
        *[rows(outcome) for outcome in outcomes],
    ]
    print_table(
        table,
        (
            "policy",
            "compute h / learner-week",
            "vs floor (target +5 %)",
            "first launch wait med / p95",
            "return wait med / p95",
            "return target",
            "paused mid-work (key waits)",
        ),
    )
    for outcome in outcomes:
        ops = ", ".join(f"{k} {v}" for k, v in outcome.ops.items())
        pool = (
            f"; pool of {outcome.pool_size}: running {outcome.per_week(outcome.pool_h):.2f}, suspended "
            f"{outcome.per_week(outcome.pool_suspended_h):.1f} h/learner-week"
            if outcome.pool_size
            else ""
        )
        print(
            f"  {outcome.policy.name}: {ops}; suspended {outcome.per_week(outcome.suspended_h):.1f} "
            f"h/learner-week{pool}; {outcome.passes} engine passes in {outcome.wall_s:.1f} s wall"
        )
    print_verdict(model, outcomes)


def print_verdict(model: ProviderModel, outcomes: Sequence[Outcome]) -> None:
    """Which policies meet both targets; if none, what each target's best policy misses by."""
    both = [o for o in outcomes if all(meets(o))]
    if both:
        best = min(both, key=lambda o: o.cost)
        print(
            f"{model.name}: meets both targets: {', '.join(o.policy.name for o in both)}; cheapest: "
            f"{best.policy.name} ({best.cost / best.floor - 1:+.1%}, "
            f"return p95 {p95(best.return_waits):.2f} s)"
        )
        return
    cheapest = min(outcomes, key=lambda o: o.cost)
    quickest = min(outcomes, key=lambda o: p95(o.return_waits))
    print(
        f"{model.name}: no policy meets both targets: the cheapest, {cheapest.policy.name}, costs "
        f"{cheapest.cost / cheapest.floor - 1:+.1%} with a return p95 of {p95(cheapest.return_waits):.2f} s; "
        f"the quickest, {quickest.policy.name}, {p95(quickest.return_waits):.2f} s at "
        f"{quickest.cost / quickest.floor - 1:+.1%} (targets +5 %, {target_wait_s(model):.2f} s)"
    )


def ensure_matplotlib() -> Any:
    """matplotlib for the plot only: installed into this venv with pip on first use (not a test need)."""
    try:
        return importlib.import_module("matplotlib")
    except ImportError:
        print("# installing matplotlib into the venv (pip) for the plot ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "matplotlib"], check=True)
        return importlib.import_module("matplotlib")


def plot(path: Path, sweeps: dict[str, list[Outcome]], floor: float) -> None:
    """Left: a return's p95 wait against cost as the idle timeout varies; right: the first launch's p95
    wait against cost as the warm pool's size varies (at one idle timeout), the pool's suspended hours
    counted in (a cloud may bill a suspended server; LXC keeps its memory)."""
    matplotlib = ensure_matplotlib()
    matplotlib.use("Agg")
    pyplot = importlib.import_module("matplotlib.pyplot")
    figure, axes = pyplot.subplots(1, 2, figsize=(13, 5.5))
    for name, series in sweeps.items():
        by_pool = "pool varies" in name
        panel = axes[1] if by_pool else axes[0]
        xs = [o.cost + (o.per_week(o.pool_suspended_h) if by_pool else 0.0) for o in series]
        ys = [max(0.05, p95(o.first_waits if by_pool else o.return_waits)) for o in series]
        marker = "s" if name.startswith(HEAT.name) else "o"
        line = panel.plot(xs, ys, marker=marker, label=name, alpha=0.8)[0]
        for o, x, y in zip(series, xs, ys, strict=True):
            tag = "hastexo" if o.policy == HASTEXO else f"{o.policy.idle_min:g} min"
            tag = f"{o.policy.pool}" if by_pool else tag
            panel.annotate(
                tag,
                (x, y),
                textcoords="offset points",
                xytext=(3, 5),
                fontsize=7,
                rotation=35,
                color=line.get_color(),
            )
    for panel in axes:
        panel.axvline(floor, linestyle=":", color="grey")
        panel.axvline(floor * 1.05, linestyle="--", color="grey", linewidth=0.8)
        panel.set_xlabel("compute-hours per learner-week (dotted: floor, dashed: floor + 5 %)")
        panel.set_ylabel("p95 wait to a usable prompt (s, log)")
        panel.set_yscale("log")
        panel.legend(fontsize=7)
        panel.grid(alpha=0.3, which="both")
    axes[0].set_title("idle timeout varies: a return's p95 wait")
    axes[1].set_title("warm pool per 1,000 learners varies: first launch p95")
    axes[1].set_xlabel("compute-hours + the pool's suspended hours per learner-week (floor, floor + 5 %)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"\nplot written: {path}")


# --- the run --------------------------------------------------------------------------------------------


def parse_mix(text: str | None) -> dict[str, float]:
    if not text:
        return dict(MIX)
    mix = {}
    for item in text.split(","):
        name, _, share = item.partition("=")
        if name.strip() not in MIX:
            raise SystemExit(f"--mix: unknown behaviour {name.strip()!r} (known: {', '.join(MIX)})")
        mix[name.strip()] = float(share)
    return mix


def parse_think(text: str | None) -> tuple[tuple[float, float, float], ...]:
    """`--think`: the pauses between runs of keys, or "none" for keys without a pause inside a burst."""
    if not text:
        return THINK
    if text.strip() == "none":
        return ()
    rows = []
    for item in text.split(","):
        try:
            share, low, high = (float(part) for part in item.split(":"))
        except ValueError:
            raise SystemExit(f"--think: {item!r} is not share:min_s:max_s") from None
        if share <= 0 or not 0 <= low <= high:
            raise SystemExit(f"--think: {item!r} needs share > 0 and 0 <= min_s <= max_s")
        rows.append((share, low, high))
    return tuple(rows)


def policies(args: argparse.Namespace) -> list[Policy]:
    """The built features over the idle timeouts, the idle timeout alone, hastexo's defaults, and the built
    features at one idle timeout over the pool sizes."""
    return [
        *[built(minutes) for minutes in args.idle],
        *[keys_only(minutes) for minutes in args.keys_idle],
        HASTEXO,
        *[built(args.pool_idle, pool) for pool in args.pools if pool],
    ]


def run_model(
    model: ProviderModel, chosen: list[Policy], traces: list[Trace], course: Course, scale: float
) -> list[Outcome]:
    """Every policy on one provider model (one process per model: the two run side by side)."""

    async def each() -> list[Outcome]:
        outcomes = []
        for policy in chosen:
            outcomes.append(await simulate(policy, model, traces, course, scale))
            print(f"  {model.name}: {policy.name}: {outcomes[-1].wall_s:.1f} s", flush=True)
        return outcomes

    return asyncio.run(each())


def run(args: argparse.Namespace) -> None:
    course = Course(days=args.days, think=parse_think(args.think))
    mix = parse_mix(args.mix)
    traces = make_traces(args.learners, args.seed, mix, course)
    chosen = sample(traces, args.sample, args.seed)
    scale = len(chosen) / 1000  # pools and hastexo's suspend rate are sized per 1,000 learners
    models = [LOCAL, measure_heat(args.cloud, args.heat_rounds) if args.measure_heat else HEAT]
    floor_all = sum(t.active_h for t in traces) / len(traces) * 7 / course.days
    floor_sample = sum(t.active_h for t in chosen) / len(chosen) * 7 / course.days
    behaviours = ", ".join(f"{b} {sum(t.behaviour == b for t in traces)}" for b in mix)
    think = ", ".join(f"{share:.0%} {low:g}-{high:g} s" for share, low, high in course.think) or "none"
    print(
        f"{len(traces)} learners, {course.days} days, sessions "
        + ", ".join(f"{a / HOUR:02.0f}:00-{b / HOUR:02.0f}:00" for a, b in course.sessions)
        + f"; behaviours: {behaviours}; pauses between runs of keys: {think}"
    )
    print(
        f"floor (activity) of all {len(traces)}: {floor_all:.2f} h per learner-week; of the {len(chosen)} "
        f"driven through the controller (sample, seed {args.seed}): {floor_sample:.2f} h"
    )
    if len(chosen) < len(traces):
        print(
            f"sampled: {len(chosen)} of {len(traces)} learners per policy; pools and hastexo's 4 suspends a "
            f"minute are scaled by {scale:g} to match"
        )
    print("provider model (source of each figure):")
    for model in models:
        for op, source in model.sources.items():
            print(f"  {model.name:<9} {op:<8} {source}")
    print(
        "driven through the service as built: the page's POST /resume (Environments.request), its presence "
        "(hidden, visible, the pagehide beacon: Environments.presence), the XBlock's POST /prepare "
        "(Environments.prepare), keystrokes written as Environments.touch writes them (once per "
        "activity_throttle_s), warm pools by the controller (envs/pools.py, envs/handover.py); modelled: the "
        "provider, and hastexo-xblock\n",
        flush=True,
    )
    chosen_policies = policies(args)
    with ProcessPoolExecutor(max_workers=len(models)) as workers:
        futures = [workers.submit(run_model, m, chosen_policies, chosen, course, scale) for m in models]
        results = {model.name: future.result() for model, future in zip(models, futures, strict=True)}
    for model in models:
        print_outcomes(model, results[model.name], len(traces))
    if not args.no_plot:
        sweeps = {}
        for name, outcomes in results.items():
            sweeps[f"{name}: idle varies, page signals + pre-resume"] = [
                o for o in outcomes if o.policy.signals and not o.policy.pool
            ]
            sweeps[f"{name}: idle varies, keystrokes only"] = [
                o for o in outcomes if not o.policy.signals and o.policy != HASTEXO
            ]
            sweeps[f"{name}: hastexo defaults (model)"] = [o for o in outcomes if o.policy == HASTEXO]
            sweeps[f"{name}: idle {args.pool_idle:g} min, pool varies"] = [
                o for o in outcomes if o.policy.signals and o.policy.idle_suspend_s == args.pool_idle * 60
            ]
        plot(Path(args.plot), sweeps, floor_sample)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--learners", type=int, default=1000)
    parser.add_argument("--sample", type=int, default=20, help="learners driven through the controller")
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mix", default=None, help="behaviour=share,... (default: MIX)")
    parser.add_argument(
        "--think", default=None, help="pauses between runs of keys: share:min_s:max_s,... or none (THINK)"
    )
    parser.add_argument(
        "--idle", type=float, nargs="+", default=[15, 5, 2, 1, 0.75, 0.5], help="built features, minutes"
    )
    parser.add_argument("--keys-idle", type=float, nargs="*", default=[15], help="keystrokes only, minutes")
    parser.add_argument("--pool-idle", type=float, default=0.5, help="idle timeout with the pools (min)")
    parser.add_argument("--pools", type=int, nargs="*", default=[25, 100], help="per 1,000 learners")
    parser.add_argument("--plot", default=str(Path(tempfile.gettempdir()) / "stacklab-cost-sim.png"))
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--measure-heat", action="store_true", help="time Heat on the harness first")
    parser.add_argument("--cloud", default="heatbox")
    parser.add_argument("--heat-rounds", type=int, default=5)
    args = parser.parse_args()
    print_machine(
        "cost simulation: a week of a course on the real controller, simulated clock", postgres=False
    )
    started = time.perf_counter()
    run(args)
    print(f"\nwall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
