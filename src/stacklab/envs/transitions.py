"""Every change of state is recorded with its time and reason, so an operator can always see why."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from stacklab.store.tables import EnvironmentRecord, TransitionRecord
from stacklab.types import Desired, Observed, Progress


class Journal:
    """Collects the transitions of one step; the controller saves them with the record in `session`."""

    def __init__(self, record: EnvironmentRecord, now: float, session: Session | None = None) -> None:
        self.record = record
        self.now = now
        self.session: Session = session  # type: ignore[assignment]
        self.entries: list[TransitionRecord] = []
        self.base: dict[str, Any] = {}
        """The learner-side columns as the pass last read or saved them (envs/intent.py merges on it)."""
        self.look_again = False
        """A save merged a learner's change the pass did not act on: the environment is due again now."""

    def _add(self, kind: str, old: str, new: str, reason: str, message: str) -> None:
        self.entries.append(
            TransitionRecord(
                env_id=self.record.id,
                at=self.now,
                kind=kind,
                from_state=old,
                to_state=new,
                reason=reason,
                message=message[:4000],
            )
        )

    def desire(self, state: Desired, reason: str, message: str = "") -> None:
        if self.record.desired != state:
            self._add("desired", self.record.desired, state, reason, message)
            self.record.desired = state

    def observe(
        self, state: Observed, reason: str, message: str = "", progress: Progress | None = None
    ) -> None:
        if self.record.observed != state:
            self._add("observed", self.record.observed, state, reason, message)
            self.record.observed = state
        if progress is not None:
            self.record.progress = progress

    def note(self, kind: str, name: str, reason: str, message: str = "") -> None:
        """An event that changes no state (a hook ran, a provider was skipped)."""
        self._add(kind, name, name, reason, message)
