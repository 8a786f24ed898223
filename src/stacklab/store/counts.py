"""Counts the web side caps by (how many demo labs exist), in one indexed query each."""

from __future__ import annotations

from sqlalchemy import func, select

from stacklab.store.repository import Repository
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Desired


def live_environments(repo: Repository, course: str) -> int:
    """Environments of a course that are not being deleted (they hold, or will hold, machines)."""
    with repo.read() as session:
        return int(
            session.scalar(
                select(func.count()).where(
                    EnvironmentRecord.course == course, EnvironmentRecord.desired != Desired.DELETED
                )
            )
            or 0
        )
