"""What learners and staff read when the service refuses or fails (messages.py), without a runtime."""

from __future__ import annotations

import re

import pytest
from stacklab_xblock.client import ServiceError
from stacklab_xblock.messages import describe, time_used

HTTP_STATUS = re.compile(r"HTTP|\b[45]\d\d\b")


@pytest.mark.parametrize(
    ("status", "checking", "sentence"),
    [
        (404, False, "This lab is not available right now; tell your course staff."),
        (404, True, "Your lab could not be found"),
        (422, False, "learners may not use"),
        (401, False, "could not sign you in"),
        (403, False, "may not use the lab service"),
        (500, True, "had a problem"),
        (None, False, "not answering"),
    ],
)
def test_learners_get_a_sentence_with_a_next_step_and_no_status(
    status: int | None, checking: bool, sentence: str
) -> None:
    exc = ServiceError(
        f"POST /api/v1/launch: HTTP {status} raw detail",
        status=status,
        unreachable=status is None,
        detail="raw detail",
        request_id="abc123",
        url="http://svc/api/v1/launch",
    )
    words = describe(exc, staff=False, checking=checking).as_json()
    assert sentence in words["error"] and not HTTP_STATUS.search(words["error"])
    assert "gone" not in words["error"] and "staff_detail" not in words


def test_a_lab_still_starting_is_progress_not_an_error_and_staff_see_the_request_id() -> None:
    exc = ServiceError(
        "x", status=409, detail="environment e1 is creating", request_id="r-9", url="http://s/c"
    )
    words = describe(exc, staff=True, checking=True).as_json()
    assert "error" not in words and words["starting"].startswith("Your lab is still starting")
    assert "http://s/c: HTTP 409 environment e1 is creating (request id r-9)" in words["staff_detail"]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (4320, "1 h 12 min"),
        (7200, "2 h"),
        (7259.9, "2 h"),
        (600, "10 min"),
        (0, "0 min"),
        (12.5, "under 1 min"),
        (None, "unknown"),
        ("12", "unknown"),
    ],
)
def test_time_used_reads_as_hours_and_minutes(seconds: object, text: str) -> None:
    assert time_used(seconds) == text


def test_a_usage_limit_refusal_is_the_services_sentence_for_the_learner() -> None:
    sentence = "You have used all 10h of lab time on this lab this week. Ask your course staff for more."
    exc = ServiceError(
        "x", status=409, detail=sentence, request_id="r-1", url="http://s/l", reason="UsageLimit"
    )
    for staff in (False, True):
        assert describe(exc, staff=staff).as_json() == {"error": sentence}  # not "still starting"
