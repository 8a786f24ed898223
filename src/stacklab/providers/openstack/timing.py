"""When a stack operation is expected to finish, learned from recent operations of the same template.

Polling Heat often is what makes a completion seen early, and what loads Heat's single API and engine. A
stack of one template takes about as long as the last few of that template did (one operation kind at a
time: CREATE, SUSPEND, RESUME, DELETE), so the shared poll can sleep until shortly before that and then look
quickly. Each finished operation is known only to lie between two polls (the last one that saw it in
progress and the first that saw it done); the middle of that bracket is kept when it is narrow, which it is
once the polls are timed well.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

KEEP = 8
"""Recent operations per (template, operation) the expectation is made of."""
WINDOW_POLLS = 3
"""Polls spread over the window of expected completion (the wider the window, the sparser they are)."""
BACKOFF = 0.5
"""Outside its window an operation is polled after this fraction of the time it has been overdue."""


@dataclass(frozen=True)
class Window:
    """Seconds after the request was sent between which the operation is expected to finish."""

    opens: float
    closes: float


class Durations:
    """Recent durations per (template key, operation), as brackets (still running at, seen done at)."""

    def __init__(self, fast_poll_s: float) -> None:
        self.fast_poll_s = fast_poll_s
        self._seen: dict[tuple[str, str], deque[tuple[float, float]]] = {}

    def learn(self, key: str, op: str, running_at: float, done_at: float) -> None:
        """One operation finished between `running_at` and `done_at` seconds after its request."""
        if done_at <= 0 or not key:
            return
        self._seen.setdefault((key, op), deque(maxlen=KEEP)).append((max(0.0, running_at), done_at))

    def window(self, key: str, op: str) -> Window | None:
        """Where the next operation is expected to finish; None for an operation never seen finish."""
        seen = self._seen.get((key, op))
        if not seen:
            return None
        narrow = [(lo + hi) / 2 for lo, hi in seen if hi - lo <= 2 * self.fast_poll_s]
        if narrow:  # a midpoint is off by half a fast poll at most
            return Window(min(narrow) - self.fast_poll_s / 2, max(narrow) + self.fast_poll_s / 2)
        return Window(min(lo for lo, _ in seen), max(hi for _, hi in seen))

    def spacing(self, window: Window) -> float:
        """Time between polls inside the window: a few polls over it, never faster than the fast poll."""
        return max(self.fast_poll_s, (window.closes - window.opens) / WINDOW_POLLS)


def next_poll(
    durations: Durations, key: str, op: str, elapsed: float, since_poll: float, slow_poll_s: float
) -> float:
    """Seconds from now until this operation wants the next poll.

    `elapsed`: since its request was sent; `since_poll`: since the last poll that covered it.
    Before its window it is looked at every `slow_poll_s` (a failure is noticed as soon as today's
    polling would), in the window a few times, and after it (or never seen finish) with a backoff
    that starts fast and ends at `slow_poll_s`.
    """
    fast = durations.fast_poll_s
    window = durations.window(key, op)
    if window is None:
        interval = min(slow_poll_s, max(fast, BACKOFF * elapsed))
    elif elapsed < window.opens:
        return max(0.0, min(window.opens - elapsed, slow_poll_s - since_poll))
    elif elapsed <= window.closes:
        interval = min(slow_poll_s, durations.spacing(window))
    else:
        interval = min(slow_poll_s, max(fast, BACKOFF * (elapsed - window.closes)))
    return max(0.0, interval - since_poll)
