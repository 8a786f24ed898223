"""Which lab states close a lab's terminals, and with what words (stacklab.web.terminal_watch)."""

from __future__ import annotations

import pytest

from stacklab.types import Desired, Observed
from stacklab.web.terminal_watch import DELETED, FAILED, PAUSED, RESET, REVOKED, LabState, closing_reason


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (None, DELETED),  # the row is gone
        (LabState(Desired.RUNNING, Observed.RUNNING, False), None),
        (LabState(Desired.DELETED, Observed.RUNNING, False), DELETED),
        (LabState(Desired.RUNNING, Observed.DELETED, False), DELETED),
        (LabState(Desired.DELETED, Observed.RUNNING, True), DELETED),  # deleting wins over a reset
        (LabState(Desired.RUNNING, Observed.RUNNING, True), RESET),
        (LabState(Desired.RUNNING, Observed.NEW, False), RESET),  # the reset has already begun
        (LabState(Desired.RUNNING, Observed.CREATING, False), RESET),
        (LabState(Desired.SUSPENDED, Observed.RUNNING, False), PAUSED),
        (LabState(Desired.RUNNING, Observed.SUSPENDED, False), PAUSED),
        (LabState(Desired.RUNNING, Observed.FAILED, False), FAILED),
    ],
)
def test_closing_reason(state: LabState | None, reason: str | None) -> None:
    assert closing_reason(state) == reason


def test_every_reason_is_a_sentence_a_learner_reads() -> None:
    for reason in (DELETED, RESET, PAUSED, FAILED, REVOKED):
        assert reason.startswith("the lab ") and reason.isascii()
