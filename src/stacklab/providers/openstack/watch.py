"""One poll per cloud for every stack operation in flight, shared by everyone waiting on one of them.

A launch used to be seen by its own GET every poll interval: late by half that interval on average, and one
request per stack per poll. Here the provider registers each operation it starts (create, suspend, resume,
delete) as a `Flight`; one task per cloud asks Heat about all of them at once (the stack list filtered by
their ids; the stack itself when only one is in flight, which also brings its outputs) at the moments
`timing.next_poll` picks (`polls_in_flight` out at once at most), and wakes whoever
waits on a flight that finished. Heat's list carries no outputs: when a poll sees a create or resume
complete, the watch fetches that stack's outputs at once (`show`), so the waiter's status read, which needs
them, finds them there or already on their way instead of asking after its pass starts. Finished operations
teach `Durations` how long the next one of the same template will take.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from stacklab.providers.openstack.timing import Durations, next_poll

log = logging.getLogger(__name__)

Row = dict[str, Any]
"""What a poll tells of one stack: `stack_status`, `stack_status_reason` (and `outputs` from a show)."""
Fetch = Callable[[list["Flight"]], Awaitable[dict[str, Row]]]
"""Ask Heat about these flights' stacks; a stack missing from the answer is gone (deleted)."""
Show = Callable[["Flight"], Awaitable["Row | None"]]
"""Ask Heat for one flight's stack with its outputs (None: gone)."""
OUTPUTS_OPS = ("CREATE", "RESUME")
"""Operations whose waiter reads the stack's outputs once they complete."""
POLLS_IN_FLIGHT = 1
"""Polls out at once (the provider's `polls_in_flight`). With 1 a Heat slow to answer (0.6-1.7 s a list
under a burst of 10 creates) is asked once per answer: a stack completing just after a poll was read waits
for that answer and all of the next. With 2 a second poll goes out half an answer time after the first
(never a third), so the poll that sees a completion goes out ~0.1 s sooner; on the 2-worker harness it
did not make launches ready sooner (its polls held a heat-api worker the creates and outputs GETs wanted:
bench/README.md, heat_launch 2026-12-06), so it is not the default."""
ANSWER_WEIGHT = 0.3
"""Weight of the latest answer time in the running estimate that spaces the polls in flight."""


@dataclass
class Flight:
    """One operation on one stack, from its request until a poll sees it finished."""

    name: str
    stack_id: str
    op: str
    """CREATE, SUSPEND, RESUME or DELETE: which of Heat's `<OP>_COMPLETE` ends it."""
    key: str
    """The template's digest: operations of one template take about as long as each other."""
    sent: float
    """time.monotonic() when the request was sent."""
    before: tuple[str, str] = ("", "")
    """(status, reason) when the request was sent: a poll still showing these has not seen the op start."""
    row: Row | None = None
    gone: bool = False
    polled: float | None = None
    """When the latest poll whose answer was applied to this flight was sent."""
    covered: float | None = None
    """When the latest poll that covers this flight was sent (it may still be on its way)."""
    waiters: int = 0
    """Callers in `StackWatch.wait` now: a delete complete but still listed is polled only for them."""
    crowd: int = 1
    """The most operations of the cloud in flight at once while this one was."""
    error: Exception | None = None
    asked: float = field(default_factory=time.monotonic)
    """When someone last waited on this flight (one nobody asks about any more is dropped)."""
    done: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the flight finished (or its poll failed)."""
    settle: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when Heat is done with the operation (`settled`), or its poll failed."""
    learned: bool = False
    """Its duration was taught to `Durations` (once, when first seen settled)."""
    told: bool = False
    """A waiter between passes (`finishes`) was told it finished."""
    outputs: asyncio.Task[None] | None = None
    """The outputs GET the watch sent when a poll saw this create or resume complete."""

    @property
    def status(self) -> str:
        return str((self.row or {}).get("stack_status") or "")

    @property
    def reason(self) -> str:
        return str((self.row or {}).get("stack_status_reason") or "")

    def finished(self) -> bool:
        """Heat settled after the request: this op's COMPLETE or FAILED, or any other settled state (the
        stack went another way, which the waiter must see); a delete only when gone from the stack list
        (DELETE_COMPLETE alone still holds the name and the quota) or DELETE_FAILED.
        (Deleting a stack that is being created first stops the create: CREATE_FAILED on the way.)"""
        if self.gone:
            return True
        if self.row is None or (self.status, self.reason) == self.before:
            return False
        if self.op == "DELETE":
            return self.status == "DELETE_FAILED"
        return not self.status.endswith("_IN_PROGRESS")

    def deleted(self) -> bool:
        """A delete Heat has completed: gone from the list, or DELETE_COMPLETE. Heat lists a stack for a
        while after its DELETE_COMPLETE (~1.3 s on the harness, bench/heat_launch.py),
        holding its name and its place in the quota until then: `finished` waits for
        that, and a create that needs the name or the place waits for it (provider.create)."""
        return self.op == "DELETE" and (self.gone or self.status == "DELETE_COMPLETE")

    def settled(self) -> bool:
        """Heat is done with the operation: finished, or a delete DELETE_COMPLETE though still listed."""
        return self.finished() or self.deleted()

    def lingering(self) -> bool:
        """A delete Heat completed whose stack is still listed, and nobody waits for it to leave: the poll
        leaves it out (a create of its name, or one refused for quota, waits and has it polled again)."""
        return self.deleted() and not self.finished() and self.waiters == 0

    def succeeded(self) -> bool:
        return self.deleted() or self.status == f"{self.op}_COMPLETE"


class StackWatch:
    """The shared poll of one cloud: started by the first flight, ended when none is left."""

    def __init__(
        self,
        fetch: Fetch,
        fast_poll_s: float,
        slow_poll_s: float,
        forget_s: float,
        show: Show | None = None,
        polls_in_flight: int = POLLS_IN_FLIGHT,
        on_answer: Callable[[float, float], None] | None = None,
    ) -> None:
        self.fetch = fetch
        self.on_answer = on_answer
        """Told (when sent, seconds to answer) of every poll Heat answered (the provider's `WriteRoom`)."""
        self.show = show
        self.slow_poll_s = slow_poll_s
        self.forget_s = forget_s
        self.durations = Durations(fast_poll_s)
        self.flights: dict[str, Flight] = {}
        self.polls = 0
        self.polls_in_flight = max(1, polls_in_flight)
        self.most_in_flight = 0
        """The most polls that were out at once (at most `polls_in_flight`)."""
        self.answer_s = 0.0
        """Running estimate of Heat's answer time to a poll."""
        self._in_flight: set[asyncio.Task[None]] = set()
        self._last_sent = 0.0
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    def track(self, flight: Flight) -> Flight:
        """Watch `flight` (replacing an earlier operation's flight on the same stack)."""
        self._own_loop()
        self.flights[flight.stack_id] = flight
        flight.crowd = max(flight.crowd, sum(1 for f in self.flights.values() if not f.settled()))
        self._changed.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="openstack stack watch")
        return flight

    def get(self, stack_id: str | None) -> Flight | None:
        """The flight of this stack, if one is watched (asking keeps it watched)."""
        self._own_loop()
        flight = self.flights.get(stack_id) if stack_id else None
        if flight is not None:
            flight.asked = time.monotonic()
        return flight

    def forget(self, flight: Flight) -> None:
        if self.flights.get(flight.stack_id) is flight:
            del self.flights[flight.stack_id]

    async def wait(self, flight: Flight, timeout_s: float, *, settled: bool = False) -> bool:
        """Until the flight finished (True) or `timeout_s` passed (False); a failed poll raises.
        `settled`: until Heat is done with it (a delete: DELETE_COMPLETE, though still listed)."""
        flight.asked = time.monotonic()
        event = flight.settle if settled else flight.done
        flight.waiters += 1
        if flight.waiters == 1:
            self._changed.set()  # a lingering delete someone now waits for is polled again
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), max(0.0, timeout_s))
        finally:
            flight.waiters -= 1
        flight.asked = time.monotonic()
        if flight.error is not None:
            error, flight.error = flight.error, None
            flight.done.clear()
            flight.settle.clear()
            raise error
        return flight.settled() if settled else flight.finished()

    def deleting(self, name: str | None = None) -> list[Flight]:
        """Deletes not finished yet (of the stack named `name`): still in progress, or complete and still
        listed, holding the name and a place in the quota."""
        self._own_loop()
        return [
            f
            for f in self.flights.values()
            if f.op == "DELETE" and not f.finished() and (name is None or f.name == name)
        ]

    async def finishes(self, flight: Flight, timeout_s: float) -> bool:
        """True once the flight has finished (at once if it had, the first time this is asked), within
        `timeout_s`; False on timeout, when its last poll failed (whoever reads its status learns that),
        or when it was told already. Reads nothing and takes no error, so a caller that looks again
        afterwards and does not read the status never spins."""
        if flight.error is not None or flight.told:
            return False
        if not flight.finished():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(flight.done.wait(), max(0.0, timeout_s))
        flight.told = flight.finished()
        return flight.told

    async def full_row(self, flight: Flight) -> Row | None:
        """The finished flight's row, with the outputs the watch fetched when a poll saw it complete (waiting
        for that GET if it is still out). A row without outputs means that GET failed or was never sent: the
        caller reads the stack itself (and meets the error, if any, there)."""
        if flight.outputs is not None:
            await asyncio.shield(flight.outputs)
        return flight.row

    def expected_in(self, flight: Flight) -> float | None:
        """Seconds until the flight's window of expected completion opens (negative: open or past)."""
        window = self.durations.window(flight.key, flight.op, flight.crowd)
        if window is None:
            return None
        return window.opens - (time.monotonic() - flight.sent)

    # the poll -----------------------------------------------------------------------------------------
    def _own_loop(self) -> None:
        """Flights and their events belong to one event loop; a provider reused on a new loop starts over."""
        loop = asyncio.get_running_loop()
        if self._task is not None and self._task.get_loop() is not loop:
            self.flights.clear()
            self._task = None
            self._in_flight = set()
            self._changed = asyncio.Event()

    def _pending(self) -> list[Flight]:
        now = time.monotonic()
        for flight in list(self.flights.values()):
            if now - flight.asked > self.forget_s:
                self.forget(flight)
        return [
            f for f in self.flights.values() if not f.finished() and f.error is None and not f.lingering()
        ]

    def _due_in(self, pending: list[Flight]) -> float:
        """Until the poll the most pressing flight wants (counted from the last poll sent that covers it,
        answered or not). At most `polls_in_flight` polls are out, spaced by a share of Heat's answer time,
        so a Heat slow to answer (a busy engine) is asked at most that many times per answer."""
        now = time.monotonic()
        if len(self._in_flight) >= self.polls_in_flight:
            return self.slow_poll_s  # woken when one is answered
        stagger = 0.0
        if self._in_flight:
            spacing = max(self.durations.fast_poll_s, self.answer_s / self.polls_in_flight)
            stagger = self._last_sent + spacing - now
        first: dict[tuple[str, str], float] = {}
        for f in pending:
            first[(f.key, f.op)] = min(f.sent, first.get((f.key, f.op), f.sent))
        expected = [self.expected_in(f) for f in pending]
        sharing = sum(1 for e in expected if e is None or e <= 0)  # backing off or in their window
        wanted = min(
            next_poll(
                self.durations,
                f.key,
                f.op,
                f.crowd,
                now - f.sent,
                now - max(f.sent, f.covered or f.sent),
                self.slow_poll_s,
                now - first[(f.key, f.op)],
                sharing,
            )
            for f in pending
        )
        return max(wanted, stagger)

    async def _run(self) -> None:
        while True:
            pending = self._pending()
            if not pending:
                if not self.flights and not self._in_flight:
                    return
                pending_wait = self.forget_s  # only finished flights left: wait for their readers
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), pending_wait)
                continue
            delay = self._due_in(pending)
            if delay > 0:
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), delay)
                continue  # a new flight, or an answered poll, may change when the next one is due
            self._send(pending)

    def _send(self, pending: list[Flight]) -> None:
        """Send a poll beside those already out; the loop is woken when it is answered."""
        sent = self._last_sent = time.monotonic()
        for flight in pending:
            flight.covered = sent
        task = asyncio.get_running_loop().create_task(self._poll(pending, sent), name="openstack stack poll")
        self._in_flight.add(task)
        self.most_in_flight = max(self.most_in_flight, len(self._in_flight))

        def answered(task: asyncio.Task[None]) -> None:
            self._in_flight.discard(task)
            self._changed.set()
            if not task.cancelled() and task.exception() is not None:
                log.error("stack poll failed", exc_info=task.exception())

        task.add_done_callback(answered)

    async def _poll(self, pending: list[Flight], sent: float) -> None:
        self.polls += 1
        try:
            rows = await self.fetch(pending)
        except Exception as exc:  # each waiter raises it; the next poll comes after the slow interval
            for flight in pending:
                if flight.finished() or (flight.polled or 0.0) > sent:
                    continue  # a later poll's answer stands
                flight.error = exc
                flight.polled = flight.covered = sent + self.slow_poll_s
                flight.done.set()
                flight.settle.set()
            return
        answer = time.monotonic() - sent
        if self.on_answer is not None:
            self.on_answer(sent, answer)
        self.answer_s = (
            answer if not self.answer_s else self.answer_s + ANSWER_WEIGHT * (answer - self.answer_s)
        )
        for flight in pending:
            if flight.finished() or (flight.polled or 0.0) > sent:
                continue  # an answer overtaken by a later poll's tells nothing new
            running_at = (flight.polled or flight.sent) - flight.sent
            flight.polled = sent
            flight.crowd = max(flight.crowd, len(pending))
            flight.row = rows.get(flight.stack_id)
            flight.gone = flight.row is None
            if flight.settled() and not flight.learned:  # a delete: when DELETE_COMPLETE is first seen
                flight.learned = True
                if flight.succeeded():
                    self.durations.learn(flight.key, flight.op, running_at, sent - flight.sent, flight.crowd)
                    self._fetch_outputs(flight)
                flight.settle.set()
            if flight.finished():
                flight.done.set()

    def _fetch_outputs(self, flight: Flight) -> None:
        """Send the outputs GET of a create or resume just seen complete, beside the next polls."""
        if self.show is None or flight.op not in OUTPUTS_OPS or "outputs" in (flight.row or {}):
            return
        flight.outputs = asyncio.get_running_loop().create_task(
            self._outputs(flight, self.show), name=f"outputs of {flight.name}"
        )

    @staticmethod
    async def _outputs(flight: Flight, show: Show) -> None:
        try:
            row = await show(flight)
        except Exception:  # the status read asks again itself, and raises what it meets
            log.debug("outputs GET failed", extra={"stack": flight.name}, exc_info=True)
            return
        if row is not None and row.get("stack_status") == flight.status:
            flight.row = row
