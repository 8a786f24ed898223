"""The distributed mode (runner = celery) against the embedded runner, on PostgreSQL.

1. Suspends and launches per second: N running environments whose learners went idle (or N launches
   requested, nothing made yet) are all due at once; the time until every one is suspended (or running,
   its node answering the SSH probe with the banner this process serves), else what was done within
   `--limit` s, with the embedded runner (`Engine.run_pass()` back to back in this process: the peer)
   and with 1 and 2 real `stacklab worker` processes on RabbitMQ and on Redis (the elected scheduler
   claims and sends, the workers pass). The provider answers at once (in memory). The floor of
   suspends: one connection writing the least a suspend must (one transaction: UPDATE the environment,
   INSERT its transition), one environment after another, on the same rows.
2. Queue wait: passes submitted at steady rates (`--rates`, default 50/s and 500/s) through the Celery
   runner to one worker, each timed from `submit` to the start of its pass (p50/p99); the floor is the
   broker's own round trip (publish, then receive, of one small message at a time) measured in the same
   run. Above the worker's pass throughput the wait is the backlog, not the transport. The environments
   submitted are settled as a pass leaves them (due at their idle limit): each pass finds them at rest
   (envs/resting.py), one read.

    .venv/bin/python bench/distributed.py [--envs 2000] [--limit 120] [--work suspends,launches]
                                          [--rates 50,500] [--waits 1000]

Needs PostgreSQL, RabbitMQ (guest) and Redis on 127.0.0.1; prints figures, never passes or fails on time.
Every database, queue and process it makes is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socketserver
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this checkout's, not the installed
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import POSTGRES_ADMIN_URL, p50, p99, print_machine, print_table
from bench.controller_pass import suspend_floor
from sqlalchemy import create_engine, func, insert, select, text
from tests.support.processes import stop_all

from stacklab.config import Settings
from stacklab.envs.controller import seal
from stacklab.labs.loader import lab_digest
from stacklab.providers.base import Handle, NodeAddress, Provider, StackRequest, StackState, StackStatus
from stacklab.store.tables import EnvironmentRecord, LabRecord
from stacklab.types import Desired, Observed, Progress
from stacklab.wiring import App, build_app

ROOT = Path(__file__).resolve().parents[1]
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
REDIS = "redis://127.0.0.1:6379/{db}"
SECRET = "bench-distributed-secret-key-0123456789"
BANNER_PORT = "BENCH_SSH_PORT"
"""The port of the SSH banner every node of the instant provider answers with (the launch's probe)."""
LAB = textwrap.dedent(
    """\
    schema: 1
    id: bench-lab
    title: Distributed benchmark
    login_user: learner
    providers:
      - {name: local, type: local}
    local:
      nodes:
        - name: main
    timeouts: {launch: 10m, idle_suspend: 15m, delete_after: 7d}
    """
)


class InstantProvider(Provider):
    """Every stack exists and answers at once; what this process suspended reads back as suspended. It
    lists the stacks environments hold on it (`owned`), as a cloud lists what it holds: listing none made
    the elected scheduler's sweep take every environment for vanished and re-check each under its lease,
    one after another on the worker's loop, while the benchmark timed that worker."""

    type_name = "instant"

    def __init__(self, name: str, settings: dict[str, Any] | None = None) -> None:
        super().__init__(name, settings)
        self.suspended: set[str] = set()
        self.owned: Callable[[], Iterable[str]] = tuple

    async def create(self, request: StackRequest) -> Handle:
        return {"name": request.name}

    async def status(self, handle: Handle) -> StackStatus:
        state = StackState.SUSPENDED if handle["name"] in self.suspended else StackState.RUNNING
        return StackStatus(state, "", (NodeAddress("main", "127.0.0.1", int(os.environ[BANNER_PORT])),))

    async def suspend(self, handle: Handle) -> None:
        self.suspended.add(handle["name"])

    async def resume(self, handle: Handle) -> None:
        self.suspended.discard(handle["name"])

    async def delete(self, handle: Handle) -> None:
        self.suspended.discard(handle["name"])

    async def list(self) -> list[str]:
        return list(self.owned())


def settings(database_url: str, data_dir: Path, broker_url: str = "", queue: str = "stacklab") -> Settings:
    celery = {"runner": "celery", "broker_url": broker_url, "job_queue": queue} if broker_url else {}
    return Settings(
        data_dir=str(data_dir),
        database_url=database_url,
        secret_key=SECRET,
        reconcile_batch=500,
        reconcile_concurrency=16,
        poll_interval_s=0.05,  # a launch's next look (the instant provider is done at once)
        **celery,
    )


def build(config: Settings) -> App:
    provider = InstantProvider("local")
    app = build_app(config, {"local": lambda entry: provider})
    provider.owned = lambda: [name for name, on in app.repo.stack_owners().items() if on == provider.name]
    return app


# the worker processes -----------------------------------------------------------------------------------
def worker_main() -> None:
    """`bench/distributed.py worker`: a real worker (serve_worker) on the instant provider; with
    BENCH_STARTS set, it appends `env_id start_time` for every pass it starts (the queue-wait figure)."""
    from stacklab import logs
    from stacklab.config import load_settings
    from stacklab.distributed import serve_worker

    config = load_settings()
    logs.configure(config.log_format, config.log_level)  # its "ready" line tells the bench it consumes
    app = build(config)
    starts = os.environ.get("BENCH_STARTS")
    if starts:
        reconcile = app.controller.reconcile
        out = open(starts, "a", buffering=1)  # noqa: SIM115 (open for the life of the process)

        async def timed(env_id: str) -> Any:
            out.write(f"{env_id} {time.time()}\n")
            return await reconcile(env_id)

        app.controller.reconcile = timed  # type: ignore[method-assign]
    serve_worker(app, (app.settings.job_queue,), app.settings.reconcile_concurrency, elect=True)


class Workers:
    def __init__(self, config: Settings, work: Path) -> None:
        self.config = config
        self.work = work
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, count: int, starts: Path | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STACKLAB_")}
        for name in ("runner", "broker_url", "database_url", "data_dir", "secret_key", "job_queue"):
            env[f"STACKLAB_{name.upper()}"] = str(getattr(self.config, name))
        env |= {
            "STACKLAB_RECONCILE_BATCH": "500",
            "STACKLAB_POLL_INTERVAL_S": str(self.config.poll_interval_s),
            "STACKLAB_LOG_LEVEL": "info",
            "PYTHONPATH": os.pathsep.join((str(ROOT), str(ROOT / "src"))),
        }
        if starts:
            env["BENCH_STARTS"] = str(starts)
        logs = []
        for _ in range(count):
            log = self.work / f"worker-{len(self.processes)}.log"
            logs.append(log)
            with log.open("wb") as out:
                self.processes.append(
                    subprocess.Popen([sys.executable, __file__, "worker"], env=env, stdout=out, stderr=out)
                )
        deadline = time.monotonic() + 60
        for process, log in zip(self.processes[-count:], logs, strict=True):
            while " ready." not in log.read_text():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"worker did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.1)

    def stop(self) -> None:
        stop_all(self.processes, grace_s=20)
        self.processes = []


# data -------------------------------------------------------------------------------------------------
def insert_due(app: App, count: int, state: Callable[[int, float], dict[str, Any]]) -> None:
    """`count` environments of the bench lab, all due now; `state(i, now)`: the columns of one's state."""
    now = time.time()
    digest = lab_digest(LAB)
    sealed = seal(app.controller.vault, {})
    with app.repo.engine.begin() as connection:
        connection.execute(
            insert(LabRecord.__table__),
            [dict(digest=digest, lab_id="bench-lab", source_path="bench", text=LAB, loaded_at=now)],
        )
        rows = [
            dict(
                id=f"{i:08x}",
                course="bench",
                lab_id="bench-lab",
                learner=f"learner-{i}",
                lab_digest=digest,
                desired=Desired.RUNNING,
                stack_name=f"sl-{i:08x}",
                public_key="",
                sealed_secrets=sealed,
                idle_suspend_s=900.0,
                delete_after_s=7 * 86400.0,
                reset_requested=False,
                due_at=now,
                attempts=0,
                **state(i, now),
            )
            for i in range(count)
        ]
        connection.execute(insert(EnvironmentRecord.__table__), rows)
    with app.repo.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE environments"))


def seed(app: App, count: int) -> None:
    """`count` running environments whose learners went idle past the limit, all due now."""

    def idle(i: int, now: float) -> dict[str, Any]:
        return dict(
            observed=Observed.RUNNING,
            progress=Progress.READY,
            provider="local",
            capacity_held="local",
            handle={"name": f"sl-{i:08x}"},
            nodes={"main": {"host": "127.0.0.1", "port": 1}},
            created_at=now - 3600,
            updated_at=now - 1000,
            last_activity_at=now - 1000,
            ready_at=now - 3500,
        )

    insert_due(app, count, idle)


def requested(app: App, count: int) -> None:
    """`count` launches requested at once: rows as `Environments.launch` leaves them (nothing made)."""
    insert_due(
        app,
        count,
        lambda i, now: dict(
            observed=Observed.NEW,
            progress=Progress.QUEUED,
            created_at=now,
            updated_at=now,
            last_activity_at=now,
        ),
    )


WORK = {"suspends": (seed, Observed.SUSPENDED), "launches": (requested, Observed.RUNNING)}
"""What a run measures: how its rows are made due, and the state each reaches when done."""


def reached(app: App, state: Observed) -> int:
    with app.repo.read() as session:
        query = select(func.count()).where(EnvironmentRecord.observed == state)
        return int(session.scalar(query.select_from(EnvironmentRecord)) or 0)


class Database:
    """A fresh PostgreSQL database, dropped at the end."""

    def __init__(self) -> None:
        self.name = f"stacklab_bench_{uuid.uuid4().hex[:10]}"
        self.admin = create_engine(POSTGRES_ADMIN_URL.format(db="postgres"), isolation_level="AUTOCOMMIT")
        with self.admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {self.name}"))
        self.url = POSTGRES_ADMIN_URL.format(db=self.name)

    def drop(self) -> None:
        with self.admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE {self.name} WITH (FORCE)"))
        self.admin.dispose()


# measurements -------------------------------------------------------------------------------------------
def floor_suspends(count: int, work: Path) -> float:
    """Suspends per second of the floor: one UPDATE + one INSERT per transaction, sequential."""
    database = Database()
    app = build(settings(database.url, work / "floor"))
    try:
        seed(app, count)
        return count / suspend_floor(app, [f"{i:08x}" for i in range(count)])
    finally:
        app.close()
        database.drop()


async def embedded_rate(work_kind: str, count: int, work: Path, limit_s: float) -> float:
    """Environments per second done (suspended, or launched to running) by `Engine.run_pass()` back to
    back in this process, within `limit_s`."""
    make_due, state = WORK[work_kind]
    database = Database()
    app = build(settings(database.url, work / "embedded"))
    try:
        make_due(app, count)
        started = time.perf_counter()
        while reached(app, state) < count and time.perf_counter() - started < limit_s:
            if not await app.engine.run_pass():
                await asyncio.sleep(0.01)  # launches wait for their next look (poll_interval_s)
        return reached(app, state) / (time.perf_counter() - started)
    finally:
        app.close()
        database.drop()


def celery_rate(
    work_kind: str, broker_url: str, workers: int, count: int, work: Path, limit_s: float
) -> float:
    """The same with `workers` real worker processes: the elected scheduler claims and sends."""
    make_due, state = WORK[work_kind]
    database = Database()
    config = settings(database.url, work / f"celery-{workers}", broker_url, f"bench-{uuid.uuid4().hex[:8]}")
    app = build(config)
    processes = Workers(config, work)
    try:
        processes.start(workers)
        make_due(app, count)  # after the workers are up: their start-up is not timed
        started = time.perf_counter()
        while reached(app, state) < count and time.perf_counter() - started < limit_s:
            time.sleep(0.05)
        return reached(app, state) / (time.perf_counter() - started)
    finally:
        processes.stop()
        delete_queue(broker_url, config.job_queue)
        app.close()
        database.drop()


def queue_waits(broker_url: str, rate: float, count: int, work: Path) -> list[float]:
    """Seconds from submit to the pass's start, for `count` passes submitted at `rate` per second."""
    database = Database()
    config = settings(database.url, work / "waits", broker_url, f"bench-{uuid.uuid4().hex[:8]}")
    app = build(config)
    starts = work / f"starts-{uuid.uuid4().hex[:6]}.txt"
    processes = Workers(config, work)
    try:
        seed(app, count)
        with app.repo.engine.begin() as connection:  # settled as a pass leaves them: due at the idle limit
            connection.execute(
                text("UPDATE environments SET last_activity_at = :now, due_at = :now + idle_suspend_s"),
                {"now": time.time()},
            )
        processes.start(1, starts)
        ids = [f"{i:08x}" for i in range(count)]
        submitted: dict[str, float] = {}
        begin = time.perf_counter()
        for n, env_id in enumerate(ids):
            pause = begin + n / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            submitted[env_id] = time.time()
            app.engine.runner.submit(env_id)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            seen = {line.split()[0]: float(line.split()[1]) for line in starts.read_text().splitlines()}
            if len(seen) >= count:
                break
            time.sleep(0.1)
        return [seen[env_id] - submitted[env_id] for env_id in ids if env_id in seen]
    finally:
        processes.stop()
        delete_queue(broker_url, config.job_queue)
        app.close()
        database.drop()


def broker_round_trips(broker_url: str, count: int) -> list[float]:
    """One small message at a time: publish, then receive it (kombu, the library Celery sends with)."""
    from kombu import Connection

    name = f"bench-rtt-{uuid.uuid4().hex[:8]}"
    times = []
    try:
        with Connection(broker_url) as connection:
            queue = connection.SimpleQueue(name)
            try:
                for _ in range(count):
                    started = time.perf_counter()
                    queue.put({"id": "00000000"})
                    queue.get(timeout=5).ack()
                    times.append(time.perf_counter() - started)
            finally:
                queue.close()  # the consumer goes first: deleting under it makes the broker cancel it
    finally:
        delete_queue(broker_url, name)
    return times


def delete_queue(broker_url: str, name: str) -> None:
    from kombu import Connection, Queue

    try:
        with Connection(broker_url) as connection:
            Queue(name, channel=connection.channel()).delete()
    except Exception as exc:  # a queue that was never declared
        print(f"  (queue {name}: {exc})")
    if broker_url.startswith("redis://"):  # kombu keeps the queue's exchange binding after the delete
        import redis

        redis.Redis.from_url(broker_url).delete(f"_kombu.binding_permanent.{name}", f"_kombu.binding.{name}")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


class _Banner(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(b"SSH-2.0-stacklab-bench\r\n")


def serve_banner() -> socketserver.ThreadingTCPServer:
    """What every node answers the launch's SSH probe with; its port goes to this process and the workers."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Banner)
    server.daemon_threads = True
    server.request_queue_size = 1024
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ[BANNER_PORT] = str(server.server_address[1])
    return server


def show(rows: list[list[str]], row: list[str]) -> None:
    rows.append(row)
    print("  " + " | ".join(row), flush=True)  # as they come: a broker failure keeps the rest


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", type=int, default=2000, help="environments suspended / launched per run")
    parser.add_argument("--limit", type=float, default=120, help="seconds a run may take (done/elapsed)")
    parser.add_argument(
        "--work", default="suspends,launches", help="what is timed (comma-separated; '' for none)"
    )
    parser.add_argument(
        "--rates", default="50,500", help="passes submitted per second for the queue wait ('' for none)"
    )
    parser.add_argument("--waits", type=int, default=1000, help="passes timed for the queue wait")
    args = parser.parse_args()
    brokers = {"RabbitMQ": RABBITMQ, "Redis": REDIS.format(db=0)}
    print_machine("distributed runner: suspends and launches per second, queue wait, PostgreSQL")
    banner = serve_banner()
    with tempfile.TemporaryDirectory(prefix="stacklab-bench-") as tmp:
        work = Path(tmp)
        rows: list[list[str]] = []
        kinds = [kind for kind in args.work.split(",") if kind]
        write_floor = floor_suspends(args.envs, work) if kinds else 0.0
        if kinds:
            show(rows, [f"suspends/s, floor ({args.envs} envs)", f"{write_floor:.0f}", "-", "floor"])
        for kind in kinds:
            peer = asyncio.run(embedded_rate(kind, args.envs, work, args.limit))
            floor = f", floor {write_floor:.0f}" if kind == "suspends" else ""
            show(rows, [f"{kind}/s, embedded runner ({args.envs} envs)", f"{peer:.0f}", "-", f"peer{floor}"])
            for label, url in brokers.items():
                for workers in (1, 2):
                    rate = celery_rate(kind, url, workers, args.envs, work, args.limit)
                    target = ">= 1000 (2 workers)" if kind == "suspends" else "-"
                    show(
                        rows,
                        [
                            f"{kind}/s, Celery {label}, {workers} worker(s)",
                            f"{rate:.0f}",
                            target,
                            f"embedded {peer:.0f}{floor}",
                        ],
                    )
        for label, url in brokers.items():
            rates = [float(text) for text in args.rates.split(",") if text]
            trips = broker_round_trips(url, 500) if rates else []
            for rate in rates:
                waits = queue_waits(url, rate, args.waits, work)
                show(
                    rows,
                    [
                        f"queue wait at {rate:.0f}/s, {label} (n={len(waits)})",
                        f"p50 {ms(p50(waits))}, p99 {ms(p99(waits))}",
                        "p99 <= 20 ms",
                        f"broker round trip p50 {ms(p50(trips))}, p99 {ms(p99(trips))}",
                    ],
                )
        print_table(rows)
    banner.shutdown()


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        worker_main()
    else:
        main()
