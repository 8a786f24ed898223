"""The XBlock in the xblock-sdk workbench (a real XBlock runtime) against a real `stacklab serve` (LXC labs).

The workbench lives in its own venv (/var/lib/stacklab-xblock/venv, built once, stamped) because its pins
(Django 4.2, XBlock 6) do not belong in the project's venv; the XBlock is installed there in editable mode.
Its settings module (tests/xblock/lms/stacklab_lms_settings.py) adds what an LMS has and the workbench lacks:
the block's XBLOCK_SETTINGS and a user service with staff and masquerade shaped like edx-platform's.
Students: `alice` (a learner), `staff` (course staff), `staff~alice` (staff masquerading as alice).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.conftest import (
    STATIC,
    Stacklab,
    free_port,
    serving_stacklab,
    stop,
    wait_http,
)
from tests.e2e.helpers import TERMINAL_FILLS_WIDTH, serious_violations, wait_for
from tests.xblock.conftest import migrate_workbench

pytestmark = [pytest.mark.e2e, pytest.mark.lxc]

ROOT = Path(__file__).resolve().parents[2]
LMS_DIR = Path(__file__).resolve().parent / "lms"
LMS_KEY = "workbench"
COURSE = "course-v1:StacklabX+XB1+2026"
COURSE_NAME = "Linux in practice"
"""The course's display name (the workbench has no course block: the `course_name` setting gives it)."""
EMBEDDED = "embedded=1&course_name=Linux+in+practice#token="
"""How the unit opens the lab page: embedded, with the course's name (URL-encoded), the token last."""
LAUNCH_S = 300
WIDTHS = (1440, 1280, 1024, 800)
HTTP_STATUS = re.compile(r"HTTP|\b[45]\d\d\b")

PAIR_LAB = """\
# Two machines the learner may open (for the unit option `node`).
schema: 1
id: pair-lab
title: A pair of machines
login_user: learner
score: latest
providers:
  - name: local
    type: local
local:
  nodes:
    - name: main
      memory_mb: 128
    - name: side
      memory_mb: 128
checks:
  - name: side-file
    node: side
    script: test -e ~/done
    weight: 1
    hint: create ~/done on the side machine
timeouts:
  launch: 5m
"""

BROKEN_LAB = "schema: 1\nid: broken-lab\ntitle: Broken\nlogin_user: learner\nproviders: []\n"
"""A lab file the service cannot read (no provider): offered by no one, shown to authors."""

# Instructor rescore and override the way the LMS's instructor tasks do them (edx-platform
# lms/djangoapps/instructor_task/tasks_helper/module_state.py): the block bound to the learner in the real
# runtime, then `rescore(only_if_higher)`, or `set_score(weighted / weight)` and `publish_grade()`; `save()`.
GRADING_SCRIPT = """
import json, sys
import django
django.setup()
from workbench.runtime import WorkbenchRuntime
from workbench.scenarios import get_scenarios
from xblock.scorable import Score

student, usage_id, actions = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
get_scenarios()
events, fractions = [], []
for action, argument in actions:
    runtime = WorkbenchRuntime(student)
    runtime.publish = lambda block, kind, data: events.append([kind, data])
    block = runtime.get_block(usage_id)
    if action == "override":
        weight = block.weight
        block.set_score(Score(raw_earned=argument / weight, raw_possible=block.max_score() / weight))
        block.publish_grade()
    else:
        block.rescore(only_if_higher=argument)
    block.save()
    fractions.append(block.score_fraction)
print(json.dumps({"events": events, "fractions": fractions}))
"""


@pytest.fixture(scope="module")
def service() -> Iterator[tuple[Stacklab, str]]:
    """`stacklab serve` with an LMS key for the workbench; every environment is deleted at the end."""
    if not (STATIC / "dist" / "lab.js").exists():
        pytest.fail("the pages are not built: run scripts/dev setup")
    secret = secrets.token_urlsafe(40)
    labs = Path(tempfile.mkdtemp(prefix="stacklab-xblock-labs-"))
    shutil.copy(ROOT / "examples" / "hello.yaml", labs / "hello.yaml")
    (labs / "pair.yaml").write_text(PAIR_LAB)
    (labs / "broken.yaml").write_text(BROKEN_LAB)  # skipped by the service; Studio's author view names it
    lms_keys = {LMS_KEY: {"secret": secret, "courses": ["course-v1:StacklabX+*"]}}  # the workbench's courses
    keys = {"STACKLAB_LMS_KEYS": json.dumps(lms_keys), "STACKLAB_LABS_DIR": str(labs)}
    try:
        with serving_stacklab("stacklab-xblock-", keys) as stacklab:
            yield stacklab, secret
    finally:
        shutil.rmtree(labs, ignore_errors=True)


class Workbench:
    def __init__(self, url: str, workdir: Path, env: dict[str, str], python: str) -> None:
        self.url = url
        self.workdir = workdir
        self.env = env
        self.python = python

    def scenario(self, number: int, student: str) -> str:
        return f"{self.url}/scenario/stacklab.{number}/?student={student}"

    def user_state(self, student: str) -> dict:
        """What the runtime stored for this student's stacklab blocks (from the workbench's database)."""
        with sqlite3.connect(self.workdir / "var" / "workbench.db") as db:
            rows = db.execute(
                "SELECT state FROM workbench_xblockstate WHERE scope = 'usage' AND user_id = ?", (student,)
            ).fetchall()
        merged: dict = {}
        for (state,) in rows:
            merged.update(json.loads(state))
        return merged

    def grades(self) -> list[str]:
        """The grade events the runtime published (the workbench logs each publish)."""
        path = self.workdir / "var" / "events.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [line for line in lines if line.startswith("{'value'")]

    def grade(self, student: str, usage_id: str, actions: list) -> dict:
        """Instructor grading actions on the student's block, in the runtime, as the LMS's tasks do them."""
        result = subprocess.run(
            [self.python, "-c", GRADING_SCRIPT, student, usage_id, json.dumps(actions)],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def start_workbench(
    venv: Path, service_url: str, secret: str, course: str = COURSE
) -> tuple[subprocess.Popen, Workbench]:
    workdir = Path(tempfile.mkdtemp(prefix="stacklab-workbench-"))
    (workdir / "var").mkdir()
    xblock_settings = {
        "service_url": service_url,
        "lms_key": LMS_KEY,
        "lms_secret": secret,
        "course": course,
        "course_name": COURSE_NAME,
    }
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "STACKLAB_"))},
        "DJANGO_SETTINGS_MODULE": "stacklab_lms_settings",
        "PYTHONPATH": str(LMS_DIR),
        "STACKLAB_TEST_XBLOCK_SETTINGS": json.dumps(xblock_settings),
    }
    python = str(venv / "bin" / "python")
    migrate_workbench(python, workdir, env)
    port = free_port()
    with open(workdir / "workbench.out", "wb") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [python, "-m", "django", "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    bench = Workbench(f"http://127.0.0.1:{port}", workdir, env, python)
    wait_http(f"{bench.url}/", 120, proc)
    wait_scenarios(bench)
    return proc, bench


def wait_scenarios(bench: Workbench, timeout_s: float = 60) -> None:
    """The workbench loads its scenarios on a first request: until then a scenario page answers 404.
    (Fetched without running its script: nothing is launched.)"""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(bench.scenario(0, "warm-up"), timeout=10):
                return
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code != 404 or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


@pytest.fixture(scope="module")
def workbench(workbench_venv: Path, service: tuple[Stacklab, str]) -> Iterator[Workbench]:
    stacklab, secret = service
    proc, bench = start_workbench(workbench_venv, stacklab.url, secret)
    try:
        yield bench
    finally:
        stop(proc)
        shutil.rmtree(bench.workdir, ignore_errors=True)


def terminal_text(frame) -> str:  # type: ignore[no-untyped-def]
    return str(frame.evaluate("() => window.stacklabTerm ? window.stacklabTerm.text() : ''"))


def wait_output(frame, needle: str, timeout_s: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while needle not in terminal_text(frame):
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} not in the terminal:\n{terminal_text(frame)[-2000:]}")
        time.sleep(0.3)


POLL_MS = 250
"""wait_for_function's polling: its default (animation frames) never fires in a frame scrolled out of view."""


def wait_connected(frame, timeout_s: float = LAUNCH_S) -> None:  # type: ignore[no-untyped-def]
    try:
        frame.wait_for_function(
            "() => window.stacklabTerm && window.stacklabTerm.state === 'connected'",
            timeout=timeout_s * 1000,
            polling=POLL_MS,
        )
    except Exception as exc:
        state = frame.evaluate(
            "() => window.stacklabTerm && [window.stacklabTerm.view, window.stacklabTerm.state]"
        )
        raise AssertionError(
            f"not connected ({state}); the page shows: {frame.locator('body').inner_text()}"
        ) from exc


def lab_frame(page):  # type: ignore[no-untyped-def]
    return page.locator(".stacklab-block iframe.stacklab-frame").element_handle().content_frame()


def open_staff_panel(unit) -> None:  # type: ignore[no-untyped-def]
    """Open the unit's staff panel (a <details>) and make sure it stays open: a click on its summary made
    while the unit's script was still starting was seen undone now and then."""
    panel = unit.locator(".stacklab-staff")
    panel.wait_for()
    for _ in range(20):
        if panel.evaluate("(details) => details.open"):
            return
        panel.locator("summary").click()
        unit.page.wait_for_timeout(250)
    raise AssertionError("the staff panel does not open")


def wait_score(unit, text: str) -> None:  # type: ignore[no-untyped-def]
    try:
        unit.locator(".stacklab-score", has_text=text).wait_for(timeout=90_000)
    except Exception as exc:
        raise AssertionError(f"score {text!r} not shown; the unit shows: {unit.inner_text()}") from exc


def screenshots(page, folder: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    """The page at each width a course page is seen at, kept as test artefacts (the `artifacts` folder)."""
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 1000})
        shot = folder / f"{name}-{width}.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot: {shot}")
    page.set_viewport_size({"width": 1280, "height": 1000})


def call_handler(page, handler: str) -> dict:  # type: ignore[no-untyped-def]
    """POST to one of the block's handlers from the page, as its JavaScript would (status and body)."""
    return page.evaluate(  # type: ignore[no-any-return]
        """async (handler) => {
            const block = document.querySelector("[data-block-type=stacklab]");
            const url = handlerBaseUrl + block.dataset.usage + "/" + handler + "/?student=" + studentId;
            const token = (document.cookie.match(/csrftoken=([^;]*)/) || [])[1] || "";
            const r = await fetch(url, {method: "POST", headers: {"X-CSRFToken": token}, body: "{}"});
            return {status: r.status, body: await r.json()};
        }""",
        handler,
    )


def service_client(service: tuple[Stacklab, str]):  # type: ignore[no-untyped-def]
    """The XBlock's own client of the service, as the workbench is configured (to compare what it says)."""
    from stacklab_xblock.client import ServiceConfig, StacklabClient

    stacklab, secret = service
    return StacklabClient(ServiceConfig(stacklab.url, LMS_KEY, secret))


def env_list(stacklab: Stacklab) -> list[dict]:
    return json.loads(stacklab.cli("env", "list", "--json") or "[]")  # type: ignore[no-any-return]


def kept_running(envs: list[dict]) -> set[str]:
    """The labs the service is asked to keep running, by id."""
    return {env["id"] for env in envs if env["desired"] == "running"}


def test_scenario_is_listed(workbench: Workbench, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{workbench.url}/")
    assert page.get_by_text("stacklab: hello lab").first.is_visible()


def test_unit_opens_the_lab_checks_and_records_the_grade(
    workbench: Workbench, service: tuple[Stacklab, str], page, artifacts: Path
) -> None:  # type: ignore[no-untyped-def]
    page.goto(workbench.scenario(0, "alice"))
    unit = page.locator(".stacklab-block")
    unit.wait_for()
    assert unit.locator(".stacklab-error").count() == 0, unit.inner_text()
    assert unit.locator(".stacklab-staff").count() == 0  # no staff panel for a learner
    iframe = unit.locator("iframe.stacklab-frame")
    unit.locator("iframe.stacklab-frame, .stacklab-error").first.wait_for()
    assert iframe.count() == 1, unit.inner_text()  # else: the error the learner sees
    src = iframe.get_attribute("src") or ""
    assert "/lab/" in src and f"?{EMBEDDED}" in src  # the unit checks and grades
    frame = lab_frame(page)
    wait_connected(frame)
    wait_output(frame, "$ ", 60)
    assert frame.locator("#lab-meta").inner_text() == COURSE_NAME  # the course's name, not its id
    assert "course-v1" not in frame.locator("body").inner_text()
    check = unit.get_by_role("button", name="Check my work")
    check.click()
    wait_score(unit, "0 / 3")
    assert unit.locator(".stacklab-fail").count() == 2
    frame.locator(".term-host:not([hidden]) .xterm").click()
    page.keyboard.type(
        'echo "hello world" > ~/hello.txt && sudo useradd --create-home alice && echo ok-$((1+1))'
    )
    page.keyboard.press("Enter")
    wait_output(frame, "ok-2", 60)
    check.click()
    wait_score(unit, "3 / 3")
    assert unit.locator(".stacklab-pass").count() == 2
    # The runtime stored the grade for alice (and alice's environment): in its database, and after a reload.
    assert workbench.user_state("alice").get("score_fraction") == 1.0, workbench.user_state("alice")
    assert workbench.grades() == [
        "{'value': 0.0, 'max_value': 3.0, 'only_if_higher': None}",
        "{'value': 3.0, 'max_value': 3.0, 'only_if_higher': None}",
    ]
    # One score: what the LMS got is what the unit shows and what the service counts; the lab page in the
    # unit shows none of its own (the staff panel shows the same, see its test).
    assert unit.locator(".stacklab-score").inner_text() == "3 / 3"
    counted = service_client(service).latest_checks(workbench.user_state("alice")["environment"])
    assert counted["counted_score"] == counted["max_score"] > 0
    assert frame.get_by_role("button", name="Check my work").count() == 0
    assert "Your progress" not in frame.locator("body").inner_text()
    screenshots(page, artifacts, "unit")
    page.reload()
    page.locator(".stacklab-block .stacklab-score", has_text="3 / 3").wait_for()
    # A worse check never lowers the score (the lab's policy is "best").
    frame = lab_frame(page)
    wait_connected(frame, 120)
    frame.locator(".term-host:not([hidden]) .xterm").click()
    page.keyboard.type("rm ~/hello.txt && echo gone-$((2+2))")
    page.keyboard.press("Enter")
    wait_output(frame, "gone-4", 60)
    page.locator(".stacklab-block").get_by_role("button", name="Check my work").click()
    page.locator(".stacklab-block .stacklab-status", has_text="1 of 2 passed").wait_for(timeout=90_000)
    assert "3 / 3" in page.locator(".stacklab-block .stacklab-score").inner_text()
    assert workbench.user_state("alice").get("score_fraction") == 1.0
    assert len(workbench.grades()) == 2  # nothing lower was published


FOCUS_IN_TERMINAL = "() => Boolean(document.activeElement && document.activeElement.closest('.xterm'))"


def test_the_keyboard_leaves_the_terminal_and_the_frame_height_can_be_dragged(
    workbench: Workbench, page
) -> None:  # type: ignore[no-untyped-def]
    page.goto(workbench.scenario(0, "alice"))
    unit = page.locator(".stacklab-block")
    box = unit.locator(".stacklab-frame-box")
    box.wait_for()
    frame = lab_frame(page)
    wait_connected(frame, 120)
    assert page.evaluate("() => document.activeElement === document.body")  # no focus taken on load
    # Into the terminal: a plain Tab is the shell's (completion); Esc then Tab leaves, and Tab goes on out of
    # the frame to the unit's Check button.
    frame.locator(".term-host:not([hidden]) .xterm").click()
    page.keyboard.press("Tab")
    assert frame.evaluate(FOCUS_IN_TERMINAL)
    page.keyboard.press("Escape")
    page.keyboard.press("Tab")
    assert not frame.evaluate(FOCUS_IN_TERMINAL)
    for _ in range(15):  # the frame's remaining controls, then the unit's
        if page.evaluate("() => document.activeElement.classList.contains('stacklab-check')"):
            break
        page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Check my work"
    # The frame's height follows the box's corner as the learner drags it.
    box.scroll_into_view_if_needed()
    before = box.bounding_box()
    corner = (before["x"] + before["width"] - 4, before["y"] + before["height"] - 4)
    page.mouse.move(*corner)
    page.mouse.down()
    page.mouse.move(corner[0], corner[1] + 200, steps=5)
    page.mouse.up()
    after = box.bounding_box()
    assert after["height"] > before["height"] + 150, (before, after)
    assert abs(unit.locator("iframe.stacklab-frame").bounding_box()["height"] - after["height"]) < 2


def test_instructor_override_and_rescore(workbench: Workbench, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(workbench.scenario(0, "alice"))
    usage_id = page.locator("[data-block-type=stacklab]").get_attribute("data-usage")
    # Override to 1.5 of 3, then rescore only if higher (the lab counts 3 of 3: its best attempt), then an
    # override to 0 and a plain rescore: the score comes back from the lab's attempts, not from a new check.
    result = workbench.grade(
        "alice", usage_id, [["override", 1.5], ["rescore", True], ["override", 0.0], ["rescore", False]]
    )
    assert result["fractions"] == [0.5, 1.0, 0.0, 1.0]
    grades = [data for kind, data in result["events"] if kind == "grade"]
    assert [(g["value"], g["max_value"]) for g in grades] == [(1.5, 3.0), (3.0, 3.0), (0.0, 3.0), (3.0, 3.0)]
    assert [g["only_if_higher"] for g in grades] == [None, True, None, False]
    overridden = workbench.grade("alice", usage_id, [["override", 2.25]])
    assert overridden["fractions"] == [0.75]
    page.reload()
    page.locator(".stacklab-block .stacklab-score", has_text="2.25 / 3").wait_for()
    # A learner who never checked has nothing to rescore (the LMS skips them).
    never = subprocess.run(
        [workbench.python, "-c", GRADING_SCRIPT, "nobody", usage_id, '[["rescore", false]]'],
        cwd=workbench.workdir,
        env=workbench.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert never.returncode != 0 and "Cannot rescore an unanswered lab" in never.stderr


def test_a_check_made_outside_the_unit_becomes_the_units_grade(
    workbench: Workbench, service: tuple[Stacklab, str], page
) -> None:  # type: ignore[no-untyped-def]
    """The lab page opened on its own (or the CLI) checks too: the unit adopts that check when it opens, so
    the LMS's grade is the counted score shown anywhere."""
    stacklab, _ = service
    page.goto(workbench.scenario(0, "dora"))
    wait_connected(lab_frame(page))
    env_id = workbench.user_state("dora")["environment"]
    stacklab.cli("env", "exec", env_id, "--", 'echo "hello world" > ~/hello.txt')
    assert "2/3" in stacklab.cli("env", "check", env_id).replace(" ", "")  # hello-file (2 of 3 points)
    published = len(workbench.grades())
    page.reload()
    wait_score(page.locator(".stacklab-block"), "2 / 3")
    assert workbench.grades()[published:] == ["{'value': 2.0, 'max_value': 3.0, 'only_if_higher': None}"]
    page.reload()  # the same check is not adopted twice
    wait_connected(lab_frame(page))
    assert len(workbench.grades()) == published + 1


def test_background_unit_launches_without_a_terminal(workbench: Workbench, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(workbench.scenario(1, "alice"))
    unit = page.locator(".stacklab-block")
    unit.locator(".stacklab-background").wait_for()
    assert unit.locator("iframe").count() == 0
    assert "prepared in the background" in unit.inner_text()
    # The progress follows the lab without a reload (it used to stay at "(queued)").
    unit.locator(".stacklab-progress", has_text="ready").wait_for(timeout=90_000)
    check = unit.get_by_role("button", name="Check", exact=True)
    check.click()
    unit.locator(".stacklab-status", has_text="of 2 passed").wait_for(timeout=90_000)


def test_read_only_unit_opens_the_named_node_and_takes_no_input(workbench: Workbench, page) -> None:  # type: ignore[no-untyped-def]
    grades_before = len(workbench.grades())
    page.goto(workbench.scenario(2, "alice"))
    iframe = page.locator(".stacklab-block iframe.stacklab-frame")
    iframe.wait_for()
    assert f"?node=main&{EMBEDDED}" in (iframe.get_attribute("src") or "")
    assert page.locator(".stacklab-block .stacklab-check").count() == 0  # read-only units never grade
    refused = call_handler(page, "check")
    assert refused["status"] == 403 and "Read-only" in refused["body"]["error"]
    assert len(workbench.grades()) == grades_before
    frame = lab_frame(page)
    wait_connected(frame, 120)
    assert frame.locator("#read-only-badge").is_visible()
    assert not frame.locator("#check-button").is_visible() and not frame.locator("#reset-button").is_visible()
    assert frame.evaluate("() => window.stacklabTerm.node") == "main"
    frame.locator(".term-host:not([hidden]) .xterm").click()
    page.keyboard.type("echo typed-$((3+3))")
    page.keyboard.press("Enter")
    time.sleep(2)
    assert "typed-" not in terminal_text(frame)


def test_staff_masquerading_see_the_learners_lab_read_only(
    workbench: Workbench, service: tuple[Stacklab, str], page
) -> None:  # type: ignore[no-untyped-def]
    stacklab, _secret = service
    (alice_env,) = [e for e in env_list(stacklab) if e["learner"] == "anon-alice"]
    page.goto(workbench.scenario(0, "staff~alice"))
    unit = page.locator(".stacklab-block")
    unit.locator(".stacklab-staff-view").wait_for()
    unit.locator("iframe.stacklab-frame").wait_for()
    src = unit.locator("iframe.stacklab-frame").get_attribute("src") or ""
    assert f"/lab/{alice_env['id']}?{EMBEDDED}" in src  # alice's own environment
    assert unit.get_by_role("button", name="Check my work").count() == 0
    frame = lab_frame(page)
    wait_connected(frame, 120)
    assert frame.locator("#read-only-badge").is_visible()
    frame.locator(".term-host:not([hidden]) .xterm").click()
    page.keyboard.type("touch ~/masquerade-was-here")
    page.keyboard.press("Enter")
    time.sleep(2)
    assert "masquerade-was-here" not in terminal_text(frame)
    out = stacklab.cli("env", "exec", alice_env["id"], "--", "ls", "-a", "/home/learner")
    assert "masquerade-was-here" not in out and ".bashrc" in out
    refused = call_handler(page, "check")
    assert refused["status"] == 403 and "Read-only" in refused["body"]["error"]
    # Masquerading as a learner who never opened the lab shows so, and launches nothing for them.
    page.goto(workbench.scenario(0, "staff~bob"))
    unit.locator(".stacklab-not-opened").wait_for()
    assert unit.locator("iframe").count() == 0
    assert not [e for e in env_list(stacklab) if e["learner"] == "anon-bob"]


def test_staff_panel_shows_learners_and_watches_their_lab_read_only(
    workbench: Workbench, service: tuple[Stacklab, str], page, artifacts: Path
) -> None:  # type: ignore[no-untyped-def]
    page.goto(workbench.scenario(0, "staff"))
    unit = page.locator(".stacklab-block")
    open_staff_panel(unit)
    unit.get_by_role("button", name="Load").click()
    alice = unit.locator(".stacklab-staff-list tr", has_text="alice")
    alice.wait_for()
    assert "anon-" not in alice.inner_text()  # the LMS username, not the anonymous id
    cells = alice.locator("td").all_inner_texts()
    assert cells[1].startswith("ready"), cells
    assert cells[2] == "3 / 3", cells  # in the unit's weight: the score alice's unit shows and the LMS got
    assert unit.locator(".stacklab-staff-table th").all_inner_texts()[3] == "Time used"
    (row,) = [e for e in service_client(service).course_environments(COURSE) if e["learner"] == "anon-alice"]
    assert row["running_s"] > 0  # running since the first test: its recorded transitions say for how long
    assert re.fullmatch(r"under 1 min|\d+ min|\d+ h( \d+ min)?", cells[3]), cells
    alice.get_by_role("button", name="Watch alice's lab").click()
    watched = unit.locator(".stacklab-staff-watch iframe.stacklab-frame")
    watched.wait_for()
    frame = watched.element_handle().content_frame()
    wait_connected(frame, 120)
    assert frame.locator("#read-only-badge").is_visible()
    wait_output(frame, "ok-2", 30)  # what alice typed in the first test
    watched.scroll_into_view_if_needed()
    watched.screenshot(path=str(artifacts / "staff-watch.png"))
    screenshots(page, artifacts, "staff-panel")
    # More lab time for alice (usage limits): the hours and the reason asked for, kept by the service.
    answers = iter(["1.5", "the cloud was down on Tuesday"])
    page.on("dialog", lambda dialog: dialog.accept(next(answers)))
    alice.get_by_role("button", name="More time for alice").click()
    unit.locator(".stacklab-staff-status", has_text="1.5 h more lab time given").wait_for()
    stacklab, _ = service
    usage = json.loads(stacklab.cli("env", "usage", f"{COURSE}/{row['lab']}/anon-alice", "--json"))
    assert [(g["seconds"], g["reason"]) for g in usage["grants"]] == [(5400, "the cloud was down on Tuesday")]
    assert usage["grants"][0]["granted_by"].endswith("for staff")  # the staff member's LMS username
    page.goto(workbench.scenario(1, "alice"))
    page.locator(".stacklab-block .stacklab-background").wait_for()
    assert page.locator(".stacklab-staff").count() == 0
    refused = call_handler(page, "staff_environments")
    assert refused["status"] == 403 and "staff" in refused["body"]["error"]
    assert call_handler(page, "staff_grant")["status"] == 403  # only staff give time


def test_staff_open_the_course_view_with_the_lms_authority(workbench: Workbench, page) -> None:  # type: ignore[no-untyped-def]
    """The staff panel's 'Open the course view': the block asks the service as the LMS (its JWT, for its
    course) and a new tab shows the service's course view of the unit's lab; learners may not ask."""
    page.goto(workbench.scenario(0, "staff"))
    unit = page.locator(".stacklab-block")
    open_staff_panel(unit)
    with page.context.expect_page() as opened:
        unit.get_by_role("button", name="Open the course view").click()
    view = opened.value
    view.locator("#class-rows tr").first.wait_for()
    assert "token" not in view.url and "/course?" in view.url
    assert view.locator("#course-name").inner_text() == COURSE
    assert view.locator("#lab-name").inner_text() == "lab hello-lab"
    assert view.locator("#course-error").is_hidden()
    # The staff member's own lab (the unit opened it): shown by LMS username, its anonymous id under it.
    row = view.locator("#class-rows tr[data-learner]", has_text="anon-staff")
    row.wait_for()
    assert row.locator("td").first.inner_text().split("\n") == ["staff", "anon-staff"]
    assert "names" not in view.url
    view.close()
    page.goto(workbench.scenario(3, "alice"))  # a unit that launches nothing
    page.locator(".stacklab-block").wait_for()
    refused = call_handler(page, "staff_course_view")
    assert refused["status"] == 403 and "staff" in refused["body"]["error"]


def test_lab_page_opens_the_node_the_unit_names(service: tuple[Stacklab, str], page) -> None:  # type: ignore[no-untyped-def]
    client = service_client(service)
    launched = client.launch(COURSE, "pair-lab", "anon-node", node="side")
    assert "?node=side#token=" in launched["lab_url"]
    page.goto(launched["lab_url"])
    wait_connected(page)
    assert page.evaluate("() => window.stacklabTerm.node") == "side"
    assert page.locator("#tab-side").get_attribute("aria-selected") == "true"
    page.locator(".term-host:not([hidden]) .xterm").click()
    page.keyboard.type("touch ~/done && echo on-$(hostname)")
    page.keyboard.press("Enter")
    wait_output(page, "on-", 60)
    report = client.run_checks(launched["environment"]["id"])
    assert (report["score"], report["score_policy"]) == (1.0, "latest")


def learner_sees(page, sentence: str) -> str:  # type: ignore[no-untyped-def]
    """The unit's error, once shown: `sentence`, and no HTTP status or raw API text."""
    error = page.locator(".stacklab-block .stacklab-lab .stacklab-error")
    try:
        error.wait_for(timeout=15_000)
    except Exception as exc:
        shown = page.locator("body").inner_text()
        raise AssertionError(f"no error shown; the unit shows: {shown}") from exc
    shown = str(error.inner_text())
    assert sentence in shown and not HTTP_STATUS.search(shown), shown
    return str(page.locator(".stacklab-block").inner_text())


def test_misconfigured_units_speak_plainly_and_tell_staff_what_failed(
    workbench: Workbench, page, artifacts: Path
) -> None:  # type: ignore[no-untyped-def]
    page.goto(workbench.scenario(3, "alice"))
    unit_text = learner_sees(page, "not available right now")
    assert "tell your course staff" in unit_text and "request id" not in unit_text
    page.get_by_role("button", name="Check my work").click()
    status = page.locator(".stacklab-block .stacklab-status", has_text="not available")
    status.wait_for(timeout=15_000)
    assert "gone" not in status.inner_text() and not HTTP_STATUS.search(status.inner_text())
    page.goto(workbench.scenario(4, "alice"))
    learner_sees(page, "learners may not use")
    page.goto(workbench.scenario(3, "staff"))
    detail = page.locator(".stacklab-block .stacklab-staff-detail")
    detail.wait_for(timeout=15_000)
    assert "unit setting lab" in detail.inner_text() and "request id " in detail.inner_text()
    screenshots(page, artifacts, "error-for-staff")


def service_pid(stacklab: Stacklab) -> int:
    """The process listening on the service's port (the one to stop, to make the service hang)."""
    import psutil

    port = int(stacklab.url.rsplit(":", 1)[1])
    (pid,) = {c.pid for c in psutil.net_connections("tcp") if c.laddr.port == port and c.status == "LISTEN"}
    return int(pid)


def test_hung_service_gives_feedback_within_seconds(
    workbench: Workbench, service: tuple[Stacklab, str], page
) -> None:  # type: ignore[no-untyped-def]
    pid = service_pid(service[0])
    os.kill(pid, signal.SIGSTOP)
    try:
        page.goto(workbench.scenario(0, "alice"))
        page.locator(".stacklab-block .stacklab-progress-line").wait_for(timeout=5_000)  # rendered at once
        learner_sees(page, "not answering")
        page.get_by_role("button", name="Try again").click()
        page.locator(".stacklab-block .stacklab-progress-line").wait_for(timeout=5_000)
        page.locator(".stacklab-block .stacklab-lab .stacklab-error", has_text="not answering").wait_for(
            timeout=15_000  # the launch's bound (client.OPEN_TIMEOUT_S), then the answer
        )
    finally:
        os.kill(pid, signal.SIGCONT)
    page.get_by_role("button", name="Try again").click()
    page.locator(".stacklab-block iframe.stacklab-frame").wait_for(timeout=30_000)


def studio_save(page, values: dict) -> dict:  # type: ignore[no-untyped-def]
    """Studio's Save (the mixin's submit_studio_edits handler), from the page as its script posts it."""
    return page.evaluate(  # type: ignore[no-any-return]
        """async (values) => {
            const block = document.querySelector("[data-block-type=stacklab]");
            const url = handlerBaseUrl + block.dataset.usage + "/submit_studio_edits/?student=" + studentId;
            const token = (document.cookie.match(/csrftoken=([^;]*)/) || [])[1] || "";
            const body = JSON.stringify({values: values, defaults: []});
            const r = await fetch(url, {method: "POST", headers: {"X-CSRFToken": token}, body: body});
            return {status: r.status, body: await r.json()};
        }""",
        values,
    )


def test_studio_offers_the_services_labs_and_refuses_unknown_ones(
    workbench: Workbench, page, artifacts: Path
) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{workbench.url}/scenario/stacklab.5/studio_view/?student=staff")
    lab = page.locator("select#xb-field-edit-lab")
    lab.wait_for()
    options = lab.locator("option").all_inner_texts()
    assert any("(hello-lab)" in o for o in options) and any("(pair-lab)" in o for o in options), options
    assert page.get_by_text("The machine the lab page opens first").count() == 1  # help texts are shown
    assert "weight: is 0" in page.locator(".stacklab-warnings").inner_text()
    chosen = page.locator(".stacklab-preview[open]")
    assert "pair-lab" in chosen.inner_text() and "main, side" in chosen.inner_text()
    assert chosen.locator(".stacklab-preview-checks tbody tr").all_inner_texts() == [
        "side-file\tside\t1.0\tcreate ~/done on the side machine"
    ]  # the checks and hints, without their scripts
    assert "test -e" not in page.locator(".stacklab-studio").inner_text()
    page.screenshot(path=str(artifacts / "studio.png"), full_page=True)
    for values, message in (
        ({"lab": "no-such-lab"}, "lab: the service offers no lab 'no-such-lab'"),
        ({"lab": "pair-lab", "node": "db"}, "node: lab 'pair-lab' has no node 'db' (it has: main, side)"),
    ):
        refused = studio_save(page, values)
        assert refused["status"] == 400, refused
        texts = [m["text"] for m in refused["body"]["error"]["messages"]]
        assert any(t.startswith(message) for t in texts), texts


def test_studio_author_view_shows_the_lab_and_its_problems_without_launching(
    workbench: Workbench, service: tuple[Stacklab, str], page
) -> None:  # type: ignore[no-untyped-def]
    stacklab, _ = service
    before = env_list(stacklab)
    page.goto(f"{workbench.url}/scenario/stacklab.5/author_view/?student=staff")  # pair-lab, weight 0
    view = page.locator(".stacklab-author")
    view.wait_for()
    text = view.inner_text()
    assert "A pair of machines" in text and "Nodes: main, side" in text, text
    assert view.locator(".stacklab-preview-checks tbody tr").all_inner_texts() == [
        "side-file\tside\t1.0\tcreate ~/done on the side machine"
    ]
    assert "Warning — weight: is 0" in text and "Error" not in text and "test -e" not in text
    assert serious_violations(page, ".stacklab-author") == []

    page.goto(f"{workbench.url}/scenario/stacklab.3/author_view/?student=staff")  # no-such-lab
    view.wait_for()
    text = view.inner_text()
    assert "Error — lab: the service offers no lab 'no-such-lab'" in text, text
    skipped = view.locator(".stacklab-skipped").inner_text()
    assert "broken.yaml" in skipped and "providers" in skipped, skipped
    assert "/tmp/" not in skipped  # the service's own folders stay on the service
    # Studio launched and woke nothing (earlier tests' labs may pause meanwhile: that is theirs).
    after = env_list(stacklab)
    assert [env["id"] for env in after] == [env["id"] for env in before]
    assert kept_running(after) <= kept_running(before)


@pytest.mark.parametrize(
    ("wrong", "sentence", "setting"),
    [
        ({"secret": "x" * 40}, "could not sign you in", "settings lms_key and lms_secret"),
        ({"course": "course-v1:OtherX+O1+2026"}, "may not use the lab service", "setting lms_key"),
    ],
    ids=["wrong-secret", "course-not-allowed"],
)
def test_an_lms_the_service_refuses_gets_a_clear_message(
    workbench_venv: Path, service: tuple[Stacklab, str], page, wrong: dict, sentence: str, setting: str
) -> None:  # type: ignore[no-untyped-def]
    stacklab, secret = service
    proc, bench = start_workbench(
        workbench_venv, stacklab.url, wrong.get("secret", secret), wrong.get("course", COURSE)
    )
    try:
        page.goto(bench.scenario(0, "alice"))
        learner_sees(page, sentence)
        assert page.locator("iframe.stacklab-frame").count() == 0
        page.goto(bench.scenario(0, "staff"))
        detail = page.locator(".stacklab-block .stacklab-staff-detail")
        detail.wait_for(timeout=15_000)
        assert f"Staff: {setting}" in detail.inner_text()
    finally:
        stop(proc)
        shutil.rmtree(bench.workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def csp_free_page(page):  # type: ignore[no-untyped-def]
    """A page whose browser context ignores Content-Security-Policy, for this test module only: axe-core is
    injected into the service's lab page, whose CSP (unchanged) forbids scripts it did not serve."""
    context = page.context.browser.new_context(viewport={"width": 1280, "height": 1000}, bypass_csp=True)
    context.set_default_timeout(30_000)
    yield context.new_page()
    context.close()


def test_axe_finds_no_serious_violation_in_the_unit_and_the_real_pages(
    workbench: Workbench, service: tuple[Stacklab, str], csp_free_page
) -> None:  # type: ignore[no-untyped-def]
    page = csp_free_page
    page.goto(workbench.scenario(0, "alice"))
    try:
        page.locator(".stacklab-block iframe.stacklab-frame").wait_for()
    except Exception as exc:
        raise AssertionError(
            f"no lab frame; the unit shows: {page.locator('.stacklab-block').inner_text()}"
        ) from exc
    frame = lab_frame(page)
    wait_connected(frame, 120)
    found = {
        "unit": serious_violations(page, ".stacklab-block"),
        "embedded lab page": serious_violations(frame),
    }
    page.goto(workbench.scenario(0, "staff"))
    unit = page.locator(".stacklab-block")
    open_staff_panel(unit)
    unit.get_by_role("button", name="Load").click()
    unit.locator(".stacklab-staff-list tr", has_text="alice").get_by_role(
        "button", name="Watch alice's lab"
    ).click()
    unit.locator(".stacklab-staff-watch iframe.stacklab-frame").wait_for()
    found["staff panel"] = serious_violations(page, ".stacklab-block")
    page.goto(workbench.scenario(3, "staff"))
    unit.locator(".stacklab-staff-detail").wait_for(timeout=15_000)
    found["unit with an error"] = serious_violations(page, ".stacklab-block")
    page.goto(workbench.scenario(1, "alice"))
    unit.locator(".stacklab-background").wait_for()
    found["background unit"] = serious_violations(page, ".stacklab-block")
    launched = service_client(service).launch(COURSE, "hello-lab", "anon-alice")
    page.goto(launched["lab_url"])  # the service's own lab page, outside the course
    wait_connected(page, 120)
    found["lab page"] = serious_violations(page)
    stacklab, _secret = service
    stacklab.cli("operator", "add", "axel", stdin="axel-operator-password\n")
    page.goto(f"{stacklab.url}/admin")
    page.wait_for_url("**/admin/login")
    found["operator sign-in page"] = serious_violations(page)
    page.get_by_label("Operator").fill("axel")
    page.get_by_label("Password").fill("axel-operator-password")
    page.get_by_role("button", name="Sign in").click()
    page.locator("#env-rows tr[data-env]").first.wait_for()
    page.locator("#audit-rows tr[data-audit]").first.wait_for()
    found["operator page"] = serious_violations(page)
    assert found == {name: [] for name in found}, found


# Stands in for the browser's page visibility (headless chromium always reports "visible"): the page starts
# hidden, as a unit opened in a background tab, until the test calls stacklabTestShow().
HIDDEN_TAB = """(() => {
  let hidden = true;
  Object.defineProperty(Document.prototype, "hidden", {configurable: true, get: () => hidden});
  Object.defineProperty(Document.prototype, "visibilityState",
                        {configurable: true, get: () => (hidden ? "hidden" : "visible")});
  window.stacklabTestShow = () => { hidden = false; document.dispatchEvent(new Event("visibilitychange")); };
})();"""

# The units start in a container that is not displayed (a course page's collapsed or inactive part).
UNDISPLAYED = """document.addEventListener("DOMContentLoaded", () => {
  const style = document.createElement("style");
  style.id = "test-undisplayed";
  style.textContent = ".stacklab-block { display: none; }";
  document.head.append(style);
});"""


def wait_ready(client, env_id: str, timeout_s: float = LAUNCH_S) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not client.status(env_id).get("ready"):
        assert time.monotonic() < deadline, client.status(env_id)
        time.sleep(0.5)


def test_units_that_start_hidden_show_the_labs_state_once_shown(
    workbench: Workbench, service: tuple[Stacklab, str], page
) -> None:  # type: ignore[no-untyped-def]
    client = service_client(service)
    hidden = page.context.new_page()
    try:
        # A background unit opened in a hidden tab: the lab gets ready meanwhile; once shown, the unit says so
        # without a reload.
        hidden.add_init_script(HIDDEN_TAB)
        hidden.goto(workbench.scenario(1, "hana"))
        unit = hidden.locator(".stacklab-block")
        unit.locator(".stacklab-background").wait_for()
        env_id = workbench.user_state("hana")["environment"]
        wait_ready(client, env_id)
        hidden.evaluate("() => window.stacklabTestShow()")
        unit.locator(".stacklab-progress", has_text="ready").wait_for(timeout=15_000)
    finally:
        hidden.close()
    stacklab, _secret = service
    stacklab.cli("env", "suspend", env_id)
    wait_for(lambda: client.status(env_id)["observed"] == "suspended", LAUNCH_S, "the lab to be paused")
    undisplayed = page.context.new_page()
    try:
        # A unit with its lab page in a part of the course page that is not displayed, the lab paused: the
        # page inside resumes it meanwhile; once displayed, the terminal is connected and fills the width.
        undisplayed.add_init_script(UNDISPLAYED)
        undisplayed.goto(workbench.scenario(0, "hana"))
        undisplayed.locator(".stacklab-block iframe.stacklab-frame").wait_for(state="attached")
        frame = undisplayed.locator(".stacklab-block iframe.stacklab-frame").element_handle().content_frame()
        wait_ready(client, env_id)  # resumed by the lab page in the undisplayed frame
        undisplayed.evaluate("() => document.getElementById('test-undisplayed').remove()")
        wait_connected(frame, 120)
        frame.wait_for_function(TERMINAL_FILLS_WIDTH, timeout=10_000, polling=POLL_MS)
        wait_output(frame, "$ ", 30)
        assert frame.locator("#progress-view").is_hidden()
    finally:
        undisplayed.close()


def test_checking_a_lab_that_is_not_running_says_so_plainly(
    workbench: Workbench, service: tuple[Stacklab, str], page
) -> None:  # type: ignore[no-untyped-def]
    """The service answers 409 when the lab is not running (starting, or paused): the unit's Check says the
    lab is still starting, as progress, without a status code. (The unit's own opening of the lab, which
    would resume it, is held back here, and the lab is paused after the view's pre-resume woke it, so that
    the check meets the paused lab.)"""
    stacklab, _secret = service
    client = service_client(service)
    env_id = workbench.user_state("hana")["environment"]
    held = page.context.new_page()
    try:
        held.route("**/handler/**/open/**", lambda route: route.abort())
        held.goto(workbench.scenario(0, "hana"))
        held.locator(".stacklab-block .stacklab-lab .stacklab-error", has_text="not answering").wait_for()
        wait_for(lambda: client.status(env_id)["observed"] == "running", LAUNCH_S, "the view's pre-resume")
        stacklab.cli("env", "suspend", env_id, "--wait")
        wait_for(lambda: client.status(env_id)["observed"] == "suspended", LAUNCH_S, "the lab to be paused")
        held.get_by_role("button", name="Check my work").click()
        status = held.locator(".stacklab-block .stacklab-status", has_text="still starting")
        status.wait_for(timeout=15_000)
        assert not HTTP_STATUS.search(status.inner_text()) and "error" not in status.inner_text().lower()
        assert workbench.user_state("hana").get("score_fraction") is None  # nothing was graded
    finally:
        held.close()
