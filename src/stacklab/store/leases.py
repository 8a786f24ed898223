"""Named leases: one holder at a time for a role of the deployment (the scheduler), in a row.

A row updated compare-and-set rather than a database lock, so that it behaves the same on PostgreSQL,
MariaDB and Galera (which does not replicate GET_LOCK): the holder renews it before it expires; a
holder that stops renewing (killed, cut off) loses it to the first other candidate after `ttl_s`.
"""

from __future__ import annotations

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError

from stacklab.store.conflicts import retried
from stacklab.store.repository import Repository
from stacklab.store.tables import LeaseRecord


def hold(repo: Repository, name: str, owner: str, now: float, ttl_s: float) -> bool:
    """Take or renew the lease `name` for `owner` until now + ttl_s; False while another holds it."""

    def renew() -> bool:
        with repo.session() as session:
            taken = session.execute(
                update(LeaseRecord)
                .where(
                    LeaseRecord.name == name,
                    or_(LeaseRecord.owner == owner, LeaseRecord.expires_at < now),
                )
                .values(owner=owner, expires_at=now + ttl_s, version=LeaseRecord.version + 1)
            )
            return bool(taken.rowcount)  # type: ignore[attr-defined]

    def create() -> bool:
        """The first candidate ever creates the row; a concurrent one gets the key conflict (or, on
        Galera, a certification failure at COMMIT: tried again, it then finds the row)."""
        try:
            with repo.session() as session:
                if session.get(LeaseRecord, name) is not None:
                    return False
                session.add(LeaseRecord(name=name, owner=owner, expires_at=now + ttl_s, version=0))
        except IntegrityError:
            return False
        return True

    return retried(renew) or retried(create)


def give_up(repo: Repository, name: str, owner: str) -> None:
    """A clean stop: the lease expires now, so the next candidate takes it at its next try."""

    def expire() -> None:
        with repo.session() as session:
            session.execute(
                update(LeaseRecord)
                .where(LeaseRecord.name == name, LeaseRecord.owner == owner)
                .values(expires_at=0.0, version=LeaseRecord.version + 1)
            )

    retried(expire)


def holder(repo: Repository, name: str, now: float) -> str | None:
    """Who holds the lease now (None: nobody, or it expired)."""
    with repo.read() as session:
        record = session.get(LeaseRecord, name)
        return record.owner if record is not None and record.expires_at >= now else None
