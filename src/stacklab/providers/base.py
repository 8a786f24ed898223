"""The provider contract: a small async interface that knows nothing of learners.

A provider turns a `StackRequest` into running machines and reports on them. All that the core keeps of
a provider's work is the JSON-ready `Handle` it returns, so a provider must be able to find everything
again from that handle alone (and from the deterministic stack name, after a crash).
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

Handle = dict[str, Any]
"""JSON-ready state a provider needs to find a stack again. Always contains "name"."""


class StackState(enum.Enum):
    """What a provider observes of one stack."""

    ABSENT = "absent"
    CREATING = "creating"
    RUNNING = "running"
    SUSPENDING = "suspending"
    SUSPENDED = "suspended"
    RESUMING = "resuming"
    DELETING = "deleting"
    FAILED = "failed"


@dataclass(frozen=True)
class NodeSpec:
    """One local node (used by providers that build nodes themselves, such as LXC)."""

    name: str
    memory_mb: int = 512
    pids_max: int = 1024
    packages: tuple[str, ...] = ()
    setup: str | None = None
    desktop: bool | str = False
    """Run a light desktop (True: VNC on the node's localhost; "rdp": an RDP server), where the provider
    has a recipe for one."""


@dataclass(frozen=True)
class StackRequest:
    """Everything a provider needs to create one stack.

    `name` is deterministic per environment (for example `sl-3f9a2c1d`) so that a retry after a crash finds
    its own leftovers. `config` is the lab's section for this provider type, as plain data.
    """

    name: str
    login_user: str
    public_key: str
    nodes: tuple[NodeSpec, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    lab_dir: str | None = None
    course: str = ""
    """The course the environment belongs to (templates written for hastexo take its run as `run`)."""


@dataclass(frozen=True)
class NodeAddress:
    """How to reach one node: its name and an address the service can SSH to."""

    name: str
    host: str
    port: int = 22


@dataclass(frozen=True)
class StackStatus:
    """A provider's observation of one stack."""

    state: StackState
    reason: str = ""
    nodes: tuple[NodeAddress, ...] = ()
    outputs: dict[str, Any] = field(default_factory=dict)
    """Further outputs. Secret outputs (such as a private key a template generated) go in `secrets`."""
    secrets: dict[str, str] = field(default_factory=dict)


class Provider(abc.ABC):
    """Creates, observes, suspends, resumes and deletes stacks. Every method is idempotent."""

    type_name: ClassVar[str]
    poll_interval_s: ClassVar[float] = 0.0
    """The shortest sensible delay between status polls of a stack that is changing (cloud APIs: seconds)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not getattr(cls, "__abstractmethods__", None) and not getattr(cls, "type_name", None):
            raise TypeError(f"{cls.__name__} must set type_name")

    def __init__(self, name: str, settings: dict[str, Any] | None = None) -> None:
        self.name = name
        self.settings = settings or {}

    @abc.abstractmethod
    async def create(self, request: StackRequest) -> Handle:
        """Start creating the stack (or find it, if it exists) and return its handle without waiting."""

    @abc.abstractmethod
    async def status(self, handle: Handle) -> StackStatus:
        """Observe the stack; ABSENT when it does not exist."""

    @abc.abstractmethod
    async def suspend(self, handle: Handle) -> None:
        """Freeze the stack so that it uses no CPU; a no-op when already suspended."""

    @abc.abstractmethod
    async def resume(self, handle: Handle) -> None:
        """Undo `suspend`; a no-op when already running."""

    @abc.abstractmethod
    async def delete(self, handle: Handle) -> None:
        """Remove everything the stack owns; a no-op when absent."""

    @abc.abstractmethod
    async def list(self) -> list[str]:
        """Names of all stacks this provider created (for finding leaks)."""

    async def changed(self, handle: Handle, timeout_s: float) -> bool:
        """Wait (at most `timeout_s`) until an operation the provider follows on this stack finishes: True
        when it did, False at once when the provider follows none (the caller looks again on its own
        schedule). Providers that follow nothing answer False."""
        return False

    async def check(self) -> list[tuple[str, bool, str]]:
        """Verify that the provider can work: a list of (what, ok, detail)."""
        return [("provider", True, "no checks defined")]

    async def check_lab(
        self, request: StackRequest, names: Mapping[str, Sequence[str]]
    ) -> list[tuple[str, bool, str]]:
        """Verify that this lab could be created here (`names`: what it needs by name, kind -> names, such as
        flavors and images); a list of (what, ok, detail). Providers with nothing to ask answer []."""
        return []
