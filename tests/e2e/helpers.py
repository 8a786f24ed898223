"""Helpers for the browser tests: reading and typing into the page's terminal, calling the servers."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

AXE = Path(__file__).resolve().parents[2] / "frontend" / "node_modules" / "axe-core" / "axe.min.js"


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


# The columns xterm.js shows are those the terminal area holds: (inner width - scrollbar) / cell width.
TERMINAL_FILLS_WIDTH = """() => {
  const t = window.stacklabTerm.term;
  const host = t.element.parentElement;
  const style = getComputedStyle(host);
  const inner = host.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  const cell = t._core._renderService.dimensions.css.cell.width;
  const scrollbar = t._core.viewport ? t._core.viewport.scrollBarWidth || 0 : 0;
  const expected = Math.floor((inner - scrollbar) / cell);
  return Math.abs(t.cols - expected) <= 1 && inner / cell > 60;
}"""


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


# ---- accessibility ---------------------------------------------------------------------------------------


def serious_violations(page, include: str | None = None) -> list[str]:  # type: ignore[no-untyped-def]
    """axe-core's serious and critical WCAG violations on a page or frame (only `include`'s elements when
    given: the part of a host page that is ours). A page with a CSP needs a context with bypass_csp=True."""
    page.add_script_tag(path=str(AXE))
    results = page.evaluate(
        "async (include) => await axe.run(include ? {include: [include]} : document, "
        "{resultTypes: ['violations'], iframes: false})",
        include,
    )
    found = [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']]}"
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    everything = [f"{v['id']} ({v['impact']})" for v in results["violations"]]
    print(f"axe on {page.url}: {len(everything)} violations {everything}, {len(found)} serious or critical")
    return found
