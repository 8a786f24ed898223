"""Members of a deployment: processes that announce themselves in the shared database and heartbeat.

Generic over roles (`web` processes that relay terminals, `worker`s of local hosts, ...): a member is live
while its last heartbeat is younger than the caller's `ttl_s`. A row is never taken as proof of life by
itself: a process killed with SIGKILL leaves its row behind until it ages out.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stacklab.store.repository import Repository
from stacklab.store.tables import MemberRecord


@dataclass(frozen=True)
class Member:
    """What peers read of a member (a detached copy of its row)."""

    id: str
    role: str
    address: str | None
    heartbeat_at: float
    host: str | None = None
    queue: str | None = None
    capacity: int | None = None
    load: int = 0
    started_at: float = 0.0


def _member(record: MemberRecord) -> Member:
    return Member(
        record.id,
        record.role,
        record.address,
        record.heartbeat_at,
        record.host,
        record.queue,
        record.capacity,
        record.load,
        record.started_at,
    )


def register(
    repo: Repository,
    member_id: str,
    role: str,
    address: str | None,
    now: float,
    *,
    host: str | None = None,
    queue: str | None = None,
    capacity: int | None = None,
) -> None:
    """Announce (or re-announce) `member_id`; its heartbeat starts now. A worker of a local host gives
    its host, that host's queue and its capacity (placement, envs/hosts.py)."""
    values = {
        "role": role,
        "address": address,
        "heartbeat_at": now,
        "host": host,
        "queue": queue,
        "capacity": capacity,
    }

    def announce(session: Session) -> None:
        record = session.get(MemberRecord, member_id)
        if record is None:
            session.add(MemberRecord(id=member_id, started_at=now, load=0, **values))
        else:
            for name, value in values.items():
                setattr(record, name, value)

    for _ in range(2):  # a concurrent insert of the same id (a restart racing itself) is taken over
        try:
            repo.write(announce)
            return
        except IntegrityError:
            continue


def heartbeat(repo: Repository, member_id: str, now: float, load: int | None = None) -> bool:
    """Record that `member_id` is alive (and its load: passes running, or a host's labs); False when its
    row is gone (then register again)."""
    values: dict[str, float | int] = {"heartbeat_at": now}
    if load is not None:
        values["load"] = load
    statement = update(MemberRecord).where(MemberRecord.id == member_id).values(**values)
    return repo.write(lambda session: bool(session.execute(statement).rowcount))  # type: ignore[attr-defined]


def live(repo: Repository, role: str, now: float, ttl_s: float) -> list[Member]:
    """The members of `role` that heartbeat within the last `ttl_s` seconds."""
    query = select(MemberRecord).where(MemberRecord.role == role, MemberRecord.heartbeat_at >= now - ttl_s)
    with repo.read() as session:
        return [_member(record) for record in session.scalars(query)]


def every(repo: Repository) -> list[Member]:
    """Every member row, live or not yet aged out (the admin page tells them apart by heartbeat)."""
    with repo.read() as session:
        query = select(MemberRecord).order_by(MemberRecord.role, MemberRecord.host, MemberRecord.id)
        return [_member(record) for record in session.scalars(query)]


def find_live(repo: Repository, member_id: str, now: float, ttl_s: float) -> Member | None:
    """`member_id` when it heartbeat within the last `ttl_s` seconds, else None."""
    with repo.read() as session:
        record = session.get(MemberRecord, member_id)
        if record is None or record.heartbeat_at < now - ttl_s:
            return None
        return _member(record)


def leave(repo: Repository, member_id: str) -> None:
    """`member_id` stops (a clean shutdown): peers stop counting on it at once."""
    repo.write(lambda session: session.execute(delete(MemberRecord).where(MemberRecord.id == member_id)))


def prune(repo: Repository, role: str, now: float, older_s: float) -> list[str]:
    """Remove members of `role` silent for more than `older_s` seconds; returns their ids (so that what
    they held can be forgotten too). Only the given role: other roles keep their own rules."""
    query = select(MemberRecord.id).where(
        MemberRecord.role == role, MemberRecord.heartbeat_at < now - older_s
    )

    def remove(session: Session) -> list[str]:
        gone = list(session.scalars(query))
        if gone:
            session.execute(delete(MemberRecord).where(MemberRecord.id.in_(gone)))
        return gone

    return repo.write(remove)
