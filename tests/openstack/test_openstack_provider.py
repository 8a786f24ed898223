"""The openstack provider against a real Keystone + Heat (scripts/heat-harness): no mocks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.openstack.test_openstack_polling import quick

from stacklab.errors import CapacityExhausted, TerminalProviderError, TransientProviderError
from stacklab.providers.base import StackRequest, StackState, StackStatus
from stacklab.providers.openstack.provider import OpenStackProvider

LAB_DIR = Path(__file__).resolve().parent / "lab"

pytestmark = [
    pytest.mark.openstack,
    pytest.mark.usefixtures("clean_clouds"),
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:openstack"),  # the SDK's own internals
]


def request(name: str, template: str = "stack.yaml", **parameters: object) -> StackRequest:
    return StackRequest(
        name=name,
        login_user="learner",
        public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ3 learner@stacklab",
        config={"template": template, "parameters": parameters, "nodes": ["main", "worker1"]},
        lab_dir=str(LAB_DIR),
        course="course-v1:Org+Lab+2026_T1",
    )


async def settle(provider: OpenStackProvider, handle: dict, *passing: StackState) -> StackStatus:
    for _ in range(120):
        status = await provider.status(handle)
        if status.state not in passing:
            return status
        await asyncio.sleep(0.5)
    raise AssertionError(f"stack still {status.state} after 60s")


async def test_create_with_parameters_outputs_files_and_nested_templates(clean_clouds: Path) -> None:
    provider = OpenStackProvider("heat", {"cloud": "heatbox"})
    handle = await provider.create(request("sl-create1", greeting="bonjour", ssh_port=2222))
    assert handle["name"] == "sl-create1" and handle["id"]
    assert await provider.create(request("sl-create1")) == handle  # idempotent: finds the stack
    status = await settle(provider, handle, StackState.CREATING)
    assert status.state == StackState.RUNNING, status.reason
    assert [(n.name, n.host, n.port) for n in status.nodes] == [
        ("main", "127.0.0.1", 2222),
        ("worker1", "127.0.0.1", 2222),
    ]
    assert status.outputs["stack_name"] == "sl-create1"  # ours
    assert status.outputs["run"] == "2026_T1"  # hastexo's: the course run
    assert status.outputs["greeting"] == "bonjour"
    assert status.outputs["motd"] == "welcome to the lab\n"
    assert status.outputs["key_given"] is True
    assert len(status.secrets["private_key"]) == 32 and len(status.secrets["password"]) == 16
    assert "private_key" not in status.outputs and "password" not in status.outputs
    assert await provider.list() == ["sl-create1"]
    await provider.delete(handle)
    assert (await provider.status(handle)).state == StackState.ABSENT
    await provider.delete(handle)  # a no-op when absent
    assert await provider.list() == []


async def test_create_failed_surfaces_heats_reason(clean_clouds: Path) -> None:
    provider = OpenStackProvider("heat", {"cloud": "heatbox"})
    handle = await provider.create(request("sl-fail1", template="fail.yaml"))
    status = await settle(provider, handle, StackState.CREATING)
    assert status.state == StackState.FAILED
    assert "CREATE_FAILED" in status.reason and "Test Resource failed broken" in status.reason
    await provider.delete(handle)


async def test_suspend_and_resume_states(clean_clouds: Path) -> None:
    provider = OpenStackProvider("heat", {"cloud": "heatbox"})
    handle = await provider.create(request("sl-pause1"))
    assert (await settle(provider, handle, StackState.CREATING)).state == StackState.RUNNING
    await provider.suspend(handle)
    await provider.suspend(handle)  # idempotent while suspending
    status = await settle(provider, handle, StackState.RUNNING, StackState.SUSPENDING)
    assert status.state == StackState.SUSPENDED, status.reason
    await provider.suspend(handle)  # a no-op when suspended
    await provider.resume(handle)
    status = await settle(provider, handle, StackState.SUSPENDED, StackState.RESUMING)
    assert status.state == StackState.RUNNING and "RESUME_COMPLETE" in status.reason
    await provider.resume(handle)  # a no-op when running
    await provider.delete(handle)


async def test_typed_errors_auth_unreachable_quota_and_config(clean_clouds: Path) -> None:
    with pytest.raises(TerminalProviderError) as auth:
        await OpenStackProvider("bad", {"cloud": "heatbox-badpass"}).create(request("sl-err1"))
    assert auth.value.reason == "AuthFailed" and "not-the-password" not in str(auth.value)
    with pytest.raises(TransientProviderError) as down:
        await OpenStackProvider("down", {"cloud": "heatbox-down"}).status({"name": "sl-err1"})
    assert down.value.reason == "ProviderUnavailable"
    with pytest.raises(TerminalProviderError) as missing:
        await OpenStackProvider("nope", {"cloud": "no-such-cloud"}).list()
    assert missing.value.reason == "CloudNotConfigured"
    small = OpenStackProvider("small", {"cloud": "heatbox-small"})
    first = await small.create(request("sl-quota1"))
    with pytest.raises(CapacityExhausted) as quota:
        await small.create(request("sl-quota2"))
    assert quota.value.reason == "QuotaExceeded" and "maximum stacks" in str(quota.value)
    await small.delete(first)


async def test_check_reports_credentials_endpoint_and_quota(clean_clouds: Path) -> None:
    good = await OpenStackProvider("heat", {"cloud": "heatbox"}).check()
    assert [(what, ok) for what, ok, _ in good] == [
        ("credentials", True),
        ("heat endpoint", True),
        ("quota", True),
    ]
    bad = await OpenStackProvider("bad", {"cloud": "heatbox-badpass"}).check()
    assert bad[0][:2] == ("credentials", False) and "AuthFailed" in bad[0][2]


async def test_recreate_right_after_delete_gets_the_name_and_the_quota_place(clean_clouds: Path) -> None:
    """`delete` returns at DELETE_COMPLETE, while Heat still lists the stack a while (holding its name and
    its place in the project's quota): a create of the same name right after it, and a create in a project
    whose only place that stack held (heatbox-small: one stack per project), both succeed."""
    provider = OpenStackProvider("heat", {"cloud": "heatbox"})
    handle = await provider.create(request("sl-again1"))
    assert (await settle(provider, handle, StackState.CREATING)).state == StackState.RUNNING
    await provider.delete(handle)
    assert (await provider.status(handle)).state == StackState.ABSENT
    again = await provider.create(request("sl-again1"))
    assert again["id"] != handle["id"]
    assert (await settle(provider, again, StackState.CREATING)).state == StackState.RUNNING
    assert await provider.list() == ["sl-again1"]
    await provider.delete(again)

    small = OpenStackProvider("small", {"cloud": "heatbox-small"})
    first = await small.create(quick("sl-place1"))  # no nested stack: one place in the quota
    assert (await settle(small, first, StackState.CREATING)).state == StackState.RUNNING
    await small.delete(first)
    second = await small.create(quick("sl-place2"))  # the only place, held by sl-place1 until it left
    assert (await settle(small, second, StackState.CREATING)).state == StackState.RUNNING
    assert await small.list() == ["sl-place2"]
    await small.delete(second)
