"""The tables.

Times are UTC epoch seconds as doubles: portable across SQLite, PostgreSQL and MariaDB (whose FLOAT
would lose whole seconds).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class LabRecord(Base):
    """A lab file as it was when an environment was launched from it (keyed by content digest)."""

    __tablename__ = "labs"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    lab_id: Mapped[str] = mapped_column(String(64), index=True)
    source_path: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    loaded_at: Mapped[float] = mapped_column(Double)


class EnvironmentRecord(Base):
    """One learner's instance of one lab."""

    __tablename__ = "environments"
    __table_args__ = (
        UniqueConstraint("course", "lab_id", "learner", name="uq_environment_key"),
        Index("ix_environments_due_at", "due_at"),
        Index("ix_environments_course_state", "course", "observed"),
        Index("ix_environments_course_learner", "course", "learner"),
        Index("ix_environments_queued_at", "queued_at"),
        Index("ix_environments_host", "host", "observed"),
    )

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    course: Mapped[str] = mapped_column(String(200))
    lab_id: Mapped[str] = mapped_column(String(64))
    learner: Mapped[str] = mapped_column(String(200))
    lab_digest: Mapped[str] = mapped_column(String(64), ForeignKey("labs.digest"))
    desired: Mapped[str] = mapped_column(String(16))
    observed: Mapped[str] = mapped_column(String(16))
    progress: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str | None] = mapped_column(String(64), nullable=True)
    host: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The local host holding this lab (runner = celery with several LXC hosts: envs/hosts.py); its passes
    run only on that host's workers. None: not placed (one host, or a lab without a local provider)."""
    capacity_held: Mapped[str | None] = mapped_column(String(64), nullable=True)
    stack_name: Mapped[str] = mapped_column(String(64))
    handle: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    nodes: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    outputs: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    failed_providers: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    public_key: Mapped[str] = mapped_column(Text)
    sealed_secrets: Mapped[bytes] = mapped_column(LargeBinary)
    idle_suspend_s: Mapped[float] = mapped_column(Double)
    delete_after_s: Mapped[float] = mapped_column(Double)
    reset_requested: Mapped[bool] = mapped_column(default=False)
    pool: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """Warm pools (envs/pools.py): the provider this environment is kept ready on for the next learner of
    its course and lab; None for a learner's environment. Members' learner is `~warm-<provider>-<n>`."""
    rotate_keys: Mapped[bool] = mapped_column(default=False, server_default=false())
    """Handed over from a warm pool: the next pass rotates the login key before the learner gets in."""
    created_at: Mapped[float] = mapped_column(Double)
    updated_at: Mapped[float] = mapped_column(Double)
    last_activity_at: Mapped[float] = mapped_column(Double)
    step_started_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    suspended_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    ready_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    due_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_until: Mapped[float | None] = mapped_column(Double, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Bumped by every write of intent (learner side) and every controller save: saves compare-and-set."""
    token_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Access tokens carry the generation they were issued in; delete, reset and revoke move it on."""
    away_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    """When the lab page said the learner left (`away_kind` hidden or closed) or a unit view woke the lab
    (preresume); with `away_limit_s` it brings the idle deadline forward until the learner acts
    (envs/idleness.py)."""
    away_kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    away_limit_s: Mapped[float | None] = mapped_column(Double, nullable=True)
    usage_limit_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    """When the learner's running time reaches a `block` usage limit (envs/allowance.py), set by passes:
    a policy deadline, so that whichever scheduler runs sends the pass that pauses the lab."""
    queued_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    """In line for a provider slot since (the request's time): first come, first served
    (envs/admission.py)."""
    queue_providers: Mapped[str | None] = mapped_column(String(300), nullable=True)
    """The providers a queued environment can take, as ",a,b," (a resume: only its own)."""
    queue_seen_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    """When the learner's page last asked about a queued lab; one that stops asking drops out of line."""


class TransitionRecord(Base):
    """One change of desired or observed state, with its reason: why an environment is where it is."""

    __tablename__ = "transitions"
    __table_args__ = (Index("ix_transitions_env_kind_at", "env_id", "kind", "at"),)
    """Time used (store/usage.py) reads one environment's observed transitions in time order from it."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    env_id: Mapped[str] = mapped_column(String(16), ForeignKey("environments.id"))
    at: Mapped[float] = mapped_column(Double)
    kind: Mapped[str] = mapped_column(String(16))
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text, default="")


class CheckRunRecord(Base):
    """One run of a lab's checks for one environment."""

    __tablename__ = "check_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    env_id: Mapped[str] = mapped_column(String(16), ForeignKey("environments.id"), index=True)
    at: Mapped[float] = mapped_column(Double)
    score: Mapped[float] = mapped_column(Double)
    max_score: Mapped[float] = mapped_column(Double)
    results: Mapped[list[dict[str, Any]]] = mapped_column(JSON)


class ProviderUsageRecord(Base):
    """How many environments hold a slot on each provider (suspended ones included)."""

    __tablename__ = "provider_usage"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    used: Mapped[int] = mapped_column(Integer, default=0)
    released_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    """When a slot was last given back (the queue's estimate, store/queue.py)."""
    release_gap_s: Mapped[float | None] = mapped_column(Double, nullable=True)
    """A moving average of the time between slots given back: the pace the queue moves at."""


class LmsTokenIdRecord(Base):
    """A JWT id (`jti`) an LMS has used, kept until the token expires so that it cannot be replayed."""

    __tablename__ = "lms_token_ids"

    issuer: Mapped[str] = mapped_column(String(200), primary_key=True)
    jti: Mapped[str] = mapped_column(String(200), primary_key=True)
    expires_at: Mapped[float] = mapped_column(Double, index=True)


class OperatorRecord(Base):
    """A named operator account. Removed accounts stay as rows (no password) so that their name keeps its
    place in the audit log and the legacy `admin` account is not brought back by the next start."""

    __tablename__ = "operators"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(255), default="")
    """An argon2id hash (PHC string); empty once the account is removed."""
    from_setting: Mapped[bool] = mapped_column(default=False)
    """The `admin` account of installs from before named accounts: its password is the admin_password
    setting (or the generated admin.password) until an operator sets one with the CLI."""
    token_generation: Mapped[int] = mapped_column(Integer, default=0)
    """Operator tokens carry it; removing the account or changing its password moves it on."""
    created_at: Mapped[float] = mapped_column(Double)
    updated_at: Mapped[float] = mapped_column(Double)
    removed_at: Mapped[float | None] = mapped_column(Double, nullable=True)


class AuditRecord(Base):
    """One operator action: who did what to which environment (or account), and when."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Double, index=True)
    operator: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(32))
    env_id: Mapped[str | None] = mapped_column(String(16), nullable=True, index=True)
    """No foreign key: the log outlives whatever it names."""
    target: Mapped[str] = mapped_column(String(600), default="")
    detail: Mapped[str] = mapped_column(Text, default="")


class MemberRecord(Base):
    """One process of a deployment (a web process, a worker, a scheduler), alive while it heartbeats.

    Web processes publish the address their peers reach them at (terminal relays); workers of local
    hosts publish their host, queue, capacity and load (placement)."""

    __tablename__ = "members"
    __table_args__ = (Index("ix_members_role_heartbeat", "role", "heartbeat_at"),)

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    address: Mapped[str | None] = mapped_column(String(300), nullable=True)
    host: Mapped[str | None] = mapped_column(String(64), nullable=True)
    queue: Mapped[str | None] = mapped_column(String(200), nullable=True)
    capacity: Mapped[int | None] = mapped_column(Integer, nullable=True)
    load: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[float] = mapped_column(Double)
    heartbeat_at: Mapped[float] = mapped_column(Double)


class LeaseRecord(Base):
    """A named lease (e.g. "scheduler"): held by one owner until it expires or is renewed. A row, not a
    database lock, so that it works the same on SQLite, PostgreSQL and Galera (which does not replicate
    GET_LOCK)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[float] = mapped_column(Double)
    version: Mapped[int] = mapped_column(Integer, default=0)


class TerminalSessionRecord(Base):
    """Which web process holds a terminal session's shell, so that a websocket that reconnects to
    another process (through a load balancer) is relayed to it."""

    __tablename__ = "terminal_sessions"
    __table_args__ = (Index("ix_terminal_sessions_env_node", "env_id", "node"),)

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    env_id: Mapped[str] = mapped_column(String(16))
    node: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(200))
    member_id: Mapped[str] = mapped_column(String(200), index=True)
    updated_at: Mapped[float] = mapped_column(Double)


class UsageGrantRecord(Base):
    """Extra running time staff gave a learner on a lab (usage limits), with who gave it and why."""

    __tablename__ = "usage_grants"
    __table_args__ = (Index("ix_usage_grants_learner", "course", "learner", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    course: Mapped[str] = mapped_column(String(200))
    learner: Mapped[str] = mapped_column(String(200))
    lab_id: Mapped[str] = mapped_column(String(64))
    seconds: Mapped[float] = mapped_column(Double)
    reason: Mapped[str] = mapped_column(Text)
    granted_by: Mapped[str] = mapped_column(String(200))
    """The operator account, `cli:<user>`, or the LMS key and staff member who granted it."""
    at: Mapped[float] = mapped_column(Double)
