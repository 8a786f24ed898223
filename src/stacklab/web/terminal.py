"""The terminal websocket: `GET /api/v1/environments/{env}/terminal/{node}` bridged to a shell over SSH.

Protocol: docs/web-protocol.md, "Terminal websocket". Binary frames carry terminal bytes both ways; text
frames carry JSON control messages. The server refuses with close codes 4401 (bad or expired token), 4403
(other learner, foreign Origin), 4404 (unknown environment or node, or a node the learner may not open)
and 4409 (environment not running), each after a `{"type": "error"}` message saying why.

Server -> client, beyond the protocol's minimum: `ready` also carries `session` (the id in use: the one the
client sent, or a new one when it sent none); `{"type": "pong"}` answers `ping`. A session ends with
`{"type": "closed", "reason": ...}` and close code 1000 (shell exited, environment stopped, opened in
another tab, kept too long); close code 1011 when the node cannot be reached.

Serve it with websocket compression off (uvicorn `ws_per_message_deflate=False`): it costs more than it
saves on terminal output. The data path does no decoding and no formatting.

The endpoint is plain ASGI (`TerminalSockets`), ahead of FastAPI's routing: a terminal stays open for
hours, and every framework layer would keep its coroutine frames and per-request objects alive as long
(about 14 KiB per open terminal with FastAPI's websocket route).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stacklab.access.ssh import Target
from stacklab.access.terminal import (
    MANAGER,
    Attachment,
    SessionKey,
    TerminalSession,
    close_sessions,
    new_session_id,
    open_terminals,
    shutdown_terminals,
)
from stacklab.errors import AccessError, NotFound, Refused
from stacklab.types import Observed
from stacklab.web.context import WebContext
from stacklab.errors import TokenError
from stacklab.web.tokens import Claims, allows

__all__ = ["TerminalSockets", "close_sessions", "open_terminals", "shutdown_terminals"]

log = logging.getLogger(__name__)

PATH = re.compile(r"^/api/v1/environments/(?P<env>[^/]+)/terminal/(?P<node>[^/]+)$")
SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_COLS, MAX_ROWS = 1000, 500

CLOSE_NORMAL = 1000
CLOSE_UNREACHABLE = 1011
CLOSE_BAD_TOKEN = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_NOT_RUNNING = 4409


class Socket:
    """The few websocket operations the bridge needs, on raw ASGI messages."""

    __slots__ = ("receive", "send")

    def __init__(self, receive: Receive, send: Send) -> None:
        self.receive = receive
        self.send = send

    async def send_json(self, message: dict[str, object]) -> None:
        await self.send({"type": "websocket.send", "text": json.dumps(message)})

    async def close(self, code: int, reason: str) -> None:
        await self.send({"type": "websocket.close", "code": code, "reason": reason[:120]})


@dataclass(frozen=True)
class Admission:
    """What a websocket may open: the session key, the PTY size, the client's offset."""

    claims: Claims
    key: SessionKey
    cols: int
    rows: int
    offset: int


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        return min(max(int(value), low), high) if value is not None else default
    except ValueError:
        return default


def _admit(ctx: WebContext, scope: Scope, env_id: str, node: str) -> tuple[Admission, Callable[[], Target]]:
    """Check origin, token, environment and node; returns the admission and how to reach the node."""
    headers = {name: value.decode("latin-1") for name, value in scope["headers"]}
    origin = headers.get(b"origin")
    if origin is not None and origin.rstrip("/") not in ctx.allowed_origins(headers.get(b"host")):
        raise Refused(CLOSE_FORBIDDEN, "this page's origin may not open terminals")
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
    try:
        claims = ctx.signer.verify(query.get("token"))
    except TokenError as exc:
        raise Refused(CLOSE_BAD_TOKEN, str(exc)) from exc
    if not allows(claims, env_id):
        raise Refused(CLOSE_FORBIDDEN, "this token does not grant access to that environment")
    stack = ctx.stack
    try:
        record = stack.environments.resolve(env_id)
    except NotFound as exc:
        raise Refused(CLOSE_NOT_FOUND, "no such environment") from exc
    if record.observed != Observed.RUNNING:
        raise Refused(
            CLOSE_NOT_RUNNING,
            f"the environment is {record.observed} ({record.progress}), not running: resume it first",
        )
    lab = stack.environments.lab_of(record)
    allowed = set(record.nodes or {})
    if claims.role == "learner":
        allowed &= set(lab.learner_nodes)
    if node not in allowed:
        raise Refused(CLOSE_NOT_FOUND, f"no node {node!r} to open in this environment")
    session_id = query.get("session") or new_session_id()
    if not SESSION_ID.match(session_id):
        raise Refused(CLOSE_NOT_FOUND, "the session id must be 1-64 letters, digits, _ or -")
    admission = Admission(
        claims,
        SessionKey(record.id, node, f"{claims.role}:{claims.subject}", session_id),
        _int(query.get("cols"), 80, 1, MAX_COLS),
        _int(query.get("rows"), 24, 1, MAX_ROWS),
        _int(query.get("offset"), 0, 0, 1 << 62),
    )

    def target() -> Target:  # decrypts the key, and only when a new shell is needed
        return stack.controller.targets(record, lab)[node]

    return admission, target


class TerminalSockets:
    """ASGI: terminal websockets are served here; everything else goes on to `app` (404 without one)."""

    def __init__(self, app: ASGIApp | None, ctx: WebContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = PATH.match(scope["path"]) if scope["type"] == "websocket" else None
        if match is not None:
            await self._serve(scope, receive, send, match["env"], match["node"])
        elif self.app is not None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": CLOSE_NOT_FOUND, "reason": "not found"})
        elif scope["type"] == "http":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"not found"})

    async def _serve(self, scope: Scope, receive: Receive, send: Send, env_id: str, node: str) -> None:
        ws = Socket(receive, send)
        if (await receive())["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        try:
            attached = await self._attach(scope, env_id, node)
        except Refused as refused:
            await _refuse(ws, refused.code, refused.message)
            return
        await _bridge(ws, *attached, self.ctx.stack.settings.terminal_keep_s)

    async def _attach(self, scope: Scope, env_id: str, node: str) -> tuple[TerminalSession, Attachment, str]:
        """Admit the client, then find or open its shell (or the shell it watches); returns the session,
        the attachment and the client's session id. The environment record is not kept after this."""
        stack = self.ctx.stack
        settings = stack.settings
        admission, target = _admit(self.ctx, scope, env_id, node)
        key = admission.key
        if admission.claims.read_only:  # staff watching a learner: their live shell, when there is one
            watched = MANAGER.watchable(key.env_id, node)
            if watched is not None:
                return watched, watched.watch(admission.offset), key.session_id

        def activity() -> None:
            stack.environments.touch(key.env_id)

        try:
            session, new = await MANAGER.open(
                key,
                target,
                admission.cols,
                admission.rows,
                connect_timeout_s=settings.ssh_connect_timeout_s,
                activity=activity,
                activity_throttle_s=settings.activity_throttle_s,
            )
        except AccessError as exc:
            log.warning(
                "terminal: node unreachable", extra={"env_id": key.env_id, "node": node, "error": str(exc)}
            )
            raise Refused(
                CLOSE_UNREACHABLE, f"cannot reach node {node} right now; try again in a moment"
            ) from exc
        if session.closed is not None:
            raise Refused(CLOSE_UNREACHABLE, f"the shell on {node} closed: {session.closed}")
        attachment = session.attach(
            0 if new else admission.offset,
            read_only=admission.claims.read_only,
            cols=0 if new else admission.cols,
            rows=0 if new else admission.rows,
        )
        return session, attachment, key.session_id


async def _refuse(ws: Socket, code: int, message: str) -> None:
    try:
        await ws.send_json({"type": "error", "message": message})
        await ws.close(code, message)
    except Exception:  # the client may already be gone
        pass


async def _bridge(
    ws: Socket, session: TerminalSession, attachment: Attachment, session_id: str, keep_s: float
) -> None:
    pump = None
    try:
        await ws.send_json({"type": "ready", "offset": attachment.ready_offset, "session": session_id})
        pump = asyncio.ensure_future(_pump(ws, attachment))
        await _receive(ws, attachment, pump)
    except Exception:  # the client vanished mid-send
        pass
    finally:
        session.detach(attachment, keep_s)
        if pump is not None and not pump.done():
            pump.cancel()


async def _pump(ws: Socket, attachment: Attachment) -> None:
    """Session output -> binary frames; then tell the client why the session ended."""
    send = ws.send
    output = attachment.output
    try:
        while (data := await output()) is not None:
            await send({"type": "websocket.send", "bytes": data})
        reason = attachment.ended or "closed"
        if reason != "detached":
            await ws.send_json({"type": "closed", "reason": reason})
            await ws.close(CLOSE_NORMAL, reason)
    except (RuntimeError, OSError):
        pass  # the client went away: the receiver sees it too, and the session is detached


async def _receive(ws: Socket, attachment: Attachment, pump: asyncio.Future[None]) -> None:
    """Binary frames -> shell input; text frames -> resize, ack, ping. Returns when the client leaves
    or once the pump has closed the socket (the session ended, or another tab took it)."""
    receive = ws.receive
    write = attachment.write
    while True:
        message: Message = await receive()
        data = message.get("bytes")
        if data is not None:
            write(data)
            continue
        if message["type"] == "websocket.disconnect" or pump.done():
            return
        text = message.get("text")
        if text and _control(attachment, text):
            await ws.send({"type": "websocket.send", "text": '{"type":"pong"}'})


def _control(attachment: Attachment, text: str) -> bool:
    """Apply one control message; True when it asks for a pong."""
    try:
        message = json.loads(text)
        kind = message.get("type")
        if kind == "ack":
            attachment.ack(int(message["offset"]))
        elif kind == "resize":
            if not attachment.read_only:
                cols = min(max(int(message["cols"]), 1), MAX_COLS)
                rows = min(max(int(message["rows"]), 1), MAX_ROWS)
                attachment.resize(cols, rows)
        elif kind == "ping":
            return True
    except (ValueError, TypeError, KeyError, AttributeError):
        pass  # a malformed control message is ignored, like an unknown one
    return False
