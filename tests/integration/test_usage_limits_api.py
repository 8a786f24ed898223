"""Usage limits through the HTTP API (real app, real SQLite, real SSH server, in-memory provider): the
remaining time in the environment status, `block` (a resume refused with a sentence, the last check results
still readable, a lab page that opens paused) and `warn`, and staff grants by an LMS key bound to the course
(audited, listed) and refused for another course."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from tests.support.web_app import COURSE, LMS_KEY, LMS_SECRET, bearer, drive, launch, lms_call, serving

from stacklab.store.operators import audit_entries
from stacklab.wiring import App

TINY_HOURS = 0.0004
"""1.44 s of running time: a limit a test can use up."""


def _lab(labs: Path, lab_id: str, policy: str) -> None:
    (labs / f"{lab_id}.yaml").write_text(
        textwrap.dedent(
            f"""\
            schema: 1
            id: {lab_id}
            title: Limited
            login_user: learner
            local: {{nodes: [{{name: main}}]}}
            checks: [{{name: always, node: main, script: "true"}}]
            usage_limit: {{hours: {TINY_HOURS}, per: total, policy: {policy}}}
            """
        )
    )


@pytest.fixture
async def client(tmp_path: Path, sshd_port: int) -> AsyncIterator[tuple[httpx.AsyncClient, App]]:
    labs = tmp_path / "labs"
    labs.mkdir()
    _lab(labs, "blocked-lab", "block")
    _lab(labs, "warned-lab", "warn")
    bound = {LMS_KEY: {"secret": LMS_SECRET, "courses": [COURSE]}}  # this LMS acts for COURSE only
    async with serving(tmp_path, sshd_port, labs_dir=str(labs), lms_keys=bound) as served:
        yield served


async def _use_up(stack: App, env_id: str) -> None:
    """Run past the limit (wall clock), then the pass the scheduler sends at the deadline."""
    deadline = stack.repo.get(env_id).usage_limit_at or 0.0
    await asyncio.sleep(max(0.0, deadline - stack.controller.clock()) + 0.05)
    await stack.controller.reconcile(env_id)
    await drive(stack, env_id)


async def test_block_refuses_keeps_checks_readable_and_a_grant_lets_the_learner_resume(
    client: tuple[httpx.AsyncClient, App],
) -> None:
    http, stack = client
    opened = await launch(http, "ada", lab="blocked-lab")
    env_id, token = opened["environment"]["id"], opened["token"]
    await drive(stack, env_id)
    status = (await http.get(f"/api/v1/environments/{env_id}", headers=bearer(token))).json()
    usage = status["usage"]
    assert (usage["policy"], usage["per"], usage["counting"], usage["blocked"]) == (
        "block",
        "total",
        True,
        False,
    )
    assert 0 < usage["remaining_s"] <= TINY_HOURS * 3600
    assert (
        await http.post(f"/api/v1/environments/{env_id}/checks", headers=bearer(token))
    ).status_code == 200
    await _use_up(stack, env_id)
    status = (await http.get(f"/api/v1/environments/{env_id}", headers=bearer(token))).json()
    assert status["observed"] == "suspended" and status["usage"]["blocked"]
    assert status["usage"]["remaining_s"] == 0 and "ask your course staff" in status["message"]
    refused = await http.post(f"/api/v1/environments/{env_id}/resume", headers=bearer(token))
    assert refused.status_code == 409 and "You have used all" in refused.json()["detail"]
    assert refused.json()["reason"] == "UsageLimit"  # the XBlock shows the sentence as it is
    checked = await http.post(f"/api/v1/environments/{env_id}/checks", headers=lms_call())
    assert checked.status_code == 409 and checked.json()["reason"] == "UsageLimit"
    assert (
        await http.post(f"/api/v1/environments/{env_id}/activity", headers=bearer(token))
    ).status_code == 204
    assert stack.repo.get(env_id).desired == "suspended"  # a late keystroke wakes nothing past the limit
    # The read-only view: the last check results are still there; the lab page opens, paused.
    latest = (await http.get(f"/api/v1/environments/{env_id}/checks", headers=bearer(token))).json()
    assert latest["latest"]["results"][0]["passed"] is True
    again = await launch(http, "ada", lab="blocked-lab")
    assert again["environment"]["desired"] == "suspended" and again["environment"]["usage"]["blocked"]
    # Course staff grant time from the LMS (the key's course only); the learner resumes.
    path = f"/api/v1/courses/{COURSE}/learners/ada/grants"
    body = {"lab": "blocked-lab", "hours": 1, "reason": "the cloud was down on Tuesday", "staff": "prof-x"}
    other = await http.post(
        "/api/v1/courses/course-v1:Else+C9+2026/learners/ada/grants", json=body, headers=lms_call()
    )
    assert other.status_code == 403 and "may not act for course" in other.json()["detail"], other.text
    assert (await http.post(path, json={**body, "hours": -1}, headers=lms_call())).status_code == 422
    granted = await http.post(path, json=body, headers=lms_call())
    assert granted.status_code == 200, granted.text
    grant = granted.json()
    assert grant["environment"] == env_id and not grant["usage"]["over"]
    assert [(g["hours"], g["reason"]) for g in grant["grants"]] == [(1, "the cloud was down on Tuesday")]
    assert "prof-x" in grant["grants"][0]["granted_by"]
    listed = (await http.get(path, params={"lab": "blocked-lab"}, headers=lms_call())).json()
    assert listed["grants"] == grant["grants"]
    (entry,) = [e for e in audit_entries(stack.repo, 10, None, env_id, None) if e.action == "grant"]
    assert "prof-x" in entry.operator and "Tuesday" in entry.detail
    resumed = await http.post(f"/api/v1/environments/{env_id}/resume", headers=bearer(token))
    assert resumed.status_code == 200, resumed.text
    await drive(stack, env_id)
    assert stack.repo.get(env_id).observed == "running"


async def test_warn_only_tells(client: tuple[httpx.AsyncClient, App]) -> None:
    http, stack = client
    opened = await launch(http, "bea", lab="warned-lab")
    env_id, token = opened["environment"]["id"], opened["token"]
    await drive(stack, env_id)
    assert stack.repo.get(env_id).usage_limit_at is None
    await asyncio.sleep(TINY_HOURS * 3600 + 0.1)
    await stack.controller.reconcile(env_id)
    status = (await http.get(f"/api/v1/environments/{env_id}", headers=bearer(token))).json()
    assert status["observed"] == "running" and status["usage"]["over"] and not status["usage"]["blocked"]
    assert "You may go on working" in status["usage"]["message"] and status["message"] == ""
    assert (
        await http.post(f"/api/v1/environments/{env_id}/resume", headers=bearer(token))
    ).status_code == 200
