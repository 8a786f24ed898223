"""Terminal websocket clients as the browser runs them, and a real uvicorn to serve an ASGI app to them.

Shared by the terminal bridge tests on LXC (tests/integration/test_terminal.py) and the reliability tests
on the in-memory provider (tests/reliability/test_terminal_*.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import uvicorn
from starlette.types import ASGIApp
from tests.support.memory_provider import MemoryProvider
from tests.support.web_app import drive, launch, make_stack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from stacklab.web.app import create_app
from stacklab.wiring import App

FRAMES: list[bytes] = []  # every frame any test client received, for key-leak checks
WAIT_S = 10.0  # the longest any single expected message may take


@contextlib.asynccontextmanager
async def serve_asgi(app: ASGIApp, lifespan: Literal["on", "off"] = "off") -> AsyncIterator[str]:
    """`app` served by uvicorn on 127.0.0.1:<free port> as `stacklab serve` runs it; yields the ws:// base
    URL, and stops the server (running the app's shutdown when `lifespan` is on) afterwards."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan=lifespan, ws="websockets-sansio", ws_per_message_deflate=False
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(WAIT_S):
            while not server.started:
                await asyncio.sleep(0.01)
        yield f"ws://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT_S)
        sock.close()


class Term:
    """A terminal client as the browser runs it: counts output bytes and acks them every 16 KiB."""

    def __init__(self, ws: ClientConnection, ack: bool = True) -> None:
        self.ws = ws
        self.ack = ack
        self.output = bytearray()
        self.offset = 0  # stream offset of the next byte
        self.acked = 0
        self.events: list[dict[str, Any]] = []

    async def ready(self) -> dict[str, Any]:
        while True:
            message = await asyncio.wait_for(self.ws.recv(), WAIT_S)
            FRAMES.append(message if isinstance(message, bytes) else message.encode())
            assert isinstance(message, str), "output before ready"
            event = json.loads(message)
            self.events.append(event)
            assert event["type"] != "error", event
            if event["type"] == "ready":
                self.offset = event["offset"]
                return event  # type: ignore[no-any-return]

    async def read_once(self, timeout: float) -> bool:
        message = await asyncio.wait_for(self.ws.recv(), timeout)
        FRAMES.append(message if isinstance(message, bytes) else message.encode())
        if isinstance(message, str):
            self.events.append(json.loads(message))
            return False
        self.output += message
        self.offset += len(message)
        if self.ack and self.offset - self.acked >= 16384:
            await self.send_ack()
        return True

    async def send_ack(self) -> None:
        self.acked = self.offset
        await self.ws.send(json.dumps({"type": "ack", "offset": self.offset}))

    async def until(self, pattern: re.Pattern[bytes] | bytes, timeout: float = 20.0, since: int = 0) -> bytes:
        """Read until `pattern` appears in the output after position `since`; returns that output."""
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not regex.search(self.output, since):
            try:
                await self.read_once(max(deadline - loop.time(), 0.001))
            except TimeoutError:
                tail = bytes(self.output[-300:])
                raise AssertionError(
                    f"{regex.pattern!r} did not arrive within {timeout}s; tail: {tail!r}"
                ) from None
        if self.ack and self.offset > self.acked:
            await self.send_ack()
        return bytes(self.output[since:])

    async def amount(self, count: int, timeout: float = 30.0) -> None:
        """Read until `count` more bytes of output arrived."""
        goal = self.offset + count
        async with asyncio.timeout(timeout):
            while self.offset < goal:
                await self.read_once(timeout)

    async def type(self, text: str | bytes) -> None:
        await self.ws.send(text.encode() if isinstance(text, str) else text)

    async def run(self, command: str, expect: re.Pattern[bytes] | bytes, timeout: float = 20.0) -> bytes:
        mark = len(self.output)
        await self.type(command + "\r")
        return await self.until(expect, timeout, since=mark)

    async def drain(self, quiet_s: float) -> None:
        """Read until nothing arrives for `quiet_s` seconds."""
        with contextlib.suppress(TimeoutError):
            while True:
                await self.read_once(quiet_s)

    async def end(self, timeout: float = WAIT_S) -> int | None:
        """Read until the server closes the socket; returns its close code (None: closed without one)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self.read_once(timeout)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
        except TimeoutError:
            raise AssertionError(f"the server did not close the terminal within {timeout}s") from None

    @property
    def closed_reason(self) -> str | None:
        """The reason of the server's `{"type": "closed"}` message, if one came."""
        return next((e["reason"] for e in self.events if e.get("type") == "closed"), None)


@contextlib.asynccontextmanager
async def terminal(address: str, ack: bool = True, **kwargs: Any) -> AsyncIterator[Term]:
    """An open terminal (its `ready` received)."""
    async with connect(address, compression=None, max_size=None, **kwargs) as ws:
        term = Term(ws, ack)
        await term.ready()
        yield term


async def refusal(address: str, **kwargs: Any) -> tuple[int | None, list[str]]:
    """The close code and the messages of a connection the server refuses."""
    messages = []
    async with connect(address, compression=None, **kwargs) as ws:
        try:
            while True:
                messages.append(await asyncio.wait_for(ws.recv(), WAIT_S))
        except ConnectionClosed as closed:
            return (closed.rcvd.code if closed.rcvd else None), messages  # type: ignore[return-value]
    return None, messages


@dataclass
class LabService:
    """One web process of the service (served by uvicorn, its lifespan running) with one learner's lab
    running on the in-memory provider, whose nodes are a real SSH server."""

    tmp_path: Path
    cloud: dict[str, MemoryProvider]
    stack: App
    http: httpx.AsyncClient  # the same app, in-process
    ws_base: str
    env_id: str
    token: str  # the learner's

    def url(self, token: str | None = None, node: str = "main", **params: str) -> str:
        query = httpx.QueryParams({"token": token or self.token, "session": uuid.uuid4().hex[:16], **params})
        return f"{self.ws_base}/api/v1/environments/{self.env_id}/terminal/{node}?{query}"

    def another_process(self) -> App:
        """The service as another process builds it: its own engine and connections, the same database and
        the same cloud."""
        return make_stack(self.tmp_path, self.cloud)


@contextlib.asynccontextmanager
async def lab_service(tmp_path: Path, sshd_port: int, **settings: object) -> AsyncIterator[LabService]:
    """A `LabService` on SQLite in tmp_path; the controller loop does not run (tests drive the lab)."""
    cloud = {"_ssh": MemoryProvider("_ssh", {"ssh": ("127.0.0.1", sshd_port)})}
    stack = make_stack(tmp_path, cloud, **settings)
    app = create_app(stack, run_engine=False)
    try:
        async with (
            serve_asgi(app, lifespan="on") as ws_base,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http,
        ):
            body = await launch(http, "ann")
            env_id = body["environment"]["id"]
            await drive(stack, env_id)
            yield LabService(tmp_path, cloud, stack, http, ws_base, env_id, body["token"])
    finally:
        stack.close()
