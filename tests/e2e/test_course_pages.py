"""The course view and the usage chart in chromium: the real web app (uvicorn) on SQLite, labs on the
in-memory provider whose nodes are a real SSH server (checks run for real), their history spread over the
last days by the engine's own clock, so that the chart has something to draw.

Course staff get the view the way the XBlock's staff panel does (its client asks the service with the LMS's
signed JWT), see their class (state, score and attempts, time used, last activity) and open a learner's lab
read-only; an operator sees the same class and the usage chart (uPlot, bundled) in the admin page. axe-core
finds nothing serious on either page, and the pages' CSP blocks nothing they need.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.helpers import serious_violations, wait_for
from tests.support.engine import Clock
from tests.support.memory_provider import MemoryProvider
from tests.support.sshd import SshServer, start_sshd
from tests.support.terminals import serve_asgi
from tests.support.web_app import COURSE, LMS_KEY, LMS_SECRET, make_stack

from stacklab.types import Desired
from stacklab.web.app import create_app
from stacklab.wiring import App

pytestmark = pytest.mark.e2e

XBLOCK_SRC = Path(__file__).resolve().parents[2] / "xblock" / "src"
ARTIFACTS = Path(
    os.environ.get("STACKLAB_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "tests" / "artifacts")
)
ARTIFACTS = ARTIFACTS / "test_course_pages"
"""Screenshots of the chart and the class (gitignored; CI may upload the folder)."""
HOUR = 3600.0


class Served:
    """The service on its own event loop in a thread (the browser test is synchronous)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def _seed(stack: App, clock: Clock) -> dict[str, str]:
    """ada ran 3 h two days ago and is paused since; bob ran 1 h yesterday and runs now; both checked."""
    envs = stack.environments
    lab = stack.settings.labs_dir + "/hello.yaml"
    now = time.time()
    clock.now = now - 50 * HOUR
    ada = envs.launch(lab, "ada", COURSE).id
    await envs.drive(ada, 30)
    clock.now += 3 * HOUR
    envs.request(ada, Desired.SUSPENDED, "IdleTimeout")
    await envs.drive(ada, 30)
    clock.now = now - 20 * HOUR
    bob = envs.launch(lab, "bob", COURSE).id
    await envs.drive(bob, 30)
    clock.now = now - 5
    for env_id in (bob, bob):
        await envs.check(env_id)  # checks run over SSH on the node (a real SSH server)
    return {"ada": ada, "bob": bob}


async def _closed(sshd: SshServer) -> None:
    """The SSH server closed on its own loop (asyncssh is not thread-safe), its connections ended: closed
    from the test's thread and the loop stopped at once, their sockets were left for a later test's GC."""
    sshd.close()
    await sshd.wait_closed()
    await asyncio.sleep(0.1)  # turns of the loop for the client ends to read the EOF and close theirs


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    served = Served()
    tmp = tmp_path_factory.mktemp("course-view")
    sshd, port = served.run(start_sshd())
    stack = make_stack(tmp, {"_ssh": MemoryProvider("_ssh", {"ssh": ("127.0.0.1", port)})}, token_ttl_s=600)
    clock = Clock()
    stack.controller.clock = clock
    stack.environments.clock = clock
    envs = served.run(_seed(stack, clock))
    stack.controller.clock = stack.environments.clock = time.time
    app = create_app(stack, run_engine=False)
    started: Future[str] = Future()
    stop = asyncio.Event()

    async def serve() -> None:
        async with serve_asgi(app) as url:
            app.state.ctx.public_url = url.replace("ws://", "http://")  # the links it gives name this server
            started.set_result(app.state.ctx.public_url)
            await stop.wait()

    task = asyncio.run_coroutine_threadsafe(serve(), served.loop)
    try:
        yield {"url": started.result(30), "stack": stack, "envs": envs}
    finally:
        served.loop.call_soon_threadsafe(stop.set)
        task.result(30)
        stack.close()
        served.run(_closed(sshd))
        served.stop()


def _xblock_client(url: str):  # type: ignore[no-untyped-def]
    """The XBlock's own client (xblock/src), as its staff panel's `staff_course_view` handler uses it."""
    if str(XBLOCK_SRC) not in sys.path:
        sys.path.insert(0, str(XBLOCK_SRC))
    from stacklab_xblock.client import ServiceConfig, StacklabClient

    return StacklabClient(ServiceConfig(url, LMS_KEY, LMS_SECRET))


def _csp_errors(page) -> list[str]:  # type: ignore[no-untyped-def]
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    return errors


def test_course_staff_see_their_class_and_watch_a_lab_read_only(browser, service) -> None:  # type: ignore[no-untyped-def]
    view = _xblock_client(service["url"]).staff_view(COURSE, "hello-lab", "sam")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(30_000)
    try:
        page = context.new_page()
        blocked = _csp_errors(page)
        names = json.dumps({"ada": "Ada Lovelace"})  # the XBlock's map of anonymous ids to LMS usernames
        page.goto(view["url"] + "&names=" + urllib.parse.quote(names))
        rows = page.locator("#class-rows tr[data-learner]")
        rows.first.wait_for()
        assert "token" not in page.url and "names" not in page.url
        assert page.locator("#course-name").inner_text() == COURSE
        assert rows.count() == 2
        ada, bob = page.locator("tr[data-learner='ada'] td"), page.locator("tr[data-learner='bob'] td")
        assert (
            ada.nth(0).inner_text().split("\n") == ["Ada Lovelace", "ada"]
            and bob.nth(0).inner_text() == "bob"
        )
        ada, bob = page.locator("tr[data-learner='ada'] td"), page.locator("tr[data-learner='bob'] td")
        assert ada.nth(2).inner_text().startswith("suspended") and bob.nth(2).inner_text().startswith(
            "running"
        )
        assert ada.nth(3).inner_text() == "not checked" and bob.nth(3).inner_text() == "0 / 3"
        assert ada.nth(5).inner_text() == "3 h 00 min"  # 3 h running, from the transitions
        assert re.fullmatch(r"\d+ h \d\d min", bob.nth(5).inner_text())
        bob.nth(4).get_by_text("2 attempts").click()
        assert bob.nth(4).locator("li").count() == 2
        assert "ago" in bob.nth(6).inner_text()
        with context.expect_page() as opened:
            page.get_by_role("button", name="Watch Ada Lovelace's lab read-only").click()
        lab = opened.value
        lab.wait_for_url(re.compile(rf"/lab/{service['envs']['ada']}"), wait_until="commit")
        lab.locator("#read-only-badge").wait_for()
        assert "token" not in lab.url
        reasons = [t.reason for t in service["stack"].repo.history(service["envs"]["ada"])]
        assert "StaffViewResumed" in reasons  # the paused lab is woken for the watcher
        lab.close()
        assert blocked == []
    finally:
        context.close()
    axe_context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    try:
        page = axe_context.new_page()
        page.goto(_xblock_client(service["url"]).staff_view(COURSE, "hello-lab", "sam")["url"])
        page.locator("#class-rows tr[data-learner]").first.wait_for()
        page.locator("tr[data-learner='bob'] details summary").click()
        assert serious_violations(page) == []
    finally:
        axe_context.close()


def _sign_in(page, url: str, password: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{url}/admin/login")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/admin(\?.*)?$"), wait_until="commit")


@pytest.mark.parametrize("bypass_csp", [False, True], ids=["csp", "axe"])
def test_operators_see_the_class_and_the_usage_chart(browser, service, bypass_csp: bool) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=bypass_csp)
    context.set_default_timeout(30_000)
    try:
        page = context.new_page()
        blocked = _csp_errors(page)
        _sign_in(page, service["url"], "operator-pass")
        page.get_by_label("Course", exact=True).first.wait_for()
        page.locator("#class-course").fill(COURSE)
        page.get_by_role("button", name="Show class").click()
        page.locator("#admin-class-rows tr[data-learner='bob']").wait_for()
        assert page.locator("#admin-class-rows tr[data-learner]").count() == 2

        page.locator("#usage-course").fill(COURSE)
        page.get_by_role("button", name="Show usage").click()
        page.locator("#usage-rows tr[data-usage]").first.wait_for()
        chart = page.locator("#usage-chart")
        chart.locator("canvas").wait_for()
        assert "at most 1.0 nodes running" in str(chart.get_attribute("aria-label"))
        legend = str(chart.locator(".u-legend").text_content())
        assert "Nodes running" in legend and "Nodes suspended" in legend and "Labs queued" in legend
        drawn = page.evaluate(
            """() => { const c = document.querySelector('#usage-chart canvas');
                 const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                 let ink = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) ink++; return ink; }"""
        )
        assert drawn > 1000  # the canvas holds lines and fills, not only an empty frame
        total = page.locator("#usage-rows tr.total").inner_text().split("\t")
        running_h = sum(
            float(t) for t in page.locator("#usage-rows tr[data-usage] td:nth-child(5)").all_inner_texts()
        )
        assert float(total[1]) == pytest.approx(running_h, abs=0.011)
        assert running_h == pytest.approx(3 + 20, abs=0.05)  # ada's 3 h and bob's 20 h, one node each
        if bypass_csp:
            wait_for(lambda: page.locator("#usage-rows tr").count() > 1, 5, "the usage rows")
            assert serious_violations(page, "main") == []
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.locator("#usage-chart").screenshot(path=str(ARTIFACTS / "usage-chart.png"))
            page.locator("#admin-class-table").screenshot(path=str(ARTIFACTS / "admin-class.png"))
        else:
            assert blocked == []
    finally:
        context.close()
