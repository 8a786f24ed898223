"""The learners of bench/cost_sim.py: a week of a course and how each learner uses the lab's tab.

Each learner does 2-5 hours of activity a week in visits to the course's lab sessions, each visit in bursts
of typing separated by reading, and behaves as one of a documented mix (`MIX`). A trace is what the browser
and the LMS would tell the service: unit views (page opens), closes (the `pagehide` beacon), a tab hidden
and shown again, and the bursts of keystrokes. Traces are made from a seed: the same for every policy.
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
typing separated by 1-6 min of reading the next step (not counted as activity)."""


@dataclass(frozen=True)
class Course:
    days: int = 7
    sessions: tuple[tuple[float, float], ...] = ((9 * HOUR, 12 * HOUR), (14 * HOUR, 17 * HOUR))
    hours: tuple[float, float] = (2.0, 5.0)
    visit_h: tuple[float, float] = (0.6, 1.2)
    burst_min: tuple[float, float] = (10.0, 25.0)
    pause_min: tuple[float, float] = (1.0, 6.0)

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
    hides: list[tuple[float, float]] = field(default_factory=list)  # (hidden, shown again) of an open tab

    @property
    def active_h(self) -> float:
        return sum(end - start for start, end in self.bursts) / HOUR

    def last_input(self, at: float) -> float | None:
        """The latest keystroke at or before `at` (typing is continuous within a burst; bursts in order)."""
        index = bisect.bisect_right(self.bursts, (at, math.inf)) - 1
        return None if index < 0 else min(at, self.bursts[index][1])

    def last_write(self, at: float, every_s: float) -> float | None:
        """The latest activity the web process writes by `at` for these keystrokes, at most once per
        `every_s` (Environments.touch's throttle): the burst's start, then every `every_s` of typing."""
        index = bisect.bisect_right(self.bursts, (at, math.inf)) - 1
        if index < 0:
            return None
        start, end = self.bursts[index]
        return start + math.floor((min(at, end) - start) / every_s) * every_s


def _bursts(rng: random.Random, course: Course, start: float, seconds: float) -> list[tuple[float, float]]:
    bursts, t = [], start
    while seconds > 1:
        length = min(seconds, rng.uniform(*course.burst_min) * 60)
        bursts.append((t, t + length))
        seconds -= length
        t += length + rng.uniform(*course.pause_min) * 60
    return bursts


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
    rng = random.Random(seed)
    names, weights = list(mix), list(mix.values())
    return [make_trace(rng, i, rng.choices(names, weights)[0], course) for i in range(count)]


def sample(traces: Sequence[Trace], size: int, seed: int) -> list[Trace]:
    """The same learners for every policy (paired comparison)."""
    if size >= len(traces):
        return list(traces)
    return sorted(random.Random(seed).sample(list(traces), size), key=lambda t: t.learner)
