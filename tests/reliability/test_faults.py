"""A fault at every step of a lab's life, and the learner still gets their lab.

One environment goes through launch, suspend, resume, reset and delete while a second one (a bystander)
keeps running. Each case injects one fault at the k-th call of one operation along that path: the
provider refuses (transient, terminal, or an unexpected exception), hangs after doing the work (cut by
the controller's provider timeout), or the service process dies right after the cloud did the work; or a
lifecycle hook (real SSH) fails, hangs past its timeout, or the process dies just after it. A dead
process is replaced by a fresh one on the same database and cloud (tests/support/restarts.py), and the
path is driven on. Then:

- every step reaches its desired state (a terminal error may end a step in `failed`, recorded, and the
  learner's next action recovers), within the lab's timeouts plus one lease per restart;
- every failure is in the environment's history with its reason;
- no stack is created twice for the environment at once, and nothing is left behind: after a sweep the
  cloud holds only the bystander's stack, and the provider's capacity counts only the bystander;
- the bystander is untouched.

Every case runs on SQLite; a sample runs on PostgreSQL and MariaDB, and two kills on real LXC.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from tests.support.engine import Clock, write_lab
from tests.support.faulty_provider import HOOK_MODES, PROVIDER_MODES, Fault, FaultPlan, faulty_hooks
from tests.support.lxc import IMAGE_DIR, require_lxc
from tests.support.memory_provider import MemoryProvider
from tests.support.restarts import Service

from stacklab.checks.scripts import run_script
from stacklab.config import Settings
from stacklab.envs.service import Environments
from stacklab.providers.base import Provider
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Desired, Observed

pytestmark = pytest.mark.db

LEASE_S = 10.0
PROVIDER_TIMEOUT_S = 0.2  # real seconds: how long a hung provider call is waited for
HOOKS = """\
hooks:
  before_suspend: {node: main, script: 'echo saving work', timeout: 300ms}
  after_resume: {node: main, script: 'echo welcome back', timeout: 300ms}
  before_delete: {node: main, script: 'echo archiving', timeout: 300ms}
"""
STEPS: tuple[tuple[str, Observed, Callable[[Environments, str], object]], ...] = (
    ("suspend", Observed.SUSPENDED, lambda envs, env_id: envs.request(env_id, Desired.SUSPENDED, "Test")),
    ("resume", Observed.RUNNING, lambda envs, env_id: envs.request(env_id, Desired.RUNNING, "Test")),
    ("reset", Observed.RUNNING, lambda envs, env_id: envs.reset(env_id)),
    ("delete", Observed.DELETED, lambda envs, env_id: envs.request(env_id, Desired.DELETED, "Test")),
)
PATH_CALLS = {"create": 2, "status": 4, "suspend": 1, "resume": 1, "delete": 2, "hook": 3}
"""The calls a fault-free path makes (checked by the first test), so the cases cover every k."""

CASES = [
    Fault(op, k, mode)
    for op, calls in PATH_CALLS.items()
    for k in range(1, calls + 1)
    for mode in (HOOK_MODES if op == "hook" else PROVIDER_MODES)
]
SAMPLE = [
    Fault("create", 1, "kill"),
    Fault("status", 1, "hang"),
    Fault("suspend", 1, "unexpected"),
    Fault("delete", 2, "terminal"),
    Fault("hook", 2, "kill"),
]


# ------------------------------------------------------------------------------------------------------
# the path


def reached(target: Observed, clock: Clock) -> Callable[[EnvironmentRecord], bool]:
    """The step is over: its state is reached, or the environment failed and waits for the learner
    (no retry planned, nothing due before a policy's deadline)."""

    def done(record: EnvironmentRecord) -> bool:
        if record.lease_owner is not None:
            return False
        if record.observed == Observed.FAILED:
            return record.next_attempt_at is None and (record.due_at is None or record.due_at > clock.now)
        return record.observed == target and not record.reset_requested

    return done


async def step(service: Service, env_id: str, target: Observed, fault: Fault | None) -> EnvironmentRecord:
    """Drive one step to its end; it must end there within the lab's timeouts (plus a lease a restart)."""
    started, kills = service.clock.now, service.kills
    record = await service.drive(env_id, reached(target, service.clock))
    lab = service.app.environments.lab_of(record)
    budget = lab.timeouts.launch_s + (service.kills - kills) * (LEASE_S + 1)
    assert service.clock.now - started <= budget, f"{target}: {service.clock.now - started:.0f}s (stuck)"
    if record.observed == Observed.FAILED:  # only a terminal error may end a step in failed
        assert fault is not None and fault.mode == "terminal", f"{record.last_reason}: {record.last_error}"
    return record


async def walk(service: Service, lab: Path, fault: Fault | None) -> str:
    """The bystander launches and settles, then the learner's path runs with the fault armed."""
    envs = service.app.environments
    bystander = envs.launch(lab, "bystander", "c1")
    await step(service, bystander.id, Observed.RUNNING, None)
    learner = service.app.environments.launch(lab, "learner", "c1")
    service.plan.calls.clear()
    service.plan.stack, service.plan.fault = learner.stack_name, fault
    await step(service, learner.id, Observed.RUNNING, fault)
    for _name, target, act in STEPS:
        act(service.app.environments, learner.id)
        await step(service, learner.id, target, fault)
    return learner.id


# ------------------------------------------------------------------------------------------------------
# what must hold afterwards


def recorded(service: Service, env_id: str, fault: Fault) -> bool:
    """The injected failure is in the environment's history, with its reason."""
    history = service.app.repo.history(env_id)
    if fault.op == "hook" and fault.mode == "hang":
        return any(t.reason == "HookFailed" and t.message.startswith("exit 124") for t in history)
    if fault.mode == "hang":
        return any(t.reason == "ProviderTimeout" for t in history)
    return any(fault.message in t.message and t.reason for t in history)


def story(service: Service, env_id: str) -> str:
    """The environment's history, one transition a line: what a failing case prints."""
    return "\n".join(
        f"  {t.kind} {t.from_state}->{t.to_state} {t.reason}: {t.message}"
        for t in service.app.repo.history(env_id)
    )


async def assert_nothing_lost_or_left(service: Service, cloud: MemoryProvider, learner_id: str) -> None:
    assert await service.sweep() is not None
    repo = service.app.repo
    learner = repo.get(learner_id)
    (bystander,) = [record for record in repo.list() if record.id != learner_id]
    assert (learner.observed, learner.lease_owner) == (Observed.DELETED, None), story(service, learner_id)
    assert (bystander.observed, bystander.lease_owner) == (Observed.RUNNING, None)
    assert set(cloud.stacks) == {bystander.stack_name}, "a stack leaked or the bystander's was removed"
    assert cloud.created[learner.stack_name] == cloud.deleted[learner.stack_name]
    assert cloud.created[bystander.stack_name] == 1
    assert cloud.rekeyed == [], "a create found the stack another create made"
    assert repo.usage().get("a") == 1, "a provider slot leaked"


# ------------------------------------------------------------------------------------------------------
# fixtures and cases


def readers(fifo: Path) -> list[str]:
    """Processes that have `fifo` on their command line (the hung hook's script)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(fifo).encode() in cmdline.read_bytes():
                found.append(cmdline.parent.name)
        except OSError:
            continue
    return found


@pytest.fixture
async def hang_fifo(tmp_path: Path) -> AsyncIterator[Path]:
    """A hung hook reads this FIFO. At the end it is opened and closed for writing, so the script ends,
    and the SSH server (in this event loop) is given the time to reap it."""
    fifo = tmp_path / "hang.fifo"
    os.mkfifo(fifo)
    yield fifo
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError as exc:  # nobody reads it (no hook hung): nothing to release
        assert exc.errno == errno.ENXIO
        return
    for _ in range(100):
        if not readers(fifo):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.1)


@pytest.fixture
def service(
    settings: Settings,
    clock: Clock,
    cloud: dict[str, MemoryProvider],
    hang_fifo: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Service]:
    settings = dataclasses.replace(settings, lease_s=LEASE_S, provider_timeout_s=PROVIDER_TIMEOUT_S)
    built = Service(settings, clock, cloud, FaultPlan())
    hooks = faulty_hooks(run_script, built.plan, lambda: built.life, hang=f"cat {hang_fifo}")
    monkeypatch.setattr("stacklab.envs.controller.run_script", hooks)
    yield built
    built.close()


async def check_case(service: Service, cloud: dict[str, MemoryProvider], lab: Path, fault: Fault) -> None:
    learner_id = await walk(service, lab, fault)
    assert service.plan.fired, f"{fault.id} never fired: the path made {dict(service.plan.calls)}"
    if fault.restarts:
        assert service.kills == 1
    else:
        assert service.kills == 0
        assert recorded(service, learner_id, fault), f"{fault.id} is not in the history"
    await assert_nothing_lost_or_left(service, cloud["a"], learner_id)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_cases_cover_every_call_of_the_path(service: Service, tmp_path: Path) -> None:
    await walk(service, write_lab(tmp_path, extra=HOOKS), None)
    assert dict(service.plan.calls) == PATH_CALLS
    assert service.kills == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("fault", CASES, ids=[fault.id for fault in CASES])
async def test_a_fault_at_any_call_of_the_path(
    service: Service, cloud: dict[str, MemoryProvider], tmp_path: Path, fault: Fault
) -> None:
    await check_case(service, cloud, write_lab(tmp_path, extra=HOOKS), fault)


@pytest.mark.parametrize("database_url", ["postgresql", "mariadb"], indirect=True)
@pytest.mark.parametrize("fault", SAMPLE, ids=[fault.id for fault in SAMPLE])
async def test_a_sample_of_faults_on_server_databases(
    service: Service, cloud: dict[str, MemoryProvider], tmp_path: Path, fault: Fault
) -> None:
    await check_case(service, cloud, write_lab(tmp_path, extra=HOOKS), fault)


# ------------------------------------------------------------------------------------------------------
# a sample on real LXC


@pytest.fixture
async def lxc_cloud() -> AsyncIterator[dict[str, Provider]]:
    """The local provider on a temporary root; every stack left in it is deleted afterwards."""
    require_lxc()
    from stacklab.providers.local import LocalProvider
    from stacklab.providers.local.image import ensure_base_image

    await ensure_base_image(IMAGE_DIR)
    root = Path(tempfile.mkdtemp(prefix="stacklab-lxc-faults-", dir="/var/tmp"))
    root.chmod(0o755)
    provider = LocalProvider("a", {"root_dir": str(root), "image_dir": IMAGE_DIR})
    try:
        yield {"local": provider, "a": provider}
    finally:
        for name in await provider.list():
            await provider.delete({"name": name})
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.lxc
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "fault", [Fault("create", 1, "kill"), Fault("delete", 1, "kill")], ids=lambda f: f.id
)
async def test_a_kill_after_the_cloud_acted_on_real_lxc(
    settings: Settings, clock: Clock, lxc_cloud: dict[str, Provider], tmp_path: Path, fault: Fault
) -> None:
    """Killed between the provider's create (or delete) and the save; the next process finishes the
    same stack (or its removal) without a failure, and no container is left."""
    service = Service(dataclasses.replace(settings, lease_s=LEASE_S), clock, lxc_cloud, FaultPlan())
    try:
        envs = service.app.environments
        record = envs.launch(write_lab(tmp_path), "learner", "c1")
        service.plan.stack, service.plan.fault = record.stack_name, fault
        running = await service.drive(record.id, reached(Observed.RUNNING, clock), rounds=240, pause_s=0.5)
        assert running.observed == Observed.RUNNING, story(service, record.id)
        service.app.environments.request(record.id, Desired.DELETED, "Test")
        deleted = await service.drive(record.id, reached(Observed.DELETED, clock), rounds=240, pause_s=0.5)
        assert deleted.observed == Observed.DELETED, story(service, record.id)
        assert (service.plan.fired, service.kills) == (True, 1)
        assert service.plan.calls["create"] == 1, "the stack was created again"
        reasons = [t.reason for t in service.app.repo.history(record.id)]
        assert "Failed" not in reasons and "LaunchTimeout" not in reasons, story(service, record.id)
        assert await service.sweep() is not None
        assert await lxc_cloud["a"].list() == []
    finally:
        service.close()
