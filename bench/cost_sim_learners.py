"""The learners of bench/cost_sim.py: a week of a course and how each learner uses the lab's tab.

Each learner does 2-5 hours of activity a week in visits to the course's lab sessions, each visit in bursts
of work separated by reading, and behaves as one of a documented mix (`MIX`). Within a burst the keys come in
runs separated by pauses (`THINK`): thinking, reading a command's output, waiting for it to finish. A trace is
what the browser and the LMS would tell the service: unit views (page opens), closes (the `pagehide`
beacon), a tab hidden and shown again, and the runs of keystrokes. Traces are made from a seed: the same for
every policy.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

HOUR, DAY = 3600.0, 86400.0

MIX = {
    "closes_tab": 0.35,
    "tab_open_overnight": 0.15,
    "walks_away": 0.20,
    "returns_after_lunch": 0.15,
    "reads_first": 0.15,
}
"""Share of learners behaving each way (`--mix name=share,...`):
- closes_tab: opens the unit, types at once, works in bursts, closes the tab when done;
- tab_open_overnight: as closes_tab, but never closes the tab: when a visit ends the learner goes on in
  other tabs (the lab's tab is hidden) and the next visit (next day) is in that tab, shown again;
- walks_away: mid-visit, leaves the open tab for 20-60 min, then comes back to it;
- returns_after_lunch: works in the morning session, leaves the tab open over lunch, goes on in the
  afternoon session of the same day in the same tab;
- reads_first: opens the unit and reads 8-12 min before the first keystroke.
Everyone: 2-5 h of activity a week, in visits to the lab sessions, each visit in bursts of 10-25 min of
work separated by 1-6 min of reading the next step (not counted as activity)."""

THINK = ((0.80, 2.0, 15.0), (0.15, 15.0, 60.0), (0.05, 60.0, 180.0))
"""Pauses between runs of keys inside a burst of work: (share, shortest s, longest s), uniform within a row
(`--think share:min:max,...`; `--think none` types without a pause, as the model before it did). Most
pauses are a few seconds; one in five is a think or a command's output read (15-60 s); one in twenty waits
for a command that runs 1-3 min (a build, an install) without a key pressed. A burst's time still counts as
the learner's activity (the floor); an idle timeout shorter than a pause pauses the lab inside the burst, and
the next key waits for its resume (a return)."""
RUN_S = (5.0, 60.0)
"""A run of keys between two pauses lasts this long (uniform)."""


@dataclass(frozen=True)
class Course:
    days: int = 7
    sessions: tuple[tuple[float, float], ...] = ((9 * HOUR, 12 * HOUR), (14 * HOUR, 17 * HOUR))
    hours: tuple[float, float] = (2.0, 5.0)
    visit_h: tuple[float, float] = (0.6, 1.2)
    burst_min: tuple[float, float] = (10.0, 25.0)
    pause_min: tuple[float, float] = (1.0, 6.0)
    think: tuple[tuple[float, float, float], ...] = THINK

    @property
    def end(self) -> float:
        return self.days * DAY


@dataclass
class Trace:
    """One learner's week: page opens and closes, bursts of typing (seconds from the week's start)."""

    learner: str
    behaviour: str
    opens: list[float] = field(default_factory=list)
    closes: list[float] = field(default_factory=list)
    bursts: list[tuple[float, float]] = field(default_factory=list)
    typing: list[tuple[float, float]] = field(default_factory=list)  # runs of keys within the bursts
    hides: list[tuple[float, float]] = field(default_factory=list)  # (hidden, shown again) of an open tab

    @property
    def active_h(self) -> float:
        """The learner's activity: the bursts of work, their pauses between runs of keys included."""
        return sum(end - start for start, end in self.bursts) / HOUR

    @property
    def keys(self) -> list[tuple[float, float]]:
        """The runs of keys (a trace made by hand without runs types through its bursts)."""
        return self.typing or self.bursts

    def last_input(self, at: float) -> float | None:
        """The latest keystroke at or before `at` (continuous within a run; runs in order)."""
        index = bisect.bisect_right(self.keys, (at, math.inf)) - 1
        return None if index < 0 else min(at, self.keys[index][1])

    def last_write(self, at: float, every_s: float) -> float | None:
        """The latest activity the web process writes by `at` for these keystrokes, at most once per
        `every_s` (Environments.touch's throttle): the burst's start, then every `every_s` of typing."""
        index = bisect.bisect_right(self.keys, (at, math.inf)) - 1
        if index < 0:
            return None
        start, end = self.keys[index]
        return start + math.floor((min(at, end) - start) / every_s) * every_s


def _bursts(rng: random.Random, course: Course, start: float, seconds: float) -> list[tuple[float, float]]:
    bursts, t = [], start
    while seconds > 1:
        length = min(seconds, rng.uniform(*course.burst_min) * 60)
        bursts.append((t, t + length))
        seconds -= length
        t += length + rng.uniform(*course.pause_min) * 60
    return bursts


def _runs(rng: random.Random, course: Course, burst: tuple[float, float]) -> list[tuple[float, float]]:
    """The runs of keys in one burst of work: a run, a pause (`Course.think`), ...; the last run ends the
    burst."""
    if not course.think:
        return [burst]
    shares = [share for share, _, _ in course.think]
    runs, t, end = [], burst[0], burst[1]
    while t < end:
        stop = min(end, t + rng.uniform(*RUN_S))
        runs.append((t, stop))
        _, low, high = rng.choices(course.think, shares)[0]
        t = stop + rng.uniform(low, high)
    return runs


def make_trace(rng: random.Random, index: int, behaviour: str, course: Course) -> Trace:
    trace = Trace(f"learner-{index:04d}", behaviour)
    total = rng.uniform(*course.hours) * HOUR * course.days / 7  # hours are per week
    per_day = len(course.sessions)
    if behaviour == "returns_after_lunch":  # a morning and the afternoon after it make one visit
        days = max(1, min(course.days, round(total / HOUR / rng.uniform(1.5, 2.5))))
        chosen = sorted(rng.sample(range(course.days), days))
        for day in chosen:
            (m_start, _), (a_start, _) = course.sessions[0], course.sessions[-1]
            half = total / days / 2
            opened = day * DAY + m_start + rng.uniform(0, 45) * 60
            morning = _bursts(rng, course, opened, half)
            afternoon = _bursts(rng, course, day * DAY + a_start + rng.uniform(0, 20) * 60, half)
            trace.opens.append(opened)
            trace.bursts += morning + afternoon
            trace.closes.append(afternoon[-1][1] + rng.uniform(0, 2) * 60)
        return trace
    visits = max(2, min(course.days * per_day, round(total / HOUR / rng.uniform(*course.visit_h))))
    slots = sorted(rng.sample(range(course.days * per_day), visits))
    for slot in slots:
        day, session = divmod(slot, per_day)
        opened = day * DAY + course.sessions[session][0] + rng.uniform(0, 45) * 60
        first = opened + (rng.uniform(8, 12) * 60 if behaviour == "reads_first" else 0.0)
        bursts = _bursts(rng, course, first, total / visits)
        if behaviour == "walks_away" and len(bursts) > 1:
            away, middle = rng.uniform(20, 60) * 60, len(bursts) // 2
            bursts = bursts[:middle] + [(s + away, e + away) for s, e in bursts[middle:]]
        left = bursts[-1][1] + rng.uniform(0, 2) * 60
        if behaviour != "tab_open_overnight" or not trace.opens:
            trace.opens.append(opened)
        elif trace.hides:  # back to the tab left open (hidden) since the last visit
            trace.hides[-1] = (trace.hides[-1][0], opened)
        trace.bursts += bursts
        if behaviour == "tab_open_overnight":
            trace.hides.append((left, course.end))
        else:
            trace.closes.append(left)
    if behaviour == "tab_open_overnight":
        trace.closes.append(course.end)
    return trace


def make_traces(count: int, seed: int, mix: dict[str, float], course: Course) -> list[Trace]:
    """The week's learners; the runs of keys come from a generator of their own, so that the bursts of
    work (the floor) are the same with and without pauses."""
    rng, keys_rng = random.Random(seed), random.Random(seed + 1)
    names, weights = list(mix), list(mix.values())
    traces = [make_trace(rng, i, rng.choices(names, weights)[0], course) for i in range(count)]
    for trace in traces:
        trace.typing = [run for burst in trace.bursts for run in _runs(keys_rng, course, burst)]
    return traces


def sample(traces: Sequence[Trace], size: int, seed: int) -> list[Trace]:
    """The same learners for every policy (paired comparison)."""
    if size >= len(traces):
        return list(traces)
    return sorted(random.Random(seed).sample(list(traces), size), key=lambda t: t.learner)
