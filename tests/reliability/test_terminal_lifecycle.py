"""Terminals close when their lab stops, whoever stopped it (issue 10, item 5).

The service is the real app served by uvicorn (its lifespan runs, so its terminal watch does) on SQLite,
with the in-memory provider whose nodes are a real SSH server. A learner's terminal is open; the lab is
then paused, deleted or reset by another hand: the `Environments` service as `stacklab env` runs it, a
second instance of the service on the same database (another web process), or the controller's policies
after the clock moved. The learner's terminal gets `{"type": "closed", "reason": ...}` and close code 1000.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.support.memory_provider import MemoryProvider
from tests.support.terminals import Term, serve_asgi, terminal
from tests.support.web_app import bearer, drive, launch, lms_call, make_stack

from stacklab.types import Desired
from stacklab.web.app import create_app
from stacklab.web.context import WebContext
from stacklab.wiring import App

PROMPT = b"$ "
PAUSED, DELETED, RESET = "the lab was paused", "the lab was deleted", "the lab was reset"


@dataclass
class Service:
    """One running web process and what a test needs to reach it and its database from elsewhere."""

    tmp_path: Path
    cloud: dict[str, MemoryProvider]
    stack: App
    http: httpx.AsyncClient
    ws_base: str
    env_id: str
    token: str  # the learner's

    def url(self, token: str | None = None) -> str:
        query = f"token={token or self.token}&session={uuid.uuid4().hex[:16]}"
        return f"{self.ws_base}/api/v1/environments/{self.env_id}/terminal/main?{query}"

    def another_process(self) -> App:
        """The service as another process builds it: its own engine and connections, the same database and
        the same cloud."""
        return make_stack(self.tmp_path, self.cloud)

    def read_only_token(self) -> str:
        ctx: WebContext = self.http._transport.app.state.ctx  # type: ignore[attr-defined]
        return ctx.signer.issue("learner", "staff-view.ann", self.env_id, 300, read_only=True)


@contextlib.asynccontextmanager
async def running(tmp_path: Path, sshd_port: int, watch_interval_s: float) -> AsyncIterator[Service]:
    cloud = {"_ssh": MemoryProvider("_ssh", {"ssh": ("127.0.0.1", sshd_port)})}
    stack = make_stack(tmp_path, cloud, terminal_watch_interval_s=watch_interval_s)
    app = create_app(stack, run_engine=False)
    try:
        async with (
            serve_asgi(app, lifespan="on") as ws_base,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http,
        ):
            body = await launch(http, "ann")
            env_id = body["environment"]["id"]
            await drive(stack, env_id)
            yield Service(tmp_path, cloud, stack, http, ws_base, env_id, body["token"])
    finally:
        stack.close()


@pytest.fixture
async def service(tmp_path: Path, sshd_port: int) -> AsyncIterator[Service]:
    async with running(tmp_path, sshd_port, watch_interval_s=0.1) as served:
        yield served


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
    async with running(tmp_path, sshd_port, watch_interval_s=3600) as served:
        async with terminal(served.url()) as term:
            await term.until(PROMPT)
            response = await served.http.delete(f"/api/v1/environments/{served.env_id}", headers=lms_call())
            assert response.status_code == 200, response.text
            await closed_with(term, DELETED)
        await served.stack.engine.runner.idle()
