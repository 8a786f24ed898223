"""The provider model of bench/cost_sim.py: stacks on a simulated clock, and the nodes' SSH server.

Only the provider is a model in the cost simulation: stacks take the create / suspend / resume / delete
times measured on LXC and on the Heat harness (`LOCAL`, `HEAT`, each figure with its source) and count the
compute-hours they run, per stack, so that a warm pool's share can be told from the learners'. The nodes
are one loopback SSH server (`start_nodes`) that accepts any key and answers every command with exit 0:
enough for the controller's SSH probe and a warm pool hand-over's key rotation, which run for real.
`measure_heat` times Heat on the harness instead (`--measure-heat`), for a model from the same run.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import asyncssh
from tests.support.engine import Clock
from tests.support.sshd import _AnyKeyServer

from stacklab.access.ssh import probe
from stacklab.providers.base import Handle, NodeAddress, Provider, StackRequest, StackState, StackStatus
from stacklab.providers.openstack.provider import OpenStackProvider

HOUR = 3600.0


@dataclass(frozen=True)
class ProviderModel:
    """How long a provider takes, and where each figure comes from.

    `sync`: the provider's suspend / resume / delete return when done (LXC's freezer). Otherwise they are
    asynchronous (Heat) and `status` holds, as OpenStackProvider's does, until an operation expected within
    `hold_s` completes; the controller then learns of it `watch_lag_s` after it completed (the shared
    poll's lag). Create is polled on both."""

    name: str
    create_s: float
    suspend_s: float
    resume_s: float
    delete_s: float
    poll_interval_s: float
    sync: bool
    handover_s: float
    sources: dict[str, str]
    hold_s: float = 0.0
    watch_lag_s: float = 0.0


LOCAL = ProviderModel(
    name="local",
    create_s=2.020,
    suspend_s=0.007,
    resume_s=0.031,
    delete_s=0.757,
    poll_interval_s=0.0,
    sync=True,
    handover_s=0.105,
    sources={
        "create": "2.02 s: bare create of examples/cluster.yaml (3 nodes) until SSH, median "
        "(bench/README.md, local_lifecycle.py 2026-11-25)",
        "suspend": "7 ms: engine suspend, no hooks (local_lifecycle.py re-run)",
        "resume": "31 ms: engine resume request -> all nodes answer SSH, no hooks "
        "(local_lifecycle.py re-run)",
        "delete": "757 ms: provider.delete of 3 nodes (local_lifecycle.py re-run)",
        "poll": "LocalProvider.poll_interval_s = 0 (the controller's poll_interval_s, 0.5 s, applies)",
        "handover": "105 ms after the resume: the key rotation (envs/handover.py, run here over a loopback "
        "SSH server in no simulated time); a whole hand-over from a suspended member, resume included, took "
        "0.13 s (tests/integration/test_warm_pools.py, 2026-12-05)",
    },
)
HEAT_MEASURED = (
    "a 1 s TestResource on the Heat harness, SDK calls polled every 0.1 s, median of 5 "
    "(bench/cost_sim.py --measure-heat, 2026-12-04)"
)
HEAT = ProviderModel(
    name="openstack",
    create_s=2.355,
    suspend_s=0.279,
    resume_s=0.351,
    delete_s=2.366,
    poll_interval_s=OpenStackProvider.poll_interval_s,
    sync=False,
    handover_s=0.105,
    hold_s=2 * OpenStackProvider.poll_interval_s,
    watch_lag_s=0.144,
    sources={
        "create": f"2.36 s: {HEAT_MEASURED} (heat_launch.py: 2.44 s). No Nova on the harness: a real VM "
        "boot adds tens of seconds",
        "suspend": f"0.28 s: {HEAT_MEASURED}. No Nova: a VM's suspend adds its own time",
        "resume": f"0.35 s: {HEAT_MEASURED}. No Nova: a VM's resume adds its own time",
        "delete": f"2.37 s: {HEAT_MEASURED} (heat_launch.py SDK floor: 2.35 s)",
        "poll": f"OpenStackProvider.poll_interval_s = {OpenStackProvider.poll_interval_s:g} s; `status` "
        f"holds for an operation expected within 2 polls ({2 * OpenStackProvider.poll_interval_s:g} s), as "
        "OpenStackProvider._hold does",
        "watch lag": "0.144 s: RESUME_COMPLETE -> ready, median (heat_launch.py 2026-12-05, (1c); the "
        "service path's CREATE_COMPLETE -> ready: 0.107 s)",
        "handover": "105 ms after the resume: key rotation over SSH, as on local",
    },
)


@dataclass
class Stack:
    state: StackState
    until: float  # when a change in progress completes
    running_since: float | None
    suspended_since: float | None = None


@dataclass
class Spent:
    """A stack's compute: (start, end) intervals running and suspended."""

    running: list[tuple[float, float]] = field(default_factory=list)
    suspended: list[tuple[float, float]] = field(default_factory=list)


def hours(intervals: list[tuple[float, float]], before: float = float("inf")) -> float:
    return sum(max(0.0, min(end, before) - start) for start, end in intervals) / HOUR


class ModelProvider(Provider):
    """Stacks in memory whose changes take the model's times on the simulated clock; counts compute-hours
    per stack (a stack costs from its create or resume until its suspend completes or it is deleted)."""

    type_name = "costmodel"

    def __init__(self, model: ProviderModel, clock: Clock, ssh: tuple[str, int]) -> None:
        super().__init__("sim")
        self.model, self.clock, self.ssh = model, clock, ssh
        self.poll_interval_s = model.poll_interval_s  # type: ignore[misc]
        self.stacks: dict[str, Stack] = {}
        self.spent: dict[str, Spent] = defaultdict(Spent)
        self.ops: dict[str, int] = {"create": 0, "suspend": 0, "resume": 0, "delete": 0}
        self.latency: dict[str, float] = {}
        """Per stack: how long after the pass that saw it ready it really was (a synchronous resume's
        own time; a held status's wait and the watch's lag). Simulated passes take no time."""

    # accounting -------------------------------------------------------------------------------------
    def _stop_running(self, name: str, stack: Stack, at: float) -> None:
        if stack.running_since is not None:
            self.spent[name].running.append((stack.running_since, max(stack.running_since, at)))
            stack.running_since = None

    def _stop_suspended(self, name: str, stack: Stack, at: float) -> None:
        if stack.suspended_since is not None:
            self.spent[name].suspended.append((stack.suspended_since, max(stack.suspended_since, at)))
            stack.suspended_since = None

    def _settle(self, name: str, stack: Stack) -> None:
        """Complete a change whose time has come (at its own time, not when it is looked at)."""
        if stack.until <= self.clock.now:
            self._complete(name, stack)

    def _complete(self, name: str, stack: Stack) -> None:
        """The change in progress is done; a suspend stops costing at its own completion time."""
        if stack.state == StackState.SUSPENDING:
            self._stop_running(name, stack, stack.until)
            stack.state, stack.suspended_since = StackState.SUSPENDED, stack.until
        elif stack.state in (StackState.CREATING, StackState.RESUMING):
            stack.state = StackState.RUNNING

    def _hold(self, name: str, stack: Stack) -> None:
        """OpenStackProvider's status waits for an operation expected to finish soon: complete it now and
        note how much later than this pass it really was seen."""
        busy = (StackState.CREATING, StackState.RESUMING, StackState.SUSPENDING)
        remaining = stack.until - self.clock.now
        if self.model.sync or stack.state not in busy or remaining > self.model.hold_s:
            return
        if stack.state != StackState.SUSPENDING:
            self.latency[name] = max(0.0, remaining) + self.model.watch_lag_s
        self._complete(name, stack)

    def finish(self, at: float) -> None:
        for name, stack in self.stacks.items():
            self._settle(name, stack)
            self._stop_running(name, stack, at)
            self._stop_suspended(name, stack, at)

    def running_h(self) -> float:
        return sum(hours(spent.running) for spent in self.spent.values())

    def suspended_h(self) -> float:
        return sum(hours(spent.suspended) for spent in self.spent.values())

    # the provider contract --------------------------------------------------------------------------
    async def create(self, request: StackRequest) -> Handle:
        now = self.clock.now
        if request.name not in self.stacks:
            self.ops["create"] += 1
            self.stacks[request.name] = Stack(StackState.CREATING, now + self.model.create_s, now)
            self.latency[request.name] = 0.0
        return {"name": request.name}

    async def status(self, handle: Handle) -> StackStatus:
        name = handle["name"]
        stack = self.stacks.get(name)
        if stack is None:
            return StackStatus(StackState.ABSENT)
        self._settle(name, stack)
        self._hold(name, stack)
        return StackStatus(stack.state, "", (NodeAddress("main", *self.ssh),))

    async def suspend(self, handle: Handle) -> None:
        name, now = handle["name"], self.clock.now
        stack = self.stacks[name]
        self._settle(name, stack)
        if stack.state in (StackState.SUSPENDING, StackState.SUSPENDED):
            return
        self.ops["suspend"] += 1
        stack.state, stack.until = StackState.SUSPENDING, now + self.model.suspend_s
        if self.model.sync:  # returns when frozen: done by the time anyone looks (it ran while freezing)
            self._complete(name, stack)

    async def resume(self, handle: Handle) -> None:
        name, now = handle["name"], self.clock.now
        stack = self.stacks[name]
        self._settle(name, stack)
        if stack.state in (StackState.RESUMING, StackState.RUNNING):
            return
        self.ops["resume"] += 1
        self._stop_suspended(name, stack, now)
        stack.running_since = now
        stack.state, stack.until = StackState.RESUMING, now + self.model.resume_s
        self.latency[name] = 0.0
        if self.model.sync:
            self._complete(name, stack)
            self.latency[name] = self.model.resume_s

    async def delete(self, handle: Handle) -> None:
        name = handle["name"]
        stack = self.stacks.pop(name, None)
        if stack is not None:
            self.ops["delete"] += 1
            self._settle(name, stack)
            self._stop_running(name, stack, self.clock.now + self.model.delete_s)
            self._stop_suspended(name, stack, self.clock.now)

    async def list(self) -> list[str]:
        return list(self.stacks)


# --- the nodes ------------------------------------------------------------------------------------------


def _done(process: asyncssh.SSHServerProcess) -> None:
    """Every command succeeds at once (the key rotation's script, its login check): nothing is run."""
    process.exit(0)


async def start_nodes() -> tuple[asyncssh.SSHAcceptor, int]:
    """Every simulated node: a loopback SSH server (a banner for the probe; any key; exit 0)."""
    server = await asyncssh.create_server(
        _AnyKeyServer,  # tests/support/sshd.py: any user, any key
        "127.0.0.1",
        0,
        server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
        process_factory=_done,
    )
    port = server.sockets[0].getsockname()[1]
    if not await probe("127.0.0.1", port):  # no lab could become ready: the week would never end
        await stop_nodes(server)
        raise RuntimeError(f"the simulated nodes' SSH server on port {port} sends no banner")
    return server, port


async def stop_nodes(server: asyncssh.SSHAcceptor) -> None:
    server.close()
    await server.wait_closed()


# --- Heat, measured in this run (optional) -------------------------------------------------------------

HEAT_CLOUDS = Path(os.environ.get("STACKLAB_HEAT_HOME", "/var/lib/stacklab-heat")) / "etc" / "clouds.yaml"
HEAT_TEMPLATE = {
    "heat_template_version": "2018-08-31",
    "description": "stacklab cost_sim: one TestResource (suspend / resume / delete timing)",
    "resources": {"pause": {"type": "OS::Heat::TestResource", "properties": {"value": "x", "wait_secs": 1}}},
}


def _until(heat: Any, stack_id: str, status: str, timeout_s: float = 120.0) -> float:
    """Poll the stack every 0.1 s until it reaches `status`; the time it took."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        stack = heat.find_stack(stack_id, ignore_missing=True)
        current = "DELETE_COMPLETE" if stack is None else stack.status
        if current == status:
            return time.perf_counter() - started
        if current.endswith("FAILED"):
            raise RuntimeError(f"stack {stack_id}: {current} ({stack.status_reason})")
        time.sleep(0.1)
    raise TimeoutError(f"stack {stack_id} not {status} after {timeout_s:g} s")


def measure_heat(cloud: str, rounds: int) -> ProviderModel:
    """Heat's create / suspend / resume / delete of a 1 s TestResource on the harness (SDK, 0.1 s polls):
    the model's figures come from this run instead of bench/README.md."""
    import uuid
    import warnings

    import openstack
    from openstack.warnings import RemovedInSDK60Warning

    warnings.simplefilter("ignore", RemovedInSDK60Warning)
    os.environ.setdefault("OS_CLIENT_CONFIG_FILE", str(HEAT_CLOUDS))
    heat = openstack.connect(cloud=cloud).orchestration
    times: dict[str, list[float]] = {"create": [], "suspend": [], "resume": [], "delete": []}
    for attempt in range(rounds * 3):  # the harness is shared: a round another test disturbed is redone
        if len(times["resume"]) >= rounds:
            break
        stack = heat.create_stack(name=f"costsim-{uuid.uuid4().hex[:8]}", template=HEAT_TEMPLATE)
        round_times = {}
        try:
            round_times["create"] = _until(heat, stack.id, "CREATE_COMPLETE")
            heat.suspend_stack(stack.id)
            round_times["suspend"] = _until(heat, stack.id, "SUSPEND_COMPLETE")
            heat.resume_stack(stack.id)
            round_times["resume"] = _until(heat, stack.id, "RESUME_COMPLETE")
        except (RuntimeError, TimeoutError) as exc:
            print(f"heat round {attempt} disturbed, redone: {exc}", flush=True)
        finally:
            heat.delete_stack(stack.id)
            round_times["delete"] = _until(heat, stack.id, "DELETE_COMPLETE")
        if len(round_times) == len(times):
            for op, value in round_times.items():
                times[op].append(value)
    if not times["resume"]:
        raise SystemExit("--measure-heat: every round was disturbed (is another test restarting Heat?)")
    medians = {f"{op}_s": statistics.median(values) for op, values in times.items()}
    for op, values in times.items():
        print(f"heat {op}: median {medians[op + '_s']:.3f} s ({', '.join(f'{v:.2f}' for v in values)})")
    source = (
        f"measured in this run on the Heat harness (cloud {cloud}, SDK, 0.1 s polls, {rounds} rounds, median)"
    )
    return replace(
        HEAT,
        **medians,
        sources={**HEAT.sources, **{op: f"{medians[op + '_s']:.2f} s: {source}" for op in times}},
    )
