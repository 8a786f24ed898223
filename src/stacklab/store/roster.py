"""A course's class as its staff see it: every learner's environment of a lab with its score history, the
time it has run (store/usage.py) and its last activity, read in a few queries whatever the class size."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select

from stacklab.store.repository import Repository
from stacklab.store.tables import CheckRunRecord, EnvironmentRecord
from stacklab.store.usage import IDS_PER_QUERY, running_seconds


@dataclass(frozen=True)
class Attempt:
    """One run of the lab's checks: when, and the score it gave."""

    at: float
    score: float
    max_score: float


@dataclass
class Member:
    """One learner's environment of the lab."""

    record: EnvironmentRecord
    running_s: float = 0.0
    attempts: list[Attempt] = field(default_factory=list)
    queue_position: int | None = None


QueuePositions = Callable[[list[EnvironmentRecord]], dict[str, int]]
"""Each queued environment's place in the admission queue (1 = next); absent: not queued."""


def no_queue(_records: list[EnvironmentRecord]) -> dict[str, int]:
    return {}


def roster(
    repo: Repository,
    course: str,
    now: float,
    lab_id: str | None = None,
    queue_positions: QueuePositions = no_queue,
    include_deleted: bool = False,
) -> list[Member]:
    """The course's environments (of one lab when given), oldest first, with their attempts and time used."""
    query = select(EnvironmentRecord).where(
        EnvironmentRecord.course == course,
        EnvironmentRecord.pool.is_(None),  # warm pool members: nobody's lab
    )
    if lab_id is not None:
        query = query.where(EnvironmentRecord.lab_id == lab_id)
    if not include_deleted:
        query = query.where(EnvironmentRecord.desired != "deleted")
    with repo.read() as session:
        records = list(session.scalars(query.order_by(EnvironmentRecord.created_at, EnvironmentRecord.id)))
    ids = [r.id for r in records]
    used = running_seconds(repo, ids, until=now)
    members = {r.id: Member(r, used.get(r.id, 0.0)) for r in records}
    for start in range(0, len(ids), IDS_PER_QUERY):
        runs = (
            select(CheckRunRecord.env_id, CheckRunRecord.at, CheckRunRecord.score, CheckRunRecord.max_score)
            .where(CheckRunRecord.env_id.in_(ids[start : start + IDS_PER_QUERY]))
            .order_by(CheckRunRecord.at, CheckRunRecord.id)
        )
        with repo.read() as session:
            for env_id, at, score, max_score in session.execute(runs):
                members[env_id].attempts.append(Attempt(float(at), float(score), float(max_score)))
    for env_id, position in queue_positions(records).items():
        if env_id in members:
            members[env_id].queue_position = position
    return list(members.values())
