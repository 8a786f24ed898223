"""Pre-resume from the XBlock in the xblock-sdk workbench against a real `stacklab serve` (LXC labs).

When the LMS renders the unit (the block's student view) the service is told at once, server side: the
learner's paused lab starts waking up before any script of the page runs or the learner clicks (the unit
is fetched here without a browser, so nothing but the render can have woken it). A lab woken so that gets
no activity is paused again after the lab's `pre_resume_idle` (seconds here); one whose learner types is
kept. The workbench and its venv are those of test_workbench.py; nothing asserts how long anything took.
"""

from __future__ import annotations

import json
import secrets
import shutil
import sqlite3
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.conftest import STATIC, Stacklab, serving_stacklab, stop
from tests.e2e.helpers import wait_for
from tests.xblock.test_workbench import (
    LMS_KEY,
    ROOT,
    Workbench,
    lab_frame,
    start_workbench,
    wait_connected,
    wait_output,
)

pytestmark = [pytest.mark.e2e, pytest.mark.lxc]

PRE_RESUME_IDLE_S = 6


class Service:
    def __init__(self, stacklab: Stacklab) -> None:
        self.stacklab = stacklab
        self.db = Path(stacklab.env["STACKLAB_DATA_DIR"]) / "stacklab.db"

    def row(self, env: str) -> dict:
        with sqlite3.connect(self.db) as db:
            db.row_factory = sqlite3.Row
            return dict(db.execute("SELECT * FROM environments WHERE id = ?", (env,)).fetchone())

    def reasons(self, env: str) -> list[str]:
        with sqlite3.connect(self.db) as db:
            rows = db.execute("SELECT reason FROM transitions WHERE env_id = ? ORDER BY id", (env,))
            return [reason for (reason,) in rows]

    def wait(self, env: str, observed: str, what: str, timeout_s: float = 60) -> None:
        wait_for(lambda: self.row(env)["observed"] == observed, timeout_s, what, interval_s=0.1)


@pytest.fixture(scope="module")
def service() -> Iterator[tuple[Service, str]]:
    """`stacklab serve` offering hello-lab with a pre-resume limit of seconds, and the workbench's key."""
    if not (STATIC / "dist" / "lab.js").exists():
        pytest.fail("the pages are not built: run scripts/dev setup")
    secret = secrets.token_urlsafe(40)
    labs = Path(tempfile.mkdtemp(prefix="stacklab-pre-resume-labs-"))
    hello = (ROOT / "examples" / "hello.yaml").read_text()
    short = f"  idle_suspend: 15m\n  pre_resume_idle: {PRE_RESUME_IDLE_S}s"
    (labs / "hello.yaml").write_text(hello.replace("  idle_suspend: 15m", short))
    lms_keys = {LMS_KEY: {"secret": secret, "courses": ["course-v1:StacklabX+*"]}}
    keys = {"STACKLAB_LMS_KEYS": json.dumps(lms_keys), "STACKLAB_LABS_DIR": str(labs)}
    try:
        with serving_stacklab("stacklab-pre-resume-", keys) as stacklab:
            yield Service(stacklab), secret
    finally:
        shutil.rmtree(labs, ignore_errors=True)


@pytest.fixture(scope="module")
def workbench(workbench_venv: Path, service: tuple[Service, str]) -> Iterator[Workbench]:
    svc, secret = service
    proc, bench = start_workbench(workbench_venv, svc.stacklab.url, secret)
    try:
        yield bench
    finally:
        stop(proc)
        shutil.rmtree(bench.workdir, ignore_errors=True)


def render(workbench: Workbench, student: str) -> None:
    """The LMS rendering the unit for the student: its HTML only, no script runs."""
    with urllib.request.urlopen(workbench.scenario(0, student), timeout=30) as response:
        assert response.status == 200
        assert b"stacklab-block" in response.read()


@pytest.fixture(scope="module")
def learner() -> dict:
    """The module's learner and their environment (the tests run in order on one lab)."""
    return {"student": f"pre-{uuid.uuid4().hex[:6]}"}


def test_rendering_the_unit_wakes_the_paused_lab_which_pauses_again_unused(
    workbench: Workbench, service: tuple[Service, str], page, learner: dict
) -> None:  # type: ignore[no-untyped-def]
    svc = service[0]
    student = learner["student"]
    render(workbench, student)  # a first view: no lab yet, nothing to wake, nothing created
    assert not workbench.user_state(student).get("environment")

    page.goto(workbench.scenario(0, student))  # the learner opens the lab in the unit once
    frame = lab_frame(page)
    wait_connected(frame)
    env = learner["env"] = workbench.user_state(student)["environment"]
    page.goto("about:blank")
    svc.stacklab.cli("env", "suspend", env, "--wait")

    render(workbench, student)
    svc.wait(env, "running", "the lab woken by the unit's render")
    reasons = svc.reasons(env)
    assert reasons.count("PreResume") == 1  # one call per view
    assert svc.row(env)["away_kind"] == "preresume"
    svc.wait(env, "suspended", "the unused pre-resumed lab paused again", timeout_s=PRE_RESUME_IDLE_S + 60)
    assert svc.reasons(env).count("PreResumeUnused") == 1


def test_a_pre_resumed_lab_whose_learner_types_is_kept(
    workbench: Workbench, service: tuple[Service, str], page, learner: dict
) -> None:  # type: ignore[no-untyped-def]
    svc = service[0]
    student, env = learner["student"], learner["env"]  # paused again by the test before
    assert svc.row(env)["observed"] == "suspended"
    page.goto(workbench.scenario(0, student))  # the unit in the browser: render, then its script and frame
    frame = lab_frame(page)
    wait_connected(frame)
    assert svc.reasons(env).count("PreResume") == 2  # this view's, after the test before's
    assert svc.row(env)["away_kind"] == "preresume"  # opening the page is not activity
    frame.locator(".term-host:not([hidden]) .xterm").click()
    page.keyboard.type("echo typed-$((4+5))")
    page.keyboard.press("Enter")
    wait_output(frame, "typed-9", 60)
    wait_for(lambda: svc.row(env)["away_kind"] is None, 10, "the learner's typing to end the pre-resume")
    assert svc.row(env)["observed"] == "running" and svc.reasons(env).count("PreResumeUnused") == 1
    page.goto("about:blank")
