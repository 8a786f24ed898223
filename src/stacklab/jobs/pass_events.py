"""The controller's measurements (launched, resumed, failed) as events, published after their pass.

The controller tells its listeners `(kind, seconds, reason)` in the middle of a pass, without the
environment's id and before the pass has saved. A worker runs each pass inside `in_pass`, which names
the pass's environment for the listener (a context variable: passes run side by side on one loop) and
publishes what the listener collected once the pass has returned, i.e. after its last commit. A pass
that raises publishes nothing: what it measured was not saved.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from stacklab.events import MEASURED, Event, EventBus, EventKind

T = TypeVar("T")


@dataclass
class _Pass:
    env_id: str
    found: list[tuple[EventBus, Event]] = field(default_factory=list)


_CURRENT: contextvars.ContextVar[_Pass | None] = contextvars.ContextVar("stacklab_pass", default=None)


def measurements_to(bus: EventBus) -> Callable[[str, float, str], None]:
    """A controller listener that hands its measurements to the pass running it, for `bus`."""

    def listener(kind: str, seconds: float, reason: str) -> None:
        current = _CURRENT.get()
        if current is not None and kind in MEASURED:
            current.found.append((bus, Event(current.env_id, EventKind(kind), max(0.0, seconds), reason)))

    return listener


async def in_pass(env_id: str, job: Callable[[str], Awaitable[T]]) -> T:
    """Run `job(env_id)`, then publish the measurements its listeners collected."""
    current = _Pass(env_id)
    token = _CURRENT.set(current)
    try:
        result = await job(env_id)
    finally:
        _CURRENT.reset(token)
    for bus, event in current.found:
        bus.publish(event)
    return result
