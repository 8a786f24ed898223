"""Helpers for the browser tests: reading and typing into the page's terminal, calling the servers."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable


def post(url: str, body: object | None = None) -> object:
    data = json.dumps(body if body is not None else {}).encode()
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
    return json.loads(text) if text else None


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


# ---- helpers for the terminal ------------------------------------------------------------------------


def terminal_text(page) -> str:  # type: ignore[no-untyped-def]
    return str(page.evaluate("() => window.stacklabTerm ? window.stacklabTerm.text() : ''"))


def wait_for(predicate: Callable[[], object], timeout_s: float, what: str, interval_s: float = 0.2) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def wait_connected(page, timeout_s: float = 30) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function(
        "() => window.stacklabTerm && window.stacklabTerm.state === 'connected'", timeout=timeout_s * 1000
    )


def run_in_terminal(page, command: str) -> None:  # type: ignore[no-untyped-def]
    page.locator(".term-host:not([hidden]) .xterm").click()
    page.keyboard.type(command)
    page.keyboard.press("Enter")


def wait_output(page, needle: str, timeout_s: float = 20) -> str:  # type: ignore[no-untyped-def]
    return str(
        wait_for(
            lambda: (text := terminal_text(page)) and needle in text and text,
            timeout_s,
            f"{needle!r} in the terminal; it shows:\n{terminal_text(page)[-2000:]}",
        )
    )
