"""The engine with openstack providers against the real Keystone + Heat: launch, failures, failover, sweep."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from stacklab.config import Settings
from stacklab.labs.schema import ProviderEntry
from stacklab.providers.base import StackRequest
from stacklab.types import Desired, Observed
from stacklab.wiring import App, build_app

LAB_DIR = Path(__file__).resolve().parent / "lab"
pytestmark = [
    pytest.mark.openstack,
    pytest.mark.usefixtures("clean_clouds"),
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:openstack"),
]
HEAT = "- {name: heat, type: openstack, cloud: heatbox}"


def write_lab(tmp_path: Path, port: int, providers: str = HEAT, template: str = "stack.yaml") -> Path:
    for name in ("stack.yaml", "fail.yaml", "worker.yaml", "files"):
        target = tmp_path / name
        if not target.exists():
            target.symlink_to(LAB_DIR / name)
    path = tmp_path / "lab.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            schema: 1
            id: heatlab
            title: Heat lab
            login_user: learner
            providers:
            {providers}
            openstack:
              template: {template}
              parameters: {{ssh_port: {port}, with_key: false, greeting: hi}}
              nodes: [main, worker1]
            checks:
              - {{name: greeting, node: main, script: "true", hint: none}}
            timeouts: {{launch: 120s}}
            """
        ).format(providers=providers, template=template, port=port)
    )
    return path


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    settings = Settings(
        data_dir=str(tmp_path / "data"), poll_interval_s=0.05, retry_backoff_s=(0.1, 0.2), max_attempts=2
    )
    built = build_app(settings, follow_requeue=False)
    yield built
    built.close()


async def test_launch_exec_suspend_resume_delete(app: App, tmp_path: Path, sshd_port: int) -> None:
    record = app.environments.launch(write_lab(tmp_path, sshd_port), "ann", "c1")
    done = await app.environments.drive(record.id, timeout_s=120)
    assert done.observed == Observed.RUNNING, done.last_error
    assert done.nodes == {
        "main": {"host": "127.0.0.1", "port": sshd_port},
        "worker1": {"host": "127.0.0.1", "port": sshd_port},
    }
    assert done.outputs["stack_name"] == done.stack_name and done.outputs["greeting"] == "hi"
    app.environments.request(record.id, Desired.SUSPENDED, "test")
    assert (await app.environments.drive(record.id, timeout_s=60)).observed == Observed.SUSPENDED
    app.environments.request(record.id, Desired.RUNNING, "test")
    assert (await app.environments.drive(record.id, timeout_s=60)).observed == Observed.RUNNING
    app.environments.request(record.id, Desired.DELETED, "test")
    assert (await app.environments.drive(record.id, timeout_s=60)).observed == Observed.DELETED
    assert await app.controller.providers.named("heat").list() == []


async def test_create_failed_reason_reaches_the_environment(app: App, tmp_path: Path, sshd_port: int) -> None:
    record = app.environments.launch(write_lab(tmp_path, sshd_port, template="fail.yaml"), "bob", "c1")
    done = await app.environments.drive(record.id, timeout_s=120)
    assert done.observed == Observed.FAILED and done.last_reason == "CreateFailed"
    assert "Test Resource failed broken" in done.last_error
    assert any("CREATE_FAILED" in (t.message or "") for t in app.repo.history(record.id))
    assert await app.controller.providers.named("heat").list() == []  # the failed stack was cleaned up


@pytest.mark.parametrize("failing", ["badpass", "small"])
async def test_failover_to_a_healthy_cloud(app: App, tmp_path: Path, sshd_port: int, failing: str) -> None:
    if failing == "small":  # the one-stack project already holds a stack
        small = app.controller.providers.get(
            ProviderEntry(name="first", type="openstack", cloud="heatbox-small")
        )
        await small.create(
            StackRequest("sl-holder", "learner", "", config={"template": "fail.yaml"}, lab_dir=str(LAB_DIR))
        )
    providers = f"- {{name: first, type: openstack, cloud: heatbox-{failing}}}\n" + HEAT
    record = app.environments.launch(write_lab(tmp_path, sshd_port, providers), "carol", "c1")
    done = await app.environments.drive(record.id, timeout_s=120)
    assert done.observed == Observed.RUNNING and done.provider == "heat", done.last_error
    notes = [(t.from_state, t.reason) for t in app.repo.history(record.id) if t.kind == "provider"]
    assert ("first", "AuthFailed" if failing == "badpass" else "QuotaExceeded") in notes


async def test_sweep_deletes_a_leaked_stack(app: App, tmp_path: Path, sshd_port: int) -> None:
    heat = app.controller.providers.get(ProviderEntry(name="heat", type="openstack", cloud="heatbox"))
    await heat.create(
        StackRequest("sl-leaked", "learner", "", config={"template": "fail.yaml"}, lab_dir=str(LAB_DIR))
    )
    report = await app.engine.sweep()
    assert "sl-leaked" in report.removed, report.errors
    assert await heat.list() == []


async def test_twenty_concurrent_launches(app: App, tmp_path: Path, sshd_port: int) -> None:
    lab = write_lab(tmp_path, sshd_port)
    ids = [app.environments.launch(lab, f"learner{i}", "c1").id for i in range(20)]
    done = await asyncio.gather(*(app.environments.drive(i, timeout_s=240) for i in ids))
    assert [r.observed for r in done] == [Observed.RUNNING] * 20, [r.last_error for r in done]
    assert len(await app.controller.providers.named("heat").list()) == 20
    for i in ids:
        app.environments.request(i, Desired.DELETED, "test")
    done = await asyncio.gather(*(app.environments.drive(i, timeout_s=240) for i in ids))
    assert [r.observed for r in done] == [Observed.DELETED] * 20
