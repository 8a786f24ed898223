"""The pages' Content-Security-Policy, enforced by a real chromium against a real `stacklab serve`.

The lab page works under its policy (scripts from the service, the terminal websocket to it) and refuses
script the page did not ship; the LMS named in `allowed_origins` may frame the lab page, another site may
not; nobody may frame the operator page.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest
from tests.e2e.conftest import Stacklab, free_port, serving_stacklab
from tests.e2e.helpers import run_in_terminal, wait_connected, wait_output

pytestmark = [pytest.mark.e2e, pytest.mark.lxc]

LAUNCH_S = 300
# Collects what the policy refused, from before the page's own scripts run.
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.cspViolations.push(e.violatedDirective + " " + e.blockedURI);
});
"""
INJECT = """() => {
  const script = document.createElement("script");
  script.textContent = "window.injected = 'inline script ran'";
  document.head.appendChild(script);
  const img = document.createElement("img");
  img.setAttribute("onerror", "window.injected = 'inline handler ran'");
  img.src = "/static/no-such-image.png";
  document.body.appendChild(img);
}"""


class FramingSite:
    """A site on its own origin (another port of 127.0.0.1) whose page frames the given URLs."""

    def __init__(self) -> None:
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.frames: dict[str, str] = {}
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = "".join(f'<iframe name="{n}" src="{u}"></iframe>' for n, u in site.frames.items())
                data = f"<!doctype html><html><body>{body}</body></html>".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def sites() -> Iterator[tuple[FramingSite, FramingSite]]:
    lms, other = FramingSite(), FramingSite()
    yield lms, other
    lms.close()
    other.close()


@pytest.fixture(scope="module")
def stacklab_for_lms(built_pages: None, sites: tuple[FramingSite, FramingSite]) -> Iterator[Stacklab]:
    lms, _other = sites
    with serving_stacklab("stacklab-csp-", {"STACKLAB_ALLOWED_ORIGINS": lms.origin}) as service:
        yield service


def test_lab_page_works_under_its_policy_and_runs_no_injected_script(browser, stacklab_for_lms) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(30_000)
    context.add_init_script(RECORD_VIOLATIONS)
    try:
        page = context.new_page()
        response = page.goto(f"{stacklab_for_lms.url}/demo")
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "connect-src 'self'" in policy
        wait_connected(page, timeout_s=LAUNCH_S)  # lab.js ran, the API answered, the websocket is open
        run_in_terminal(page, "echo csp-$((20+22))")
        wait_output(page, "csp-42", timeout_s=60)
        page.get_by_role("button", name="Check my work").click()
        page.locator("#score-value").wait_for(timeout=60_000)
        assert page.evaluate("() => window.cspViolations") == []

        page.evaluate(INJECT)
        page.wait_for_function("() => window.cspViolations.length >= 2")
        assert page.evaluate("() => window.injected") is None
        refused = sorted(v.split()[0] for v in page.evaluate("() => window.cspViolations"))
        assert refused == ["script-src-attr", "script-src-elem"]
    finally:
        context.close()


def test_the_lms_may_frame_the_lab_page_and_nobody_the_operator_page(  # type: ignore[no-untyped-def]
    browser, stacklab_for_lms, sites
) -> None:
    lms, other = sites
    frames = {"lab": f"{stacklab_for_lms.url}/lab/0000abcd", "admin": f"{stacklab_for_lms.url}/admin"}
    lms.frames = other.frames = frames
    context = browser.new_context()
    context.set_default_timeout(30_000)
    try:
        page = context.new_page()
        refusals: list[str] = []
        page.on("console", lambda message: refusals.append(message.text))

        def loaded(name: str) -> bool:
            frame = page.frame(name=name)
            assert frame is not None
            return frame.url == frames[name]  # a refused frame shows chrome-error://chromewebdata/

        page.goto(lms.origin)
        page.frame(name="lab").locator("#lab-title").wait_for()  # the lab page and its script loaded
        assert loaded("lab") and not loaded("admin")
        page.goto(other.origin)
        page.wait_for_function("() => true")
        page.wait_for_timeout(500)
        assert not loaded("lab") and not loaded("admin")
    finally:
        context.close()
    framing = [r for r in refusals if r.startswith("Framing")]
    assert len(framing) == 3, refusals
    assert sum("frame-ancestors 'none'" in r for r in framing) == 2
    assert sum(f"frame-ancestors 'self' {lms.origin}" in r for r in framing) == 1
