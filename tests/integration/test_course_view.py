"""The course view's API (web/course_view.py): the LMS gets course staff a token for its course; that token
reads the class (state, score history, time used, last activity) and watches learners' labs read-only, and
nothing else; operators read the same and the cost report; the Prometheus series follow the transitions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from tests.support.web_app import COURSE, admin_token, bearer, drive, launch, lms_call, lms_jwt, serving

from stacklab.types import Desired
from stacklab.wiring import App


@pytest.fixture
async def client(tmp_path: Path, sshd_port: int) -> AsyncIterator[tuple[httpx.AsyncClient, App]]:
    async with serving(tmp_path, sshd_port) as served:
        yield served


async def test_course_staff_see_their_class_and_watch_a_lab_read_only(client) -> None:  # type: ignore[no-untyped-def]
    http, stack = client
    ada = await launch(http, "ada")
    ada_id = ada["environment"]["id"]
    await drive(stack, ada_id)
    await launch(http, "bob")
    await launch(http, "eve", course="course-v1:Org+Other+2026")
    for _ in range(2):  # two attempts: the history keeps both
        checked = await http.post(f"/api/v1/environments/{ada_id}/checks", headers=bearer(ada["token"]))
        assert checked.status_code == 200, checked.text

    view = await http.post(
        f"/api/v1/courses/{COURSE}/staff-view", json={"lab": "hello-lab", "staff": "sam"}, headers=lms_call()
    )
    assert view.status_code == 200, view.text
    staff = view.json()
    assert (
        staff["url"]
        .split(":8080", 1)[1]
        .startswith("/course?course=course-v1%3AOrg%2BC1%2B2026&lab=hello-lab#token=")
    )
    token = staff["token"]

    listed = await http.get(f"/api/v1/courses/{COURSE}/class?lab=hello-lab", headers=bearer(token))
    assert listed.status_code == 200, listed.text
    rows = {r["learner"]: r for r in listed.json()}
    assert sorted(rows) == ["ada", "bob"]  # the other course's learner is not in this class
    assert rows["ada"]["observed"] == "running" and rows["bob"]["observed"] in ("new", "creating")
    assert [a["score"] for a in rows["ada"]["attempts"]] == [0.0, 0.0]
    assert rows["ada"]["counted_score"] == 0.0 and rows["ada"]["max_score"] == 3.0
    assert rows["bob"]["attempts"] == [] and rows["bob"]["counted_score"] is None
    assert rows["ada"]["running_s"] >= 0 and rows["ada"]["last_activity_at"] > 0
    assert rows["bob"]["queue_position"] is None or rows["bob"]["queue_position"] >= 1

    watched = await http.post(
        f"/api/v1/courses/{COURSE}/class/ada/watch", json={"lab": "hello-lab"}, headers=bearer(token)
    )
    assert watched.status_code == 200, watched.text
    lab_token = watched.json()["token"]
    assert f"/lab/{ada_id}#token=" in watched.json()["lab_url"]
    status = await http.get(f"/api/v1/environments/{ada_id}", headers=bearer(lab_token))
    assert status.status_code == 200
    typed = await http.post(f"/api/v1/environments/{ada_id}/checks", headers=bearer(lab_token))
    assert typed.status_code == 403  # read-only

    # The staff token reaches its own course's class only, and nothing of the LMS's or operators' calls.
    other = await http.get("/api/v1/courses/course-v1:Org+Other+2026/class", headers=bearer(token))
    assert other.status_code == 403 and "course-v1:Org+C1+2026" in other.json()["detail"]
    refused = [
        await http.get(f"/api/v1/environments/{ada_id}", headers=bearer(token)),
        await http.post(f"/api/v1/environments/{ada_id}/suspend", headers=bearer(token)),
        await http.post(
            "/api/v1/launch",
            json={"course": COURSE, "lab": "hello-lab", "learner": "x"},
            headers=bearer(token),
        ),
        await http.post(f"/api/v1/courses/{COURSE}/staff-view", json={}, headers=bearer(token)),
        await http.get("/api/v1/admin/environments", headers=bearer(token)),
        await http.get("/api/v1/admin/usage", headers=bearer(token)),
        await http.get(f"/api/v1/courses/{COURSE}/environments", headers=bearer(token)),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    renewed = await http.post(f"/api/v1/courses/{COURSE}/staff-token", headers=bearer(token))
    assert renewed.status_code == 200
    again = await http.get(f"/api/v1/courses/{COURSE}/class", headers=bearer(renewed.json()["token"]))
    assert len(again.json()) == 2
    # An LMS key limited to other courses may not open this one's view.
    foreign = await http.get(f"/api/v1/courses/{COURSE}/class", headers=bearer(lms_jwt(issuer="nobody")))
    assert foreign.status_code == 401


async def test_operators_read_the_class_and_the_cost_report_and_metrics(client) -> None:  # type: ignore[no-untyped-def]
    http, stack = client
    ada = (await launch(http, "ada"))["environment"]["id"]
    await drive(stack, ada)
    stack.environments.request(ada, Desired.SUSPENDED, "TestRequest")
    await drive(stack, ada)
    operator = bearer(await admin_token(http))
    listed = (await http.get(f"/api/v1/courses/{COURSE}/class", headers=operator)).json()
    assert [r["learner"] for r in listed] == ["ada"] and listed[0]["observed"] == "suspended"

    report = await http.get("/api/v1/admin/usage", params={"course": COURSE}, headers=operator)
    assert report.status_code == 200, report.text
    body = report.json()
    assert [(r["lab"], r["environments"]) for r in body["rows"]] == [("hello-lab", 1)]
    assert body["rows"][0]["running_node_hours"] > 0 and body["totals"]["currency"] is None
    chart = body["series"]
    assert len(chart["times"]) == len(chart["running"]) == len(chart["suspended"]) == len(chart["queued"])
    assert chart["suspended"][-1] > 0  # paused now: the last bucket holds suspended time
    everything = (await http.get("/api/v1/admin/usage", headers=operator)).json()
    keys = [(r["course"], r["lab"], r["week"]) for r in body["rows"]]
    assert (
        everything["course"] is None
        and [(r["course"], r["lab"], r["week"]) for r in everything["rows"]] == keys
    )
    bad = await http.get("/api/v1/admin/usage?since=yesterday", headers=operator)
    assert bad.status_code == 422 and "since" in bad.json()["detail"]

    metrics = (await http.get("/metrics")).text
    assert f'stacklab_node_seconds_total{{course="{COURSE}",lab="hello-lab",state="running"}}' in metrics
    assert f'stacklab_nodes{{course="{COURSE}",lab="hello-lab",state="suspended"}} 1.0' in metrics
    assert "stacklab_queued_seconds_total" in metrics


ONE_SLOT = """\
schema: 1
id: one-slot
title: One at a time
login_user: learner
providers:
  - {name: local, type: local, capacity: 1}
local:
  nodes: [{name: main}]
"""


async def test_the_class_shows_each_learners_place_in_the_admission_queue(
    tmp_path: Path, sshd_port: int
) -> None:
    labs = tmp_path / "labs"
    labs.mkdir()
    (labs / "one-slot.yaml").write_text(ONE_SLOT)
    async with serving(tmp_path, sshd_port, labs_dir=str(labs)) as (http, stack):
        for learner in ("ada", "bob", "cy"):  # ada takes the only slot; bob, then cy, wait in line
            env_id = (await launch(http, learner, lab="one-slot"))["environment"]["id"]
            await stack.engine.runner.idle()
            await stack.controller.reconcile(env_id)
        operator = bearer(await admin_token(http))
        listed = (await http.get(f"/api/v1/courses/{COURSE}/class", headers=operator)).json()
        assert {r["learner"]: r["queue_position"] for r in listed} == {"ada": None, "bob": 1, "cy": 2}
