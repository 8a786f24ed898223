"""What the store knows of local hosts (runner = celery, several LXC hosts): which environment each holds,
and how many each holds.

The members table says which hosts are alive (their workers heartbeat, store/members.py); this module
reads and writes the environments' side (`environments.host`). Placement and routing: envs/hosts.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, or_, select, update

from stacklab.store.repository import Repository
from stacklab.store.tables import EnvironmentRecord, MemberRecord
from stacklab.types import Observed


@dataclass(frozen=True)
class Placed:
    """What routing and a host's sweep need of one environment."""

    id: str
    host: str | None
    lab_digest: str
    provider: str | None
    desired: str
    observed: str
    last_reason: str | None
    stack_name: str


COLUMNS = (
    EnvironmentRecord.id,
    EnvironmentRecord.host,
    EnvironmentRecord.lab_digest,
    EnvironmentRecord.provider,
    EnvironmentRecord.desired,
    EnvironmentRecord.observed,
    EnvironmentRecord.last_reason,
    EnvironmentRecord.stack_name,
)


def _placed(repo: Repository, where: ColumnElement[bool]) -> list[Placed]:
    with repo.read() as session:
        return [Placed(*row) for row in session.execute(select(*COLUMNS).where(where))]


def placed(repo: Repository, ids: list[str]) -> list[Placed]:
    """The placement columns of `ids` (one query)."""
    return _placed(repo, EnvironmentRecord.id.in_(ids))


def holding(repo: Repository, stack_names: list[str]) -> dict[str, Placed]:
    """Stack name -> the environment that names it, for those of `stack_names` some environment names."""
    return {row.stack_name: row for row in _placed(repo, EnvironmentRecord.stack_name.in_(stack_names))}


def labs_on(repo: Repository, hosts: list[str] | None = None) -> dict[str, int]:
    """Host -> environments it holds (placed and not deleted); every host named by one, or only `hosts`."""
    query = (
        select(EnvironmentRecord.host, func.count())
        .where(EnvironmentRecord.host.is_not(None), EnvironmentRecord.observed != Observed.DELETED)
        .group_by(EnvironmentRecord.host)
    )
    if hosts is not None:
        query = query.where(EnvironmentRecord.host.in_(hosts))
    with repo.read() as session:
        return {str(host): int(count) for host, count in session.execute(query)}


def any_host(repo: Repository) -> bool:
    """Whether any worker ever announced a local host (the cheap test that keeps one-host setups fast)."""
    with repo.read() as session:
        return (
            session.scalar(select(MemberRecord.id).where(MemberRecord.host.is_not(None)).limit(1)) is not None
        )


def place(repo: Repository, env_id: str, host: str, was: str | None) -> bool:
    """Put `env_id` on `host`, compare-and-set on its previous host, when it holds no stack yet or failed
    (a lab failed with its lost host starts afresh elsewhere)."""

    statement = (
        update(EnvironmentRecord)
        .where(
            EnvironmentRecord.id == env_id,
            EnvironmentRecord.host.is_(None) if was is None else EnvironmentRecord.host == was,
            or_(EnvironmentRecord.provider.is_(None), EnvironmentRecord.observed == Observed.FAILED),
        )
        .values(host=host)
        .execution_options(synchronize_session=False)
    )
    return repo.write(lambda session: bool(session.execute(statement).rowcount))  # type: ignore[attr-defined]
