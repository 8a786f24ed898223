"""The stacklab service API as the XBlock uses it: server-to-server calls signed with the LMS's secret."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass

import jwt

TOKEN_LIFETIME_S = 120
TIMEOUT_S = 3
"""Status, the lab list and pre-resume: reads the learner waits on, so a hung service must fail fast."""
OPEN_TIMEOUT_S = 10
"""Launch and observe: they write (the lab's text, the environment, its journal), and a service whose
database commits slowly under load may take a few seconds (with 3 s, a CI run of the suite, Galera and LXC
tests beside it, once left a unit without its lab). Meanwhile the unit says "Opening your lab...", and the
page's own bound on a handler (15 s, stacklab.js) is longer."""
CHECK_TIMEOUT_S = 30
"""Checks run scripts in the learner's machines: they may take longer than a launch."""


class ServiceError(Exception):
    """A call failed. `unreachable` when the service could not be reached or did not answer in time (vs. an
    answered error); `detail` and `request_id` come from the service's JSON error body, for staff and logs."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        unreachable: bool = False,
        detail: str = "",
        request_id: str = "",
        url: str = "",
        reason: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.unreachable = unreachable
        self.detail = detail
        self.request_id = request_id
        self.url = url
        self.reason = reason
        """The service's `reason` for some refusals (`UsageLimit`: `detail` is a sentence for the learner)."""


def _error_body(exc: urllib.error.HTTPError) -> dict:
    """The service's JSON error body (`detail`, `request_id`), or {} when the body is not JSON."""
    try:
        body = json.loads(exc.read())
    except (ValueError, OSError):
        return {}
    return body if isinstance(body, dict) else {}


@dataclass(frozen=True)
class ServiceConfig:
    url: str
    lms_key: str
    lms_secret: str

    def problems(self) -> list[str]:
        missing = [
            name
            for name, value in (
                ("service_url", self.url),
                ("lms_key", self.lms_key),
                ("lms_secret", self.lms_secret),
            )
            if not value
        ]
        return [f"the stacklab XBlock setting {name} is not configured" for name in missing]


class StacklabClient:
    def __init__(self, config: ServiceConfig, timeout_s: float = TIMEOUT_S) -> None:
        self.config = config
        self.timeout_s = timeout_s

    def server_token(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        claims = {
            "iss": self.config.lms_key,
            "iat": int(now),
            "exp": int(now) + TOKEN_LIFETIME_S,
            "jti": uuid.uuid4().hex,  # one use: the service refuses a replayed token
        }
        return jwt.encode(claims, self.config.lms_secret, algorithm="HS256")

    def _call(
        self, method: str, path: str, body: object | None = None, timeout_s: float | None = None
    ) -> object:
        url = self.config.url.rstrip("/") + path
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json", "Authorization": f"Bearer {self.server_token()}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout_s or self.timeout_s) as response:
                text = response.read()
        except urllib.error.HTTPError as exc:
            error = _error_body(exc)
            detail, request_id = str(error.get("detail", "")), str(error.get("request_id") or "")
            raise ServiceError(
                f"{method} {path}: HTTP {exc.code} {detail}".strip(),
                status=exc.code,
                detail=detail,
                request_id=request_id,
                url=url,
                reason=str(error.get("reason") or ""),
            ) from exc
        except (urllib.error.URLError, OSError) as exc:  # refused, or no answer in time (TimeoutError)
            raise ServiceError(
                f"the stacklab service is unreachable: {exc}", unreachable=True, url=url
            ) from exc
        return json.loads(text) if text else None

    def labs(self) -> list[dict]:
        return list(self._call("GET", "/api/v1/labs"))  # type: ignore[arg-type]

    def skipped_labs(self) -> list[dict]:
        """Lab files the service could not read, with their problems (for authors)."""
        return list(self._call("GET", "/api/v1/labs/skipped"))  # type: ignore[arg-type]

    def launch(self, course: str, lab: str, learner: str, node: str = "", read_only: bool = False) -> dict:
        """Launch or resume the learner's lab: its status, a learner token and the lab page's URL."""
        body: dict[str, object] = {"course": course, "lab": lab, "learner": learner}
        if node:
            body["node"] = node
        if read_only:
            body["read_only"] = True
        return dict(self._call("POST", "/api/v1/launch", body, timeout_s=OPEN_TIMEOUT_S))  # type: ignore[arg-type]

    def prepare(self, course: str, lab: str, learner: str) -> dict:
        """The unit is being rendered for this learner (pre-resume): a paused lab starts waking up now."""
        body = {"course": course, "lab": lab, "learner": learner}
        return dict(self._call("POST", "/api/v1/prepare", body))  # type: ignore[arg-type]

    def observe(self, course: str, lab: str, learner: str, node: str = "") -> dict:
        """A read-only view of a learner's existing lab (staff masquerade); HTTP 404 when there is none."""
        body: dict[str, object] = {"course": course, "lab": lab, "learner": learner}
        if node:
            body["node"] = node
        return dict(self._call("POST", "/api/v1/observe", body, timeout_s=OPEN_TIMEOUT_S))  # type: ignore[arg-type]

    def run_checks(self, env_id: str) -> dict:
        """Run the lab's checks now (as the LMS, for the learner whose environment this is)."""
        path = f"/api/v1/environments/{urllib.parse.quote(env_id, safe='')}/checks"
        return dict(self._call("POST", path, {}, timeout_s=CHECK_TIMEOUT_S))  # type: ignore[arg-type]

    def status(self, env_id: str) -> dict:
        """The environment's status (progress, ready, message), as the LMS sees it."""
        return dict(self._call("GET", f"/api/v1/environments/{urllib.parse.quote(env_id, safe='')}"))  # type: ignore[arg-type]

    def latest_checks(self, env_id: str) -> dict:
        """The latest results and the counted score (best or latest, as the lab says), without running checks."""
        path = f"/api/v1/environments/{urllib.parse.quote(env_id, safe='')}/checks"
        return dict(self._call("GET", path))  # type: ignore[arg-type]

    def course_environments(self, course: str) -> list[dict]:
        path = f"/api/v1/courses/{urllib.parse.quote(course, safe='')}/environments"
        return list(self._call("GET", path))  # type: ignore[arg-type]

    def grant_time(self, course: str, lab: str, learner: str, hours: float, reason: str, staff: str) -> dict:
        """Give a learner more running time under the lab's usage limit (course staff): their allowance after."""
        path = (
            f"/api/v1/courses/{urllib.parse.quote(course, safe='')}"
            f"/learners/{urllib.parse.quote(learner, safe='')}/grants"
        )
        body = {"lab": lab, "hours": hours, "reason": reason, "staff": staff}
        return dict(self._call("POST", path, body))  # type: ignore[arg-type]

    def staff_view(self, course: str, lab: str, staff: str) -> dict:
        """The course view for course staff: its URL with a short-lived staff token for this course."""
        path = f"/api/v1/courses/{urllib.parse.quote(course, safe='')}/staff-view"
        return dict(self._call("POST", path, {"lab": lab or None, "staff": staff}))  # type: ignore[arg-type]
