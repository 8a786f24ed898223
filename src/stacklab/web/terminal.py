"""The terminal websocket: `GET /api/v1/environments/{env}/terminal/{node}` bridged to a shell over SSH.

Protocol: docs/web-protocol.md, "Terminal websocket". Binary frames carry terminal bytes both ways; text
frames carry JSON control messages. The server refuses with close codes 4401 (bad or expired token), 4403
(other learner, foreign Origin), 4404 (unknown environment or node, or a node the learner may not open)
and 4409 (environment not running), each after a `{"type": "error"}` message saying why. A frame that breaks
the protocol once the terminal is open (not a JSON object with a known "type", a field out of range) gets an
error message and close code 4400; one over the size limits (`MAX_INPUT_BYTES`, `MAX_CONTROL_CHARS`) 1009.
The token comes from `Authorization: Bearer` (clients that can set headers) or the `token` parameter.

Server -> client, beyond the protocol's minimum: `ready` also carries `session` (the id in use: the one the
client sent, or a new one when it sent none); `{"type": "pong"}` answers `ping`. A session ends with
`{"type": "closed", "reason": ...}` and close code 1000 (shell exited, environment stopped, opened in
another tab, kept too long); close code 1011 when the node cannot be reached.

Serve it with websocket compression off (uvicorn `ws_per_message_deflate=False`): it costs more than it
saves on terminal output. The data path does no decoding and no formatting.

The endpoint is plain ASGI (`TerminalSockets`), ahead of FastAPI's routing: a terminal stays open for
hours, and every framework layer would keep its coroutine frames and per-request objects alive as long
(about 14 KiB per open terminal with FastAPI's websocket route).

With `relays` (every `stacklab serve`), a websocket for a session whose shell another live web process
holds is relayed to that process, frames unchanged (`stacklab.web.relay`, docs/terminals.md); the
handshake answer names this process (`x-stacklab-member`) and, when relayed, the holder
(`x-stacklab-relayed-to`).
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
from websockets.asyncio.client import ClientConnection

from stacklab.access.ssh import Target
from stacklab.access.terminal import Attachment, SessionKey, TerminalManager, TerminalSession, new_session_id
from stacklab.errors import AccessError, NotFound, Refused, TokenError
from stacklab.labs.node_access import offers_terminal
from stacklab.types import Observed
from stacklab.web.context import WebContext
from stacklab.web.relay import Relays, pipe
from stacklab.web.tokens import Claims, allows

__all__ = ["TerminalManager", "TerminalSockets"]

log = logging.getLogger(__name__)

PATH = re.compile(r"^/api/v1/environments/(?P<env>[^/]+)/terminal/(?P<node>[^/]+)$")
SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_COLS, MAX_ROWS = 1000, 500

MAX_INPUT_BYTES = 1 << 20  # one input frame: a paste
MAX_CONTROL_CHARS = 4096  # one JSON control message
MAX_OFFSET = (1 << 63) - 1  # stream offsets are 64-bit counters in every client
PONG = '{"type":"pong"}'

CLOSE_NORMAL = 1000
CLOSE_TOO_BIG = 1009
CLOSE_UNREACHABLE = 1011
CLOSE_BAD_MESSAGE = 4400
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
        short = reason.encode()[:120].decode(errors="ignore")  # a close reason holds 123 bytes of UTF-8
        await self.send({"type": "websocket.close", "code": code, "reason": short})


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


def _token(headers: dict[bytes, str], query: dict[str, str]) -> str | None:
    """`Authorization: Bearer` (clients that can set headers) or the `token` query parameter (browsers)."""
    header = headers.get(b"authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return query.get("token")


def _admit(
    ctx: WebContext, scope: Scope, env_id: str, node: str, terminal: bool = True
) -> tuple[Admission, Callable[[], Target]]:
    """Check origin, token, environment and node (for a `terminal`, that the lab lets the node open one;
    the desktop endpoint checks its own kind); returns the admission and how to reach the node."""
    headers = {name: value.decode("latin-1") for name, value in scope["headers"]}
    origin = headers.get(b"origin")
    if origin is not None and origin.rstrip("/") not in ctx.allowed_origins(headers.get(b"host")):
        raise Refused(CLOSE_FORBIDDEN, "this page's origin may not open terminals")
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
    try:
        claims = ctx.signer.verify(_token(headers, query))
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
    if terminal and not offers_terminal(lab.access, node):
        raise Refused(CLOSE_NOT_FOUND, f"node {node} offers no terminal (its lab says terminal: false)")
    session_id = query.get("session") or new_session_id()
    if not SESSION_ID.match(session_id):
        raise Refused(CLOSE_BAD_MESSAGE, "the session id must be 1-64 letters, digits, _ or -")
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

    def __init__(
        self,
        app: ASGIApp | None,
        ctx: WebContext,
        manager: TerminalManager | None = None,
        relays: Relays | None = None,
    ) -> None:
        self.app = app
        self.ctx = ctx
        self.manager = manager or TerminalManager()
        self.relays = relays

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
        accepted = False
        try:
            admission, target = _admit(self.ctx, scope, env_id, node)
            relayed = await self._relayed(admission, scope)
            if relayed is not None:
                connection, holder = relayed
                try:
                    accepted = await self._accept(send, holder)
                    await pipe(receive, send, connection)
                finally:
                    await connection.close()  # also when the client left before the accept
                return
            accepted = await self._accept(send)
            attached = await self._attach(admission, target)
        except Refused as refused:
            accepted = accepted or await self._accept(send)
            await _refuse(ws, refused.code, refused.message)
            return
        except Exception:  # a fault of ours or of the database: say so and close, never just drop
            log.exception("terminal: opening failed", extra={"env_id": env_id, "node": node})
            accepted = accepted or await self._accept(send)
            await _refuse(ws, CLOSE_UNREACHABLE, "the terminal could not be opened; try again in a moment")
            return
        await _bridge(ws, *attached, self.ctx.stack.settings.terminal_keep_s)

    async def _accept(self, send: Send, relayed_to: str | None = None) -> bool:
        """Accept the websocket, naming this process (and the holder it is relayed to) in the answer."""
        headers = []
        if self.relays is not None:
            headers.append((b"x-stacklab-member", self.relays.membership.id.encode()))
            if relayed_to is not None:
                headers.append((b"x-stacklab-relayed-to", relayed_to.encode()))
        await send({"type": "websocket.accept", "headers": headers})
        return True

    async def _relayed(self, admission: Admission, scope: Scope) -> tuple[ClientConnection, str] | None:
        """A websocket to the peer holding this session, when another live process holds it; None to serve
        here (also for a websocket a peer relayed here: a forged relay header is refused)."""
        relays = self.relays
        if relays is None or relays.relayed(scope):
            return None
        return await relays.route(admission.key, admission.claims.read_only, self.manager, scope)

    async def _attach(
        self, admission: Admission, target: Callable[[], Target]
    ) -> tuple[TerminalSession, Attachment, str]:
        """Find or open the admitted client's shell (or the shell it watches); returns the session, the
        attachment and the client's session id. The environment record is not kept after this."""
        stack = self.ctx.stack
        settings = stack.settings
        node = admission.key.node
        key = admission.key
        if admission.claims.read_only:  # staff watching a learner: their live shell, when there is one
            watched = self.manager.watchable(key.env_id, node)
            if watched is not None:
                return watched, watched.watch(admission.offset), key.session_id

        def activity() -> None:
            stack.environments.touch(key.env_id)

        try:
            session, new = await self.manager.open(
                key,
                target,
                admission.cols,
                admission.rows,
                connect_timeout_s=settings.ssh_connect_timeout_s,
                activity=activity,
                activity_throttle_s=settings.activity_throttle_s,
                generation=admission.claims.generation if admission.claims.env_id is not None else None,
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
        if self.relays is not None:
            await self.relays.membership.hold(key)
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
    except (RuntimeError, OSError):
        pass  # the client vanished mid-send
    except Exception:  # a fault of ours: logged, and the client is told instead of dropped
        log.exception("terminal: bridge failed", extra={"env_id": session.key.env_id})
        await _refuse(ws, CLOSE_UNREACHABLE, "the terminal failed; reconnect")
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
    """Binary frames -> shell input; text frames -> resize, ack, ping. Returns when the client leaves, once
    the pump has closed the socket (the session ended, or another tab took it), or after refusing a bad
    frame (error message, then close code 4400 or 1009)."""
    receive = ws.receive
    write = attachment.write
    while True:
        message: Message = await receive()
        data = message.get("bytes")
        if data is not None and len(data) <= MAX_INPUT_BYTES:
            write(data)
            continue
        if message["type"] == "websocket.disconnect" or pump.done():
            return
        try:
            if _control(attachment, data, message.get("text")):
                await ws.send({"type": "websocket.send", "text": PONG})
        except Refused as refused:
            await _refuse(ws, refused.code, refused.message)
            return


def _control(attachment: Attachment, data: bytes | None, text: str | None) -> bool:
    """Apply one control message; True when it asks for a pong. Raises Refused for a frame that breaks
    the protocol (docs/web-protocol.md): too big, not a JSON object with a known "type", or a field out
    of its range. An ack beyond what was sent is clamped, not refused (a client that reconnected to a new
    shell may ack its old offset once)."""
    if data is not None:
        raise Refused(CLOSE_TOO_BIG, f"an input frame may hold at most {MAX_INPUT_BYTES} bytes")
    if text is None or len(text) > MAX_CONTROL_CHARS:
        raise Refused(CLOSE_TOO_BIG, f"a control message may hold at most {MAX_CONTROL_CHARS} characters")
    message = _parse(text)
    kind = str(message["type"])
    if kind == "ack":
        attachment.ack(_integer(message, "offset", 0))
    elif kind == "resize":
        cols = min(_integer(message, "cols", 1), MAX_COLS)
        rows = min(_integer(message, "rows", 1), MAX_ROWS)
        if not attachment.read_only:
            attachment.resize(cols, rows)
    elif kind == "ping":
        return True
    else:
        raise Refused(CLOSE_BAD_MESSAGE, f"unknown message type {kind[:40]!r}: expected ack, resize or ping")
    return False


def _parse(text: str) -> dict[str, object]:
    try:
        message = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise Refused(CLOSE_BAD_MESSAGE, "a control message must be JSON") from exc
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise Refused(CLOSE_BAD_MESSAGE, 'a control message must be a JSON object with a string "type"')
    return message


def _integer(message: dict[str, object], name: str, low: int) -> int:
    value = message.get(name)
    if type(value) is not int or not low <= value <= MAX_OFFSET:  # bool is an int subclass: not here
        raise Refused(
            CLOSE_BAD_MESSAGE, f"{message['type']} needs {name}: an integer from {low} to {MAX_OFFSET}"
        )
    return value
