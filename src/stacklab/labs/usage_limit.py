"""How many hours a learner may run a lab: the lab file's `usage_limit:` section.

    usage_limit:
      hours: 10            # running hours per learner
      per: week            # week (Monday 00:00 UTC to the next) or total
      policy: block        # block: refused and paused past the limit; warn: a warning only
      scope: lab           # lab: time on this lab; course: the learner's time on every lab of the course
      courses:             # per course run: any of hours, per, policy (the rest as above)
        course-v1:Org+C1+2026: {hours: 20}

A course sets its own allowance through `courses:` (keyed by course id), so one lab file serves course runs
that give different time. Time is what the learner's labs were observed running (store/usage.py); staff
grants (store/grants.py) add to the hours. Leaving the section out means no limit.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat

Per = Literal["week", "total"]
Policy = Literal["warn", "block"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CourseLimit(_Model):
    """One course run's allowance: what it sets replaces the lab's value."""

    hours: StrictFloat | None = Field(None, gt=0, le=100000)
    per: Per | None = None
    policy: Policy | None = None


class UsageLimit(_Model):
    """Running hours per learner, per week or in total, with what happens past them."""

    hours: StrictFloat = Field(gt=0, le=100000)
    """Running hours per learner (fractions allowed: 1.5 = 90 minutes)."""
    per: Per = "week"
    """`week`: counted from Monday 00:00 UTC, starting afresh each week; `total`: over the whole course."""
    policy: Policy = "block"
    """`block`: past the limit a launch or resume is refused and a running lab is paused; `warn`: a
    warning on the lab page only."""
    scope: Literal["lab", "course"] = "lab"
    """`lab`: the learner's time on this lab; `course`: their time on every lab of the course."""
    courses: dict[str, CourseLimit] = Field(default_factory=dict)
    """Per-course allowances, keyed by course id."""

    def for_course(self, course: str) -> UsageLimit:
        """The limit as it applies in `course` (its entry of `courses:` over the lab's values)."""
        entry = self.courses.get(course)
        if entry is None:
            return self
        changes = {name: value for name, value in entry.model_dump().items() if value is not None}
        return self.model_copy(update=changes)
