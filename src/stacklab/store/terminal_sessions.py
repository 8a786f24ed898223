"""Where terminal sessions live: which member (web process) holds the shell of a browser tab's session.

A row is written when a process opens or re-attaches a shell and removed when the shell closes. A row
counts only while its member is live (see `stacklab.store.members`): the shells of a killed process died
with it, whatever its rows still say.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stacklab.store.repository import Repository
from stacklab.store.tables import MemberRecord, TerminalSessionRecord


@dataclass(frozen=True)
class Holder:
    """The live member holding a session, and the address its peers reach it at."""

    member_id: str
    address: str | None


def hold(
    repo: Repository, session_id: str, env_id: str, node: str, subject: str, member_id: str, now: float
) -> bool:
    """Record that `member_id` holds the session (also moves `updated_at`: the newest is the one staff
    watch). False, and nothing written, when the id belongs to another environment, node or subject: a
    guessed session id never takes a learner's session over."""

    def write(session: Session) -> bool:
        record = session.get(TerminalSessionRecord, session_id)
        if record is None:
            session.add(
                TerminalSessionRecord(
                    session_id=session_id,
                    env_id=env_id,
                    node=node,
                    subject=subject,
                    member_id=member_id,
                    updated_at=now,
                )
            )
            return True
        if (record.env_id, record.node, record.subject) != (env_id, node, subject):
            return False
        record.member_id = member_id
        record.updated_at = now
        return True

    for _ in range(2):  # a concurrent first insert of the same id: read it back and decide again
        try:
            return repo.write(write)
        except IntegrityError:
            continue
    return False


def release(repo: Repository, session_id: str, member_id: str) -> None:
    """The shell closed: forget the row, unless another member holds the id by now."""
    statement = delete(TerminalSessionRecord).where(
        TerminalSessionRecord.session_id == session_id, TerminalSessionRecord.member_id == member_id
    )
    repo.write(lambda session: session.execute(statement))


def _live_rows(now: float, ttl_s: float):  # type: ignore[no-untyped-def]
    table = TerminalSessionRecord
    return select(table.member_id, MemberRecord.address).join(
        MemberRecord, and_(MemberRecord.id == table.member_id, MemberRecord.heartbeat_at >= now - ttl_s)
    )


def holder(
    repo: Repository, session_id: str, env_id: str, node: str, subject: str, now: float, ttl_s: float
) -> Holder | None:
    """The live member holding this session of this (environment, node, subject); None when none does."""
    table = TerminalSessionRecord
    query = _live_rows(now, ttl_s).where(
        table.session_id == session_id, table.env_id == env_id, table.node == node, table.subject == subject
    )
    with repo.read() as session:
        row = session.execute(query).first()
    return Holder(row[0], row[1]) if row is not None else None


def watched(repo: Repository, env_id: str, node: str, now: float, ttl_s: float) -> Holder | None:
    """The live member holding the newest session on (environment, node): where a watcher should go."""
    table = TerminalSessionRecord
    query = (
        _live_rows(now, ttl_s)
        .where(table.env_id == env_id, table.node == node)
        .order_by(table.updated_at.desc())
        .limit(1)
    )
    with repo.read() as session:
        row = session.execute(query).first()
    return Holder(row[0], row[1]) if row is not None else None


def forget_members(repo: Repository, member_ids: list[str]) -> None:
    """Drop every row of these members (they left, or were pruned as dead)."""
    if not member_ids:
        return
    statement = delete(TerminalSessionRecord).where(TerminalSessionRecord.member_id.in_(member_ids))
    repo.write(lambda session: session.execute(statement))
