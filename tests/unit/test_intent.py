"""The three-way merge a controller save does when the learner side wrote during the pass."""

from __future__ import annotations

from stacklab.envs.intent import merge_intent, snapshot
from stacklab.envs.policies import apply_policies
from stacklab.envs.transitions import Journal
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Desired, Observed

NOW = 1_800_000_000.0


def running_lab(idle_for: float) -> EnvironmentRecord:
    return EnvironmentRecord(
        id="0000cafe",
        desired=Desired.RUNNING,
        observed=Observed.RUNNING,
        reset_requested=False,
        last_activity_at=NOW - idle_for,
        idle_suspend_s=600.0,
        delete_after_s=86400.0,
        attempts=0,
        next_attempt_at=None,
        due_at=NOW,
    )


def test_nothing_changed_elsewhere_keeps_the_pass_decision() -> None:
    journal = Journal(running_lab(idle_for=700), NOW)
    base = snapshot(journal.record)
    apply_policies(journal)
    assert merge_intent(journal, base, dict(base)) is False
    assert journal.record.desired == Desired.SUSPENDED
    assert [entry.reason for entry in journal.entries] == ["Idle"]


def test_a_keystroke_during_the_pass_undoes_its_idle_decision() -> None:
    journal = Journal(running_lab(idle_for=700), NOW)
    base = snapshot(journal.record)
    apply_policies(journal)  # idle: this pass would suspend
    theirs = {**base, "last_activity_at": NOW - 1}  # the learner typed meanwhile
    assert merge_intent(journal, base, theirs) is True
    assert journal.record.desired == Desired.RUNNING
    assert journal.record.last_activity_at == NOW - 1
    assert journal.entries == []  # no "Idle" transition recorded for a lab that is in use


def test_activity_alone_is_merged_without_a_new_pass() -> None:
    journal = Journal(running_lab(idle_for=10), NOW)
    base = snapshot(journal.record)
    assert merge_intent(journal, base, {**base, "last_activity_at": NOW}) is False
    assert journal.record.last_activity_at == NOW


def test_a_request_made_during_the_pass_wins_and_makes_the_lab_due_now() -> None:
    record = running_lab(idle_for=10)
    record.attempts, record.due_at = 2, NOW + 300
    journal = Journal(record, NOW)
    base = snapshot(record)
    theirs = {**base, "desired": Desired.DELETED, "attempts": 0, "due_at": NOW - 5}
    assert merge_intent(journal, base, theirs) is True
    assert (record.desired, record.attempts, record.due_at) == (Desired.DELETED, 0, NOW)


def test_the_pass_keeps_what_only_it_changed() -> None:
    record = running_lab(idle_for=10)
    journal = Journal(record, NOW)
    base = snapshot(record)
    record.attempts, record.next_attempt_at = 1, NOW + 5  # this pass's failed attempt
    assert merge_intent(journal, base, {**base, "last_activity_at": NOW}) is False
    assert (record.attempts, record.next_attempt_at) == (1, NOW + 5)
