"""Request and response bodies of the API (published in the OpenAPI document)."""

from __future__ import annotations

import math
import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stacklab.envs.allowance import Allowance
from stacklab.envs.idleness import idle_deadline
from stacklab.envs.service import NAME_PATTERN
from stacklab.labs.schema import Lab
from stacklab.names import NodeName, Slug
from stacklab.store.tables import AuditRecord, EnvironmentRecord, TransitionRecord
from stacklab.types import Desired, Observed

BUSY = "All lab machines are busy right now. Please try again in a few minutes."
MISCONFIGURED = (
    "Your lab's cloud is not set up correctly, so your lab could not be started. "
    "Please tell your course team."
)
LEARNER_MESSAGES = {
    "NoCapacity": BUSY,
    "CapacityExhausted": BUSY,
    "QuotaExceeded": BUSY,
    "LaunchTimeout": "Your lab took too long to start. Please retry.",
    "AuthFailed": MISCONFIGURED,
    "Forbidden": MISCONFIGURED,
    "TLSFailed": MISCONFIGURED,
    "CloudNotConfigured": MISCONFIGURED,
    "NoHeatEndpoint": MISCONFIGURED,
}
DEFAULT_FAILURE = "Your lab could not be started. Please retry; if it keeps failing, tell your course team."
RETRY_MESSAGES = {
    "ProviderUnavailable": "The cloud is not answering",
    "Timeout": "The cloud is not answering",
    "RateLimited": "The cloud is busy",
    "Conflict": "The cloud is busy",
    "NoCapacity": "All lab machines are busy",
    "CapacityExhausted": "All lab machines are busy",
    "QuotaExceeded": "All lab machines are busy",
    "LaunchTimeout": "Your lab took too long to start",
    "CreateFailed": "The cloud could not build your lab",
    "DeleteInProgress": "The cloud is still removing your previous lab",
}
"""While a retry is scheduled: what went wrong in the learner's words (operators see the error itself)."""
DEFAULT_RETRY = "Something went wrong while preparing your lab"

Name = str


class LaunchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    course: str = Field(pattern=NAME_PATTERN.pattern, description="Course id, e.g. course-v1:Org+C1+2026")
    lab: Slug = Field(description="Lab id offered by this service")
    learner: str = Field(pattern=NAME_PATTERN.pattern, description="The LMS's anonymous learner id")
    node: NodeName | None = Field(
        default=None, description="The node the lab page opens first (one of the lab's learner nodes)"
    )
    read_only: bool = Field(
        default=False, description="A token that may watch the lab but not type, check or reset"
    )


class ObserveRequest(BaseModel):
    """Course staff watching one learner's lab (masquerade): a read-only view of an existing environment."""

    model_config = ConfigDict(extra="forbid")

    course: str = Field(pattern=NAME_PATTERN.pattern, description="Course id")
    lab: Slug = Field(description="Lab id")
    learner: str = Field(pattern=NAME_PATTERN.pattern, description="The learner's anonymous id")
    node: NodeName | None = None


class UsageStatus(BaseModel):
    """The learner's running time against the lab's usage limit (envs/allowance.py)."""

    hours: float = Field(description="Hours the limit gives each learner, before grants")
    per: str = Field(description="`week` (from Monday 00:00 UTC) or `total`")
    policy: str = Field(description="`block` (paused and refused past the limit) or `warn` (told only)")
    scope: str = Field(description="`lab` (this lab's time) or `course` (every lab of the course)")
    used_s: float = Field(description="Seconds used in the period, from the recorded transitions")
    granted_s: float = Field(description="Seconds staff granted on top (in the period)")
    remaining_s: float = Field(description="Seconds left (0 past the limit)")
    over: bool = Field(description="The learner has used all their time")
    blocked: bool = Field(description="Over a `block` limit: the lab stays paused; only checks can be read")
    counting: bool = Field(description="The lab runs: remaining_s goes down by one every second")
    resets_at: float | None = Field(description="When a weekly allowance starts afresh (null: total)")
    message: str = Field(description="What the learner reads past the limit (empty before)")


def usage_status(allowance: Allowance, record: EnvironmentRecord) -> UsageStatus:
    return UsageStatus(
        hours=allowance.hours,
        per=allowance.per,
        policy=allowance.policy,
        scope=allowance.scope,
        used_s=round(allowance.used_s, 1),
        granted_s=allowance.granted_s,
        remaining_s=round(allowance.remaining_s, 1),
        over=allowance.over,
        blocked=allowance.blocked,
        counting=record.observed == Observed.RUNNING,
        resets_at=allowance.period_ends_at,
        message=allowance.sentence(),
    )


class GrantRequest(BaseModel):
    """Course staff giving a learner more lab time (usage limits)."""

    model_config = ConfigDict(extra="forbid")

    lab: Slug = Field(description="Lab id")
    hours: float = Field(gt=0, le=10000, allow_inf_nan=False, description="Hours to add")
    reason: str = Field(min_length=1, max_length=1000, description="Why (kept with the grant)")
    staff: str = Field(
        default="", max_length=200, description="Who grants it (the LMS user), kept with the grant"
    )


class GrantEntry(BaseModel):
    lab: str
    hours: float
    reason: str
    granted_by: str
    at: float


class GrantResponse(BaseModel):
    environment: str = Field(description="The learner's environment of the lab")
    usage: UsageStatus | None = Field(description="Their allowance after the grant (null: no limit)")
    grants: list[GrantEntry] = Field(description="Every grant of the learner in the course, oldest first")


class PrepareRequest(BaseModel):
    """The LMS rendered a lab's unit for a learner (pre-resume): wake their paused lab before they act."""

    model_config = ConfigDict(extra="forbid")

    course: str = Field(pattern=NAME_PATTERN.pattern, description="Course id")
    lab: Slug = Field(description="Lab id")
    learner: str = Field(pattern=NAME_PATTERN.pattern, description="The learner's anonymous id")


class PrepareResponse(BaseModel):
    woken: bool = Field(description="Whether this call started waking the learner's paused lab")
    progress: str | None = Field(description="The lab's progress after the call (null: no lab yet)")


class PresenceBody(BaseModel):
    """What the lab page says of itself (not activity). A `pagehide` beacon cannot set headers: its token
    comes in the body, never in the URL."""

    model_config = ConfigDict(extra="forbid")

    state: Literal["visible", "hidden", "closed"]
    token: str | None = Field(default=None, max_length=4096, description="The page's access token (beacons)")


class EnvironmentStatus(BaseModel):
    id: str
    course: str
    lab: str
    learner: str
    title: str
    description: str
    desired: str
    observed: str
    progress: str
    ready: bool
    nodes: list[str] = Field(description="Nodes the learner may open")
    message: str = Field(description="A learner-friendly sentence when something is wrong")
    idle_suspend_at: float | None = Field(
        default=None,
        description="When the running lab is paused for inactivity unless the learner acts (epoch seconds, "
        "the service's clock; null when not running); the page warns `idle_warning_s` before",
    )
    idle_warning_s: float = Field(default=60.0, description="The lab's `timeouts.idle_warning`")
    server_time: float = Field(default=0.0, description="The service's clock when answering (epoch seconds)")
    usage: UsageStatus | None = Field(
        default=None, description="Time left under the lab's usage limit (null: the lab sets none)"
    )
    queue_position: int | None = Field(
        default=None,
        description="Place in line while every provider of the lab is full (1: next to start); null when not "
        "waiting. First come, first served; computed from the database (docs/queue.md)",
    )
    queue_estimate_s: float | None = Field(
        default=None,
        description="About how many seconds until this lab's turn, at the pace places were given back lately "
        "(null: not waiting, or no pace known yet)",
    )


class CourseEnvironment(EnvironmentStatus):
    """A course's environment as staff panels list it."""

    running_s: float = Field(description="Seconds the lab has been running so far, from its recorded history")


class LaunchResponse(BaseModel):
    environment: EnvironmentStatus
    token: str
    lab_url: str


class TokenResponse(BaseModel):
    token: str
    expires_at: float


class ResetResponse(EnvironmentStatus):
    """The status after a reset, with the caller's fresh token: the reset withdrew the one it used."""

    token: str | None = Field(description="The caller's new token (null for operators)")
    expires_at: float | None


class RevokeResponse(BaseModel):
    environments: list[str] = Field(
        description="Ids of the learner's environments whose tokens were withdrawn"
    )


class CheckResultBody(BaseModel):
    name: str
    node: str
    passed: bool
    weight: float
    output: str
    hint: str


class CheckReportBody(BaseModel):
    results: list[CheckResultBody]
    score: float
    max_score: float
    counted_score: float
    score_policy: str = Field(
        default="best", description="The lab's `score`: best (never goes down) or latest attempt"
    )
    checked_at: float | None = Field(default=None, description="When these checks ran (Unix time)")


class LatestChecks(BaseModel):
    latest: CheckReportBody | None
    counted_score: float | None
    max_score: float = Field(default=0.0, description="The lab's maximum score")
    score_policy: str = Field(default="best", description="The lab's `score`: best or latest")


class LabCheckInfo(BaseModel):
    """A check as course authors preview it (its script stays in the service)."""

    name: str
    node: str
    weight: float
    hint: str


class LabInfo(BaseModel):
    id: str
    title: str
    description: str
    nodes: list[str]
    learner_nodes: list[str] = Field(description="The nodes a unit may open for learners (`node` options)")
    max_score: float
    checks: list[LabCheckInfo] = Field(description="The lab's checks, for Studio's preview (no scripts)")
    problems: list[str] = Field(
        default=[],
        description="What `stacklab lab validate` finds in the lab's Heat template (FILE:LINE: ...)",
    )


class SkippedLab(BaseModel):
    """A lab file the service could not read, so it offers no lab from it."""

    file: str
    problems: list[str]


class AdminEnvironment(BaseModel):
    id: str
    course: str
    lab: str
    learner: str
    desired: str
    observed: str
    progress: str
    provider: str | None
    created_at: float
    last_activity_at: float
    last_error: str | None
    last_reason: str | None


class HistoryEntry(BaseModel):
    at: float
    kind: str
    from_: str = Field(alias="from")
    to: str
    reason: str
    message: str

    model_config = ConfigDict(populate_by_name=True)


class AdminEnvironmentDetail(AdminEnvironment):
    nodes: dict[str, dict[str, object]]
    history: list[HistoryEntry]


def _in(seconds: float) -> str:
    return f"{math.ceil(seconds)} s" if seconds < 120 else f"{math.ceil(seconds / 60)} min"


def idle_suspend_at(record: EnvironmentRecord) -> float | None:
    """When a running lab is paused for inactivity unless the learner acts (None: it does not run)."""
    if record.observed != Observed.RUNNING or record.desired != Desired.RUNNING:
        return None
    return idle_deadline(record)


def learner_message(record: EnvironmentRecord, now: float) -> str:
    """A sentence for the learner, never the error text: what went wrong and when the next try is."""
    retry_at = record.next_attempt_at
    if record.last_reason and retry_at and retry_at > now and record.desired != Desired.DELETED:
        why = RETRY_MESSAGES.get(record.last_reason, DEFAULT_RETRY)
        return f"{why}; retrying in {_in(retry_at - now)}."
    if record.observed == Observed.FAILED:
        return LEARNER_MESSAGES.get(record.last_reason or "", DEFAULT_FAILURE)
    return ""


def status_of(
    record: EnvironmentRecord,
    lab: Lab,
    now: float | None = None,
    allowance: Allowance | None = None,
    queue_spot: tuple[int | None, float | None] = (None, None),
) -> EnvironmentStatus:
    message = learner_message(record, time.time() if now is None else now)
    usage = usage_status(allowance, record) if allowance is not None else None
    if usage is not None and usage.blocked and not message:
        message = usage.message
    return EnvironmentStatus(
        id=record.id,
        course=record.course,
        lab=record.lab_id,
        learner=record.learner,
        title=lab.title,
        description=lab.description or "",
        desired=record.desired,
        observed=record.observed,
        progress=record.progress,
        ready=record.observed == Observed.RUNNING,
        nodes=list(lab.learner_nodes),
        message=message,
        idle_suspend_at=idle_suspend_at(record),
        idle_warning_s=lab.timeouts.idle_warning_s,
        server_time=time.time() if now is None else now,
        usage=usage,
        queue_position=queue_spot[0],
        queue_estimate_s=None if queue_spot[1] is None else round(queue_spot[1], 1),
    )


def admin_view(record: EnvironmentRecord) -> AdminEnvironment:
    return AdminEnvironment(
        id=record.id,
        course=record.course,
        lab=record.lab_id,
        learner=record.learner,
        desired=record.desired,
        observed=record.observed,
        progress=record.progress,
        provider=record.provider,
        created_at=record.created_at,
        last_activity_at=record.last_activity_at,
        last_error=record.last_error,
        last_reason=record.last_reason,
    )


def admin_detail(record: EnvironmentRecord, history: list[TransitionRecord]) -> AdminEnvironmentDetail:
    return AdminEnvironmentDetail(
        **admin_view(record).model_dump(),
        nodes=record.nodes or {},
        history=[
            HistoryEntry(
                at=t.at, kind=t.kind, from_=t.from_state, to=t.to_state, reason=t.reason, message=t.message
            )
            for t in history
        ],
    )


class AuditEntry(BaseModel):
    """One operator action, as the audit log keeps it."""

    id: int
    at: float
    operator: str = Field(description="The operator account (or `cli:<user>` for the command line)")
    action: str = Field(description="suspend, resume, delete, reset, observe, revoke, sign-in, ...")
    env_id: str | None
    target: str = Field(description="course / lab / learner, or the account acted on")
    detail: str


def audit_entry(record: AuditRecord) -> AuditEntry:
    return AuditEntry(
        id=record.id,
        at=record.at,
        operator=record.operator,
        action=record.action,
        env_id=record.env_id,
        target=record.target,
        detail=record.detail,
    )
