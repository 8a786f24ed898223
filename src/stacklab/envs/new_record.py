"""A new environment row and the transition that records why it exists: one shape for a learner's launch
and for a warm pool's member, which differ only in their names, timeouts and reason."""

from __future__ import annotations

import secrets as token_source
from dataclasses import dataclass

from stacklab.store.tables import EnvironmentRecord, TransitionRecord
from stacklab.types import Desired, Observed, Progress


@dataclass(frozen=True)
class NewEnvironment:
    course: str
    lab_id: str
    learner: str
    lab_digest: str
    sealed_secrets: bytes
    idle_suspend_s: float
    delete_after_s: float
    reason: str
    message: str = ""
    pool: str | None = None
    stack_suffix: str = ""
    """Added to the stack name (`sl-<id><suffix>`): a pool member's stacks are numbered."""

    def rows(self, now: float) -> tuple[EnvironmentRecord, TransitionRecord]:
        """The row (wanted running, nothing made yet, due now) and its first transition, with a fresh id.
        The public key is empty: the controller makes a key pair for each stack it creates."""
        env_id = token_source.token_hex(4)
        record = EnvironmentRecord(
            id=env_id,
            course=self.course,
            lab_id=self.lab_id,
            learner=self.learner,
            lab_digest=self.lab_digest,
            desired=Desired.RUNNING,
            observed=Observed.NEW,
            progress=Progress.QUEUED,
            stack_name=f"sl-{env_id}{self.stack_suffix}",
            public_key="",
            sealed_secrets=self.sealed_secrets,
            idle_suspend_s=self.idle_suspend_s,
            delete_after_s=self.delete_after_s,
            reset_requested=False,
            created_at=now,
            updated_at=now,
            last_activity_at=now,
            due_at=now,
            attempts=0,
        )
        if self.pool is not None:
            record.pool, record.rotate_keys = self.pool, False
        transition = TransitionRecord(
            env_id=env_id,
            at=now,
            kind="desired",
            from_state="-",
            to_state=Desired.RUNNING,
            reason=self.reason,
            message=self.message,
        )
        return record, transition
