"""How long environments have run, from their recorded transitions (the staff panel's "time used"; usage
limits and cost reports read the same figure).

A running interval starts at an observed transition into `running` and ends at the next observed transition
out of it; an interval still open counts up to `until`. Only the rows that enter or leave `running` before
`until` are read, through the transitions' (env_id, kind, at) index, and the database sums them (a window
function): nothing is held in process memory, so the answer is the same after a restart.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, Subquery, and_, case, func, or_, select

from stacklab.store.repository import Repository
from stacklab.store.tables import EnvironmentRecord, TransitionRecord
from stacklab.types import Observed

IDS_PER_QUERY = 500
"""Ids bound in one IN list (far below every database's limit on bound parameters)."""


def _later(a: ColumnElement[float], b: float) -> ColumnElement[float]:
    return case((a < b, b), else_=a)


def _earlier(a: ColumnElement[float], b: float) -> ColumnElement[float]:
    return case((a > b, b), else_=a)


def running_seconds(
    repo: Repository, env_ids: Iterable[str], until: float, since: float | None = None
) -> dict[str, float]:
    """Seconds each environment was observed running between `since` (default: ever) and `until` (now,
    usually); environments that never ran are absent. One query per IDS_PER_QUERY ids."""
    return state_seconds(repo, env_ids, Observed.RUNNING, until, since)


def state_seconds(
    repo: Repository, env_ids: Iterable[str], state: Observed, until: float, since: float | None = None
) -> dict[str, float]:
    """Seconds each environment was observed in `state` (running, suspended, ...) between `since` and
    `until`, by the same intervals as running_seconds; environments never in it are absent."""
    ids = list(dict.fromkeys(env_ids))
    used: dict[str, float] = {}
    for start in range(0, len(ids), IDS_PER_QUERY):
        used.update(_state_seconds(repo, ids[start : start + IDS_PER_QUERY], state, until, since))
    return used


def state_intervals(
    repo: Repository, env_ids: Iterable[str], state: Observed, until: float, since: float | None = None
) -> list[tuple[str, float, float]]:
    """The intervals themselves (env id, begin, end), clipped to [since, until]: what state_seconds sums,
    for reports that split time further (by week, by hour) without asking again."""
    ids = list(dict.fromkeys(env_ids))
    found: list[tuple[str, float, float]] = []
    for start in range(0, len(ids), IDS_PER_QUERY):
        intervals = _intervals(ids[start : start + IDS_PER_QUERY], state, until, since)
        with repo.read() as session:
            found += [(env_id, float(b), float(e)) for env_id, b, e in session.execute(select(intervals))]
    return found


def _intervals(ids: list[str], state: Observed, until: float, since: float | None) -> Subquery:
    t = TransitionRecord
    edges = (
        select(
            t.env_id,
            t.at,
            t.to_state,
            func.lead(t.at).over(partition_by=t.env_id, order_by=(t.at, t.id)).label("left_at"),
        )
        .where(
            t.env_id.in_(ids),
            t.kind == "observed",
            t.at < until,  # a later edge ends nothing before `until` (an open interval counts up to it)
            or_(t.to_state == state, t.from_state == state),
        )
        .subquery()
    )
    begin = edges.c.at if since is None else _later(edges.c.at, since)
    end = _earlier(func.coalesce(edges.c.left_at, until), until)
    return (
        select(edges.c.env_id, begin.label("begin"), end.label("end"))
        .where(and_(edges.c.to_state == state, end > begin))
        .subquery()
    )


def _state_seconds(
    repo: Repository, ids: list[str], state: Observed, until: float, since: float | None
) -> dict[str, float]:
    intervals = _intervals(ids, state, until, since)
    query = select(intervals.c.env_id, func.sum(intervals.c.end - intervals.c.begin)).group_by(
        intervals.c.env_id
    )
    with repo.read() as session:
        return {env_id: float(seconds or 0.0) for env_id, seconds in session.execute(query)}


def learner_environments(repo: Repository, course: str, learner: str, lab_id: str | None = None) -> list[str]:
    """The ids of a learner's environments in a course (of one lab when `lab_id` is given), deleted ones
    included: their time was used all the same (read through the (course, learner) index)."""
    e = EnvironmentRecord
    query = select(e.id).where(e.course == course, e.learner == learner)
    if lab_id is not None:
        query = query.where(e.lab_id == lab_id)
    with repo.read() as session:
        return list(session.scalars(query))


def learner_running_seconds(
    repo: Repository,
    course: str,
    learner: str,
    until: float,
    since: float | None = None,
    lab_id: str | None = None,
) -> float:
    """Seconds a learner's labs of a course (one lab with `lab_id`) ran between `since` and `until`."""
    ids = learner_environments(repo, course, learner, lab_id)
    return sum(running_seconds(repo, ids, until, since).values()) if ids else 0.0
