"""Faults on demand: a wrapper around any Provider (and the lifecycle-hook boundary) that fails, hangs or
kills the process at the k-th call of one operation.

A `FaultPlan` names one fault, e.g. "the 2nd status call hangs", and counts calls across every process
of the service (the cloud sees them all), so a fault fires once even when the service restarts. Errors
are raised before the call reaches the cloud (the cloud refused); a hang or a kill happens after it (the
cloud did the work, the service never learnt it), which is the harder case to recover from. A hang is an
await that never returns: the controller's own bound on provider calls must cut it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from stacklab.access.ssh import CommandResult, Target
from stacklab.errors import TerminalProviderError, TransientProviderError
from stacklab.providers.base import Handle, Provider, StackRequest, StackStatus

T = TypeVar("T")

PROVIDER_OPS = ("create", "status", "suspend", "resume", "delete")
PROVIDER_MODES = ("transient", "terminal", "unexpected", "hang", "kill")
HOOK_MODES = ("fail", "hang", "kill")


class ProcessKilled(BaseException):
    """The process dies here. Not an Exception: no handler of the service catches it, as none would run
    after a SIGKILL."""


class Life:
    """One process of the service: once dead, it does nothing more."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dead = False

    def check(self) -> None:
        """Called at every provider call and database statement: a dead process gets no further."""
        if self.dead:
            raise ProcessKilled(f"{self.name} is dead")


@dataclass(frozen=True)
class Fault:
    """One fault: at the k-th call of `op` (a provider operation or "hook"), do `mode`."""

    op: str
    k: int
    mode: str

    @property
    def id(self) -> str:
        return f"{self.op}#{self.k}-{self.mode}"

    @property
    def message(self) -> str:
        """Put in the error, so a test can find the failure in the environment's history."""
        return f"injected {self.id}"

    @property
    def restarts(self) -> bool:
        """The process is lost (a hang is cut by the controller's timeouts, in the same process)."""
        return self.mode == "kill"


@dataclass
class FaultPlan:
    """Counts the calls of each operation (optionally only those for one stack) and fires the fault once."""

    fault: Fault | None = None
    stack: str | None = None
    calls: Counter[str] = field(default_factory=Counter)
    fired: bool = False

    def arm(self, op: str, stack: str | None) -> Fault | None:
        """Count this call; the fault when this is the call it is for."""
        if self.stack is not None and stack is not None and stack != self.stack:
            return None
        self.calls[op] += 1
        fault = self.fault
        if fault is None or self.fired or fault.op != op or self.calls[op] != fault.k:
            return None
        self.fired = True
        return fault


def injected_error(fault: Fault) -> Exception:
    if fault.mode == "transient":
        return TransientProviderError(fault.message, reason="Injected")
    if fault.mode == "terminal":
        return TerminalProviderError(fault.message, reason="Injected")
    return RuntimeError(fault.message)


async def after_the_work(fault: Fault, life: Life) -> None:
    """The cloud did the work; now the process dies, or the call never returns."""
    if fault.mode == "kill":
        life.dead = True
        raise ProcessKilled(fault.message)
    await asyncio.Future()  # never done: only a timeout around the call ends it


class FaultyProvider(Provider):
    """Any provider, with the plan's fault at its k-th call; `list` is passed through unfaulted."""

    type_name = "faulty"

    def __init__(self, inner: Provider, plan: FaultPlan, life: Life) -> None:
        super().__init__(inner.name, inner.settings)
        self.inner = inner
        self.plan = plan
        self.life = life
        self.poll_interval_s = inner.poll_interval_s  # type: ignore[misc]

    async def _call(self, op: str, stack: str, work: Callable[[], Awaitable[T]]) -> T:
        self.life.check()
        await asyncio.sleep(0)  # a real call yields: other passes and sweeps interleave here
        fault = self.plan.arm(op, stack)
        if fault is not None and fault.mode not in ("hang", "kill"):
            raise injected_error(fault)
        result = await work()
        if fault is not None:
            await after_the_work(fault, self.life)
        return result

    async def create(self, request: StackRequest) -> Handle:
        return await self._call("create", request.name, lambda: self.inner.create(request))

    async def status(self, handle: Handle) -> StackStatus:
        return await self._call("status", handle["name"], lambda: self.inner.status(handle))

    async def suspend(self, handle: Handle) -> None:
        await self._call("suspend", handle["name"], lambda: self.inner.suspend(handle))

    async def resume(self, handle: Handle) -> None:
        await self._call("resume", handle["name"], lambda: self.inner.resume(handle))

    async def delete(self, handle: Handle) -> None:
        await self._call("delete", handle["name"], lambda: self.inner.delete(handle))

    async def list(self) -> list[str]:
        self.life.check()
        await asyncio.sleep(0)
        return await self.inner.list()


ScriptRunner = Callable[[Target, str, float], Awaitable[CommandResult]]


def faulty_hooks(run_script: ScriptRunner, plan: FaultPlan, life: Callable[[], Life], hang: str) -> Any:
    """The hook boundary (`run_script` as the controller calls it) with the plan's "hook" fault: the
    script fails (exit 3), hangs (`hang`, a real script that outlives the hook's timeout) or runs and
    then the process dies. Every hook still runs over real SSH."""

    async def run(target: Target, script: str, timeout_s: float) -> CommandResult:
        life().check()
        fault = plan.arm("hook", None)
        if fault is None:
            return await run_script(target, script, timeout_s)
        if fault.mode == "fail":
            return await run_script(target, f"echo '{fault.message}'; exit 3", timeout_s)
        if fault.mode == "hang":
            return await run_script(target, hang, timeout_s)
        result = await run_script(target, script, timeout_s)
        await after_the_work(fault, life())
        return result

    return run
