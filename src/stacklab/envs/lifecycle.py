"""The changes of an environment's life, each named as an operator would say it.

Each function writes the columns that belong together (a failure: the attempt, its reason and message,
the observed state and its transition), so that no caller has to remember which ones they are. They
change the record and its journal only: saving stays with the controller (compare-and-set) and the
learner side.
"""

from __future__ import annotations

from stacklab.envs.idleness import Away, clear_away
from stacklab.envs.transitions import Journal
from stacklab.events import HOST_LOST, HOST_RETURNED
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Desired, Observed, Progress


def wake(journal: Journal, after: float = 0.0) -> None:
    """Due `after` seconds from now: the next pass from any runner looks at it then."""
    journal.record.due_at = journal.now + after


def await_retry(record: EnvironmentRecord) -> None:
    """A retry is pending: due when it is."""
    record.due_at = record.next_attempt_at


def rest_until(record: EnvironmentRecord, deadline: float | None) -> None:
    """Settled, with no retry pending: due at the next policy deadline (None: never)."""
    record.next_attempt_at = None
    record.due_at = deadline


def forgive(record: EnvironmentRecord) -> None:
    """Earlier failures no longer count: a new try gets the whole backoff again."""
    record.attempts = 0
    record.next_attempt_at = None


def request(journal: Journal, desired: Desired, reason: str) -> None:
    """Someone asked for a state: recorded, no backoff in its way, due now. Asking it to run also
    forgets the failures of earlier tries."""
    journal.desire(desired, reason)
    if desired == Desired.RUNNING:
        forgive(journal.record)
    else:
        journal.record.next_attempt_at = None
    wake(journal)


def count_error(record: EnvironmentRecord, reason: str, message: str) -> None:
    """An attempt that went wrong: counted, its reason and message kept for the operator."""
    record.attempts += 1
    record.last_reason = reason
    record.last_error = message


def retry_later(journal: Journal, reason: str, message: str, delay: float) -> None:
    """A transient error: the state stays, the same step is tried again after `delay` seconds."""
    record = journal.record
    count_error(record, reason, message)
    record.next_attempt_at = journal.now + delay
    journal.note("retry", record.observed, reason, message)


def fail(journal: Journal, reason: str, message: str, retry_after: float | None) -> None:
    """Observed `failed` with its reason; tried again after `retry_after` seconds (None: no more)."""
    count_error(journal.record, reason, message)
    journal.observe(Observed.FAILED, reason, message, Progress.FAILED)
    if retry_after is not None:
        journal.record.next_attempt_at = journal.now + retry_after


def mark_ready(journal: Journal, reason: str, message: str) -> None:
    """Running and answering: the step and the failures that led here are over."""
    record = journal.record
    record.ready_at = journal.now
    record.step_started_at = None
    forgive(record)
    record.failed_providers = None
    record.last_error = None
    record.last_reason = None
    if record.away_kind == Away.PRERESUME:  # a pre-resumed lab's short limit counts from when it is ready
        record.away_at = journal.now
    journal.observe(Observed.RUNNING, reason, message, Progress.READY)


def mark_suspended(journal: Journal) -> None:
    """Paused at the provider; the away marker was used by this pause, so the next wake decides afresh."""
    journal.record.suspended_at = journal.now
    clear_away(journal.record)
    journal.observe(Observed.SUSPENDED, "Suspended", "", Progress.SUSPENDED)


def lose_with_host(journal: Journal, message: str) -> None:
    """Failed because its local host was lost (HOST_LOST): no attempt of its own went wrong, so none is
    counted; no pass looks at it again (nothing due, no retry) until someone asks for it."""
    record = journal.record
    record.last_reason, record.last_error = HOST_LOST, message
    rest_until(record, None)
    journal.observe(Observed.FAILED, HOST_LOST, message, Progress.FAILED)


def take_back(journal: Journal, state: Observed, progress: Progress, message: str) -> None:
    """Its lost host came back with its stack (HOST_RETURNED): the lab is what the stack is, the loss
    forgotten, and a pass looks at it at once (policies, a resume the learner asked for)."""
    journal.record.last_reason = journal.record.last_error = None
    wake(journal)
    journal.observe(state, HOST_RETURNED, message, progress)


def mark_deleted(journal: Journal) -> None:
    """Gone at the provider; a launch after this starts with no failures counted."""
    journal.record.attempts = 0
    journal.observe(Observed.DELETED, "Deleted", "", Progress.DELETED)
