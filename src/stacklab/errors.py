"""One error tree for stacklab; third-party errors are converted at the boundary.

StacklabError
├── LabError                 a lab file is invalid (carries every problem found)
├── ConfigError              the service configuration is invalid
├── InvalidInput             a request's value has no acceptable form (a name, a node, a body)
├── NotFound                 an environment, lab or node does not exist
├── Conflict                 the request contradicts the current state
│   ├── LeaseLost            a pass ran past its lease and another took the environment over
│   └── UsageLimitReached    the learner has used the lab time a `block` usage limit allows
├── TokenError               a token is missing, malformed, forged, expired, revoked or replayed
├── Refused                  a request is refused with a status (a websocket close code, an HTTP status)
├── AccessError              SSH to a node failed (unreachable, auth, timeout)
└── ProviderError            a provider failed a step
    ├── TransientProviderError   worth retrying later (busy, unreachable, timeout)
    ├── CapacityExhausted        this provider is full: try the next one
    └── TerminalProviderError    retrying the same request will not help
"""

from __future__ import annotations


class StacklabError(Exception):
    """Root of every error stacklab raises on purpose."""


class ConfigError(StacklabError):
    """The service configuration is invalid."""


class InvalidInput(StacklabError):
    """A value in a request (a learner, course, node, body field) does not have an acceptable form."""


class TokenError(StacklabError):
    """The token is missing, malformed, tampered with, expired, revoked, replayed or for something else."""


class Refused(StacklabError):
    """A request refused with a status code that the boundary (HTTP or websocket) passes on as it is."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class NotFound(StacklabError):
    """The named object does not exist."""


class Conflict(StacklabError):
    """The request contradicts the current state."""


class LeaseLost(Conflict):
    """A pass found its lease taken over (it ran past lease_s): it drops its outcome, the holder decides."""


class UsageLimitReached(Conflict):
    """A start or resume refused: the learner is past a `block` usage limit (the message is for them)."""


class AccessError(StacklabError):
    """Reaching a node over SSH failed."""


class LabError(StacklabError):
    """A lab file is invalid; `problems` holds one `FILE:LINE: field: problem` line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class ProviderError(StacklabError):
    """A provider failed a step; `reason` is a short machine-friendly code."""

    reason = "ProviderError"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason:
            self.reason = reason


class TransientProviderError(ProviderError):
    """Worth retrying later with backoff."""

    reason = "ProviderUnavailable"


class CapacityExhausted(ProviderError):
    """The provider has no room; the next provider in the lab's list should be used."""

    reason = "CapacityExhausted"


class TerminalProviderError(ProviderError):
    """The same request will fail again; fail over or stop."""

    reason = "ProviderFailed"
