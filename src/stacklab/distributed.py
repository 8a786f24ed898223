"""The processes of the distributed mode (runner = celery): `stacklab worker` and `stacklab scheduler`.

A worker runs passes sent through the broker and stands as a candidate for the scheduler's lease (unless
told not to); `stacklab scheduler` is only the candidate, for operators who keep it apart from the
workers. Any number of either may run: the lease elects one scheduler at a time (docs/distributed.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable, Sequence

from sqlalchemy.exc import SQLAlchemyError

from stacklab.config import Settings
from stacklab.envs.host_sweep import HostSweep
from stacklab.envs.hosts import Placement, host_queue
from stacklab.errors import ConfigError
from stacklab.jobs.celery_runner import CeleryRunner
from stacklab.jobs.scheduler import Scheduler
from stacklab.jobs.worker import LoopThread, WorkerMetrics, candidate, register_task, run_worker
from stacklab.store import members
from stacklab.wiring import App

log = logging.getLogger(__name__)
FORGET_WORKER_S = 86400.0
"""A worker's members row silent this long is removed (a lost host's labs were failed long before)."""
IDS_PER_MESSAGE = 25
"""The scheduler's due ids per message: one message (publish, delivery, ack) for many passes, and still
several messages per claim so that every worker gets some."""


def require_celery(settings: Settings) -> None:
    """Workers and schedulers belong to runner = celery: with the embedded runner they have no work
    (checked before the database is opened, so that a mistaken start changes nothing)."""
    if settings.runner != "celery":
        raise ConfigError(
            "workers run the passes of runner = celery; set runner = celery, broker_url and a shared "
            "database_url (STACKLAB_RUNNER, STACKLAB_BROKER_URL, STACKLAB_DATABASE_URL). With the embedded "
            "runner `stacklab serve` runs the passes itself"
        )


def celery_runner(app: App) -> CeleryRunner:
    """The app's runner, which must be the Celery one."""
    require_celery(app.settings)
    runner = app.engine.runner
    assert isinstance(runner, CeleryRunner), "make_runner builds the Celery runner for runner = celery"
    return runner


def placement(app: App) -> Placement:
    return Placement(app.repo, app.controller.labs, app.settings)


def make_scheduler(app: App, runner: CeleryRunner) -> Scheduler:
    """The candidate; while leading it also fails the labs of lost local hosts (every heartbeat period),
    and its sweep leaves `local` providers alone once hosts are in use (its host is not all of them)."""
    hosts, last = placement(app), [0.0]

    def chores(now: float) -> None:
        if now - last[0] >= app.settings.member_heartbeat_s:
            last[0] = now
            hosts.fail_lost(now)
            # rows of workers silent for long (killed, or a host's worker that stopped) go in the end
            members.prune(app.repo, "worker", now, max(FORGET_WORKER_S, 10 * app.settings.host_lost_after_s))

    async def sweep() -> object:
        with_hosts = bool(app.settings.local_host) or hosts.in_use()
        return await app.engine.sweep(frozenset({"local"}) if with_hosts else frozenset())

    def send(ids: Iterable[str]) -> None:
        runner.send(ids, per_message=IDS_PER_MESSAGE)

    def room() -> int:
        """Ids the broker may take now: up to scheduler_queued_max messages waiting, of full batches."""
        try:
            waiting = runner.waiting()
        except Exception as exc:  # the broker is away: one claim, which the send then tries
            log.debug("could not count the messages waiting", extra={"error": str(exc)})
            return app.settings.reconcile_batch
        return max(0, app.settings.scheduler_queued_max - waiting) * IDS_PER_MESSAGE

    return Scheduler(app.repo, app.settings, send, sweep, app.controller.owner, chores=chores, room=room)


async def announce(app: App, role: str, stop: asyncio.Event, load: Callable[[], int] = lambda: 0) -> None:
    """Be listed among the deployment's live members (`members`, role worker or scheduler) until `stop`:
    operators and peers see which workers run and their load (passes running), and a killed one ages
    out after member_ttl_s. A worker of a local host also gives its host, queue and capacity; its row
    stays when it stops, so that a host whose workers all stopped is found lost after host_lost_after_s."""
    repo, me, every, settings = app.repo, app.controller.owner, app.settings.member_heartbeat_s, app.settings
    host = settings.local_host or None
    about = {
        "host": host,
        "queue": host_queue(settings.job_queue, host) if host else None,
        "capacity": settings.local_capacity if host else None,
    }
    await asyncio.to_thread(members.register, repo, me, role, None, time.time(), **about)
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            try:
                if not await asyncio.to_thread(members.heartbeat, repo, me, time.time(), load()):
                    await asyncio.to_thread(members.register, repo, me, role, None, time.time(), **about)
            except SQLAlchemyError as exc:  # the database is away: try again at the next beat
                log.warning("heartbeat failed", extra={"error": str(exc)})
    finally:
        if host is None:
            await asyncio.to_thread(members.leave, repo, me)


def serve_worker(
    app: App, queues: Sequence[str], concurrency: int, elect: bool, metrics_host: str = "0.0.0.0"
) -> None:
    """Run a worker until SIGTERM or SIGINT; running passes finish first (Celery's warm shutdown)."""
    runner = celery_runner(app)
    metrics = WorkerMetrics()
    port = app.settings.worker_metrics_port
    if port:
        try:
            metrics.serve(port, metrics_host)
        except OSError as exc:
            raise ConfigError(
                f"worker_metrics_port {port}: {exc.strerror or exc}; give each worker of a host its own "
                "(--metrics-port, STACKLAB_WORKER_METRICS_PORT) or 0 for none"
            ) from exc
    loop = LoopThread()
    my_host = app.settings.local_host
    hosts = placement(app)
    register_task(
        runner.celery,
        app.controller.reconcile,
        loop,
        runner,
        metrics,
        elsewhere=lambda env_id: hosts.elsewhere(env_id, my_host),
        concurrency=concurrency,
    )
    if my_host:  # this host's own queue, beside the shared one
        queues = [*queues, host_queue(app.settings.job_queue, my_host)]
    stop = loop.run(_event())
    listed = loop.start(announce(app, "worker", stop, metrics.running))
    standing = loop.start(candidate(make_scheduler(app, runner), metrics, stop)) if elect else None
    # a local host reconciles what it holds once live (at start, or back after being lost): envs/host_sweep.py
    sweeping = loop.start(HostSweep(app.controller).run(stop)) if my_host else None
    try:
        run_worker(
            runner.celery,
            queues=queues,
            concurrency=concurrency,
            hostname=f"stacklab@{socket.gethostname()}.{os.getpid()}",
        )
    finally:
        loop.loop.call_soon_threadsafe(stop.set)
        if standing is not None:
            standing.result(timeout=30)  # gives the lease up: another candidate leads at once
        listed.result(timeout=30)
        if sweeping is not None:
            sweeping.result(timeout=30)
        loop.stop()
        app.close()


def serve_scheduler(app: App) -> None:
    """Run only the scheduler candidate until SIGTERM or SIGINT."""
    runner = celery_runner(app)

    async def main() -> None:
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        await asyncio.gather(
            announce(app, "scheduler", stop), candidate(make_scheduler(app, runner), WorkerMetrics(), stop)
        )

    try:
        asyncio.run(main())
    finally:
        app.close()


async def _event() -> asyncio.Event:
    return asyncio.Event()
