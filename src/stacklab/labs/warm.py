"""Warm pools: the lab file's `warm:` section (docs/warm-pools.md).

    warm:
      size: 2                    # environments kept ready per provider of the lab, per course
      max_age: 8h                # a member older than this is replaced by a fresh one
      hours: Mon-Fri 08:30-17:30 # when the pool is kept (labs/hours.py); default: always
      timezone: Europe/Zurich    # of `hours`; default UTC
      lead: 10m                  # filled this long before each session opens
      state: suspended           # suspended (default) or running while waiting

The next learner of the course who launches the lab is handed a member (its SSH key rotated), and the
pool is refilled in the background. Outside the hours the pool is drained.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)

from stacklab.labs.durations import parse_duration
from stacklab.labs.hours import ALWAYS, Schedule, parse_hours, zone


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be longer than 0s")
    return value


_Duration = Annotated[StrictFloat, BeforeValidator(parse_duration), AfterValidator(_positive)]


class Warm(BaseModel):
    """N environments per provider launched ahead of learners, during the declared session hours."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    size: StrictInt = Field(ge=0, le=200)
    """Environments kept ready per provider of the lab, in each course that launches it (0: no pool)."""
    max_age_s: _Duration = Field(8 * 3600.0, alias="max_age")
    """A member this long past its launch is deleted and replaced (a fresh lab, fresh packages)."""
    hours: tuple[StrictStr, ...] = (ALWAYS,)
    """When the pool is kept: `always`, or entries such as `Mon-Fri 09:00-12:00, 13:30-17:00`."""
    timezone: StrictStr = "UTC"
    """The IANA time zone `hours` are in (summer time followed)."""
    lead_s: Annotated[StrictFloat, BeforeValidator(parse_duration)] = Field(600.0, alias="lead")
    """How long before each session opens the pool is filled (a launch takes minutes on a cloud)."""
    state: Literal["suspended", "running"] = "suspended"
    """How members wait: `suspended` costs suspended node-hours and adds a resume to the hand-over;
    `running` costs running node-hours and hands over in one SSH round (key rotation) only."""

    @field_validator("hours", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @field_validator("hours")
    @classmethod
    def _valid_hours(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        parse_hours(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        zone(value)
        return value

    @property
    def schedule(self) -> Schedule:
        """When the pool is kept (session windows opened `lead` early), in UTC epoch seconds."""
        return Schedule(parse_hours(self.hours), zone(self.timezone), self.lead_s)
