"""Policies move the desired state; the controller converges to it.

- idle: a running environment whose learner has been inactive for the lab's `idle_suspend` is suspended
  (sooner when its page was hidden or closed, or a unit view woke it: envs/idleness.py);
- age: an environment inactive for the lab's `delete_after` is deleted (suspended ones included).
- usage limit: an environment that wants to run past its learner's `block` usage limit is suspended at
  `usage_limit_at`, which passes set from the time used (envs/allowance.py).
"""

from __future__ import annotations

from stacklab.envs.idleness import idle_deadline, idle_reason
from stacklab.envs.transitions import Journal
from stacklab.labs.durations import format_duration
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Desired, Observed


def apply_policies(journal: Journal) -> None:
    record, now = journal.record, journal.now
    idle_for = now - record.last_activity_at
    if record.desired != Desired.DELETED and idle_for >= record.delete_after_s:
        journal.desire(Desired.DELETED, "Expired", f"inactive for {format_duration(idle_for)}")
    elif (
        record.desired == Desired.RUNNING
        and record.usage_limit_at is not None
        and now >= record.usage_limit_at
    ):
        journal.desire(
            Desired.SUSPENDED, "UsageLimit", "the learner has used the lab time their limit allows"
        )
    elif (
        record.desired == Desired.RUNNING
        and record.observed == Observed.RUNNING
        and now >= idle_deadline(record)
    ):
        journal.desire(Desired.SUSPENDED, *idle_reason(record, now))


SETTLED = {
    Desired.RUNNING: {Observed.RUNNING},
    Desired.SUSPENDED: {Observed.SUSPENDED, Observed.NEW, Observed.DELETED},
    Desired.DELETED: {Observed.DELETED},
}


def is_settled(record: EnvironmentRecord) -> bool:
    """The observed state is where the desired one wants it (or failed: a person or a retry decides)."""
    if record.observed == Observed.FAILED:
        return True
    return record.observed in SETTLED[Desired(record.desired)] and not record.reset_requested


def policy_deadline(record: EnvironmentRecord) -> float | None:
    """When a policy will next want to change this environment (None: never)."""
    if record.desired == Desired.DELETED:
        return None
    expiry = record.last_activity_at + record.delete_after_s
    if record.desired == Desired.RUNNING and record.usage_limit_at is not None:
        expiry = min(expiry, record.usage_limit_at)
    if record.desired == Desired.RUNNING and record.observed == Observed.RUNNING:
        return min(expiry, idle_deadline(record))
    return expiry
