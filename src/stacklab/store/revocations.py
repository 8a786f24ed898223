"""Queries behind token revocation and LMS replay protection, kept in the database so every process agrees.

- An environment's `token_generation` moves on when it is deleted or reset, or when the LMS revokes its
  learner; tokens of an older generation stop working (see web/tokens.py).
- An LMS JWT's `jti` is remembered until the token expires: a second use is a replay. Expired ids are
  purged as new ones arrive, so the table holds at most a few minutes of calls.
"""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from stacklab.store.conflicts import is_conflict
from stacklab.store.repository import Repository
from stacklab.store.tables import EnvironmentRecord, LmsTokenIdRecord
from stacklab.types import Desired


def token_state(repo: Repository, env_id: str) -> tuple[str, int] | None:
    """(desired state, token generation) of an environment, or None when there is no such environment."""
    with repo.read() as session:
        row = session.execute(
            select(EnvironmentRecord.desired, EnvironmentRecord.token_generation).where(
                EnvironmentRecord.id == env_id
            )
        ).one_or_none()
    return None if row is None else (row[0], row[1])


def revocation_reason(repo: Repository, env_id: str, generation: int) -> str | None:
    """Why a token of this generation no longer opens the environment, or None when it still does."""
    state = token_state(repo, env_id)
    if state is None:
        return "the lab no longer exists"
    desired, current = state
    if desired == Desired.DELETED:
        return "the lab was deleted; open it again from your course"
    if generation != current:
        return "the lab was reset or access was withdrawn; open it again from your course"
    return None


def revoke_learner(repo: Repository, course: str, learner: str) -> list[str]:
    """Withdraw every token of a learner's environments in a course; the ids of those environments."""
    where = (EnvironmentRecord.course == course, EnvironmentRecord.learner == learner)

    def revoke(session: Session) -> list[str]:
        ids = list(session.scalars(select(EnvironmentRecord.id).where(*where)))
        session.execute(
            update(EnvironmentRecord)
            .where(*where)
            .values(token_generation=EnvironmentRecord.token_generation + 1)
            .execution_options(synchronize_session=False)
        )
        return ids

    return sorted(repo.write(revoke))


def remember_jti(repo: Repository, issuer: str, jti: str, expires_at: float, now: float) -> bool:
    """Record a JWT id until it expires; False when it was used before (a replay)."""
    _purge_expired_jtis(repo, now)

    record = LmsTokenIdRecord(issuer=issuer, jti=jti, expires_at=expires_at)
    try:
        repo.write(lambda session: session.add(record))
    except IntegrityError:
        return False
    return True


def _purge_expired_jtis(repo: Repository, now: float) -> None:
    """Drop expired ids in a transaction of its own: on MariaDB a range delete and the inserts of
    concurrent calls deadlock, and a call must not fail for the purge. One that loses a conflict leaves
    the rows to the next call's purge."""
    try:
        with repo.session() as session:
            session.execute(delete(LmsTokenIdRecord).where(LmsTokenIdRecord.expires_at < now))
    except DBAPIError as exc:
        if not is_conflict(exc):
            raise
