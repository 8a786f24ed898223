"""Extra running time staff grant a learner (usage limits), kept as rows: who gave how much, when and why.

A grant names the course, lab and learner. Under a weekly limit the grants made in the current week count;
under a total limit every grant counts. A course-scoped limit counts the learner's grants on every lab of
the course.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from stacklab.errors import InvalidInput
from stacklab.store.repository import Repository
from stacklab.store.tables import UsageGrantRecord

MAX_GRANT_HOURS = 10000.0
MAX_REASON_CHARS = 1000


@dataclass(frozen=True)
class Grant:
    course: str
    lab_id: str
    learner: str
    seconds: float
    reason: str
    granted_by: str
    at: float


def add_grant(repo: Repository, grant: Grant) -> None:
    """Record a grant; InvalidInput names what is wrong with the hours or the reason."""
    if not 0 < grant.seconds <= MAX_GRANT_HOURS * 3600:
        raise InvalidInput(f"hours must be more than 0 and at most {MAX_GRANT_HOURS:g}")
    if not grant.reason.strip():
        raise InvalidInput("a grant needs a reason (it is kept with the grant and shown to other staff)")
    if len(grant.reason) > MAX_REASON_CHARS:
        raise InvalidInput(f"the reason is longer than {MAX_REASON_CHARS} characters")
    record = UsageGrantRecord(
        course=grant.course,
        lab_id=grant.lab_id,
        learner=grant.learner,
        seconds=grant.seconds,
        reason=grant.reason.strip(),
        granted_by=grant.granted_by[:200],
        at=grant.at,
    )
    repo.write(lambda session: session.add(record))


def granted_seconds(
    repo: Repository, course: str, learner: str, lab_id: str | None = None, since: float | None = None
) -> float:
    """Seconds granted to a learner in a course (on one lab with `lab_id`), since `since` when given."""
    g = UsageGrantRecord
    query = select(func.coalesce(func.sum(g.seconds), 0.0)).where(g.course == course, g.learner == learner)
    if lab_id is not None:
        query = query.where(g.lab_id == lab_id)
    if since is not None:
        query = query.where(g.at >= since)
    with repo.read() as session:
        return float(session.scalar(query) or 0.0)


def grants_of(repo: Repository, course: str, learner: str) -> list[Grant]:
    """A learner's grants in a course, oldest first."""
    g = UsageGrantRecord
    query = select(g).where(g.course == course, g.learner == learner).order_by(g.at, g.id)
    with repo.read() as session:
        return [
            Grant(r.course, r.lab_id, r.learner, r.seconds, r.reason, r.granted_by, r.at)
            for r in session.scalars(query)
        ]
