"""Terminals close when their lab stops, whoever stopped it (issue 10, item 5).

The service is the real app served by uvicorn (its lifespan runs, so its terminal watch does) on SQLite,
with the in-memory provider whose nodes are a real SSH server. A learner's terminal is open; the lab is
then paused, deleted or reset by another hand: the `Environments` service as `stacklab env` runs it, a
second instance of the service on the same database (another web process), or the controller's policies
after the clock moved. The learner's terminal gets `{"type": "closed", "reason": ...}` and close code 1000.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from tests.support.terminals import LabService, Term, lab_service, terminal
from tests.support.web_app import COURSE, bearer, lms_call

from stacklab.types import Desired
from stacklab.web.app import create_app
from stacklab.web.context import WebContext
from stacklab.web.terminal_watch import REVOKED

PROMPT = b"$ "
PAUSED, DELETED, RESET = "the lab was paused", "the lab was deleted", "the lab was reset"


class Service(LabService):
    def read_only_token(self) -> str:
        ctx: WebContext = self.http._transport.app.state.ctx  # type: ignore[attr-defined]
        return ctx.signer.issue("learner", "staff-view.ann", self.env_id, 300, read_only=True)


@pytest.fixture
async def service(tmp_path: Path, sshd_port: int) -> AsyncIterator[Service]:
    async with lab_service(tmp_path, sshd_port, terminal_watch_interval_s=0.1) as served:
        yield Service(**vars(served))


async def closed_with(term: Term, reason: str) -> None:
    """The terminal ends as a user sees it: the reason, then close code 1000, within a bounded wait."""
    assert await term.end() == 1000
    assert term.closed_reason == reason


# the hands that stop a lab ------------------------------------------------------------------------------
async def cli_suspend(service: Service) -> None:
    other = service.another_process()
    other.environments.request(service.env_id, Desired.SUSPENDED, "SuspendRequested")
    await other.environments.drive(service.env_id, 30)
    other.close()


async def cli_delete(service: Service) -> None:
    other = service.another_process()
    other.environments.request(service.env_id, Desired.DELETED, "DeleteRequested")
    other.close()


async def cli_reset(service: Service) -> None:
    other = service.another_process()
    other.environments.reset(service.env_id)
    other.close()


async def other_web_process_suspend(service: Service) -> None:
    await _in_another_web_process(service, "POST", f"/api/v1/environments/{service.env_id}/suspend", None)


async def other_web_process_delete(service: Service) -> None:
    await _in_another_web_process(service, "DELETE", f"/api/v1/environments/{service.env_id}", None)


async def other_web_process_revoke(service: Service) -> None:
    path = f"/api/v1/courses/{COURSE}/learners/ann/revoke"
    await _in_another_web_process(service, "POST", path, None)


async def other_web_process_reset(service: Service) -> None:
    path = f"/api/v1/environments/{service.env_id}/reset"
    await _in_another_web_process(service, "POST", path, service.token)


async def _in_another_web_process(service: Service, method: str, path: str, token: str | None) -> None:
    """The LMS (no token) or the learner (token) calls a second instance of the service."""
    other = service.another_process()
    app = create_app(other, run_engine=False)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            headers = bearer(token) if token else lms_call()
            response = await http.request(method, path, headers=headers)
            assert response.status_code == 200, response.text
            await other.engine.runner.idle()
    finally:
        other.close()


def policy_past(limit: str) -> Callable[[Service], Awaitable[None]]:
    """The controller of another process runs its pass just past the lab's `limit` (a column of the
    environment: idle_suspend_s, delete_after_s) after the learner's last activity."""

    async def expire(service: Service) -> None:
        other = service.another_process()
        record = other.repo.get(service.env_id)
        later = record.last_activity_at + getattr(record, limit) + 1
        other.controller.clock = lambda: later
        await other.controller.reconcile(service.env_id)
        other.close()

    return expire


HANDS = {
    "cli-suspend": (cli_suspend, PAUSED),
    "cli-delete": (cli_delete, DELETED),
    "cli-reset": (cli_reset, RESET),
    "other-process-suspend": (other_web_process_suspend, PAUSED),
    "other-process-delete": (other_web_process_delete, DELETED),
    "other-process-reset": (other_web_process_reset, RESET),
    "other-process-revoke": (other_web_process_revoke, REVOKED),
    "idle-policy": (policy_past("idle_suspend_s"), PAUSED),
    "age-policy": (policy_past("delete_after_s"), DELETED),
}


@pytest.mark.parametrize("hand", list(HANDS))
async def test_a_terminal_closes_when_its_lab_stops_elsewhere(service: Service, hand: str) -> None:
    stop, reason = HANDS[hand]
    async with terminal(service.url()) as term:
        await term.until(PROMPT)
        await stop(service)
        await closed_with(term, reason)


async def test_read_only_watchers_are_closed_with_the_shell(service: Service) -> None:
    async with terminal(service.url()) as learner, terminal(service.url(service.read_only_token())) as staff:
        await learner.until(PROMPT)
        await learner.type("echo seen-$((6*7))\r")
        await staff.until(b"seen-42")  # watching the learner's live shell
        await cli_suspend(service)
        await closed_with(learner, PAUSED)
        await closed_with(staff, PAUSED)


async def test_a_terminal_stays_open_while_its_lab_runs(service: Service) -> None:
    """Activity from elsewhere (the LMS, another tab) is no reason to close; the shell keeps working."""
    async with terminal(service.url()) as term:
        await term.until(PROMPT)
        other = service.another_process()
        other.environments.touch(service.env_id)
        other.close()
        await term.drain(0.5)  # several watch intervals
        await term.run("echo alive-$((6*7))", b"alive-42")
        assert term.closed_reason is None


async def test_this_process_closes_at_once_without_waiting_for_the_watch(
    tmp_path: Path, sshd_port: int
) -> None:
    """The web API that deletes a lab closes its terminals itself, with the same reason."""
    async with lab_service(tmp_path, sshd_port, terminal_watch_interval_s=3600) as served:
        async with terminal(served.url()) as term:
            await term.until(PROMPT)
            response = await served.http.delete(f"/api/v1/environments/{served.env_id}", headers=lms_call())
            assert response.status_code == 200, response.text
            await closed_with(term, DELETED)
        await served.stack.engine.runner.idle()


async def test_a_paused_lab_keeps_its_shell_for_the_learners_return(service: Service) -> None:
    """Paused, not lost: the client is let go, the shell is kept, and the learner who comes back after the
    resume gets the same shell (its variables, its history) under the same session id."""
    address = service.url(session="kept-shell")
    async with terminal(address) as term:
        await term.until(PROMPT)
        await term.run("MARK=kept-$((6*7))", PROMPT)
        await cli_suspend(service)
        await closed_with(term, PAUSED)
    other = service.another_process()
    other.environments.request(service.env_id, Desired.RUNNING, "ResumeRequested")
    await other.environments.drive(service.env_id, 30)
    other.close()
    async with terminal(address) as term:
        await term.run('echo "mark=$MARK"', b"mark=kept-42")
