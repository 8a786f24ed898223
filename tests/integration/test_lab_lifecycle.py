"""A learner's lab from launch to delete, through the `stacklab` command, on real LXC nodes with real sshd.

Every step goes through the CLI a user runs; nothing here is mocked. Each test uses its own data dir
(SQLite database and container root) and shares the cached base image.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.lxc import IMAGE_DIR

from stacklab.providers.local import lxc
from stacklab.providers.local.provider import LocalProvider

pytestmark = pytest.mark.lxc

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
STACKLAB = [sys.executable, "-m", "stacklab.cli"]


class Cli:
    """Runs `stacklab` against one data dir, as a user would."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.env = {**os.environ, "STACKLAB_DATA_DIR": str(data_dir), "STACKLAB_IMAGE_DIR": IMAGE_DIR}

    def run(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*STACKLAB, *args], env=self.env, capture_output=True, text=True, timeout=timeout, cwd=REPO
        )
        if check and result.returncode != 0:
            raise AssertionError(f"stacklab {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    def json(self, *args: str) -> object:
        return json.loads(self.run(*args, "--json").stdout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*STACKLAB, *args],
            env=self.env,
            cwd=REPO,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def exec(self, ref: str, node: str, command: str) -> str:
        return self.run("env", "exec", ref, "--node", node, "--", command).stdout

    @property
    def root(self) -> Path:
        return self.data_dir / "local"


def leftovers(cli: Cli, stack: str) -> list[str]:
    """What a deleted stack could have left behind: containers, mounts, its bridge, its directory."""
    found = []
    if (cli.root / stack).exists():
        found.append(f"directory {cli.root / stack}")
    found += [f"mount {m}" for m in lxc.mounts_under(cli.root / stack)]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    from stacklab.providers.local.network import bridge_name

    if bridge_name(stack) in links:
        found.append(f"bridge {bridge_name(stack)}")
    listed = subprocess.run(["lxc-ls", "-P", str(cli.root)], capture_output=True, text=True).stdout
    found += [f"container {name}" for name in listed.split() if name.startswith(stack)]
    return found


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    runner = Cli(tmp_path / "data")
    yield runner
    for record in runner.json("env", "list"):  # type: ignore[union-attr]
        if record["observed"] != "deleted":
            runner.run("env", "delete", record["id"], "--wait", check=False)


def wait_for(predicate, timeout_s: float = 120, every_s: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError("condition not met in time")


def test_cluster_lab_from_launch_to_delete(cli: Cli) -> None:
    launched = cli.json(
        "env", "launch", str(EXAMPLES / "cluster.yaml"), "--learner", "ann", "--course", "c1", "--wait"
    )
    assert launched["observed"] == "running"  # type: ignore[index]
    ref = "c1/cluster-lab/ann"
    stack = launched["stack"]  # type: ignore[index]

    for node in ("deploy", "worker1", "worker2"):
        assert cli.exec(ref, node, "hostname").strip() == node
    assert "worker2" in cli.exec(ref, "deploy", "getent hosts worker1 worker2")
    cli.exec(
        ref, "deploy", "timeout 3 bash -c '</dev/tcp/worker1/22' && timeout 3 bash -c '</dev/tcp/worker2/22'"
    )
    assert cli.run("env", "exec", ref, "--node", "deploy", "--", "exit 7", check=False).returncode == 7

    before = cli.json("env", "check", ref)
    assert (before["score"], before["max_score"]) == (0, 5)  # type: ignore[index]
    assert any(r["hint"] for r in before["results"] if not r["passed"])  # type: ignore[index]

    cli.exec(ref, "deploy", "echo 'my notes' > ~/notes.txt")
    burner = cli.exec(ref, "deploy", "nohup sh -c 'while :; do :; done' >/dev/null 2>&1 & echo $!").strip()
    container = LocalProvider.container(stack, "deploy")

    cli.run("env", "suspend", ref, "--wait")
    first = lxc.cpu_usage_ns(container)
    time.sleep(1.0)
    assert lxc.cpu_usage_ns(container) == first, "a frozen node used CPU"
    refused = cli.run("env", "exec", ref, "--node", "deploy", "--", "true", check=False)
    assert refused.returncode != 0 and "suspended" in refused.stderr

    cli.run("env", "resume", ref, "--wait")
    assert cli.exec(ref, "deploy", "cat ~/notes.txt").strip() == "my notes"
    cli.exec(ref, "deploy", f"kill -0 {burner} && kill {burner}")
    hooks = cli.exec(ref, "deploy", "cat /var/tmp/stacklab-hooks.log")
    assert "suspending" in hooks and "resumed" in hooks

    cli.exec(ref, "deploy", "ssh-keyscan -H worker1 worker2 >> ~/.ssh/known_hosts")
    for worker in ("worker1", "worker2"):
        cli.exec(ref, worker, "sudo mkdir -p /srv/app && echo 1.0 | sudo tee /srv/app/version")
    after = cli.json("env", "check", ref)
    assert (after["score"], after["counted_score"]) == (5, 5)  # type: ignore[index]

    shown = cli.json("env", "show", ref)
    reasons = [entry["reason"] for entry in shown["history"]]  # type: ignore[index]
    for reason in ("Launched", "Creating", "Ready", "SuspendRequested", "Suspended", "ResumeRequested"):
        assert reason in reasons
    assert "PRIVATE KEY" not in json.dumps(shown)

    cli.run("env", "delete", ref, "--wait")
    assert cli.json("env", "show", ref)["observed"] == "deleted"  # type: ignore[index]
    assert leftovers(cli, stack) == []


def test_concurrent_launches_give_one_environment(cli: Cli) -> None:
    lab = str(EXAMPLES / "hello.yaml")
    launches = [cli.popen("env", "launch", lab, "--learner", "bo", "--json") for _ in range(4)]
    ids = {json.loads(p.communicate(timeout=300)[0])["id"] for p in launches}
    assert len(ids) == 1
    assert len(cli.json("env", "list")) == 1  # type: ignore[arg-type]
    record = cli.json("env", "launch", lab, "--learner", "bo", "--wait")
    assert record["id"] in ids and record["observed"] == "running"  # type: ignore[index]
    assert cli.exec(record["id"], "main", "whoami").strip() == "learner"  # type: ignore[index]


def kill(process: subprocess.Popen[str]) -> None:
    """Kill -9, as a crash or an OOM kill would: no cleanup code of ours runs."""
    process.send_signal(signal.SIGKILL)
    process.communicate()


def _observed(cli: Cli, ref: str) -> str:
    return cli.json("env", "show", ref)["observed"]  # type: ignore[index,return-value]


def test_engine_killed_mid_launch_and_mid_suspend_converges(cli: Cli, tmp_path: Path) -> None:
    lab = tmp_path / "slow-hook.yaml"
    lab.write_text(
        (EXAMPLES / "hello.yaml")
        .read_text()
        .replace("id: hello-lab", "id: slow-hook")
        .replace("memory_mb: 256", "memory_mb: 256\n      setup: sleep 15")  # a launch that takes a while
        .replace("timeouts:", "hooks:\n  before_suspend: {node: main, script: sleep 30}\ntimeouts:")
    )
    ref = "default/slow-hook/cy"
    launch = cli.popen("env", "launch", str(lab), "--learner", "cy", "--wait")
    wait_for(
        lambda: (
            cli.data_dir.joinpath("stacklab.db").exists()
            and cli.run("env", "show", ref, check=False).returncode == 0
            and _observed(cli, ref) == "creating"
        )
    )
    kill(launch)
    wait_for(lambda: (cli.run("reconcile"), _observed(cli, ref) == "running")[1], timeout_s=180, every_s=0.5)
    stack = cli.json("env", "show", ref)["stack"]  # type: ignore[index]

    suspend = cli.popen("env", "suspend", ref, "--wait")
    time.sleep(4)  # inside the 30 s before_suspend hook
    kill(suspend)
    assert _observed(cli, ref) == "running"
    wait_for(
        lambda: (cli.run("reconcile"), _observed(cli, ref) == "suspended")[1], timeout_s=180, every_s=0.5
    )
    history = cli.json("env", "show", ref)["history"]  # type: ignore[index]
    assert [h["reason"] for h in history if h["kind"] == "hook"] == ["HookSucceeded"]

    cli.run("env", "delete", ref, "--wait")
    assert leftovers(cli, stack) == []
    assert cli.json("reconcile")["removed_leaks"] == []  # type: ignore[index]


def test_reconcile_removes_containers_no_environment_owns(cli: Cli) -> None:
    record = cli.json("env", "launch", str(EXAMPLES / "hello.yaml"), "--learner", "di", "--wait")
    stack = record["stack"]  # type: ignore[index]
    cli.run("env", "delete", record["id"], "--wait")  # type: ignore[index]
    orphan = "sl-0rphan00"
    import asyncio

    from stacklab.providers.base import NodeSpec, StackRequest

    provider = LocalProvider("local", {"root_dir": str(cli.root), "image_dir": IMAGE_DIR})
    asyncio.run(
        provider.create(StackRequest(orphan, "learner", "ssh-ed25519 AAAA test", (NodeSpec("main"),)))
    )
    report = cli.json("reconcile")
    assert report["removed_leaks"] == [orphan]  # type: ignore[index]
    assert leftovers(cli, orphan) == [] and leftovers(cli, stack) == []


def test_bad_lab_file_is_refused_with_its_line(cli: Cli) -> None:
    bad = cli.run("lab", "validate", str(EXAMPLES / "bad" / "unknown-node.yaml"), check=False)
    assert bad.returncode == 1
    assert "unknown-node.yaml:" in bad.stdout and "unknown node 'wrker'" in bad.stdout
    launch = cli.run(
        "env", "launch", str(EXAMPLES / "bad" / "unknown-node.yaml"), "--learner", "x", check=False
    )
    assert launch.returncode == 1 and "unknown node 'wrker'" in launch.stderr
    assert "Traceback" not in launch.stderr
    assert cli.json("env", "list") == []
    assert cli.run("lab", "validate", str(EXAMPLES / "cluster.yaml")).returncode == 0


def test_image_build_reports_the_cached_base_image(cli: Cli) -> None:
    built = cli.run("image", "build")
    assert f"base image ready at {IMAGE_DIR}/debian-bookworm-" in built.stdout
    assert Path(built.stdout.split(" at ")[1].split(" (")[0], "rootfs", "usr", "sbin", "sshd").exists()
