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
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

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
from stacklab.errors import AccessError, NotFound
from stacklab.types import Observed
from stacklab.web.context import WebContext, context
from stacklab.web.tokens import Claims, TokenError, allows

__all__ = ["close_sessions", "open_terminals", "router", "shutdown_terminals"]

log = logging.getLogger(__name__)
router = APIRouter()

SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_COLS, MAX_ROWS = 1000, 500

CLOSE_NORMAL = 1000
CLOSE_UNREACHABLE = 1011
CLOSE_BAD_TOKEN = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_NOT_RUNNING = 4409


class Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Admission:
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


def _admit(ws: WebSocket, ctx: WebContext, env_id: str, node: str) -> tuple[Admission, object]:
    """Check origin, token, environment and node; returns the admission and the environment record."""
    origin = ws.headers.get("origin")
    if origin is not None and origin.rstrip("/") not in ctx.allowed_origins(ws.headers.get("host")):
        raise Refused(CLOSE_FORBIDDEN, "this page's origin may not open terminals")
    query = ws.query_params
    try:
        claims = ctx.signer.verify(query.get("token"))
    except TokenError as exc:
        raise Refused(CLOSE_BAD_TOKEN, str(exc)) from exc
    if not allows(claims, env_id):
        raise Refused(CLOSE_FORBIDDEN, "this token does not grant access to that environment")
    environments = ctx.stack.environments
    try:
        record = environments.resolve(env_id)
    except NotFound as exc:
        raise Refused(CLOSE_NOT_FOUND, "no such environment") from exc
    if record.observed != Observed.RUNNING:
        raise Refused(
            CLOSE_NOT_RUNNING,
            f"the environment is {record.observed} ({record.progress}), not running: resume it first",
        )
    lab = environments.lab_of(record)
    allowed = set(record.nodes or {})
    if claims.role == "learner":
        allowed &= set(lab.learner_nodes)
    if node not in allowed:
        raise Refused(CLOSE_NOT_FOUND, f"no node {node!r} to open in this environment")
    session_id = query.get("session") or new_session_id()
    if not SESSION_ID.match(session_id):
        raise Refused(CLOSE_NOT_FOUND, "the session id must be 1-64 letters, digits, _ or -")
    key = SessionKey(record.id, node, f"{claims.role}:{claims.subject}", session_id)
    admission = Admission(
        claims,
        key,
        _int(query.get("cols"), 80, 1, MAX_COLS),
        _int(query.get("rows"), 24, 1, MAX_ROWS),
        _int(query.get("offset"), 0, 0, 1 << 62),
    )
    return admission, (record, lab)


async def _refuse(ws: WebSocket, code: int, message: str) -> None:
    try:
        await ws.send_text(json.dumps({"type": "error", "message": message}))
        await ws.close(code=code, reason=message[:120])
    except Exception:  # the client may already be gone
        pass


@router.websocket("/api/v1/environments/{env_id}/terminal/{node}")
async def terminal(ws: WebSocket, env_id: str, node: str) -> None:
    ctx = context(ws)
    settings = ctx.stack.settings
    await ws.accept()
    try:
        admission, (record, lab) = _admit(ws, ctx, env_id, node)  # type: ignore[misc]
    except Refused as refused:
        await _refuse(ws, refused.code, refused.message)
        return
    key = admission.key
    stack = ctx.stack

    def target():  # type: ignore[no-untyped-def]
        return stack.controller.targets(record, lab)[node]  # decrypts the key only for a new shell

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
        await _refuse(ws, CLOSE_UNREACHABLE, f"cannot reach node {node} right now; try again in a moment")
        return
    if session.closed is not None:
        await _refuse(ws, CLOSE_UNREACHABLE, f"the shell on {node} closed: {session.closed}")
        return
    attachment = session.attach(
        0 if new else admission.offset,
        read_only=admission.claims.read_only,
        cols=0 if new else admission.cols,
        rows=0 if new else admission.rows,
    )
    await _bridge(ws, session, attachment, settings.terminal_keep_s)


async def _bridge(ws: WebSocket, session: TerminalSession, attachment: Attachment, keep_s: float) -> None:
    send = ws.send
    pump = None
    try:
        await send(
            {
                "type": "websocket.send",
                "text": json.dumps(
                    {"type": "ready", "offset": attachment.ready_offset, "session": session.key.session_id}
                ),
            }
        )
        pump = asyncio.ensure_future(_pump(ws, attachment))
        receiver = asyncio.ensure_future(_receive(ws, attachment))
        done, _ = await asyncio.wait((pump, receiver), return_when=asyncio.FIRST_COMPLETED)
        if receiver not in done:  # the session ended (or another tab took it): the pump closed the socket
            receiver.cancel()
    except Exception:  # the client vanished mid-send
        pass
    finally:
        session.detach(attachment, keep_s)
        if pump is not None and not pump.done():
            pump.cancel()


async def _pump(ws: WebSocket, attachment: Attachment) -> None:
    """Session output -> binary frames; then tell the client why the session ended."""
    send = ws.send
    output = attachment.output
    try:
        while (data := await output()) is not None:
            await send({"type": "websocket.send", "bytes": data})
        reason = attachment.ended or "closed"
        if reason != "detached":
            await ws.send_text(json.dumps({"type": "closed", "reason": reason}))
            await ws.close(code=CLOSE_NORMAL, reason=reason[:120])
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the client went away: the receiver sees it too, and the session is detached


async def _receive(ws: WebSocket, attachment: Attachment) -> None:
    """Binary frames -> shell input; text frames -> resize, ack, ping."""
    receive = ws.receive
    write = attachment.write
    while True:
        message = await receive()
        data = message.get("bytes")
        if data is not None:
            write(data)
            continue
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text and _control(attachment, text):
            await ws.send_text('{"type":"pong"}')


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
