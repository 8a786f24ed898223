"""A provider that keeps stacks in memory and answers at once, with switches for each failure mode.

Used where a real provider cannot be made to fail on demand (capacity, create failures, vanished
stacks) and by the controller benchmark. Its nodes point at a real SSH server when one is given.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from stacklab.errors import TerminalProviderError, TransientProviderError
from stacklab.providers.base import Handle, NodeAddress, Provider, StackRequest, StackState, StackStatus


class MemoryProvider(Provider):
    type_name = "memory"

    def __init__(self, name: str, settings: dict[str, Any] | None = None) -> None:
        super().__init__(name, settings)
        self.stacks: dict[str, StackState] = {}
        self.node_names: dict[str, tuple[str, ...]] = {}
        self.calls: list[tuple[str, str]] = []
        self.created: Counter[str] = Counter()  # stacks made, by name (a create that found one: not counted)
        self.deleted: Counter[str] = Counter()  # stacks removed, by name (a delete of nothing: not counted)
        self.keys: dict[str, str] = {}  # the login key each stack was made with
        self.rekeyed: list[
            str
        ] = []  # creates that found the stack made with another key: two launches at once
        self.fail_create: Exception | None = None
        self.fail_suspend: Exception | None = None
        self.boot_polls = 0
        self._polls: dict[str, int] = {}
        self.ssh = self.settings.get("ssh", ("127.0.0.1", 1))

    async def create(self, request: StackRequest) -> Handle:
        self.calls.append(("create", request.name))
        if self.fail_create:
            raise self.fail_create
        if request.name in self.stacks:
            if self.keys.get(request.name) != request.public_key:
                self.rekeyed.append(request.name)
        else:
            self.created[request.name] += 1
            self.keys[request.name] = request.public_key
        self.stacks.setdefault(request.name, StackState.CREATING)
        self.node_names[request.name] = tuple(n.name for n in request.nodes) or ("main",)
        self._polls[request.name] = 0
        return {"name": request.name}

    async def status(self, handle: Handle) -> StackStatus:
        name = handle["name"]
        state = self.stacks.get(name, StackState.ABSENT)
        if state == StackState.CREATING:
            self._polls[name] += 1
            if self._polls[name] > self.boot_polls:
                state = self.stacks[name] = StackState.RUNNING
        host, port = self.ssh
        nodes = tuple(NodeAddress(n, host, port) for n in self.node_names.get(name, ()))
        return StackStatus(state, "boom" if state == StackState.FAILED else "", nodes)

    async def suspend(self, handle: Handle) -> None:
        self.calls.append(("suspend", handle["name"]))
        if self.fail_suspend:
            raise self.fail_suspend
        self._require(handle)
        self.stacks[handle["name"]] = StackState.SUSPENDED

    async def resume(self, handle: Handle) -> None:
        self.calls.append(("resume", handle["name"]))
        self._require(handle)
        self.stacks[handle["name"]] = StackState.RUNNING

    async def delete(self, handle: Handle) -> None:
        self.calls.append(("delete", handle["name"]))
        if self.stacks.pop(handle["name"], None) is not None:
            self.deleted[handle["name"]] += 1

    async def list(self) -> list[str]:
        return list(self.stacks)

    def _require(self, handle: Handle) -> None:
        if handle["name"] not in self.stacks:
            raise TerminalProviderError(f"no stack {handle['name']}")


__all__ = ["MemoryProvider", "TerminalProviderError", "TransientProviderError"]
