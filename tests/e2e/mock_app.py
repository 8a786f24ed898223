"""A stand-in for the stacklab service that speaks docs/web-protocol.md, for fast browser tests of the pages.

It serves the real static pages and fakes the rest: an environment whose progress advances with time, checks
that look for files in a temporary home, an operator list, and a terminal websocket bridged to a real local
shell in a pseudo-terminal (kept per session across reconnects, with an output log for replays). Test hooks
under /mock/ suspend the environment (closing terminals with 4409) or drop every websocket.

Run by hand: python -m tests.e2e.mock_app PORT
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import signal
import struct
import sys
import tempfile
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, HTTPException, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parents[2] / "src" / "stacklab" / "web" / "static"
ENV_ID = "e-mock1"
TOKEN = "mock-learner-token"
ADMIN_TOKEN = "mock-admin-token"
STEP_S = 0.6


@dataclass
class Shell:
    pid: int
    fd: int
    log: bytearray = field(default_factory=bytearray)
    clients: set[WebSocket] = field(default_factory=set)
    alive: bool = True


@dataclass
class MockState:
    home: Path
    progress: str = "queued"
    since: float = field(default_factory=time.time)
    resumed_from_suspend: bool = False
    fail_next: bool = False
    nodes: list[str] = field(default_factory=lambda: ["main"])
    shells: dict[tuple[str, str], Shell] = field(default_factory=dict)
    sockets: set[WebSocket] = field(default_factory=set)
    tokens_issued: int = 0
    acks: list[int] = field(default_factory=list)
    resizes: list[tuple[int, int]] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    last_report: dict | None = None
    course_name: str | None = "Linux for beginners"
    # An injected fault: API calls whose path has `path` answer `status`, `times` times (-1: until cleared).
    fault: dict | None = None


def create_app() -> FastAPI:
    app = FastAPI()
    state = MockState(home=Path(tempfile.mkdtemp(prefix="stacklab-mock-home-")))
    app.state.mock = state

    @app.middleware("http")
    async def inject_fault(request: Request, call_next):  # type: ignore[no-untyped-def]
        """Fail as the service does: a `{"detail", "request_id"}` body and the X-Request-ID header."""
        fault = state.fault
        if fault and request.url.path.startswith("/api/") and fault["path"] in request.url.path:
            if fault["times"] > 0:
                fault["times"] -= 1
            if fault["times"] == 0:
                state.fault = None
            request_id = f"mockreq{fault['status']:x}"  # no status digits in it
            detail = f"HTTP {fault['status']} technical detail at {request.url.path}"
            body = {"detail": detail, "request_id": request_id}
            return JSONResponse(body, status_code=fault["status"], headers={"X-Request-ID": request_id})
        return await call_next(request)

    def auth(request: Request | WebSocket, admin: bool = False) -> None:
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else request.query_params.get("token")
        valid = {ADMIN_TOKEN} if admin else {ADMIN_TOKEN, TOKEN} | {f"{TOKEN}-{n}" for n in range(100)}
        if token not in valid and not (not admin and token and token.endswith(".mock")):
            raise HTTPException(401, "bad token")

    def advance() -> None:
        elapsed = time.time() - state.since
        if state.progress in ("queued", "creating", "booting", "resuming"):
            order = ["queued", "creating", "booting", "ready"]
            if state.progress == "resuming":
                if elapsed > STEP_S:
                    state.progress = "ready"
                return
            if state.fail_next and elapsed > STEP_S:
                state.progress = "failed"
                state.fail_next = False
                return
            index = min(int(elapsed / STEP_S), 3)
            state.progress = order[max(order.index(state.progress), index)]

    def status() -> dict:
        advance()
        return {
            "id": ENV_ID,
            "course": "course-v1:Demo+Linux+2026",
            **({"course_name": state.course_name} if state.course_name else {}),
            "lab": "hello-lab",
            "learner": "demo",
            "title": "Hello, lab",
            "description": "Your first lab.\nCreate a greeting file, then add a user.",
            "desired": "running",
            "observed": "running" if state.progress == "ready" else "creating",
            "progress": state.progress,
            "ready": state.progress == "ready",
            "nodes": state.nodes,
            "message": "We could not start your lab. Please try again."
            if state.progress == "failed"
            else None,
        }

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/demo", include_in_schema=False)
    def demo() -> RedirectResponse:
        return RedirectResponse(f"/lab/{ENV_ID}#token={TOKEN}")

    @app.get("/lab/{env}", include_in_schema=False)
    def lab_page(env: str) -> FileResponse:
        return FileResponse(STATIC / "lab.html")

    @app.get("/admin", include_in_schema=False)
    def admin_page() -> FileResponse:
        return FileResponse(STATIC / "admin.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/v1/environments/{env}")
    def get_status(env: str, request: Request) -> dict:
        auth(request)
        return status()

    @app.post("/api/v1/environments/{env}/resume")
    def resume(env: str, request: Request) -> dict:
        auth(request)
        state.actions.append("resume")
        if state.progress == "suspended":
            state.progress, state.since = "resuming", time.time()
        elif state.progress in ("failed", "deleted"):
            state.progress, state.since = "queued", time.time()
        return status()

    @app.post("/api/v1/environments/{env}/reset")
    async def reset(env: str, request: Request) -> dict:
        auth(request)
        state.actions.append("reset")
        await close_all(4409)
        for shell in state.shells.values():
            kill(shell)
        state.shells.clear()
        for item in state.home.iterdir():
            if item.is_dir():
                item.rmdir()
            else:
                item.unlink()
        state.progress, state.since = "queued", time.time()
        return status()

    @app.post("/api/v1/environments/{env}/token")
    def token(env: str, request: Request) -> dict:
        auth(request)
        state.tokens_issued += 1
        return {"token": f"{TOKEN}-{state.tokens_issued % 100}", "expires_at": time.time() + 3600}

    @app.get("/api/v1/environments/{env}/checks")
    def last_checks(env: str, request: Request) -> dict:
        auth(request)
        report = state.last_report
        return {"latest": report, "counted_score": report["counted_score"] if report else None}

    @app.post("/api/v1/environments/{env}/checks")
    def checks(env: str, request: Request) -> dict:
        auth(request)
        hello = state.home / "hello.txt"
        passed = hello.exists() and hello.read_text().strip() == "hello world"
        alice = (state.home / "alice").exists()
        results = [
            {
                "name": "hello-file",
                "node": "main",
                "passed": passed,
                "weight": 2,
                "output": "",
                "hint": 'Create ~/hello.txt containing exactly "hello world"',
            },
            {
                "name": "user-alice",
                "node": "main",
                "passed": alice,
                "weight": 1,
                "output": "" if alice else "id: 'alice': no such user",
                "hint": "Add a user alice with a home directory",
            },
        ]
        score = 2 * passed + 1 * alice
        state.last_report = {"results": results, "score": score, "max_score": 3, "counted_score": score}
        return state.last_report

    @app.get("/api/v1/admin/environments")
    def admin_list(request: Request, course: str = "", state_: str = Query("", alias="state")) -> list[dict]:
        auth(request, admin=True)
        now = time.time()
        envs = [
            {
                "id": ENV_ID,
                "course": "demo",
                "lab": "hello-lab",
                "learner": "demo",
                "desired": "running",
                "observed": "running",
                "progress": "ready",
                "provider": "local",
                "created_at": now - 3600,
                "last_activity_at": now - 30,
                "last_error": None,
                "last_reason": "learner opened the lab",
            },
            {
                "id": "e-mock2",
                "course": "c1",
                "lab": "cluster-lab",
                "learner": "ann",
                "desired": "running",
                "observed": "failed",
                "progress": "failed",
                "provider": "local",
                "created_at": now - 7200,
                "last_activity_at": None,
                "last_error": "launch timed out after 300 s",
                "last_reason": "launch timeout",
            },
        ]
        return [
            e
            for e in envs
            if (not course or e["course"] == course) and (not state_ or e["observed"] == state_)
        ]

    @app.get("/api/v1/admin/environments/{env}")
    def admin_detail(env: str, request: Request) -> dict:
        auth(request, admin=True)
        now = time.time()
        return {
            "id": env,
            "course": "demo",
            "lab": "hello-lab",
            "learner": "demo",
            "desired": "running",
            "observed": "running",
            "provider": "local",
            "created_at": now - 3600,
            "history": [
                {"at": now - 3600, "kind": "desired", "from": None, "to": "running", "reason": "launch"},
                {"at": now - 3590, "kind": "observed", "from": "new", "to": "running", "reason": "created"},
            ],
        }

    @app.post("/api/v1/admin/environments/{env}/{action}")
    def admin_action(env: str, action: str, request: Request) -> dict:
        auth(request, admin=True)
        state.actions.append(f"admin-{action}-{env}")
        return {"id": env}

    @app.get("/api/v1/admin/audit")
    def admin_audit(request: Request) -> list[dict]:
        """The operator actions taken through the mock so far, newest first, as the audit log lists them."""
        auth(request, admin=True)
        done = [a.split("-", 2) for a in state.actions if a.startswith("admin-")]
        return [
            {
                "id": n,
                "at": time.time(),
                "operator": "mock",
                "action": action,
                "env_id": env,
                "target": "",
                "detail": "",
            }
            for n, (_, action, env) in reversed(list(enumerate(done, 1)))
        ]

    # ---- test hooks ----
    @app.post("/mock/suspend")
    async def mock_suspend(how: str = "4409") -> dict:
        """Suspend: terminals are closed with 4409, or (how=closed) their shells end, as the service's do."""
        state.progress, state.since = "suspended", time.time()
        if how == "closed":
            for shell in list(state.shells.values()):
                for ws in list(shell.clients):
                    await send_closed(ws, "the environment was stopped")
                kill(shell)
            state.shells.clear()
        await close_all(4409)
        return {}

    @app.post("/mock/take")
    async def mock_take() -> dict:
        """Another tab takes the shells over."""
        for shell in state.shells.values():
            for ws in list(shell.clients):
                shell.clients.discard(ws)
                await send_closed(ws, "the terminal was opened in another tab")
        return {}

    @app.post("/mock/reset")
    async def mock_reset() -> dict:
        await close_all(1001)
        for shell in state.shells.values():
            kill(shell)
        state.shells.clear()
        for item in state.home.iterdir():
            if item.is_dir():
                item.rmdir()
            else:
                item.unlink()
        state.progress, state.since, state.fail_next = "queued", time.time(), False
        state.nodes, state.last_report = ["main"], None
        state.course_name, state.fault = "Linux for beginners", None
        state.acks.clear()
        state.resizes.clear()
        state.actions.clear()
        return {}

    @app.post("/mock/drop")
    async def mock_drop() -> dict:
        await close_all(1011)
        return {}

    @app.post("/mock/fail-next")
    def mock_fail_next() -> dict:
        state.fail_next = True
        state.progress, state.since = "queued", time.time()
        return {}

    @app.post("/mock/fault")
    async def mock_fault(request: Request) -> dict:
        """Body `{status, path, times}`; `{}` clears the fault."""
        body = await request.json()
        state.fault = {"path": "", "times": -1, **body} if body else None
        return {}

    @app.post("/mock/course-name")
    async def mock_course_name(request: Request) -> dict:
        state.course_name = (await request.json())["name"]
        return {}

    @app.post("/mock/nodes")
    async def mock_nodes(request: Request) -> dict:
        state.nodes = (await request.json())["nodes"]
        return {}

    @app.get("/mock/state")
    def mock_state() -> dict:
        return {
            "acks": state.acks[-5:],
            "resizes": state.resizes[-5:],
            "actions": state.actions,
            "sessions": [list(k) for k in state.shells],
            "tokens_issued": state.tokens_issued,
        }

    async def close_all(code: int) -> None:
        for ws in list(state.sockets):
            with contextlib.suppress(Exception):
                await ws.close(code)
        state.sockets.clear()

    def kill(shell: Shell) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(shell.fd)
        with contextlib.suppress(ProcessLookupError):
            os.kill(shell.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.close(shell.fd)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(shell.pid, os.WNOHANG)
        shell.alive = False

    def spawn(cols: int, rows: int) -> Shell:
        pid, fd = pty.fork()
        if pid == 0:  # child: a plain shell in the fake home
            os.environ.update(HOME=str(state.home), PS1="learner@main:\\w$ ", TERM="xterm-256color")
            os.chdir(state.home)
            os.execvp("bash", ["bash", "--noprofile", "--norc", "-i"])
        set_size(fd, cols, rows)
        shell = Shell(pid, fd)
        loop = asyncio.get_running_loop()

        def readable() -> None:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(fd)
                shell.alive = False
                for ws in list(shell.clients):
                    spawn_task(send_closed(ws))
                return
            shell.log += data
            for ws in list(shell.clients):
                spawn_task(ws.send_bytes(data))

        loop.add_reader(fd, readable)
        return shell

    tasks: set[asyncio.Task] = set()

    def spawn_task(coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def send_closed(ws: WebSocket, reason: str = "the shell exited") -> None:
        with contextlib.suppress(Exception):
            await ws.send_text(json.dumps({"type": "closed", "reason": reason}))
            await ws.close(1000)

    @app.websocket("/api/v1/environments/{env}/terminal/{node}")
    async def terminal(ws: WebSocket, env: str, node: str) -> None:
        q = ws.query_params
        await ws.accept()
        try:
            auth(ws)
        except HTTPException:
            await ws.close(4401)
            return
        if node not in state.nodes:
            await ws.close(4404)
            return
        if status()["progress"] != "ready":
            await ws.close(4409)
            return
        key = (q.get("session", ""), node)
        shell = state.shells.get(key)
        if shell is None or not shell.alive:
            shell = spawn(int(q.get("cols", 80)), int(q.get("rows", 24)))
            state.shells[key] = shell
        offset = min(int(q.get("offset", 0)), len(shell.log))
        state.sockets.add(ws)
        await ws.send_text(json.dumps({"type": "ready", "offset": offset}))
        if offset < len(shell.log):
            await ws.send_bytes(bytes(shell.log[offset:]))
        shell.clients.add(ws)
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("bytes") is not None:
                    os.write(shell.fd, message["bytes"])
                elif message.get("text"):
                    msg = json.loads(message["text"])
                    if msg["type"] == "ack":
                        state.acks.append(msg["offset"])
                    elif msg["type"] == "resize":
                        state.resizes.append((msg["cols"], msg["rows"]))
                        set_size(shell.fd, msg["cols"], msg["rows"])
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            shell.clients.discard(ws)
            state.sockets.discard(ws)

    return app


def set_size(fd: int, cols: int, rows: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
