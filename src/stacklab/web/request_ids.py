"""A request id for every HTTP request, so that a learner's screenshot of an error finds its log lines.

An incoming `X-Request-ID` is kept when it is well-formed (a proxy's or the LMS's id), else one is made.
It is bound to the log context (with the environment a path names), returned in the `X-Request-ID`
response header and put in JSON error bodies by the app's error handlers (`current_request_id`). Plain
ASGI, like SecurityHeaders: a BaseHTTPMiddleware costs about a millisecond a request.
"""

from __future__ import annotations

import json
import logging
import re
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stacklab import logs

log = logging.getLogger(__name__)
HEADER = b"x-request-id"
WELL_FORMED = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9._:+/=-]{0,127}"
)  # no spaces, quotes or newlines to forge lines
# /api/v1/environments/ID..., /api/v1/admin/environments/ID..., /lab/ID
ENV_PATH = re.compile(r"/(?:api/v1/(?:admin/)?environments|lab)/([A-Za-z0-9_-]{1,64})(?:/|$)")


def current_request_id() -> str | None:
    """The id of the request being handled (None outside one)."""
    return logs.current("request_id")


def _incoming(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == HEADER:
            text = value.decode("latin-1")
            return text if WELL_FORMED.fullmatch(text) else None
    return None


class RequestIds:
    """Binds `request_id` (and `env_id`) for the request's log lines; answers an unhandled error with a
    JSON 500 that carries the id, logging the traceback under it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming(scope) or secrets.token_hex(8)
        env = ENV_PATH.match(scope["path"])
        token = logs.bind(request_id=request_id, **({"env_id": env.group(1)} if env else {}))
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), (HEADER, request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if started:  # too late for a body of ours: the server closes the connection and logs it
                raise
            log.exception("request failed: %s %s", scope["method"], scope["path"])
            await _internal_error(send_with_id, request_id)
        finally:
            logs.unbind(token)


async def _internal_error(send: Send, request_id: str) -> None:
    body = json.dumps({"detail": "internal error", "request_id": request_id}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
