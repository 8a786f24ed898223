"""The real web app in-process (httpx ASGITransport) on a real SQLite store, with the in-memory provider.

Shared by the API tests (tests/integration/test_web_api.py) and the attack corpus
(tests/reliability/test_attacks.py).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
from tests.support.memory_provider import MemoryProvider

from stacklab.config import Settings
from stacklab.web.app import create_app
from stacklab.wiring import App, build_app

LMS_KEY, LMS_SECRET = "edx-test", "s3cret-shared-with-the-lms-at-least-32-bytes"
COURSE = "course-v1:Org+C1+2026"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def lms_jwt(
    secret: str = LMS_SECRET, issuer: str = LMS_KEY, ttl_s: float = 60, jti: str | None = None, **claims: Any
) -> str:
    """An LMS's signed call token; a fresh `jti` each time unless one is given."""
    body = {
        "iss": issuer,
        "exp": int(time.time() + ttl_s),
        "jti": uuid.uuid4().hex if jti is None else jti,
        **claims,
    }
    return jwt.encode(body, secret, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_stack(tmp_path: Path, providers: dict[str, MemoryProvider], **extra: object) -> App:
    """The service on SQLite in tmp_path; `providers["_ssh"]` names the SSH server its nodes answer on."""
    values: dict[str, Any] = {
        "data_dir": str(tmp_path / "data"),
        "poll_interval_s": 0.01,
        "lms_keys": {LMS_KEY: LMS_SECRET},
        "admin_password": "operator-pass",
        "labs_dir": str(EXAMPLES),
        "token_ttl_s": 60,
        **extra,
    }
    return build_app(
        Settings(**values),
        {
            "local": lambda entry: providers.setdefault(
                entry.name, MemoryProvider(entry.name, {"ssh": providers["_ssh"].settings["ssh"]})
            )
        },
        follow_requeue=False,
    )


@contextlib.asynccontextmanager
async def serving(
    tmp_path: Path, ssh_port: int = 1, base_url: str = "http://testserver", **extra: object
) -> AsyncIterator[tuple[httpx.AsyncClient, App]]:
    """An HTTP client of the real app (no controller loop: tests drive environments themselves)."""
    stack = make_stack(tmp_path, {"_ssh": MemoryProvider("_ssh", {"ssh": ("127.0.0.1", ssh_port)})}, **extra)
    app = create_app(stack, run_engine=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url) as http:
            yield http, stack
    finally:
        stack.close()


async def launch(
    http: httpx.AsyncClient, learner: str, lab: str = "hello-lab", course: str = COURSE
) -> dict[str, Any]:
    response = await http.post(
        "/api/v1/launch",
        json={"course": course, "lab": lab, "learner": learner},
        headers=bearer(lms_jwt()),
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def drive(stack: App, env_id: str) -> None:
    """Reconcile until settled, after the passes the API itself kicked have finished.

    The API submits a pass to the runner on every request that moves an environment; driving the same
    environment from the test at the same time would be a second driver in this process, whose passes
    both take the process's lease and both finish the step (a launch counted twice, a step recorded twice).
    A server never does that: its runner keeps one pass per environment at a time.
    """
    await stack.engine.runner.idle()
    await stack.environments.drive(env_id, 30)


async def admin_token(http: httpx.AsyncClient, password: str = "operator-pass") -> str:
    login = await http.post("/admin/login", data={"password": password}, follow_redirects=False)
    assert login.status_code == 303, login.text
    return str(login.headers["location"].split("#token=")[1])


def lms_call() -> dict[str, str]:
    """Headers of one LMS call: a JWT is good for one call only."""
    return bearer(lms_jwt())
