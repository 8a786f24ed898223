"""Environment events across processes (docs/distributed.md, "Events"), with real processes: a real
`stacklab worker` runs the passes, the test process is the web process (the real app served by uvicorn,
its lifespan subscribing), on RabbitMQ + PostgreSQL (LISTEN/NOTIFY) and Redis + MariaDB (events_url).

- a worker's launch reaches the web process as an event, and its /metrics count it;
- a lab the worker pauses closes the learner's terminal at once, although the web process polls only
  every hour (terminal_watch_interval_s = 3600): the close follows the worker's commit;
- a subscriber whose connection the server kills (pg_terminate_backend, CLIENT KILL) reconnects, catches
  up, and receives what is published afterwards; a malformed payload on the channel is logged and skipped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from sqlalchemy import text
from tests.distributed.conftest import RABBITMQ_URL, Cluster, RedisServer, make_cluster, store
from tests.support.terminals import serve_asgi, terminal

from stacklab.events import Event, EventKind
from stacklab.store.notify_bus import libpq_dsn
from stacklab.types import Desired, Observed
from stacklab.web.app import create_app
from stacklab.web.terminal_watch import PAUSED

HOUR_S = 3600.0
BOUND_S = 60.0  # the longest any awaited step may take on a loaded machine (never a measured figure)


class Received:
    """The events a subscriber in this process received, in order (handlers run in the bus's thread)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.connections = 0
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def connected(self) -> None:
        with self._lock:
            self.connections += 1

    def kinds(self, env_id: str) -> list[EventKind]:
        with self._lock:
            return [e.kind for e in self.events if e.env_id == env_id]


async def until(predicate: Callable[[], object], what: str) -> None:
    """Wait (without blocking the loop: the test's SSH server runs on it) until `predicate` holds."""
    deadline = time.monotonic() + BOUND_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.fixture(params=["rabbitmq-postgresql", "redis-mariadb"])
def deployment(
    request: pytest.FixtureRequest, tmp_path: Path, sshd_port: int, job_queue: str, redis_server: RedisServer
) -> Iterator[Cluster]:
    """One worker on each broker and store; the nodes answer at a real SSH server; events on PostgreSQL's
    LISTEN/NOTIFY (no setting) or on Redis (events_url, the MariaDB case)."""
    broker, database = request.param.split("-")
    extra = {"terminal_watch_interval_s": HOUR_S, "labs_dir": str(tmp_path)}
    if database == "mariadb":
        extra["events_url"] = redis_server.url
    for url in store(database):
        yield from make_cluster(
            tmp_path,
            sshd_port,
            RABBITMQ_URL if broker == "rabbitmq" else redis_server.url,
            url,
            job_queue,
            **extra,
        )


@pytest.fixture
async def web(deployment: Cluster) -> AsyncIterator[tuple[Cluster, str, httpx.AsyncClient, Received]]:
    """The worker started, and this process serving the web app (lifespan on) with a subscriber of its own."""
    deployment.start(1)
    service = deployment.service()
    received = Received()
    service.events.subscribe(received, received.connected)
    app = create_app(service, run_engine=False)
    async with (
        serve_asgi(app, lifespan="on") as ws_base,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://web") as http,
    ):
        await until(lambda: service.events.live, "the web process's subscription")
        yield deployment, ws_base, http, received


async def launched(cluster: Cluster, received: Received) -> str:
    record = cluster.service().environments.launch(cluster.lab(), "ann")
    await until(lambda: EventKind.LAUNCHED in received.kinds(record.id), "the worker's launch as an event")
    assert cluster.service().repo.get(record.id).observed == Observed.RUNNING  # published after its commit
    return record.id


async def test_a_workers_launch_and_pause_reach_the_web_process_at_once(
    web: tuple[Cluster, str, httpx.AsyncClient, Received],
) -> None:
    cluster, ws_base, http, received = web
    service = cluster.service()
    env_id = await launched(cluster, received)
    launch = next(e for e in received.events if e.env_id == env_id and e.kind == EventKind.LAUNCHED)
    assert launch.seconds >= 0 and launch.reason == ""

    async def launches_counted() -> bool:
        body = (await http.get("/metrics")).text
        return "stacklab_launch_seconds_count 1.0" in body

    deadline = time.monotonic() + BOUND_S
    while not await launches_counted():  # the web process ran no pass: the count came as an event
        assert time.monotonic() < deadline, "web /metrics never counted the worker's launch"
        await asyncio.sleep(0.05)

    record = service.repo.get(env_id)
    signer = http._transport.app.state.ctx.signer  # type: ignore[attr-defined]  # the served app's
    token = signer.issue("learner", record.learner, env_id, 300, False, record.token_generation)
    url = f"{ws_base}/api/v1/environments/{env_id}/terminal/main?token={token}&session=events-test-0001"
    async with terminal(url) as term:
        await term.run("echo $((6 * 7))", b"42")
        # Paused as another process would ask (no event from here): only the worker's pass says so.
        with service.repo.engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE environments SET desired = :d, due_at = :now, version = version + 1 "
                    "WHERE id = :id"
                ),
                {"d": Desired.SUSPENDED.value, "now": time.time(), "id": env_id},
            )
        assert await term.end(BOUND_S) == 1000  # within the bound, not after the hour's poll
        assert term.closed_reason == PAUSED
    assert service.repo.get(env_id).observed == Observed.SUSPENDED  # the close followed the worker's commit
    assert received.kinds(env_id) == [EventKind.LAUNCHED, EventKind.SUSPENDED]


def kill_subscription(cluster: Cluster) -> None:
    """Make the server drop this process's listening connection, as a failover or an operator would."""
    url = cluster.values["database_url"]
    if "events_url" in cluster.values:
        client = redis.Redis.from_url(cluster.values["events_url"])
        try:
            assert client.client_kill_filter(_type="pubsub") >= 1
        finally:
            client.close()
        return
    with psycopg.connect(libpq_dsn(url), autocommit=True) as conn:
        killed = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN %%'"
        ).fetchall()
    assert killed, "no listening connection found"


def publish_garbage(cluster: Cluster) -> None:
    """A payload that is not an event, on the deployment's channel."""
    channel = f"{cluster.values['job_queue']}.events"
    if "events_url" in cluster.values:
        client = redis.Redis.from_url(cluster.values["events_url"])
        try:
            client.publish(channel, b"\xff not an event")
        finally:
            client.close()
        return
    with psycopg.connect(libpq_dsn(cluster.values["database_url"]), autocommit=True) as conn:
        conn.execute("SELECT pg_notify(%s, %s)", (channel, '{"env": "x", "kind": "exploded"}'))


async def test_a_subscriber_reconnects_catches_up_and_skips_malformed_events(
    web: tuple[Cluster, str, httpx.AsyncClient, Received], caplog: pytest.LogCaptureFixture
) -> None:
    cluster, _ws_base, _http, received = web
    service = cluster.service()
    env_id = await launched(cluster, received)
    assert received.connections == 1
    with caplog.at_level(logging.WARNING):
        kill_subscription(cluster)
        await until(lambda: received.connections == 2, "the subscriber to reconnect and catch up")
        publish_garbage(cluster)
        service.environments.request(env_id, Desired.SUSPENDED, "SuspendRequested")
        await until(
            lambda: EventKind.SUSPENDED in received.kinds(env_id), "the worker's pause after the kill"
        )
    assert received.kinds(env_id) == [EventKind.LAUNCHED, EventKind.REQUESTED, EventKind.SUSPENDED]
    assert "subscription was lost; reconnecting" in caplog.text
    assert "a malformed event was ignored" in caplog.text
    assert service.events.live
