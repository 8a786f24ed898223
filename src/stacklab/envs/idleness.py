"""Idleness: when a running lab counts as idle, and why.

A lab is idle `idle_suspend_s` after the learner's last activity (keystrokes in a terminal, key presses and
clicks in the lab page, commands run through the service). An open page is not activity. The page's
presence and the way the lab was woken bring that deadline forward until the learner acts again; each is
an *away* marker on the environment (`away_at`, `away_kind`, `away_limit_s`), so that the deadline lives in
the database and whichever scheduler runs honours it:

- `hidden`: the page is hidden (another tab, a minimised window): idle `timeouts.idle_suspend_hidden`
  after it was hidden; cleared when the page is shown again;
- `closed`: the page was closed or navigated away from (`pagehide` beacon): paused `timeouts.close_grace`
  later; cleared when a page of the lab opens again (a reload) or is shown again;
- `preresume`: the LMS rendered the lab's unit and woke the suspended lab before the learner acted:
  paused again `timeouts.pre_resume_idle` after it is ready; cleared only by activity.

Activity clears every marker (`Environments.touch`); a pause clears it too (the controller's suspend).
"""

from __future__ import annotations

from enum import StrEnum

from stacklab.labs.durations import format_duration
from stacklab.store.tables import EnvironmentRecord


class Away(StrEnum):
    HIDDEN = "hidden"
    CLOSED = "closed"
    PRERESUME = "preresume"


REASONS = {
    None: "Idle",
    Away.HIDDEN: "PageHidden",
    Away.CLOSED: "PageClosed",
    Away.PRERESUME: "PreResumeUnused",
}
"""The reason a pause for idleness is recorded with, by the marker that brought it."""
IDLE_REASONS = frozenset(REASONS.values())


def idle_deadline(record: EnvironmentRecord) -> float:
    """When this running lab counts as idle: the sooner of its idle limit and its away marker's."""
    deadline = record.last_activity_at + record.idle_suspend_s
    away = away_deadline(record)
    return deadline if away is None else min(deadline, away)


def away_deadline(record: EnvironmentRecord) -> float | None:
    if record.away_at is None or record.away_limit_s is None or record.away_kind is None:
        return None
    return record.away_at + record.away_limit_s


def idle_reason(record: EnvironmentRecord, now: float) -> tuple[str, str]:
    """The reason and message of a pause for idleness decided at `now`."""
    away = away_deadline(record)
    if away is not None and away <= record.last_activity_at + record.idle_suspend_s:
        kind = Away(record.away_kind)
        since = format_duration(now - (record.away_at or now))
        message = {
            Away.HIDDEN: f"the lab page was hidden {since} ago, with no activity since",
            Away.CLOSED: f"the lab page was closed {since} ago",
            Away.PRERESUME: f"woken by a unit view {since} ago, with no activity since",
        }[kind]
        return REASONS[kind], message
    return REASONS[None], f"no activity for {format_duration(now - record.last_activity_at)}"


def mark_away(record: EnvironmentRecord, kind: Away, now: float, limit_s: float) -> bool:
    """Set the away marker (unless a sooner one stays: a pre-resume's is not lengthened by hiding the page);
    makes the environment due at the new deadline. True when something changed."""
    current = away_deadline(record)
    if (
        kind == Away.HIDDEN
        and record.away_kind is not None
        and current is not None
        and current <= now + limit_s
    ):
        return False
    record.away_at, record.away_kind, record.away_limit_s = now, kind.value, limit_s
    deadline = now + limit_s
    record.due_at = deadline if record.due_at is None else min(record.due_at, deadline)
    return True


def clear_away(record: EnvironmentRecord, kinds: frozenset[Away] | None = None) -> bool:
    """Drop the away marker (only of `kinds` when given). True when there was one to drop."""
    if record.away_kind is None or (kinds is not None and Away(record.away_kind) not in kinds):
        return False
    record.away_at = record.away_kind = record.away_limit_s = None
    return True


PAGE_KINDS = frozenset({Away.HIDDEN, Away.CLOSED})
"""What a page that opens or shows again clears (a pre-resume waits for activity)."""
