"""Environment events: what changed, published so that terminals and metrics in any process follow it.

An event names an environment, what happened to it (`EventKind`), how long it took and why: ids, a kind,
a number and a reason code, never outputs, keys or messages. It is a hint, delivered at most once: the
database stays the source of truth, and a subscriber reads it again when an event arrives (or when its
own poll comes round, for the events it missed).

Buses: `LocalBus` delivers within this process (the embedded default, no dependency); the PostgreSQL
(LISTEN/NOTIFY, store/notify_bus.py) and Redis (pub/sub, jobs/redis_bus.py) buses carry events between
processes (`BrokeredBus`, brokered_bus.py). wiring.make_bus chooses.
"""

from __future__ import annotations

import enum
import json
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_ID = 64
MAX_REASON = 200


class EventKind(enum.StrEnum):
    """What happened. The first three come from controller passes (with their seconds or reason), the
    rest from committed transitions, whoever wrote them (a lost host's `failed` too: no pass makes it)."""

    LAUNCHED = "launched"  # every node answers after a launch; seconds: the launch
    RESUMED = "resumed"  # every node answers after a resume; seconds: the resume step
    FAILED = "failed"  # a step failed; reason: why
    SUSPENDED = "suspended"  # the lab is paused
    DELETED = "deleted"  # the lab is gone
    RESET = "reset"  # the lab is being built afresh
    REQUESTED = "requested"  # a pause, deletion or reset was asked for (reason: which)
    RETURNED = "returned"  # its lost host came back with the lab, running or suspended (HOST_RETURNED)


HOST_LOST = "HostLost"
"""The reason of a lab failed because no worker of its local host was heard from (envs/hosts.py)."""
HOST_RETURNED = "HostReturned"
"""The reason of a lab taken back by its returning host's sweep (envs/host_sweep.py)."""

MEASURED = frozenset({EventKind.LAUNCHED, EventKind.RESUMED, EventKind.FAILED})
"""The kinds the controller's listeners report (metrics count them)."""


class BadEvent(ValueError):
    """A payload that is not an event; the subscriber logs and skips it."""


@dataclass(frozen=True)
class Event:
    env_id: str
    kind: EventKind
    seconds: float = 0.0
    reason: str = ""

    def encode(self) -> str:
        """The event as a short JSON text (well under PostgreSQL's 8000-byte NOTIFY limit)."""
        body = {"env": self.env_id, "kind": str(self.kind), "s": round(self.seconds, 6)}
        if self.reason:
            body["reason"] = self.reason[:MAX_REASON]
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def decode(cls, payload: str | bytes) -> Event:
        """The event in `payload`; BadEvent naming the problem when it is not one."""
        try:
            body = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadEvent(f"not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise BadEvent(f"not a JSON object but {type(body).__name__}")
        env_id, kind = body.get("env"), body.get("kind")
        seconds, reason = body.get("s", 0.0), body.get("reason", "")
        if not isinstance(env_id, str) or not 0 < len(env_id) <= MAX_ID:
            raise BadEvent(f"env must be an id of 1 to {MAX_ID} characters, not {env_id!r:.80}")
        if kind not in EventKind.__members__.values():
            raise BadEvent(f"kind {kind!r:.40} is not one of: {', '.join(EventKind)}")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
            raise BadEvent(f"s must be a number of seconds, not {seconds!r:.40}")
        if seconds < 0:
            raise BadEvent(f"s must not be negative: {seconds}")
        if not isinstance(reason, str) or len(reason) > MAX_REASON:
            raise BadEvent(f"reason must be text of at most {MAX_REASON} characters")
        return cls(env_id, EventKind(kind), float(seconds), reason)


Handler = Callable[[Event], None]


class EventBus:
    """Publish events; subscribers' handlers are called with each (in a thread of the bus: a handler
    that needs an event loop hands the event over with call_soon_threadsafe)."""

    def __init__(self) -> None:
        self._handlers: list[Handler] = []
        self._on_connected: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    @property
    def live(self) -> bool:
        """Other processes' events reach this one now (a subscriber may then poll less often)."""
        return False

    def publish(self, event: Event) -> None:
        raise NotImplementedError

    def subscribe(
        self, handler: Handler, on_connected: Callable[[], None] | None = None
    ) -> Callable[[], None]:
        """Call `handler` with every event from now on, and `on_connected` whenever the bus (re)connects
        (events may have been missed before: look at everything again). Returns the unsubscribe."""
        with self._lock:
            self._handlers.append(handler)
            if on_connected is not None:
                self._on_connected.append(on_connected)

        def unsubscribe() -> None:
            with self._lock:
                self._handlers.remove(handler)
                if on_connected is not None:
                    self._on_connected.remove(on_connected)

        return unsubscribe

    def close(self) -> None:
        """Stop delivering; send what was published."""

    def dispatch(self, event: Event) -> None:
        """Hand `event` to every handler; one that raises is logged and the others still get it."""
        for handler in self._snapshot(self._handlers):
            try:
                handler(event)
            except Exception:
                log.exception("an event handler failed", extra={"env_id": event.env_id, "kind": event.kind})

    def connected(self) -> None:
        for callback in self._snapshot(self._on_connected):
            try:
                callback()
            except Exception:
                log.exception("an event subscriber failed to catch up")

    def _snapshot(self, items: list[T]) -> list[T]:
        with self._lock:
            return list(items)


class LocalBus(EventBus):
    """Within this process only: a published event reaches this process's handlers at once."""

    def publish(self, event: Event) -> None:
        self.dispatch(event)
