"""Words for people: what a learner reads when the lab service refuses or fails, and what staff see besides.

Learners get a plain sentence with a next step (wait, retry, tell the course staff), never an HTTP status or
the service's own text; staff additionally see which setting or URL failed and the service's request id, so
that the service's log lines for the failure can be found.
"""

from __future__ import annotations

from dataclasses import dataclass

from stacklab_xblock.client import ServiceError

NOT_ANSWERING = (
    "The lab service is not answering right now, so your lab cannot open. Try again in a minute; "
    "if this persists, tell your course staff."
)
UNKNOWN_LAB = "This lab is not available right now; tell your course staff."
BAD_NODE = "This unit opens a part of the lab that learners may not use; tell your course staff."
SIGN_IN = (
    "The course could not sign you in to the lab. Reload the page; if this persists, tell your course staff."
)
NOT_ALLOWED = "This course may not use the lab service yet; tell your course staff."
STILL_STARTING = "Your lab is still starting. Wait a moment, then check again."
LAB_MISSING = "Your lab could not be found. Reload the page to open it again."
SERVICE_TROUBLE = (
    "The lab service had a problem. Try again in a minute; if this persists, tell your course staff."
)


@dataclass(frozen=True)
class Words:
    """A failure in words: `text` for everyone, `staff` (empty for learners) naming what failed."""

    text: str
    staff: str = ""
    starting: bool = False
    """True when the lab is merely still starting: shown as progress, not as an error."""

    def as_json(self) -> dict:
        out: dict = {"error": self.text} if not self.starting else {"starting": self.text}
        if self.staff:
            out["staff_detail"] = self.staff
        return out


def _learner_text(exc: ServiceError, checking: bool) -> tuple[str, str]:
    """The learner's sentence and the setting staff should look at, by what the service answered."""
    if exc.unreachable:
        return NOT_ANSWERING, "setting service_url"
    by_status = {
        401: (SIGN_IN, "settings lms_key and lms_secret"),
        403: (NOT_ALLOWED, "setting lms_key (the service's lms_keys courses)"),
        404: (
            LAB_MISSING if checking else UNKNOWN_LAB,
            "unit setting lab" if not checking else "environment",
        ),
        409: (STILL_STARTING, "environment"),
        422: (BAD_NODE, "unit setting node"),
    }
    return by_status.get(exc.status or 0, (SERVICE_TROUBLE, "service"))


def describe(exc: ServiceError, staff: bool, checking: bool = False) -> Words:
    """`exc` in words; `checking` when the lab existed (a check) rather than being opened."""
    if exc.reason == "UsageLimit" and exc.detail:  # the service's sentence is written for the learner
        return Words(exc.detail)
    text, setting = _learner_text(exc, checking)
    detail = ""
    if staff:
        status = f"HTTP {exc.status}" if exc.status else "no answer"
        detail = f"Staff: {setting} failed — {exc.url or 'the service'}: {status}"
        detail += f" {exc.detail}" if exc.detail else ""
        detail += f" (request id {exc.request_id})" if exc.request_id else ""
    return Words(text, detail, starting=exc.status == 409)


def time_used(seconds: object) -> str:
    """A lab's running time for staff ("1 h 12 min"); "unknown" when the service does not say (an older
    service without `running_s`)."""
    if not isinstance(seconds, int | float) or seconds < 0:
        return "unknown"
    if 0 < seconds < 60:
        return "under 1 min"
    hours, minutes = divmod(int(seconds // 60), 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
