"""Launch-to-ready through the engine on a real Heat (scripts/heat-harness), against Heat's own time.

The openstack provider watches every operation in flight with one shared poll per cloud (a stack list by
id), timed around the completion expected from recent operations of the same template; a status call of
a stack expected soon waits for that poll. Targets: ready within 200 ms of Heat's CREATE/RESUME_COMPLETE
(single and concurrent launches), no more Heat requests per launch than before (4), deletes no slower than
the SDK alone.

(1) Sequential launches of a one-resource template (OS::Heat::TestResource, `--wait-secs`, outputs
    `public_ip` / `ssh_port` pointing at an in-process loopback sshd, tests/support/sshd.py) through the
    engine: `Environments.launch` + `drive` (the path of `stacklab env launch --wait`), and through the
    service path (`launch` + the engine's job runner, which honours the controller's requeue delays, as
    `stacklab serve` does). Floor in the same run: a direct openstacksdk create of the same template,
    `get_stack` every 0.1 s until CREATE_COMPLETE, then the SSH banner. Heat's own create time is read from
    heat-engine.log ("Stack CREATE COMPLETE (name)", millisecond timestamps) minus the moment the create
    POST was sent, so each launch also gives "Heat's CREATE_COMPLETE -> ready". Target <= 200 ms.
    Each round also suspends and resumes the stack through the engine: "RESUME COMPLETE -> ready" against
    a direct SDK resume with `get_stack` every 0.1 s. Deletes: engine against a direct SDK delete.
(2) N concurrent launches (10, then 100) through launch + drive: time until all are ready, and each one's
    CREATE_COMPLETE -> ready. Floor: N direct creates (16 threads, the provider's pool size) with one stack
    list every 0.1 s, then the SSH banners. By default of a lighter template (one OS::Heat::Value instead of
    the TestResource: a single heat-engine worker builds 100 of those in about a minute). The floor of the
    same batch: a direct poller (one stack list every 0.1 s, its own connection) watching the engine's own
    stacks, so both see the same stacks under the same load.
(3) HTTP requests per launch (a `response` hook on each openstacksdk session: every request, redirects
    included), by kind, with the gap between status polls; cross-checked with heat-api's access log.

The harness is shared (CI may start and stop it): the benchmark runs start.sh itself (idempotent), watches
the recorded pids during every measurement, and when Heat goes away or is restarted it starts it again and
repeats that measurement. It stops the harness at the end only when it started the instance still running
and no other pytest process is around. It deletes only its own stacks (its environments' `sl-<id>` and
`slbench-<run>-*`), never the project's others, and never runs the engine's sweep (which would delete other
users' `sl-*` stacks). Loopback only.

    .venv/bin/python bench/heat_launch.py [--rounds 5] [--wait-secs 1] [--concurrency 10,100]
        [--concurrent-template light|wait]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from openstack.orchestration.util import template_format

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, median, percentile, print_machine, print_table, verdict
from tests.support.sshd import start_sshd

from stacklab.config import Settings
from stacklab.labs.schema import ProviderEntry
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Desired, Observed
from stacklab.wiring import App, build_app

T = TypeVar("T")
HARNESS = ROOT / "scripts" / "heat-harness"
HEAT_HOME = Path(os.environ.get("STACKLAB_HEAT_HOME", "/var/lib/stacklab-heat"))
CLOUDS = HEAT_HOME / "etc" / "clouds.yaml"
ENGINE_LOG = HEAT_HOME / "log" / "heat-engine.log"
ACCESS_LOG = HEAT_HOME / "log" / "heat-api-access.log"
WATCHED = ("keystone", "heat-api", "heat-engine")
LAUNCH_TIMEOUT_S = 300.0
TARGET_S = 1.0
READY_TARGET_S = 0.2
"""From Heat's CREATE/RESUME_COMPLETE (heat-engine.log) to the environment seen ready."""
FLOOR_POLL_S = 0.1
FLOOR_TAG = "stacklab-bench"
TEMPLATE = """\
heat_template_version: 2018-08-31
description: stacklab bench - one TestResource; the outputs point at a loopback sshd.
parameters:
  ssh_port: {type: number}
  wait_secs: {type: number, default: 1}
resources:
  pause:
    type: OS::Heat::TestResource
    properties: {value: 127.0.0.1, wait_secs: {get_param: wait_secs}}
outputs:
  public_ip: {value: {get_attr: [pause, output]}}
  ssh_port: {value: {get_param: ssh_port}}
"""
LIGHT_TEMPLATE = """\
heat_template_version: 2018-08-31
description: stacklab bench - one OS::Heat::Value (the lightest stack); the outputs point at a loopback sshd.
parameters:
  ssh_port: {type: number}
resources:
  address:
    type: OS::Heat::Value
    properties: {value: 127.0.0.1}
outputs:
  public_ip: {value: {get_attr: [address, value]}}
  ssh_port: {value: {get_param: ssh_port}}
"""


class Disturbed(Exception):
    """Heat went away, was restarted, or someone else deleted our stack: the measurement is repeated."""


# the shared harness -------------------------------------------------------------------------------------
class Harness:
    def __init__(self) -> None:
        self.was_running = self.up()
        self.started: dict[str, int] | None = None  # pids of the instance this benchmark started, if any
        self.restarts: list[str] = []

    @staticmethod
    def pids() -> dict[str, int]:
        found = {}
        for name in WATCHED:
            try:
                found[name] = int((HEAT_HOME / "run" / f"{name}.pid").read_text())
            except (OSError, ValueError):
                continue
        return found

    def workers(self) -> str:
        """heat-api's and heat-engine's worker processes now (start.sh's counts can be set)."""
        pids = self.pids()
        api, engine = (children(pids[name]) if name in pids else "?" for name in ("heat-api", "heat-engine"))
        return f"heat-api {api} gunicorn sync workers, heat-engine {engine} worker(s)"

    def up(self) -> bool:
        pids = self.pids()
        if len(pids) < len(WATCHED):
            return False
        for pid in pids.values():
            try:
                os.kill(pid, 0)
            except OSError:
                return False
        return True

    def ensure(self, why: str) -> None:
        if self.up():
            return
        started = time.perf_counter()
        done = subprocess.run([str(HARNESS / "start.sh")], capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"heat harness failed to start:\n{done.stdout}\n{done.stderr}")
        self.started = self.pids()
        note = f"started the Heat harness ({why}) in {time.perf_counter() - started:.1f} s"
        self.restarts.append(note)
        print(f"[harness] {note}", flush=True)

    def check(self, generation: dict[str, int]) -> None:
        if not self.up():
            raise Disturbed("the Heat harness stopped")
        if self.pids() != generation:
            raise Disturbed("the Heat harness was restarted")

    def finish(self) -> str:
        if self.started is None:
            return "left the harness running: this benchmark did not start it"
        if self.pids() != self.started or not self.up():
            return "left the harness alone: the instance running now is not the one this benchmark started"
        others = other_pytest()
        if others:
            return f"left the harness running: other pytest processes use it ({', '.join(others)})"
        subprocess.run([str(HARNESS / "stop.sh")], capture_output=True, text=True, timeout=180)
        return "stopped the harness instance this benchmark had started"


def processes() -> Iterator[tuple[int, int, str]]:
    """(pid, parent pid, command line) of every process but this one."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        yield int(entry), parent, cmd


def other_pytest() -> list[str]:
    return [str(pid) for pid, _, cmd in processes() if "pytest" in cmd]


def children(pid: int) -> int:
    return sum(1 for _, parent, _ in processes() if parent == pid)


# HTTP requests ------------------------------------------------------------------------------------------
STACK_IN_PATH = re.compile(r"/stacks/([^/?\s]+)(/[^/?\s]+)?(/[^?\s]*)?")


@dataclass(frozen=True)
class Call:
    at: float  # time.time() when the response arrived
    sent: float
    method: str
    service: str  # heat / keystone / other
    kind: str
    stack: str | None


class Recorder:
    """A `response` hook for an openstacksdk session: every HTTP request, redirects included."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()

    def attach(self, conn: Any) -> None:
        conn.session.session.hooks["response"].append(self.hook)

    def hook(self, response: Any, *args: Any, **kwargs: Any) -> None:
        now = time.time()
        request = response.request
        url = request.url or ""
        method = request.method or "?"
        netloc = url.split("//", 1)[-1].split("/", 1)[0]
        port = netloc.rsplit(":", 1)[1] if ":" in netloc else ""
        service = {"5000": "keystone", "8004": "heat"}.get(port, "other")
        kind, stack = "other", None
        if service == "heat":
            match = STACK_IN_PATH.search(url)
            if match:
                stack = match.group(1)
                if match.group(3):
                    kind = (
                        f"action {_verb(request.body)}" if method == "POST" else f"{method} {match.group(3)}"
                    )
                elif method == "GET":
                    kind = "status (by name/id)" if match.group(2) else "find (by name)"
                else:
                    kind = method
            elif url.rstrip("/").endswith("/stacks") and method == "POST":
                kind = "create"
                try:
                    stack = json.loads(request.body or b"{}").get("stack_name")
                except (ValueError, AttributeError):
                    stack = None
            elif "/stacks" in url and method == "GET":
                kind = "list"
            elif "/validate" in url:
                kind = "validate"
        elif service == "keystone":
            kind = f"{method} token" if "/auth/tokens" in url else f"{method} other"
        elapsed = response.elapsed.total_seconds() if response.elapsed else 0.0
        with self._lock:
            self.calls.append(Call(now, now - elapsed, method, service, kind, stack))

    def between(self, start: float, end: float) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if start <= c.sent and c.at <= end + 0.001]

    def naming(self, stack: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.stack == stack]


def _verb(body: Any) -> str:
    try:
        return next(iter(json.loads(body or b"{}")), "?")
    except (ValueError, TypeError):
        return "?"


def kinds(calls: Sequence[Call], per: int = 1) -> str:
    counts = Counter(c.kind if c.service == "heat" else f"keystone {c.kind}" for c in calls)
    return ", ".join(f"{kind} {n / per:.3g}" for kind, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def heat_count(calls: Sequence[Call]) -> int:
    return sum(1 for c in calls if c.service == "heat")


# heat-engine.log: Heat's own CREATE_COMPLETE ------------------------------------------------------------
COMPLETE_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) .*Stack (?P<action>CREATE|RESUME|DELETE) COMPLETE "
    r"\((?P<name>[^)]+)\)"
)


class EngineLog:
    """CREATE, RESUME and DELETE COMPLETE times of stacks from heat-engine.log (millisecond, local-time
    timestamps); a stack's latest RESUME COMPLETE counts."""

    def __init__(self, path: Path = ENGINE_LOG) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self.complete: dict[tuple[str, str], float] = {}

    def scan(self) -> None:
        try:
            size = self.path.stat().st_size
        except OSError:
            return
        if size < self.offset:  # a fresh harness truncated it
            self.offset = 0
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].decode(errors="replace").splitlines():
            match = COMPLETE_LINE.match(line)
            if match:
                stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
                self.complete[(match.group("action"), match.group("name"))] = stamp

    def completed(self, name: str, action: str = "CREATE") -> float | None:
        self.scan()
        return self.complete.get((action, name))


def access_log_lines(names: set[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    try:
        text = ACCESS_LOG.read_text(errors="replace")
    except OSError:
        return counts
    for line in text.splitlines():
        match = STACK_IN_PATH.search(line)
        if match and match.group(1) in names:
            counts[match.group(1)] += 1
    return counts


# one launch ---------------------------------------------------------------------------------------------
@dataclass
class Launch:
    path: str  # drive / service / floor
    name: str
    t0: float
    ready: float
    calls: list[Call] = field(default_factory=list)
    post_sent: float | None = None
    complete: float | None = None

    @property
    def total(self) -> float:
        return self.ready - self.t0

    @property
    def heat_own(self) -> float | None:
        if self.post_sent is None or self.complete is None:
            return None
        return self.complete - self.post_sent

    @property
    def beyond(self) -> float | None:
        own = self.heat_own
        return None if own is None else self.total - own

    @property
    def after(self) -> float | None:
        """Heat's COMPLETE (heat-engine.log) -> seen ready."""
        return None if self.complete is None else self.ready - self.complete

    def poll_gaps(self) -> list[float]:
        polls = sorted(c.sent for c in self.calls if c.service == "heat" and c.method == "GET")
        return [b - a for a, b in itertools.pairwise(polls)]

    def line(self) -> str:
        own = f"{self.heat_own * 1000:.0f}" if self.heat_own is not None else "?"
        after = f"{self.after * 1000:+.0f}" if self.after is not None else "?"
        gaps = self.poll_gaps()
        gap = f"{median(gaps) * 1000:.0f} ms" if gaps else "-"
        return (
            f"{self.total * 1000:.0f} ms (Heat POST->COMPLETE {own} ms, COMPLETE->ready {after} ms); "
            f"HTTP: heat {heat_count(self.calls)}, keystone {len(self.calls) - heat_count(self.calls)}; "
            f"median gap between GETs {gap}"
        )


def banner_sync(host: str, port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0) as sock:
                if sock.makefile("rb").readline().startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{host}:{port} gave no SSH banner")
        time.sleep(0.01)


# the benchmark ------------------------------------------------------------------------------------------
def openstack_setting(pairs: list[str]) -> dict[str, Any]:
    """`--provider-setting KEY=VALUE`s as the service setting `openstack` takes them (for every provider)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--provider-setting {pair!r}: expected KEY=VALUE")
        options[key.strip()] = json.loads(value)
    return {"*": options} if options else {}


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path, port: int, harness: Harness) -> None:
        self.args = args
        self.work = work
        self.port = port
        self.harness = harness
        self.run_id = os.urandom(3).hex()
        self.elog = EngineLog()
        self.lab = self._write_lab("bench", TEMPLATE, f"ssh_port: {port}, wait_secs: {args.wait_secs}")
        self.template = template_format.parse(TEMPLATE)  # as Heat reads it (the version stays a string)
        self.parameters = {"ssh_port": port, "wait_secs": args.wait_secs}
        if args.concurrent_template == "light":
            self.batch_lab = self._write_lab("light", LIGHT_TEMPLATE, f"ssh_port: {port}")
            self.batch_template = template_format.parse(LIGHT_TEMPLATE)
            self.batch_parameters: dict[str, Any] = {"ssh_port": port}
        else:
            self.batch_lab, self.batch_template = self.lab, self.template
            self.batch_parameters = self.parameters
        settings = Settings(
            data_dir=str(work / "data"),
            retry_backoff_s=(1.0, 2.0, 5.0),
            max_attempts=5,
            openstack=openstack_setting(args.provider_setting),
        )
        self.app: App = build_app(settings)
        self.provider: Any = self.app.controller.providers.get(
            ProviderEntry(name="heat", type="openstack", cloud=args.cloud)
        )
        self.engine_calls = Recorder()
        self.floor_calls = Recorder()
        self.provider_hooked = False
        self.polled: dict[tuple[str, str], tuple[float, float]] = {}
        """(stack, operation) -> (sent, answered) of the provider's first poll that saw it complete (a
        delete: gone)."""
        self.outputs: dict[str, tuple[float, float]] = {}
        """Stack -> (sent, answered) of the outputs GET the watch sent when a poll saw it complete."""
        self.returned: dict[str, float] = {}
        """Engine stack -> when the provider's `delete` returned (time.time())."""
        self.deleted: dict[str, tuple[float, float]] = {}
        """Engine stack -> (delete requested, environment seen deleted), time.time()."""
        self.witnessed: dict[str, float] = {}
        """Engine stack -> when the same-run direct poller first saw it CREATE_COMPLETE (concurrent)."""
        self.witness_answers: dict[int, list[float]] = {}
        """Batch size -> how long Heat took to answer each of the direct poller's lists (seconds) under the
        batch's load: most of how late any poller sees a completion."""
        self.conn: Any = None
        self.env_ids: list[str] = []
        self.floor_names: list[str] = []
        self.learners = 0
        self.floors = 0

    def _write_lab(self, name: str, template: str, parameters: str) -> Path:
        (self.work / f"{name}.yaml").write_text(template)
        path = self.work / f"lab-{name}.yaml"
        path.write_text(
            textwrap.dedent(
                f"""\
                schema: 1
                id: heatbench-{name}
                title: Heat launch benchmark ({name})
                login_user: learner
                providers:
                  - {{name: heat, type: openstack, cloud: {self.args.cloud}}}
                openstack:
                  template: {name}.yaml
                  parameters: {{{parameters}}}
                  nodes: [main]
                timeouts: {{launch: {int(LAUNCH_TIMEOUT_S)}s}}
                """
            )
        )
        return path

    def connect(self) -> None:
        if not self.provider_hooked:
            self.engine_calls.attach(self.provider.connection())
            self._note_polls()
            self._note_deletes()
            self.provider_hooked = True
        if self.conn is None:
            import openstack
            from openstack.warnings import RemovedInSDK60Warning

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RemovedInSDK60Warning)
                conn = openstack.connect(cloud=self.args.cloud, app_name="stacklab-bench")
            conn.session.session.get_adapter("http://").init_poolmanager(16, 16, block=False)
            self.floor_calls.attach(conn)
            self.conn = conn

    def _note_polls(self) -> None:
        """Wrap the provider's shared poll: when did the poll that first saw each operation complete go
        out, and when did Heat answer it."""
        fetch = self.provider.watch.fetch

        async def noted(flights: list[Any]) -> dict[str, Any]:
            sent = time.time()
            rows = await fetch(flights)
            answered = time.time()
            for flight in flights:
                status = str((rows.get(flight.stack_id) or {}).get("stack_status") or "")
                gone = flight.op == "DELETE" and flight.stack_id not in rows
                if gone or status == f"{flight.op}_COMPLETE":
                    self.polled.setdefault((flight.name, flight.op), (sent, answered))
            return rows

        self.provider.watch.fetch = noted
        show = self.provider.watch.show

        async def shown(flight: Any) -> Any:
            sent = time.time()
            try:
                return await show(flight)
            finally:
                self.outputs[flight.name] = (sent, time.time())

        self.provider.watch.show = shown

    def _note_deletes(self) -> None:
        """Wrap the provider's delete: when did it return (the rest is the controller's pass)."""
        delete = self.provider.delete

        async def noted(handle: dict[str, Any]) -> None:
            await delete(handle)
            self.returned[handle["name"]] = time.time()

        self.provider.delete = noted

    # measurement plumbing ------------------------------------------------------------------------------
    async def guarded(self, label: str, make: Callable[[], Awaitable[T]]) -> T:
        """Run a measurement; if Heat goes away or someone deletes our stacks, clean up and run it again."""
        for attempt in range(1, 5):
            await asyncio.to_thread(self.harness.ensure, f"before {label}")
            generation = self.harness.pids()
            task = asyncio.ensure_future(make())
            try:
                while True:
                    done, _ = await asyncio.wait({task}, timeout=1.0)
                    if done:
                        result = task.result()
                        self.harness.check(generation)
                        return result
                    self.harness.check(generation)
            except Exception as exc:
                if not task.done():
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                disturbed = isinstance(exc, Disturbed)
                if not disturbed and self.harness.up() and self.harness.pids() == generation:
                    raise
                print(f"[harness] {label}, attempt {attempt}: {exc}; repeating it", flush=True)
                await asyncio.to_thread(self.harness.ensure, f"{label} was disturbed")
                await self.cleanup(quiet=True)
        raise RuntimeError(f"{label}: disturbed 4 times, giving up")

    def learner(self, prefix: str) -> str:
        self.learners += 1
        return f"{prefix}{self.learners}"

    def floor_name(self) -> str:
        self.floors += 1
        name = f"slbench-{self.run_id}-{self.floors}"
        self.floor_names.append(name)
        return name

    def _launch_of(
        self, path: str, name: str, t0: float, ready: float, calls: list[Call], action: str = "CREATE"
    ) -> Launch:
        kind = "create" if action == "CREATE" else f"action {action.lower()}"
        sent = [c for c in calls if c.kind == kind and c.stack == name]
        if len(sent) != 1:
            raise Disturbed(f"{name}: {len(sent)} {kind} requests (deleted by someone else?)")
        return Launch(path, name, t0, ready, calls, sent[0].sent, self.elog.completed(name, action))

    async def settled(self, env_id: str, want: str) -> EnvironmentRecord:
        record = await self.app.environments.drive(env_id, timeout_s=LAUNCH_TIMEOUT_S)
        if record.observed != want:
            raise Disturbed(
                f"environment {env_id} is {record.observed}, wanted {want}: "
                f"{record.last_reason or ''} {record.last_error or ''}".strip()
            )
        return record

    # (1) sequential ------------------------------------------------------------------------------------
    async def engine_drive(self) -> Launch:
        t0 = time.time()
        record = self.app.environments.launch(self.lab, self.learner("drive"), "bench")
        self.env_ids.append(record.id)
        record = await self.settled(record.id, Observed.RUNNING)
        ready = time.time()
        calls = self.engine_calls.between(t0, ready)
        return self._launch_of("drive", record.stack_name, t0, ready, calls)

    async def engine_service(self) -> Launch:
        """launch + the engine's job runner (follows requeue delays), as `stacklab serve` drives it."""
        t0 = time.time()
        record = self.app.environments.launch(self.lab, self.learner("serve"), "bench")
        self.env_ids.append(record.id)
        self.app.engine.runner.submit(record.id)
        deadline = t0 + LAUNCH_TIMEOUT_S
        while True:
            record = self.app.repo.get(record.id)
            if record.observed == Observed.RUNNING:
                break
            if record.observed == Observed.FAILED or time.time() > deadline:
                raise Disturbed(f"environment {record.id} is {record.observed}: {record.last_error}")
            await asyncio.sleep(0.01)
        ready = time.time()
        await self.app.engine.runner.idle()
        calls = self.engine_calls.between(t0, ready)
        return self._launch_of("service", record.stack_name, t0, ready, calls)

    async def engine_resume(self, launch: Launch) -> Launch:
        """Suspend the launched environment through the engine, then resume it: RESUME_COMPLETE -> ready."""
        env_id = next(i for i in self.env_ids if f"sl-{i}" == launch.name)
        self.app.environments.request(env_id, Desired.SUSPENDED, "Benchmark")
        await self.settled(env_id, Observed.SUSPENDED)
        t0 = time.time()
        self.app.environments.request(env_id, Desired.RUNNING, "Benchmark")
        await self.settled(env_id, Observed.RUNNING)
        ready = time.time()
        calls = self.engine_calls.between(t0, ready)
        return self._launch_of("resume", launch.name, t0, ready, calls, "RESUME")

    def _floor_until(self, heat: Any, name: str, stack_id: str, status: str) -> Any:
        started = time.time()
        while True:
            try:
                current = heat.get_stack(f"{name}/{stack_id}")
            except Exception as exc:  # deleted by someone else's cleanup
                raise Disturbed(f"{name}: {type(exc).__name__}: {exc}") from exc
            if current.status == status:
                return current
            if (current.status or "").endswith("FAILED") or time.time() - started > LAUNCH_TIMEOUT_S:
                raise Disturbed(f"{name}: {current.status} {current.status_reason}")
            time.sleep(FLOOR_POLL_S)

    def _floor_resume_sync(self, name: str) -> Launch:
        heat = self.conn.orchestration
        stack = heat.find_stack(name)
        if stack is None:
            raise Disturbed(f"{name} was deleted by someone else")
        heat.suspend_stack(stack)
        self._floor_until(heat, name, stack.id, "SUSPEND_COMPLETE")
        t0 = time.time()
        heat.resume_stack(stack)
        current = self._floor_until(heat, name, stack.id, "RESUME_COMPLETE")
        outputs = {o["output_key"]: o.get("output_value") for o in current.outputs or []}
        banner_sync(str(outputs["public_ip"]), int(outputs["ssh_port"]))
        ready = time.time()
        return self._launch_of("floor", name, t0, ready, self.floor_calls.between(t0, ready), "RESUME")

    async def floor_resume(self, launch: Launch) -> Launch:
        return await asyncio.to_thread(self._floor_resume_sync, launch.name)

    async def engine_delete(self, launch: Launch) -> float:
        env_id = next(i for i in self.env_ids if f"sl-{i}" == launch.name)
        started, t0 = time.perf_counter(), time.time()
        self.app.environments.request(env_id, Desired.DELETED, "Benchmark")
        await self.settled(env_id, Observed.DELETED)
        self.deleted[launch.name] = (t0, time.time())
        return time.perf_counter() - started

    def _floor_sync(self, name: str) -> Launch:
        heat = self.conn.orchestration
        generation = self.harness.pids()
        t0 = time.time()
        stack = heat.create_stack(
            name=name, template=self.template, files={}, parameters=self.parameters, tags=FLOOR_TAG
        )
        last_check = time.monotonic()
        while True:
            try:
                current = heat.get_stack(f"{name}/{stack.id}")
            except Exception as exc:
                raise Disturbed(f"{name}: {type(exc).__name__}: {exc}") from exc
            status = current.status or ""
            if status == "CREATE_COMPLETE":
                break
            if status.endswith("FAILED") or status.startswith("DELETE"):
                raise Disturbed(f"{name}: {status} {current.status_reason}")
            if time.time() - t0 > LAUNCH_TIMEOUT_S:
                raise TimeoutError(f"{name} still {status} after {LAUNCH_TIMEOUT_S:.0f} s")
            if time.monotonic() - last_check > 1.0:
                self.harness.check(generation)
                last_check = time.monotonic()
            time.sleep(FLOOR_POLL_S)
        outputs = {o["output_key"]: o.get("output_value") for o in current.outputs or []}
        banner_sync(str(outputs["public_ip"]), int(outputs["ssh_port"]))
        ready = time.time()
        calls = self.floor_calls.between(t0, ready)
        return self._launch_of("floor", name, t0, ready, calls)

    async def floor(self) -> Launch:
        return await asyncio.to_thread(self._floor_sync, self.floor_name())

    def _floor_delete_sync(self, names: Sequence[str]) -> float:
        heat = self.conn.orchestration
        started = time.perf_counter()
        mine = {s.name: s for s in heat.stacks(tags=[FLOOR_TAG]) if s.name in set(names)}
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(heat.delete_stack, mine.values()))
        while mine:
            time.sleep(0.2)
            present = {s.name for s in heat.stacks(tags=[FLOOR_TAG]) if s.status != "DELETE_COMPLETE"}
            mine = {n: s for n, s in mine.items() if n in present}
            if time.perf_counter() - started > LAUNCH_TIMEOUT_S:
                raise TimeoutError(f"floor stacks not deleted: {sorted(mine)}")
        return time.perf_counter() - started

    async def floor_delete(self, names: Sequence[str]) -> float:
        return await asyncio.to_thread(self._floor_delete_sync, names)

    # (2) concurrent ------------------------------------------------------------------------------------
    async def engine_batch(self, n: int) -> tuple[float, list[Launch]]:
        t0 = time.time()

        async def one(i: int) -> Launch:
            await asyncio.sleep(0)
            started = time.time()
            record = self.app.environments.launch(self.batch_lab, self.learner(f"c{n}x"), "bench")
            self.env_ids.append(record.id)
            record = await self.settled(record.id, Observed.RUNNING)
            return self._launch_of(
                "drive", record.stack_name, started, time.time(), self.engine_calls.naming(record.stack_name)
            )

        stop = threading.Event()
        witness = threading.Thread(target=self._witness, args=(stop, n), daemon=True)
        witness.start()
        try:
            launches = await asyncio.gather(*(one(i) for i in range(n)))
        finally:
            stop.set()
            await asyncio.to_thread(witness.join, 5)
        return t0, list(launches)

    def _witness(self, stop: threading.Event, n: int) -> None:
        """The floor of the same run: a direct poller (one stack list every 0.1 s on its own connection)
        watching the engine's own stacks under the same load, noting when it first sees each complete."""
        heat = self.conn.orchestration
        answers = self.witness_answers.setdefault(n, [])
        while not stop.is_set():
            try:
                sent = time.perf_counter()
                stacks = list(heat.stacks(tags=["stacklab"]))
                answers.append(time.perf_counter() - sent)
                for s in stacks:
                    if s.status == "CREATE_COMPLETE":
                        self.witnessed.setdefault(s.name, time.time())
            except Exception:  # the harness check decides
                pass
            stop.wait(FLOOR_POLL_S)

    async def engine_batch_delete(self, launches: Sequence[Launch]) -> float:
        started = time.perf_counter()
        await asyncio.gather(*(self.engine_delete(launch) for launch in launches))
        return time.perf_counter() - started

    def _floor_batch_sync(self, n: int) -> tuple[float, float, list[Launch]]:
        heat = self.conn.orchestration
        generation = self.harness.pids()
        names = [self.floor_name() for _ in range(n)]
        wanted = set(names)
        done: dict[str, float] = {}
        failed: list[str] = []
        stop = threading.Event()
        t0 = time.time()

        def poll() -> None:
            while not stop.is_set() and len(done) < n:
                try:
                    for s in heat.stacks(tags=[FLOOR_TAG]):
                        if s.name in wanted and s.name not in done:
                            if s.status == "CREATE_COMPLETE":
                                done[s.name] = time.time()
                            elif (s.status or "").endswith("FAILED"):
                                failed.append(f"{s.name} {s.status}")
                except Exception as exc:  # the harness check below decides
                    failed.append(f"list: {type(exc).__name__}")
                time.sleep(FLOOR_POLL_S)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        create = lambda name: heat.create_stack(  # noqa: E731
            name=name,
            template=self.batch_template,
            files={},
            parameters=self.batch_parameters,
            tags=FLOOR_TAG,
        )
        try:
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(create, names))
            while len(done) < n:
                poller.join(1.0)
                self.harness.check(generation)
                if failed and any("FAILED" in f for f in failed):
                    raise Disturbed(f"floor stacks failed: {failed[:3]}")
                if time.time() - t0 > LAUNCH_TIMEOUT_S:
                    raise TimeoutError(f"{n - len(done)} floor stacks not complete")
        finally:
            stop.set()
            poller.join(5)
        for _ in names:
            banner_sync("127.0.0.1", self.port)
        all_ready = time.time()
        launches = []
        for name in names:
            calls = self.floor_calls.naming(name)
            launches.append(self._launch_of("floor", name, t0, done[name], calls))
        return t0, all_ready, launches

    async def floor_batch(self, n: int) -> tuple[float, float, list[Launch]]:
        return await asyncio.to_thread(self._floor_batch_sync, n)

    # cleanup -------------------------------------------------------------------------------------------
    async def cleanup(self, quiet: bool = False) -> str:
        """Delete every environment of this run (engine) and any stack of ours left in Heat (SDK)."""
        await asyncio.to_thread(self.harness.ensure, "cleanup")
        pending = []
        for env_id in self.env_ids:
            try:
                record = self.app.repo.get(env_id)
            except Exception:
                continue
            if record.observed != Observed.DELETED:
                pending.append(env_id)
        errors = []

        async def delete(env_id: str) -> None:
            try:
                self.app.environments.request(env_id, Desired.DELETED, "Benchmark cleanup")
                record = await self.app.environments.drive(env_id, timeout_s=LAUNCH_TIMEOUT_S)
                if record.observed != Observed.DELETED:
                    errors.append(f"{env_id}: {record.observed} {record.last_error}")
            except Exception as exc:
                errors.append(f"{env_id}: {exc}")

        for start in range(0, len(pending), 50):
            await asyncio.gather(*(delete(i) for i in pending[start : start + 50]))
        ours = {f"sl-{i}" for i in self.env_ids} | set(self.floor_names)

        def leftovers() -> list[str]:
            heat = self.conn.orchestration
            stacks = [s for s in heat.stacks() if s.name in ours and s.status != "DELETE_COMPLETE"]
            for s in stacks:
                heat.delete_stack(s)
            deadline = time.time() + LAUNCH_TIMEOUT_S
            while stacks and time.time() < deadline:
                time.sleep(0.5)
                stacks = [s for s in heat.stacks() if s.name in ours and s.status != "DELETE_COMPLETE"]
            return [s.name for s in stacks]

        left: list[str] = []
        if self.conn is not None:
            left = await asyncio.to_thread(leftovers)
        report = (
            f"cleanup: {len(pending)} environments deleted through the engine"
            f"{' (errors: ' + '; '.join(errors) + ')' if errors else ''}; "
            f"{'stacks still present: ' + ', '.join(left) if left else 'no stack of this run is left'}"
        )
        if not quiet:
            print(report, flush=True)
        return report


# reporting helpers --------------------------------------------------------------------------------------
def fmt(values: Sequence[float]) -> str:
    return f"{median(values) * 1000:.0f} ms (" + ", ".join(f"{v * 1000:.0f}" for v in values) + ")"


def spread(values: Sequence[float]) -> str:
    return f"median {median(values) * 1000:.0f} ms, max {max(values) * 1000:.0f}" if values else "?"


def latencies(launches: Sequence[Launch], kind: str) -> list[float]:
    """How long Heat took to answer the first request of this kind of each launch."""
    found = []
    for launch in launches:
        calls = [c for c in launch.calls if c.kind == kind]
        if calls:
            found.append(calls[0].at - calls[0].sent)
    return found


def ready_row(label: str, launches: Sequence[Launch], peers: Sequence[Launch]) -> list[str]:
    """COMPLETE -> ready of `launches` (median, p95, max) against the direct-poll peers of the same run."""
    after = known([x.after for x in launches])
    peer = known([x.after for x in peers])
    if not after:
        return [label, "? (no COMPLETE line in heat-engine.log)", "-", "-"]

    def figures(values: list[float]) -> str:
        return (
            f"median {median(values) * 1000:.0f} ms, p95 {percentile(values, 95) * 1000:.0f}, "
            f"max {max(values) * 1000:.0f}"
        )

    return [
        label,
        figures(after),
        f"<= {READY_TARGET_S * 1000:.0f} ms ({verdict(median(after), READY_TARGET_S)} median, "
        f"{verdict(percentile(after, 95), READY_TARGET_S)} p95)",
        f"direct SDK poll every {FLOOR_POLL_S:g} s: {figures(peer) if peer else '?'}",
    ]


def breakdown_row(label: str, bench: Bench, launches: Sequence[Launch], action: str = "CREATE") -> list[str]:
    """Where Heat's COMPLETE -> ready went: until the provider's poll that saw it was sent (scheduling),
    Heat's answer to that poll, the outputs GET the watch sent then (answered this long after the poll's
    answer), then until ready (SSH probe, the pass's saves, the driver's or runner's wake-up)."""
    wait, answer, outputs, after, late_post = [], [], [], [], 0
    for x in launches:
        polled = bench.polled.get((x.name, action))
        if polled is None or x.complete is None:
            continue
        wait.append(polled[0] - x.complete)
        answer.append(polled[1] - polled[0])
        shown = bench.outputs.get(x.name)
        got = shown[1] if shown is not None and shown[0] >= polled[1] - 0.001 else polled[1]
        outputs.append(got - polled[1])
        after.append(x.ready - got)
        posts = [c.at for c in x.calls if c.kind in ("create", f"action {action.lower()}")]
        late_post += bool(posts) and posts[0] > x.complete
    return [
        label,
        f"poll sent {spread(wait)} | answered in {spread(answer)} | outputs GET answered "
        f"{spread(outputs)} after | then ready {spread(after)}",
        "-",
        f"{late_post} of {len(wait)} complete before their request was answered; most polls out at once "
        f"{getattr(bench.provider.watch, 'most_in_flight', 1)}{room_note(bench.provider)}",
    ]


def room_note(provider: Any) -> str:
    """How far the provider's write room (room.py) closed so far in this run (absent in older code)."""
    room = getattr(provider, "room", None)
    if room is None:
        return ""
    return f"; writes allowed out: {room.limit} now, {room.lowest} at the least, of {room.most}"


def delete_row(label: str, bench: Bench, names: Sequence[str]) -> list[str]:
    """Where an engine delete's time goes: request -> the provider's DELETE sent (the controller's pass and
    the GET before it), Heat's answer to the DELETE, DELETE answered -> heat-engine.log's DELETE COMPLETE,
    COMPLETE -> the provider's poll that saw the stack gone from the list (sent, answered in), until the
    provider's `delete` returned, then until the environment is seen deleted (the pass's saves, the driver's
    wake-up)."""
    pre, answer, heat, poll, poll_answer, back, after = [], [], [], [], [], [], []
    for name in names:
        if name not in bench.deleted:
            continue
        t0, done = bench.deleted[name]
        sent = [c for c in bench.engine_calls.naming(name) if c.method == "DELETE" and c.sent >= t0]
        complete, polled = bench.elog.completed(name, "DELETE"), bench.polled.get((name, "DELETE"))
        returned = bench.returned.get(name)
        if not sent or complete is None or polled is None or returned is None:
            continue
        pre.append(sent[0].sent - t0)
        answer.append(sent[0].at - sent[0].sent)
        heat.append(complete - sent[0].at)
        poll.append(polled[0] - complete)
        poll_answer.append(polled[1] - polled[0])
        back.append(returned - polled[1])
        after.append(done - returned)
    if not pre:
        return [label, "? (no DELETE COMPLETE line or poll seen)", "-", "-"]
    return [
        label,
        f"DELETE sent {spread(pre)} | answered in {spread(answer)} | Heat COMPLETE {spread(heat)} | "
        f"poll sent {spread(poll)}, answered in {spread(poll_answer)} | delete() returned {spread(back)} | "
        f"then deleted {spread(after)}",
        "-",
        f"{len(pre)} of {len(names)} deletes",
    ]


def witness_row(label: str, bench: Bench, launches: Sequence[Launch]) -> list[str]:
    """COMPLETE -> seen by a direct 0.1 s list poller of the engine's own stacks in the same batch (the best
    a direct poller did under the same load), and the engine's ready against that moment."""
    seen = [(x, bench.witnessed[x.name]) for x in launches if x.name in bench.witnessed and x.complete]
    if not seen:
        return [label, "? (the direct poller saw none complete)", "-", "-"]
    after = [at - x.complete for x, at in seen if x.complete is not None]
    behind = [x.ready - at for x, at in seen]
    answers = bench.witness_answers.get(len(launches)) or [0.0]
    return [
        label,
        f"COMPLETE -> seen by a 0.1 s list: median {median(after) * 1000:.0f} ms, "
        f"p95 {percentile(after, 95) * 1000:.0f}; Heat answered its lists in median "
        f"{median(answers) * 1000:.0f} ms, least {min(answers) * 1000:.0f} ({len(answers)} lists)",
        "-",
        f"engine ready - direct poller saw it: median {median(behind) * 1000:+.0f} ms, "
        f"p95 {percentile(behind, 95) * 1000:+.0f} ({len(seen)} of {len(launches)})",
    ]


def known(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def versions() -> dict[str, str]:
    site = sorted(HEAT_HOME.glob("venv/lib/python3*/site-packages"))
    found = {}
    for dist, label in (("openstack_heat", "heat"), ("keystone", "keystone")):
        names = [p.name for s in site for p in s.glob(f"{dist}-*.dist-info")]
        found[label] = names[0][len(dist) + 1 : -len(".dist-info")] if names else "unknown"
    found["openstacksdk"] = metadata.version("openstacksdk")
    return found


# the run ------------------------------------------------------------------------------------------------
async def run(args: argparse.Namespace, work: Path, harness: Harness) -> None:
    server, port = await start_sshd()
    bench: Bench | None = None
    rows: list[list[str]] = []
    try:
        os.environ["OS_CLIENT_CONFIG_FILE"] = str(CLOUDS)
        bench = Bench(args, work, port, harness)
        await bench.guarded("connect", partial(asyncio.to_thread, bench.connect))
        print(f"loopback sshd on 127.0.0.1:{port}; data dir {work}; run id {bench.run_id}", flush=True)
        print(f"template: one OS::Heat::TestResource, wait_secs {args.wait_secs}", flush=True)

        # warm-up (not counted): token, first stack of this process on both paths
        for label, measure in (("warm-up engine", bench.engine_drive), ("warm-up floor", bench.floor)):
            launch = await bench.guarded(label, measure)
            if launch.path == "floor":
                await bench.guarded("warm-up floor delete", partial(bench.floor_delete, [launch.name]))
            else:
                await bench.guarded("warm-up engine delete", partial(bench.engine_delete, launch))
            print(f"{label}: {launch.line()} (not counted)", flush=True)

        # (1) sequential ------------------------------------------------------------------------------
        results: dict[str, list[Launch]] = {"drive": [], "service": [], "floor": []}
        resumes: dict[str, list[Launch]] = {"engine": [], "floor": []}
        deletes: dict[str, list[float]] = {"engine": [], "floor": []}
        measures = {"drive": bench.engine_drive, "service": bench.engine_service, "floor": bench.floor}
        order = ["drive", "floor", "service"]
        for round_ in range(args.rounds):
            for which in order[round_ % 3 :] + order[: round_ % 3]:
                launch = await bench.guarded(f"round {round_} {which}", measures[which])
                results[which].append(launch)
                print(f"round {round_}: {which:<7} {launch.line()}", flush=True)
                if which != "service":
                    peer = "floor" if which == "floor" else "engine"
                    resume = await bench.guarded(
                        f"round {round_} {which} resume",
                        partial(bench.floor_resume if which == "floor" else bench.engine_resume, launch),
                    )
                    resumes[peer].append(resume)
                    print(f"round {round_}: {peer} resume {resume.line()}", flush=True)
                if which == "floor":
                    seconds = await bench.guarded("floor delete", partial(bench.floor_delete, [launch.name]))
                    deletes["floor"].append(seconds)
                else:
                    deletes["engine"].append(
                        await bench.guarded("engine delete", partial(bench.engine_delete, launch))
                    )

        if args.rounds:  # --rounds 0: the concurrent launches alone
            drive, service, floor = results["drive"], results["service"], results["floor"]
            overhead = median([x.total for x in drive]) - median([x.total for x in floor])
            beyond_drive = known([x.beyond for x in drive])
            rows.append(
                [
                    "(1) launch -> ready, engine (launch + drive)",
                    fmt([x.total for x in drive]),
                    "-",
                    "direct SDK create + get_stack every 0.1 s + SSH banner: "
                    f"{fmt([x.total for x in floor])}",
                ]
            )
            rows.append(
                [
                    "(1) engine (drive) overhead vs floor",
                    f"{overhead * 1000:+.0f} ms",
                    f"<= 1000 ms ({verdict(overhead, TARGET_S)})",
                    "difference of medians",
                ]
            )
            rows.append(
                [
                    "(1) Heat's own POST -> CREATE COMPLETE (heat-engine.log)",
                    fmt(known([x.heat_own for x in drive])),
                    "-",
                    f"floor's stacks: {fmt(known([x.heat_own for x in floor]))}",
                ]
            )
            if beyond_drive:
                pre = [x.post_sent - x.t0 for x in drive if x.post_sent]
                pre_f = [x.post_sent - x.t0 for x in floor if x.post_sent]
                rows.append(
                    [
                        "(1) drive: launch -> create POST sent",
                        fmt(pre),
                        "-",
                        f"floor: {fmt(pre_f)}",
                    ]
                )
            rows.append(ready_row("(1) drive: Heat CREATE_COMPLETE -> ready", drive, floor))
            rows.append(ready_row("(1b) service path: CREATE_COMPLETE -> ready", service, floor))
            rows.append(
                ready_row(
                    "(1c) resume (engine): RESUME_COMPLETE -> ready", resumes["engine"], resumes["floor"]
                )
            )
            for label, launches, action in (
                ("drive", drive, "CREATE"),
                ("service", service, "CREATE"),
                ("resume", resumes["engine"], "RESUME"),
            ):
                rows.append(
                    breakdown_row(f"(1) {label}: where COMPLETE -> ready goes", bench, launches, action)
                )
            rows.append(
                [
                    "(1b) launch -> ready, service path (job runner, requeue)",
                    fmt([x.total for x in service]),
                    "-",
                    f"floor: {fmt([x.total for x in floor])}",
                ]
            )
            engine_deleted = [x.name for x in drive + service]
            rows.append(delete_row("(1) delete: where it goes", bench, engine_deleted))
            rows.append(
                [
                    "(1) delete (engine request + drive, incl. Heat)",
                    fmt(deletes["engine"]),
                    f"<= SDK ({verdict(median(deletes['engine']), median(deletes['floor']))})",
                    f"direct SDK delete + list every 0.2 s: {fmt(deletes['floor'])}",
                ]
            )

            # (3) requests per sequential launch -----------------------------------------------------------
            for label, launches in (
                ("drive", drive),
                ("service", service),
                ("floor", floor),
                ("resume, engine", resumes["engine"]),
                ("resume, floor", resumes["floor"]),
            ):
                heat_calls = [heat_count(x.calls) for x in launches]
                gaps = [g for x in launches for g in x.poll_gaps()]
                own = known([x.heat_own for x in launches])
                per_s = median(heat_calls) / median(own) if own else 0
                all_calls = [c for x in launches for c in x.calls]
                gap_median, gap_min = (median(gaps), min(gaps)) if gaps else (0.0, 0.0)
                rows.append(
                    [
                        f"(3) HTTP per launch, {label}",
                        f"heat {median(heat_calls):g} (keystone "
                        f"{median([len(x.calls) - heat_count(x.calls) for x in launches]):g})",
                        "<= 4 (before)" if label in ("drive", "service") else "-",
                        f"{kinds(all_calls, len(launches))}; GET gap median {gap_median * 1000:.0f} ms, "
                        f"min {gap_min * 1000:.0f} ms; "
                        f"{per_s:.1f} heat req/s of Heat create time",
                    ]
                )
            names = {x.name for x in drive}
            logged = access_log_lines(names)
            hooked = sum(1 for n in names for c in bench.engine_calls.naming(n) if c.kind != "create")
            rows.append(
                [
                    "(3) cross-check: heat-api access log (drive stacks)",
                    f"{sum(logged.values())} lines naming them",
                    "-",
                    f"hook: {hooked} requests naming them (launch + delete; the create POST names none)",
                ]
            )

        # (2) concurrent -------------------------------------------------------------------------------
        for n in args.concurrency:
            try:
                t0, launches = await bench.guarded(
                    f"{n} concurrent engine launches", partial(bench.engine_batch, n)
                )
                all_ready = max(x.ready for x in launches)
                completes = known([x.complete for x in launches])
                posts = known([x.post_sent for x in launches])
                span = (max(completes) - min(posts)) if completes and len(completes) == n else None
                calls = bench.engine_calls.between(t0, all_ready)
                print(
                    f"{n} concurrent, engine: all ready in {(all_ready - t0):.2f} s; per environment "
                    f"{fmt([x.ready - t0 for x in launches])}; Heat first POST -> last COMPLETE "
                    f"{span if span is None else round(span, 2)} s; HTTP heat {heat_count(calls)} "
                    f"({heat_count(calls) / n:.1f}/launch, {heat_count(calls) / (all_ready - t0):.1f} req/s)",
                    flush=True,
                )
                engine_delete_s = await bench.guarded(
                    f"{n} engine deletes", partial(bench.engine_batch_delete, launches)
                )
                f0, f_all, f_launches = await bench.guarded(
                    f"{n} concurrent floor", partial(bench.floor_batch, n)
                )
                f_completes = known([x.complete for x in f_launches])
                f_posts = known([x.post_sent for x in f_launches])
                f_span = (max(f_completes) - min(f_posts)) if len(f_completes) == n else None
                f_calls = bench.floor_calls.between(f0, f_all)
                print(
                    f"{n} concurrent, floor: all ready in {(f_all - f0):.2f} s; per stack "
                    f"{fmt([x.ready - f0 for x in f_launches])}; Heat first POST -> last COMPLETE "
                    f"{f_span if f_span is None else round(f_span, 2)} s; HTTP heat {heat_count(f_calls)}",
                    flush=True,
                )
                floor_delete_s = await bench.guarded(
                    f"{n} floor deletes", partial(bench.floor_delete, [x.name for x in f_launches])
                )
                print(
                    f"{n} deletes: engine {engine_delete_s:.1f} s, floor {floor_delete_s:.1f} s", flush=True
                )
                rows.append(
                    [
                        f"(2) {n} concurrent launches: time to all ready",
                        f"{all_ready - t0:.2f} s (Heat first POST -> last COMPLETE "
                        f"{'?' if span is None else f'{span:.2f}'} s)",
                        "-",
                        f"SDK: {n} creates, 16 threads, 1 list/0.1 s + SSH: {f_all - f0:.2f} s "
                        f"(Heat {'?' if f_span is None else f'{f_span:.2f}'} s)",
                    ]
                )
                rows.append(
                    [
                        f"(2) {n} concurrent: launch -> ready, median per learner",
                        f"{median([x.ready - t0 for x in launches]):.2f} s",
                        "-",
                        f"SDK batch: {median([x.ready - f0 for x in f_launches]):.2f} s",
                    ]
                )
                rows.append(
                    [
                        f"(2) {n} concurrent: all ready - Heat's first POST -> last COMPLETE",
                        f"{(all_ready - t0 - span) * 1000:+.0f} ms" if span is not None else "?",
                        "-",
                        f"floor: {(f_all - f0 - f_span) * 1000:+.0f} ms" if f_span is not None else "?",
                    ]
                )
                rows.append(
                    [
                        f"(2) {n} concurrent, per launch: launch -> POST sent | find GET | POST answered in",
                        spread([x.post_sent - x.t0 for x in launches if x.post_sent])
                        + f" | {spread(latencies(launches, 'find (by name)'))}"
                        + f" | {spread(latencies(launches, 'create'))}",
                        "-",
                        f"floor POST answered in {spread(latencies(f_launches, 'create'))}",
                    ]
                )
                rows.append(
                    ready_row(f"(2) {n} concurrent: Heat CREATE_COMPLETE -> ready", launches, f_launches)
                )
                rows.append(
                    witness_row(f"(2) {n} concurrent: the same stacks, direct poller", bench, launches)
                )
                rows.append(
                    breakdown_row(f"(2) {n} concurrent: where COMPLETE -> ready goes", bench, launches)
                )
                rows.append(delete_row(f"(2) {n} deletes: where they go", bench, [x.name for x in launches]))
                rows.append(
                    [
                        f"(3) {n} concurrent: HTTP per launch, engine",
                        f"heat {heat_count(calls) / n:.1f} "
                        f"({heat_count(calls) / (all_ready - t0):.1f} req/s)",
                        "-",
                        f"{kinds(calls, n)}",
                    ]
                )
            except Exception as exc:  # one batch size failing must not lose the rest of the table
                print(f"{n} concurrent: not measured: {type(exc).__name__}: {exc}", flush=True)
                rows.append([f"(2) {n} concurrent", f"not measured: {type(exc).__name__}: {exc}", "-", "-"])
    finally:
        if bench is not None:
            try:
                await bench.cleanup()
            finally:
                bench.app.close()
        server.close()
        await server.wait_closed()
        for note in harness.restarts:
            print(f"[harness] {note}")
        print(f"[harness] {harness.finish()}", flush=True)
    print()
    print_table(rows)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--wait-secs", type=float, default=1.0, help="the TestResource's wait_secs")
    parser.add_argument("--concurrency", default="10,100", help="comma-separated batch sizes ('' for none)")
    parser.add_argument("--cloud", default="heatbox")
    parser.add_argument(
        "--concurrent-template",
        choices=("light", "wait"),
        default="light",
        help="the concurrent rounds' template: one OS::Heat::Value, or the sequential rounds' TestResource",
    )
    parser.add_argument(
        "--provider-setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an OpenStack provider setting (service setting `openstack`), e.g. api_writes=1",
    )
    args = parser.parse_args()
    args.concurrency = [int(x) for x in args.concurrency.split(",") if x.strip()]
    warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
    harness = Harness()
    harness.ensure("benchmark start")
    extra = versions()
    print_machine(
        "Heat launch benchmark",
        {
            "heat / keystone": f"{extra['heat']} / {extra['keystone']} (scripts/heat-harness, loopback)",
            "heat workers": harness.workers(),
            "openstacksdk": extra["openstacksdk"],
            "harness at start": "running" if harness.was_running else "not running",
            "provider settings": ", ".join(args.provider_setting) or "defaults",
        },
        postgres=False,
    )
    work = Path(tempfile.mkdtemp(prefix="stacklab-bench-heat-", dir="/var/tmp"))
    try:
        asyncio.run(run(args, work, harness))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
