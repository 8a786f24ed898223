"""Usage limits: how much running time a learner has left, and when a running lab reaches its limit.

A lab's `usage_limit:` (labs/usage_limit.py) gives each learner hours of running time per week (from Monday
00:00 UTC) or in total, on that lab or on every lab of the course, plus what staff granted (store/grants.py).
Time used is what the recorded transitions say the labs ran (store/usage.py): a restart of the service
changes nothing.

Past a `block` limit a start or resume is refused (the service raises `UsageLimitReached` with a sentence
for the learner) and a running lab is paused by a policy: a pass writes the moment its lab reaches the limit
into `usage_limit_at`, a deadline like the idle one, so whichever scheduler runs sends the pass that pauses
it. A `warn` limit only tells the learner.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from stacklab.labs.durations import format_duration
from stacklab.labs.schema import Lab
from stacklab.labs.usage_limit import UsageLimit
from stacklab.store.grants import granted_seconds
from stacklab.store.repository import Repository
from stacklab.store.tables import EnvironmentRecord
from stacklab.store.usage import learner_running_seconds, running_seconds
from stacklab.types import Observed

WEEK_S = 7 * 86400.0
_FIRST_MONDAY = 4 * 86400.0
"""1970-01-05 00:00 UTC, the first Monday after the epoch."""


def week_start(now: float) -> float:
    """Monday 00:00 UTC of the week holding `now`."""
    return now - (now - _FIRST_MONDAY) % WEEK_S


@dataclass(frozen=True)
class Allowance:
    """A learner's running time against their limit, as of `now`."""

    hours: float
    per: str
    policy: str
    scope: str
    used_s: float
    granted_s: float
    period_ends_at: float | None
    """When a weekly allowance starts afresh; None for a total one."""

    @property
    def limit_s(self) -> float:
        return self.hours * 3600.0 + self.granted_s

    @property
    def remaining_s(self) -> float:
        return max(0.0, self.limit_s - self.used_s)

    @property
    def over(self) -> bool:
        return self.used_s >= self.limit_s

    @property
    def blocked(self) -> bool:
        """Past a `block` limit: no start or resume."""
        return self.over and self.policy == "block"

    def sentence(self) -> str:
        """What the learner reads when they are past the limit (empty while they are not)."""
        if not self.over:
            return ""
        where = "on this course's labs" if self.scope == "course" else "on this lab"
        period = " this week" if self.per == "week" else ""
        used = f"You have used all {format_duration(self.limit_s)} of lab time {where}{period}."
        if self.policy == "warn":
            return f"{used} You may go on working; your course staff can see the time you use."
        again = ""
        if self.period_ends_at is not None:
            when = time.strftime("%A %d %B, %H:%M UTC", time.gmtime(self.period_ends_at))
            again = f" It can run again from {when}."
        return (
            f"{used} Your lab stays paused, so you can read your last check results but not work in it."
            f"{again} If you need more time, ask your course staff."
        )


def allowance(
    repo: Repository,
    limit: UsageLimit,
    course: str,
    lab_id: str,
    learner: str,
    now: float,
    env_id: str | None,
) -> Allowance:
    """The learner's allowance under `limit` (already resolved for the course), as of `now`."""
    since = week_start(now) if limit.per == "week" else None
    if limit.scope == "course":
        used = learner_running_seconds(repo, course, learner, now, since)
        granted = granted_seconds(repo, course, learner, None, since)
    else:
        used = running_seconds(repo, [env_id], now, since).get(env_id, 0.0) if env_id else 0.0
        granted = granted_seconds(repo, course, learner, lab_id, since)
    return Allowance(
        hours=limit.hours,
        per=limit.per,
        policy=limit.policy,
        scope=limit.scope,
        used_s=used,
        granted_s=granted,
        period_ends_at=since + WEEK_S if since is not None else None,
    )


def allowance_of(repo: Repository, record: EnvironmentRecord, lab: Lab, now: float) -> Allowance | None:
    """The allowance of an environment's learner under its lab's limit; None when the lab sets none."""
    if lab.usage_limit is None:
        return None
    limit = lab.usage_limit.for_course(record.course)
    return allowance(repo, limit, record.course, record.lab_id, record.learner, now, record.id)


def limit_deadline(repo: Repository, record: EnvironmentRecord, lab: Lab, now: float) -> float | None:
    """When the environment must be paused for its `block` limit (`now` when it is past it), or None.

    A lab that is not running uses no time: only a learner already past the limit gets a deadline (a resume
    under way is turned back). A running lab reaches the limit after the time left, unless a new week starts
    first: the pass then sent at the week's start looks again with the fresh allowance."""
    found = allowance_of(repo, record, lab, now)
    if found is None or found.policy != "block":
        return None
    if found.over:
        return now
    if record.observed != Observed.RUNNING:
        return None
    reached = now + found.remaining_s
    if found.period_ends_at is not None:
        reached = min(reached, found.period_ends_at)
    return reached
