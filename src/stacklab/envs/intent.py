"""Intent: the columns the learner side writes while a controller pass may be running.

The learner side (`Environments`: activity, launch, suspend/resume/delete requests, reset) writes without
the lease, so that a click never waits for a pass that can take a minute. Every such write bumps the
environment's `version`; every save of a pass is compare-and-set on it. When a save finds the version
moved, it merges three ways: a column the other side changed since this pass last loaded or saved it
takes their value (activity: the later of both), the pass's own policy decision of this save is made
again on the merged record, and the environment becomes due now, so that the wake-up reaches the next
pass whichever runner sends it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stacklab.envs.lifecycle import wake
from stacklab.envs.policies import apply_policies
from stacklab.envs.transitions import Journal

INTENT_FIELDS = (
    "desired",
    "reset_requested",
    "last_activity_at",
    "attempts",
    "next_attempt_at",
    "due_at",
    "away_at",
    "away_kind",
    "away_limit_s",
)
"""What the learner side writes; everything else of an environment is written under the lease only."""

_DECISIVE = frozenset({"desired", "reset_requested", "last_activity_at", "away_at", "away_kind"})


def snapshot(record: Any) -> dict[str, Any]:
    """The intent columns as this pass last read or wrote them: the base of a three-way merge."""
    return {name: getattr(record, name) for name in INTENT_FIELDS}


def merge_intent(journal: Journal, base: Mapping[str, Any], theirs: Mapping[str, Any]) -> bool:
    """Fold the other side's changes into the pass's record; True when the environment must be looked
    at again now (more than activity moved, or the policies now decide otherwise)."""
    record = journal.record
    changed = {name for name in INTENT_FIELDS if theirs[name] != base[name]}
    if not changed:
        return False
    decided = record.desired
    for name in changed:
        mine = getattr(record, name)
        value = max(mine, theirs[name]) if name == "last_activity_at" else theirs[name]
        setattr(record, name, value)
    if changed & _DECISIVE:
        # This save's policy decision was made on stale intent: make it again on the merged record.
        journal.entries = [entry for entry in journal.entries if entry.kind != "desired"]
        record.desired = theirs["desired"]
        apply_policies(journal)
    again = bool(changed - {"last_activity_at"}) or record.desired != decided
    if again:
        wake(journal)
    return again
