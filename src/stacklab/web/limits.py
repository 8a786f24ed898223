"""Counting events per key in a sliding window: admin login failures, demo launches per client.

Kept in process memory: a limit of N per window is N per serving process, which is what a lockout or
a rate limit needs (slowing a guesser down by orders of magnitude), and losing the counts on a restart
only gives back what a restart costs anyway. The number of keys is bounded, oldest dropped first.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from stacklab.config import Settings

MAX_KEYS = 10_000


class SlidingWindow:
    """At most `limit` events per key within `window_s`."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str) -> deque[float]:
        events = self._events.get(key)
        if events is None:
            return deque()
        cutoff = self._clock() - self.window_s
        while events and events[0] <= cutoff:
            events.popleft()
        return events

    def retry_after(self, key: str) -> int:
        """Seconds until one more event is allowed for this key (0: allowed now)."""
        events = self._recent(key)
        if len(events) < self.limit:
            return 0
        if self.limit <= 0:
            return max(1, math.ceil(self.window_s))
        return max(1, math.ceil(events[len(events) - self.limit] + self.window_s - self._clock()))

    def record(self, key: str) -> None:
        events = self._recent(key)
        events.append(self._clock())
        self._events[key] = events
        self._events.move_to_end(key)
        while len(self._events) > MAX_KEYS:
            self._events.popitem(last=False)

    def clear(self, key: str) -> None:
        self._events.pop(key, None)


class Limits:
    """The service's limits, sized from its settings."""

    def __init__(self, settings: Settings | None = None) -> None:
        settings = settings or Settings()
        window = settings.admin_login_window_s
        self.login_by_client = SlidingWindow(settings.admin_login_max_failures, window)
        self.login_by_account = SlidingWindow(settings.admin_login_account_max_failures, window)
        self.demo_by_client = SlidingWindow(settings.demo_launches_per_client, settings.demo_window_s)
