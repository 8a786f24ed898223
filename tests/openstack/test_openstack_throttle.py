"""Writes Heat answers 429 or 503 are sent again after its Retry-After, within a bound, against the real Heat
harness. The harness does not rate-limit, so a tiny HTTP proxy in front of the real heat-api answers the
first writes (POST, DELETE) with 503 or 429 and a Retry-After, and forwards everything else. The same proxy
also stands for a Heat that accepts a DELETE and never acts on it (seen in CI when a DELETE met a create as it
failed): the delete is sent again. And, with a bounded number of workers, for a heat-api whose few workers
our own creates would fill ahead of the polls: the provider's write room (room.py) closes. A write that
waited for room or was refused first is timed from the attempt Heat took."""

from __future__ import annotations

import asyncio
import http.client
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import openstack
import pytest
import yaml
from tests.openstack.test_openstack_polling import quick

from stacklab.errors import TransientProviderError
from stacklab.providers.base import StackState
from stacklab.providers.openstack.provider import OpenStackProvider

WRITES = ("POST", "PUT", "PATCH", "DELETE")

pytestmark = [
    pytest.mark.openstack,
    pytest.mark.usefixtures("clean_clouds"),
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:openstack"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:openstack"),
]


class BusyHeat(ThreadingHTTPServer):
    """heat-api behind a proxy that refuses the next `refuse` writes with `status` and a Retry-After."""

    daemon_threads = True

    def __init__(self, upstream: tuple[str, int]) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.upstream = upstream
        self.refuse = 0
        self.status = 503
        self.retry_after = "0"
        self.drop = 0
        """The next `drop` DELETEs are answered 204 and not forwarded: accepted, never acted on."""
        self.writes: list[tuple[float, str, str, int]] = []
        """(when, method, path, status answered) of every write that reached the proxy."""
        self.lock = threading.Lock()
        self.workers: threading.Semaphore | None = None
        """When set, requests are answered this many at a time, as by heat-api's sync workers."""
        self.create_hold_s = 0.0
        """How much longer a create holds its worker (an engine slow to store the stack)."""
        self.creates_in = 0
        self.creates_at_once: list[int] = []
        """Creates in the proxy (in a worker or waiting for one) as each create arrived, itself included."""

    @contextmanager
    def worker(self, method: str, path: str) -> Iterator[None]:
        """Hold one of the `workers` (if bounded) for the request, longer for a create."""
        create = method == "POST" and urlsplit(path).path.endswith("/stacks")
        if create:
            with self.lock:
                self.creates_in += 1
                self.creates_at_once.append(self.creates_in)
        try:
            if self.workers is None:
                yield
                return
            with self.workers:
                if create:
                    time.sleep(self.create_hold_s)
                yield
        finally:
            if create:
                with self.lock:
                    self.creates_in -= 1

    def refused(self) -> list[tuple[float, str, str, int]]:
        return [w for w in self.writes if w[3] in (429, 503)]

    def take(self, method: str, path: str) -> int | None:
        """The refusal (or the dropped DELETE's 204) for this write, if one is due (and note every write)."""
        with self.lock:
            if method == "DELETE" and self.drop > 0:
                self.drop -= 1
                self.writes.append((time.monotonic(), method, path, 204))
                return 204
            refuse = method in WRITES and self.refuse > 0
            if refuse:
                self.refuse -= 1
            if method in WRITES:
                self.writes.append((time.monotonic(), method, path, self.status if refuse else 0))
            return self.status if refuse else None


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: BusyHeat

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        refusal = self.server.take(self.command, self.path)
        if refusal is not None:
            self.send_response(refusal)
            if refusal != 204 and self.server.retry_after:
                self.send_header("Retry-After", self.server.retry_after)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        with self.server.worker(self.command, self.path):
            upstream = http.client.HTTPConnection(*self.server.upstream, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            upstream.request(self.command, self.path, body, headers)
            answer = upstream.getresponse()
            data = answer.read()
            upstream.close()
        self.send_response(answer.status)
        for key, value in answer.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


@pytest.fixture
def busy_heat(clean_clouds: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[BusyHeat]:
    """The proxy, and a cloud `heatbox-busy` (heatbox with its orchestration endpoint at the proxy)."""
    heat_url = openstack.connect(cloud="heatbox").orchestration.get_endpoint()
    parts = urlsplit(heat_url)
    proxy = BusyHeat((parts.hostname or "127.0.0.1", parts.port or 80))
    serving = threading.Thread(target=proxy.serve_forever, daemon=True)
    serving.start()
    config = yaml.safe_load(clean_clouds.read_text())
    busy = dict(config["clouds"]["heatbox"])
    busy["orchestration_endpoint_override"] = urlunsplit(
        parts._replace(netloc=f"127.0.0.1:{proxy.server_address[1]}")
    )
    config["clouds"]["heatbox-busy"] = busy
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()


async def until(provider: OpenStackProvider, handle: dict, *passing: StackState) -> StackState:
    for _ in range(240):
        state = (await provider.status(handle)).state
        if state not in passing:
            return state
        await asyncio.sleep(0.25)
    raise AssertionError(f"{handle['name']} still {state}")


async def test_writes_wait_out_503_and_429_then_succeed(busy_heat: BusyHeat) -> None:
    """Create, suspend and delete each meet refusals first: each succeeds without an error, sent again no
    sooner than Retry-After and no more often than the bound allows."""
    settings = {"cloud": "heatbox-busy", "write_retries": 3, "write_backoff_s": 0.01}
    provider = OpenStackProvider("busy", settings)
    busy_heat.refuse, busy_heat.retry_after = 2, "1"
    handle = await provider.create(quick("sl-busy1"))
    creates = [w for w in busy_heat.writes if w[1] == "POST" and w[2].endswith("/stacks")]
    assert [w[3] for w in creates] == [503, 503, 0]  # two refused, the third created it
    assert all(b[0] - a[0] >= 1.0 for a, b in pairwise(creates))  # Retry-After honoured
    assert await until(provider, handle, StackState.CREATING) == StackState.RUNNING

    busy_heat.refuse, busy_heat.status, busy_heat.retry_after = 3, 429, "0"
    await provider.suspend(handle)
    actions = [w for w in busy_heat.writes if w[2].endswith("/actions")]
    assert [w[3] for w in actions] == [429, 429, 429, 0]  # the bound: write_retries (3) more attempts
    assert await until(provider, handle, StackState.RUNNING, StackState.SUSPENDING) == StackState.SUSPENDED

    busy_heat.refuse, busy_heat.status = 1, 503
    await provider.delete(handle)
    deletes = [w for w in busy_heat.writes if w[1] == "DELETE"]
    assert [w[3] for w in deletes] == [503, 0]
    assert await provider.list() == []
    assert len(busy_heat.refused()) == 6


async def test_a_write_refused_past_the_bound_fails_with_a_clear_error(busy_heat: BusyHeat) -> None:
    """Refused on every attempt: the create fails with RateLimited, naming Heat's answer and the bound,
    after exactly 1 + write_retries attempts; a Retry-After above the cap fails at once."""
    settings = {"cloud": "heatbox-busy", "write_retries": 2, "write_backoff_s": 0.01}
    provider = OpenStackProvider("busy", settings)
    busy_heat.refuse, busy_heat.status = 1000, 429
    with pytest.raises(TransientProviderError) as refused:
        await provider.create(quick("sl-busy2"))
    assert refused.value.reason == "RateLimited"
    message = str(refused.value)
    assert "429 Too Many Requests" in message and "3 attempts" in message and "write_retries" in message
    assert "sl-busy2" in message and "heatbox-busy" in message
    assert len(busy_heat.writes) == 3

    patient = OpenStackProvider("busy", {"cloud": "heatbox-busy", "write_backoff_max_s": 5})
    busy_heat.status, busy_heat.retry_after = 503, "120"
    with pytest.raises(TransientProviderError) as long_wait:
        await patient.create(quick("sl-busy2"))
    assert long_wait.value.reason == "RateLimited"
    assert "Retry-After 120 s" in str(long_wait.value) and "write_backoff_max_s" in str(long_wait.value)
    assert len(busy_heat.writes) == 4  # one attempt: no wait longer than the cap

    busy_heat.writes.clear()
    busy_heat.retry_after = (
        ""  # 503 with no Retry-After to every attempt: an outage (Keystone down), not a limit
    )
    with pytest.raises(TransientProviderError) as down:
        await provider.create(quick("sl-busy2"))
    assert down.value.reason == "ProviderUnavailable" and "503" in str(down.value), str(down.value)
    assert len(busy_heat.writes) == 3
    assert await OpenStackProvider("heat", {"cloud": "heatbox"}).list() == []  # nothing half-created


async def test_a_delete_heat_never_acts_on_is_sent_again(busy_heat: BusyHeat) -> None:
    """Heat answers the first DELETE and the stack stays as it was: after delete_resend_s it is sent again,
    and the stack is gone when delete returns."""
    provider = OpenStackProvider("busy", {"cloud": "heatbox-busy", "delete_resend_s": 1.0})
    handle = await provider.create(quick("sl-dropped"))
    assert await until(provider, handle, StackState.CREATING) == StackState.RUNNING
    busy_heat.drop = 1
    await provider.delete(handle)
    deletes = [w for w in busy_heat.writes if w[1] == "DELETE"]
    assert [w[3] for w in deletes] == [204, 0]  # dropped, then sent again and forwarded
    assert deletes[1][0] - deletes[0][0] >= 1.0
    assert await provider.list() == []


LAUNCHES = 14


async def test_creates_leave_a_heat_api_with_few_workers_room_for_the_polls(busy_heat: BusyHeat) -> None:
    """A heat-api answering 2 requests at a time, each create holding a worker 0.5 s longer: 14 launches
    at once with api_writes 4. The first polls queue behind 4 creates and are answered late, so the room
    closes to one write: creates then go out with at most one other in heat-api, leaving room for the polls,
    and every stack is created. (Before the room, each create after the first 4 met 3 others there.)"""
    busy_heat.workers, busy_heat.create_hold_s = threading.Semaphore(2), 0.5
    provider = OpenStackProvider("busy", {"cloud": "heatbox-busy", "api_writes": 4})
    launches = [provider.create(quick(f"sl-room{i}")) for i in range(LAUNCHES)]
    handles = await asyncio.gather(*launches)
    states = await asyncio.gather(*(until(provider, h, StackState.CREATING) for h in handles))
    assert states == [StackState.RUNNING] * LAUNCHES
    assert provider.room.lowest == 1, busy_heat.creates_at_once
    assert min(busy_heat.creates_at_once[4:]) <= 2, busy_heat.creates_at_once


async def test_a_write_is_timed_from_the_attempt_heat_took(busy_heat: BusyHeat) -> None:
    """The next launch of a template is polled around the completion this one's duration predicts, so a
    create is timed from the request Heat took: not from before it waited for room in the write room
    (another write held the only one for 1 s) nor from its attempt Heat refused (Retry-After 1 s)."""
    busy_heat.refuse, busy_heat.retry_after = 1, "1"
    provider = OpenStackProvider("busy", {"cloud": "heatbox-busy", "api_writes": 1, "write_backoff_s": 0.01})
    holding, release = threading.Event(), threading.Event()

    def other_write() -> None:
        with provider.room.slot():
            holding.set()
            release.wait(5)

    threading.Thread(target=other_write, daemon=True).start()
    assert holding.wait(5)
    threading.Timer(1.0, release.set).start()
    handle = await provider.create(quick("sl-timed"))
    creates = [w for w in busy_heat.writes if w[1] == "POST" and w[2].endswith("/stacks")]
    assert [w[3] for w in creates] == [503, 0]
    flight = provider.watch.flights[handle["id"]]
    assert creates[1][0] - 0.05 <= flight.sent <= creates[1][0]
    assert await until(provider, handle, StackState.CREATING) == StackState.RUNNING
    await provider.delete(handle)
