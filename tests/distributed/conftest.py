"""Real processes of the distributed mode: `stacklab worker` processes (tests/distributed/worker_main.py)
on a real broker (RabbitMQ, or a Redis server of the test's own) and a real shared database (PostgreSQL,
MariaDB); the test process launches through the same service API the web processes use.

Every process a test starts is stopped at its end (SIGKILL after a grace period), its queue deleted and
its database dropped.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Queue
from tests.conftest import MARIADB_URL, POSTGRES_URL, _server_database
from tests.distributed.shared_provider import SharedProvider
from tests.e2e.helpers import wait_for
from tests.support.engine import write_lab
from tests.support.processes import stop_all

from stacklab.config import Settings
from stacklab.envs.hosts import host_queue
from stacklab.wiring import App, build_app

ROOT = Path(__file__).resolve().parents[2]
RABBITMQ_URL = os.environ.get("STACKLAB_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//")
SECRET = "distributed-test-secret-key-0123456789"
TIMING = {  # short enough for a test, in the proportions of the defaults
    "poll_interval_s": 0.05,
    "lease_s": 20.0,
    "redeliver_after_s": 2.0,
    "scheduler_interval_s": 0.2,
    "scheduler_lease_s": 2.0,
    "reconcile_concurrency": 8,
    "retry_backoff_s": (0.2, 0.5),
}

pytestmark = pytest.mark.db


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Banner(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(b"SSH-2.0-stacklab-test\r\n")


@pytest.fixture(scope="session")
def ssh_banner() -> Iterator[int]:
    """What the shared provider's nodes answer with: an SSH banner (the controller's readiness probe)."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Banner)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


class RedisServer:
    """A redis-server of the test's own (so that stopping it disturbs nobody), on a free port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="stacklab-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            cwd=self.dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, 10, "redis-server answers")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture
def job_queue() -> Iterator[str]:
    """A queue of this test's own on the shared RabbitMQ, deleted afterwards."""
    name = f"stacklab-test-{uuid.uuid4().hex[:8]}"
    yield name
    with Connection(RABBITMQ_URL, connect_timeout=5) as connection:  # kombu: no Erlang VM to start
        Queue(name, channel=connection.channel()).delete()


def store(kind: str) -> Iterator[str]:
    yield from _server_database(
        POSTGRES_URL if kind == "postgresql" else MARIADB_URL, "postgres" if kind == "postgresql" else "mysql"
    )


@dataclass
class Cluster:
    """Worker processes of one deployment, and the service side (an App) the test launches through."""

    tmp: Path
    values: dict[str, Any]
    ssh_port: int
    create_delay_s: float = 0.0
    suspend_delay_s: float = 0.0
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    metrics_ports: dict[int, int] = field(default_factory=dict)
    app: App | None = None

    @property
    def cloud(self) -> Path:
        return self.tmp / "cloud.db"

    @property
    def shared(self) -> dict[str, Any]:
        return {
            "path": str(self.cloud),
            "ssh": ["127.0.0.1", self.ssh_port],
            "create_delay_s": self.create_delay_s,
            "suspend_delay_s": self.suspend_delay_s,
        }

    def environ(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("STACKLAB_")}
        for name, value in self.values.items():
            text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
            env[f"STACKLAB_{name.upper()}"] = text
        env["SHARED_PROVIDER"] = json.dumps(self.shared)
        env["PYTHONPATH"] = str(ROOT)
        return env

    def start(
        self, count: int = 1, role: str = "worker", env: dict[str, str] | None = None
    ) -> list[subprocess.Popen[bytes]]:
        """Start workers (or schedulers) side by side; returns once each consumes (or stands). The schema
        is migrated first, by the service side, as an installer runs `stacklab migrate` first. `env`:
        variables of these processes only (a local host's settings, its own cloud)."""
        self.service()
        started = []
        for _ in range(count):
            log = self.tmp / f"{role}-{len(self.logs)}.log"
            port = free_port()
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "tests.distributed.worker_main", role],
                    env={**self.environ(), "STACKLAB_WORKER_METRICS_PORT": str(port), **(env or {})},
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            self.processes.append(process)
            self.logs.append(log)
            self.metrics_ports[process.pid] = port
            started.append((process, log))
        ready = {"scheduler": "scheduler:", "serve": "Application startup complete"}.get(role, " ready.")
        for process, log in started:
            wait_for(partial(self._up, process, log, ready), 60, f"{role} starts")
            assert process.poll() is None, log.read_text()[-3000:]
        return [process for process, _ in started]

    @staticmethod
    def _up(process: subprocess.Popen[bytes], log: Path, ready: str) -> bool:
        return ready in log.read_text() or process.poll() is not None

    def metrics(self, process: subprocess.Popen[bytes]) -> dict[str, float]:
        """A worker's /metrics, sample name -> value (unlabelled samples)."""
        url = f"http://127.0.0.1:{self.metrics_ports[process.pid]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        return {
            line.split()[0]: float(line.split()[1])
            for line in text.splitlines()
            if line and not line.startswith("#") and "{" not in line
        }

    def service(self) -> App:
        """The service side of this deployment, in the test process (it only submits)."""
        if self.app is None:
            self.app = build_app(
                Settings(**self.values), {"local": lambda entry: SharedProvider(entry.name, self.shared)}
            )
        return self.app

    def lab(self) -> Path:
        return write_lab(self.tmp, "- {name: a, type: local}")

    def stop(self) -> None:
        stop_all(self.processes)
        if self.app is not None:
            self.app.close()

    def tails(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-2000:]}" for log in self.logs if log.exists())


def make_cluster(
    tmp_path: Path, ssh_port: int, broker_url: str, database_url: str, job_queue: str, **extra: Any
) -> Iterator[Cluster]:
    values = {
        "runner": "celery",
        "broker_url": broker_url,
        "database_url": database_url,
        "data_dir": str(tmp_path / "data"),
        "secret_key": SECRET,
        "job_queue": job_queue,
        "log_level": "info",
        **TIMING,
        **extra,
    }
    cluster = Cluster(tmp_path, values, ssh_port)
    try:
        yield cluster
    finally:
        cluster.stop()
    # a failing test shows what the workers said (pytest prints captured output on failure)
    print(cluster.tails())


@pytest.fixture(params=["rabbitmq-postgresql", "redis-mariadb"])
def cluster(
    request: pytest.FixtureRequest, tmp_path: Path, ssh_banner: int, job_queue: str, redis_server: RedisServer
) -> Iterator[Cluster]:
    """A deployment on RabbitMQ + PostgreSQL, and on Redis + MariaDB."""
    broker, database = request.param.split("-")
    for url in store(database):
        yield from make_cluster(
            tmp_path, ssh_banner, RABBITMQ_URL if broker == "rabbitmq" else redis_server.url, url, job_queue
        )


HOST_LOST_AFTER_S = 3.0


@pytest.fixture
def two_hosts(tmp_path: Path, ssh_banner: int, job_queue: str) -> Iterator[Cluster]:
    """A deployment on RabbitMQ + PostgreSQL whose workers the test starts as hosts host-a and host-b."""
    for url in store("postgresql"):
        yield from make_cluster(
            tmp_path,
            ssh_banner,
            RABBITMQ_URL,
            url,
            job_queue,
            member_heartbeat_s=0.5,
            host_lost_after_s=HOST_LOST_AFTER_S,
        )
    with Connection(RABBITMQ_URL, connect_timeout=5) as connection:
        for host in ("host-a", "host-b"):
            Queue(host_queue(job_queue, host), channel=connection.channel()).delete()


def passes(cluster: Cluster, host: str) -> set[str]:
    """The environments a host's worker ran passes of (its own record, PASS_LOG of worker_main)."""
    path = cluster.tmp / f"passes-{host}.log"
    return set(path.read_text().split()) if path.exists() else set()
