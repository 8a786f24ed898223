"""Job runners. The job is `reconcile(env_id)`: it takes an id, never a secret, and is safe to run twice.

What is due lives in the database (`due_at`); a runner only carries "look at environment X now" to
whoever runs passes, and owns de-duplication and the requeue of its own passes. The embedded runner
executes jobs as asyncio tasks in this process, one at a time per environment and a bounded number at
once; the Celery runner (jobs/celery_runner.py) sends the id to workers that call the same job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from stacklab.logs import log_context

log = logging.getLogger(__name__)


class JobResult(Protocol):
    requeue_after: float | None


Job = Callable[[str], Awaitable[JobResult]]


class JobRunner(Protocol):
    failures: int
    """Jobs (or sends) that failed unexpectedly, for /metrics."""
    in_process: bool
    """The passes submitted here run in this process (so this process may lease them ahead)."""

    def submit(self, env_id: str, delay_s: float = 0.0) -> None:
        """Ask for one pass over the environment, now or after a delay; never blocks, never raises.
        Called after the commit that made the environment due."""

    async def idle(self) -> None:
        """Wait until nothing this runner was given is still running or waiting here."""

    def cancel_timers(self) -> None:
        """Forget what this process holds in memory to do later (the database keeps it due)."""

    def close(self) -> None:
        """Let go of threads and connections."""


class InProcessRunner:
    """Runs jobs in this process's event loop; no thread per job."""

    in_process = True

    def __init__(self, job: Job, concurrency: int = 16, follow_requeue: bool = True) -> None:
        self._job = job
        self._follow_requeue = follow_requeue
        self._slots = asyncio.Semaphore(concurrency)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.failures = 0

    def submit(self, env_id: str, delay_s: float = 0.0) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a one-shot command: the service's loop finds the environment due
            return
        if delay_s > 0:
            if env_id not in self._timers:
                loop = asyncio.get_running_loop()
                self._timers[env_id] = loop.call_later(delay_s, self._fire, env_id)
            return
        if env_id in self._running:
            self._again.add(env_id)
            return
        self._running[env_id] = asyncio.create_task(self._run(env_id), name=f"reconcile {env_id}")

    def _fire(self, env_id: str) -> None:
        self._timers.pop(env_id, None)
        self.submit(env_id)

    async def _run(self, env_id: str) -> None:
        with log_context(env_id=env_id):  # every line of the pass names its environment
            await self._passes(env_id)

    async def _passes(self, env_id: str) -> None:
        requeue: float | None = None
        try:
            while True:
                self._again.discard(env_id)
                async with self._slots:
                    try:
                        requeue = (await self._job(env_id)).requeue_after
                    except Exception:
                        self.failures += 1
                        log.exception("job failed", extra={"env_id": env_id})
                        requeue = None
                if env_id not in self._again:
                    break
        finally:
            del self._running[env_id]
        if requeue is not None and self._follow_requeue:
            self.submit(env_id, requeue)

    @property
    def busy(self) -> int:
        return len(self._running)

    async def idle(self) -> None:
        while self._running or self._timers:
            if self._running:
                await asyncio.gather(*self._running.values(), return_exceptions=True)
            else:
                await asyncio.sleep(0.01)

    def cancel_timers(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def close(self) -> None:
        self.cancel_timers()


class NoRunner:
    """For one-shot commands of the embedded mode: no pass runs here. What they submit is due in the
    database already, where the service's loop finds it within reconcile_interval_s; a command that
    waits drives its passes itself (`Environments.drive`)."""

    failures = 0
    in_process = False

    def submit(self, env_id: str, delay_s: float = 0.0) -> None:
        return None

    async def idle(self) -> None:
        return None

    def cancel_timers(self) -> None:
        return None

    def close(self) -> None:
        return None
