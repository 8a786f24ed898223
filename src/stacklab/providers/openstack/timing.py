"""When a stack operation is expected to finish, learned from recent operations of the same template.

Polling Heat often is what makes a completion seen early, and what loads Heat's single API and engine. A
stack of one template takes about as long as the last few of that template did (one operation kind at a
time: CREATE, SUSPEND, RESUME, DELETE), so the shared poll can sleep until shortly before that and then look
quickly. Each finished operation is known only to lie between two polls (the last one that saw it in
progress and the first that saw it done); the middle of that bracket is kept, close to the truth once the
polls are timed well (a wide bracket still narrows the next one). Heat's engine builds the stacks of a burst
side by side and slower, so a duration is kept with its crowd (the most operations of the cloud in flight
at once beside it) and an operation is expected to take as long as those that ran in no larger a crowd.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

KEEP = 8
"""Recent operations per (template, operation) the expectation is made of."""
WINDOW_POLLS = 5
"""Polls spread over the window of expected completion (the wider the window, the sparser they are)."""
BACKOFF = 0.3
"""Outside its window an operation is polled after this fraction of the time it has been overdue."""
NARROW = 3
"""A bracket at most this many fast polls wide tells an operation's duration; a wider one only bounds it."""


@dataclass(frozen=True)
class Window:
    """Seconds after the request was sent between which the operation is expected to finish."""

    opens: float
    closes: float


class Durations:
    """Recent durations per (template key, operation), as brackets (still running at, seen done at)."""

    def __init__(self, fast_poll_s: float) -> None:
        self.fast_poll_s = fast_poll_s
        self._seen: dict[tuple[str, str], deque[tuple[float, float, int]]] = {}

    def learn(self, key: str, op: str, running_at: float, done_at: float, crowd: int = 1) -> None:
        """One operation, in flight beside `crowd` - 1 others, finished between `running_at` and `done_at`
        seconds after its request."""
        if done_at <= 0 or not key:
            return
        sample = (max(0.0, running_at), done_at, crowd)
        self._seen.setdefault((key, op), deque(maxlen=KEEP)).append(sample)

    def window(self, key: str, op: str, crowd: int = 1) -> Window | None:
        """Where the next operation is expected to finish; None for an operation never seen finish."""
        every = self._seen.get((key, op))
        if not every:
            return None
        seen = [(lo, hi) for lo, hi, c in every if c <= crowd] or [(lo, hi) for lo, hi, _ in every]
        is_narrow = [hi - lo <= NARROW * self.fast_poll_s for lo, hi in seen]
        narrow = [b for b, n in zip(seen, is_narrow, strict=True) if n]
        if not narrow:  # each op lay somewhere in its bracket: look where the newest overlap, at least a
            # narrow bracket wide, so that fast polls there make the next one narrow
            opens, closes = _overlap(seen)
            return Window(max(0.0, min(opens, closes - NARROW * self.fast_poll_s)), closes)
        # A midpoint of a narrow bracket is off by half of one at most; the quickest and the slowest may
        # be outliers once there are 5 (the backoff finds those).
        middles = sorted((lo + hi) / 2 for lo, hi in narrow)
        if len(middles) >= 5:
            middles = middles[1:-1]
        opens, closes = middles[0] - self.fast_poll_s / 2, middles[-1] + self.fast_poll_s / 2
        # A wide bracket newer than the last narrow one (an op seen done at the first poll of its window,
        # or late in the backoff) still bounds it: the window moves to take it in, and the fast polls
        # there make the next one narrow. Older wide ones are what the narrow ones since replaced.
        last_narrow = len(is_narrow) - 1 - is_narrow[::-1].index(True)
        wide = seen[last_narrow + 1 :]
        opens = min([opens] + [hi - self.fast_poll_s for _, hi in wide])
        closes = max([closes] + [lo for lo, _ in wide])
        return Window(max(0.0, opens), closes)

    def spacing(self, window: Window) -> float:
        """Time between polls inside the window: a few polls over it, never faster than the fast poll."""
        return max(self.fast_poll_s, (window.closes - window.opens) / WINDOW_POLLS)


def _overlap(brackets: list[tuple[float, float]]) -> tuple[float, float]:
    """Where the newest brackets overlap: from the newest back, as far as they still do. Heat's pace
    drifts (a freshly started engine is slower; load comes and goes), so an older bracket the newer ones
    contradict is left out, rather than the window spread over both (polled sparsely for good)."""
    opens, closes = brackets[-1]
    for lo, hi in reversed(brackets[:-1]):
        if max(opens, lo) > min(closes, hi):
            break
        opens, closes = max(opens, lo), min(closes, hi)
    return opens, closes


def next_poll(
    durations: Durations,
    key: str,
    op: str,
    crowd: int,
    elapsed: float,
    since_poll: float,
    slow_poll_s: float,
    burst_elapsed: float | None = None,
    sharing: int = 1,
) -> float:
    """Seconds from now until this operation wants the next poll.

    `elapsed`: since its request was sent; `since_poll`: since the last poll that covered it.
    Long before its window it is looked at every `slow_poll_s` (a failure is noticed about as soon as a
    poll every `slow_poll_s` would), then not until the window opens, in the window a few times, and
    after it (or never seen finish) with a backoff that starts fast and ends at `slow_poll_s`. Operations
    of a template never seen finish back off together from the first of them (`burst_elapsed`): a burst
    of launches is one wait, not a fresh fast start with every launch. One list answers for every
    operation in flight (`sharing` of them), so while they back off or are in their window they are
    polled that many times as often (never faster than the fast poll): each still costs what it would
    alone, and a burst's completions are seen as soon as a lone one's.
    """
    fast = durations.fast_poll_s
    window = durations.window(key, op, crowd)
    if window is None:
        interval = min(slow_poll_s, max(fast, BACKOFF * max(elapsed, burst_elapsed or 0.0)))
    elif elapsed < window.opens:
        if window.opens - elapsed <= 2 * slow_poll_s:
            return window.opens - elapsed
        return max(0.0, slow_poll_s - since_poll)
    elif elapsed <= window.closes:
        interval = min(slow_poll_s, durations.spacing(window))
    else:
        interval = min(slow_poll_s, max(fast, BACKOFF * (elapsed - window.closes)))
    return max(0.0, max(fast, interval / max(1, sharing)) - since_poll)
