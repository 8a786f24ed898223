"""Warm pool members in the store: listing them, taking one for a learner, adding and updating members.

Members are environment rows with `pool` set (the provider they are kept on). Everything here runs in the
caller's transaction (a controller pass's session), so that a hand-over moves a stack from a member to a
learner's environment atomically: the leak sweep sees either owner, never none.

For reports: members' rows are `EnvironmentRecord.pool IS NOT NULL` (their learner is `~warm-...`); their
node-hours are the pool's cost.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stacklab.store.due import SKIP_LOCKED
from stacklab.store.tables import EnvironmentRecord, TransitionRecord
from stacklab.types import Desired, Observed, Progress

E = EnvironmentRecord

LEARNERS_ONLY = E.pool.is_(None)
"""A filter for queries that list learners' environments (staff views, usage per learner)."""
POOL_ONLY = E.pool.is_not(None)
"""A filter for the pools' rows (the cost of the pools)."""


def members(session: Session, course: str, lab_id: str) -> list[EnvironmentRecord]:
    """Every member row of the pools of one lab in one course (served by the environment key's index)."""
    return list(session.scalars(select(E).where(E.course == course, E.lab_id == lab_id, POOL_ONLY)))


def ready_members(
    session: Session, course: str, lab_id: str, digest: str, fresh_after: float
) -> list[EnvironmentRecord]:
    """Members that may be handed over now, row locked (others' locked rows skipped), oldest ready first:
    built from this lab content, settled ready or suspended, no pass on them, ready since `fresh_after`."""
    query = (
        select(E)
        .where(
            E.course == course,
            E.lab_id == lab_id,
            POOL_ONLY,
            E.lab_digest == digest,
            E.desired != Desired.DELETED,
            E.reset_requested.is_(False),
            E.lease_owner.is_(None),
            E.provider.is_not(None),
            E.ready_at > fresh_after,
            or_(
                and_(E.observed == Observed.RUNNING, E.progress == Progress.READY),
                and_(E.observed == Observed.SUSPENDED, E.progress == Progress.SUSPENDED),
            ),
        )
        .order_by(E.ready_at)
    )
    bind = session.get_bind()
    if bind.dialect.name in SKIP_LOCKED:
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


def add_member(session: Session, record: EnvironmentRecord, transition: TransitionRecord) -> bool:
    """Insert a member (in a savepoint of the caller's transaction); False when its slot exists already."""
    try:
        with session.begin_nested():
            session.add(record)
            session.flush()
            session.add(transition)
            session.flush()
    except IntegrityError:
        return False
    return True


def renew_members(session: Session, ids: Sequence[str], digest: str, now: float) -> None:
    """Move members onto new lab content: those holding a stack are rebuilt (reset), all are due now. A
    learner-side write (the version moves), so a pass running on one merges it instead of overwriting it."""
    if not ids:
        return
    session.execute(
        update(E)
        .where(E.id.in_(ids))
        .values(
            lab_digest=digest,
            reset_requested=E.provider.is_not(None),
            due_at=now,
            version=E.version + 1,
        )
        .execution_options(synchronize_session=False)
    )
