"""Provider chaos on the real Keystone + Heat of scripts/heat-harness: services stopped, an engine killed
mid-create, a stack that fails, a full quota and a clock that jumps.

Each case drives the controller pass by pass on a clock the test moves (so backoffs and launch timeouts are
crossed by moving the clock, not by sleeping) and checks what a learner and an operator would notice: the
typed error's reason and the retry recorded on the environment, the failover to the lab's next cloud, the
sentence the API shows the learner, and that no stack is left behind in either project. Every service a
case stops is started again before the next case (start.sh waits until it answers).
"""

from __future__ import annotations

import asyncio
import re
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from tests.support.engine import Clock
from tests.support.heat_harness import (
    delete_all_stacks,
    stack_names,
    start_services,
    stop_service,
)
from tests.support.heat_harness import heat_clouds as heat_clouds

from stacklab.config import Settings
from stacklab.labs.schema import ProviderEntry
from stacklab.providers.base import Handle, StackRequest
from stacklab.providers.openstack.provider import OpenStackProvider
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Desired, Observed
from stacklab.web.schemas import DEFAULT_FAILURE, status_of
from stacklab.wiring import App, build_app, default_factories

pytestmark = [
    pytest.mark.openstack,
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:openstack"),
]
CLOUDS = ("heatbox", "heatbox-small")
BACKOFF_S = (15.0, 30.0)
LAUNCH_S = 60
PASS_TIMEOUT_S = 90
"""Bound of real time for any one wait of a case (a pass, a stack to settle)."""
HEAT = "- {name: heat, type: openstack, cloud: heatbox}"
SMALL = "- {name: small, type: openstack, cloud: heatbox-small}"
TEMPLATE = """\
heat_template_version: 2018-08-31
description: One node at 127.0.0.1; slow on request, and broken in the project named by broken_project.
parameters:
  run: {type: string}
  ssh_port: {type: number}
  wait_secs: {type: number, default: 0}
  broken_project: {type: string, default: ""}
conditions:
  broken: {equals: [{get_param: "OS::project_id"}, {get_param: broken_project}]}
resources:
  node:
    type: OS::Heat::TestResource
    properties:
      value: ok
      wait_secs: {get_param: wait_secs}
      fail: {if: [broken, true, false]}
outputs:
  public_ip: {value: 127.0.0.1}
  ssh_port: {value: {get_param: ssh_port}}
  run: {value: {get_param: run}}
"""


# fixtures ---------------------------------------------------------------------------------------------
@pytest.fixture
async def clouds(heat_clouds: Path) -> AsyncIterator[Path]:
    """Both projects empty before and after; every service running again after the case."""
    for cloud in CLOUDS:
        await asyncio.to_thread(delete_all_stacks, cloud)
    try:
        yield heat_clouds
    finally:
        await asyncio.to_thread(start_services)
        for cloud in CLOUDS:
            await asyncio.to_thread(delete_all_stacks, cloud)


@pytest.fixture
def clock() -> Clock:
    return Clock(time.time())


@pytest.fixture
def app(tmp_path: Path, clock: Clock, clouds: Path) -> Iterator[App]:
    """The engine with openstack providers whose HTTP calls give up after 5 s, on the test's clock."""
    settings = Settings(
        data_dir=str(tmp_path / "data"), poll_interval_s=0.05, retry_backoff_s=BACKOFF_S, max_attempts=3
    )

    def openstack(entry: ProviderEntry) -> OpenStackProvider:
        return OpenStackProvider(entry.name, {"cloud": entry.cloud, "api_timeout_s": 5, "delete_wait_s": 30})

    built = build_app(settings, {**default_factories(settings), "openstack": openstack}, follow_requeue=False)
    built.controller.clock = clock
    built.environments.clock = clock
    yield built
    built.close()


def write_lab(
    tmp_path: Path, sshd_port: int, providers: str, *, wait_secs: int = 0, broken_project: str = ""
) -> Path:
    (tmp_path / "chaos.yaml").write_text(TEMPLATE)
    path = tmp_path / f"lab-{len(list(tmp_path.glob('lab-*.yaml')))}.yaml"
    parameters = f"{{ssh_port: {sshd_port}, wait_secs: {wait_secs}, broken_project: '{broken_project}'}}"
    providers = textwrap.indent(providers, "  ")
    path.write_text(
        f"schema: 1\nid: chaos\ntitle: Chaos lab\nlogin_user: learner\nproviders:\n{providers}\n"
        f"openstack:\n  template: chaos.yaml\n  parameters: {parameters}\n  nodes: [main]\n"
        f"timeouts: {{launch: {LAUNCH_S}s}}\n"
    )
    return path


# driving ----------------------------------------------------------------------------------------------
async def run_until(
    app: App, env_id: str, done: Callable[[EnvironmentRecord], bool], timeout_s: float = PASS_TIMEOUT_S
) -> EnvironmentRecord:
    """Reconcile pass after pass until `done`; fails with the environment's state after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await app.controller.reconcile(env_id)
        record = app.repo.get(env_id)
        if done(record):
            return record
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{env_id}: still {record.observed}/{record.progress} after {timeout_s}s: "
                f"{record.last_reason}: {record.last_error}"
            )
        await asyncio.sleep(min(0.5, 0.2 if result.requeue_after is None else result.requeue_after))


def retrying(clock: Clock) -> Callable[[EnvironmentRecord], bool]:
    return lambda r: bool(r.next_attempt_at and r.next_attempt_at > clock())


def running(record: EnvironmentRecord) -> bool:
    return record.observed == Observed.RUNNING


def past_retry(clock: Clock, record: EnvironmentRecord) -> None:
    """The clock jumps just past the scheduled retry."""
    assert record.next_attempt_at is not None
    clock.now = record.next_attempt_at + 0.1


def message(app: App, clock: Clock, env_id: str) -> str:
    """What the API shows the learner (GET /api/environments/{id} builds it with status_of)."""
    record = app.repo.get(env_id)
    return status_of(record, app.environments.lab_of(record), now=clock()).message


def assert_retry_message(text: str, why: str, backoff_s: float) -> None:
    """A plain sentence with the wait in seconds (the backoff with its +-20 % jitter), nothing technical."""
    found = re.fullmatch(re.escape(why) + r"; retrying in (\d+) s\.", text)
    assert found, text
    assert backoff_s * 0.8 <= int(found.group(1)) <= backoff_s * 1.2 + 1, text


def provider_notes(app: App, env_id: str) -> list[tuple[str, str]]:
    return [(t.from_state, t.reason) for t in app.repo.history(env_id) if t.kind == "provider"]


def recorded(app: App, env_id: str, reason: str) -> bool:
    """The retry (or the failure it follows) is in the environment's history with its reason."""
    return any(t.kind in ("retry", "observed") and t.reason == reason for t in app.repo.history(env_id))


async def delete_and_check_nothing_leaks(app: App, *env_ids: str) -> None:
    for env_id in env_ids:
        app.environments.request(env_id, Desired.DELETED, "test")
        await run_until(app, env_id, lambda r: r.observed == Observed.DELETED)
    await nothing_leaks(app)


async def nothing_leaks(app: App) -> None:
    """After the sweep (the service runs one a minute), no cloud holds a stack: what a fail-over could not
    delete at once (the cloud slow or away: `LeftBehind`) is gone too."""
    report = await app.engine.sweep()
    assert report.errors == []
    for cloud in CLOUDS:
        assert await asyncio.to_thread(stack_names, cloud) == [], f"stacks left in {cloud}"


async def small_project_id() -> str:
    provider = OpenStackProvider("small", {"cloud": "heatbox-small"})
    return await asyncio.to_thread(lambda: provider.connection().current_project_id)


async def fill_small_project(tmp_path: Path) -> tuple[OpenStackProvider, Handle]:
    """The one stack the small project may hold (Heat's max_stacks_per_tenant = 1 there)."""
    holder = OpenStackProvider("holder", {"cloud": "heatbox-small"})
    (tmp_path / "chaos.yaml").write_text(TEMPLATE)
    config = {"template": "chaos.yaml", "parameters": {"ssh_port": 22}}
    return holder, await holder.create(
        StackRequest("sl-holder", "learner", "", config=config, lab_dir=str(tmp_path))
    )


# cases ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("service", "address"), [("keystone", "127.0.0.1:5000"), ("heat-api", "127.0.0.1:8004")]
)
async def test_a_service_down_is_retried_with_backoff_then_launches(
    app: App, clock: Clock, tmp_path: Path, sshd_port: int, service: str, address: str
) -> None:
    env = app.environments.launch(write_lab(tmp_path, sshd_port, HEAT), "ann", "c1")
    await asyncio.to_thread(stop_service, service)
    record = await run_until(app, env.id, retrying(clock))
    assert (record.last_reason, record.attempts) == ("ProviderUnavailable", 1), record.last_error
    # The operator learns which service is down: its address, or (the provider's token still valid) its
    # name: Heat's middleware answers 503 for a Keystone it cannot reach, or, once it has checked the token,
    # the engine's call to Keystone fails as a 500 whose body names keystoneauth's ConnectFailure.
    error = record.last_error or ""
    assert address in error or service.split("-")[0] in error.lower(), error
    assert recorded(app, env.id, "ProviderUnavailable")
    assert_retry_message(message(app, clock, env.id), "The cloud is not answering", BACKOFF_S[0])
    await app.controller.reconcile(env.id)  # before the retry is due: nothing is tried
    assert app.repo.get(env.id).attempts == 1

    await asyncio.to_thread(start_services)
    past_retry(clock, record)
    record = await run_until(app, env.id, running)
    assert record.provider == "heat" and message(app, clock, env.id) == ""
    await delete_and_check_nothing_leaks(app, env.id)


async def test_heat_api_down_fails_over_to_the_next_cloud(
    app: App, clock: Clock, tmp_path: Path, sshd_port: int
) -> None:
    env = app.environments.launch(write_lab(tmp_path, sshd_port, f"{HEAT}\n{SMALL}"), "cid", "c1")
    await asyncio.to_thread(stop_service, "heat-api")
    record = await run_until(app, env.id, lambda r: running(r) or retrying(clock)(r))
    assert record.provider == "small", (record.last_reason, record.last_error)
    assert ("heat", "ProviderUnavailable") in provider_notes(app, env.id)
    await asyncio.to_thread(start_services)
    await delete_and_check_nothing_leaks(app, env.id)


async def test_engine_killed_mid_create_times_out_and_fails_over(
    app: App, clock: Clock, tmp_path: Path, sshd_port: int
) -> None:
    lab = write_lab(tmp_path, sshd_port, f"{HEAT}\n{SMALL}", wait_secs=10)
    env = app.environments.launch(lab, "dee", "c1")
    record = await run_until(app, env.id, lambda r: bool(r.handle and r.handle.get("id")))
    started = record.step_started_at
    assert started is not None
    await asyncio.to_thread(stop_service, "heat-engine", crash=True)
    record = await run_until(app, env.id, retrying(clock))  # Heat answers nothing without its engine
    assert (record.last_reason, record.observed) == ("Timeout", Observed.CREATING), record.last_error
    assert_retry_message(message(app, clock, env.id), "The cloud is not answering", BACKOFF_S[0])

    await asyncio.to_thread(start_services)
    past_retry(clock, record)
    await app.controller.reconcile(env.id)  # the stack is still CREATE_IN_PROGRESS: the engine lost it
    assert app.repo.get(env.id).observed == Observed.CREATING
    clock.now = started + LAUNCH_S + 1
    record = await run_until(app, env.id, running)
    assert record.provider == "small"
    assert ("heat", "LaunchTimeout") in provider_notes(app, env.id)
    await app.engine.sweep()  # what the fail-over could not delete at once (Heat slow) goes here
    assert await asyncio.to_thread(stack_names, "heatbox") == []  # the lost stack was deleted
    await delete_and_check_nothing_leaks(app, env.id)


async def test_failed_stack_fails_over_or_is_retried_until_max_attempts(
    app: App, clock: Clock, tmp_path: Path, sshd_port: int
) -> None:
    broken = await small_project_id()
    over = app.environments.launch(
        write_lab(tmp_path, sshd_port, f"{SMALL}\n{HEAT}", broken_project=broken), "eve", "c1"
    )
    record = await run_until(app, over.id, running)
    assert record.provider == "heat"
    assert ("small", "CreateFailed") in provider_notes(app, over.id)
    assert await asyncio.to_thread(stack_names, "heatbox-small") == []

    only = app.environments.launch(write_lab(tmp_path, sshd_port, SMALL, broken_project=broken), "fay", "c1")
    for attempt, backoff_s in enumerate(BACKOFF_S, start=1):
        record = await run_until(app, only.id, retrying(clock))
        assert (record.observed, record.last_reason, record.attempts) == (
            Observed.FAILED,
            "CreateFailed",
            attempt,
        )
        assert "Test Resource failed" in (record.last_error or "")  # Heat's reason, for the operator
        assert_retry_message(message(app, clock, only.id), "The cloud could not build your lab", backoff_s)
        past_retry(clock, record)
    record = await run_until(app, only.id, lambda r: r.attempts == 3)
    assert record.observed == Observed.FAILED and record.next_attempt_at is None
    assert message(app, clock, only.id) == DEFAULT_FAILURE
    assert await asyncio.to_thread(stack_names, "heatbox-small") == []
    await delete_and_check_nothing_leaks(app, over.id, only.id)


async def test_quota_exceeded_fails_over_or_waits_for_room(
    app: App, clock: Clock, tmp_path: Path, sshd_port: int
) -> None:
    holder, held = await fill_small_project(tmp_path)
    over = app.environments.launch(write_lab(tmp_path, sshd_port, f"{SMALL}\n{HEAT}"), "gus", "c1")
    record = await run_until(app, over.id, running)
    assert record.provider == "heat" and ("small", "QuotaExceeded") in provider_notes(app, over.id)

    only = app.environments.launch(write_lab(tmp_path, sshd_port, SMALL), "hal", "c1")
    record = await run_until(app, only.id, lambda r: r.queued_at is not None)  # waits in line, not failed
    assert (record.observed, record.attempts, record.provider) == (Observed.NEW, 0, None)
    assert app.environments.queue_spot(record)[0] == 1
    queued = [t.message for t in app.repo.history(only.id) if t.reason in ("NoRoom", "Queued")]
    assert queued and all("maximum stacks per tenant" in m for m in queued), queued
    await holder.delete(held)  # room again: the head of the line gets it at its next look
    assert (await run_until(app, only.id, running)).provider == "small"
    await delete_and_check_nothing_leaks(app, over.id, only.id)


async def test_clock_jumping_past_the_launch_timeout_cleans_up_and_retries(
    app: App, clock: Clock, tmp_path: Path, sshd_port: int
) -> None:
    env = app.environments.launch(write_lab(tmp_path, sshd_port, HEAT, wait_secs=5), "ida", "c1")
    record = await run_until(app, env.id, lambda r: bool(r.handle and r.handle.get("id")))
    clock.now += LAUNCH_S + 1
    record = await run_until(app, env.id, retrying(clock))
    assert (record.observed, record.last_reason, record.attempts) == (Observed.FAILED, "LaunchTimeout", 1)
    assert_retry_message(message(app, clock, env.id), "Your lab took too long to start", BACKOFF_S[0])
    await nothing_leaks(app)  # the slow stack was removed (at once, or by the sweep when Heat was slow)
    await delete_and_check_nothing_leaks(app, env.id)


async def test_clock_stepping_back_mid_create_does_not_disturb_the_launch(
    app: App, clock: Clock, tmp_path: Path, sshd_port: int
) -> None:
    env = app.environments.launch(write_lab(tmp_path, sshd_port, HEAT), "jon", "c1")
    await run_until(app, env.id, lambda r: bool(r.handle and r.handle.get("id")))
    clock.now -= 3600
    record = await run_until(app, env.id, running)
    assert record.attempts == 0 and record.last_reason is None
    await delete_and_check_nothing_leaks(app, env.id)


async def test_clock_stepping_back_does_not_stretch_a_scheduled_retry(
    app: App, clock: Clock, tmp_path: Path, sshd_port: int
) -> None:
    """A retry scheduled before the clock stepped back an hour is due on the new time, not an hour later.
    (A stack that fails schedules the retry: a full quota would put the lab in line instead.)"""
    broken = await small_project_id()
    env = app.environments.launch(write_lab(tmp_path, sshd_port, SMALL, broken_project=broken), "kim", "c1")
    record = await run_until(app, env.id, retrying(clock))
    assert (record.last_reason, record.attempts) == ("CreateFailed", 1), record.last_error
    clock.now -= 3600
    clock.now += max(BACKOFF_S) * 1.2 + 1  # the longest a retry may wait, on the new time
    record = await run_until(app, env.id, lambda r: r.attempts == 2)  # the clock stays: tried now or never
    assert record.last_reason == "CreateFailed"
    await delete_and_check_nothing_leaks(app, env.id)
