"""The operator page end to end: a real `stacklab serve`, a named account made with `stacklab operator add`,
a learner's lab on real LXC nodes, in chromium.

The operator signs in by name, sees their sign-in in the audit log, opens the learner's lab read-only (seeing
what the learner typed, unable to type), resets it, and finds both actions in the audit log.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator

import pytest
from tests.e2e.conftest import Stacklab, serving_stacklab
from tests.e2e.helpers import run_in_terminal, terminal_text, wait_connected, wait_for, wait_output

pytestmark = [pytest.mark.e2e, pytest.mark.lxc]

LAUNCH_S = 300
OPERATOR, PASSWORD = "olga", "olga-operator-password"


@pytest.fixture(scope="module")
def service(built_pages: None) -> Iterator[Stacklab]:
    with serving_stacklab("stacklab-admin-e2e-") as service:
        added = subprocess.run(
            [*service.command, "operator", "add", OPERATOR],
            input=PASSWORD + "\n",
            env=service.env,
            cwd=service.cwd,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert added.returncode == 0, added.stderr
        yield service


def audit_rows(page) -> list[list[str]]:  # type: ignore[no-untyped-def]
    """The audit table as the operator reads it: [when, operator, action, environment, target, detail]."""
    return [row.split("\t") for row in page.locator("#audit-rows tr[data-audit]").all_inner_texts()]


def test_an_operator_signs_in_by_name_watches_a_lab_read_only_and_resets_it(
    browser, service: Stacklab
) -> None:  # type: ignore[no-untyped-def]
    learner_context = browser.new_context(viewport={"width": 1280, "height": 800})
    operator_context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        learner = learner_context.new_page()
        learner.set_default_timeout(30_000)
        learner.goto(f"{service.url}/demo")
        wait_connected(learner, timeout_s=LAUNCH_S)
        wait_output(learner, "$ ", timeout_s=60)
        run_in_terminal(learner, "echo learner-was-here-$((6*7))")
        wait_output(learner, "learner-was-here-42")
        env = learner.url.split("/lab/")[1].split("?")[0].split("#")[0]

        page = operator_context.new_page()
        page.set_default_timeout(30_000)
        page.goto(f"{service.url}/admin")
        page.wait_for_url("**/admin/login")
        page.get_by_label("Operator").fill(OPERATOR)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.locator(f"#env-rows tr[data-env='{env}']").wait_for()
        assert "token" not in page.url
        assert page.locator("#operator-name").inner_text() == OPERATOR
        page.locator("#audit-rows tr[data-audit]").first.wait_for()
        assert audit_rows(page)[0][1:3] == [OPERATOR, "sign-in"]

        with operator_context.expect_page() as opened:
            page.get_by_role("button", name=f"View {env} read-only").click()
        view = opened.value
        view.wait_for_url(re.compile(rf"/lab/{env}"))
        view.locator("#read-only-badge").wait_for()
        assert "token" not in view.url
        wait_connected(view, timeout_s=60)
        wait_output(view, "learner-was-here-42")  # the learner's own shell, watched
        view.locator(".term-host:not([hidden]) .xterm").click()
        view.keyboard.type("echo operator-typed-this")
        view.keyboard.press("Enter")
        run_in_terminal(learner, "echo still-the-learners-$((2*21))")
        wait_output(view, "still-the-learners-42")
        assert "operator-typed-this" not in terminal_text(view) + terminal_text(learner)
        view.close()

        page.get_by_role("button", name=f"Reset {env}").click()
        dialog = page.get_by_role("dialog", name="Reset environment?")
        dialog.get_by_role("button", name="Reset", exact=True).click()
        wait_for(
            lambda: (
                [r[1:4] for r in audit_rows(page)[:2]]
                == [[OPERATOR, "reset", env], [OPERATOR, "observe", env]]
            ),
            30,
            "the reset and the read-only view in the audit log",
        )
        assert re.fullmatch(r"demo / hello-lab / demo-[0-9a-f]{16}", audit_rows(page)[0][4])
        reasons = [h["reason"] for h in json.loads(service.cli("env", "show", env, "--json"))["history"]]
        assert "OperatorViewResumed" not in reasons  # the lab was running: watching did not wake it
        assert "ResetRequested" in reasons
        wait_for(
            lambda: learner.evaluate("window.stacklabTerm.state") != "connected",
            30,
            "the learner's shell to close",
        )
    finally:
        learner_context.close()
        operator_context.close()
