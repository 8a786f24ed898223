"""A create killed half-way on real LXC: the dead creator is seen at once and its stack is finished.

A process SIGKILLed while the local provider's `.creating` marker exists (an OOM kill, `kill -9`) used to
leave the lab "creating" for two minutes, then show the learner a failure, before a retry made it anew.
Here a real process is parked just before it starts the stack's last node (tests/support/park.py) and
killed there. A fresh provider, or a controller in another process, must see at once that the creator
is gone, finish the same stack without a failure the learner could see, and leave nothing behind. While
the creator lives, the stack stays "creating" and a second create waits for it instead of running
alongside.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncssh
import pytest
from tests.support.lxc import IMAGE_DIR, require_lxc, run_sync, wait_ssh

from stacklab.providers.base import NodeSpec, StackRequest, StackState
from stacklab.providers.local import LocalProvider, lxc
from stacklab.providers.local.image import ensure_base_image
from stacklab.providers.local.network import bridge_exists, bridge_name

pytestmark = pytest.mark.lxc

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
NODES = ("deploy", "web")  # web is where the creator stops
CREATOR = """
import asyncio, sys
from pathlib import Path
from tests.support.park import park
from stacklab.providers.base import NodeSpec, StackRequest
from stacklab.providers.local import LocalProvider

root, image_dir, name, flag, key, in_flight = sys.argv[1:7]
park("web", Path(flag), in_flight == "in-flight")
provider = LocalProvider("local-crash", {"root_dir": root, "image_dir": image_dir})
asyncio.run(provider.create(StackRequest(name, "learner", key, (NodeSpec("deploy"), NodeSpec("web")))))
"""


# ------------------------------------------------------------------------------------------------------
# what is on the host


def containers(root: Path, stack: str) -> list[str]:
    listed = subprocess.run(["lxc-ls", "-P", str(root)], capture_output=True, text=True, timeout=30).stdout
    return sorted(name for name in listed.split() if name.startswith(f"{stack}-"))


def bridge_ports(stack: str) -> list[str]:
    """The interfaces on the stack's bridge: one veth per running node."""
    shown = subprocess.run(
        ["ip", "-o", "link", "show", "master", bridge_name(stack)], capture_output=True, text=True, timeout=30
    )
    return sorted(line.split(":")[1].strip().split("@")[0] for line in shown.stdout.splitlines())


def links() -> set[str]:
    shown = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, timeout=30).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in shown.splitlines()}


def leftovers(root: Path, stack: str, ports: list[str]) -> list[str]:
    """What a deleted stack could have left: its dir, mounts, containers, cgroups, bridge and veths."""
    found = [f"directory {root / stack}"] if (root / stack).exists() else []
    found += [f"mount {m}" for m in lxc.mounts_under(root / stack)]
    found += [f"container {c}" for c in containers(root, stack)]
    found += [f"cgroup {cg.name}" for cg in lxc.FREEZER_ROOT.glob(f"lxc.payload.{stack}-*")]
    found += [f"bridge {bridge_name(stack)}"] if bridge_exists(bridge_name(stack)) else []
    found += [f"veth {p}" for p in ports if p in links()]
    return found


def assert_one_of_each(root: Path, stack: str) -> list[str]:
    """Exactly one container, rootfs mount and veth per node, on one bridge; returns the veths."""
    assert containers(root, stack) == [f"{stack}-{n}" for n in NODES]
    assert sorted(lxc.mounts_under(root / stack)) == [str(root / stack / n / "rootfs") for n in NODES]
    ports = bridge_ports(stack)
    assert len(ports) == len(NODES), ports
    assert json.loads((root / "subnets.json").read_text()).keys() == {stack}
    return ports


async def assert_running_then_delete(provider: LocalProvider, handle: dict) -> None:
    """Every node answers SSH, the stack is running with one of everything; deleted, it leaves nothing."""
    for address in handle["nodes"].values():
        wait_ssh(address, timeout_s=120)
    assert (await provider.status(handle)).state is StackState.RUNNING
    ports = assert_one_of_each(provider.root, handle["name"])
    await provider.delete(handle)
    assert leftovers(provider.root, handle["name"], ports) == []


def init_pid(root: Path, container: str) -> str:
    out = subprocess.run(
        ["lxc-info", "-P", str(root), "-n", container, "-p", "-H"], capture_output=True, text=True, timeout=30
    )
    return out.stdout.strip()


# ------------------------------------------------------------------------------------------------------
# fixtures


def delete_every_stack(root: Path) -> None:
    """Whatever a failed test left in a provider root: containers, mounts, bridges, subnets."""
    provider = LocalProvider("local-crash", {"root_dir": str(root), "image_dir": IMAGE_DIR})

    async def delete_all() -> None:
        for name in await provider.list():
            await provider.delete({"name": name})

    run_sync(delete_all())


@pytest.fixture(scope="module")
def key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


@pytest.fixture
def provider() -> Iterator[LocalProvider]:
    """A provider on a root dir of its own; whatever is left in it is deleted at the end, even on failure."""
    require_lxc()
    run_sync(ensure_base_image(IMAGE_DIR))
    root = Path(tempfile.mkdtemp(prefix="stacklab-crash-", dir="/var/tmp"))
    root.chmod(0o755)
    yield LocalProvider("local-crash", {"root_dir": str(root), "image_dir": IMAGE_DIR})
    delete_every_stack(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[[list[str]], subprocess.Popen[str]]]:
    """Start a process of ours; killed at the end if still alive (ask for it after the fixture that deletes
    the stacks, so that it is torn down first: a live creator holds the stack's lock)."""
    started: list[subprocess.Popen[str]] = []

    def start(argv: list[str]) -> subprocess.Popen[str]:
        env = {**os.environ, "STACKLAB_IMAGE_DIR": IMAGE_DIR}
        with (tmp_path / f"process-{len(started)}.log").open("w") as log:
            process = subprocess.Popen(
                argv,
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


async def parked_creator(
    spawn: Callable[[list[str]], subprocess.Popen[str]],
    provider: LocalProvider,
    key: asyncssh.SSHKey,
    park: str = "before-start",
) -> tuple[str, subprocess.Popen[str]]:
    """A process creating a new stack, stopped for good just before it starts the stack's web node (or
    with `park="in-flight"`, while its lxc-start of the web node runs)."""
    stack = f"slt-{uuid.uuid4().hex[:8]}"
    flag = provider.root / f".parked-{stack}"
    public = key.export_public_key().decode()
    argv = [sys.executable, "-c", CREATOR, str(provider.root), IMAGE_DIR, stack, str(flag), public, park]
    creator = spawn(argv)
    await wait_until(
        "the creator parks", lambda: flag.exists() and lxc.is_running(f"{stack}-deploy"), creator
    )
    return stack, creator


async def wait_until(what: str, predicate: Callable[[], object], process: subprocess.Popen[str]) -> None:
    """Until `predicate` holds (at most 120 s); fails at once if `process` exits first."""
    deadline = time.monotonic() + 120
    while not predicate():
        assert process.poll() is None, f"the process exited ({process.returncode}) before {what}"
        assert time.monotonic() < deadline, f"not within 120 s: {what}"
        await asyncio.sleep(0.05)


def sigkill(process: subprocess.Popen[str], group: bool = False) -> None:
    """As the OOM killer or `kill -9` would (or, `group`, a killed process group, children and all):
    no cleanup code of ours runs."""
    if group:
        os.killpg(process.pid, signal.SIGKILL)
    else:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def request(stack: str, key: asyncssh.SSHKey) -> StackRequest:
    return StackRequest(stack, "learner", key.export_public_key().decode(), tuple(NodeSpec(n) for n in NODES))


# ------------------------------------------------------------------------------------------------------
# the provider


async def test_a_dead_creator_is_seen_at_once_and_create_finishes_its_stack(
    provider: LocalProvider, spawn, key
) -> None:
    stack, creator = await parked_creator(spawn, provider, key)
    sigkill(creator)
    assert (provider.root / stack / ".creating").exists()  # killed while creating
    half_made = json.loads((provider.root / stack / "stack.json").read_text())
    assert bridge_exists(bridge_name(stack)) and not lxc.is_running(f"{stack}-web")
    deploy_init = init_pid(provider.root, f"{stack}-deploy")

    fresh = LocalProvider("local-crash", {"root_dir": str(provider.root), "image_dir": IMAGE_DIR})
    status = await fresh.status({"name": stack})
    assert status.state is StackState.ABSENT, status  # not "creating" for two minutes, not failed
    assert "process is gone" in status.reason

    handle = await fresh.create(request(stack, key))
    assert (handle["subnet"], handle["nodes"]) == (half_made["subnet"], half_made["nodes"])
    assert not (provider.root / stack / ".creating").exists()
    assert init_pid(provider.root, f"{stack}-deploy") == deploy_init  # finished, not made again
    await assert_running_then_delete(fresh, handle)
    assert (await fresh.status(handle)).state is StackState.ABSENT


async def test_a_creator_killed_with_its_lxc_start_is_finished_too(
    provider: LocalProvider, spawn, key
) -> None:
    """Killed together with its lxc-start, a create leaves an LXC monitor that aborts the node it was
    starting (it cannot report to the dead lxc-start): the next create waits for that, then starts the
    node itself, rather than taking the doomed node for a running one."""
    stack, creator = await parked_creator(spawn, provider, key, park="in-flight")
    sigkill(creator, group=True)
    assert (provider.root / stack / ".creating").exists()

    handle = await provider.create(request(stack, key))
    await assert_running_then_delete(provider, handle)


async def test_a_live_creator_keeps_the_stack_creating_and_a_second_create_waits(
    provider: LocalProvider, spawn, key
) -> None:
    stack, creator = await parked_creator(spawn, provider, key)
    marker = provider.root / stack / ".creating"
    assert (await provider.status({"name": stack})).state is StackState.CREATING

    second = asyncio.create_task(provider.create(request(stack, key)))
    try:
        for _ in range(40):  # two seconds in which the second create must not start anything
            await asyncio.sleep(0.05)
            assert not second.done(), second
            assert json.loads(marker.read_text())["pid"] == creator.pid
            assert not lxc.is_running(f"{stack}-web")
        assert (await provider.status({"name": stack})).state is StackState.CREATING

        sigkill(creator)  # the waiting create takes over and finishes the stack
        handle = await asyncio.wait_for(second, 180)
    finally:
        second.cancel()
    await assert_running_then_delete(provider, handle)


# ------------------------------------------------------------------------------------------------------
# the controller, through the `stacklab` command


def stacklab(data_dir: Path, *args: str) -> str:
    env = {**os.environ, "STACKLAB_DATA_DIR": str(data_dir), "STACKLAB_IMAGE_DIR": IMAGE_DIR}
    argv = [sys.executable, "-m", "stacklab.cli", *args]
    result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"stacklab {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
    return result.stdout


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data dir of its own; every environment in it is deleted at the end, then any stack left."""
    require_lxc()
    data = tmp_path / "data"
    yield data
    if (data / "stacklab.db").exists():
        for record in json.loads(stacklab(data, "env", "list", "--json")):
            if record["observed"] != "deleted":
                stacklab(data, "env", "delete", record["id"], "--wait")
    delete_every_stack(data / "local")


def test_a_launch_killed_mid_create_comes_up_without_a_failure(data_dir: Path, spawn, tmp_path: Path) -> None:
    lab = tmp_path / "two-nodes.yaml"
    lab.write_text(
        (EXAMPLES / "hello.yaml")
        .read_text()
        .replace("id: hello-lab", "id: crash-lab")
        .replace("    - name: main\n", "    - name: main\n      memory_mb: 256\n    - name: aux\n", 1)
    )
    parked = tmp_path / "parked"
    park = [sys.executable, "-m", "tests.support.park", "aux", str(parked), "--data-dir", str(data_dir)]
    launch = spawn([*park, "env", "launch", str(lab), "--learner", "ann", "--wait"])
    run_sync(wait_until("the launch parks", parked.exists, launch))
    shown = json.loads(stacklab(data_dir, "env", "show", "default/crash-lab/ann", "--json"))
    stack = shown["stack"]
    run_sync(wait_until("the first node runs", lambda: lxc.is_running(f"{stack}-main"), launch))
    sigkill(launch)
    assert shown["observed"] == "creating"
    assert (data_dir / "local" / stack / ".creating").exists()  # killed while creating

    seen = []
    deadline = time.monotonic() + 90  # well inside the two minutes a dead creator used to be waited for
    while shown["observed"] != "running":
        assert time.monotonic() < deadline, f"not running within 90 s: {seen}"
        stacklab(data_dir, "reconcile")
        shown = json.loads(stacklab(data_dir, "env", "show", "default/crash-lab/ann", "--json"))
        seen.append(shown["observed"])
    assert "failed" not in seen
    assert (shown["last_error"], shown["attempts"]) == (None, 0)
    failures = [h for h in shown["history"] if h["to"] == "failed" or h["kind"] in ("retry", "provider")]
    assert failures == []
    for node in ("main", "aux"):
        ref = "default/crash-lab/ann"
        assert stacklab(data_dir, "env", "exec", ref, "--node", node, "--", "hostname").strip() == node

    root = data_dir / "local"
    ports = bridge_ports(stack)
    assert containers(root, stack) == [f"{stack}-aux", f"{stack}-main"] and len(ports) == 2
    stacklab(data_dir, "env", "delete", "default/crash-lab/ann", "--wait")
    assert leftovers(root, stack, ports) == []
