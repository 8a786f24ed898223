"""The XBlock in the xblock-sdk workbench (a real XBlock runtime) against a real `stacklab serve` (LXC labs).

The workbench lives in its own venv (/var/lib/stacklab-xblock/venv, built once, stamped) because its pins
(Django 4.2, XBlock 6) do not belong in the project's venv; the XBlock is installed there in editable mode.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.conftest import (
    CHROMIUM,
    CHROMIUM_ARGS,
    STATIC,
    Stacklab,
    free_port,
    serving_stacklab,
    stop,
    wait_http,
)

pytestmark = [pytest.mark.e2e, pytest.mark.lxc]

ROOT = Path(__file__).resolve().parents[2]
LMS_KEY = "workbench"
COURSE = "course-v1:StacklabX+XB1+2026"
LAUNCH_S = 300


@pytest.fixture(scope="module")
def service() -> Iterator[tuple[Stacklab, str]]:
    """`stacklab serve` with an LMS key for the workbench; every environment is deleted at the end."""
    if not (STATIC / "dist" / "lab.js").exists():
        pytest.fail("the pages are not built: run scripts/dev setup")
    secret = secrets.token_urlsafe(40)
    keys = {"STACKLAB_LMS_KEYS": json.dumps({LMS_KEY: secret})}
    with serving_stacklab("stacklab-xblock-", keys) as stacklab:
        yield stacklab, secret


class Workbench:
    def __init__(self, url: str, workdir: Path) -> None:
        self.url = url
        self.workdir = workdir

    def user_states(self) -> list[dict]:
        """Every user_state the runtime stored for stacklab blocks (from the workbench's database)."""
        with sqlite3.connect(self.workdir / "var" / "workbench.db") as db:
            rows = db.execute("SELECT scope, scope_id, state FROM workbench_xblockstate").fetchall()
        return [json.loads(state) for scope, _sid, state in rows if "score_fraction" in state]

    def log(self) -> str:
        path = self.workdir / "workbench.out"
        return path.read_text(errors="replace") if path.exists() else ""


def start_workbench(venv: Path, service_url: str, secret: str) -> tuple[subprocess.Popen, Workbench]:
    workdir = Path(tempfile.mkdtemp(prefix="stacklab-workbench-"))
    (workdir / "var").mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))},
        "DJANGO_SETTINGS_MODULE": "workbench.settings",
        "STACKLAB_XBLOCK_SERVICE_URL": service_url,
        "STACKLAB_XBLOCK_LMS_KEY": LMS_KEY,
        "STACKLAB_XBLOCK_LMS_SECRET": secret,
        "STACKLAB_XBLOCK_COURSE": COURSE,
    }
    python = str(venv / "bin" / "python")
    subprocess.run(
        [python, "-m", "django", "migrate", "--run-syncdb", "--noinput"],
        cwd=workdir,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    port = free_port()
    with open(workdir / "workbench.out", "wb") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [python, "-m", "django", "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    bench = Workbench(f"http://127.0.0.1:{port}", workdir)
    wait_http(f"{bench.url}/", 120, proc)
    return proc, bench


@pytest.fixture(scope="module")
def workbench(workbench_venv: Path, service: tuple[Stacklab, str]) -> Iterator[Workbench]:
    stacklab, secret = service
    proc, bench = start_workbench(workbench_venv, stacklab.url, secret)
    try:
        yield bench
    finally:
        stop(proc)
        shutil.rmtree(bench.workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def page() -> Iterator[object]:
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        context.set_default_timeout(30_000)
        yield context.new_page()
        context.close()
        browser.close()


def terminal_text(frame) -> str:  # type: ignore[no-untyped-def]
    return str(frame.evaluate("() => window.stacklabTerm ? window.stacklabTerm.text() : ''"))


def wait_output(frame, needle: str, timeout_s: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while needle not in terminal_text(frame):
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} not in the terminal:\n{terminal_text(frame)[-2000:]}")
        time.sleep(0.3)


def wait_score(unit, text: str) -> None:  # type: ignore[no-untyped-def]
    try:
        unit.locator(".stacklab-score", has_text=text).wait_for(timeout=90_000)
    except Exception as exc:
        raise AssertionError(f"score {text!r} not shown; the unit shows: {unit.inner_text()}") from exc


def test_scenario_is_listed(workbench: Workbench, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{workbench.url}/")
    assert page.get_by_text("stacklab: hello lab").first.is_visible()


def test_unit_opens_the_lab_checks_and_records_the_grade(workbench: Workbench, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{workbench.url}/scenario/stacklab.0/")
    unit = page.locator(".stacklab-block")
    unit.wait_for()
    assert unit.locator(".stacklab-error").count() == 0, unit.inner_text()
    iframe = unit.locator("iframe.stacklab-frame")
    src = iframe.get_attribute("src") or ""
    assert "/lab/" in src and "#token=" in src
    frame = iframe.element_handle().content_frame()
    frame.wait_for_function(
        "() => window.stacklabTerm && window.stacklabTerm.state === 'connected'", timeout=LAUNCH_S * 1000
    )
    wait_output(frame, "$ ", 60)
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
    # The runtime stored the grade: in its database, and shown again after a reload.
    assert any(s.get("score_fraction") == 1.0 for s in workbench.user_states()), workbench.user_states()
    page.reload()
    page.locator(".stacklab-block .stacklab-score", has_text="3 / 3").wait_for()
    # A worse check never lowers the score (the lab's policy is "best").
    frame = page.locator("iframe.stacklab-frame").element_handle().content_frame()
    frame.wait_for_function(
        "() => window.stacklabTerm && window.stacklabTerm.state === 'connected'", timeout=120_000
    )
    frame.locator(".term-host:not([hidden]) .xterm").click()
    page.keyboard.type("rm ~/hello.txt && echo gone-$((2+2))")
    page.keyboard.press("Enter")
    wait_output(frame, "gone-4", 60)
    page.locator(".stacklab-block").get_by_role("button", name="Check my work").click()
    page.locator(".stacklab-block .stacklab-status", has_text="1 of 2 passed").wait_for(timeout=90_000)
    assert "3 / 3" in page.locator(".stacklab-block .stacklab-score").inner_text()


def test_unreachable_service_shows_a_clear_message(workbench_venv: Path, page) -> None:  # type: ignore[no-untyped-def]
    proc, bench = start_workbench(workbench_venv, f"http://127.0.0.1:{free_port()}", "x" * 40)
    try:
        page.goto(f"{bench.url}/scenario/stacklab.0/")
        error = page.locator(".stacklab-block .stacklab-error")
        error.wait_for()
        assert "cannot be reached" in error.inner_text()
        assert page.locator("iframe.stacklab-frame").count() == 0
    finally:
        stop(proc)
        shutil.rmtree(bench.workdir, ignore_errors=True)
