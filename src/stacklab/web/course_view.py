"""The course view: a course's staff see their class (each learner's lab: state, score and its history, time
used, last activity, place in the admission queue) and open any learner's lab read-only; operators see the
same in the admin page, with the cost report (store/usage_report.py) and its chart.

Course staff reach it from the XBlock's staff panel with the LMS's authority: the LMS (its signed JWT, for
a course its key may act for) asks `POST /api/v1/courses/{course}/staff-view` and gets the page's URL with a
short-lived staff token bound to that course (in the fragment, never sent to servers). That token reads the
class and opens learners' labs read-only (through the same read-only watch as the staff panel's, a
read-only learner token per lab); it reaches no other course, launches, pauses or deletes nothing, and no
environment endpoint accepts it.
"""

from __future__ import annotations

import time
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from stacklab.checks.runner import counted_score
from stacklab.envs.pricing import pricing_of
from stacklab.envs.service import NAME_PATTERN
from stacklab.errors import InvalidInput, TokenError
from stacklab.store import queue
from stacklab.store.roster import QueuePositions, roster
from stacklab.store.tables import EnvironmentRecord
from stacklab.store.usage_report import parse_since, series, totals, weekly
from stacklab.web import schemas
from stacklab.web.api import watch_learner
from stacklab.web.context import WebContext, bearer, context
from stacklab.web.lms import require_admin, require_server
from stacklab.web.pages import _operator_headers, _page
from stacklab.web.tokens import Claims, is_access_token

router = APIRouter(prefix="/api/v1")
pages = APIRouter(include_in_schema=False)

Course = Annotated[str, Path(max_length=200, description="Course id")]
LabId = Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")]
DEFAULT_CHART_S = 7 * 86400.0
"""The chart's period when the page names none: the last week."""


def _queue_positions(ctx: WebContext, now: float) -> QueuePositions:
    """Each environment's place in the admission queue (store/queue.py), for those in line."""
    leave_after_s = ctx.stack.settings.queue_leave_after_s

    def positions(records: list[EnvironmentRecord]) -> dict[str, int]:
        found = {r.id: queue.position(ctx.stack.repo, r, now, leave_after_s) for r in records if r.queued_at}
        return {env_id: place for env_id, place in found.items() if place is not None}

    return positions


class StaffViewRequest(BaseModel):
    lab: str | None = Field(None, max_length=64, description="The lab the view opens on (all labs if none)")
    staff: str = Field("", max_length=200, description="Who asks (the staff member's name), for the page")


class StaffView(BaseModel):
    url: str = Field(description="The course view with a staff token for this course in its fragment")
    token: str
    expires_at: float


class AttemptBody(BaseModel):
    at: float
    score: float
    max_score: float


class ClassMember(BaseModel):
    """One learner's lab as course staff see it."""

    id: str
    learner: str
    lab: str
    title: str
    desired: str
    observed: str
    progress: str
    message: str
    counted_score: float | None = Field(description="The score that counts (best or latest, as the lab says)")
    max_score: float
    score_policy: str
    attempts: list[AttemptBody] = Field(description="Every run of the checks, oldest first")
    running_s: float = Field(description="Seconds the lab has run, from its recorded transitions")
    last_activity_at: float
    queue_position: int | None = Field(
        description="Place in the admission queue (1 = next); null: not queued"
    )


class WatchRequest(BaseModel):
    lab: str = Field(max_length=64)
    node: str | None = Field(None, max_length=64)


class UsageReport(BaseModel):
    course: str | None
    since: float
    until: float
    rows: list[dict[str, object]] = Field(description="Per course, lab and week (stacklab report usage)")
    totals: dict[str, object]
    series: dict[str, object] = Field(description="Nodes running / suspended, labs queued, per bucket")


def _staff_claims(request: Request, course: str) -> Claims | None:
    """A course staff token's claims when the caller uses one (403 for another course); None otherwise."""
    token = bearer(request)
    if not is_access_token(token):
        return None
    try:
        claims = context(request).signer.verify(token)
    except TokenError as exc:
        raise HTTPException(status_code=401, detail=str(exc)) from exc
    if claims.role != "staff" or claims.course is None:
        return None
    if claims.course != course:
        raise HTTPException(status_code=403, detail=f"this staff token is for course {claims.course!r}")
    return claims


def course_reader(request: Request, course: Course) -> str | None:
    """Dependency: course staff (their token), the LMS (its JWT, for its courses) or an operator.
    Returns the operator's name when an operator calls (their views go to the audit log)."""
    if _staff_claims(request, course) is not None:
        return None
    caller = require_server(request)
    caller.require_course(course)
    return caller.operator


Reader = Annotated[str | None, Depends(course_reader)]


@router.post("/courses/{course}/staff-view", tags=["lms"])
async def staff_view(request: Request, course: Course, body: StaffViewRequest) -> StaffView:
    """For the LMS's course staff: the course view's URL with a staff token for this course (its lifetime
    is token_ttl_s; the page renews it while open)."""
    caller = require_server(request)
    caller.require_course(course)
    ctx = context(request)
    return _staff_view(ctx, course, body.lab, f"course-staff.{body.staff or caller.name}")


def _staff_view(ctx: WebContext, course: str, lab: str | None, subject: str) -> StaffView:
    ttl = ctx.stack.settings.token_ttl_s
    token = ctx.signer.issue("staff", subject, None, ttl, read_only=True, course=course)
    query = urlencode({"course": course, **({"lab": lab} if lab else {})})
    return StaffView(
        url=f"{ctx.public_url}/course?{query}#token={token}", token=token, expires_at=ctx.signer.expiry(ttl)
    )


@router.post("/courses/{course}/staff-token", tags=["lms"])
async def refresh_staff_token(request: Request, course: Course) -> schemas.TokenResponse:
    """A fresh staff token for the same course (the course view renews its own before expiry)."""
    claims = _staff_claims(request, course)
    if claims is None:
        raise HTTPException(status_code=403, detail="only a course staff token is renewed here")
    fresh = _staff_view(context(request), course, None, claims.subject)
    return schemas.TokenResponse(token=fresh.token, expires_at=fresh.expires_at)


@router.get("/courses/{course}/class", tags=["lms"])
async def course_class(
    request: Request, course: Course, _reader: Reader, lab: LabId = None
) -> list[ClassMember]:
    """Every learner's lab of the course (of one lab with `lab`): state, score and attempts, time used,
    last activity, place in the admission queue."""
    ctx = context(request)
    envs = ctx.stack.environments
    now = ctx.stack.controller.clock()
    members = roster(ctx.stack.repo, course, now, lab, _queue_positions(ctx, now))
    rows = []
    for m in members:
        record, the_lab = m.record, envs.lab_of(m.record)
        status = schemas.status_of(record, the_lab, now)
        counted = counted_score([a.score for a in m.attempts], the_lab.score) if m.attempts else None
        rows.append(
            ClassMember(
                id=record.id,
                learner=record.learner,
                lab=record.lab_id,
                title=the_lab.title,
                desired=record.desired,
                observed=record.observed,
                progress=record.progress,
                message=status.message,
                counted_score=counted,
                max_score=m.attempts[-1].max_score if m.attempts else the_lab.max_score(),
                score_policy=the_lab.score,
                attempts=[AttemptBody(at=a.at, score=a.score, max_score=a.max_score) for a in m.attempts],
                running_s=round(m.running_s, 1),
                last_activity_at=record.last_activity_at,
                queue_position=m.queue_position,
            )
        )
    return rows


@router.post("/courses/{course}/class/{learner}/watch", tags=["lms"])
async def watch(
    request: Request,
    course: Course,
    learner: Annotated[str, Path(pattern=NAME_PATTERN.pattern)],
    body: WatchRequest,
    operator: Reader,
) -> schemas.LaunchResponse:
    """A learner's lab, read-only (the staff panel's watch): a read-only token and the lab page's URL."""
    return watch_learner(context(request), course, body.lab, learner, body.node, operator)


def _moment(text: str | None, name: str) -> float | None:
    if not text:
        return None
    try:
        return parse_since(text)
    except ValueError as exc:
        raise InvalidInput(f"{name}: {exc}") from exc


@router.get("/admin/usage", tags=["admin"])
async def admin_usage(
    request: Request,
    _admin: Annotated[str, Depends(require_admin)],
    course: Annotated[str | None, Query(max_length=200)] = None,
    lab: LabId = None,
    since: Annotated[str | None, Query(max_length=40, description="YYYY-MM-DD or ISO time, UTC")] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
) -> UsageReport:
    """The cost report (per course, lab and week; every course without `course`) and its chart's series
    over [since, until] (default: the last week)."""
    ctx = context(request)
    repo, price = ctx.stack.repo, pricing_of(ctx.stack.environments.lab_of)
    end = _moment(until, "until") or time.time()
    start = _moment(since, "since") or end - DEFAULT_CHART_S
    if start >= end:
        raise InvalidInput("since must be before until")
    if course:
        courses = [course]
    else:
        with repo.read() as session:
            courses = sorted(session.scalars(select(EnvironmentRecord.course).distinct()))
    rows = [r for c in courses for r in weekly(repo, c, price, end, start) if lab is None or r.lab == lab]
    chart = series(repo, course or None, price, start, end, lab=lab)
    return UsageReport(
        course=course or None,
        since=start,
        until=end,
        rows=[r.to_json() for r in rows],
        totals=totals(rows),
        series=chart.to_json(),
    )


@pages.get("/course")
async def course_page(request: Request) -> FileResponse:
    """The course view (its token in the fragment); framed by nobody, as the operator pages."""
    return _page("course.html", _operator_headers(request))
