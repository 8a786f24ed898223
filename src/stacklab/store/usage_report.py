"""The cost report: node-hours running and suspended, and hours queued, per course, lab and week (and over
time, for the operator page's chart and the Prometheus series), priced by what the providers declare.

Every figure comes from the recorded transitions, through store/usage.py's intervals (`state_intervals`:
one query per state, whatever the number of weeks or buckets); nothing is sampled or kept in memory. An
environment's hours count in the state it was observed in:

- running: observed `running` (an interval opens at the transition into it, closes at the next one out);
- suspended: observed `suspended` (a paused lab still holds its disks: providers may price it);
- queued: observed `new`, waiting for a provider (from its creation to its first step, and again after a
  reset or a fail-over); queued time costs nothing and is counted per environment, not per node.

The warm pools' members (envs/pools.py: stacks kept ready for the next learner) are rows of their own
(`kind` "warm pool", beside "learners"): what a pool costs is seen apart from what learners use.

Node-hours are hours times the lab's nodes. Money is node-hours times the price per node-hour its
provider declares in the lab file (`providers: [{..., price: {running, suspended, currency}}]`); a row of
a lab whose environments ran on providers of different currencies, or on a provider without a price,
shows no money for the part that cannot be priced (`currency` None).
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import func, select

from stacklab.store.repository import Repository
from stacklab.store.tables import EnvironmentRecord, TransitionRecord
from stacklab.store.usage import IDS_PER_QUERY, state_intervals
from stacklab.types import Observed

WEEK_S = 7 * 86400.0
FIRST_MONDAY = 4 * 86400.0
"""1970-01-05, a Monday (weeks start on Monday, 00:00 UTC, as ISO weeks do)."""
STATES = ("running", "suspended", "queued")
MAX_BUCKETS = 200
"""Most points of one series (a chart's width in points; more would only cost the browser)."""


@dataclass(frozen=True)
class Pricing:
    """What one environment's hours are worth: its lab's node count and its provider's prices."""

    nodes: int
    running: float | None = None
    """Price per node-hour running; None: the provider declares no price."""
    suspended: float | None = None
    currency: str | None = None


PricingOf = Callable[[EnvironmentRecord], Pricing]


@dataclass
class WeekRow:
    """One course's lab in one week (Monday 00:00 UTC to the next)."""

    course: str
    lab: str
    week: str
    """The week's Monday, YYYY-MM-DD."""
    kind: str = "learners"
    """"learners", or "warm pool" for the hours of the lab's warm pool members."""
    environments: int = 0
    """Environments with any time counted in the week."""
    running_node_hours: float = 0.0
    suspended_node_hours: float = 0.0
    queued_hours: float = 0.0
    running_cost: float | None = 0.0
    suspended_cost: float | None = 0.0
    currency: str | None = None
    _envs: set[str] = field(default_factory=set, repr=False)
    _currencies: set[str | None] = field(default_factory=set, repr=False)

    def add(self, env_id: str, state: str, seconds: float, pricing: Pricing) -> None:
        self._envs.add(env_id)
        self.environments = len(self._envs)
        hours = seconds / 3600.0
        if state == "queued":
            self.queued_hours += hours
            return
        node_hours = hours * pricing.nodes
        price = pricing.running if state == "running" else pricing.suspended
        self._currencies.add(pricing.currency if price is not None else None)
        if state == "running":
            self.running_node_hours += node_hours
            self.running_cost = _plus(self.running_cost, price, node_hours)
        else:
            self.suspended_node_hours += node_hours
            self.suspended_cost = _plus(self.suspended_cost, price, node_hours)
        priced = len(self._currencies) == 1 and None not in self._currencies
        self.currency = next(iter(self._currencies)) if priced else None
        if not priced:
            self.running_cost = self.suspended_cost = None

    def to_json(self) -> dict[str, object]:
        return {
            "course": self.course,
            "lab": self.lab,
            "week": self.week,
            "kind": self.kind,
            "environments": self.environments,
            "running_node_hours": round(self.running_node_hours, 6),
            "suspended_node_hours": round(self.suspended_node_hours, 6),
            "queued_hours": round(self.queued_hours, 6),
            "running_cost": None if self.running_cost is None else round(self.running_cost, 6),
            "suspended_cost": None if self.suspended_cost is None else round(self.suspended_cost, 6),
            "currency": self.currency,
        }


def _plus(total: float | None, price: float | None, node_hours: float) -> float | None:
    return None if total is None or price is None else total + price * node_hours


@dataclass(frozen=True)
class Series:
    """Nodes running and suspended, and environments queued, on average over each bucket of time."""

    start: float
    bucket_s: float
    running: list[float]
    suspended: list[float]
    queued: list[float]

    @property
    def times(self) -> list[float]:
        return [self.start + i * self.bucket_s for i in range(len(self.running))]

    def to_json(self) -> dict[str, object]:
        return {
            "start": self.start,
            "bucket_s": self.bucket_s,
            "times": self.times,
            "running": self.running,
            "suspended": self.suspended,
            "queued": self.queued,
        }


Interval = tuple[str, float, float]


def week_start(at: float) -> float:
    """The Monday 00:00 UTC that begins `at`'s week (epoch seconds)."""
    return FIRST_MONDAY + math.floor((at - FIRST_MONDAY) / WEEK_S) * WEEK_S


def week_label(start: float) -> str:
    return datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%d")


def parse_since(text: str) -> float:
    """A date (YYYY-MM-DD, midnight UTC) or an ISO date and time (UTC unless it names its offset)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a date: write YYYY-MM-DD or YYYY-MM-DDTHH:MM") from exc
    if moment.tzinfo is None:
        return float(calendar.timegm(moment.timetuple())) + moment.microsecond / 1e6
    return moment.timestamp()


def course_environments(repo: Repository, course: str) -> list[EnvironmentRecord]:
    """Every environment of the course, deleted ones included (their hours were spent)."""
    query = select(EnvironmentRecord).where(EnvironmentRecord.course == course)
    with repo.read() as session:
        return list(session.scalars(query.order_by(EnvironmentRecord.created_at)))


def _first_steps(repo: Repository, ids: list[str]) -> dict[str, float]:
    """When each environment was first observed leaving `new` (absent: it never left it yet)."""
    t = TransitionRecord
    found: dict[str, float] = {}
    for start in range(0, len(ids), IDS_PER_QUERY):
        query = (
            select(t.env_id, func.min(t.at))
            .where(t.env_id.in_(ids[start : start + IDS_PER_QUERY]), t.kind == "observed")
            .group_by(t.env_id)
        )
        with repo.read() as session:
            found.update({env_id: float(at) for env_id, at in session.execute(query)})
    return found


def intervals(
    repo: Repository, records: Iterable[EnvironmentRecord], until: float, since: float | None = None
) -> dict[str, list[Interval]]:
    """The running, suspended and queued intervals of these environments, clipped to [since, until].

    Running and suspended are store/usage.py's intervals; queued adds, to its `new` intervals (after a
    reset or a fail-over), the wait from an environment's creation to its first observed step, which no
    transition opens.
    """
    by_id = {r.id: r for r in records}
    ids = list(by_id)
    found = {
        "running": state_intervals(repo, ids, Observed.RUNNING, until, since),
        "suspended": state_intervals(repo, ids, Observed.SUSPENDED, until, since),
        "queued": state_intervals(repo, ids, Observed.NEW, until, since),
    }
    first = _first_steps(repo, ids)
    for env_id, record in by_id.items():
        begin = max(record.created_at, since if since is not None else record.created_at)
        end = min(first.get(env_id, until), until)
        if end > begin:
            found["queued"].append((env_id, begin, end))
    return found


def _split(begin: float, end: float, start: float, step: float) -> Iterable[tuple[int, float]]:
    """(bucket index, seconds) of an interval cut at start + k * step."""
    index = math.floor((begin - start) / step)
    while begin < end:
        edge = min(end, start + (index + 1) * step)
        if edge > begin:
            yield index, edge - begin
        begin, index = edge, index + 1


def weekly(
    repo: Repository, course: str, pricing_of: PricingOf, until: float, since: float | None = None
) -> list[WeekRow]:
    """The report's rows for a course, by lab, kind (learners, warm pool) and week (weeks with no hour
    counted are left out)."""
    records = course_environments(repo, course)
    by_id = {r.id: r for r in records}
    pricing = {r.id: pricing_of(r) for r in records}
    rows: dict[tuple[str, str, float], WeekRow] = {}
    for state, found in intervals(repo, records, until, since).items():
        for env_id, begin, end in found:
            first = week_start(begin)
            kind = "learners" if by_id[env_id].pool is None else "warm pool"
            for index, seconds in _split(begin, end, first, WEEK_S):
                start = first + index * WEEK_S
                key = (by_id[env_id].lab_id, kind, start)
                if key not in rows:
                    rows[key] = WeekRow(course, key[0], week_label(start), kind)
                rows[key].add(env_id, state, seconds, pricing[env_id])
    return [rows[key] for key in sorted(rows)]


def totals(rows: Iterable[WeekRow]) -> dict[str, object]:
    """The rows summed (money only when every row is priced in one currency)."""
    rows = list(rows)
    currencies = {r.currency for r in rows}
    priced = len(currencies) == 1 and None not in currencies
    return {
        "environments": None,  # an environment spans weeks: its count per row does not add up
        "running_node_hours": round(sum(r.running_node_hours for r in rows), 6),
        "suspended_node_hours": round(sum(r.suspended_node_hours for r in rows), 6),
        "queued_hours": round(sum(r.queued_hours for r in rows), 6),
        "running_cost": round(sum(r.running_cost or 0.0 for r in rows), 6) if priced else None,
        "suspended_cost": round(sum(r.suspended_cost or 0.0 for r in rows), 6) if priced else None,
        "currency": next(iter(currencies)) if priced else None,
    }


def bucket_for(span_s: float) -> float:
    """A bucket size that gives at most MAX_BUCKETS points: 5 min, 15 min, 1 h, 3 h, 6 h or a day."""
    for step in (300.0, 900.0, 3600.0, 3 * 3600.0, 6 * 3600.0, 86400.0):
        if span_s / step <= MAX_BUCKETS:
            return step
    return math.ceil(span_s / MAX_BUCKETS / 86400.0) * 86400.0


def series(
    repo: Repository,
    course: str | None,
    pricing_of: PricingOf,
    since: float,
    until: float,
    bucket_s: float | None = None,
    lab: str | None = None,
) -> Series:
    """Nodes running and suspended and environments queued over [since, until], averaged per bucket
    (a course's, or every course's when `course` is None; one lab's when `lab` is given)."""
    if course is None:
        with repo.read() as session:
            records = list(session.scalars(select(EnvironmentRecord)))
    else:
        records = course_environments(repo, course)
    if lab is not None:
        records = [r for r in records if r.lab_id == lab]
    step = bucket_s or bucket_for(until - since)
    count = max(1, math.ceil((until - since) / step))
    values = {state: [0.0] * count for state in STATES}
    nodes = {r.id: pricing_of(r).nodes for r in records}
    for state, found in intervals(repo, records, until, since).items():
        weight = 1 if state == "queued" else None
        for env_id, begin, end in found:
            for index, seconds in _split(begin, end, since, step):
                if 0 <= index < count:
                    values[state][index] += seconds * (weight or nodes[env_id]) / step
    return Series(since, step, values["running"], values["suspended"], values["queued"])
