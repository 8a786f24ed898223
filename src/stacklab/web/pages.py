"""HTML pages: index, the demo login, the learner's lab page and the operator view.

Tokens reach pages in the URL fragment (`#token=`), which browsers never send to servers, so tokens do
not end up in access logs or Referer headers.

Every page carries a Content-Security-Policy: scripts only from this service (the bundles in
static/dist, no inline script), connections only to this service (the API and the terminal websocket,
ws/wss of the page's own host), no plugins, no <base>, forms posting here only. Who may frame a page:
the lab page is embedded by the LMS (the Open edX XBlock's iframe), so the `allowed_origins` setting
names the LMS origins that may frame it (none configured: any, as an embeddable page must be until it
is told its LMS); the operator pages may be framed by nobody (and say so to old browsers too, with
X-Frame-Options).

Operators sign in with a named account (store/operators.py; `admin` is the one password of older installs);
failed sign-ins are limited per client and per account (web/limits.py), successful ones go to the audit log.
"""

from __future__ import annotations

import asyncio
import html
import re
import secrets
import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from stacklab.store.counts import live_environments
from stacklab.store.operators import SETTING_ACCOUNT, record_action, sign_in
from stacklab.store.repository import EnvKey
from stacklab.types import Desired
from stacklab.web.context import context

STATIC_DIR = Path(__file__).parent / "static"
DEMO_COOKIE = "stacklab_demo"
DEMO_COURSE = "demo"

router = APIRouter(include_in_schema=False)


# A Host header fit to be written into a header: a name or an address, and a port.
HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$")
# A source expression (an origin such as https://lms.example.org, a port may be *) that cannot end the
# directive or the header it is written into.
SOURCE = re.compile(r"^[^\s;,'\"]+$")


def content_security_policy(host: str | None, frame_ancestors: str) -> str:
    """The policy of a page served to `host` (the request's Host header) that `frame_ancestors` may frame."""
    # 'self' covers ws/wss of the page's origin in CSP 3 browsers; older ones need the websocket spelled out.
    sockets = f" ws://{host} wss://{host}" if host and HOST.match(host) else ""
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            # xterm.js's renderer writes its own <style> elements; a style runs no code and, with images
            # and fonts from here only, sends nothing elsewhere.
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            f"connect-src 'self'{sockets}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            f"frame-ancestors {frame_ancestors}",
        )
    )


def _operator_headers(request: Request) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(request.headers.get("host"), "'none'"),
        "X-Frame-Options": "DENY",
    }


def _lab_frame_ancestors(request: Request) -> str:
    """The LMS origins that embed the lab page (the `allowed_origins` setting), or any when none is set."""
    configured = context(request).stack.settings.allowed_origins
    if not configured:
        return "*"
    return " ".join(["'self'", *(o.rstrip("/") for o in configured if SOURCE.match(o))])


def _page(name: str, headers: dict[str, str]) -> FileResponse:
    return FileResponse(
        STATIC_DIR / name, media_type="text/html", headers={"Cache-Control": "no-store", **headers}
    )


@router.get("/")
async def index(request: Request) -> FileResponse:
    policy = content_security_policy(request.headers.get("host"), "'self'")
    return _page("index.html", {"Content-Security-Policy": policy})


@router.get("/lab/{env_id}")
async def lab_page(request: Request, env_id: str) -> FileResponse:
    policy = content_security_policy(request.headers.get("host"), _lab_frame_ancestors(request))
    return _page("lab.html", {"Content-Security-Policy": policy})


def _client(request: Request) -> str:
    """The client's address (behind a proxy: the proxy's, so limits then count the proxy as one)."""
    return request.client.host if request.client else "unknown"


def _too_many(message: str, retry_after_s: int) -> HTTPException:
    return HTTPException(status_code=429, detail=message, headers={"Retry-After": str(retry_after_s)})


def _admit_new_demo_lab(request: Request) -> None:
    """A new demo lab starts only under the caps: labs at once, and new labs per client per window."""
    ctx = context(request)
    settings = ctx.stack.settings
    wait = ctx.limits.demo_by_client.retry_after(_client(request))
    if wait:
        raise _too_many(
            f"too many demo labs started from your address: try again in {wait} s "
            f"(at most {settings.demo_launches_per_client} per {settings.demo_window_s:.0f} s)",
            wait,
        )
    if live_environments(ctx.stack.repo, DEMO_COURSE) >= settings.demo_max_environments:
        raise _too_many(
            f"the demo is full ({settings.demo_max_environments} labs running): try again later", 60
        )
    ctx.limits.demo_by_client.record(_client(request))


@router.get("/demo")
async def demo(request: Request) -> RedirectResponse:
    """A per-browser demo learner: launches the demo lab and opens its page (only with `serve --demo`)."""
    ctx = context(request)
    settings = ctx.stack.settings
    if not settings.demo_enabled or not ctx.catalog.paths:
        raise HTTPException(
            status_code=403, detail="the demo is turned off on this service (`stacklab serve --demo`)"
        )
    learner = request.cookies.get(DEMO_COOKIE) or ""
    if not learner.startswith("demo-") or len(learner) != 21:
        learner = "demo-" + secrets.token_hex(8)
    lab_id = "hello-lab" if "hello-lab" in ctx.catalog.paths else sorted(ctx.catalog.paths)[0]
    existing = ctx.stack.repo.find(EnvKey(DEMO_COURSE, lab_id, learner))
    if existing is None or existing.desired == Desired.DELETED:
        _admit_new_demo_lab(request)
    record = ctx.stack.environments.launch(ctx.catalog.path(lab_id), learner, DEMO_COURSE)
    token = ctx.signer.issue(
        "learner", learner, record.id, settings.token_ttl_s, generation=record.token_generation
    )
    response = RedirectResponse(f"/lab/{record.id}#token={token}", status_code=303)
    response.set_cookie(DEMO_COOKIE, learner, max_age=7 * 86400, httponly=True, samesite="lax")
    return response


LOGIN_FORM = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>stacklab operators</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/style.css"></head>
<body><main class="login"><h1>stacklab operators</h1>{error}
<form method="post" action="/admin/login"><label for="name">Operator</label>
<input id="name" name="name" autocomplete="username" placeholder="admin" autocapitalize="none">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button></form></main></body></html>"""


@router.get("/admin/login")
async def admin_login_form(request: Request) -> HTMLResponse:
    return HTMLResponse(LOGIN_FORM.format(error=""), headers=_operator_headers(request))


def _login_page(
    request: Request, message: str, status: int, headers: dict[str, str] | None = None
) -> HTMLResponse:
    return HTMLResponse(
        LOGIN_FORM.format(error=f'<p role="alert">{html.escape(message)}</p>'),
        status_code=status,
        headers={**_operator_headers(request), **(headers or {})},
    )


def _login_wait(request: Request, name: str) -> int:
    """Seconds this client must wait before trying a password again (per client, and for the account)."""
    limits = context(request).limits
    by_client = limits.login_by_client.retry_after(_client(request))
    return max(by_client, limits.login_by_account.retry_after(name))


@router.post("/admin/login", response_model=None)
async def admin_login(
    request: Request, password: Annotated[str, Form()], name: Annotated[str, Form(max_length=200)] = ""
) -> RedirectResponse | HTMLResponse:
    """An operator token for a named account (no name: `admin`), given to the admin page in the fragment."""
    ctx = context(request)
    name = name.strip().lower() or SETTING_ACCOUNT
    wait = _login_wait(request, name)
    if wait:
        message = f"Too many wrong passwords: sign-in is locked, try again in {wait} s."
        return _login_page(request, message, 429, {"Retry-After": str(wait)})
    operator = await asyncio.to_thread(sign_in, ctx.stack.repo, name, password)  # argon2 takes ~50 ms
    if operator is None:
        ctx.limits.login_by_client.record(_client(request))
        ctx.limits.login_by_account.record(name)
        return _login_page(request, "Wrong operator name or password.", 401)
    ctx.limits.login_by_client.clear(_client(request))
    record_action(ctx.stack.repo, operator.name, "sign-in", time.time(), detail=f"from {_client(request)}")
    ttl = ctx.stack.settings.token_ttl_s
    token = ctx.signer.issue("admin", operator.name, None, ttl, generation=operator.generation)
    return RedirectResponse(f"/admin#token={token}", status_code=303)


@router.get("/admin")
async def admin_page(request: Request) -> FileResponse:
    return _page("admin.html", _operator_headers(request))
