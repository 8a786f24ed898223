"""HTML pages: index, the demo login, the learner's lab page and the operator view.

Tokens reach pages in the URL fragment (`#token=`), which browsers never send to servers, so tokens do
not end up in access logs or Referer headers.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from stacklab.web.context import context

STATIC_DIR = Path(__file__).parent / "static"
DEMO_COOKIE = "stacklab_demo"
DEMO_COURSE = "demo"

router = APIRouter(include_in_schema=False)


def _page(name: str) -> FileResponse:
    return FileResponse(STATIC_DIR / name, media_type="text/html", headers={"Cache-Control": "no-store"})


@router.get("/")
async def index() -> FileResponse:
    return _page("index.html")


@router.get("/lab/{env_id}")
async def lab_page(env_id: str) -> FileResponse:
    return _page("lab.html")


@router.get("/demo")
async def demo(request: Request) -> RedirectResponse:
    """A per-browser demo learner: launches the demo lab and opens its page."""
    ctx = context(request)
    settings = ctx.stack.settings
    if not settings.demo_enabled or not ctx.catalog.paths:
        raise HTTPException(status_code=404, detail="the demo is not enabled")
    learner = request.cookies.get(DEMO_COOKIE) or ""
    if not learner.startswith("demo-") or len(learner) != 21:
        learner = "demo-" + secrets.token_hex(8)
    lab_id = "hello-lab" if "hello-lab" in ctx.catalog.paths else sorted(ctx.catalog.paths)[0]
    record = ctx.stack.environments.launch(ctx.catalog.path(lab_id), learner, DEMO_COURSE)
    ctx.stack.engine.runner.submit(record.id)
    token = ctx.signer.issue("learner", learner, record.id, settings.token_ttl_s)
    response = RedirectResponse(f"/lab/{record.id}#token={token}", status_code=303)
    response.set_cookie(DEMO_COOKIE, learner, max_age=7 * 86400, httponly=True, samesite="lax")
    return response


LOGIN_FORM = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>stacklab operators</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/style.css"></head>
<body><main class="login"><h1>stacklab operators</h1>{error}
<form method="post" action="/admin/login"><label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button></form></main></body></html>"""


@router.get("/admin/login")
async def admin_login_form() -> HTMLResponse:
    return HTMLResponse(LOGIN_FORM.format(error=""))


@router.post("/admin/login", response_model=None)
async def admin_login(request: Request, password: Annotated[str, Form()]) -> RedirectResponse | HTMLResponse:
    ctx = context(request)
    if not hmac.compare_digest(password.encode(), ctx.admin_password.encode()):
        return HTMLResponse(LOGIN_FORM.format(error='<p role="alert">Wrong password.</p>'), status_code=401)
    token = ctx.signer.issue("admin", "operator", None, ctx.stack.settings.token_ttl_s)
    return RedirectResponse(f"/admin#token={token}", status_code=303)


@router.get("/admin")
async def admin_page() -> FileResponse:
    return _page("admin.html")
