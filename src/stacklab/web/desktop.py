"""The desktop websocket: `GET /api/v1/environments/{env}/desktop/{node}`, relayed to the node's VNC server.

Protocol (docs/desktops.md): admission as for terminals (the same token, origin, environment and node
checks, `stacklab.web.terminal`), then the node must declare a desktop (`access.<node>.desktop`). The
server says `{"type": "ready"}` (or `{"type": "error", "message"}` and closes with the terminal's codes:
4401, 4403, 4404, 4409, or 1011 when the desktop does not answer yet; 4412 when an RDP desktop's server
refused the lab's login), then speaks RFB 3.8 in binary
frames, security type None: the service has already logged in to the node's VNC server
(`stacklab.access.desktop`). A session ends with close code 1000 and a reason (the desktop closed, the
lab was paused or reset); a broken RFB message with 4400, a clipboard over the limit with 1009. An RDP
desktop (`protocol: rdp`) is first bridged to VNC on the node (`stacklab.access.rdp`), then relayed the
same way.

Flow control: the node's stream is read only when the previous frame has been handed to the browser's
socket, and the browser's input is written to the SSH channel with its window respected (`drain`), so a
slow end slows the other instead of filling memory. Input counts as learner activity (at most one write
per `activity_throttle_s`); a read-only watcher's input is dropped here.

`router` adds `GET /api/v1/environments/{env}/access`: per node the caller may open, a terminal or not and
the desktop's protocol (or null), for the lab page's tabs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator

from fastapi import APIRouter, Request
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stacklab.access.desktop import (
    SECURITY_NONE,
    SECURITY_OFFER,
    SECURITY_OK,
    VERSION,
    ClientMessages,
    NodeStream,
    ProtocolError,
    client_version_ok,
    open_node,
)
from stacklab.access.rdp import RdpLoginRefused, open_bridge
from stacklab.envs.controller import unseal
from stacklab.errors import AccessError, NotFound, Refused
from stacklab.labs.node_access import Desktop, desktop_of, offers_terminal
from stacklab.web.context import WebContext, authorize, context
from stacklab.web.terminal import (
    CLOSE_BAD_MESSAGE,
    CLOSE_NORMAL,
    CLOSE_NOT_FOUND,
    CLOSE_TOO_BIG,
    CLOSE_UNREACHABLE,
    PONG,
    Socket,
    _admit,
    _refuse,
)
from stacklab.web.terminal_watch import REVOKED, closing_reason, lab_states

log = logging.getLogger(__name__)

PATH = re.compile(r"^/api/v1/environments/(?P<env>[^/]+)/desktop/(?P<node>[^/]+)$")
READ_BYTES = 1 << 16  # one read from the node: one binary frame at most this big
MAX_FRAME_BYTES = 1 << 21  # one frame from the browser (a clipboard paste and its header fits)
CLOSE_LOGIN_REFUSED = 4412
"""An RDP desktop whose server refused the lab's login: retrying would not help (the page says so)."""

router = APIRouter()


@router.get("/api/v1/environments/{env_id}/access", tags=["learner"])
def node_access(env_id: str, request: Request) -> dict[str, list[dict[str, object]]]:
    """What the caller may open on each node it may open: a terminal, a desktop (its protocol, or null)."""
    claims = authorize(request, env_id)
    stack = context(request).stack
    record = stack.environments.resolve(env_id)
    lab = stack.environments.lab_of(record)
    nodes = lab.learner_nodes if claims.role == "learner" else tuple(record.nodes or lab.all_node_names())
    return {
        "nodes": [
            {
                "node": node,
                "terminal": offers_terminal(lab.access, node),
                "desktop": desktop.protocol if (desktop := desktop_of(lab.access, node)) else None,
            }
            for node in nodes
        ]
    }


class _ClientBytes:
    """The browser's binary frames as a byte stream, for the handshake (its messages may be cut anywhere)."""

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.buffer = bytearray()

    async def exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            message = await self.receive()
            if message["type"] == "websocket.disconnect":
                raise ConnectionResetError("the browser left during the handshake")
            data = message.get("bytes")
            if data is None:
                raise ProtocolError("the RFB handshake travels in binary frames")
            self.buffer += data
        out = bytes(self.buffer[:count])
        del self.buffer[:count]
        return out


class _Stop:
    """Set when the session must end because its lab stopped, with the reason the browser is told."""

    __slots__ = ("event", "generation", "reason")

    def __init__(self, generation: int) -> None:
        self.event = asyncio.Event()
        self.reason = ""
        self.generation = generation  # of the token the desktop was opened with

    def set(self, reason: str) -> None:
        self.reason = reason
        self.event.set()


class DesktopSockets:
    """ASGI: desktop websockets are served here; everything else goes on to `app`.

    A desktop ends when its lab is paused, reset, deleted or fails: at once when this process made the
    change (`close_env`, through the context's closers), otherwise at the next look at the open desktops'
    labs, every `terminal_watch_interval_s` while any is open (the terminal watch's rule, `closing_reason`).
    """

    def __init__(self, app: ASGIApp, ctx: WebContext) -> None:
        self.app = app
        self.ctx = ctx
        self._open: dict[str, set[_Stop]] = {}
        self._watch: asyncio.Future[None] | None = None
        ctx.terminal_closers.append(self.close_env)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = PATH.match(scope["path"]) if scope["type"] == "websocket" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        await self._serve(scope, receive, send, match["env"], match["node"])

    @contextlib.contextmanager
    def _watched(self, env_id: str, generation: int) -> Iterator[_Stop]:
        """A desktop of the environment `env_id` (its id), opened with a token of `generation`, is open:
        it is ended if the lab stops or the token is withdrawn."""
        stop = _Stop(generation)
        sessions = self._open.setdefault(env_id, set())
        sessions.add(stop)
        if self._watch is None or self._watch.done():
            self._watch = asyncio.ensure_future(self._watch_labs())
        try:
            yield stop
        finally:
            sessions.discard(stop)
            if not sessions:
                self._open.pop(env_id, None)

    async def close_env(self, env_id: str) -> None:
        """End the desktops of an environment this process just paused, reset or deleted."""
        await self._end_stopped([env_id])

    async def _watch_labs(self) -> None:
        """While desktops are open, end those whose lab stopped running (whoever stopped it)."""
        interval_s = self.ctx.stack.settings.terminal_watch_interval_s
        while self._open:
            await asyncio.sleep(interval_s)
            try:
                await self._end_stopped(list(self._open))
            except SQLAlchemyError as exc:
                log.warning("desktop watch: reading environment states failed", extra={"error": str(exc)})

    async def _end_stopped(self, env_ids: list[str]) -> None:
        """End the desktops of these environments that may not stay open: their lab is paused, reset,
        deleted or failed (the terminals' rule), or their token was withdrawn since they opened."""
        states = await asyncio.to_thread(lab_states, self.ctx.stack.repo, env_ids)
        for env_id in env_ids:
            state = states.get(env_id)
            reason = closing_reason(state)
            for stop in list(self._open.get(env_id, ())):
                if reason is not None:
                    stop.set(reason)
                elif state is not None and stop.generation < state.token_generation:
                    stop.set(REVOKED)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, env_id: str, node: str) -> None:
        ws = Socket(receive, send)
        if (await receive())["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        try:
            stream, read_only, generation, record_id = await self._open_node(scope, env_id, node)
        except Refused as refused:
            await _refuse(ws, refused.code, refused.message)
            return
        except Exception:  # a fault of ours or of the database: say so and close, never just drop
            log.exception("desktop: opening failed", extra={"env_id": env_id, "node": node})
            await _refuse(ws, CLOSE_UNREACHABLE, "the desktop could not be opened; try again in a moment")
            return
        try:
            with self._watched(record_id, generation) as stop:
                await ws.send_json({"type": "ready"})
                client = _ClientBytes(receive)
                await _handshake(ws, client, stream)
                messages = ClientMessages(read_only, self._activity(record_id))
                await _relay(ws, client, stream, messages, stop)
        except ProtocolError as exc:
            await _refuse(ws, CLOSE_TOO_BIG if exc.too_big else CLOSE_BAD_MESSAGE, str(exc))
        except (ConnectionError, RuntimeError, OSError):
            pass  # the browser left
        finally:
            stream.close()

    async def _open_node(self, scope: Scope, env_id: str, node: str) -> tuple[NodeStream, bool, int, str]:
        """Admit the client, then open the node's desktop; returns it, whether the client only watches,
        its token's generation and the environment's id."""
        admission, target = _admit(self.ctx, scope, env_id, node, terminal=False)
        stack = self.ctx.stack
        record = stack.environments.resolve(admission.key.env_id)
        desktop = desktop_of(stack.environments.lab_of(record).access, node)
        if desktop is None:
            raise Refused(CLOSE_NOT_FOUND, f"node {node} has no desktop (the lab declares none)")
        password = _password(self.ctx, record.sealed_secrets, desktop)
        timeout_s = stack.settings.ssh_connect_timeout_s
        try:
            if desktop.protocol == "rdp":  # the node's bridge: RDP in, VNC out (stacklab.access.rdp)
                socket = await open_bridge(
                    target(), desktop.port, desktop.username or "", password or "", timeout_s
                )
                stream = await open_node(target(), socket, None, timeout_s)
            else:
                stream = await open_node(target(), desktop.port, password, timeout_s)
        except RdpLoginRefused as exc:
            log.warning(
                "desktop: RDP login refused", extra={"env_id": record.id, "node": node, "error": str(exc)}
            )
            raise Refused(CLOSE_LOGIN_REFUSED, f"the desktop on {node} could not log in: {exc}") from exc
        except AccessError as exc:
            log.warning("desktop: unreachable", extra={"env_id": record.id, "node": node, "error": str(exc)})
            raise Refused(
                CLOSE_UNREACHABLE, f"the desktop on {node} does not answer yet ({exc}); retrying"
            ) from exc
        claims = admission.claims
        return stream, claims.read_only, claims.generation, record.id

    def _activity(self, env_id: str) -> Callable[[], None]:
        """Records input as activity, at most once per `activity_throttle_s`."""
        stack = self.ctx.stack
        throttle_s = stack.settings.activity_throttle_s
        last = -throttle_s

        def touch() -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= throttle_s:
                last = now
                with contextlib.suppress(NotFound):
                    stack.environments.touch(env_id)

        return touch


def _password(ctx: WebContext, sealed: bytes | None, desktop: Desktop) -> str | None:
    if desktop.password_secret is None:
        return None
    value = unseal(ctx.stack.controller.vault, sealed or b"").get(desktop.password_secret)
    if not value:
        raise Refused(
            CLOSE_UNREACHABLE, f"the lab's {desktop.password_secret!r} secret is not there yet; retrying"
        )
    return value


async def _handshake(ws: Socket, client: _ClientBytes, stream: NodeStream) -> None:
    """RFB 3.8 with the browser, as the server, security type None; its ClientInit goes on, shared."""
    await ws.send({"type": "websocket.send", "bytes": VERSION})
    if not client_version_ok(await client.exactly(12)):
        raise ProtocolError("the browser must speak RFB 3.8")
    await ws.send({"type": "websocket.send", "bytes": SECURITY_OFFER})
    if (await client.exactly(1))[0] != SECURITY_NONE:
        raise ProtocolError("the browser chose a security type that was not offered")
    await ws.send({"type": "websocket.send", "bytes": SECURITY_OK})
    await client.exactly(1)  # ClientInit: shared or not, the node's session is always shared
    stream.writer.write(b"\x01")


async def _relay(
    ws: Socket, client: _ClientBytes, stream: NodeStream, messages: ClientMessages, stopped: _Stop
) -> None:
    """Both directions until one ends, or until the lab stops (`stopped`)."""
    if client.buffer:
        stream.writer.write(messages.feed(bytes(client.buffer)))
    pump = asyncio.ensure_future(_pump(ws, stream))
    receiver = asyncio.ensure_future(_receive(ws, stream, messages))
    stop = asyncio.ensure_future(stopped.event.wait())
    try:
        done, _ = await asyncio.wait((pump, receiver, stop), return_when=asyncio.FIRST_COMPLETED)
        if stop in done:
            await ws.close(CLOSE_NORMAL, stopped.reason)
        if receiver in done:
            receiver.result()  # a broken message: raised for the caller to refuse
    finally:
        for task in (pump, receiver, stop):
            task.cancel()


async def _pump(ws: Socket, stream: NodeStream) -> None:
    """Node -> browser, one read per frame; then say why it ended."""
    read = stream.reader.read
    send = ws.send
    try:
        while data := await read(READ_BYTES):
            await send({"type": "websocket.send", "bytes": data})
        await ws.close(CLOSE_NORMAL, "the desktop closed (its VNC server ended)")
    except (RuntimeError, OSError):
        pass  # the browser went away: the receiver sees it too


async def _receive(ws: Socket, stream: NodeStream, messages: ClientMessages) -> None:
    """Browser -> node: binary frames are RFB, cut into messages; a text frame may only be a ping."""
    receive = ws.receive
    writer = stream.writer
    while True:
        message: Message = await receive()
        data = message.get("bytes")
        if data is not None:
            if len(data) > MAX_FRAME_BYTES:
                raise ProtocolError(f"a frame may hold at most {MAX_FRAME_BYTES} bytes", too_big=True)
            out = messages.feed(data)
            if out:
                writer.write(out)
                await writer.drain()
            continue
        if message["type"] == "websocket.disconnect":
            return
        if _is_ping(message.get("text")):
            await ws.send({"type": "websocket.send", "text": PONG})
        else:
            raise ProtocolError('a text frame may only be {"type": "ping"}')


def _is_ping(text: str | None) -> bool:
    try:
        return text is not None and len(text) < 100 and json.loads(text) == {"type": "ping"}
    except ValueError:
        return False
