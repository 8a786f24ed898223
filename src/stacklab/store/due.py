"""Claiming what is due: the environments whose `due_at` has come, taken by the elected scheduler.

A claim moves `due_at` forward by `hold_s` in the transaction that reads it, so that a pass that was sent
but never ran (its message, broker or worker lost) is claimed again when the hold ends, while a pass
that does run writes the real next time itself. Rows another transaction holds locked (a pass saving
that environment) are skipped, not waited for: their pass is under way and sets `due_at` when it ends.
The version is not bumped: a claim is no change of the learner's intent, and a running pass's
compare-and-set save overwrites it with its own decision.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from stacklab.store.repository import Repository
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Progress

UNDER_WAY = (Progress.CREATING, Progress.BOOTING, Progress.RESUMING)
"""Steps a learner waits on that have begun (a stack being made, booting, resuming): their next look is
claimed before other due work, so that a burst of new launches (a class starting at once, all due at
the same moment) does not hold back the labs already being made: without it, 10,000 launches due at once
had every create sent before the first lab's next look, and none was ready for minutes."""

SKIP_LOCKED = frozenset({"postgresql", "mysql", "mariadb"})
"""Dialects with SELECT ... FOR UPDATE SKIP LOCKED (MariaDB since 10.6)."""


def claim_due(repo: Repository, now: float, limit: int, hold_s: float) -> list[str]:
    """Up to `limit` due environment ids, each held for `hold_s` seconds: steps under way first (UNDER_WAY),
    then the rest; oldest deadline first within each."""

    def due(session: Session, under_way: bool, count: int) -> list[str]:
        step = EnvironmentRecord.progress.in_(UNDER_WAY)
        query = (
            select(EnvironmentRecord.id)
            .where(EnvironmentRecord.due_at <= now, step if under_way else ~step)
            .order_by(EnvironmentRecord.due_at)
            .limit(count)
        )
        if repo.engine.dialect.name in SKIP_LOCKED:
            query = query.with_for_update(skip_locked=True)
        return list(session.scalars(query))

    def claim(session: Session) -> list[str]:
        ids = due(session, True, limit)
        if len(ids) < limit:
            ids += due(session, False, limit - len(ids))
        if ids:
            session.execute(
                update(EnvironmentRecord)
                .where(EnvironmentRecord.id.in_(ids))
                .values(due_at=now + hold_s)
                .execution_options(synchronize_session=False)
            )
        return ids

    return repo.write(claim)


def unclaim(repo: Repository, ids: list[str], now: float, held_until: float) -> None:
    """Claims that could not be sent (the broker did not answer): due again now, unless a pass or a
    learner moved them meanwhile."""
    if not ids:
        return

    statement = (
        update(EnvironmentRecord)
        .where(EnvironmentRecord.id.in_(ids), EnvironmentRecord.due_at == held_until)
        .values(due_at=now)
        .execution_options(synchronize_session=False)
    )
    repo.write(lambda session: session.execute(statement))
