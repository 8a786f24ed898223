"""The web application: one process with the API, pages, terminal bridge and the controller loop."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stacklab import __version__
from stacklab.config import LmsKey, Settings
from stacklab.envs.pricing import pricing_of
from stacklab.errors import Conflict, InvalidInput, LabError, NotFound, StacklabError, UsageLimitReached
from stacklab.labs.catalog import LabCatalog
from stacklab.store.operators import sync_setting_account
from stacklab.web import api, course_view, deployment_view, desktop, pages, readiness, terminal
from stacklab.web.context import WebContext, bearer, token_revocation
from stacklab.web.limits import Limits
from stacklab.web.membership import Membership
from stacklab.web.metrics import Metrics, UsageCollector
from stacklab.web.relay import RelayKey, Relays
from stacklab.web.request_ids import RequestIds, current_request_id
from stacklab.web.terminal_watch import TerminalWatch
from stacklab.web.tokens import TokenSigner
from stacklab.wiring import App

log = logging.getLogger(__name__)
EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"  # package data; ./examples links here


def admin_password(configured: str, data_dir: str) -> str:
    """The configured operator password, or one generated into <data_dir>/admin.password (0600)."""
    if configured:
        return configured
    path = Path(data_dir) / "admin.password"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(18) + "\n")
    return path.read_text().strip()


def _lms_keys(settings: Settings) -> dict[str, LmsKey]:
    """The LMS keys, saying in the log which ones still use the first format (every course)."""
    keys = settings.resolved_lms_keys
    for name, raw in settings.lms_keys.items():
        if isinstance(raw, str):
            log.warning(
                "lms_keys: key %r is a bare secret, so it may act for every course; write it as "
                '{"secret": ..., "courses": [...]} to bind it to its courses',
                name,
            )
    return keys


def build_context(stack: App) -> WebContext:
    settings = stack.settings
    repo = stack.repo
    password = admin_password(settings.admin_password, settings.data_dir)
    sync_setting_account(repo, password, time.time())  # older installs' password: the `admin` account
    return WebContext(
        stack=stack,
        signer=TokenSigner(
            stack.controller.vault.derive("access-tokens"),
            revoked=token_revocation(repo),
        ),
        catalog=LabCatalog(settings.labs_dir or EXAMPLES_DIR),
        public_url=(settings.public_url or f"http://{settings.http_host}:{settings.http_port}").rstrip("/"),
        admin_password=password,
        lms_keys=_lms_keys(settings),
        limits=Limits(settings),
    )


class SecurityHeaders:
    """Adds headers to every HTTP response; plain ASGI (a BaseHTTPMiddleware costs ~1 ms a request).

    A response without a Content-Security-Policy of its own may not be framed (the pages set theirs, see
    web/pages.py: the lab page is framed by the LMS); that covers the static HTML files served as they
    are too (/static/admin.html), and the API documentation.
    """

    HEADERS: ClassVar[list[tuple[bytes, bytes]]] = [
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
    ]
    NOT_FRAMED: ClassVar[list[tuple[bytes, bytes]]] = [
        (b"content-security-policy", b"frame-ancestors 'none'"),
        (b"x-frame-options", b"DENY"),
    ]
    STATIC = (b"cache-control", b"no-cache")  # revalidate: built files keep their names

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.HEADERS + ([self.STATIC] if scope["path"].startswith("/static/") else [])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), *extra]
                if not any(name.lower() == b"content-security-policy" for name, _ in headers):
                    headers += self.NOT_FRAMED
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """`{"detail": ..., "request_id": ...}`: the id finds the request's log lines (RequestIds)."""
    return JSONResponse(
        {"detail": message, "request_id": current_request_id()}, status_code=status, headers=headers
    )


def _validation_message(exc: RequestValidationError) -> str:
    """Each problem as `where: what`, without echoing the input (it may be NaN, huge or a secret)."""
    problems = [
        ".".join(str(part) for part in error.get("loc", ())) + ": " + str(error.get("msg", "invalid"))
        for error in exc.errors()
    ]
    return "; ".join(problems) or "invalid request"


def create_app(stack: App, run_engine: bool = True) -> FastAPI:
    """The ASGI app. With run_engine and the embedded runner, the controller loop runs inside the app's
    lifespan (with runner = celery, `stacklab worker` processes run passes and the elected scheduler)."""
    ctx = build_context(stack)

    membership = Membership(stack.repo, stack.settings)  # this process among the web processes
    relays = Relays(
        membership,
        RelayKey(stack.controller.vault.derive("terminal-relay")),
        stack.settings.relay_connect_timeout_s,
    )
    # this app's shells, closed when their lab stops (any process); reached from peers through relays
    terminals = terminal.TerminalManager(on_closed=membership.released)
    watch = TerminalWatch(
        terminals,
        stack.repo,
        stack.settings.terminal_watch_interval_s,
        stack.settings.terminal_keep_s,
        events_live=lambda: stack.events.live,
    )
    ctx.terminal_closers.append(watch.close_now)
    metrics = Metrics(stack.repo, terminals.count, lambda: stack.engine.runner.failures)
    metrics.registry.register(UsageCollector(stack.repo, pricing_of(stack.environments.lab_of)))
    stack.controller.listeners.append(metrics.observe)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        await asyncio.to_thread(membership.join)
        member_task = asyncio.create_task(membership.run(stop))
        loop_task = (
            asyncio.create_task(stack.engine.run_forever(stop)) if run_engine and stack.embedded else None
        )
        watch_task = asyncio.create_task(watch.run(stop))
        subscriptions = [stack.events.subscribe(watch.on_event, watch.on_connected)]
        if not stack.embedded:  # the passes run in workers: their measurements come as events
            subscriptions.append(stack.events.subscribe(metrics.on_event))
        try:
            yield
        finally:
            for unsubscribe in subscriptions:
                unsubscribe()
            stop.set()
            await watch_task
            await terminals.shutdown()
            await member_task
            await membership.leave()
            if loop_task:
                await loop_task

    app = FastAPI(
        title="stacklab",
        version=__version__,
        description="Per-learner lab environments: API for LMS adapters, learners' lab pages and operators.",
        lifespan=lifespan,
        max_body_size=stack.settings.max_body_bytes,  # larger bodies get 413 before a handler reads them
    )
    app.state.ctx = ctx
    app.state.metrics = metrics
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(readiness.router)
    app.include_router(desktop.router)
    app.include_router(course_view.router)
    app.include_router(course_view.pages)
    app.include_router(deployment_view.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestIds)  # around the handlers and the error bodies, inside the terminal's path
    # outermost: a terminal skips the routing
    app.add_middleware(terminal.TerminalSockets, ctx=ctx, manager=terminals, relays=relays)
    app.add_middleware(desktop.DesktopSockets, ctx=ctx)  # desktop websockets (RFB over the node's SSH)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus(request: Request) -> Response:
        expected = stack.settings.metrics_token
        if expected and not hmac.compare_digest(
            (bearer(request) or "").encode(errors="replace"), expected.encode()
        ):
            return _error(
                401, "/metrics needs the metrics_token as a bearer token", {"WWW-Authenticate": "Bearer"}
            )
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.exception_handler(RequestValidationError)
    async def unprocessable(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_message(exc))

    @app.exception_handler(NotFound)
    async def not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(Conflict)
    async def conflict(_request: Request, exc: Conflict) -> JSONResponse:
        if isinstance(exc, UsageLimitReached):  # the sentence is for the learner: `reason` tells clients so
            body = {"detail": str(exc), "reason": "UsageLimit", "request_id": current_request_id()}
            return JSONResponse(body, status_code=409)
        return _error(409, str(exc))

    @app.exception_handler(InvalidInput)
    async def invalid(_request: Request, exc: InvalidInput) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(LabError)
    async def bad_lab(_request: Request, exc: LabError) -> JSONResponse:
        return _error(422, "; ".join(exc.problems))

    @app.exception_handler(StacklabError)
    async def other(_request: Request, exc: StacklabError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(HTTPException)
    async def http(_request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), exc.headers)

    return app
