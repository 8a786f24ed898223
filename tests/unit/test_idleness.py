"""Idleness (envs/idleness.py): away markers bring a running lab's idle deadline forward, with a reason."""

from __future__ import annotations

from stacklab.envs.idleness import PAGE_KINDS, Away, clear_away, idle_deadline, idle_reason, mark_away
from stacklab.envs.policies import apply_policies, policy_deadline
from stacklab.envs.transitions import Journal
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Desired, Observed

NOW = 1_800_000_000.0
IDLE_S = 900.0


def running(idle_for: float = 0.0) -> EnvironmentRecord:
    return EnvironmentRecord(
        id="0000cafe",
        desired=Desired.RUNNING,
        observed=Observed.RUNNING,
        last_activity_at=NOW - idle_for,
        idle_suspend_s=IDLE_S,
        delete_after_s=86400.0,
        due_at=NOW + 3600,
    )


def test_without_a_marker_the_deadline_is_the_idle_limit_after_activity() -> None:
    record = running(idle_for=100)
    assert idle_deadline(record) == NOW - 100 + IDLE_S
    assert idle_reason(record, NOW)[0] == "Idle"


def test_a_marker_brings_the_deadline_forward_and_makes_it_due() -> None:
    record = running()
    assert mark_away(record, Away.CLOSED, NOW, 45.0)
    assert idle_deadline(record) == policy_deadline(record) == record.due_at == NOW + 45
    journal = Journal(record, NOW + 45)
    apply_policies(journal)
    assert [(e.to_state, e.reason) for e in journal.entries] == [(Desired.SUSPENDED, "PageClosed")]
    assert "closed 45s ago" in journal.entries[0].message


def test_a_marker_never_lengthens_the_idle_limit() -> None:
    record = running(idle_for=IDLE_S - 10)
    mark_away(record, Away.HIDDEN, NOW, 300.0)
    assert idle_deadline(record) == NOW + 10
    assert idle_reason(record, NOW + 10)[0] == "Idle"


def test_hiding_the_page_keeps_a_sooner_pre_resume_deadline() -> None:
    record = running()
    mark_away(record, Away.PRERESUME, NOW, 60.0)
    assert not mark_away(record, Away.HIDDEN, NOW + 1, 300.0)
    assert record.away_kind == Away.PRERESUME
    assert mark_away(record, Away.CLOSED, NOW + 2, 30.0)  # a closed page replaces it


def test_a_page_that_opens_ends_the_page_markers_but_not_a_pre_resume() -> None:
    record = running()
    mark_away(record, Away.PRERESUME, NOW, 60.0)
    assert not clear_away(record, PAGE_KINDS)
    assert record.away_kind == Away.PRERESUME
    assert clear_away(record)  # activity
    assert (record.away_at, record.away_kind, record.away_limit_s) == (None, None, None)
