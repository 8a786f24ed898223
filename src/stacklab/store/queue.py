"""The admission queue as the database holds it: who waits for which providers, in what order, and how
fast the line moves. Every web process and worker reads the same answer; nothing lives in memory.

An environment is *in line* while it wants to run (`desired` = running), has joined (`queued_at` set),
holds no provider slot yet (`capacity_held` is null) and its page asked about it within `leave_after_s`
(`queue_seen_at`, else `queued_at`). The line is ordered by `queued_at`, then id. `queue_providers` holds
the providers it can take as ",a,b," (a launch: the lab's; a resume: the one its stack lives on), so that
"who is ahead of me for provider P" is one indexed count on every database.

The estimate: each provider row keeps when a slot was last given back and a moving average of the time
between two such releases (`record_release`); `estimate_s` turns the combined pace of the providers a
waiter can take into the time until its turn.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import and_, case, func, or_, select, true, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from stacklab.store.repository import Repository
from stacklab.store.tables import EnvironmentRecord, ProviderUsageRecord
from stacklab.types import Desired

SMOOTHING = 0.3
"""Weight of the newest gap in the moving average of gaps between releases."""
MIN_GAP_S = 1.0
"""A burst of releases (a policy pausing many labs at once) does not promise a line that moves faster."""

Env = EnvironmentRecord


def encode(providers: Iterable[str]) -> str:
    return "," + ",".join(providers) + ","


def decode(text: str | None) -> list[str]:
    return [name for name in (text or "").split(",") if name]


def _in_line(now: float, leave_after_s: float) -> ColumnElement[bool]:
    return and_(
        Env.queued_at.is_not(None),
        Env.capacity_held.is_(None),
        Env.desired == Desired.RUNNING.value,
        func.coalesce(Env.queue_seen_at, Env.queued_at) >= now - leave_after_s,
    )


def _wants(provider: str) -> ColumnElement[bool]:
    return Env.queue_providers.contains(f",{provider},", autoescape=True)


def _ahead_of(env_id: str, queued_at: float | None) -> ColumnElement[bool]:
    """Joined before (queued_at, id); someone not yet in line has everyone in line ahead."""
    if queued_at is None:
        return true()
    return or_(Env.queued_at < queued_at, and_(Env.queued_at == queued_at, Env.id < env_id))


def ahead(
    session: Session, env_id: str, queued_at: float | None, provider: str, now: float, leave_after_s: float
) -> int:
    """How many in line before this environment can take `provider` (in the caller's transaction)."""
    query = select(func.count(Env.id)).where(
        _in_line(now, leave_after_s), _wants(provider), _ahead_of(env_id, queued_at), Env.id != env_id
    )
    return int(session.scalar(query) or 0)


def used(session: Session, provider: str) -> int:
    return int(
        session.scalar(select(ProviderUsageRecord.used).where(ProviderUsageRecord.name == provider)) or 0
    )


def position(repo: Repository, record: EnvironmentRecord, now: float, leave_after_s: float) -> int | None:
    """1 for the head of the line; None when the environment is not in line. Counted over everyone
    ahead who can take any provider it can take."""
    if not in_line(record, now, leave_after_s):
        return None
    wants = [_wants(name) for name in decode(record.queue_providers)]
    query = select(func.count(Env.id)).where(
        _in_line(now, leave_after_s), or_(*wants), _ahead_of(record.id, record.queued_at), Env.id != record.id
    )
    with repo.read() as session:
        return int(session.scalar(query) or 0) + 1


def in_line(record: EnvironmentRecord, now: float, leave_after_s: float) -> bool:
    """The same test as `_in_line`, on a loaded record."""
    if record.queued_at is None or record.capacity_held is not None or record.desired != Desired.RUNNING:
        return False
    return (record.queue_seen_at or record.queued_at) >= now - leave_after_s


def heads(repo: Repository, provider: str, count: int, now: float, leave_after_s: float) -> list[str]:
    """The first `count` in line for `provider`, in order."""
    query = (
        select(Env.id)
        .where(_in_line(now, leave_after_s), _wants(provider))
        .order_by(Env.queued_at, Env.id)
        .limit(count)
    )
    with repo.read() as session:
        return list(session.scalars(query))


def wake(repo: Repository, env_ids: Sequence[str], now: float) -> None:
    """Due now, as a learner's request makes an environment due: the version moves, so that a pass
    running on one of them merges the wake-up instead of overwriting it with a later deadline."""
    if not env_ids:
        return

    statement = (
        update(Env)
        .where(Env.id.in_(list(env_ids)))
        .values(due_at=now, version=Env.version + 1)
        .execution_options(synchronize_session=False)
    )
    repo.write(lambda session: session.execute(statement))


def mark_seen(repo: Repository, env_id: str, now: float) -> None:
    """The learner's page asked about its queued lab. Not a change of intent: the version stays."""

    statement = (
        update(Env)
        .where(Env.id == env_id, Env.queued_at.is_not(None))
        .values(queue_seen_at=now)
        .execution_options(synchronize_session=False)
    )
    repo.write(lambda session: session.execute(statement))


def record_release(session: Session, provider: str, now: float) -> None:
    """A slot of `provider` was given back at `now` (in the caller's transaction): move the average gap.
    The gap is assigned before `released_at` (MariaDB reads columns already set in the same UPDATE)."""
    row = ProviderUsageRecord
    since = now - row.released_at
    gap = case(
        (row.released_at.is_(None), None),
        (row.release_gap_s.is_(None), since),
        else_=SMOOTHING * since + (1 - SMOOTHING) * row.release_gap_s,
    )
    session.execute(
        update(row)
        .where(row.name == provider)
        .ordered_values((row.release_gap_s, gap), (row.released_at, now))
        .execution_options(synchronize_session=False)
    )


def estimate_s(repo: Repository, providers: Sequence[str], place: int, now: float) -> float | None:
    """Seconds until the `place`-th in line gets a slot, at the pace the providers have been giving
    slots back: place / (sum over providers of 1 / gap), where a provider's gap is its moving average,
    or the time since its last release when that is longer (none for a while: the line is slower). None
    until some provider has given back two slots."""
    with repo.read() as session:
        rows = session.execute(
            select(ProviderUsageRecord.released_at, ProviderUsageRecord.release_gap_s).where(
                ProviderUsageRecord.name.in_(list(providers))
            )
        ).all()
    rate = 0.0
    for released_at, gap in rows:
        if gap is None or released_at is None:
            continue
        rate += 1.0 / max(gap, now - released_at, MIN_GAP_S)
    return place / rate if rate else None
