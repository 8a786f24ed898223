"""The lab page inside a course unit (`?embedded=1`) against the stand-in server (tests/e2e/mock_app.py).

What a learner in the unit notices: no second Check or score, no second title, the course's name; a plain
sentence and a next step for every failure (never an HTTP status); a way out of the terminal by keyboard; a
terminal that fills the frame at each width; full screen; and axe-core finding no serious or critical
violation on the lab page (progress and terminal views) and the operator page.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlencode

import pytest
from tests.e2e.helpers import TERMINAL_FILLS_WIDTH, post, serious_violations, wait_connected, wait_output

pytestmark = pytest.mark.e2e

EMBEDDED = "/lab/e-mock1?embedded=1#token=mock-learner-token"
HTTP_TEXT = re.compile(r"HTTP|\b[45]\d\d\b|/api/|technical detail")


def open_embedded(page, url: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(url + EMBEDDED)
    wait_connected(page)
    wait_output(page, "$ ")


def visible_text(page) -> str:  # type: ignore[no-untyped-def]
    return str(page.locator("body").inner_text())


def test_embedded_mode_leaves_check_and_title_to_the_unit(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    open_embedded(page, mock_url)
    assert page.get_by_role("button", name="Check my work").count() == 0
    assert page.locator("#checks-card").is_hidden()
    assert "Your progress" not in visible_text(page)
    assert page.locator("#lab-title").evaluate("el => el.getBoundingClientRect().width <= 1")  # readers only
    assert page.locator("#lab-meta").inner_text() == "Linux for beginners"
    assert page.get_by_role("link", name="stacklab").count() == 0  # nothing loads another page into the frame
    assert page.evaluate("() => document.activeElement === document.body")  # no focus taken on load


def test_embedded_mode_hides_a_bare_course_id(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    post(f"{mock_url}/mock/course-name", {"name": None})
    open_embedded(page, mock_url)
    assert "course-v1" not in visible_text(page)


def test_the_course_name_the_unit_passes_is_shown_as_text(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    post(f"{mock_url}/mock/course-name", {"name": None})  # the service does not know the course's name
    name = '<img src=x onerror="window.injected=1">Linux & co'
    page.goto(
        f"{mock_url}/lab/e-mock1?embedded=1&{urlencode({'course_name': name})}#token=mock-learner-token"
    )
    wait_connected(page)
    assert page.locator("#lab-meta").inner_text() == name  # the words, not markup
    assert page.locator("#lab-meta img").count() == 0
    assert page.evaluate("() => window.injected === undefined")
    assert "course-v1" not in visible_text(page)


def test_the_standalone_page_keeps_its_check(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{mock_url}/lab/e-mock1#token=mock-learner-token")
    wait_connected(page)
    assert page.get_by_role("button", name="Check my work").is_visible()
    assert page.locator("#lab-title").inner_text() == "Hello, lab"


@pytest.mark.parametrize(
    ("status", "sentence"),
    [
        (401, "Open the lab again from your course"),
        (403, "Open the lab again from your course"),
        (404, "no longer exists"),
    ],
)
def test_token_and_lab_errors_say_what_to_do(page, mock_url: str, status: int, sentence: str) -> None:  # type: ignore[no-untyped-def]
    post(f"{mock_url}/mock/fault", {"status": status, "path": "/environments/"})
    page.goto(mock_url + EMBEDDED)
    alert = page.get_by_role("alert").filter(has_text=sentence)
    alert.wait_for(timeout=5000)
    assert f"reference: mockreq{status:x}" in alert.inner_text()
    assert not HTTP_TEXT.search(visible_text(page))


def test_not_running_is_still_starting_not_an_error(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    post(f"{mock_url}/mock/fault", {"status": 409, "path": "/resume", "times": 1})
    page.goto(mock_url + EMBEDDED)
    page.locator("#progress-view .steps").wait_for(timeout=5000)
    assert page.get_by_role("alert").filter(has_text="Cannot open").count() == 0
    assert not HTTP_TEXT.search(visible_text(page))
    wait_connected(page)


def test_a_service_fault_keeps_trying_then_offers_retry(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    post(f"{mock_url}/mock/fault", {"status": 500, "path": "/environments/"})
    page.goto(mock_url + EMBEDDED)
    page.locator("#progress-view", has_text="not answering; we keep trying").wait_for(timeout=5000)
    assert "reference: mockreq1f4" in page.locator("#progress-view").inner_text()
    retry = page.get_by_role("button", name="Retry")
    retry.wait_for(timeout=20_000)  # the page gives up after its bounded tries
    assert not HTTP_TEXT.search(visible_text(page))
    post(f"{mock_url}/mock/fault", {})
    retry.click()
    wait_connected(page)


def test_network_down_is_said_plainly_and_recovers(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    page.route("**/api/v1/**", lambda route: route.abort())
    page.goto(mock_url + EMBEDDED)
    page.locator("#progress-view", has_text="not answering; we keep trying").wait_for(timeout=5000)
    assert not HTTP_TEXT.search(visible_text(page))
    page.unroute("**/api/v1/**")
    wait_connected(page)


def focus_in_terminal(page) -> bool:  # type: ignore[no-untyped-def]
    return bool(page.evaluate("() => Boolean(document.activeElement.closest('.xterm'))"))


def test_the_documented_keys_leave_the_terminal(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    open_embedded(page, mock_url)
    assert "Ctrl+]" in page.locator("#leave-help").inner_text()
    page.locator(".term-host:not([hidden]) .xterm").click()
    page.keyboard.press("Tab")  # a plain Tab belongs to the shell (completion)
    assert focus_in_terminal(page)
    page.keyboard.press("Control+BracketRight")
    assert not focus_in_terminal(page)
    assert page.evaluate("() => document.activeElement.id") == "fullscreen-button"
    page.locator(".term-host:not([hidden]) .xterm").click()
    page.keyboard.press("Escape")
    page.keyboard.press("Tab")
    assert not focus_in_terminal(page)


def test_screen_reader_mode_can_be_turned_on(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    open_embedded(page, mock_url)
    button = page.get_by_role("button", name="Screen reader mode")
    button.click()
    assert button.get_attribute("aria-pressed") == "true"
    assert page.evaluate("() => window.stacklabTerm.term.options.screenReaderMode") is True


@pytest.mark.parametrize("width", [1440, 1280, 1024, 800])
def test_the_terminal_fills_the_frame(page, mock_url: str, width: int, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page.set_viewport_size({"width": width, "height": 720})
    open_embedded(page, mock_url)
    page.wait_for_function(TERMINAL_FILLS_WIDTH, timeout=5000)
    shot = tmp_path / f"lab-embedded-{width}.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot at {width} px: {shot}")
    side = page.locator(".side")
    assert side.evaluate("el => el.scrollHeight <= el.clientHeight + 1")  # no scrolling inside the cards


def test_full_screen_enters_and_leaves(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    open_embedded(page, mock_url)
    button = page.get_by_role("button", name="Full screen")
    button.click()
    page.wait_for_function("() => document.fullscreenElement?.id === 'terminal-view'", timeout=5000)
    exit_button = page.get_by_role("button", name="Exit full screen")
    assert exit_button.get_attribute("aria-pressed") == "true"
    exit_button.click()
    page.wait_for_function("() => document.fullscreenElement === null", timeout=5000)
    assert page.get_by_role("button", name="Full screen").is_visible()


def test_axe_lab_page_progress_and_terminal(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(mock_url + EMBEDDED)
    page.locator("#progress-view .steps").wait_for()
    assert serious_violations(page) == []
    wait_connected(page)
    wait_output(page, "$ ")
    assert serious_violations(page) == []
    page.goto(f"{mock_url}/lab/e-mock1#token=mock-learner-token")
    wait_connected(page)
    assert serious_violations(page) == []


def test_axe_admin_page(page, mock_url: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{mock_url}/admin#token=mock-admin-token")
    page.locator("#env-rows tr").first.wait_for()
    assert serious_violations(page) == []
