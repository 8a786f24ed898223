"""Events benchmark: delivery latency and burst rate of the event buses (docs/distributed.md, "Events"),
each against the bare driver in the same run.

For PostgreSQL LISTEN/NOTIFY (a temporary database) and Redis pub/sub (127.0.0.1:6379, a channel of its
own): one event at a time, publish to the subscriber's handler (p50/p99), floor: the same round trip by
hand with the driver (NOTIFY or PUBLISH on one connection, waiting on another); a burst of events as a
controller pass would publish them at a high suspend rate, published to all delivered (events/s), peer:
the driver sending one statement per event on one connection. Prints figures; never asserts.

    .venv/bin/python bench/events.py      # ~30 s; --latency 300 --burst 20000
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
import redis
from bench.common import POSTGRES_ADMIN_URL, p50, p99, print_machine, print_table
from tests.conftest import _server_database

from stacklab.brokered_bus import BrokeredBus
from stacklab.events import Event, EventKind
from stacklab.jobs.redis_bus import RedisBus
from stacklab.store.notify_bus import NotifyBus, libpq_dsn

REDIS_URL = "redis://127.0.0.1:6379/0"
WAIT_S = 60.0


class Arrivals:
    """When each event reached the handler, by env id."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.changed = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self.changed:
            self.at[event.env_id] = time.perf_counter()
            self.changed.notify_all()

    def wait(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.at) >= count, WAIT_S), "events lost"


def bus_figures(bus: BrokeredBus, latency_n: int, burst_n: int) -> tuple[list[float], float]:
    arrivals = Arrivals()
    bus.subscribe(arrivals)
    deadline = time.monotonic() + WAIT_S
    while not bus.live:
        assert time.monotonic() < deadline, "no subscription"
        time.sleep(0.01)
    latencies = []
    for i in range(latency_n):
        key = f"l{i}"
        sent = time.perf_counter()
        bus.publish(Event(key, EventKind.SUSPENDED, 0.0, "Suspended"))
        arrivals.wait(i + 1)
        latencies.append(arrivals.at[key] - sent)
    began = time.perf_counter()
    for i in range(burst_n):
        bus.publish(Event(f"b{i}", EventKind.SUSPENDED, 0.0, "Suspended"))
    arrivals.wait(latency_n + burst_n)
    rate = burst_n / (time.perf_counter() - began)
    bus.close()
    return latencies, rate


def payload(i: int) -> str:
    return Event(f"r{i}", EventKind.SUSPENDED, 0.0, "Suspended").encode()


def pg_floor(dsn: str, channel: str, latency_n: int, burst_n: int) -> tuple[list[float], float]:
    with psycopg.connect(dsn, autocommit=True) as listener, psycopg.connect(dsn, autocommit=True) as sender:
        listener.execute(f'LISTEN "{channel}"')
        latencies = []
        for i in range(latency_n):
            sent = time.perf_counter()
            sender.execute("SELECT pg_notify(%s, %s)", (channel, payload(i)))
            next(iter(listener.notifies(timeout=WAIT_S, stop_after=1)))
            latencies.append(time.perf_counter() - sent)
        began = time.perf_counter()
        for i in range(burst_n):
            sender.execute("SELECT pg_notify(%s, %s)", (channel, payload(i)))
        for got, _ in enumerate(listener.notifies(timeout=WAIT_S, stop_after=burst_n), start=1):
            if got == burst_n:
                break
        return latencies, burst_n / (time.perf_counter() - began)


def redis_floor(channel: str, latency_n: int, burst_n: int) -> tuple[list[float], float]:
    client = redis.Redis.from_url(REDIS_URL)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    pubsub.get_message(timeout=5.0)

    def received(count: int) -> None:
        got = 0
        deadline = time.monotonic() + WAIT_S
        while got < count and time.monotonic() < deadline:
            if pubsub.get_message(timeout=1.0):
                got += 1

    latencies = []
    for i in range(latency_n):
        sent = time.perf_counter()
        client.publish(channel, payload(i))
        received(1)
        latencies.append(time.perf_counter() - sent)
    began = time.perf_counter()
    for i in range(burst_n):
        client.publish(channel, payload(i))
    received(burst_n)
    rate = burst_n / (time.perf_counter() - began)
    pubsub.close()
    client.close()
    return latencies, rate


def rows(name: str, bus: tuple[list[float], float], floor: tuple[list[float], float]) -> Iterator[list[str]]:
    ms: Callable[[float], str] = lambda s: f"{s * 1000:.2f} ms"  # noqa: E731
    yield [f"{name}: publish to handler p50", ms(p50(bus[0])), "-", f"{ms(p50(floor[0]))} (driver by hand)"]
    yield [f"{name}: publish to handler p99", ms(p99(bus[0])), "-", f"{ms(p99(floor[0]))} (driver by hand)"]
    yield [
        f"{name}: burst delivered",
        f"{bus[1]:,.0f} events/s",
        "-",
        f"{floor[1]:,.0f}/s (a statement each)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=int, default=300, help="events sent one at a time")
    parser.add_argument("--burst", type=int, default=20000, help="events sent at once")
    args = parser.parse_args()
    print_machine("stacklab events: buses vs their bare drivers", {"redis": REDIS_URL})
    table: list[list[str]] = []
    for url in _server_database(POSTGRES_ADMIN_URL, "postgres"):
        channel = f"bench-{uuid.uuid4().hex[:8]}.events"
        bus = bus_figures(NotifyBus(url, channel), args.latency, args.burst)
        floor = pg_floor(libpq_dsn(url), channel, args.latency, args.burst)
        table += rows("PostgreSQL LISTEN/NOTIFY", bus, floor)
    channel = f"bench-{uuid.uuid4().hex[:8]}.events"
    bus = bus_figures(RedisBus(REDIS_URL, channel), args.latency, args.burst)
    table += rows("Redis pub/sub", bus, redis_floor(channel, args.latency, args.burst))
    print_table(table)


if __name__ == "__main__":
    main()
