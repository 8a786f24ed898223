"""A `stacklab worker` process: a Celery worker that runs passes, and a scheduler candidate beside it.

Passes are coroutines (providers and SSH are asyncio), so the process keeps one event loop in a thread
of its own; Celery's thread pool hands each message to it and waits for that message's passes only
(never for another task): one id of a submit, or a batch of the scheduler's run concurrently. At most
`concurrency` passes run at once on the loop, as `reconcile_concurrency` means in the embedded runner.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from celery import Celery
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from stacklab.errors import NotFound
from stacklab.jobs.celery_runner import SENT_AT, TASK, TASK_MANY, CeleryRunner
from stacklab.jobs.pass_events import in_pass
from stacklab.jobs.runner import Job
from stacklab.jobs.scheduler import Scheduler

log = logging.getLogger(__name__)
T = TypeVar("T")

WAIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
PASS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class LoopThread:
    """An asyncio event loop running in a daemon thread; other threads hand it coroutines."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="stacklab-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the loop and wait for its result (from any other thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def start(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


class WorkerMetrics:
    """What a worker reports at /metrics: passes run, passes that crashed, queue wait, pass duration."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs = Counter("stacklab_worker_jobs", "Passes run by this worker", registry=self.registry)
        self.crashes = Counter(
            "stacklab_worker_job_crashes", "Passes that raised an unexpected error", registry=self.registry
        )
        self.queue_wait = Histogram(
            "stacklab_worker_queue_wait_seconds",
            "From sending a pass to its start on this worker",
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )
        self.pass_seconds = Histogram(
            "stacklab_worker_pass_seconds",
            "Duration of one pass",
            buckets=PASS_BUCKETS,
            registry=self.registry,
        )
        self.busy = Gauge("stacklab_worker_busy", "Passes running now", registry=self.registry)
        self.leading = Gauge(
            "stacklab_scheduler_leading",
            "1 while this process is the elected scheduler",
            registry=self.registry,
        )

    def running(self) -> int:
        """Passes running now (what the worker's heartbeat reports as its load)."""
        return int(self.busy.collect()[0].samples[0].value)

    def serve(self, port: int, host: str) -> None:
        start_http_server(port, addr=host, registry=self.registry)


Elsewhere = Callable[[str], str | None]
"""Environment id -> None when this worker runs its pass, else the queue it belongs to ("" for none now)."""


def register_task(
    celery: Celery,
    job: Job,
    loop: LoopThread,
    runner: CeleryRunner,
    metrics: WorkerMetrics,
    elsewhere: Elsewhere | None = None,
    concurrency: int = 16,
) -> None:
    """The tasks: thin wrappers that run `job(env_id)` on the loop, one id (a submit) or a batch of the
    scheduler's (run concurrently, acknowledged after the last); at most `concurrency` passes run at once
    whatever the messages. A pass that asks to be looked at again at once is sent again after its commit
    (later ones wait in the database for the scheduler). A pass that belongs to another local host's
    workers (`elsewhere`) is forwarded there, not run."""
    slots = asyncio.Semaphore(concurrency)

    async def one(env_id: str, sent_at: object) -> None:
        async with slots:
            if isinstance(sent_at, (int, float)):
                metrics.queue_wait.observe(max(0.0, time.time() - sent_at))
            started = time.monotonic()
            metrics.busy.inc()
            try:
                result = await in_pass(env_id, job)  # its measurements published after it
            except NotFound:
                return  # deleted meanwhile: nothing to do
            except Exception:
                metrics.crashes.inc()
                log.exception("pass crashed", extra={"env_id": env_id})
                return  # still due in the database: the scheduler sends it again
            finally:
                metrics.busy.dec()
                metrics.jobs.inc()
                metrics.pass_seconds.observe(time.monotonic() - started)
        if result.requeue_after == 0:
            runner.submit(env_id)

    def mine(env_ids: list[str]) -> list[str]:
        """The ids this worker runs; the others are routed again to their host's queue."""
        if elsewhere is None:
            return env_ids
        kept = []
        for env_id in env_ids:
            queue = elsewhere(env_id)
            if queue is None:
                kept.append(env_id)
            elif queue:
                runner.submit(env_id)
        return kept

    async def run_all(env_ids: list[str], sent_at: object) -> None:
        await asyncio.gather(*(one(env_id, sent_at) for env_id in env_ids))

    def sent_at(request: Any) -> object:
        return (request.headers or {}).get(SENT_AT) or getattr(request, SENT_AT, None)

    options = dict(bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)

    @celery.task(name=TASK, **options)
    def reconcile(self: Any, env_id: str) -> None:
        loop.run(run_all(mine([env_id]), sent_at(self.request)))

    @celery.task(name=TASK_MANY, **options)
    def reconcile_many(self: Any, env_ids: list[str]) -> None:
        loop.run(run_all(mine(list(env_ids)), sent_at(self.request)))


def run_worker(
    celery: Celery,
    *,
    queues: Sequence[str],
    concurrency: int,
    hostname: str,
) -> None:
    """Consume `queues` until SIGTERM or SIGINT (a warm shutdown: running passes finish)."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:  # a line per message is debug detail
        for name in ("celery.app.trace", "celery.worker.strategy"):
            logging.getLogger(name).setLevel(logging.WARNING)
    # What start-up made (modules, the app, Celery's machinery) lives as long as the process: kept out of
    # the collector's full passes, which otherwise walk it all and stall the worker (79 ms seen here).
    gc.collect()
    gc.freeze()
    worker = celery.Worker(
        hostname=hostname,
        pool_cls="threads",
        concurrency=concurrency,
        queues=list(queues),
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
        optimization="fair",
        loglevel=logging.getLevelName(logging.getLogger().getEffectiveLevel()),
    )
    worker.start()


async def candidate(scheduler: Scheduler, metrics: WorkerMetrics, stop: asyncio.Event) -> None:
    """Run the scheduler candidate until `stop`, reporting whether it leads."""
    task = asyncio.create_task(scheduler.run(stop))
    while not task.done():
        metrics.leading.set(1 if scheduler.leading else 0)
        await asyncio.wait({task}, timeout=1.0)
    metrics.leading.set(0)
    await task
