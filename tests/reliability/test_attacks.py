"""The attack corpus, over HTTP against the real app: each probe gets its exact status and changes nothing.

Cross-learner, forged and malformed tokens, a replayed LMS JWT, an LMS key acting for another course, a
read-only token writing, a token of a deleted, reset or revoked lab, a foreign Origin with a forged Host,
and bad input (a non-ASCII token, NaN/Infinity bodies, an oversize body), the demo's caps, the admin
login's lockout and the /metrics token. The app is the real ASGI app on SQLite with a real SSH server;
labs run on the in-memory provider.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from tests.support.web_app import (
    COURSE,
    LMS_KEY,
    LMS_SECRET,
    admin_token,
    bearer,
    drive,
    launch,
    lms_call,
    lms_jwt,
    serving,
)

from stacklab.store.operators import add_operator, remove_operator
from stacklab.web.tokens import TokenSigner
from stacklab.wiring import App

OTHER_KEY, OTHER_SECRET = "other-lms", "another-lms-shared-secret-of-32-bytes-or-more"
KEYS = {
    LMS_KEY: {"secret": LMS_SECRET, "courses": ["course-v1:Org+*", "sandbox"]},
    OTHER_KEY: {"secret": OTHER_SECRET, "courses": ["course-v1:Other+X+1"]},
}
NON_ASCII_TOKEN = "Bearer t\u00f6k\u00e9n.\u00e4\u00e4".encode()


@pytest.fixture
async def client(tmp_path: Path, sshd_port: int) -> AsyncIterator[tuple[httpx.AsyncClient, App]]:
    async with serving(tmp_path, sshd_port, lms_keys=KEYS) as served:
        yield served


async def snapshot(stack: App) -> list[tuple[Any, ...]]:
    """What a probe must not change: every environment's states, version and history length.

    Taken once the passes the API kicked have finished, so that only the probes could change anything.
    """
    await stack.engine.runner.idle()
    return [
        (r.id, r.learner, r.desired, r.observed, r.version, r.token_generation, len(stack.repo.history(r.id)))
        for r in stack.repo.list()
    ]


def other_lms() -> dict[str, str]:
    return bearer(lms_jwt(secret=OTHER_SECRET, issuer=OTHER_KEY))


# tokens -------------------------------------------------------------------------------------------------
async def test_a_learner_token_reaches_no_other_learners_lab(client) -> None:  # type: ignore[no-untyped-def]
    http, stack = client
    a, b = await launch(http, "learner-a"), await launch(http, "learner-b")
    b_id = b["environment"]["id"]
    before = await snapshot(stack)
    for method, action in [
        ("GET", ""),
        ("GET", "/checks"),
        ("POST", "/resume"),
        ("POST", "/reset"),
        ("POST", "/checks"),
        ("POST", "/activity"),
        ("POST", "/token"),
        ("POST", "/suspend"),
        ("DELETE", ""),
    ]:
        response = await http.request(
            method, f"/api/v1/environments/{b_id}{action}", headers=bearer(a["token"])
        )
        assert response.status_code == 403, (method, action, response.text)
    for path in ("/api/v1/admin/environments", f"/api/v1/courses/{COURSE}/environments", "/api/v1/labs"):
        assert (await http.get(path, headers=bearer(a["token"]))).status_code == 403, path
    launched = await http.post(
        "/api/v1/launch",
        json={"course": COURSE, "lab": "hello-lab", "learner": "c"},
        headers=bearer(a["token"]),
    )
    assert launched.status_code == 403
    assert await snapshot(stack) == before


async def test_forged_and_malformed_tokens_get_401(client) -> None:  # type: ignore[no-untyped-def]
    http, stack = client
    body = await launch(http, "learner-a")
    env_id, token = body["environment"]["id"], body["token"]
    signer: TokenSigner = http._transport.app.state.ctx.signer  # type: ignore[attr-defined]
    header, claims, signature = token.split(".")
    admin_claims = signer.issue("admin", "learner-a", None, 60).split(".")[1]
    ours = jwt.decode(token, options={"verify_signature": False})
    forged = {
        "tampered signature": token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        "admin claims, learner signature": f"{header}.{admin_claims}.{signature}",
        "signed with another key": TokenSigner("not-the-service-key").issue("admin", "x", None, 60),
        "our claims signed with an LMS's secret": jwt.encode(ours, LMS_SECRET, algorithm="HS256"),
        "our claims, unsigned": jwt.encode({**ours, "role": "admin"}, None, algorithm="none"),
        "expired": signer.issue("learner", "learner-a", env_id, ttl_s=-1),
        "four parts, not a JWT": f"{header}.{claims}.{signature}.x",
        "junk": "garbage",
        "huge": "a" * 5000 + "." + "b" * 5000,
    }
    before = await snapshot(stack)
    for name, bad in forged.items():
        for method, path in [
            ("GET", f"/api/v1/environments/{env_id}"),
            ("POST", f"/api/v1/environments/{env_id}/reset"),
            ("POST", f"/api/v1/environments/{env_id}/token"),
            ("GET", "/api/v1/admin/environments"),
            ("POST", "/api/v1/admin/token"),
        ]:
            response = await http.request(method, path, headers=bearer(bad))
            assert response.status_code == 401, (name, path, response.text)
            assert response.json()["detail"], (name, path)
    for method, path in [  # an LMS's JWT is no learner's, nor an operator's token
        ("POST", f"/api/v1/environments/{env_id}/reset"),
        ("POST", f"/api/v1/environments/{env_id}/token"),
        ("GET", "/api/v1/admin/environments"),
        ("GET", "/api/v1/admin/audit"),
    ]:
        response = await http.request(method, path, headers=lms_call())
        assert response.status_code == 401, (path, response.text)
    for method, path in [
        ("GET", f"/api/v1/environments/{env_id}"),
        ("POST", f"/api/v1/environments/{env_id}/reset"),
        ("POST", "/api/v1/launch"),
        ("GET", "/api/v1/labs"),
    ]:
        response = await http.request(method, path, headers={"Authorization": NON_ASCII_TOKEN})
        assert response.status_code == 401, (path, response.text)
        assert "malformed" in response.json()["detail"]
    assert await snapshot(stack) == before


async def test_a_read_only_token_cannot_write(client) -> None:  # type: ignore[no-untyped-def]
    http, stack = client
    watched = await http.post(
        "/api/v1/launch",
        json={"course": COURSE, "lab": "hello-lab", "learner": "ro", "read_only": True},
        headers=lms_call(),
    )
    env_id, token = watched.json()["environment"]["id"], watched.json()["token"]
    await drive(stack, env_id)
    before = await snapshot(stack)
    for action in ("resume", "reset", "checks", "activity", "suspend"):
        response = await http.post(f"/api/v1/environments/{env_id}/{action}", headers=bearer(token))
        assert response.status_code == 403, (action, response.text)
    assert (await http.delete(f"/api/v1/environments/{env_id}", headers=bearer(token))).status_code == 403
    refreshed = (await http.post(f"/api/v1/environments/{env_id}/token", headers=bearer(token))).json()
    assert (
        await http.post(f"/api/v1/environments/{env_id}/reset", headers=bearer(refreshed["token"]))
    ).status_code == 403
    assert await snapshot(stack) == before and stack.repo.check_runs(env_id) == []


# LMS keys: replay and courses ---------------------------------------------------------------------------
async def test_an_lms_jwt_is_good_for_one_call(client) -> None:  # type: ignore[no-untyped-def]
    http, stack = client
    token = lms_jwt()
    first = await http.post(
        "/api/v1/launch", json={"course": COURSE, "lab": "hello-lab", "learner": "a"}, headers=bearer(token)
    )
    assert first.status_code == 200, first.text
    before = await snapshot(stack)
    replayed = await http.post(
        "/api/v1/launch", json={"course": COURSE, "lab": "hello-lab", "learner": "b"}, headers=bearer(token)
    )
    assert replayed.status_code == 401 and "replayed" in replayed.json()["detail"]
    assert (await http.get("/api/v1/labs", headers=bearer(token))).status_code == 401
    # Another LMS may use the same jti: ids are remembered per LMS key.
    same_id = bearer(lms_jwt(secret=OTHER_SECRET, issuer=OTHER_KEY, jti=_jti(token)))
    assert (await http.get("/api/v1/labs", headers=same_id)).status_code == 200
    for bad, detail in [
        (lms_jwt(jti=""), "jti"),
        (lms_jwt(jti="x" * 201), "jti"),
        (_without_jti(), "jti"),
    ]:
        response = await http.post(
            "/api/v1/launch", json={"course": COURSE, "lab": "hello-lab", "learner": "b"}, headers=bearer(bad)
        )
        assert response.status_code == 401 and detail in response.json()["detail"], response.text
    assert await snapshot(stack) == before


def _jti(token: str) -> str:
    import jwt

    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


def _without_jti() -> str:
    import time

    import jwt

    return jwt.encode({"iss": LMS_KEY, "exp": int(time.time() + 60)}, LMS_SECRET, algorithm="HS256")


async def test_an_lms_key_acts_only_for_its_courses(client) -> None:  # type: ignore[no-untyped-def]
    http, stack = client
    env_id = (await launch(http, "learner-a"))["environment"]["id"]
    body = {"course": COURSE, "lab": "hello-lab", "learner": "learner-a"}
    before = await snapshot(stack)
    for method, path, json_body in [
        ("POST", "/api/v1/launch", {**body, "learner": "new"}),
        ("POST", "/api/v1/observe", body),
        ("GET", f"/api/v1/courses/{COURSE}/environments", None),
        ("GET", f"/api/v1/environments/{env_id}", None),
        ("GET", f"/api/v1/environments/{env_id}/checks", None),
        ("POST", f"/api/v1/environments/{env_id}/checks", None),
        ("POST", f"/api/v1/environments/{env_id}/suspend", None),
        ("DELETE", f"/api/v1/environments/{env_id}", None),
        ("POST", f"/api/v1/courses/{COURSE}/learners/learner-a/revoke", None),
    ]:
        response = await http.request(method, path, json=json_body, headers=other_lms())
        assert response.status_code == 403, (path, response.text)
        assert COURSE in response.json()["detail"] and OTHER_KEY in response.json()["detail"], response.text
    # A prefix is a prefix of the course id, not of the organisation's name.
    near = await http.post(
        "/api/v1/launch", json={**body, "course": "course-v1:OrgX+C1+2026"}, headers=lms_call()
    )
    assert near.status_code == 403 and "course-v1:OrgX+C1+2026" in near.json()["detail"]
    assert await snapshot(stack) == before
    # Each key still does what it may: its own courses, exact and by prefix.
    assert (
        await http.post("/api/v1/launch", json={**body, "course": "sandbox"}, headers=lms_call())
    ).status_code == 200
    mine = await http.post(
        "/api/v1/launch", json={**body, "course": "course-v1:Other+X+1"}, headers=other_lms()
    )
    assert mine.status_code == 200, mine.text
    assert (await http.get("/api/v1/labs", headers=other_lms())).status_code == 200


# revocation ---------------------------------------------------------------------------------------------
async def test_a_deleted_lab_does_not_come_back_with_an_old_token(client) -> None:  # type: ignore[no-untyped-def]
    http, stack = client
    old = await launch(http, "learner-a")
    env_id, token = old["environment"]["id"], old["token"]
    await drive(stack, env_id)
    assert (await http.delete(f"/api/v1/environments/{env_id}", headers=lms_call())).status_code == 200
    await drive(stack, env_id)
    before = await snapshot(stack)
    for method, action in [("POST", "/token"), ("POST", "/resume"), ("POST", "/activity"), ("GET", "")]:
        response = await http.request(method, f"/api/v1/environments/{env_id}{action}", headers=bearer(token))
        assert response.status_code == 401 and "deleted" in response.json()["detail"], (action, response.text)
    assert await snapshot(stack) == before
    assert stack.repo.get(env_id).desired == "deleted"
    again = await launch(http, "learner-a")  # the learner opens the unit again: a new token works
    assert again["environment"]["id"] == env_id
    assert (
        await http.post(f"/api/v1/environments/{env_id}/token", headers=bearer(again["token"]))
    ).status_code == 200
    assert (await http.post(f"/api/v1/environments/{env_id}/token", headers=bearer(token))).status_code == 401


async def test_a_reset_withdraws_old_tokens_and_hands_the_learner_a_new_one(client) -> None:  # type: ignore[no-untyped-def]
    http, stack = client
    launched = await launch(http, "learner-a")
    env_id, token = launched["environment"]["id"], launched["token"]
    refreshed = (await http.post(f"/api/v1/environments/{env_id}/token", headers=bearer(token))).json()[
        "token"
    ]
    await drive(stack, env_id)
    reset = await http.post(f"/api/v1/environments/{env_id}/reset", headers=bearer(token))
    assert reset.status_code == 200, reset.text
    fresh = reset.json()["token"]
    assert fresh and reset.json()["id"] == env_id and reset.json()["expires_at"] > 0
    for old in (token, refreshed):
        response = await http.post(f"/api/v1/environments/{env_id}/token", headers=bearer(old))
        assert response.status_code == 401 and "reset" in response.json()["detail"]
    assert (await http.get(f"/api/v1/environments/{env_id}", headers=bearer(fresh))).status_code == 200
    assert (await http.post(f"/api/v1/environments/{env_id}/token", headers=bearer(fresh))).status_code == 200


async def test_the_lms_revokes_a_learners_tokens(client) -> None:  # type: ignore[no-untyped-def]
    http, stack = client
    a, b = await launch(http, "learner-a"), await launch(http, "learner-b")
    a_id = a["environment"]["id"]
    revoked = await http.post(f"/api/v1/courses/{COURSE}/learners/learner-a/revoke", headers=lms_call())
    assert revoked.status_code == 200 and revoked.json() == {"environments": [a_id]}
    for method, action in [("POST", "/token"), ("GET", ""), ("POST", "/resume")]:
        response = await http.request(
            method, f"/api/v1/environments/{a_id}{action}", headers=bearer(a["token"])
        )
        assert response.status_code == 401, (action, response.text)
    assert stack.repo.get(a_id).desired == "running"  # the lab itself is kept
    b_status = await http.get(f"/api/v1/environments/{b['environment']['id']}", headers=bearer(b["token"]))
    assert b_status.status_code == 200  # other learners are not touched
    again = await launch(http, "learner-a")
    assert (await http.get(f"/api/v1/environments/{a_id}", headers=bearer(again["token"]))).status_code == 200
    nobody = await http.post(f"/api/v1/courses/{COURSE}/learners/nobody/revoke", headers=lms_call())
    assert nobody.status_code == 200 and nobody.json() == {"environments": []}
    bad = await http.post(f"/api/v1/courses/{COURSE}/learners/a%20b/revoke", headers=lms_call())
    assert bad.status_code == 422


# the terminal's Origin check ----------------------------------------------------------------------------
async def websocket_close_code(app: Any, path: str, headers: dict[str, str]) -> int | None:
    """Open a websocket on the ASGI app as a browser would; the close code it answers with (None: open)."""
    sent: list[dict[str, Any]] = []
    inbox = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, Any]:
        return inbox.pop(0) if inbox else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    url, _, query = path.partition("?")
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "wss",
        "path": url,
        "raw_path": url.encode(),
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("203.0.113.9", 5000),
        "server": ("lab.example.org", 443),
        "subprotocols": [],
    }
    await app(scope, receive, send)
    codes = [m.get("code") for m in sent if m["type"] == "websocket.close"]
    return codes[0] if codes else None


async def test_a_foreign_origin_with_a_forged_host_opens_no_terminal(tmp_path: Path) -> None:
    async with serving(
        tmp_path, public_url="https://lab.example.org", allowed_origins=("https://lms.example.org",)
    ) as (http, _stack):
        app = http._transport.app  # type: ignore[attr-defined]
        token = app.state.ctx.signer.issue("learner", "a", "0000abcd", 60)
        path = f"/api/v1/environments/0000abcd/terminal/main?token={token}"
        for origin, host in [
            ("https://evil.example", "evil.example"),
            ("http://evil.example", "evil.example"),
            ("https://evil.example", "lab.example.org"),
        ]:
            code = await websocket_close_code(app, path, {"origin": origin, "host": host})
            assert code == 4403, (origin, host, code)
        # The configured origins pass the Origin check (and meet the next one: the token's environment).
        for origin in ("https://lab.example.org", "https://lms.example.org"):
            code = await websocket_close_code(app, path, {"origin": origin, "host": "lab.example.org"})
            assert code not in (None, 4403), (origin, code)


# bad input ----------------------------------------------------------------------------------------------
async def test_nan_infinity_and_malformed_bodies_get_422_with_a_message(client) -> None:  # type: ignore[no-untyped-def]
    http, stack = client
    for raw in [
        '{"course": NaN, "lab": "hello-lab", "learner": "x"}',
        '{"course": "c1", "lab": "hello-lab", "learner": Infinity}',
        '{"course": "c1", "lab": "hello-lab", "learner": "x", "read_only": -Infinity}',
        '{"course": "c1", "lab": "hello-lab", "learner": "x", "node": NaN}',
        "NaN",
        "[Infinity]",
        '{"course": "c1", "lab": "hello-lab", "learner": "x"',
        '{"course": "c1\\u0000", "lab": "hello-lab", "learner": "x"}',
    ]:
        for path in ("/api/v1/launch", "/api/v1/observe"):
            response = await http.post(
                path, content=raw, headers={**lms_call(), "content-type": "application/json"}
            )
            assert response.status_code == 422, (raw, response.text)
            assert isinstance(response.json()["detail"], str) and response.json()["detail"], raw
    assert stack.repo.list() == []


async def test_an_oversize_body_gets_413(client) -> None:  # type: ignore[no-untyped-def]
    http, stack = client
    big = '{"course": "c1", "lab": "hello-lab", "learner": "x", "pad": "' + "a" * 70_000 + '"}'
    response = await http.post(
        "/api/v1/launch", content=big, headers={**lms_call(), "content-type": "application/json"}
    )
    assert response.status_code == 413 and "Too Large" in response.text, response.text

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        for _ in range(100):
            yield b" " * 1024

    streamed = await http.post(
        "/api/v1/launch", content=chunks(), headers={**lms_call(), "content-type": "application/json"}
    )
    assert streamed.status_code == 413, streamed.text
    login = await http.post("/admin/login", data={"password": "p" * 100_000})
    assert login.status_code == 413
    assert stack.repo.list() == []


# the demo ------------------------------------------------------------------------------------------------
async def test_the_demo_is_off_unless_turned_on(client) -> None:  # type: ignore[no-untyped-def]
    http, stack = client
    response = await http.get("/demo", follow_redirects=False)
    assert response.status_code == 403 and "--demo" in response.json()["detail"]
    assert stack.repo.list() == []


async def test_the_demo_is_capped_per_client_and_in_total(tmp_path: Path) -> None:
    async with serving(tmp_path, demo_enabled=True, demo_launches_per_client=2, demo_max_environments=3) as (
        http,
        stack,
    ):
        for _ in range(2):
            http.cookies.clear()
            assert (await http.get("/demo", follow_redirects=False)).status_code == 303
        http.cookies.clear()
        limited = await http.get("/demo", follow_redirects=False)
        assert limited.status_code == 429 and "your address" in limited.json()["detail"]
        assert int(limited.headers["retry-after"]) > 0
        assert len(stack.repo.list()) == 2
        # Returning with the cookie reopens the same lab: that is not a new one.
        http.cookies.set("stacklab_demo", stack.repo.list()[0].learner)
        assert (await http.get("/demo", follow_redirects=False)).status_code == 303
        transport = httpx.ASGITransport(app=http._transport.app, client=("10.0.0.9", 4000))  # type: ignore[attr-defined]
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
            assert (await other.get("/demo", follow_redirects=False)).status_code == 303
            other.cookies.clear()
            full = await other.get("/demo", follow_redirects=False)
            assert full.status_code == 429 and "full" in full.json()["detail"]
        assert len(stack.repo.list()) == 3


# admin login and /metrics --------------------------------------------------------------------------------
async def test_admin_login_locks_out_a_guesser(tmp_path: Path) -> None:
    async with serving(tmp_path, admin_login_max_failures=3, admin_login_account_max_failures=5) as (http, _):
        for _ in range(3):
            assert (await http.post("/admin/login", data={"password": "guess"})).status_code == 401
        locked = await http.post("/admin/login", data={"password": "operator-pass"}, follow_redirects=False)
        assert locked.status_code == 429 and "locked" in locked.text
        assert 0 < int(locked.headers["retry-after"]) <= 300
        app = http._transport.app  # type: ignore[attr-defined]
        other = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("10.0.0.2", 1)), base_url="http://testserver"
        )
        async with other:
            ok = await other.post("/admin/login", data={"password": "operator-pass"}, follow_redirects=False)
            assert ok.status_code == 303  # another client is not locked out by this one ...
            for _ in range(2):
                assert (await other.post("/admin/login", data={"password": "guess"})).status_code == 401
            # ... until the account has seen too many wrong passwords from everywhere.
            account = await other.post(
                "/admin/login", data={"password": "operator-pass"}, follow_redirects=False
            )
            assert account.status_code == 429 and "retry-after" in account.headers


# operators ------------------------------------------------------------------------------------------------
async def test_a_removed_operators_token_acts_no_more(client) -> None:  # type: ignore[no-untyped-def]
    http, stack = client
    add_operator(stack.repo, "mallory", "mallory-password", time.time())
    env_id = (await launch(http, "learner-a"))["environment"]["id"]
    await drive(stack, env_id)
    login = {"name": "mallory", "password": "mallory-password"}
    token = (await http.post("/admin/login", data=login)).headers["location"].split("#token=")[1]
    refreshed = (await http.post("/api/v1/admin/token", headers=bearer(token))).json()["token"]
    app = http._transport.app  # type: ignore[attr-defined]
    origin = {"origin": app.state.ctx.public_url}
    # No such lab: the terminal takes the operator's token, then finds nothing to open (no shell is started).
    terminal = "/api/v1/environments/0000abcd/terminal/main?token="
    assert await websocket_close_code(app, terminal + token, origin) in (4404, 4409)
    remove_operator(stack.repo, "mallory", time.time())
    before = await snapshot(stack)
    for bad in (token, refreshed):
        for method, path in [
            ("GET", "/api/v1/admin/environments"),
            ("GET", "/api/v1/admin/audit"),
            ("POST", "/api/v1/admin/token"),
            ("POST", f"/api/v1/admin/environments/{env_id}/suspend"),
            ("POST", f"/api/v1/admin/environments/{env_id}/reset"),
            ("POST", f"/api/v1/admin/environments/{env_id}/observe"),
            ("POST", f"/api/v1/environments/{env_id}/reset"),
            ("DELETE", f"/api/v1/environments/{env_id}"),
            ("POST", f"/api/v1/courses/{COURSE}/learners/learner-a/revoke"),
            ("GET", "/api/v1/labs"),
        ]:
            response = await http.request(method, path, headers=bearer(bad))
            assert response.status_code == 401, (method, path, response.text)
            assert "no longer exists" in response.json()["detail"], (method, path)
        assert await websocket_close_code(app, terminal + bad, origin) == 4401
    assert (await http.post("/admin/login", data=login)).status_code == 401
    assert await snapshot(stack) == before


async def test_the_audit_log_and_operator_actions_are_for_operators_only(client) -> None:  # type: ignore[no-untyped-def]
    http, stack = client
    learner = await launch(http, "learner-a")
    env_id = learner["environment"]["id"]
    await drive(stack, env_id)
    watcher = await http.post(
        "/api/v1/launch",
        json={"course": COURSE, "lab": "hello-lab", "learner": "learner-a", "read_only": True},
        headers=lms_call(),
    )
    await admin_token(http)  # something in the log
    before = await snapshot(stack)
    paths = [
        ("GET", "/api/v1/admin/audit"),
        ("POST", f"/api/v1/admin/environments/{env_id}/observe"),
        ("POST", f"/api/v1/admin/environments/{env_id}/reset"),
    ]
    for method, path in paths:
        for who, headers, status in [
            ("learner", bearer(learner["token"]), 403),
            ("read-only", bearer(watcher.json()["token"]), 403),
            ("LMS", lms_call(), 401),
            ("another LMS", other_lms(), 401),
            ("nobody", {}, 401),
        ]:
            response = await http.request(method, path, headers=headers)
            assert response.status_code == status, (who, path, response.text)
            assert "sign-in" not in response.text, (who, path)
    assert await snapshot(stack) == before


async def test_metrics_can_require_a_token(tmp_path: Path) -> None:
    async with serving(tmp_path, metrics_token="prometheus-scrape-token") as (http, _):
        for headers in [{}, bearer("wrong"), {"Authorization": NON_ASCII_TOKEN}]:
            refused = await http.get("/metrics", headers=headers)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
            assert "stacklab_" not in refused.text
        scraped = await http.get("/metrics", headers=bearer("prometheus-scrape-token"))
        assert scraped.status_code == 200 and "stacklab_environments" in scraped.text
    async with serving(tmp_path / "open") as (http, _):
        assert (await http.get("/metrics")).status_code == 200  # no token configured: open, as before


async def test_the_database_is_readable_by_its_owner_only(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    http, _stack = client
    await launch(http, "learner-a")  # something written, so the WAL exists
    data = tmp_path / "data"
    assert stat.S_IMODE(data.stat().st_mode) & 0o077 in (0, 0o001)  # 0700 (+x for LXC paths at most)
    files = [data / "stacklab.db", data / "stacklab.db-wal", data / "stacklab.db-shm"]
    assert all(f.exists() for f in files)
    for file in files:
        assert stat.S_IMODE(os.stat(file).st_mode) == 0o600, file
