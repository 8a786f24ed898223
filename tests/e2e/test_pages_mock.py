"""The pages against the stand-in server (tests/e2e/mock_app.py): fast, no LXC needed.

They pin the browser side of docs/web-protocol.md: token handling, progress, the terminal (input, output,
acks, resize, paste, reconnect with session and offset, 4409), checks, reset, multi-node, operator view.
"""

from __future__ import annotations

import base64
import json
import re
import time

import pytest
from tests.e2e.helpers import (
    get_json,
    post,
    run_in_terminal,
    wait_connected,
    wait_for,
    wait_output,
)

pytestmark = pytest.mark.e2e


def open_lab(page, url: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{url}/demo")
    wait_connected(page)
    wait_output(page, "$ ")


def test_index_links_to_the_demo(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(mock_url)
    link = page.get_by_role("link", name="Try the demo lab")
    assert link.get_attribute("href") == "/demo"


def test_progress_then_terminal_and_the_token_leaves_the_url(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{mock_url}/demo")
    steps = page.locator(".steps .step")
    steps.first.wait_for()
    assert page.locator(".steps [data-step=creating]").count() == 1
    assert "Starting them up" in page.locator(".steps").inner_text()
    wait_connected(page)
    assert "#" not in page.url and "token" not in page.url
    assert page.evaluate("() => sessionStorage.getItem('stacklab.token.e-mock1')") == "mock-learner-token"
    assert page.locator("#lab-title").inner_text() == "Hello, lab"
    assert "Create a greeting file" in page.locator("#lab-description").inner_text()
    run_in_terminal(page, "echo out-$((6*7))")
    wait_output(page, "out-42")


def test_paste_goes_to_the_shell_as_input(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    open_lab(page, mock_url)
    page.locator(".term-host:not([hidden]) .xterm").click()
    page.evaluate(
        """() => {
            const data = new DataTransfer();
            data.setData('text/plain', 'echo pasted-$((5*5))');
            const area = document.querySelector('.term-host:not([hidden]) textarea');
            const event = {clipboardData: data, bubbles: true, cancelable: true};
            area.dispatchEvent(new ClipboardEvent('paste', event));
        }"""
    )
    page.keyboard.press("Enter")
    wait_output(page, "pasted-25")


def test_acks_follow_rendering_and_resize_follows_the_window(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    open_lab(page, mock_url)
    run_in_terminal(page, "head -c 300000 /dev/zero | tr '\\0' x; echo; echo flood-$((1+1))")
    wait_output(page, "flood-2", timeout_s=30)
    acks = wait_for(lambda: [a for a in get_json(f"{mock_url}/mock/state")["acks"] if a > 300000], 5, "acks")
    assert acks
    page.set_viewport_size({"width": 900, "height": 600})
    cols = page.evaluate("() => window.stacklabTerm.term.cols")
    wait_for(
        lambda: any(c == cols for c, _ in get_json(f"{mock_url}/mock/state")["resizes"]),
        5,
        "a resize message",
    )


def test_reconnect_reattaches_without_losing_or_repeating_output(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    open_lab(page, mock_url)
    run_in_terminal(page, "MARK=kept-$((40+2)); echo once-$((2+3))")
    wait_output(page, "once-5")
    post(f"{mock_url}/mock/drop")
    page.locator("#conn-banner", has_text="reconnecting").wait_for(timeout=5000)
    wait_connected(page)
    assert page.locator("#conn-banner").is_hidden()
    run_in_terminal(page, 'echo "mark=$MARK"')
    text = wait_output(page, "mark=kept-42")
    assert text.count("once-5") == 1
    sessions = get_json(f"{mock_url}/mock/state")["sessions"]
    assert len(sessions) == 1


def test_not_running_goes_back_to_progress_and_resumes(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    open_lab(page, mock_url)
    run_in_terminal(page, "MARK=still-$((3*3))")
    post(f"{mock_url}/mock/suspend")
    page.locator("#progress-view", has_text="Bringing your lab back").wait_for(timeout=5000)
    wait_connected(page)
    run_in_terminal(page, 'echo "mark=$MARK"')
    wait_output(page, "mark=still-9")
    assert "resume" in get_json(f"{mock_url}/mock/state")["actions"][1:]


def test_shells_closed_by_a_stop_bring_the_lab_back_with_a_new_shell(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    open_lab(page, mock_url)
    post(f"{mock_url}/mock/suspend?how=closed")
    page.locator("#progress-view", has_text="Bringing your lab back").wait_for(timeout=5000)
    wait_connected(page)
    wait_output(page, "a new shell was started")
    run_in_terminal(page, "echo back-$((2*4))")
    wait_output(page, "back-8")


def test_a_shell_taken_by_another_tab_can_be_taken_back(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    open_lab(page, mock_url)
    run_in_terminal(page, "MARK=mine")
    post(f"{mock_url}/mock/take")
    banner = page.locator("#conn-banner", has_text="another tab")
    banner.wait_for(timeout=5000)
    banner.get_by_role("button", name="Use it here").click()
    wait_connected(page)
    run_in_terminal(page, 'echo "mark=$MARK-$((1+1))"')
    wait_output(page, "mark=mine-2")


def test_exit_ends_the_shell_and_a_new_one_can_start(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    open_lab(page, mock_url)
    run_in_terminal(page, "exit")
    banner = page.locator("#conn-banner", has_text="ended")
    banner.wait_for(timeout=5000)
    banner.get_by_role("button", name="Start a new shell").click()
    wait_connected(page)
    run_in_terminal(page, "echo again-$((3+4))")
    wait_output(page, "again-7")


def test_reload_keeps_the_shell(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    open_lab(page, mock_url)
    run_in_terminal(page, "MARK=reload-$((7*6))")
    page.reload()
    wait_connected(page)
    run_in_terminal(page, 'echo "mark=$MARK"')
    wait_output(page, "mark=reload-42")


def test_checks_show_results_hints_and_score(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    open_lab(page, mock_url)
    assert page.locator("#score").inner_text() == "Not checked yet"
    page.get_by_role("button", name="Check my work").click()
    page.locator("#score-value", has_text="0/3").wait_for()
    assert page.locator("[data-check=hello-file].check-fail .check-hint").is_visible()
    run_in_terminal(page, 'echo "hello world" > ~/hello.txt && mkdir ~/alice && echo done-$((1+1))')
    wait_output(page, "done-2")
    page.get_by_role("button", name="Check my work").click()
    page.locator("#score-value", has_text="3/3").wait_for()
    assert page.locator(".check-pass").count() == 2
    page.reload()
    page.locator("#score-value", has_text="3/3").wait_for()


def test_reset_asks_then_starts_fresh(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    open_lab(page, mock_url)
    run_in_terminal(page, "MARK=old")
    page.get_by_role("button", name="Reset lab…").click()
    dialog = page.get_by_role("dialog", name="Reset your lab?")
    dialog.wait_for()
    dialog.get_by_role("button", name="Cancel").click()
    assert dialog.is_hidden()
    assert "reset" not in get_json(f"{mock_url}/mock/state")["actions"]
    page.get_by_role("button", name="Reset lab…").click()
    page.get_by_role("button", name="Reset my lab").click()
    page.locator(".steps").wait_for()
    wait_connected(page)
    run_in_terminal(page, 'echo "mark=[$MARK]"')
    wait_output(page, "mark=[]")
    assert "reset" in get_json(f"{mock_url}/mock/state")["actions"]


def test_failed_launch_shows_the_message_and_retries(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    post(f"{mock_url}/mock/fail-next")
    page.goto(f"{mock_url}/demo")
    alert = page.get_by_role("alert").filter(has_text="could not start")
    alert.wait_for()
    assert "Please try again" in alert.inner_text()
    page.get_by_role("button", name="Retry").click()
    wait_connected(page)


def test_node_selector_opens_one_shell_per_node(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    post(f"{mock_url}/mock/nodes", {"nodes": ["main", "worker1"]})
    open_lab(page, mock_url)
    tabs = page.get_by_role("tab")
    assert tabs.all_inner_texts() == ["main", "worker1"]
    page.get_by_role("tab", name="worker1").click()
    page.wait_for_function("() => window.stacklabTerm.node === 'worker1'")
    wait_connected(page)
    assert page.get_by_role("tab", name="worker1").get_attribute("aria-selected") == "true"
    sessions = get_json(f"{mock_url}/mock/state")["sessions"]
    assert sorted(node for _, node in sessions) == ["main", "worker1"]


def test_missing_token_explains_what_to_do(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{mock_url}/lab/e-mock1")
    assert "access link" in page.get_by_role("alert").inner_text()


def test_token_is_refreshed_before_it_expires(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    claims = {"sub": "demo", "role": "learner", "env": "e-mock1", "exp": time.time() + 8}
    # A JWT's shape (the page reads `exp` from it); the mock takes any *.mock token.
    token = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(claims)}.mock"
    page.goto(f"{mock_url}/lab/e-mock1#token={token}")
    wait_connected(page)
    wait_for(lambda: get_json(f"{mock_url}/mock/state")["tokens_issued"] >= 1, 15, "a token refresh")
    stored = page.evaluate("() => sessionStorage.getItem('stacklab.token.e-mock1')")
    assert stored.startswith("mock-learner-token-")


def _b64(part: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


def test_operator_view(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{mock_url}/admin#token=mock-admin-token")
    rows = page.locator("#env-rows tr")
    rows.first.wait_for()
    assert rows.count() == 2
    assert "token" not in page.url
    assert "launch timed out" in page.locator("#env-rows").inner_text()
    page.get_by_role("button", name="Suspend e-mock1").click()
    wait_for(lambda: "admin-suspend-e-mock1" in get_json(f"{mock_url}/mock/state")["actions"], 5, "suspend")
    page.locator("#audit-rows tr[data-audit]").first.wait_for()  # the audit log, reloaded after the action
    newest = page.locator("#audit-rows tr").first.inner_text().split("\t")
    assert newest[1:4] == ["mock", "suspend", "e-mock1"]
    page.get_by_role("button", name="History of e-mock1").click()
    dialog = page.get_by_role("dialog", name=re.compile("History of e-mock1"))
    dialog.locator("tbody tr").first.wait_for()
    assert dialog.locator("tbody tr").count() == 2
    dialog.get_by_role("button", name="Close").click()
    page.get_by_role("button", name="Delete e-mock2").click()
    page.get_by_role("button", name="Delete", exact=True).click()
    wait_for(lambda: "admin-delete-e-mock2" in get_json(f"{mock_url}/mock/state")["actions"], 5, "delete")
    page.fill("#filter-course", "c1")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_function("() => document.querySelectorAll('#env-rows tr').length === 1")
    assert "course=c1" in page.url
