"""The Celery runner (runner = celery): passes run in `stacklab worker` processes, sent through RabbitMQ
or Redis.

A message carries environment ids and the time it was sent (for the queue-wait metric), nothing
else: the worker reads the world from the database. Submits (a web request, a pass that asks to be
looked at again) are published by one sender thread: the first after a quiet spell at once, one id a
message, and while they keep coming at most one message every `SEND_SPACING_S`, with the ids that came
in meanwhile (`TASK_MANY`, up to `SUBMITS_PER_MESSAGE` a message): 500 submits a second cost ~250
messages, not 500. The scheduler sends what it claimed in batches too (up to `per_message` ids a message,
split per queue). A worker runs a message's passes concurrently and acknowledges it after the last of
them (late acknowledgement); a message is given back when a worker dies mid-pass (reject on worker
lost; a batch comes back whole): the pass is idempotent, and the environment's lease keeps a second copy
from running beside the first. No ETA or countdown is ever used: what is due later lives in the database
(`due_at`) and the elected scheduler sends it when it comes (jobs/scheduler.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from celery import Celery

from stacklab.config import Settings

log = logging.getLogger(__name__)

TASK = "stacklab.reconcile"
TASK_MANY = "stacklab.reconcile_many"
SENT_AT = "stacklab_sent_at"
"""The message header that carries the send time (epoch seconds)."""

SUBMITS_PER_MESSAGE = 25
"""The most submitted ids one message carries (what came in while the sender was publishing)."""

SEND_SPACING_S = 0.004
"""While submits keep coming, the sender publishes at most one message this often (per queue: what came
in meanwhile, up to SUBMITS_PER_MESSAGE ids); the first after a quiet spell goes at once. A worker takes
a few hundred messages a second (Celery's handling of each, the broker's acknowledgement), so 500
submits a second one id each back up behind it; a few ids a message keep up, for at most this long a
wait."""

Route = Callable[[list[str]], Mapping[str, str]]
"""Environment ids -> the queue each one's pass goes to (a local host's queue, envs/hosts.py); an id it
leaves out goes to the default queue, one mapped to "" is not sent now (it stays due in the database)."""


def make_celery(settings: Settings) -> Celery:
    """The Celery app both sides use: web processes and the scheduler send, workers consume."""
    app = Celery("stacklab", broker=settings.broker_url, set_as_current=False)
    transport: dict[str, Any] = {}
    if settings.broker_url.startswith(("redis://", "rediss://")):
        # Redis gives an unacknowledged message back after this; no pass holds its lease longer.
        transport = {
            "visibility_timeout": settings.lease_s,
            "socket_timeout": 10,
            "socket_connect_timeout": 3,
        }
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_default_queue=settings.job_queue,
        task_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=1,  # a busy worker leaves waiting passes to idle ones
        worker_hijack_root_logger=False,  # our log format (stacklab.logs) stays
        worker_enable_remote_control=False,  # no broadcast queues: nothing here uses them
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker outlives a broker restart
        broker_connection_timeout=3.0,
        broker_transport_options=transport,
        broker_heartbeat=10,
    )
    return app


class CeleryRunner:
    """Sends "look at environment X" to the workers.

    `submit` never blocks its caller (a web request, a pass): ids are queued in memory, de-duplicated,
    and published by one sender thread. When the broker cannot be reached the ids are dropped with a
    warning: the database still has them due, and the elected scheduler sends them when it answers.
    """

    in_process = False

    def __init__(self, celery: Celery, route: Route | None = None) -> None:
        self.celery = celery
        self._route = route
        self._pending: dict[str, None] = {}  # insertion-ordered set
        self._sending = 0
        self._changed = threading.Condition()
        self._closed = False
        self._last_sent = -math.inf
        self._connecting = True
        self._queues = {celery.conf.task_default_queue}  # every queue sent to: what `waiting` counts
        self.failures = 0
        self._thread = threading.Thread(target=self._send_forever, name="stacklab-sender", daemon=True)
        self._thread.start()

    def submit(self, env_id: str, delay_s: float = 0.0) -> None:
        if delay_s > 0:  # a later pass is the database's business (due_at), never a broker ETA
            return
        with self._changed:
            if self._closed:
                return
            self._pending[env_id] = None
            self._changed.notify()

    def send(self, env_ids: Iterable[str], per_message: int = 1) -> None:
        """Publish now, in this thread, up to `per_message` ids a message (per queue); raises when the
        broker cannot be reached (the scheduler's way)."""
        ids = list(env_ids)
        if not ids:
            return
        routes = self._route(ids) if self._route else {}
        by_queue: dict[str, list[str]] = {}
        for env_id in ids:
            queue = routes.get(env_id)
            if queue != "":
                by_queue.setdefault(queue or self.celery.conf.task_default_queue, []).append(env_id)
        self._queues.update(by_queue)
        with self.celery.producer_or_acquire() as producer:
            for queue, queued in by_queue.items():
                for start in range(0, len(queued), per_message):
                    chunk = queued[start : start + per_message]
                    self.celery.send_task(
                        TASK if len(chunk) == 1 else TASK_MANY,
                        args=(chunk[0],) if len(chunk) == 1 else (chunk,),
                        queue=queue,
                        headers={SENT_AT: time.time()},
                        producer=producer,
                        retry=False,
                    )

    def waiting(self) -> int:
        """Messages waiting in the broker for a worker, over every queue this runner sent to (those a
        worker holds unacknowledged are not counted); raises when the broker cannot be reached."""
        with self.celery.connection_or_acquire() as connection:
            return sum(_ready(connection, queue) for queue in list(self._queues))

    def _connect(self) -> None:
        """Open the broker connection before the first submit needs it: the first send imports the
        transport and connects (~200 ms on Redis here, which every submit of that moment waited for).
        A broker away now is tried again by the first send."""
        try:
            self.celery.backend  # noqa: B018 (loaded at the first send_task, though no result is kept)
            with self.celery.producer_or_acquire() as producer:
                producer.connection.connect()
        except Exception as exc:
            log.debug("the broker did not answer yet", extra={"error": str(exc)})
        finally:
            with self._changed:
                self._connecting = False

    def _send_forever(self) -> None:
        self._connect()
        while True:
            with self._changed:
                while not self._pending and not self._closed:
                    self._changed.wait()
                if self._closed and not self._pending:
                    return
                # the ids of a busy moment share a message: the next one goes SEND_SPACING_S after the last
                # (at once after a quiet spell), with what came in meanwhile
                while not self._closed and len(self._pending) < SUBMITS_PER_MESSAGE:
                    left = self._last_sent + SEND_SPACING_S - time.monotonic()
                    if left <= 0:
                        break
                    self._changed.wait(left)
                self._last_sent = time.monotonic()
                batch = list(self._pending)
                self._pending.clear()
                self._sending = len(batch)
            try:
                self.send(batch, SUBMITS_PER_MESSAGE)
            except Exception as exc:  # the broker is away: the database keeps them due
                self.failures += 1
                log.warning(
                    "could not send passes to the broker; the scheduler sends them when it answers",
                    extra={"count": len(batch), "error": str(exc)},
                )
            finally:
                with self._changed:
                    self._sending = 0
                    self._changed.notify_all()

    async def idle(self) -> None:
        while self._pending or self._sending:
            await asyncio.sleep(0.005)

    def cancel_timers(self) -> None:
        """Nothing is held for later here: what is due later is in the database."""

    def close(self) -> None:
        """Send what was submitted, then stop the sender thread (bounded by the broker's timeouts); one
        still connecting with nothing to send is left to end on its own."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
            waiting = self._pending or self._sending or not self._connecting
        if waiting:
            self._thread.join(timeout=10)


def _ready(connection: Any, queue: str) -> int:
    """Messages ready in `queue`; 0 for one the broker does not hold (never declared, or an empty list on
    Redis). A channel of its own: RabbitMQ closes the channel of a passive declare that finds nothing."""
    channel = connection.channel()
    try:
        return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except connection.channel_errors:
        return 0
    finally:
        with contextlib.suppress(*connection.connection_errors, *connection.channel_errors):
            channel.close()
