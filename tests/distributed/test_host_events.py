"""A local host's loss and return reach the web processes as events (docs/distributed.md, "Events"), with
real processes: two `stacklab worker` processes stand for hosts host-a and host-b (RabbitMQ + PostgreSQL,
events on LISTEN/NOTIFY), the test process is the web process (the real app served by uvicorn) and polls
only every hour (terminal_watch_interval_s), so what it learns in time came as an event.

When B's worker is killed, the elected scheduler fails B's lab with HostLost after host_lost_after_s: the
web process's subscriber receives `failed` (reason HostLost) with the row already failed (published after
the scheduler's commit), the learner's terminal on that lab closes ("the lab failed") and /metrics count
the failure. When B's worker starts again, its sweep takes the lab back: `returned` (HostReturned).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import pytest
from tests.distributed.conftest import Cluster
from tests.distributed.test_events import BOUND_S, HOUR_S, until
from tests.distributed.test_hosts import host_env
from tests.support.terminals import serve_asgi, terminal

from stacklab.events import HOST_LOST, HOST_RETURNED, Event, EventKind
from stacklab.types import Observed
from stacklab.web.app import create_app
from stacklab.web.terminal_watch import FAILED
from stacklab.wiring import App


@pytest.fixture
def ssh_banner(sshd_port: int) -> int:
    """The labs' nodes answer at a real SSH server (two_hosts' nodes only show a banner)."""
    return sshd_port


@pytest.fixture
def hosts(two_hosts: Cluster, tmp_path: Path) -> Cluster:
    """Two hosts, whose web side polls its terminals hourly (set before any process starts)."""
    two_hosts.values.update(terminal_watch_interval_s=HOUR_S, labs_dir=str(tmp_path))
    return two_hosts


class Seen:
    """The events a subscriber of the web process received, each with its lab's observed state as the
    database had it when the event arrived (handlers run in the bus's thread)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.events: list[tuple[Event, str]] = []
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        state = self.app.repo.get(event.env_id).observed
        with self._lock:
            self.events.append((event, state))

    def of(self, env_id: str) -> list[tuple[EventKind, str, str]]:
        with self._lock:
            return [(e.kind, e.reason, state) for e, state in self.events if e.env_id == env_id]


async def test_a_lost_host_fails_its_labs_and_its_return_takes_them_back_as_events(hosts: Cluster) -> None:
    cluster = hosts
    cluster.start(1, env=host_env(cluster, "host-a", 1))
    (worker_b,) = cluster.start(1, env=host_env(cluster, "host-b", 3))
    service = cluster.service()
    seen = Seen(service)
    service.events.subscribe(seen)
    app = create_app(service, run_engine=False)
    async with (
        serve_asgi(app, lifespan="on") as ws_base,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://web") as http,
    ):
        await until(lambda: service.events.live, "the web process's subscription")
        env_id = service.environments.launch(cluster.lab(), "ann").id  # B has the most room
        await until(lambda: [k for k, *_ in seen.of(env_id)] == [EventKind.LAUNCHED], "the launch")
        record = service.repo.get(env_id)
        assert record.host == "host-b"
        signer = app.state.ctx.signer
        token = signer.issue("learner", record.learner, env_id, 300, False, record.token_generation)
        url = f"{ws_base}/api/v1/environments/{env_id}/terminal/main?token={token}&session=host-events-0001"
        async with terminal(url) as term:
            await term.run("echo $((6 * 7))", b"42")
            worker_b.kill()
            await asyncio.to_thread(worker_b.wait, 10)
            assert await term.end(BOUND_S) == 1000  # within the bound, not at the hour's poll
            assert term.closed_reason == FAILED
        assert (EventKind.FAILED, HOST_LOST, Observed.FAILED) in seen.of(env_id)  # after the commit
        body = (await http.get("/metrics")).text
        assert 'stacklab_job_failures_total{reason="HostLost"} 1.0' in body

        await asyncio.to_thread(cluster.start, 1, "worker", host_env(cluster, "host-b", 3))
        await until(lambda: len(seen.of(env_id)) == 3, "B's return taking the lab back")
        assert seen.of(env_id)[1:] == [
            (EventKind.FAILED, HOST_LOST, Observed.FAILED),
            (EventKind.RETURNED, HOST_RETURNED, Observed.RUNNING),
        ]
