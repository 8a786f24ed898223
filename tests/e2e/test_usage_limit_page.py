"""Usage limits on the lab page: a real `stacklab serve` (its own scheduler), real LXC nodes, chromium.

The page shows the lab time left counting down; the service pauses the lab when the learner's `block` limit
is used up (the deadline it wrote in the database, sent by its scheduler); the page then shows the limit's
sentence in place of the lab, with the last check results beside it; course staff's grant (the XBlock's
client, signed with the LMS key) lets the learner in again.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.conftest import Stacklab, serving_stacklab
from tests.e2e.helpers import wait_connected, wait_for
from tests.e2e.test_lab_stacklab import env_id

XBLOCK_SRC = Path(__file__).resolve().parents[2] / "xblock" / "src"
if str(XBLOCK_SRC) not in sys.path:  # the XBlock is a distribution of its own (tests/xblock do the same)
    sys.path.insert(0, str(XBLOCK_SRC))
from stacklab_xblock.client import ServiceConfig, StacklabClient  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.lxc]

LMS_KEY, LMS_SECRET = "edx-e2e", "an-lms-secret-of-a-decent-length-0123456789"
HOURS = 0.004
"""14.4 s of running time: enough to check once, short enough to wait for."""


@pytest.fixture(scope="module")
def limited(built_pages: None) -> Iterator[Stacklab]:
    with tempfile.TemporaryDirectory(prefix="stacklab-e2e-labs-") as labs:
        (Path(labs) / "limited.yaml").write_text(
            textwrap.dedent(
                f"""\
                schema: 1
                id: limited
                title: A lab with a time limit
                login_user: learner
                local: {{nodes: [{{name: main}}]}}
                checks: [{{name: always, node: main, script: "true"}}]
                usage_limit: {{hours: {HOURS}, per: week, policy: block}}
                """
            )
        )
        keys = json.dumps({LMS_KEY: {"secret": LMS_SECRET, "courses": ["demo"]}})
        extra = {"STACKLAB_LABS_DIR": labs, "STACKLAB_LMS_KEYS": keys}
        with serving_stacklab("stacklab-e2e-usage-", extra) as service:
            yield service


def test_time_left_then_the_limit_then_a_grant(page, limited: Stacklab) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{limited.url}/demo")
    wait_connected(page, timeout_s=120)
    meter = page.locator("#usage-meter")
    assert re.fullmatch(r"Lab time left this week: \d+ s", meter.inner_text()), meter.inner_text()
    first = int(meter.get_attribute("data-left") or "0")
    wait_for(lambda: int(meter.get_attribute("data-left") or first) < first, 10, "the time left to go down")
    page.get_by_role("button", name="Check my work").click()
    page.locator("#score-value", has_text="1/1").wait_for(timeout=30_000)

    # The service's scheduler pauses the lab at the limit; the page says why and keeps the results readable.
    notice = page.locator("#usage-blocked")
    notice.wait_for(timeout=60_000)
    assert "You have used all" in notice.inner_text() and "ask your course staff" in notice.inner_text()
    assert page.locator("#usage-meter").inner_text() == "No lab time left this week"
    assert page.locator("#score-value").inner_text() == "1/1" and page.locator("#terminal-view").is_hidden()
    shown = json.loads(limited.cli("env", "show", env_id(page), "--json"))
    assert shown["observed"] == "suspended" and "UsageLimit" in [t["reason"] for t in shown["history"]]
    page.reload()  # a reload (its resume refused) lands on the same notice
    notice.wait_for()

    # Course staff grant an hour from the LMS: the XBlock's client, signed with the course's LMS key.
    client = StacklabClient(ServiceConfig(limited.url, LMS_KEY, LMS_SECRET))
    granted = client.grant_time("demo", "limited", shown["learner"], 1, "a test needs more time", "prof-x")
    assert not granted["usage"]["blocked"] and granted["grants"][0]["granted_by"].endswith("for prof-x")
    page.reload()
    wait_connected(page, timeout_s=120)
    assert meter.inner_text().startswith("Lab time left this week: 1 h") or "59 min" in meter.inner_text()
