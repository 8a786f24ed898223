"""An event bus over a broker's connections (PostgreSQL, Redis): never blocks a publisher, never dies.

Publishing puts the event in an outbox that a sender thread drains in batches, so a pass or a request
never waits on the broker (and a suspend step's own database work stays what it was: the NOTIFY goes on
a connection of its own, after the step's commit). A batch the broker refuses is tried once more on a
fresh connection, then dropped with a warning: delivery is at most once, and subscribers poll for what
they miss. Subscribing starts a listener thread that connects, subscribes, hands every payload to the
handlers (a malformed one is logged and skipped) and, when the connection is lost, connects again with
backoff and tells the subscribers to catch up (`on_connected`).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator

from stacklab.events import BadEvent, Event, EventBus

log = logging.getLogger(__name__)

RETRY_S = (0.1, 0.5, 1.0, 2.0, 5.0)
"""Waits between reconnections of a listener, the last repeated."""
BATCH = 500
JOIN_S = 5.0


class BrokeredBus(EventBus):
    """The threads and the reconnection; a backend supplies `send`, `listen` and `disconnect`."""

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what  # for the log: "PostgreSQL LISTEN/NOTIFY", "Redis pub/sub"
        self._outbox: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._live = threading.Event()
        self._threads: dict[str, threading.Thread] = {}
        self._start_lock = threading.Lock()

    # the backend ----------------------------------------------------------------------------------
    def send(self, payloads: list[str]) -> None:
        """Publish `payloads` in order (one round trip); raise when the broker refuses."""
        raise NotImplementedError

    def listen(self) -> Iterator[str | bytes | None]:
        """Connect and subscribe; yield None once subscribed and again whenever a second passes quietly,
        and each payload as it comes; raise when the connection is lost; close it when closed."""
        raise NotImplementedError

    def disconnect(self) -> None:
        """Close the publishing connection (the next send opens a new one)."""

    # the bus ----------------------------------------------------------------------------------------
    @property
    def live(self) -> bool:
        return self._live.is_set()

    def publish(self, event: Event) -> None:
        self._start("sender", self._send_forever)
        self._outbox.put(event.encode())

    def subscribe(
        self, handler: Callable[[Event], None], on_connected: Callable[[], None] | None = None
    ) -> Callable[[], None]:
        unsubscribe = super().subscribe(handler, on_connected)
        self._start("listener", self._listen_forever)
        return unsubscribe

    def close(self) -> None:
        atexit.unregister(self.close)
        self._stop.set()
        self._outbox.put(None)
        for thread in self._threads.values():
            thread.join(JOIN_S)
        self.disconnect()

    def _start(self, name: str, target: Callable[[], None]) -> None:
        with self._start_lock:
            if name not in self._threads and not self._stop.is_set():
                thread = threading.Thread(target=target, name=f"stacklab-events-{name}", daemon=True)
                self._threads[name] = thread
                thread.start()
                if len(self._threads) == 1:  # a one-shot command that never closes its app still sends
                    atexit.register(self.close)

    # the threads ------------------------------------------------------------------------------------
    def _send_forever(self) -> None:
        while True:
            batch, last = self._next_batch()
            if batch:
                self._send_batch(batch)
            if last:
                return

    def _next_batch(self) -> tuple[list[str], bool]:
        """Up to BATCH waiting payloads (waiting for the first); True when the bus is closing."""
        batch: list[str] = []
        item = self._outbox.get()
        while item is not None:
            batch.append(item)
            if len(batch) >= BATCH:
                return batch, False
            try:
                item = self._outbox.get_nowait()
            except queue.Empty:
                return batch, False
        return batch, True

    def _send_batch(self, batch: list[str]) -> None:
        for attempt in (1, 2):
            try:
                self.send(batch)
                return
            except Exception as exc:  # the broker's own errors, whatever the backend: never fatal here
                self.disconnect()
                if attempt == 2:
                    log.warning(
                        "events not published: %s refused them (%d dropped; subscribers poll for them)",
                        self.what,
                        len(batch),
                        extra={"error": str(exc)},
                    )

    def _listen_forever(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                with contextlib.closing(self.listen()) as stream:
                    for payload in stream:
                        if self._stop.is_set():
                            return
                        if payload is None:
                            failures = self._mark_live(failures)
                        else:
                            self._deliver(payload)
            except Exception as exc:  # a lost connection, whatever the backend: connect again
                log.warning(
                    "events: the %s subscription was lost; reconnecting", self.what, extra={"error": str(exc)}
                )
            self._live.clear()
            self._stop.wait(RETRY_S[min(failures, len(RETRY_S) - 1)])
            failures += 1

    def _mark_live(self, failures: int) -> int:
        """The subscription stands: after a (re)connection, the subscribers catch up on what they missed."""
        if not self._live.is_set():
            self._live.set()
            log.info("events: subscribed through %s", self.what)
            self.connected()
        return 0

    def _deliver(self, payload: str | bytes) -> None:
        try:
            event = Event.decode(payload)
        except BadEvent as exc:
            log.warning(
                "events: a malformed event was ignored: %s", exc, extra={"payload": repr(payload)[:200]}
            )
            return
        self.dispatch(event)
