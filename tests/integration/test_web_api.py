"""The HTTP API: who may do what, bad input, secrets kept server-side, and fuzzing from the OpenAPI schema.

The app is the real ASGI app on a real SQLite store with a real SSH server; the provider is the in-memory
one (these tests are about the API, the LXC path is covered by the lifecycle and end-to-end tests).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from tests.support.memory_provider import MemoryProvider
from tests.support.web_app import (
    LMS_SECRET,
    admin_token,
    bearer,
    drive,
    launch,
    lms_call,
    lms_jwt,
    make_stack,
    serving,
)

from stacklab.types import Desired
from stacklab.web.app import create_app
from stacklab.wiring import App


@pytest.fixture
async def client(tmp_path: Path, sshd_port: int) -> AsyncIterator[tuple[httpx.AsyncClient, App]]:
    async with serving(tmp_path, sshd_port) as served:
        yield served


async def test_lms_launch_gives_a_learner_a_working_lab(client) -> None:  # type: ignore[no-untyped-def]
    http, stack = client
    body = await launch(http, "learner-a")
    env_id, token = body["environment"]["id"], body["token"]
    assert body["lab_url"].endswith(f"/lab/{env_id}#token={token}")
    await drive(stack, env_id)
    status = (await http.get(f"/api/v1/environments/{env_id}", headers=bearer(token))).json()
    assert (status["ready"], status["progress"], status["nodes"]) == (True, "ready", ["main"])
    report = (await http.post(f"/api/v1/environments/{env_id}/checks", headers=bearer(token))).json()
    assert (report["score"], report["max_score"]) == (0, 3)
    latest = (await http.get(f"/api/v1/environments/{env_id}/checks", headers=bearer(token))).json()
    assert latest["counted_score"] == 0 and len(latest["latest"]["results"]) == 2
    assert (await launch(http, "learner-a"))["environment"]["id"] == env_id
    # The LMS may read status and run checks for its learners (a fresh JWT per call: no replay).
    assert (await http.get(f"/api/v1/environments/{env_id}", headers=lms_call())).json()["ready"] is True
    assert (await http.post(f"/api/v1/environments/{env_id}/checks", headers=lms_call())).json()[
        "max_score"
    ] == 3
    bad = bearer(lms_jwt(secret="wrong-secret-of-a-decent-length-0123"))
    assert (await http.post(f"/api/v1/environments/{env_id}/checks", headers=bad)).status_code == 401


async def test_the_lab_list_says_which_nodes_a_unit_may_open(client) -> None:  # type: ignore[no-untyped-def]
    """Studio offers a unit's `node` from this list: only nodes learners may open, beside all nodes."""
    http, _stack = client
    labs = {lab["id"]: lab for lab in (await http.get("/api/v1/labs", headers=bearer(lms_jwt()))).json()}
    cluster = labs["cluster-lab"]
    assert cluster["learner_nodes"] == ["deploy"] and "worker1" in cluster["nodes"]


async def test_launch_options_read_only_token_and_first_node(client) -> None:  # type: ignore[no-untyped-def]
    http, stack = client
    body = {"course": "c1", "lab": "hello-lab", "learner": "ro-learner"}
    watched = await http.post(
        "/api/v1/launch", json={**body, "read_only": True, "node": "main"}, headers=lms_call()
    )
    assert watched.status_code == 200, watched.text
    launched = watched.json()
    env_id, token = launched["environment"]["id"], launched["token"]
    assert launched["lab_url"].endswith(f"/lab/{env_id}?node=main#token={token}")
    await drive(stack, env_id)
    # A read-only token reads the lab and its checks, but may not act on it.
    assert (await http.get(f"/api/v1/environments/{env_id}", headers=bearer(token))).json()["ready"]
    assert (await http.get(f"/api/v1/environments/{env_id}/checks", headers=bearer(token))).status_code == 200
    for action in ("resume", "reset", "checks", "activity"):
        response = await http.post(f"/api/v1/environments/{env_id}/{action}", headers=bearer(token))
        assert response.status_code == 403, (action, response.text)
    refreshed = (await http.post(f"/api/v1/environments/{env_id}/token", headers=bearer(token))).json()
    reset = await http.post(f"/api/v1/environments/{env_id}/reset", headers=bearer(refreshed["token"]))
    assert reset.status_code == 403  # a refreshed token stays read-only
    bad_node = await http.post(
        "/api/v1/launch", json={**body, "learner": "other", "node": "web"}, headers=lms_call()
    )
    assert bad_node.status_code == 422 and "'web'" in bad_node.json()["detail"]
    assert "main" in bad_node.json()["detail"]
    assert [r.learner for r in stack.repo.list()] == ["ro-learner"]  # the bad unit launched nothing


async def test_staff_observe_a_learners_lab_read_only(client) -> None:  # type: ignore[no-untyped-def]
    http, stack = client
    body = {"course": "course-v1:Org+C1+2026", "lab": "hello-lab", "learner": "learner-a"}
    missing = await http.post("/api/v1/observe", json=body, headers=lms_call())
    assert missing.status_code == 404 and "not opened" in missing.json()["detail"]
    assert stack.repo.list() == []  # watching never launches
    learner = await launch(http, "learner-a")
    env_id = learner["environment"]["id"]
    await drive(stack, env_id)
    stack.environments.request(env_id, Desired.SUSPENDED, "IdleTimeout")
    await drive(stack, env_id)
    watched = await http.post("/api/v1/observe", json=body, headers=lms_call())
    assert watched.status_code == 200, watched.text
    view = watched.json()
    assert view["environment"]["id"] == env_id and f"/lab/{env_id}#token=" in view["lab_url"]
    await drive(stack, env_id)  # a paused lab is woken up for the staff member to see
    status = (await http.get(f"/api/v1/environments/{env_id}", headers=bearer(view["token"]))).json()
    assert status["ready"] is True
    assert "StaffViewResumed" in [t.reason for t in stack.repo.history(env_id)]
    for action in ("resume", "reset", "checks"):
        response = await http.post(f"/api/v1/environments/{env_id}/{action}", headers=bearer(view["token"]))
        assert response.status_code == 403, action
    other = (await launch(http, "learner-b"))["environment"]["id"]
    assert (await http.get(f"/api/v1/environments/{other}", headers=bearer(view["token"]))).status_code == 403
    assert (
        await http.post("/api/v1/observe", json=body, headers=bearer(learner["token"]))
    ).status_code == 403


async def test_check_reports_carry_the_labs_score_policy(client) -> None:  # type: ignore[no-untyped-def]
    http, stack = client
    env_id = (await launch(http, "learner-p"))["environment"]["id"]
    before = (await http.get(f"/api/v1/environments/{env_id}/checks", headers=lms_call())).json()
    assert before == {"latest": None, "counted_score": None, "max_score": 3.0, "score_policy": "best"}
    await drive(stack, env_id)
    report = (await http.post(f"/api/v1/environments/{env_id}/checks", headers=lms_call())).json()
    assert (report["score_policy"], report["max_score"], report["counted_score"]) == ("best", 3.0, 0.0)


async def test_learners_reach_only_their_own_environment(client) -> None:  # type: ignore[no-untyped-def]
    http, _stack = client
    a, b = await launch(http, "learner-a"), await launch(http, "learner-b")
    b_id = b["environment"]["id"]
    for method, path in [
        ("GET", f"/api/v1/environments/{b_id}"),
        ("POST", f"/api/v1/environments/{b_id}/reset"),
        ("POST", f"/api/v1/environments/{b_id}/checks"),
        ("POST", f"/api/v1/environments/{b_id}/token"),
    ]:
        response = await http.request(method, path, headers=bearer(a["token"]))
        assert response.status_code == 403, (path, response.text)
    for path in ("/api/v1/admin/environments", "/api/v1/courses/c1/environments", "/api/v1/labs"):
        assert (await http.get(path, headers=bearer(a["token"]))).status_code == 403


async def test_expired_tampered_and_missing_tokens_are_refused(client) -> None:  # type: ignore[no-untyped-def]
    http, _stack = client
    body = await launch(http, "learner-a")
    env_id, token = body["environment"]["id"], body["token"]
    signer = http._transport.app.state.ctx.signer  # type: ignore[attr-defined]
    expired = signer.issue("learner", "learner-a", env_id, ttl_s=-1)
    header, _claims, signature = token.split(".")
    admin_claims = signer.issue("admin", "learner-a", None, 60).split(".")[1]
    forged = f"{header}.{admin_claims}.{signature}"
    for bad, reason in [
        (expired, "expired"),
        (token[:-10] + ("A" if token[-10] != "A" else "B") + token[-9:], "signature"),
        (token[:-2] + "xx", "malformed"),  # not even the encoding of a signature
        (forged, "signature"),
        ("garbage", "malformed"),
        ("", "missing"),
    ]:
        response = await http.get(f"/api/v1/environments/{env_id}", headers=bearer(bad))
        assert response.status_code == 401 and reason in response.json()["detail"], (bad, response.text)
    assert (await http.get(f"/api/v1/environments/{env_id}")).status_code == 401


async def test_lms_calls_need_a_valid_signed_jwt(client) -> None:  # type: ignore[no-untyped-def]
    http, _ = client
    body = {"course": "c1", "lab": "hello-lab", "learner": "x"}
    for token, detail in [
        (lms_jwt(secret="wrong-secret-of-a-decent-length-0123"), "invalid token"),
        (lms_jwt(issuer="someone-else"), "unknown issuer"),
        (lms_jwt(ttl_s=-120), "invalid token"),
        (lms_jwt(ttl_s=3600), "longer than"),
    ]:
        response = await http.post("/api/v1/launch", json=body, headers=bearer(token))
        assert response.status_code == 401 and detail in response.json()["detail"]


async def test_bad_input_gets_a_clear_4xx(client) -> None:  # type: ignore[no-untyped-def]
    http, stack = client
    unknown = await http.post(
        "/api/v1/launch", json={"course": "c1", "lab": "nope", "learner": "x"}, headers=lms_call()
    )
    assert unknown.status_code == 404 and "hello-lab" in unknown.json()["detail"]
    bad_learner = await http.post(
        "/api/v1/launch", json={"course": "c1", "lab": "hello-lab", "learner": "a b/c"}, headers=lms_call()
    )
    assert bad_learner.status_code == 422 and "learner" in bad_learner.text
    extra = await http.post(
        "/api/v1/launch",
        json={"course": "c1", "lab": "hello-lab", "learner": "x", "admin": True},
        headers=lms_call(),
    )
    assert extra.status_code == 422
    assert stack.repo.list() == []


async def test_operator_actions_go_through_the_controller(client) -> None:  # type: ignore[no-untyped-def]
    http, stack = client
    env_id = (await launch(http, "learner-a"))["environment"]["id"]
    await drive(stack, env_id)
    login = await http.post("/admin/login", data={"password": "wrong"})
    assert login.status_code == 401
    login = await http.post("/admin/login", data={"password": "operator-pass"}, follow_redirects=False)
    admin = login.headers["location"].split("#token=")[1]
    listed = (await http.get("/api/v1/admin/environments?state=running", headers=bearer(admin))).json()
    assert [e["id"] for e in listed] == [env_id]
    acted = (await http.post(f"/api/v1/admin/environments/{env_id}/suspend", headers=bearer(admin))).json()
    assert (acted["desired"], acted["observed"]) == ("suspended", "running")
    await drive(stack, env_id)
    detail = (await http.get(f"/api/v1/admin/environments/{env_id}", headers=bearer(admin))).json()
    assert detail["observed"] == "suspended"
    assert [h["reason"] for h in detail["history"]][-2:] == ["OperatorSuspend", "Suspended"]
    refreshed = (await http.post("/api/v1/admin/token", headers=bearer(admin))).json()
    assert (
        await http.get("/api/v1/admin/environments", headers=bearer(refreshed["token"]))
    ).status_code == 200
    learner_token = (await launch(http, "learner-b"))["token"]
    assert (await http.post("/api/v1/admin/token", headers=bearer(learner_token))).status_code == 403
    metrics = (await http.get("/metrics")).text
    assert 'stacklab_environments{observed="suspended"} 1.0' in metrics
    assert "stacklab_launch_seconds_count 1.0" in metrics


async def test_no_secret_in_any_response_or_log_line(client, caplog) -> None:  # type: ignore[no-untyped-def]
    http, stack = client
    caplog.set_level(logging.DEBUG)
    body = await launch(http, "learner-a")
    env_id, token = body["environment"]["id"], body["token"]
    await drive(stack, env_id)
    login = await http.post("/admin/login", data={"password": "operator-pass"}, follow_redirects=False)
    admin = login.headers["location"].split("#token=")[1]
    texts = [str(body)]
    for path, headers in [
        (f"/api/v1/environments/{env_id}", bearer(token)),
        (f"/api/v1/environments/{env_id}/checks", bearer(token)),
        (f"/api/v1/admin/environments/{env_id}", bearer(admin)),
        ("/api/v1/admin/environments", bearer(admin)),
        ("/metrics", {}),
        ("/openapi.json", {}),
    ]:
        texts.append((await http.get(path, headers=headers)).text)
    texts.append((await http.post(f"/api/v1/environments/{env_id}/checks", headers=bearer(token))).text)
    texts += [record.getMessage() for record in caplog.records]
    private_key = stack.controller.targets(
        stack.repo.get(env_id), stack.environments.lab_of(stack.repo.get(env_id))
    )["main"].private_key.reveal()
    for text in texts:
        assert "PRIVATE KEY" not in text and private_key.splitlines()[1] not in text
        assert "operator-pass" not in text and LMS_SECRET not in text


FUZZ_DIR = Path(tempfile.mkdtemp(prefix="stacklab-fuzz-"))
FUZZ_STACK = make_stack(FUZZ_DIR, {"_ssh": MemoryProvider("_ssh", {"ssh": ("127.0.0.1", 1)})})
FUZZ_APP = create_app(FUZZ_STACK, run_engine=False)
schema = schemathesis.openapi.from_asgi("/openapi.json", FUZZ_APP)
# Strings from all of Unicode (non-ASCII, NUL), plus the NaN/Infinity and non-ASCII poison below.
schema.config.generation.update(codec="utf-8", allow_x00=True, max_examples=15)
POISON = [None, float("nan"), float("inf"), float("-inf"), "t\u00f6k\u00e9n\u2603", "\x00"]
NON_ASCII_TOKEN = "Bearer t\u00f6k\u00e9n.\u00e4\u00e4"  # sent as Latin-1 bytes


@pytest.fixture(scope="module", autouse=True)
def _remove_fuzz_store() -> Iterator[None]:
    yield
    FUZZ_STACK.close()
    shutil.rmtree(FUZZ_DIR, ignore_errors=True)


def _fuzz_admin_token() -> str:
    """A real operator token, from the login form (once per module)."""
    if not hasattr(_fuzz_admin_token, "token"):
        import asyncio

        async def login() -> str:
            transport = httpx.ASGITransport(app=FUZZ_APP, client=("127.0.0.9", 1))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                return await admin_token(http)

        _fuzz_admin_token.token = asyncio.run(login())  # type: ignore[attr-defined]
    return _fuzz_admin_token.token  # type: ignore[attr-defined,no-any-return]


def _poisoned(case, poison: object) -> None:  # type: ignore[no-untyped-def]
    """NaN, Infinity or a non-ASCII string in place of a body field (schemathesis draws neither)."""
    if poison is not None and isinstance(case.body, dict) and case.body:
        case.body[sorted(case.body)[0]] = poison
        case.body = json.dumps(case.body).encode()  # as a browser or script would send it: NaN, Infinity


@schema.parametrize()
@schema.given(poison=st.sampled_from(POISON))
@hypothesis_settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzing_the_api_finds_no_server_error(case, poison) -> None:  # type: ignore[no-untyped-def]
    """Every operation, with an LMS JWT, a real operator token, a learner token and a non-ASCII one."""
    _poisoned(case, poison)
    signer = FUZZ_APP.state.ctx.signer
    for authorization in (
        f"Bearer {lms_jwt()}",
        f"Bearer {_fuzz_admin_token()}",
        f"Bearer {signer.issue('learner', 'x', '0000abcd', 60)}",
        NON_ASCII_TOKEN,
    ):
        response = case.call(headers={"Authorization": authorization})
        assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"


async def test_pages_and_static_files_carry_safe_headers(client) -> None:  # type: ignore[no-untyped-def]
    http, _stack = client
    page = await http.get("/")
    assert page.status_code == 200 and page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    static = await http.get("/static/style.css")
    assert static.status_code == 200 and static.headers["cache-control"] == "no-cache"


def directives(policy: str) -> dict[str, str]:
    return {d.split()[0]: " ".join(d.split()[1:]) for d in policy.split("; ")}


async def test_pages_carry_a_content_security_policy(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    http, _stack = client
    lab = await http.get("/lab/0000abcd")
    policy = directives(lab.headers["content-security-policy"])
    assert policy["script-src"] == "'self'" and policy["object-src"] == "'none'"
    assert policy["connect-src"] == "'self' ws://testserver wss://testserver"
    assert policy["frame-ancestors"] == "*"  # no LMS origin configured: the XBlock may embed it from anywhere
    assert "x-frame-options" not in lab.headers
    for path in ("/admin", "/admin/login"):
        page = await http.get(path)
        assert directives(page.headers["content-security-policy"])["frame-ancestors"] == "'none'", path
        assert page.headers["x-frame-options"] == "DENY", path
    wrong = await http.post("/admin/login", data={"password": "wrong"})
    assert wrong.status_code == 401 and wrong.headers["x-frame-options"] == "DENY"
    # What sets no policy of its own may not be framed: the static copy of a page, the API documentation.
    for path in ("/static/admin.html", "/docs", "/healthz"):
        response = await http.get(path)
        assert response.headers["content-security-policy"] == "frame-ancestors 'none'", path
        assert response.headers["x-frame-options"] == "DENY", path
    # A Host header that is not a host name is not written into the policy.
    odd = await http.get("/lab/0000abcd", headers={"host": "evil; script-src *"})
    assert directives(odd.headers["content-security-policy"])["connect-src"] == "'self'"

    lms = ("https://lms.example.org", "https://studio.example.org/", "bad; script-src *")
    providers = {"_ssh": MemoryProvider("_ssh", {"ssh": ("127.0.0.1", 1)})}
    stack = make_stack(tmp_path / "lms", providers, allowed_origins=lms)
    transport = httpx.ASGITransport(app=create_app(stack, run_engine=False))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="https://lab.example.org") as other:
            policy = directives((await other.get("/lab/0000abcd")).headers["content-security-policy"])
            assert policy["frame-ancestors"] == "'self' https://lms.example.org https://studio.example.org"
            assert policy["script-src"] == "'self'"
            admin = directives((await other.get("/admin")).headers["content-security-policy"])
            assert admin["frame-ancestors"] == "'none'"
    finally:
        stack.close()
