"""End to end, from Heat to the learner's shell: a Heat stack whose outputs point at a real LXC node.

A local LXC node is created with `LocalProvider` and an ed25519 key authorized for its login user. A lab on
the `openstack` provider (cloud `heatbox`) then launches a Heat stack whose template takes the node's address
and the private key as parameters (the key hidden) and gives them back as the outputs `public_ip` and
`private_key`. So the environment's node is the LXC node, reached with the key Heat returned: commands, the
lab's checks and the terminal websocket of the real web service all run there. Deleting the environment
deletes the stack; the fixture deletes the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest
import uvicorn
from fastapi import FastAPI
from tests.support.lxc import IMAGE_DIR, require_lxc
from websockets.asyncio.client import ClientConnection, connect

from stacklab.config import Settings
from stacklab.providers.base import NodeSpec, StackRequest, StackState
from stacklab.providers.local import LocalProvider
from stacklab.providers.local.image import ensure_base_image
from stacklab.providers.openstack.provider import OpenStackProvider
from stacklab.types import Desired, Observed
from stacklab.web.app import create_app
from stacklab.wiring import App, build_app

pytestmark = [
    pytest.mark.openstack,
    pytest.mark.lxc,
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:openstack"),
]

LOGIN = "learner"
LEARNER = "heat-ann"
HOSTNAME = "heatnode"  # the LXC node's own name; the environment calls it "main"
PROMPT = re.compile(rb"\$ $")

TEMPLATE = """\
heat_template_version: 2018-08-31
description: A lab node that exists already (a local LXC container); the stack hands out its address and key.
parameters:
  run: {type: string}
  node_address: {type: string}
  node_key: {type: string, hidden: true}
resources:
  address:
    type: OS::Heat::Value
    properties: {value: {get_param: node_address}}
outputs:
  public_ip: {value: {get_attr: [address, value]}}
  private_key: {value: {get_param: node_key}}
  run: {value: {get_param: run}}
"""

LAB = """\
schema: 1
id: heat-to-lxc
title: Heat to LXC
login_user: {login}
score: best
providers:
  - {{name: heat, type: openstack, cloud: heatbox}}
openstack:
  template: node.yaml
  parameters:
    node_address: {address}
    node_key: {key}
checks:
  - name: answer
    node: main
    script: test "$(cat ~/answer.txt 2>/dev/null)" = 42
    weight: 2
    hint: write 42 into ~/answer.txt
    timeout: 20s
  - name: marker
    node: main
    script: test -f /tmp/terminal-was-here
    weight: 1
    hint: touch /tmp/terminal-was-here
    timeout: 20s
timeouts: {{launch: 180s}}
"""


@dataclass
class Node:
    provider: LocalProvider
    stack: str
    address: str
    private_key: str
    """OpenSSH format, exported once (each export draws a new random check number)."""


async def wait_ssh(host: str, timeout_s: float = 120) -> None:
    """Until port 22 answers with an SSH banner."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, 22), 1)
            try:
                if (await asyncio.wait_for(reader.readline(), 2)).startswith(b"SSH-"):
                    return
            finally:
                writer.close()
        except (OSError, TimeoutError) as exc:
            last = exc
        await asyncio.sleep(0.1)
    raise AssertionError(f"no SSH banner from {host} within {timeout_s} s ({last})")


@pytest.fixture
async def lxc_node() -> AsyncIterator[Node]:
    """One LXC node on its own root dir, its login user authorized for a fresh ed25519 key; deleted after."""
    require_lxc()
    await ensure_base_image(IMAGE_DIR, progress=lambda msg: print(f"[image] {msg}", flush=True))
    root = Path(tempfile.mkdtemp(prefix="stacklab-heat-lxc-", dir="/var/tmp"))
    root.chmod(0o755)
    provider = LocalProvider("heat-lxc", {"root_dir": str(root), "image_dir": IMAGE_DIR})
    key = asyncssh.generate_private_key("ssh-ed25519", comment="heat-to-lxc")
    name = f"slt-{uuid.uuid4().hex[:8]}"
    try:
        handle = await provider.create(
            StackRequest(
                name=name,
                login_user=LOGIN,
                public_key=key.export_public_key().decode(),
                nodes=(NodeSpec(HOSTNAME),),
            )
        )
        address = handle["nodes"][HOSTNAME]
        await wait_ssh(address)
        yield Node(provider, name, address, key.export_private_key().decode())
    finally:
        try:
            await provider.delete({"name": name})
            assert name not in await provider.list()
            assert (await provider.status({"name": name})).state is StackState.ABSENT
        finally:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def app(heat_clouds: Path, tmp_path: Path) -> Iterator[App]:
    settings = Settings(
        data_dir=str(tmp_path / "data"), poll_interval_s=0.1, retry_backoff_s=(0.2, 0.5), max_attempts=3
    )
    built = build_app(settings, follow_requeue=False)
    yield built
    built.close()


def write_lab(directory: Path, node: Node) -> Path:
    (directory / "node.yaml").write_text(TEMPLATE)
    lab = directory / "lab.yaml"
    # JSON strings are YAML strings: the key's newlines survive as \n escapes.
    text = LAB.format(login=LOGIN, address=json.dumps(node.address), key=json.dumps(node.private_key))
    lab.write_text(text)
    return lab


@contextlib.asynccontextmanager
async def serve(app: App) -> AsyncIterator[tuple[FastAPI, str]]:
    """The real web service (no controller loop) on 127.0.0.1:<free port>; yields it and its ws:// URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    web = create_app(app, run_engine=False)
    config = uvicorn.Config(
        web, log_level="warning", ws="websockets-sansio", ws_per_message_deflate=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield web, f"ws://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        sock.close()


class Terminal:
    """The browser's side of the terminal websocket: JSON text frames for control, bytes for the terminal."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.output = bytearray()
        self.events: list[dict[str, object]] = []

    async def ready(self) -> None:
        while True:
            message = await asyncio.wait_for(self.ws.recv(), 30)
            assert isinstance(message, str), "terminal output before ready"
            self.events.append(json.loads(message))
            if self.events[-1]["type"] == "ready":
                return
            assert self.events[-1]["type"] != "error", self.events[-1]

    async def until(self, pattern: re.Pattern[bytes], since: int = 0, timeout: float = 30) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not pattern.search(self.output, since):
                    message = await self.ws.recv()
                    if isinstance(message, str):
                        self.events.append(json.loads(message))
                    else:
                        self.output += message
                        await self.ws.send(json.dumps({"type": "ack", "offset": len(self.output)}))
        except TimeoutError:
            raise AssertionError(
                f"{pattern.pattern!r} not seen; tail {bytes(self.output[-300:])!r}"
            ) from None

    async def run(self, command: str, expect: re.Pattern[bytes]) -> None:
        mark = len(self.output)
        await self.ws.send((command + "\r").encode())
        await self.until(expect, since=mark)


async def test_heat_outputs_lead_to_a_learners_shell_on_an_lxc_node(
    app: App, lxc_node: Node, tmp_path: Path
) -> None:
    record = app.environments.launch(write_lab(tmp_path, lxc_node), LEARNER, "e2e")
    env_id, stack = record.id, record.stack_name
    deleted = False
    try:
        started = time.monotonic()
        done = await app.environments.drive(env_id, timeout_s=180)
        assert done.observed == Observed.RUNNING, (done.observed, done.last_reason, done.last_error)
        print(f"\nlaunch to ready through Heat: {time.monotonic() - started:.2f} s")
        assert done.provider == "heat"
        assert done.nodes == {"main": {"host": lxc_node.address, "port": 22}}
        # the key is no plain output; `run` is the course run, as hastexo gives it
        assert done.outputs == {"public_ip": lxc_node.address, "run": "e2e"}
        lab = app.environments.lab_of(done)
        provider = app.controller.providers.named("heat")
        assert isinstance(provider, OpenStackProvider)
        assert stack in await provider.list()
        # The stack hid the key among its parameters, yet handed it out as the private_key output ...
        shown = await asyncio.to_thread(
            lambda: provider.connection().orchestration.get_stack(f"{stack}/{done.handle['id']}")
        )
        assert shown.parameters["node_key"] == "******"
        assert shown.parameters["node_address"] == lxc_node.address
        # ... and stacklab logs in with the key Heat returned, not with the pair it made for the stack.
        target = app.controller.targets(done, lab)["main"]
        assert target.private_key.reveal() == lxc_node.private_key
        assert (target.host, target.user) == (lxc_node.address, LOGIN)

        # (1) A command runs on the LXC node.
        result = await app.environments.exec(env_id, "hostname")
        assert (result.exit_status, result.stdout.strip()) == (0, HOSTNAME)

        # (2) The lab's checks run there; the score follows the work done on the node.
        before = await app.environments.check(env_id)
        assert (before.score, before.max_score) == (0, 3), [r.to_json() for r in before.results]
        assert (await app.environments.exec(env_id, "echo 42 > ~/answer.txt")).exit_status == 0
        after = await app.environments.check(env_id)
        assert (after.score, after.counted) == (2, 2), [r.to_json() for r in after.results]

        # (3) The learner's terminal through the real web service: a prompt, arithmetic, work that counts.
        async with serve(app) as (web, base):
            token = web.state.ctx.signer.issue("learner", LEARNER, env_id, 60)
            query = f"token={token}&session=s1&cols=80&rows=24"
            url = f"{base}/api/v1/environments/{env_id}/terminal/main?{query}"
            async with connect(url, compression=None, max_size=None) as ws:
                term = Terminal(ws)
                await term.ready()
                await term.until(PROMPT)
                await term.run("echo $((6*7))", re.compile(rb"[\r\n]42\r\n"))
                await term.run("hostname; touch /tmp/terminal-was-here", re.compile(rb"[\r\n]heatnode\r\n"))
                await term.until(PROMPT, since=len(term.output) - 2)
        final = await app.environments.check(env_id)
        assert (final.score, final.counted) == (3, 3), [r.to_json() for r in final.results]

        # (4) Deleting the environment deletes the stack (and only the stack: the node is the fixture's).
        app.environments.request(env_id, Desired.DELETED, "test")
        gone = await app.environments.drive(env_id, timeout_s=120)
        deleted = gone.observed == Observed.DELETED
        assert deleted, (gone.observed, gone.last_reason, gone.last_error)
        assert stack not in await provider.list()
        assert (await provider.status({"name": stack})).state is StackState.ABSENT
    finally:
        if not deleted:  # leave no stack behind, whatever failed
            with contextlib.suppress(Exception):
                app.environments.request(env_id, Desired.DELETED, "TestFailed")
                await app.environments.drive(env_id, timeout_s=120)
            heat = app.controller.providers.named("heat")
            if heat is not None:
                with contextlib.suppress(Exception):
                    await heat.delete({"name": stack})
