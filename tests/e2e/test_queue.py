"""The admission queue on real LXC, in chromium: one machine, learners in line, fairness, leavers.

`stacklab serve` offers one lab whose only provider holds one running lab (`capacity: 1, capacity_counts:
running`); each browser context is a demo learner. The second and third learners see their place in line
on the lab page (and in the API status); the first's pause lets the second in, not the third; a learner
who leaves the line (the button) or closes the page drops out. The queue itself on every database:
tests/integration/test_admission.py.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from tests.e2e.conftest import Stacklab, serving_stacklab
from tests.e2e.helpers import wait_connected, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.lxc]

LAUNCH_S = 300
LEAVE_AFTER_S = 6
QUEUE_LAB = """\
schema: 1
id: queue-lab
title: One machine
login_user: learner
providers:
  - {name: local, type: local, capacity: 1, capacity_counts: running}
local:
  nodes:
    - name: main
      memory_mb: 128
timeouts: {launch: 5m}
"""


@pytest.fixture(scope="module")
def service(built_pages: None) -> Iterator[Stacklab]:
    labs = Path(tempfile.mkdtemp(prefix="stacklab-queue-labs-"))
    (labs / "queue.yaml").write_text(QUEUE_LAB)
    extra = {
        "STACKLAB_LABS_DIR": str(labs),
        "STACKLAB_QUEUE_LEAVE_AFTER_S": str(LEAVE_AFTER_S),
        "STACKLAB_QUEUE_RECHECK_S": "1",
        "STACKLAB_ACTIVITY_THROTTLE_S": "1",
        "STACKLAB_RECONCILE_INTERVAL_S": "0.5",
    }
    try:
        with serving_stacklab("stacklab-e2e-queue-", extra) as served:
            yield served
    finally:
        shutil.rmtree(labs, ignore_errors=True)


class Learner:
    """A demo learner: a browser context of its own (the demo gives one lab per browser)."""

    def __init__(self, browser, service: Stacklab) -> None:  # type: ignore[no-untyped-def]
        self.service = service
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.context.set_default_timeout(30_000)
        self.page = self.context.new_page()
        self.page.goto(f"{service.url}/demo")
        self.env = unquote(urlparse(self.page.url).path.removeprefix("/lab/"))

    def token(self) -> str:
        """The page's current token (stored once its script has run; refreshed before it expires)."""
        key = f"stacklab.token.{self.env}"
        self.page.wait_for_function(f"() => sessionStorage.getItem('{key}')")
        return str(self.page.evaluate(f"() => sessionStorage.getItem('{key}')"))

    def status(self) -> dict:
        request = urllib.request.Request(
            f"{self.service.url}/api/v1/environments/{self.env}",
            headers={"Authorization": f"Bearer {self.token()}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def place_shown(self) -> str:
        return self.page.locator("#queue-place").inner_text()

    def wait_place(self, place: int) -> None:
        self.page.locator("#queue-place", has_text=f"You are number {place} in line").wait_for()

    def reasons(self) -> list[str]:
        database = Path(self.service.env["STACKLAB_DATA_DIR"]) / "stacklab.db"
        with sqlite3.connect(database) as db:
            rows = db.execute("SELECT reason FROM transitions WHERE env_id = ? ORDER BY id", (self.env,))
            return [reason for (reason,) in rows]


def test_one_machine_three_learners_in_line(browser, service: Stacklab) -> None:  # type: ignore[no-untyped-def]
    first = Learner(browser, service)
    wait_connected(first.page, timeout_s=LAUNCH_S)
    second = Learner(browser, service)
    second.wait_place(1)
    third = Learner(browser, service)
    third.wait_place(2)
    assert (second.status()["queue_position"], third.status()["queue_position"]) == (1, 2)
    assert first.status()["queue_position"] is None and not second.status()["ready"]

    service.cli("env", "suspend", first.env)  # its machine is given back: the head of the line gets it
    wait_connected(second.page, timeout_s=LAUNCH_S)
    third.wait_place(1)
    assert not third.status()["ready"] and "Admitted" in second.reasons()

    third.page.get_by_role("button", name="Leave the line").click()  # an explicit cancel
    third.page.locator("#rejoin-button").wait_for()
    status = third.status()
    assert (status["queue_position"], status["desired"]) == (None, "suspended")
    assert "LeftQueue" in third.reasons()

    fourth = Learner(browser, service)  # joins, then closes the page: it stops asking
    fourth.wait_place(1)
    fourth.context.close()
    wait_for(lambda: "LeftQueue" in fourth.reasons(), LEAVE_AFTER_S + 20, "the closed page to drop out")
    assert "Admitted" not in third.reasons() + fourth.reasons()
    for learner in (first, second, third):
        learner.context.close()
