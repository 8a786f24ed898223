"""Warm pools: environments launched ahead of learners, kept during session hours (docs/warm-pools.md).

A lab's `warm:` section (labs/warm.py) asks for `size` members per provider in each course that launches
the lab. A member is an environment row of its own with `pool` set to its provider and a learner name no
learner can have (`~warm-<provider>-<n>`, n < size): a slot that lives on across fills. Its stacks are named
`sl-<member id>-<fill>`, a fresh name for every fill, because a filled stack leaves with the learner it is
handed to (envs/handover.py) and the member then fills again.

The pool policy takes the place of the learner policies (idle, age, usage) for members:
- drained (desired deleted) outside the hours, when the lab no longer wants the slot (smaller `size`, the
  provider left the lab, no `warm:` any more);
- filled (desired running) in the hours when it has no stack; its failed attempts are forgotten each time
  a session opens;
- kept suspended once ready (`state: suspended`), or running (`state: running`);
- replaced (reset: the stack deleted and created afresh) once `max_age` past its readiness;
- tried again `max_age` after it failed as often as the controller retries (`max_attempts`).
Deadlines (the next change of the hours, a member's `max_age`) are written to `due_at`, so whichever
scheduler runs sends the passes.

Pools are brought in line with the lab (`sync_pool`) whenever a learner's lab of it is created: missing
slots are added, slots built from an older lab file are rebuilt from the new one.
"""

from __future__ import annotations

import re

from sqlalchemy.orm import Session

from stacklab.envs.lifecycle import forgive
from stacklab.envs.new_record import NewEnvironment
from stacklab.envs.transitions import Journal
from stacklab.labs.durations import format_duration
from stacklab.labs.schema import Lab
from stacklab.store import pools as store
from stacklab.store.tables import EnvironmentRecord, TransitionRecord
from stacklab.types import Desired, Observed, Progress

MEMBER_PREFIX = "~warm-"
"""Members' learner names start so: no learner's can (learner names start with a letter or digit)."""
NEVER_S = 100 * 365 * 86400.0
"""A member's idle and age limits: the learner policies never fire on it, whatever path applies them."""
_STACK_NAME = re.compile(r"^sl-(?P<id>[0-9a-f]+)-(?P<fill>\d+)$")


def member_name(provider: str, slot: int) -> str:
    return f"{MEMBER_PREFIX}{provider}-{slot}"


def slot_of(record: EnvironmentRecord) -> int:
    return int(record.learner.rsplit("-", 1)[1])


def next_stack_name(record: EnvironmentRecord) -> str:
    """The name of a member's next stack: `sl-<id>-<fill + 1>`, never one it used before."""
    match = _STACK_NAME.match(record.stack_name)
    fill = int(match["fill"]) + 1 if match and match["id"] == record.id else 1
    return f"sl-{record.id}-{fill}"


def has_stack(record: EnvironmentRecord) -> bool:
    return record.observed in (Observed.RUNNING, Observed.SUSPENDED) and record.provider is not None


def gave_up(record: EnvironmentRecord) -> bool:
    """Failed, with no retry planned (the controller's max_attempts are used up)."""
    return record.observed == Observed.FAILED and record.next_attempt_at is None


# the policy ---------------------------------------------------------------------------------------------
def _not_wanted(record: EnvironmentRecord, lab: Lab) -> tuple[str, str] | None:
    """Why the lab no longer wants this slot at all (reason, message), or None."""
    warm = lab.warm
    if warm is None or warm.size == 0:
        return "PoolRemoved", "the lab declares no warm pool"
    if record.pool not in {entry.name for entry in lab.providers}:
        return "PoolRemoved", f"provider {record.pool} is no longer one of the lab's"
    if slot_of(record) >= warm.size:
        return "PoolShrunk", f"the pool's size is {warm.size} now"
    return None


def apply_pool_policy(journal: Journal, lab: Lab) -> None:
    """Move a member's desired state as its pool wants it now (see the module's docstring)."""
    record, now, warm = journal.record, journal.now, lab.warm
    gone = _not_wanted(record, lab)
    if gone is None and warm is not None and not warm.schedule.is_open(now):
        gone = "PoolClosed", "outside the session hours"
    if gone is not None:
        journal.desire(Desired.DELETED, *gone)
        return
    assert warm is not None
    if record.desired == Desired.DELETED or (not has_stack(record) and record.desired != Desired.RUNNING):
        forgive(record)  # a new session: earlier failures do not hold the slot back
        journal.desire(Desired.RUNNING, "PoolFill", f"kept ready for the next learner ({warm.state})")
        return
    if gave_up(record) and now >= record.updated_at + warm.max_age_s:
        forgive(record)  # failed as often as retries go (none pending): tried again after max_age
        journal.note("pool", record.observed, "PoolRetry", "the member failed; trying again")
        return
    age = now - (record.ready_at or now)
    if has_stack(record) and age >= warm.max_age_s and not record.reset_requested:
        record.reset_requested = True
        journal.note("pool", record.observed, "PoolMemberExpired", f"ready for {format_duration(age)}")
        journal.desire(Desired.RUNNING, "PoolFill", "replaced by a fresh one")
        return
    ready = record.observed == Observed.RUNNING and record.progress == Progress.READY
    if warm.state == "suspended" and ready and record.desired == Desired.RUNNING:
        journal.desire(Desired.SUSPENDED, "PoolReady", "suspended until a learner launches")
    elif warm.state == "running" and record.desired == Desired.SUSPENDED:
        journal.desire(Desired.RUNNING, "PoolFill", "members wait running")


def pool_deadline(record: EnvironmentRecord, lab: Lab, now: float) -> float | None:
    """When the pool policy will next want to change this member (None: never, until a sync)."""
    warm = lab.warm
    if warm is None or _not_wanted(record, lab) is not None:
        return None
    deadlines = [warm.schedule.next_change(now)]
    if record.desired != Desired.DELETED and has_stack(record) and record.ready_at is not None:
        deadlines.append(record.ready_at + warm.max_age_s)
    ready = record.observed == Observed.RUNNING and record.progress == Progress.READY
    if warm.state == "suspended" and ready and record.desired == Desired.RUNNING:
        deadlines.append(now)
    if gave_up(record):
        deadlines.append(record.updated_at + warm.max_age_s)
    return min((d for d in deadlines if d is not None), default=None)


# keeping the pools in line with the lab ---------------------------------------------------------------
def sync_pool(session: Session, course: str, lab: Lab, digest: str, now: float, empty_secrets: bytes) -> None:
    """Add the slots the lab asks for in `course` and move existing ones onto this lab content `digest`,
    in the caller's transaction. Slots the lab no longer wants are drained by their policy."""
    found = store.members(session, course, lab.id)
    store.renew_members(session, [m.id for m in found if m.lab_digest != digest], digest, now)
    if lab.warm is None:
        return
    have = {(m.pool, slot_of(m)) for m in found}
    for entry in lab.providers:
        for slot in range(lab.warm.size):
            if (entry.name, slot) not in have:
                store.add_member(
                    session, *_new_member(course, lab, digest, entry.name, slot, now, empty_secrets)
                )


def _new_member(
    course: str, lab: Lab, digest: str, provider: str, slot: int, now: float, empty_secrets: bytes
) -> tuple[EnvironmentRecord, TransitionRecord]:
    new = NewEnvironment(
        course=course,
        lab_id=lab.id,
        learner=member_name(provider, slot),
        lab_digest=digest,
        sealed_secrets=empty_secrets,
        idle_suspend_s=NEVER_S,
        delete_after_s=NEVER_S,
        reason="PoolMemberAdded",
        message=f"slot {slot} of the warm pool on {provider}",
        pool=provider,
        stack_suffix="-0",
    )
    return new.rows(now)
