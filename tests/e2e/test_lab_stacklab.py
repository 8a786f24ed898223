"""The demo lab end to end: a real `stacklab serve`, real LXC nodes, the real terminal, in chromium.

One browser context for the whole module (the demo gives one environment per browser), so the tests run in
order: terminal, checks, suspend and come back.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from urllib.parse import unquote, urlparse

import pytest
from tests.e2e.conftest import Stacklab
from tests.e2e.helpers import run_in_terminal, wait_connected, wait_output

pytestmark = [pytest.mark.e2e, pytest.mark.lxc]

LAUNCH_S = 300


@pytest.fixture(scope="module")
def lab_page(browser, stacklab: Stacklab) -> Iterator[object]:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(30_000)
    page = context.new_page()
    yield page
    context.close()


def env_id(page) -> str:  # type: ignore[no-untyped-def]
    path = urlparse(page.url).path
    assert path.startswith("/lab/"), page.url
    return unquote(path[len("/lab/") :])


def test_demo_shows_progress_then_a_working_terminal(lab_page, stacklab: Stacklab) -> None:  # type: ignore[no-untyped-def]
    page = lab_page
    page.goto(f"{stacklab.url}/demo")
    page.locator(".steps .step").first.wait_for()
    assert "token" not in page.url
    wait_connected(page, timeout_s=LAUNCH_S)
    wait_output(page, "$ ", timeout_s=60)
    run_in_terminal(page, "echo sum-$((40+2)); hostname")
    wait_output(page, "sum-42")
    shots = os.environ.get("STACKLAB_E2E_SCREENSHOTS") or tempfile.gettempdir()
    page.screenshot(path=os.path.join(shots, "stacklab-lab-page.png"))


def test_floods_are_flow_controlled_and_ctrl_c_acts_at_once(lab_page, stacklab: Stacklab) -> None:  # type: ignore[no-untyped-def]
    page = lab_page
    run_in_terminal(page, "head -c 2000000 /dev/zero | tr '\\0' x; echo; echo flood-$((5+5))")
    wait_output(page, "flood-10", timeout_s=60)  # 2 MB pass only if acks keep coming
    run_in_terminal(page, "yes stacklab-flood")
    time.sleep(1.5)
    page.keyboard.press("Control+C")
    started = time.monotonic()
    run_in_terminal(page, "echo after-$((3+4))")
    wait_output(page, "after-7", timeout_s=15)
    assert time.monotonic() - started < 15


def test_check_my_work_moves_the_score(lab_page, stacklab: Stacklab) -> None:  # type: ignore[no-untyped-def]
    page = lab_page
    page.get_by_role("button", name="Check my work").click()
    page.locator("#score-value", has_text="0/3").wait_for(timeout=60_000)
    run_in_terminal(
        page, 'echo "hello world" > ~/hello.txt && sudo useradd --create-home alice && echo ok-$((1+1))'
    )
    wait_output(page, "ok-2", timeout_s=60)
    page.get_by_role("button", name="Check my work").click()
    page.locator("#score-value", has_text="3/3").wait_for(timeout=60_000)
    assert page.locator(".check-pass").count() == 2


def test_suspended_lab_comes_back_as_it_was(lab_page, stacklab: Stacklab) -> None:  # type: ignore[no-untyped-def]
    page = lab_page
    run_in_terminal(page, "LABMARK=kept-$((6*7)); echo file-$((2+2)) > ~/before.txt; echo set-$((3+3))")
    wait_output(page, "set-6")
    stacklab.cli("env", "suspend", env_id(page), "--wait")
    # The open page hears that its lab was paused, and leaves it paused until the learner asks.
    page.get_by_role("button", name="Resume my lab").wait_for(timeout=30_000)
    assert json.loads(stacklab.cli("env", "show", env_id(page), "--json"))["observed"] == "suspended"
    page.reload()
    wait_connected(page, timeout_s=LAUNCH_S)
    run_in_terminal(page, 'echo "mark=$LABMARK"; cat ~/before.txt')
    text = wait_output(page, "mark=kept-42", timeout_s=60)
    wait_output(page, "\nfile-4")
    assert text


def test_operator_view_lists_the_lab_with_its_history(browser, lab_page, stacklab: Stacklab) -> None:  # type: ignore[no-untyped-def]
    env = env_id(lab_page)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.goto(f"{stacklab.url}/admin")
        page.wait_for_url("**/admin/login")
        page.get_by_label("Password").fill(stacklab.admin_password)
        page.get_by_role("button", name="Sign in").click()
        row = page.locator(f"#env-rows tr[data-env='{env}']")
        row.wait_for()
        assert "token" not in page.url
        assert "hello-lab" in row.inner_text()
        page.get_by_role("button", name=f"History of {env}").click()
        dialog = page.get_by_role("dialog", name=f"History of {env}")
        dialog.locator("tbody tr").first.wait_for()
        assert "suspended" in dialog.inner_text()
    finally:
        context.close()
