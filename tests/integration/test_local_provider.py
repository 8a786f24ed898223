"""The local (LXC) provider against real containers: no mocks.

Needs root, lxc, debootstrap and a cgroup v1 freezer; the base image is built once into STACKLAB_IMAGE_DIR.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncssh
import pytest

from stacklab.providers.base import NodeSpec, StackRequest, StackState, StackStatus
from stacklab.providers.local import LocalProvider, lxc
from stacklab.providers.local.host import bridge_rules
from stacklab.providers.local.network import bridge_exists, bridge_name

pytestmark = pytest.mark.lxc

LOGIN = "learner"


@pytest.fixture(scope="module")
def key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


def request_for(name: str, key: asyncssh.SSHKey, *nodes: NodeSpec) -> StackRequest:
    return StackRequest(
        name=name,
        login_user=LOGIN,
        public_key=key.export_public_key().decode(),
        nodes=nodes or (NodeSpec("deploy"), NodeSpec("web")),
    )


async def wait_ssh(handle: dict, timeout_s: float = 120) -> float:
    """Wait until port 22 of every node answers with an SSH banner; return the seconds it took."""
    started = time.monotonic()

    async def one(ip: str) -> None:
        last: Exception | None = None
        while time.monotonic() - started < timeout_s:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, 22), 1)
                try:
                    line = await asyncio.wait_for(reader.readline(), 2)
                finally:
                    writer.close()
                if line.startswith(b"SSH-"):
                    return
            except (OSError, TimeoutError) as e:
                last = e
            await asyncio.sleep(0.05)
        raise AssertionError(f"no SSH banner from {ip} within {timeout_s} s ({last})")

    await asyncio.gather(*(one(ip) for ip in handle["nodes"].values()))
    return time.monotonic() - started


async def wait_ready(provider: LocalProvider, handle: dict, timeout_s: float = 120) -> StackStatus:
    """Wait until the provider reports the stack running: every node up and done with its setup."""
    started = time.monotonic()
    while True:
        status = await provider.status(handle)
        if status.state is StackState.RUNNING or time.monotonic() - started > timeout_s:
            assert status.state is StackState.RUNNING, (status.reason, status.outputs)
            return status
        await asyncio.sleep(0.2)


async def ssh(
    ip: str, key: asyncssh.SSHKey, command: str, check: bool = True
) -> asyncssh.SSHCompletedProcess:
    async with asyncssh.connect(ip, username=LOGIN, client_keys=[key], known_hosts=None) as conn:
        return await conn.run(command, check=check, timeout=300)


def mounted(path: Path) -> bool:
    return any(str(path) in line for line in Path("/proc/mounts").read_text().splitlines())


async def assert_gone(provider: LocalProvider, name: str, nodes: list[str]) -> None:
    root = provider.root
    assert not (root / name).exists()
    assert not mounted(root / name)
    bridge = bridge_name(name)
    assert not bridge_exists(bridge)
    assert await bridge_rules(bridge) == []
    for n in nodes:
        c = f"{name}-{n}"
        assert not (root / c).exists() and not (root / c).is_symlink()
        assert not lxc.freezer_dir(c).exists()
        assert not Path(f"/sys/fs/cgroup/memory/lxc.payload.{c}").exists()
    assert name not in await provider.list()
    assert (await provider.status({"name": name})).state is StackState.ABSENT


async def test_two_node_stack_lifecycle(local_provider: LocalProvider, new_stack_name, key) -> None:
    name = new_stack_name()
    req = request_for(name, key, NodeSpec("deploy", memory_mb=384, pids_max=512), NodeSpec("web"))
    handle = await local_provider.create(req)
    assert handle["name"] == name and set(handle["nodes"]) == {"deploy", "web"}
    assert handle["subnet"].endswith("/24")
    st = await local_provider.status(handle)
    assert st.state in (StackState.RUNNING, StackState.CREATING)
    assert {(a.name, a.host) for a in st.nodes} == set(handle["nodes"].items())
    await wait_ssh(handle)
    assert (await local_provider.status(handle)).state is StackState.RUNNING

    # Limits are applied to the container's cgroups.
    c = f"{name}-deploy"
    assert int(Path(f"/sys/fs/cgroup/memory/lxc.payload.{c}/memory.limit_in_bytes").read_text()) == 384 << 20
    assert Path(f"/sys/fs/cgroup/pids/lxc.payload.{c}/pids.max").read_text().strip() == "512"

    deploy, web = handle["nodes"]["deploy"], handle["nodes"]["web"]
    r = await ssh(
        deploy,
        key,
        "hostname; getent hosts web; ping -c1 -W3 web >/dev/null && echo PING-OK; "
        "sudo -n true && echo SUDO-OK; cat /var/lib/stacklab/firstboot.status",
    )
    lines = r.stdout.splitlines()
    assert lines[0] == "deploy"
    assert lines[1].split() == [web, "web"]
    assert "PING-OK" in lines and "SUDO-OK" in lines
    assert lines[-1].startswith("ok")
    r = await ssh(
        web, key, "hostname; stat -c %U:%a ~/.ssh/authorized_keys; test -s /etc/machine-id && echo MID"
    )
    assert r.stdout.split() == ["web", f"{LOGIN}:600", "MID"]

    # Some state to keep across suspend/resume.
    await ssh(
        deploy, key, "echo kept > ~/state.txt; nohup sleep 1000 >/dev/null 2>&1 & echo $! > ~/sleep.pid"
    )

    # Suspend: all frozen, and no CPU time used while frozen.
    t = time.perf_counter()
    await local_provider.suspend(handle)
    suspend_ms = (time.perf_counter() - t) * 1000
    assert (await local_provider.status(handle)).state is StackState.SUSPENDED
    await local_provider.suspend(handle)  # a no-op
    before = {n: lxc.cpu_usage_ns(f"{name}-{n}") for n in handle["nodes"]}
    await asyncio.sleep(1.0)
    after = {n: lxc.cpu_usage_ns(f"{name}-{n}") for n in handle["nodes"]}
    assert before == after, (before, after)
    for n in handle["nodes"]:
        assert lxc.freezer_state(f"{name}-{n}") == "FROZEN"

    t = time.perf_counter()
    await local_provider.resume(handle)
    resume_ms = (time.perf_counter() - t) * 1000
    assert (await local_provider.status(handle)).state is StackState.RUNNING
    await local_provider.resume(handle)  # a no-op
    print(f"\nsuspend {suspend_ms:.1f} ms, resume {resume_ms:.1f} ms (2 nodes)")
    r = await ssh(deploy, key, "cat ~/state.txt; kill -0 $(cat ~/sleep.pid) && echo ALIVE")
    assert r.stdout.split() == ["kept", "ALIVE"]

    # create again: same handle, nothing restarted.
    assert await local_provider.create(req) == handle
    r = await ssh(deploy, key, "kill -0 $(cat ~/sleep.pid) && echo ALIVE")
    assert r.stdout.strip() == "ALIVE"
    assert name in await local_provider.list()

    await local_provider.delete(handle)
    await assert_gone(local_provider, name, ["deploy", "web"])
    await local_provider.delete(handle)  # twice is fine


async def test_stacks_cannot_reach_each_other(local_provider: LocalProvider, new_stack_name, key) -> None:
    a, b = new_stack_name(), new_stack_name()
    ha, hb = await asyncio.gather(
        local_provider.create(request_for(a, key, NodeSpec("one"), NodeSpec("two"))),
        local_provider.create(request_for(b, key, NodeSpec("one"))),
    )
    assert ha["subnet"] != hb["subnet"]
    assert bridge_name(a) != bridge_name(b)
    await asyncio.gather(wait_ssh(ha), wait_ssh(hb))
    b_ip = hb["nodes"]["one"]
    r = await ssh(
        ha["nodes"]["one"],
        key,
        f"ping -c1 -W2 two >/dev/null && echo SAME-OK; "
        f"ping -c2 -W1 {b_ip} >/dev/null && echo OTHER-REACHED || echo OTHER-BLOCKED; "
        f"timeout 3 bash -c 'echo > /dev/tcp/{b_ip}/22' 2>/dev/null && echo TCP-REACHED || echo TCP-BLOCKED",
    )
    assert r.stdout.split() == ["SAME-OK", "OTHER-BLOCKED", "TCP-BLOCKED"]
    # The host reaches both (that is how the service talks SSH to nodes).
    r = await ssh(b_ip, key, "hostname")
    assert r.stdout.strip() == "one"


@pytest.mark.network
async def test_packages_setup_and_apt_inside_a_node(
    local_provider: LocalProvider, new_stack_name, key
) -> None:
    name = new_stack_name()
    spec = NodeSpec(
        "box", packages=("jq",), setup="#!/bin/bash\nset -e\necho ran-as-$(id -un) > /root/setup.out\n"
    )
    handle = await local_provider.create(request_for(name, key, spec))
    await wait_ready(local_provider, handle, timeout_s=300)  # packages and setup run after sshd starts
    ip = handle["nodes"]["box"]
    r = await ssh(ip, key, "jq --version; sudo cat /root/setup.out; cat /var/lib/stacklab/firstboot.status")
    out = r.stdout.splitlines()
    assert out[0].startswith("jq-")
    assert out[1] == "ran-as-root"
    assert out[2].startswith("ok")
    st = await local_provider.status(handle)
    assert st.outputs["firstboot"]["box"].startswith("ok")
    r = await ssh(
        ip,
        key,
        "sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
        "tree >/dev/null && tree --version",
    )
    assert r.stdout.startswith("tree ")


async def test_failed_setup_still_lets_the_learner_in(
    local_provider: LocalProvider, new_stack_name, key
) -> None:
    name = new_stack_name()
    handle = await local_provider.create(request_for(name, key, NodeSpec("box", setup="exit 3")))
    await wait_ready(local_provider, handle)
    r = await ssh(handle["nodes"]["box"], key, "cat /var/lib/stacklab/firstboot.status")
    assert r.stdout.startswith("failed: setup script")
    assert (await local_provider.status(handle)).outputs["firstboot"]["box"].startswith("failed")


# Waits for ssh.service twice over (a restart, then the end of the boot), then for the test's word.
SETUP_THAT_WAITS_FOR_SSH = """#!/bin/bash
set -e
systemctl restart ssh.service
systemctl is-system-running --wait > /root/boot.state || true
until [ -e /tmp/release-setup ]; do sleep 0.1; done
printf 'Port 22\nPort 2222\n' > /etc/ssh/sshd_config.d/stacklab-test.conf
echo setup-finished > /root/setup.out
"""


async def test_setup_may_wait_for_sshd_and_the_node_is_not_ready_until_it_ends(
    local_provider: LocalProvider, new_stack_name, key
) -> None:
    """A setup script that restarts ssh or waits for the boot to end used to wait for itself: first
    boot ran before sshd, so sshd (and the launch) waited until the 20 min timeout. Now setup runs after
    sshd, and the node stays "creating" to the controller while it runs, even though SSH answers. A
    setup that changes sshd's configuration has it applied before the node is ready."""
    name = new_stack_name()
    handle = await local_provider.create(
        request_for(name, key, NodeSpec("box", setup=SETUP_THAT_WAITS_FOR_SSH))
    )
    await wait_ssh(handle, timeout_s=60)
    ip = handle["nodes"]["box"]
    deadline = time.monotonic() + 60
    while True:  # sshd restarts under the setup script: retry until it lets us in
        try:
            r = await ssh(ip, key, "sudo cat /root/boot.state", check=False)
        except (OSError, asyncssh.Error):
            r = None
        if r is not None and r.exit_status == 0:
            break
        assert time.monotonic() < deadline, "the setup script did not get past ssh and the boot"
        await asyncio.sleep(0.2)
    assert r.stdout.strip() == "running"  # the boot finished while setup was still going
    status = await local_provider.status(handle)
    assert status.state is StackState.CREATING, status
    assert status.reason == "setup running on box"
    assert status.outputs["firstboot"]["box"].startswith("running")

    await ssh(ip, key, "sudo touch /tmp/release-setup")
    status = await wait_ready(local_provider, handle, timeout_s=30)
    assert status.outputs["firstboot"]["box"].startswith("ok")
    r = await ssh(ip, key, "sudo cat /root/setup.out; systemctl is-active stacklab-setup.service ssh.service")
    assert r.stdout.split() == ["setup-finished", "inactive", "active"]
    await wait_ssh({"nodes": {"box": ip}}, timeout_s=1)
    reader, writer = await asyncio.open_connection(ip, 2222)  # sshd reloaded with the new port
    assert (await asyncio.wait_for(reader.readline(), 2)).startswith(b"SSH-")
    writer.close()


async def test_a_stopped_node_is_failed_and_create_repairs_it(
    local_provider: LocalProvider, new_stack_name, key
) -> None:
    name = new_stack_name()
    req = request_for(name, key)
    handle = await local_provider.create(req)
    await wait_ssh(handle)
    await ssh(handle["nodes"]["web"], key, "echo kept > ~/state.txt")
    # A node dies and its mount is gone (as after a host reboot).
    await lxc.stop_kill(local_provider.root, f"{name}-web")
    await lxc.umount_all(local_provider.root / name / "web")
    st = await local_provider.status(handle)
    assert st.state is StackState.FAILED and "web" in st.reason
    assert await local_provider.create(req) == handle
    await wait_ssh(handle)
    assert (await local_provider.status(handle)).state is StackState.RUNNING
    r = await ssh(handle["nodes"]["web"], key, "cat ~/state.txt")
    assert r.stdout.strip() == "kept"


async def test_delete_of_half_created_stacks(
    local_provider: LocalProvider, new_stack_name, base_image
) -> None:
    # 1. A stack dir with a mounted node rootfs and nothing else (create died before starting the node).
    name = new_stack_name()
    nd = local_provider.root / name / "node"
    for sub in ("upper", "work", "rootfs"):
        (nd / sub).mkdir(parents=True)
    await lxc.mount_overlay(base_image / "rootfs", nd)
    assert mounted(nd / "rootfs")
    assert name in await local_provider.list()
    assert (await local_provider.status({"name": name})).state in (StackState.CREATING, StackState.FAILED)
    await local_provider.delete({"name": name})
    await assert_gone(local_provider, name, ["node"])
    await local_provider.delete({"name": name})

    # 2. Only a bridge left behind (the stack dir is gone): list() still finds it, delete removes it.
    from stacklab.providers.local.network import ensure_bridge

    name2 = new_stack_name()
    await ensure_bridge(bridge_name(name2), "10.254.254.0/24")
    await local_provider._set_bridge_owner(bridge_name(name2), name2)
    assert name2 in await local_provider.list()
    assert (await local_provider.status({"name": name2})).state is not StackState.ABSENT
    await local_provider.delete({"name": name2})
    await assert_gone(local_provider, name2, [])


async def test_status_of_unknown_stack_and_check(local_provider: LocalProvider) -> None:
    assert (await local_provider.status({"name": "slt-neverseen"})).state is StackState.ABSENT
    await local_provider.delete({"name": "slt-neverseen"})
    results = await local_provider.check()
    assert all(ok for _what, ok, _detail in results), results


async def test_bad_requests_are_terminal(local_provider: LocalProvider, key) -> None:
    from stacklab.errors import TerminalProviderError

    with pytest.raises(TerminalProviderError, match="invalid stack name"):
        await local_provider.create(request_for("Bad Name", key))
    with pytest.raises(TerminalProviderError, match="invalid node name"):
        await local_provider.create(request_for("slt-badnode", key, NodeSpec("Web_1")))
