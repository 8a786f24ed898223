"""How many writes go to Heat at once: as many as leave its API room to answer the polls promptly.

heat-api answers a few requests at a time (one per worker) and a create holds its worker for as long as the
engine takes to store the stack (0.3-2 s under a burst). Writes sent beyond the workers free for the polls
make every poll, and the outputs GET after it, wait behind them: a stack Heat has finished is then seen a
second late however often it is polled (bench/heat_launch.py: 10 launches at once on a 2-worker heat-api,
a list answered in 1.0 s with 4 creates out, in 0.05 s with 1). How many workers a cloud has is not
published, so the room is learned from the polls themselves, as TCP Vegas learns a path's queue from its
round-trip times: a poll answered much slower than Heat answers when our writes are not in its way, while
writes were out, halves the writes allowed out (down to one); a prompt answer while writes wait for room
allows one more (up to the provider's `api_writes`). What "not in its way" costs is learned from the
answers to polls sent while no write was out. A Heat slow for reasons of its own (an engine busy with a
large burst) is slow whatever we send: once `AT_ONE` answers in a row with one write allowed were all slow,
the quickest of them stands for Heat's pace until a poll with no write out is answered again, so the room
opens again instead of holding the writes to one for the whole burst (the first answers after the room
closed still queue behind the writes sent before, hence a few). Before any quiet answer is known, a poll
answered slower than `margin_s` is slow (a burst sent to a cloud never polled before).

The gate is taken in the write's thread, around the write request only (the read before an action and
the DELETEs, answered at once, do not take room).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

RECENT = 50
"""Quiet answers kept: the quickest of them is what Heat takes when our writes are not in its way."""
AT_ONE = 5
"""Answers in a row with one write at most allowed out that tell what Heat takes whatever we send."""


class WriteRoom:
    """An adjustable bound on the writes out to one cloud, moved by the answer times of its polls."""

    def __init__(self, most: int, margin_s: float) -> None:
        self.most = max(1, most)
        """The provider's `api_writes`: never more writes out than this."""
        self.margin_s = margin_s
        """An answer this much (or the quiet answer time, if more) slower than the quiet one is slow."""
        self.limit = self.most
        self.out = 0
        self.waiting = 0
        self.lowest = self.most
        """The smallest the limit has been (benchmarks print it)."""
        self._quiet: deque[float] = deque(maxlen=RECENT)
        """Answer times of recent polls no write of ours was in the way of."""
        self._at_one: deque[float] = deque(maxlen=AT_ONE)
        """Answer times of the polls sent since the room last closed to one write."""
        self._busy: float | None = None
        """Heat's pace while busy with other work (see the module's docstring); None while quiet."""
        self._changed = 0.0
        """When the limit last moved: answers to polls sent before then tell of the old limit."""
        self._last_out = 0.0
        """When a write was last out (now, while one is)."""
        self._cond = threading.Condition()

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the writes allowed out (waiting, in this thread, until one is free)."""
        with self._cond:
            self.waiting += 1
            try:
                self._cond.wait_for(lambda: self.out < self.limit)
            finally:
                self.waiting -= 1
            self.out += 1
        try:
            yield
        finally:
            with self._cond:
                self.out -= 1
                self._last_out = time.monotonic()
                self._cond.notify()

    def answered(self, sent: float, answer_s: float) -> None:
        """A poll sent at `sent` (time.monotonic()) was answered after `answer_s` seconds."""
        with self._cond:
            current = sent >= self._changed  # sent under the limit now in force
            crowded = bool(self.out) or self._last_out > sent  # a write of ours was out meanwhile
            if not crowded:
                self._quiet.append(answer_s)
                self._busy = None
                return
            if not current:
                return
            if self._busy is not None:
                self._busy = min(self._busy, answer_s)
            if self.limit == 1:
                self._at_one.append(answer_s)
                if len(self._at_one) == AT_ONE and self._busy is None:
                    self._busy = min(self._at_one)
            quiet = min(self._quiet, default=0.0) if self._busy is None else self._busy
            if answer_s > quiet + max(quiet, self.margin_s):
                self._move(max(1, self.limit // 2))
            elif self.waiting and self.out >= self.limit:
                self._move(min(self.most, self.limit + 1))

    def _move(self, limit: int) -> None:
        if limit == self.limit:
            return
        self.limit = limit
        self.lowest = min(self.lowest, limit)
        self._at_one.clear()
        self._changed = time.monotonic()
        self._cond.notify_all()
