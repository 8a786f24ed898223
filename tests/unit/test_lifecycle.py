"""The named changes of an environment's life: each leaves the columns its state implies."""

from __future__ import annotations

from stacklab.envs import lifecycle
from stacklab.envs.idleness import Away
from stacklab.envs.transitions import Journal
from stacklab.events import HOST_LOST, HOST_RETURNED
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Desired, Observed, Progress

NOW = 1_800_000_000.0


def lab(desired: Desired = Desired.RUNNING, observed: Observed = Observed.CREATING) -> Journal:
    record = EnvironmentRecord(
        id="0000cafe",
        desired=desired,
        observed=observed,
        progress=Progress.BOOTING,
        attempts=2,
        next_attempt_at=NOW + 60,
        due_at=NOW + 60,
        last_reason="ProviderUnavailable",
        last_error="503",
        failed_providers=["heat"],
        step_started_at=NOW - 30,
        away_kind=None,
        away_at=None,
    )
    return Journal(record, NOW)


def transitions(journal: Journal) -> list[tuple[str, str, str, str]]:
    return [(e.kind, e.from_state, e.to_state, e.reason) for e in journal.entries]


def intent(journal: Journal) -> tuple[object, ...]:
    record = journal.record
    return record.desired, record.attempts, record.next_attempt_at, record.due_at


def test_a_woken_lab_is_due_now_or_after_the_delay() -> None:
    journal = lab()
    lifecycle.wake(journal)
    assert journal.record.due_at == NOW
    lifecycle.wake(journal, 5.0)
    assert journal.record.due_at == NOW + 5.0
    assert journal.entries == []


def test_a_pending_retry_makes_the_lab_due_when_it_is() -> None:
    journal = lab()
    journal.record.due_at = None
    lifecycle.await_retry(journal.record)
    assert journal.record.due_at == NOW + 60


def test_a_settled_lab_rests_until_its_deadline_with_no_retry_pending() -> None:
    journal = lab()
    lifecycle.rest_until(journal.record, NOW + 600)
    assert (journal.record.due_at, journal.record.next_attempt_at) == (NOW + 600, None)


def test_a_request_to_run_forgets_earlier_failures_and_is_due_now() -> None:
    journal = lab(desired=Desired.SUSPENDED, observed=Observed.SUSPENDED)
    lifecycle.request(journal, Desired.RUNNING, "Launch")
    assert intent(journal) == (Desired.RUNNING, 0, None, NOW)
    assert transitions(journal) == [("desired", Desired.SUSPENDED, Desired.RUNNING, "Launch")]


def test_a_request_to_pause_keeps_the_count_but_not_the_backoff() -> None:
    journal = lab(observed=Observed.RUNNING)
    lifecycle.request(journal, Desired.SUSPENDED, "Requested")
    assert intent(journal) == (Desired.SUSPENDED, 2, None, NOW)


def test_a_retry_counts_the_attempt_keeps_the_state_and_records_why() -> None:
    journal = lab()
    lifecycle.retry_later(journal, "ProviderTimeout", "no answer", 30.0)
    record = journal.record
    assert (record.observed, record.attempts, record.next_attempt_at) == (Observed.CREATING, 3, NOW + 30)
    assert (record.last_reason, record.last_error) == ("ProviderTimeout", "no answer")
    assert transitions(journal) == [("retry", Observed.CREATING, Observed.CREATING, "ProviderTimeout")]


def test_a_failure_is_observed_with_its_reason_and_retried_only_when_asked() -> None:
    journal = lab()
    lifecycle.fail(journal, "CreateFailed", "the stack failed", None)
    record = journal.record
    assert (record.observed, record.progress, record.attempts) == (Observed.FAILED, Progress.FAILED, 3)
    assert (record.last_reason, record.last_error) == ("CreateFailed", "the stack failed")
    assert record.next_attempt_at == NOW + 60  # no new retry scheduled
    assert transitions(journal) == [("observed", Observed.CREATING, Observed.FAILED, "CreateFailed")]

    again = lab()
    lifecycle.fail(again, "CreateFailed", "the stack failed", 120.0)
    assert again.record.next_attempt_at == NOW + 120


def test_a_ready_lab_has_no_step_failure_or_backoff_left() -> None:
    journal = lab()
    lifecycle.mark_ready(journal, "Ready", "all nodes answer SSH")
    record = journal.record
    assert (record.observed, record.progress, record.ready_at) == (Observed.RUNNING, Progress.READY, NOW)
    assert (record.attempts, record.next_attempt_at, record.step_started_at) == (0, None, None)
    assert (record.failed_providers, record.last_reason, record.last_error) == (None, None, None)
    assert record.away_at is None
    assert transitions(journal) == [("observed", Observed.CREATING, Observed.RUNNING, "Ready")]


def test_a_pre_resumed_lab_counts_its_short_limit_from_when_it_is_ready() -> None:
    journal = lab(observed=Observed.SUSPENDED)
    journal.record.away_kind, journal.record.away_at = Away.PRERESUME, NOW - 20
    lifecycle.mark_ready(journal, "Resumed", "")
    assert (journal.record.away_kind, journal.record.away_at) == (Away.PRERESUME, NOW)


def test_a_suspended_lab_keeps_no_away_marker() -> None:
    journal = lab(desired=Desired.SUSPENDED, observed=Observed.RUNNING)
    journal.record.away_kind, journal.record.away_at, journal.record.away_limit_s = Away.HIDDEN, NOW, 60.0
    lifecycle.mark_suspended(journal)
    record = journal.record
    assert (record.observed, record.progress, record.suspended_at) == (
        Observed.SUSPENDED,
        Progress.SUSPENDED,
        NOW,
    )
    assert (record.away_kind, record.away_at) == (None, None)
    assert transitions(journal) == [("observed", Observed.RUNNING, Observed.SUSPENDED, "Suspended")]


def test_a_deleted_lab_starts_a_later_launch_with_no_failures_counted() -> None:
    journal = lab(desired=Desired.DELETED, observed=Observed.FAILED)
    lifecycle.mark_deleted(journal)
    record = journal.record
    assert (record.observed, record.progress, record.attempts) == (Observed.DELETED, Progress.DELETED, 0)
    assert transitions(journal) == [("observed", Observed.FAILED, Observed.DELETED, "Deleted")]


def test_a_lab_lost_with_its_host_fails_without_counting_an_attempt_and_is_due_never() -> None:
    journal = lab(observed=Observed.RUNNING)
    lifecycle.lose_with_host(journal, "host b was lost")
    record = journal.record
    assert (record.observed, record.progress, record.attempts) == (Observed.FAILED, Progress.FAILED, 2)
    assert (record.last_reason, record.last_error) == (HOST_LOST, "host b was lost")
    assert (record.next_attempt_at, record.due_at) == (None, None)
    assert transitions(journal) == [("observed", Observed.RUNNING, Observed.FAILED, HOST_LOST)]


def test_a_lab_taken_back_by_its_host_forgets_the_loss_and_is_due_now() -> None:
    journal = lab(observed=Observed.FAILED)
    lifecycle.lose_with_host(journal, "host b was lost")
    journal.entries.clear()
    lifecycle.take_back(journal, Observed.SUSPENDED, Progress.SUSPENDED, "host b came back")
    record = journal.record
    assert (record.observed, record.progress, record.due_at) == (Observed.SUSPENDED, Progress.SUSPENDED, NOW)
    assert (record.last_reason, record.last_error, record.attempts) == (None, None, 2)
    assert transitions(journal) == [("observed", Observed.FAILED, Observed.SUSPENDED, HOST_RETURNED)]
