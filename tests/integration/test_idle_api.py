"""The idle endpoints over HTTP: the page's presence (a beacon's token in its body) and the LMS's pre-resume.

The real ASGI app on SQLite with a real SSH server and the in-memory provider (tests/support/web_app.py);
what the markers do to deadlines: tests/integration/test_idle.py; the page in chromium:
tests/e2e/test_idle_page.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from tests.support.web_app import (
    COURSE,
    LMS_KEY,
    LMS_SECRET,
    bearer,
    drive,
    launch,
    lms_call,
    lms_jwt,
    serving,
)

from stacklab.types import Desired
from stacklab.wiring import App


@pytest.fixture
async def client(tmp_path: Path, sshd_port: int) -> AsyncIterator[tuple[httpx.AsyncClient, App]]:
    async with serving(tmp_path, sshd_port) as served:
        yield served


async def running_lab(http: httpx.AsyncClient, stack: App, learner: str) -> tuple[str, str]:
    body = await launch(http, learner)
    await drive(stack, body["environment"]["id"])
    return body["environment"]["id"], body["token"]


async def test_a_beacon_carries_its_token_in_the_body_never_needing_a_header(client) -> None:  # type: ignore[no-untyped-def]
    http, stack = client
    env, token = await running_lab(http, stack, "beacon")
    status = (await http.get(f"/api/v1/environments/{env}", headers=bearer(token))).json()
    assert status["idle_suspend_at"] > status["server_time"] and status["idle_warning_s"] == 60
    # What navigator.sendBeacon sends: a text/plain JSON string, no Authorization header.
    beacon = f'{{"state": "closed", "token": "{token}"}}'
    sent = await http.post(
        f"/api/v1/environments/{env}/presence", content=beacon, headers={"Content-Type": "text/plain"}
    )
    assert sent.status_code == 204, sent.text
    assert stack.repo.get(env).away_kind == "closed"
    status = (await http.get(f"/api/v1/environments/{env}", headers=bearer(token))).json()
    assert status["idle_suspend_at"] <= status["server_time"] + 45  # the close grace
    shown = await http.post(
        f"/api/v1/environments/{env}/presence", json={"state": "visible"}, headers=bearer(token)
    )
    assert shown.status_code == 204 and stack.repo.get(env).away_kind is None


async def test_presence_is_refused_without_a_writing_token_for_the_lab(client) -> None:  # type: ignore[no-untyped-def]
    http, stack = client
    env, token = await running_lab(http, stack, "owner")
    other_env, other = await running_lab(http, stack, "other")
    url = f"/api/v1/environments/{env}/presence"
    watch = await http.post(
        "/api/v1/launch",
        json={"course": COURSE, "lab": "hello-lab", "learner": "owner", "read_only": True},
        headers=lms_call(),
    )
    read_only = watch.json()["token"]
    cases = [
        ({"state": "closed"}, {}, 401),  # no token at all
        ({"state": "closed", "token": "not-a-token"}, {}, 401),
        ({"state": "closed", "token": other}, {}, 403),  # another learner's lab
        ({"state": "closed", "token": read_only}, {}, 403),  # a watcher never moves the lab
        ({"state": "closed", "token": lms_jwt()}, {}, 401),  # an LMS's JWT is not an access token
        ({"state": "closed", "token": token}, bearer(other), 403),  # a header wins over the body
        ({"state": "asleep", "token": token}, {}, 422),
        ({"state": "closed", "token": token, "extra": 1}, {}, 422),
    ]
    for body, headers, expected in cases:
        response = await http.post(url, json=body, headers=headers)
        assert response.status_code == expected, (body, response.text)
    garbage = await http.post(url, content=b"\xff\xfe", headers={"Content-Type": "text/plain"})
    assert garbage.status_code == 422
    assert stack.repo.get(env).away_kind is None and stack.repo.get(other_env).away_kind is None
    stack.environments.request(env, Desired.DELETED, "test")
    gone = await http.post(url, json={"state": "closed", "token": token})
    assert gone.status_code == 401  # a deleted lab's tokens are withdrawn


async def test_prepare_wakes_a_paused_lab_once_and_only_for_the_keys_courses(
    tmp_path: Path, sshd_port: int
) -> None:
    keys = {LMS_KEY: {"secret": LMS_SECRET, "courses": [COURSE]}}
    async with serving(tmp_path, sshd_port, lms_keys=keys) as (http, stack):
        await prepare_once(http, stack)


async def prepare_once(http: httpx.AsyncClient, stack: App) -> None:
    env, _token = await running_lab(http, stack, "viewer")
    body = {"course": COURSE, "lab": "hello-lab", "learner": "viewer"}
    assert (await http.post("/api/v1/prepare", json=body, headers=lms_call())).json() == {
        "woken": False,
        "progress": "ready",
    }
    stack.environments.request(env, Desired.SUSPENDED, "test")
    await drive(stack, env)
    woken = (await http.post("/api/v1/prepare", json=body, headers=lms_call())).json()
    assert woken["woken"] is True
    again = (await http.post("/api/v1/prepare", json=body, headers=lms_call())).json()
    assert again["woken"] is False
    await drive(stack, env)
    record = stack.repo.get(env)
    assert (record.observed, record.away_kind) == ("running", "preresume")
    nobody = {**body, "learner": "nobody"}
    assert (await http.post("/api/v1/prepare", json=nobody, headers=lms_call())).json() == {
        "woken": False,
        "progress": None,
    }
    assert all(r.learner != "nobody" for r in stack.repo.list())  # nothing created for a mere view
    elsewhere = await http.post(
        "/api/v1/prepare", json={**body, "course": "other-course"}, headers=lms_call()
    )
    assert elsewhere.status_code == 403  # the key acts for its courses only
    assert (await http.post("/api/v1/prepare", json=body)).status_code == 401
