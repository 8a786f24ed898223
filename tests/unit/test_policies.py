"""The policies: idle running labs are suspended, labs inactive past their age are deleted."""

from __future__ import annotations

from stacklab.envs.policies import apply_policies, policy_deadline
from stacklab.envs.transitions import Journal
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Desired, Observed

NOW = 1_800_000_000.0
IDLE_S, DELETE_S = 600.0, 86400.0


def environment(desired: str, observed: str, idle_for: float) -> EnvironmentRecord:
    return EnvironmentRecord(
        id="0000beef",
        desired=desired,
        observed=observed,
        last_activity_at=NOW - idle_for,
        idle_suspend_s=IDLE_S,
        delete_after_s=DELETE_S,
    )


def decide(record: EnvironmentRecord) -> list[tuple[str, str]]:
    journal = Journal(record, NOW)
    apply_policies(journal)
    return [(entry.to_state, entry.reason) for entry in journal.entries]


def test_a_running_lab_idle_past_its_limit_is_suspended_with_the_reason() -> None:
    record = environment(Desired.RUNNING, Observed.RUNNING, IDLE_S)
    assert decide(record) == [(Desired.SUSPENDED, "Idle")]
    assert record.desired == Desired.SUSPENDED


def test_an_active_lab_is_left_alone() -> None:
    assert decide(environment(Desired.RUNNING, Observed.RUNNING, IDLE_S - 1)) == []


def test_idleness_only_suspends_a_lab_that_runs() -> None:
    """A lab still being created has no learner yet: its launch timeout governs it, not idleness."""
    assert decide(environment(Desired.RUNNING, Observed.CREATING, IDLE_S * 2)) == []


def test_a_lab_inactive_past_its_age_is_deleted_even_when_suspended() -> None:
    record = environment(Desired.SUSPENDED, Observed.SUSPENDED, DELETE_S)
    assert decide(record) == [(Desired.DELETED, "Expired")]


def test_a_deleted_lab_stays_deleted_and_has_no_deadline() -> None:
    record = environment(Desired.DELETED, Observed.DELETED, DELETE_S * 3)
    assert decide(record) == []
    assert policy_deadline(record) is None


def test_the_next_deadline_is_the_earlier_of_idle_and_age_for_a_running_lab() -> None:
    running = environment(Desired.RUNNING, Observed.RUNNING, 0)
    assert policy_deadline(running) == NOW + IDLE_S
    suspended = environment(Desired.SUSPENDED, Observed.SUSPENDED, 0)
    assert policy_deadline(suspended) == NOW + DELETE_S
