"""Fixtures shared by the reliability suite (faults, soak, attacks, chaos): the parts that survive a
restart of the service."""

from __future__ import annotations

import pytest
from tests.support.engine import Clock
from tests.support.memory_provider import MemoryProvider


@pytest.fixture
def cloud(sshd_port: int) -> dict[str, MemoryProvider]:
    """The in-memory cloud, providers `local` (the default) and `a`, whose nodes are a real SSH server.
    It is not part of any process of the service: it outlives every kill and restart."""
    return {name: MemoryProvider(name, {"ssh": ("127.0.0.1", sshd_port)}) for name in ("local", "a")}


@pytest.fixture
def clock() -> Clock:
    """The service's clock; only the test moves it (deadlines, leases and backoffs in fake seconds)."""
    return Clock()
