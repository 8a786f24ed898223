"""The scheduler of the distributed mode: one at a time, elected by a lease row, sends what is due.

Every `stacklab worker` (and `stacklab scheduler`) is a candidate. Each tick a candidate tries to take or
renew the `scheduler` lease; the holder claims the environments whose `due_at` has come (store/due.py)
and sends their ids to the workers, and now and then runs the sweep for leaked stacks. Nothing is kept
in memory that another candidate would need: when the holder dies, the lease expires after
`scheduler_lease_s`, the next candidate takes it, and everything still due in the database is sent by
it; a claim whose pass never ran comes due again after `redeliver_after_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from stacklab.config import Settings
from stacklab.store import leases
from stacklab.store.due import claim_due, unclaim
from stacklab.store.repository import Repository

log = logging.getLogger(__name__)

LEASE = "scheduler"
MAX_BATCHES_PER_TICK = 50
"""Claims of `reconcile_batch` ids one tick may send before it lets the lease be renewed."""


class Scheduler:
    """A candidate for the scheduler's lease; while it holds it, it sends what is due and sweeps."""

    def __init__(
        self,
        repo: Repository,
        settings: Settings,
        send: Callable[[Iterable[str]], None],
        sweep: Callable[[], Awaitable[object]],
        owner: str,
        clock: Callable[[], float] = time.time,
        chores: Callable[[float], object] | None = None,
        room: Callable[[], int] | None = None,
    ) -> None:
        self.repo = repo
        self.settings = settings
        self._send = send
        self._sweep = sweep
        self.owner = owner
        self.clock = clock
        self._chores = chores
        """Work of the leader besides sending, every tick, in a thread (lost local hosts: envs/hosts.py)."""
        self._room = room
        """How many ids the broker may take now (None: as many as are due)."""
        self.leading = False
        self.sent = 0
        self._last_sweep = 0.0
        self._sweeping: asyncio.Task[None] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until `stop` is set; then give the lease up so that another candidate leads at once."""
        try:
            while not stop.is_set():
                try:
                    await self.tick()
                except Exception:
                    log.exception("scheduler tick failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.scheduler_interval_s)
        finally:
            if self._sweeping is not None:
                self._sweeping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._sweeping
            if self.leading:
                await asyncio.to_thread(leases.give_up, self.repo, LEASE, self.owner)
                self.leading = False

    async def tick(self) -> int:
        """Lead (take or renew the lease) or follow; when leading, send what is due. Returns ids sent."""
        now = self.clock()
        leading = await asyncio.to_thread(
            leases.hold, self.repo, LEASE, self.owner, now, self.settings.scheduler_lease_s
        )
        if leading != self.leading:
            log.info("scheduler: leading" if leading else "scheduler: another process leads")
            self.leading = leading
        if not leading:
            return 0
        if self._chores is not None:
            try:
                await asyncio.to_thread(self._chores, now)
            except Exception:
                log.exception("scheduler chores failed")
        sent = await asyncio.to_thread(self.send_due, now)
        if now - self._last_sweep >= self.settings.sweep_interval_s and self._sweeping is None:
            self._last_sweep = now
            self._sweeping = asyncio.create_task(self._sweep_once(), name="sweep")
        return sent

    def send_due(self, now: float) -> int:
        """Claim and send what is due, batch after batch, as far as the broker has room; what could not
        be sent is due again at once, and what finds no room stays due (unclaimed) for a later tick."""
        settings, total = self.settings, 0
        if self._room is not None and not self.repo.due_ids(now, 1):
            return 0  # an idle tick: one indexed look, and the broker is not asked (a channel, a declare)
        room = self._room() if self._room is not None else None
        for _ in range(MAX_BATCHES_PER_TICK):
            limit = settings.reconcile_batch if room is None else min(settings.reconcile_batch, room - total)
            if limit <= 0:
                break
            held_until = now + settings.redeliver_after_s
            ids = claim_due(self.repo, now, limit, settings.redeliver_after_s)
            try:
                self._send(ids)
            except Exception as exc:
                unclaim(self.repo, ids, now, held_until)
                log.warning("scheduler: the broker did not take the due passes", extra={"error": str(exc)})
                break
            total += len(ids)
            if len(ids) < limit:
                break
        self.sent += total
        return total

    async def _sweep_once(self) -> None:
        """The sweep runs beside the sends (listing a cloud can take seconds), one at a time."""
        try:
            await self._sweep()
        except Exception:
            log.exception("sweep failed")
        finally:
            self._sweeping = None
