"""The HTTP API: learners (token bound to their environment), LMS servers (signed JWTs), operators.

What operators do to environments (and the revocations they make) goes to the audit log, whichever
endpoint they use.
"""

from __future__ import annotations

import contextlib
import time
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import ValidationError

from stacklab.checks.runner import counted_score
from stacklab.envs.service import NAME_PATTERN, CheckReport
from stacklab.errors import Conflict, InvalidInput, NotFound, UsageLimitReached
from stacklab.labs.schema import Lab
from stacklab.store.grants import grants_of
from stacklab.store.operators import audit_entries, record_action
from stacklab.store.repository import EnvKey
from stacklab.store.revocations import revoke_learner
from stacklab.store.tables import EnvironmentRecord
from stacklab.store.usage import running_seconds
from stacklab.types import Desired, Observed
from stacklab.web import schemas
from stacklab.web.context import WebContext, authorize, bearer, context
from stacklab.web.lms import Caller, operator_claims, require_admin, require_server
from stacklab.web.tokens import Claims, is_access_token

router = APIRouter(prefix="/api/v1")

EnvId = Annotated[str, Path(pattern=r"^[0-9a-f]{8}$", description="Environment id")]
Server = Annotated[Caller, Depends(require_server)]
Course = Annotated[str, Path(pattern=NAME_PATTERN.pattern, description="Course id")]
Admin = Annotated[str, Depends(require_admin)]
OperatorClaims = Annotated[Claims, Depends(operator_claims)]


def _learner_or_server(request: Request, env_id: str, *, write: bool = False) -> None:
    """A learner (or staff/admin) token for the environment, or an LMS's signed JWT for its course."""
    if not is_access_token(bearer(request)):  # not ours by its issuer and audience: an LMS calling
        _for_course_of(require_server(request), context(request), env_id)
        return
    authorize(request, env_id, write=write)


def _for_course_of(caller: Caller, ctx: WebContext, env_id: str) -> EnvironmentRecord:
    """The environment, once the caller is known to act for its course (403 naming the course if not)."""
    record = ctx.stack.environments.resolve(env_id)
    caller.require_course(record.course)
    return record


def _token(ctx: WebContext, claims: Claims, record: EnvironmentRecord | None) -> schemas.TokenResponse:
    """A fresh token with the same rights, in the environment's current token generation."""
    ttl = ctx.stack.settings.token_ttl_s
    generation = record.token_generation if record is not None else 0
    token = ctx.signer.issue(claims.role, claims.subject, claims.env_id, ttl, claims.read_only, generation)
    return schemas.TokenResponse(token=token, expires_at=ctx.signer.expiry(ttl))


def _audit(ctx: WebContext, operator: str | None, action: str, record: EnvironmentRecord) -> None:
    """Record what an operator did to an environment (LMS calls are not operator actions)."""
    if operator is not None:
        target = f"{record.course} / {record.lab_id} / {record.learner}"
        record_action(ctx.stack.repo, operator, action, time.time(), record.id, target)


def _status(ctx: WebContext, env_id: str) -> schemas.EnvironmentStatus:
    envs = ctx.stack.environments
    record = envs.resolve(env_id)
    return schemas.status_of(
        record, envs.lab_of(record), allowance=envs.allowance(record), queue_spot=envs.queue_spot(record)
    )


def _report(report: CheckReport, lab: Lab) -> schemas.CheckReportBody:
    return schemas.CheckReportBody(
        results=[schemas.CheckResultBody(**r.to_json()) for r in report.results],
        score=report.score,
        max_score=report.max_score,
        counted_score=report.counted,
        score_policy=lab.score,
        checked_at=report.at,
    )


def _check_node(lab: Lab, node: str | None) -> None:
    if node is not None and node not in lab.learner_nodes:
        raise InvalidInput(
            f"node {node!r} is not a node learners may open in lab {lab.id!r} "
            f"(they may open: {', '.join(lab.learner_nodes) or 'none'})"
        )


def _lab_page(
    ctx: WebContext, record: EnvironmentRecord, node: str | None, read_only: bool, subject: str
) -> schemas.LaunchResponse:
    """A token for the environment and the URL of its lab page (opening `node` first when given)."""
    _check_node(ctx.stack.environments.lab_of(record), node)
    ttl = ctx.stack.settings.token_ttl_s
    token = ctx.signer.issue("learner", subject, record.id, ttl, read_only, record.token_generation)
    query = f"?node={quote(node)}" if node else ""
    return schemas.LaunchResponse(
        environment=_status(ctx, record.id),
        token=token,
        lab_url=f"{ctx.public_url}/lab/{record.id}{query}#token={token}",
    )


# learners -------------------------------------------------------------------------------------------
@router.get("/environments/{env_id}", tags=["learner"])
async def get_environment(request: Request, env_id: EnvId) -> schemas.EnvironmentStatus:
    """Status of the environment, with launch progress (and its place in line while it waits for room).

    The learner's page asking keeps a waiting lab in line; one that stops asking drops out."""
    _learner_or_server(request, env_id)
    ctx = context(request)
    if is_access_token(bearer(request)):
        claims = authorize(request, env_id)
        if claims.role == "learner" and not claims.read_only:
            ctx.stack.environments.seen(ctx.stack.environments.resolve(env_id))
    return _status(ctx, env_id)


@router.post("/environments/{env_id}/leave-queue", tags=["learner"])
async def leave_queue(request: Request, env_id: EnvId) -> schemas.EnvironmentStatus:
    """Give up the lab's place in line (409 when not waiting); opening the lab again joins at the back."""
    authorize(request, env_id, write=True)
    ctx = context(request)
    ctx.stack.environments.leave_queue(env_id)
    return _status(ctx, env_id)


@router.post("/environments/{env_id}/resume", tags=["learner"])
async def resume_environment(request: Request, env_id: EnvId) -> schemas.EnvironmentStatus:
    """Launch or resume the environment (the lab page calls this when it opens)."""
    authorize(request, env_id, write=True)
    ctx = context(request)
    ctx.stack.environments.request(env_id, Desired.RUNNING, "ResumeRequested")
    return _status(ctx, env_id)


@router.post("/environments/{env_id}/activity", status_code=204, tags=["learner"])
async def record_activity(request: Request, env_id: EnvId) -> Response:
    """Learner activity: keeps the lab running (and wakes it when suspended)."""
    authorize(request, env_id, write=True)
    ctx = context(request)
    ctx.stack.environments.touch(env_id)  # a wake-up is sent to the runner after it commits
    return Response(status_code=204)


PRESENCE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": schemas.PresenceBody.model_json_schema()},
            "text/plain": {"schema": {"type": "string", "description": "The same JSON (a beacon's body)"}},
        },
    }
}
"""The body is read by hand (a beacon's is text/plain); the schema tells the OpenAPI document what it is."""


@router.post(
    "/environments/{env_id}/presence", status_code=204, tags=["learner"], openapi_extra=PRESENCE_BODY
)
async def report_presence(request: Request, env_id: EnvId) -> Response:
    """What the learner's lab page says of itself: `visible`, `hidden` or `closed` (docs/idle.md). Not
    activity: a hidden page's lab is paused after the lab's `idle_suspend_hidden`, a closed page's after
    `close_grace` unless a page of it opens again; a visible page ends both.

    The page sends `closed` with `navigator.sendBeacon` on `pagehide`, which cannot set headers: the token
    then comes in the JSON body (`{"state": "closed", "token": T}`), never in the URL (where logs keep it).
    The body is read as JSON whatever its content type (a beacon's string is text/plain: no preflight). The
    token is the page's own short-lived access token (token_ttl_s, refreshed by the page, bound to this
    environment and withdrawn with it) and must allow writing: a read-only watcher never moves the lab.
    """
    try:
        body = schemas.PresenceBody.model_validate_json(await request.body())
    except ValidationError as exc:
        raise InvalidInput(f"presence: {exc.errors()[0].get('msg', 'invalid body')}") from exc
    header = request.headers.get("authorization")
    authorize(request, env_id, write=True, token=None if header else body.token)
    context(request).stack.environments.presence(env_id, body.state)
    return Response(status_code=204)


@router.post("/environments/{env_id}/reset", tags=["learner"])
async def reset_environment(request: Request, env_id: EnvId) -> schemas.ResetResponse:
    """Throw the lab away and start a fresh one.

    A reset withdraws every earlier token of the environment; the caller gets a fresh one (`token`) to
    carry on with (null for operator tokens, which are not bound to the environment).
    """
    claims = authorize(request, env_id, write=True)
    ctx = context(request)
    record = ctx.stack.environments.reset(env_id)
    await ctx.close_terminals(env_id)
    fresh = _token(ctx, claims, record) if claims.env_id is not None else None
    return schemas.ResetResponse(
        **_status(ctx, env_id).model_dump(),
        token=fresh.token if fresh else None,
        expires_at=fresh.expires_at if fresh else None,
    )


@router.post("/environments/{env_id}/checks", tags=["learner"])
async def run_checks(request: Request, env_id: EnvId) -> schemas.CheckReportBody:
    """Run the lab's checks now and return each result, hint and the score."""
    _learner_or_server(request, env_id, write=True)
    envs = context(request).stack.environments
    report = await envs.check(env_id)
    return _report(report, envs.lab_of(envs.resolve(env_id)))


@router.get("/environments/{env_id}/checks", tags=["learner"])
async def latest_checks(request: Request, env_id: EnvId) -> schemas.LatestChecks:
    """The latest check results and the score that counts (best or latest, as the lab says)."""
    _learner_or_server(request, env_id)
    ctx = context(request)
    record = ctx.stack.environments.resolve(env_id)
    lab = ctx.stack.environments.lab_of(record)
    runs = ctx.stack.repo.check_runs(env_id)
    if not runs:
        return schemas.LatestChecks(
            latest=None, counted_score=None, max_score=lab.max_score(), score_policy=lab.score
        )
    last = runs[-1]
    counted = counted_score([r.score for r in runs], lab.score)
    latest = schemas.CheckReportBody(
        results=[schemas.CheckResultBody(**r) for r in last.results],
        score=last.score,
        max_score=last.max_score,
        counted_score=counted or 0.0,
        score_policy=lab.score,
        checked_at=last.at,
    )
    return schemas.LatestChecks(
        latest=latest, counted_score=counted, max_score=last.max_score, score_policy=lab.score
    )


@router.post("/environments/{env_id}/token", tags=["learner"])
async def refresh_token(request: Request, env_id: EnvId) -> schemas.TokenResponse:
    """A fresh token with the same rights (the lab page refreshes before expiry).

    Only while the environment exists and its tokens have not been withdrawn (deleted, reset, revoked).
    """
    claims = authorize(request, env_id)
    ctx = context(request)
    return _token(ctx, claims, ctx.stack.repo.get(env_id) if claims.env_id is not None else None)


# LMS servers ----------------------------------------------------------------------------------------
@router.get("/labs", tags=["lms"])
async def list_labs(request: Request, _caller: Server) -> list[schemas.LabInfo]:
    """Labs this service offers."""
    catalog = context(request).catalog
    return [
        schemas.LabInfo(
            id=lab.id,
            title=lab.title,
            description=lab.description or "",
            nodes=list(lab.all_node_names()),
            learner_nodes=list(lab.learner_nodes),
            max_score=lab.max_score(),
            checks=[
                schemas.LabCheckInfo(name=c.name, node=c.node, weight=c.weight, hint=c.hint)
                for c in lab.checks
            ],
            problems=catalog.problems.get(lab.id, []),
        )
        for lab in catalog.labs.values()
    ]


@router.get("/labs/skipped", tags=["lms"])
async def list_skipped_labs(request: Request, _caller: Server) -> list[schemas.SkippedLab]:
    """Lab files this service could not read (so it offers no lab from them), with their problems: what a
    course author needs when the lab they chose is not offered."""
    skipped = context(request).catalog.skipped
    return [schemas.SkippedLab(file=file, problems=problems) for file, problems in skipped.items()]


@router.post("/launch", tags=["lms"])
async def launch(request: Request, body: schemas.LaunchRequest, _caller: Server) -> schemas.LaunchResponse:
    """Launch or resume a learner's lab; returns a learner token and the lab page's URL.

    `node` names the node the page opens first; `read_only` gives a token that may watch but not type.
    """
    _caller.require_course(body.course)
    ctx = context(request)
    lab = ctx.catalog.labs.get(body.lab)
    if lab is not None:
        _check_node(lab, body.node)  # before launching: a bad unit setting launches nothing
    record = ctx.stack.environments.launch(ctx.catalog.path(body.lab), body.learner, body.course)
    return _lab_page(ctx, record, body.node, body.read_only, body.learner)


@router.post("/prepare", tags=["lms"])
async def prepare(request: Request, body: schemas.PrepareRequest, _caller: Server) -> schemas.PrepareResponse:
    """The LMS rendered the lab's unit for this learner (pre-resume, once per view): a paused lab starts
    waking up before the learner acts, and is paused again after the lab's `pre_resume_idle` unless they
    act. A running lab, or a learner without one, is left as it is (a view is not activity; nothing is
    created)."""
    _caller.require_course(body.course)
    record, woken = context(request).stack.environments.prepare(EnvKey(body.course, body.lab, body.learner))
    return schemas.PrepareResponse(woken=woken, progress=record.progress if record is not None else None)


@router.post("/observe", tags=["lms"])
async def observe(request: Request, body: schemas.ObserveRequest, _caller: Server) -> schemas.LaunchResponse:
    """Staff watching a learner's lab (LMS masquerade): a read-only token for that learner's environment.

    Never creates an environment (404 when the learner has not opened the lab); a paused lab is woken up so
    that there is something to see (recorded as `StaffViewResumed`).
    """
    _caller.require_course(body.course)
    return watch_learner(context(request), body.course, body.lab, body.learner, body.node, _caller.operator)


def watch_learner(
    ctx: WebContext, course: str, lab: str, learner: str, node: str | None, operator: str | None
) -> schemas.LaunchResponse:
    """Staff's read-only view of a learner's lab (the staff panel's and the course view's): never creates an
    environment, wakes a paused one (`StaffViewResumed`); an operator's view goes to the audit log."""
    record = ctx.stack.repo.find(EnvKey(course, lab, learner))
    if record is None or record.desired == Desired.DELETED:
        raise NotFound("this learner has no lab here yet: they have not opened this unit")
    _wake_for_viewing(ctx, record, "StaffViewResumed")
    _audit(ctx, operator, "observe", record)
    return _lab_page(ctx, record, node, True, f"staff-view.{learner}")


def _wake_for_viewing(ctx: WebContext, record: EnvironmentRecord, reason: str) -> None:
    """A paused lab is woken up so that a watcher has something to see (a failed one is left as it is, and
    so is one paused by its learner's usage limit: its checks can be read, and staff may grant time)."""
    if record.desired != Desired.RUNNING and record.observed != Observed.FAILED:
        with contextlib.suppress(UsageLimitReached):
            ctx.stack.environments.request(record.id, Desired.RUNNING, reason)


@router.get("/courses/{course}/environments", tags=["lms"])
async def course_environments(
    request: Request, course: Annotated[str, Path(max_length=200)], _caller: Server
) -> list[schemas.CourseEnvironment]:
    """Every environment of a course with the time it has run (for staff panels)."""
    _caller.require_course(course)
    ctx = context(request)
    envs = ctx.stack.environments
    records = ctx.stack.repo.list(course=course)
    used = running_seconds(ctx.stack.repo, [r.id for r in records], until=ctx.stack.controller.clock())
    return [
        schemas.CourseEnvironment(
            **schemas.status_of(r, envs.lab_of(r)).model_dump(), running_s=round(used.get(r.id, 0.0), 1)
        )
        for r in records
    ]


@router.post("/courses/{course}/learners/{learner}/grants", tags=["lms"])
async def grant_time(
    request: Request,
    course: Course,
    learner: Annotated[str, Path(pattern=NAME_PATTERN.pattern)],
    body: schemas.GrantRequest,
    caller: Server,
) -> schemas.GrantResponse:
    """Give a learner more running time on a lab with a usage limit (course staff, from the LMS's staff
    panel, or an operator). The grant is kept with who gave it and why, and goes to the audit log; a paused
    lab stays paused until the learner resumes it."""
    caller.require_course(course)
    ctx = context(request)
    record = ctx.stack.repo.find(EnvKey(course, body.lab, learner))
    if record is None:
        raise NotFound("this learner has no lab here yet: they have not opened this unit")
    who = caller.operator or f"{caller.name}" + (f" for {body.staff}" if body.staff else "")
    record = ctx.stack.environments.grant(record.id, body.hours, body.reason, who)
    detail = f"{body.hours:g} h: {body.reason.strip()}"
    target = f"{record.course} / {record.lab_id} / {record.learner}"
    record_action(ctx.stack.repo, who, "grant", time.time(), record.id, target, detail)
    return _grants(ctx, record)


@router.get("/courses/{course}/learners/{learner}/grants", tags=["lms"])
async def list_grants(
    request: Request,
    course: Course,
    learner: Annotated[str, Path(pattern=NAME_PATTERN.pattern)],
    lab: Annotated[str, Query(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")],
    caller: Server,
) -> schemas.GrantResponse:
    """A learner's allowance on a lab and every grant they were given in the course."""
    caller.require_course(course)
    ctx = context(request)
    record = ctx.stack.repo.find(EnvKey(course, lab, learner))
    if record is None:
        raise NotFound("this learner has no lab here yet: they have not opened this unit")
    return _grants(ctx, record)


def _grants(ctx: WebContext, record: EnvironmentRecord) -> schemas.GrantResponse:
    allowance = ctx.stack.environments.allowance(record)
    return schemas.GrantResponse(
        environment=record.id,
        usage=schemas.usage_status(allowance, record) if allowance is not None else None,
        grants=[
            schemas.GrantEntry(
                lab=g.lab_id, hours=g.seconds / 3600.0, reason=g.reason, granted_by=g.granted_by, at=g.at
            )
            for g in grants_of(ctx.stack.repo, record.course, record.learner)
        ],
    )


@router.post("/environments/{env_id}/suspend", tags=["lms"])
async def suspend_environment(request: Request, env_id: EnvId, _caller: Server) -> schemas.EnvironmentStatus:
    ctx = context(request)
    record = _for_course_of(_caller, ctx, env_id)
    ctx.stack.environments.request(env_id, Desired.SUSPENDED, "SuspendRequested")
    _audit(ctx, _caller.operator, "suspend", record)
    await ctx.close_terminals(env_id)
    return _status(ctx, env_id)


@router.delete("/environments/{env_id}", tags=["lms"])
async def delete_environment(request: Request, env_id: EnvId, _caller: Server) -> schemas.EnvironmentStatus:
    """Delete the lab; every token issued for it stops working."""
    ctx = context(request)
    record = _for_course_of(_caller, ctx, env_id)
    ctx.stack.environments.request(env_id, Desired.DELETED, "DeleteRequested")
    _audit(ctx, _caller.operator, "delete", record)
    await ctx.close_terminals(env_id)
    return _status(ctx, env_id)


@router.post("/courses/{course}/learners/{learner}/revoke", tags=["lms"])
async def revoke_learner_tokens(
    request: Request,
    course: Course,
    learner: Annotated[str, Path(pattern=NAME_PATTERN.pattern)],
    caller: Server,
) -> schemas.RevokeResponse:
    """Withdraw every token of a learner's labs in a course (access removed, account compromised).

    Their labs are kept; open terminals are closed; a later launch gives the learner a working token.
    """
    caller.require_course(course)
    ctx = context(request)
    revoked = revoke_learner(ctx.stack.repo, course, learner)
    if caller.operator is not None:
        detail = f"tokens of {len(revoked)} environment(s) withdrawn"
        target = f"{course} / {learner}"
        record_action(ctx.stack.repo, caller.operator, "revoke", time.time(), None, target, detail)
    for env_id in revoked:
        await ctx.close_terminals(env_id)
    return schemas.RevokeResponse(environments=revoked)


# operators ------------------------------------------------------------------------------------------
@router.get("/admin/environments", tags=["admin"])
async def admin_list(
    request: Request,
    _admin: Admin,
    course: Annotated[str | None, Query(max_length=200)] = None,
    state: Annotated[str | None, Query(max_length=16)] = None,
) -> list[schemas.AdminEnvironment]:
    """Environments, filtered by course and observed state."""
    records = context(request).stack.repo.list(course=course or None, observed=state or None)
    return [schemas.admin_view(r) for r in records]


@router.get("/admin/environments/{env_id}", tags=["admin"])
async def admin_show(request: Request, env_id: EnvId, _admin: Admin) -> schemas.AdminEnvironmentDetail:
    """One environment with its transition history."""
    ctx = context(request)
    record = ctx.stack.environments.resolve(env_id)
    return schemas.admin_detail(record, ctx.stack.repo.history(env_id))


@router.post("/admin/token", tags=["admin"])
async def refresh_admin_token(request: Request, claims: OperatorClaims) -> schemas.TokenResponse:
    """A fresh operator token (the operator page refreshes before expiry), while the account exists."""
    ctx = context(request)
    ttl = ctx.stack.settings.token_ttl_s
    token = ctx.signer.issue("admin", claims.subject, None, ttl, generation=claims.generation)
    return schemas.TokenResponse(token=token, expires_at=ctx.signer.expiry(ttl))


@router.get("/admin/audit", tags=["admin"])
async def admin_audit(
    request: Request,
    _admin: Admin,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Entries older than this id")] = None,
    env: Annotated[str | None, Query(pattern=r"^[0-9a-f]{8}$")] = None,
    operator: Annotated[str | None, Query(max_length=200)] = None,
) -> list[schemas.AuditEntry]:
    """What operators did (suspend, resume, delete, reset, observe, revoke, sign-in), newest first."""
    entries = audit_entries(context(request).stack.repo, limit, before, env, operator or None)
    return [schemas.audit_entry(e) for e in entries]


ACTIONS: dict[str, Desired] = {
    "suspend": Desired.SUSPENDED,
    "resume": Desired.RUNNING,
    "delete": Desired.DELETED,
}


@router.post("/admin/environments/{env_id}/observe", tags=["admin"])
async def admin_observe(request: Request, env_id: EnvId, admin: Admin) -> schemas.LaunchResponse:
    """A read-only token and lab page for a learner's environment (woken up when paused), as the LMS's
    observe gives course staff."""
    ctx = context(request)
    record = ctx.stack.environments.resolve(env_id)
    if record.desired == Desired.DELETED:
        raise Conflict(f"environment {env_id} is deleted: there is nothing to watch")
    _wake_for_viewing(ctx, record, "OperatorViewResumed")
    _audit(ctx, admin, "observe", record)
    return _lab_page(ctx, ctx.stack.repo.get(env_id), None, True, f"operator-view.{admin}")


@router.post("/admin/environments/{env_id}/reset", tags=["admin"])
async def admin_reset(request: Request, env_id: EnvId, admin: Admin) -> schemas.AdminEnvironment:
    """Throw the learner's lab away and start a fresh one. Their open terminals close and their tokens stop
    working: the lab page asks them to open the lab again from their course."""
    ctx = context(request)
    record = ctx.stack.environments.reset(env_id)
    _audit(ctx, admin, "reset", record)
    await ctx.close_terminals(env_id)
    return schemas.admin_view(record)


@router.post("/admin/environments/{env_id}/{action}", tags=["admin"])
async def admin_act(
    request: Request, env_id: EnvId, action: Literal["suspend", "resume", "delete"], admin: Admin
) -> schemas.AdminEnvironment:
    """Ask the controller to suspend, resume or delete (it converges; the row is not edited directly)."""
    ctx = context(request)
    record = ctx.stack.environments.request(env_id, ACTIONS[action], f"Operator{action.capitalize()}")
    _audit(ctx, admin, action, record)
    if action != "resume":
        await ctx.close_terminals(env_id)
    return schemas.admin_view(record)
