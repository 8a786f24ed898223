"""Idle means idle, in chromium against a real `stacklab serve` with a real LXC lab (docs/idle.md).

One lab with short timeouts (seconds) for the whole module, opened through the LMS API like a unit does; the
tests run in order on one environment: the warning's countdown and a key press that keeps the lab, a build
that keeps it running (`keep_running_while` on the LXC node), the pause when nobody acts, the page's hidden
and visible reports, a reload or a second tab closing that keeps the lab, and the last tab closing that
pauses it. Nothing asserts how long
anything took: the tests wait for states, and read the service's records (its SQLite file) for reasons.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from tests.e2e.conftest import Stacklab, serving_stacklab
from tests.e2e.helpers import run_in_terminal, wait_connected, wait_for, wait_output

pytestmark = [pytest.mark.e2e, pytest.mark.lxc]

LMS_KEY = "idle-tests"
COURSE = "course-v1:Idle+I1+2026"
IDLE_S, WARNING_S, CLOSE_GRACE_S = 10, 6, 3
IDLE_LAB = f"""\
schema: 1
id: idle-lab
title: Idle lab
login_user: learner
providers:
  - name: local
    type: local
local:
  nodes:
    - name: main
      memory_mb: 128
keep_running_while:
  node: main
  script: test -e /tmp/build-running
  timeout: 10s
timeouts:
  launch: 5m
  idle_suspend: {IDLE_S}s
  idle_warning: {WARNING_S}s
  idle_suspend_hidden: 6s
  close_grace: {CLOSE_GRACE_S}s
"""
LAUNCH_S = 300


class Lab:
    """The module's lab: the service, the environment, and the lab page's URL with its token."""

    def __init__(self, service: Stacklab, secret: str) -> None:
        self.service = service
        self.secret = secret
        body = {"course": COURSE, "lab": "idle-lab", "learner": f"idle-{uuid.uuid4().hex[:6]}"}
        launched = self.lms("POST", "/api/v1/launch", body)
        self.env = launched["environment"]["id"]
        self.token = launched["token"]
        self.url = launched["lab_url"]
        self.db = Path(service.env["STACKLAB_DATA_DIR"]) / "stacklab.db"

    def lms(self, method: str, path: str, body: object) -> dict:
        claims = {
            "iss": LMS_KEY,
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
            "jti": uuid.uuid4().hex,
        }
        request = urllib.request.Request(
            self.service.url + path,
            data=json.dumps(body).encode(),
            method=method,
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {jwt.encode(claims, self.secret, algorithm='HS256')}",
            },
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    def status(self) -> dict:
        request = urllib.request.Request(
            f"{self.service.url}/api/v1/environments/{self.env}",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    def activity(self) -> None:
        """Learner activity, as the page reports it (keeps the idle deadline away from what is tested)."""
        request = urllib.request.Request(
            f"{self.service.url}/api/v1/environments/{self.env}/activity",
            method="POST",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 204

    def row(self) -> dict:
        with sqlite3.connect(self.db) as db:
            db.row_factory = sqlite3.Row
            row = db.execute("SELECT * FROM environments WHERE id = ?", (self.env,)).fetchone()
            return dict(row)

    def reasons(self) -> list[str]:
        with sqlite3.connect(self.db) as db:
            rows = db.execute("SELECT reason FROM transitions WHERE env_id = ? ORDER BY id", (self.env,))
            return [reason for (reason,) in rows]

    def wait_observed(self, state: str, timeout_s: float = 60) -> None:
        wait_for(lambda: self.status()["observed"] == state, timeout_s, f"the lab {state}")


@pytest.fixture(scope="module")
def lab(built_pages: None) -> Iterator[Lab]:
    secret = uuid.uuid4().hex * 2
    labs = Path(tempfile.mkdtemp(prefix="stacklab-idle-labs-"))
    (labs / "idle.yaml").write_text(IDLE_LAB)
    extra = {
        "STACKLAB_LABS_DIR": str(labs),
        "STACKLAB_LMS_KEYS": json.dumps({LMS_KEY: {"secret": secret, "courses": ["course-v1:Idle+*"]}}),
        "STACKLAB_ACTIVITY_THROTTLE_S": "1",  # idle limits of seconds: activity is written at once
    }
    try:
        with serving_stacklab("stacklab-e2e-idle-", extra) as service:
            yield Lab(service, secret)
    finally:
        shutil.rmtree(labs, ignore_errors=True)


@pytest.fixture(scope="module")
def lab_page(browser, lab: Lab) -> Iterator[object]:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto(lab.url)
    wait_connected(page, timeout_s=LAUNCH_S)
    wait_output(page, "$ ", timeout_s=60)
    yield page
    context.close()


def warning(page) -> object:  # type: ignore[no-untyped-def]
    return page.locator("#idle-warning")


def test_the_page_warns_with_a_countdown_and_a_key_press_keeps_the_lab(lab_page, lab: Lab) -> None:  # type: ignore[no-untyped-def]
    page = lab_page
    deadline = lab.status()["idle_suspend_at"]
    warning(page).wait_for(state="visible", timeout=(IDLE_S + 10) * 1000)
    text = page.locator("#idle-text").inner_text()
    assert text.startswith("Pausing in ") and text.endswith(" s — press any key to keep working")
    first = int(warning(page).get_attribute("data-seconds"))
    wait_for(lambda: int(warning(page).get_attribute("data-seconds") or 0) < first, 5, "the countdown")
    page.keyboard.press("Shift")  # any key: nothing reaches the shell
    warning(page).wait_for(state="hidden")
    wait_for(lambda: lab.status()["idle_suspend_at"] > deadline, 10, "the deadline to move")
    assert lab.status()["ready"]
    assert "Idle" not in lab.reasons()


def test_a_running_build_keeps_the_lab_through_its_idle_deadline(lab_page, lab: Lab) -> None:  # type: ignore[no-untyped-def]
    page = lab_page
    run_in_terminal(page, "touch /tmp/build-running && echo build-$((20+1))")
    wait_output(page, "build-21")
    wait_for(lambda: "KeptRunning" in lab.reasons(), IDLE_S + 30, "keep_running_while to keep the lab")
    warning(page).wait_for(state="hidden")  # the page sees the lab kept, with a new deadline
    assert lab.status()["ready"] and "Idle" not in lab.reasons()


def test_nobody_acting_pauses_the_lab_and_the_page_shows_it_paused(lab_page, lab: Lab) -> None:  # type: ignore[no-untyped-def]
    page = lab_page
    run_in_terminal(page, "rm /tmp/build-running && echo done-$((30+3))")  # the build ended
    wait_output(page, "done-33")
    warning(page).wait_for(state="visible", timeout=(IDLE_S + 10) * 1000)
    page.get_by_role("button", name="Resume my lab").wait_for(timeout=(IDLE_S + 30) * 1000)
    lab.wait_observed("suspended")
    reasons = lab.reasons()
    assert "NotKeptRunning" in reasons and reasons.index("Idle") > reasons.index("KeptRunning")


def test_the_page_reports_hidden_and_visible(lab_page, lab: Lab) -> None:  # type: ignore[no-untyped-def]
    page = lab_page
    page.get_by_role("button", name="Resume my lab").click()
    wait_connected(page, timeout_s=LAUNCH_S)
    page.evaluate(
        """() => { Object.defineProperty(document, "visibilityState", {value: "hidden", configurable: true});
                   document.dispatchEvent(new Event("visibilitychange")); }"""
    )
    wait_for(lambda: lab.row()["away_kind"] == "hidden", 10, "the hidden page reported")
    assert lab.row()["away_limit_s"] == 6
    page.evaluate(
        """() => { Object.defineProperty(document, "visibilityState", {value: "visible", configurable: true});
                   document.dispatchEvent(new Event("visibilitychange")); }"""
    )
    wait_for(lambda: lab.row()["away_kind"] is None, 10, "the visible page reported")


def test_a_reload_or_another_tab_closing_keeps_the_lab_and_the_last_tab_closing_pauses_it(
    lab_page, lab: Lab
) -> None:  # type: ignore[no-untyped-def]
    page = lab_page
    other = page.context.new_page()  # a second tab of the same lab
    other.goto(lab.url)
    wait_connected(other, timeout_s=60)
    page.reload()  # the old page's beacon says closed; the new page opens the lab again, which ends that
    wait_connected(page, timeout_s=60)
    other.close(run_before_unload=True)  # its beacon says closed; this tab, still open, answers visible
    lab.activity()  # the plain idle deadline (10 s) stays beyond the close grace (3 s) waited for
    left = time.time()
    # Past the grace and a scheduler tick (a state, not a duration, is asserted): the lab still runs.
    wait_for(lambda: time.time() > left + CLOSE_GRACE_S + 3, CLOSE_GRACE_S + 10, "the close grace to pass")
    assert lab.status()["observed"] == "running"
    assert "PageClosed" not in lab.reasons()
    assert lab.row()["away_kind"] is None

    lab.activity()
    page.close(run_before_unload=True)  # the last tab closes: its pagehide beacon is the last word
    wait_for(lambda: "PageClosed" in lab.reasons(), 30, "the closed tab's pause")
    lab.wait_observed("suspended")
