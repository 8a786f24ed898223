"""Learner API under load: status (GET) and activity (POST) req/s and latency, with 100 terminals open.

A real `stacklab serve` (its own data dir, SQLite, LXC) gets `--envs` hello labs launched through the LMS API
(each with its own learner token), then `--terminals` websocket terminals spread over them (each a real shell
over SSH, kept open and read for the whole run). wrk (Debian's, one thread, a Lua script that rotates the
learner tokens) then drives, for each mix (status GET, activity POST, 90/10), a paced run at about
`--rate` req/s (closed loop: `--rate`/10 * 1.1 connections, each pausing 100 ms between requests, like
learners pinging every 10 s) and a saturation run (`--connections`, no pause). The floor, in the same run and
the same way: `GET /healthz` (no auth, no database). Server CPU% (of one core; it is one process, one event
loop), wrk's CPU% and what every other process on the host took meanwhile are printed for every run, so a
starved server shows (`--pin` puts the server on CPU 0 and wrk on CPU 1). Prints figures; never asserts.
See bench/README.md, "api_load.py".

    .venv/bin/python bench/api_load.py    # as root, ~4 min; --envs 20 --terminals 100 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, lxc_version, print_machine, print_table

IMAGE_DIR = os.environ.get("STACKLAB_IMAGE_DIR", "/var/lib/stacklab/images")
LMS_ISSUER = "bench"
TICK = os.sysconf("SC_CLK_TCK")
SERVER_CPU, WRK_CPU = "0", "1"


# the service ----------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """A real `stacklab serve` with its own data dir, and the CLI on the same data dir."""

    def __init__(self, prefix: str, extra_env: dict[str, str] | None = None) -> None:
        self.data_dir = tempfile.mkdtemp(prefix=prefix, dir="/var/tmp")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "STACKLAB_DATA_DIR": self.data_dir,
            "STACKLAB_IMAGE_DIR": IMAGE_DIR,
            "STACKLAB_HTTP_PORT": str(self.port),
            "STACKLAB_ADMIN_PASSWORD": secrets.token_urlsafe(12),
            **(extra_env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(self.data_dir) / "serve.log"

    def start(self, timeout_s: float = 120) -> None:
        log = open(self.log_path, "wb")  # noqa: SIM115 - kept open while the server runs
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stacklab.cli", "serve"],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"stacklab serve exited ({self.proc.returncode}): {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"stacklab serve did not answer within {timeout_s} s: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def cli(self, *args: str, timeout_s: float = 300) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "stacklab.cli", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if result.returncode != 0:
            raise RuntimeError(f"stacklab {' '.join(args)} failed: {result.stderr or result.stdout}")
        return result.stdout

    def cleanup(self) -> None:
        """Stop the server, delete every environment (`env delete --wait`), remove the data dir."""
        self.stop()
        left = []
        try:
            for env in json.loads(self.cli("env", "list", "--json") or "[]"):
                if env.get("observed") != "deleted" or env.get("desired") != "deleted":
                    self.cli("env", "delete", env["id"], "--wait")
            left = [
                e["id"]
                for e in json.loads(self.cli("env", "list", "--json") or "[]")
                if e.get("observed") != "deleted"
            ]
        except Exception as exc:
            print(f"cleanup: {exc}; data dir kept: {self.data_dir}", file=sys.stderr)
            return
        if left:
            print(f"cleanup: not deleted: {left}; data dir kept: {self.data_dir}", file=sys.stderr)
            return
        shutil.rmtree(self.data_dir, ignore_errors=True)


def http_json(method: str, url: str, token: str, body: object | None = None, timeout_s: float = 30) -> object:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        text = response.read()
    return json.loads(text) if text else None


# labs and terminals -----------------------------------------------------------------------------------------
@dataclass
class Learner:
    env: str
    token: str


def launch_labs(service: Service, secret: str, count: int, timeout_s: float) -> list[Learner]:
    import jwt

    learners = []
    started = time.monotonic()
    for i in range(count):
        lms = jwt.encode(
            {"iss": LMS_ISSUER, "exp": int(time.time()) + 60, "jti": f"bench-{i}-{time.time()}"},
            secret,
            algorithm="HS256",
        )
        body = {"course": "bench", "lab": "hello-lab", "learner": f"learner{i:03d}"}
        answer = http_json("POST", f"{service.url}/api/v1/launch", lms, body)
        learners.append(Learner(answer["environment"]["id"], answer["token"]))  # type: ignore[index]
    pending = {learner.env: learner for learner in learners}
    while pending:
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"labs not ready after {timeout_s} s: {sorted(pending)}")
        for env, learner in list(pending.items()):
            status = http_json("GET", f"{service.url}/api/v1/environments/{env}", learner.token)
            if status["ready"]:  # type: ignore[index]
                del pending[env]
            elif status["progress"] == "failed":  # type: ignore[index]
                raise RuntimeError(f"lab {env} failed: {status}")
        time.sleep(0.5)
    print(f"launched {count} hello labs through POST /api/v1/launch in {time.monotonic() - started:.1f} s")
    return learners


class Terminal:
    """One websocket terminal, read (and acked) in the background for as long as it is open."""

    def __init__(self, ws) -> None:  # type: ignore[no-untyped-def]
        self.ws = ws
        self.seen = b""
        self.offset = 0
        self.acked = 0
        self.closed: str | None = None
        self.changed = asyncio.Event()
        self.task = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, url: str) -> Terminal:
        from websockets.asyncio.client import connect

        ws = await connect(url, compression=None, max_size=None, open_timeout=30)
        ready = json.loads(await ws.recv())
        if ready.get("type") != "ready":
            raise RuntimeError(f"terminal refused: {ready}")
        return cls(ws)

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                if isinstance(message, bytes):
                    self.offset += len(message)
                    self.seen = (self.seen + message)[-8192:]
                    if self.offset - self.acked >= 65536:
                        self.acked = self.offset
                        await self.ws.send(json.dumps({"type": "ack", "offset": self.offset}))
                    self.changed.set()
            self.closed = "closed by the server"
        except Exception as exc:
            self.closed = f"{type(exc).__name__}: {exc}"
        self.changed.set()

    async def wait_for(self, needle: bytes, timeout_s: float = 30) -> None:
        async with asyncio.timeout(timeout_s):
            while needle not in self.seen:
                if self.closed:
                    raise RuntimeError(f"terminal closed: {self.closed}")
                self.changed.clear()
                await self.changed.wait()

    async def close(self) -> None:
        await self.ws.close()
        self.task.cancel()


async def open_terminals(service: Service, learners: list[Learner], count: int) -> list[Terminal]:
    limit = asyncio.Semaphore(10)
    ws_base = service.url.replace("http://", "ws://")

    async def one(i: int) -> Terminal:
        learner = learners[i % len(learners)]
        url = (
            f"{ws_base}/api/v1/environments/{learner.env}/terminal/main"
            f"?token={learner.token}&session=bench-{uuid.uuid4().hex[:12]}&cols=80&rows=24"
        )
        async with limit:
            term = await Terminal.open(url)
            await term.wait_for(b"$ ")
            return term

    started = time.monotonic()
    terminals = await asyncio.gather(*(one(i) for i in range(count)))
    print(
        f"opened {count} terminals ({count / len(learners):g} per lab, each a shell over SSH, prompt seen) "
        f"in {time.monotonic() - started:.1f} s; kept open and read during every run"
    )
    return list(terminals)


async def still_answer(terminals: list[Terminal]) -> int:
    async def one(i: int, term: Terminal) -> bool:
        try:
            await term.ws.send(f"echo alive-$(({i}+1000))\r".encode())
            await term.wait_for(f"alive-{i + 1000}".encode(), 30)
            return True
        except Exception:
            return False

    return sum(await asyncio.gather(*(one(i, t) for i, t in enumerate(terminals))))


# wrk ------------------------------------------------------------------------------------------------------
LUA = """
local targets = {TARGETS}
local mode = "{MODE}"
local pause = {PAUSE}
local gets, posts, health = {}, {}, nil
local n_get, n_post, n = 0, 0, 0

function init(args)
  for i, t in ipairs(targets) do
    local auth = {Authorization = "Bearer " .. t[2]}
    gets[i] = wrk.format("GET", "/api/v1/environments/" .. t[1], auth)
    posts[i] = wrk.format("POST", "/api/v1/environments/" .. t[1] .. "/activity",
      {Authorization = "Bearer " .. t[2], ["Content-Length"] = "0"})
  end
  health = wrk.format("GET", "/healthz")
end

function request()
  n = n + 1
  if mode == "healthz" then return health end
  if mode == "activity" or (mode == "mix" and n % 10 == 0) then
    n_post = n_post + 1
    return posts[n_post % #posts + 1]
  end
  n_get = n_get + 1
  return gets[n_get % #gets + 1]
end

if pause > 0 then
  function delay() return pause end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %f, '
    .. '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def write_script(directory: str, learners: list[Learner], mode: str, pause_ms: int) -> str:
    targets = "{" + ", ".join(f'{{"{lr.env}", "{lr.token}"}}' for lr in learners) + "}"
    text = LUA.replace("{TARGETS}", targets).replace("{MODE}", mode).replace("{PAUSE}", str(pause_ms))
    path = Path(directory) / f"{mode}-{pause_ms}.lua"
    path.write_text(text)
    return str(path)


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_ticks() -> tuple[int, int, int]:
    """All cores: (busy ticks without steal, steal ticks, total ticks) from /proc/stat."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle, steal = ticks[3] + ticks[4], ticks[7]
    return sum(ticks) - idle - steal, steal, sum(ticks)


@dataclass
class Run:
    mode: str
    paced: bool
    connections: int
    rate: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    server_cpu: float
    wrk_cpu: float
    others_cpu: float
    idle: float
    parts: tuple[float, ...] = ()
    """CPU% of each process of the target, in the order given (their sum is server_cpu)."""

    def line(self) -> str:
        kind = "paced" if self.paced else "saturate"
        return (
            f"{self.mode:<9} {kind:<8} c={self.connections:<3} {self.rate:8.0f} req/s"
            f"  p50 {self.p50_ms:6.2f} ms  p90 {self.p90_ms:6.2f}  p99 {self.p99_ms:6.2f}"
            f"  max {self.max_ms:7.2f}  errors {self.errors}"
            f"  CPU: server {self.server_cpu:3.0f}%  wrk {self.wrk_cpu:3.0f}%  others {self.others_cpu:3.0f}%"
            f"  idle {self.idle:3.0f}%"
        )

    def figure(self) -> str:
        return f"{self.rate:,.0f} req/s, p50 {self.p50_ms:.2f} ms, p99 {self.p99_ms:.2f} ms"


def run_wrk(
    url: str, script: str, connections: int, duration_s: float, server_pids: Sequence[int], pin: bool
) -> tuple[dict[str, float], tuple[list[float], float, float, float]]:
    """One wrk run; its summary, and CPU%: of each server process (`server_pids`: every process the
    request crosses, e.g. nginx and its upstreams), wrk, everything else, and the machine's idle."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--timeout", "5s", "-s", script, url]
    if pin:
        command = ["taskset", "-c", WRK_CPU, *command]
    ticks_before, started = machine_ticks(), time.monotonic()
    servers_before = [proc_cpu_s(pid) for pid in server_pids]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = proc.stdout.read().decode(errors="replace")  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    servers = [
        (proc_cpu_s(pid) - before) / wall * 100
        for pid, before in zip(server_pids, servers_before, strict=True)
    ]
    wrk = (usage.ru_utime + usage.ru_stime) / wall * 100
    ticks_after = machine_ticks()
    busy, steal, total = (after - before for after, before in zip(ticks_after, ticks_before, strict=True))
    # servers, wrk and others in % of one core; idle in % of the whole machine (all cores)
    others = busy / TICK / wall * 100 - sum(servers) - wrk
    idle = (total - busy - steal) / max(1, total) * 100
    lines = [x for x in output.splitlines() if x.startswith("WRKJSON ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {output}")
    return json.loads(lines[-1][8:]), (servers, wrk, others, idle)


async def measure(
    target: tuple[str, int | Sequence[int]],
    scripts: str,
    learners: list[Learner],
    mode: str,
    connections: int,
    pause_ms: int,
    args: argparse.Namespace,
    label: str = "",
) -> Run:
    """One wrk run against `target` (url, the server's pid or pids); prints its line."""
    script = write_script(scripts, learners, mode, pause_ms)
    url, pids = target
    pids = [pids] if isinstance(pids, int) else list(pids)
    result, (servers, *cpu) = await asyncio.to_thread(
        run_wrk, url, script, connections, args.duration, pids, args.pin
    )
    errors = sum(int(result[k]) for k in ("connect", "read", "write", "status", "timeout"))
    run = Run(
        label or mode,
        pause_ms > 0,
        connections,
        result["requests"] / (result["duration_us"] / 1e6),
        result["p50"] / 1000,
        result["p90"] / 1000,
        result["p99"] / 1000,
        result["max"] / 1000,
        errors,
        sum(servers),
        *cpu,
        tuple(servers),
    )
    print(run.line(), flush=True)
    return run


PEERS = {
    "asgi": "a bare ASGI app (no framework)",
    "fastapi": "FastAPI, one route",
    "fastapi+mw": "FastAPI, one route + one @app.middleware('http')",
}
PEER_APP = """
import sys, uvicorn
from fastapi import FastAPI, Request

async def bare(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"15")]})
        await send({"type": "http.response.body", "body": b'{"status":"ok"}'})

app = FastAPI()
if sys.argv[2] == "fastapi+mw":  # what src/stacklab/web/app.py's security_headers does
    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}

uvicorn.run(bare if sys.argv[2] == "asgi" else app, host="127.0.0.1", port=int(sys.argv[1]),
            log_level="warning", access_log=False, lifespan="off")
"""


def start_peer(variant: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", PEER_APP, str(port), variant], cwd=ROOT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"peer {variant} did not answer")


def pin_server(pid: int) -> None:
    subprocess.run(["taskset", "-a", "-p", "-c", SERVER_CPU, str(pid)], check=True, capture_output=True)


# main -----------------------------------------------------------------------------------------------------
async def bench(service: Service, secret: str, args: argparse.Namespace) -> None:
    learners = await asyncio.to_thread(launch_labs, service, secret, args.envs, args.launch_timeout)
    terminals = await open_terminals(service, learners, args.terminals)
    scripts = tempfile.mkdtemp(prefix="stacklab-bench-wrk-")
    try:
        if args.pin:
            pin_server(service.pid)
            print(f"server (pid {service.pid}, all threads) pinned to CPU {SERVER_CPU}; wrk to CPU {WRK_CPU}")
        paced_connections = math.ceil(args.rate / 10 * 1.1)
        print(
            f"paced: {paced_connections} connections, each pausing 100 ms between requests "
            f"(at most {paced_connections * 10:,} req/s); saturate: {args.connections} connections, no pause;"
            " "
            f"{args.duration:g} s each, wrk -t1; tokens of {len(learners)} learners rotated"
        )
        warm_up = argparse.Namespace(**{**vars(args), "duration": 3})
        await measure((service.url, service.pid), scripts, learners, "status", 16, 0, warm_up)
        print("(warm-up above, not counted)")
        print(
            f"{'mix':<9} {'kind':<8} {'conns':<5} {'rate':>8}"
            "       latency (wrk: request sent -> response read)"
        )
        runs: dict[tuple[str, bool], Run] = {}
        for paced in (True, False):
            for mode in ("healthz", "status", "activity", "mix"):
                connections = paced_connections if paced else args.connections
                runs[mode, paced] = await measure(
                    (service.url, service.pid),
                    scripts,
                    learners,
                    mode,
                    connections,
                    100 if paced else 0,
                    args,
                )
        print("peers, same wrk scripts (GET /healthz), separate processes, same uvicorn defaults:")
        for variant in PEERS:
            peer = await asyncio.to_thread(start_peer, variant)
            try:
                for paced in (True, False):
                    runs[variant, paced] = await measure(
                        (f"http://127.0.0.1:{peer[1]}", peer[0].pid),
                        scripts,
                        learners,
                        "healthz",
                        paced_connections if paced else args.connections,
                        100 if paced else 0,
                        args,
                        label=variant,
                    )
            finally:
                peer[0].terminate()
                peer[0].wait(10)
        alive = await still_answer(terminals)
        print(f"terminals still open and answering after the runs: {alive}/{len(terminals)}")
    finally:
        shutil.rmtree(scripts, ignore_errors=True)
        await asyncio.gather(*(t.close() for t in terminals), return_exceptions=True)

    names = {"status": "status GET", "activity": "activity POST", "mix": "90% GET / 10% POST"}
    rows = []
    for mode, name in names.items():
        paced, floor_paced = runs[mode, True], runs["healthz", True]
        ok = paced.rate >= args.rate and paced.p99_ms <= 50
        rows.append(
            (
                f"{name}, paced (~{args.rate:,} req/s offered), server CPU {paced.server_cpu:.0f}%",
                paced.figure(),
                f"{args.rate:,} req/s, p99 <= 50 ms ({'met' if ok else 'MISSED'})",
                f"healthz: {floor_paced.figure()}, CPU {floor_paced.server_cpu:.0f}%",
            )
        )
    for mode, name in names.items():
        sat, floor_sat = runs[mode, False], runs["healthz", False]
        rows.append(
            (
                f"{name}, saturated ({args.connections} conns), server CPU {sat.server_cpu:.0f}%",
                sat.figure(),
                f"{args.rate:,} req/s ({'met' if sat.rate >= args.rate else 'MISSED'})",
                f"healthz: {floor_sat.figure()}, CPU {floor_sat.server_cpu:.0f}%",
            )
        )
    for mode, name in names.items():
        sat, floor_sat = runs[mode, False], runs["healthz", False]
        cost = sat.server_cpu / 100 / sat.rate * 1000 if sat.rate else 0.0
        floor_cost = floor_sat.server_cpu / 100 / floor_sat.rate * 1000 if floor_sat.rate else 0.0
        rows.append(
            (
                f"{name}: server CPU per request (saturated)",
                f"{cost:.2f} ms",
                "-",
                f"healthz: {floor_cost:.2f} ms (auth + DB + JSON: +{cost - floor_cost:.2f} ms)",
            )
        )
    for variant, what in PEERS.items():
        paced, sat = runs[variant, True], runs[variant, False]
        rows.append(
            (
                f"peer GET /healthz: {what}",
                f"paced {paced.figure()}",
                "-",
                f"saturated: {sat.figure()}, CPU {sat.server_cpu:.0f}%",
            )
        )
    print()
    print_table(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", type=int, default=20, help="hello labs launched (distinct learner tokens)")
    parser.add_argument("--terminals", type=int, default=100, help="websocket terminals kept open")
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run")
    parser.add_argument("--rate", type=int, default=1000, help="target req/s (paced runs offer 10%% more)")
    parser.add_argument("--connections", type=int, default=32, help="connections of the saturation runs")
    parser.add_argument("--launch-timeout", type=float, default=300)
    parser.add_argument("--pin", action="store_true", help="pin the server to CPU 0 and wrk to CPU 1")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("the local (LXC) provider needs root")
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install -y wrk")
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.splitlines()
    print_machine(
        "learner API load benchmark (status GET / activity POST, 100 terminals open)",
        {
            "lxc": lxc_version(),
            "wrk": wrk_version[0].split(" Copyright")[0] if wrk_version else "?",
            "server": "stacklab serve (uvicorn, 1 process), SQLite (WAL)",
        },
        postgres=False,
    )
    secret = secrets.token_hex(20)
    service = Service("stacklab-bench-api-", {"STACKLAB_LMS_KEYS": json.dumps({LMS_ISSUER: secret})})
    try:
        service.start()
        asyncio.run(bench(service, secret, args))
    finally:
        service.cleanup()


if __name__ == "__main__":
    main()
