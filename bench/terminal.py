"""Browser terminal bridge benchmark: our websocket <-> asyncssh bridge against `ssh -tt` and webssh.

Everything runs against one LXC node of a copy of examples/hello.yaml (more memory, for 100+ shells), in the
same run: output throughput through a PTY (zeros and base64 text), keystroke echo latency, connect to
prompt, Ctrl-C after a flood with a client that renders at a browser's pace, server CPU per MiB, and server
memory per idle open session. Prints figures; never asserts. See bench/README.md, "terminal.py".

    .venv/bin/python bench/terminal.py            # as root, ~4 min; --mib 200 --keys 1000 --sessions 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, lxc_version, median, p50, p99, print_machine, print_table, verdict

IMAGE_DIR = os.environ.get("STACKLAB_IMAGE_DIR", "/var/lib/stacklab/images")
WEBSSH_VENV = Path(os.environ.get("STACKLAB_BENCH_WEBSSH_VENV", "/tmp/stacklab-bench-webssh-venv"))
SIGNER_SECRET = "bench-terminal-signing-secret"
PROMPT = re.compile(rb"\$ $")
START, END = b"__START__", b"__END__"
WORKLOADS = {
    "zeros": "head -c {mib}M /dev/zero",
    "text": "cat /dev/shm/bench-text",  # ~{mib} MiB of base64 (76 columns), written beforehand
}


# the bridge server (a subprocess: its CPU and memory are its own) ---------------------------------------
def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from stacklab.access.ssh import POOL
    from stacklab.config import Settings
    from stacklab.labs.catalog import LabCatalog
    from stacklab.web.context import WebContext
    from stacklab.web.terminal import TerminalSockets
    from stacklab.web.tokens import TokenSigner
    from stacklab.wiring import build_app

    if args.channels:
        POOL.max_channels = args.channels
    stack = build_app(
        Settings(data_dir=args.data_dir, image_dir=IMAGE_DIR, terminal_keep_s=5.0, activity_throttle_s=10.0)
    )
    web = TerminalSockets(
        None,
        WebContext(
            stack=stack,
            signer=TokenSigner(SIGNER_SECRET),
            catalog=LabCatalog(ROOT / "examples"),
            public_url=f"http://127.0.0.1:{args.port}",
            admin_password="x",
        ),
    )
    uvicorn.run(
        web,
        host="127.0.0.1",
        port=args.port,
        loop=args.loop,
        http="httptools",
        ws="websockets-sansio",
        ws_per_message_deflate=args.deflate,
        log_level="warning",
        lifespan="off",
    )


# process figures ------------------------------------------------------------------------------------------
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def status(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_port(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s")


# clients ------------------------------------------------------------------------------------------------
class Term:
    """A terminal session of one tool: send keys, receive output bytes."""

    name = "?"

    async def send(self, data: bytes) -> None:
        raise NotImplementedError

    async def recv(self) -> bytes:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def until(self, pattern: re.Pattern[bytes], timeout: float = 30) -> float:
        seen = b""
        async with asyncio.timeout(timeout):
            while not pattern.search(seen):
                seen = (seen + await self.recv())[-4096:]
        return time.perf_counter()


class BridgeTerm(Term):
    """Our protocol: binary frames both ways, acks every 64 KiB (after "rendering" at `render_mib_s`)."""

    name = "bridge"

    def __init__(self, ws, render_mib_s: float = 0) -> None:  # type: ignore[no-untyped-def]
        self.ws = ws
        self.offset = 0
        self.acked = 0
        self.render_s_per_byte = 1 / (render_mib_s * 1048576) if render_mib_s else 0.0

    @classmethod
    async def open(cls, url: str, compression: str | None = None, render_mib_s: float = 0) -> BridgeTerm:
        from websockets.asyncio.client import connect

        ws = await connect(url, compression=compression, max_size=None)
        term = cls(ws, render_mib_s)
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready", ready
        term.offset = ready["offset"]
        return term

    async def send(self, data: bytes) -> None:
        await self.ws.send(data)

    async def recv(self) -> bytes:
        while True:
            message = await self.ws.recv()
            if isinstance(message, bytes):
                break
        self.offset += len(message)
        if self.render_s_per_byte:
            await asyncio.sleep(len(message) * self.render_s_per_byte)
        if self.offset - self.acked >= 65536:
            self.acked = self.offset
            await self.ws.send(json.dumps({"type": "ack", "offset": self.offset}))
        return message

    async def close(self) -> None:
        await self.ws.close()


class WebsshTerm(Term):
    """webssh 1.6: POST the credentials, then a websocket; JSON {"data": ...} in, binary frames out."""

    name = "webssh"

    def __init__(self, ws, render_mib_s: float = 0) -> None:  # type: ignore[no-untyped-def]
        self.ws = ws
        self.render_s_per_byte = 1 / (render_mib_s * 1048576) if render_mib_s else 0.0

    @classmethod
    async def open(cls, port: int, target, render_mib_s: float = 0) -> WebsshTerm:  # type: ignore[no-untyped-def]
        from websockets.asyncio.client import connect

        form = urllib.parse.urlencode(
            {
                "hostname": target.host,
                "port": str(target.port),
                "username": target.user,
                "privatekey": target.private_key.reveal(),
                "term": "xterm-256color",
            }
        ).encode()

        def post() -> dict:  # type: ignore[type-arg]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", data=form, timeout=30) as response:
                return json.loads(response.read())  # type: ignore[no-any-return]

        result = await asyncio.to_thread(post)
        if not result.get("id"):
            raise RuntimeError(f"webssh refused: {result.get('status')}")
        ws = await connect(f"ws://127.0.0.1:{port}/ws?id={result['id']}", compression=None, max_size=None)
        return cls(ws, render_mib_s)

    async def send(self, data: bytes) -> None:
        await self.ws.send(json.dumps({"data": data.decode()}))

    async def recv(self) -> bytes:
        while True:
            message = await self.ws.recv()
            if isinstance(message, bytes):
                break
            message = message.encode()
            break
        if self.render_s_per_byte:
            await asyncio.sleep(len(message) * self.render_s_per_byte)
        return message

    async def close(self) -> None:
        await self.ws.close()


class SshTerm(Term):
    """OpenSSH `ssh -tt`: the floor. Reads its stdout pipe directly (no event loop in the way)."""

    name = "ssh -tt"

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.out = process.stdout.fileno()  # type: ignore[union-attr]
        self.inp = process.stdin.fileno()  # type: ignore[union-attr]

    @classmethod
    def spawn(cls, ssh: list[str], command: str | None = None) -> SshTerm:
        return cls(
            subprocess.Popen(
                [*ssh, *([command] if command else [])],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                bufsize=0,
            )
        )

    async def send(self, data: bytes) -> None:
        os.write(self.inp, data)

    def recv_sync(self) -> bytes:
        select.select([self.out], [], [], 30)
        data = os.read(self.out, 1 << 20)
        if not data:
            raise EOFError
        return data

    async def recv(self) -> bytes:
        return self.recv_sync()

    async def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


# measurements ---------------------------------------------------------------------------------------------
class Counter:
    """Counts output bytes between the START and END markers, and the time between them."""

    def __init__(self) -> None:
        self.carry = b""
        self.began: float | None = None
        self.count = 0
        self.seconds = 0.0

    def feed(self, data: bytes) -> bool:
        """True once END has arrived."""
        if self.began is None:
            buffered = self.carry + data
            at = buffered.find(START)
            if at < 0:
                self.carry = buffered[-len(START) :]
                return False
            self.began = time.perf_counter()
            data = buffered[at + len(START) :]
            self.carry = b""
        self.count += len(data)
        if END in self.carry + data[: len(END) + 16] or END in data:
            self.seconds = time.perf_counter() - self.began
            return True
        self.carry = data[-len(END) :]
        return False


async def throughput(term: Term, command: str) -> tuple[int, float]:
    """Bytes between the START and END markers of `command` in a shell, and the seconds they took."""
    await term.send(f"echo __STA''RT__; {command}; echo __EN''D__\r".encode())
    counter = Counter()
    while not counter.feed(await term.recv()):
        pass
    return counter.count, counter.seconds


def throughput_ssh(ssh: list[str], command: str) -> tuple[int, float]:
    term = SshTerm.spawn(ssh, f"echo __STA''RT__; {command}; echo __EN''D__")
    try:
        counter = Counter()
        while not counter.feed(term.recv_sync()):
            pass
        return counter.count, counter.seconds
    finally:
        term.process.kill()
        term.process.wait()


async def echo_latencies(term: Term, keys: int) -> list[float]:
    """One key at a time into bash's line editor, until its echo comes back ('a', then backspace)."""
    samples = []
    for index in range(keys + 20):
        key = b"a" if index % 2 == 0 else b"\x7f"
        began = time.perf_counter()
        await term.send(key)
        await term.recv()
        if index >= 20:  # warm-up
            samples.append(time.perf_counter() - began)
    return samples


async def ctrl_c_after_flood(term: Term, flood_s: float = 1.0) -> float:
    """Seconds from Ctrl-C (after `flood_s` of `yes`) until the next command's output arrives."""
    await term.send(b"yes\r")
    deadline = time.perf_counter() + flood_s
    while time.perf_counter() < deadline:
        await term.recv()
    began = time.perf_counter()
    await term.send(b"\x03")
    await term.send(b"echo __EN''D__\r")
    await term.until(re.compile(re.escape(END)), timeout=120)
    return time.perf_counter() - began


async def asyncssh_to_prompt(target, plain: bool = False) -> float:  # type: ignore[no-untyped-def]
    """The floor for connect-to-prompt: asyncssh in this process, no web, no database; through our
    `connect` (quick ACKs, AES-GCM first) or, with `plain`, asyncssh's defaults (the peer of that choice)."""
    import asyncssh

    from stacklab.access.ssh import connect

    async def plain_connect(target, timeout_s: float):  # type: ignore[no-untyped-def]
        key = asyncssh.import_private_key(target.private_key.reveal())
        return await asyncssh.connect(
            target.host,
            port=target.port,
            username=target.user,
            client_keys=[key],
            known_hosts=None,
            agent_path=None,
            config=[],
        )

    began = time.perf_counter()
    prompt = asyncio.Event()
    seen = bytearray()

    class Shell(asyncssh.SSHClientSession[bytes]):
        def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
            seen.extend(data)
            if PROMPT.search(seen[-64:]):
                prompt.set()

    conn = await (plain_connect if plain else connect)(target, 10)
    await conn.create_session(Shell, term_type="xterm-256color", term_size=(120, 40), encoding=None)
    await asyncio.wait_for(prompt.wait(), 30)
    elapsed = time.perf_counter() - began
    conn.close()
    return elapsed


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_bridge(data_dir: str, loop: str, deflate: bool, name: str, channels: int = 0) -> Server:
    """A bridge server process; `channels` caps the shells per SSH connection (1: one login per shell,
    as for shells of different learners; 0: the default sharing)."""
    port = free_port()
    command = [
        sys.executable,
        __file__,
        "--serve",
        "--data-dir",
        data_dir,
        "--port",
        str(port),
        "--loop",
        loop,
    ]
    if deflate:
        command.append("--deflate")
    if channels:
        command.extend(["--channels", str(channels)])
    return Server(name, subprocess.Popen(command, cwd=ROOT), port)


def ensure_webssh() -> Path | None:
    wssh = WEBSSH_VENV / "bin" / "wssh"
    if not wssh.exists():
        print(f"installing webssh into {WEBSSH_VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(WEBSSH_VENV)], check=True)
        result = subprocess.run(
            [str(WEBSSH_VENV / "bin" / "pip"), "install", "-q", "webssh"], capture_output=True, text=True
        )
        if result.returncode != 0:
            print(f"webssh could not be installed: {result.stderr.strip()[-300:]}")
            return None
    return wssh


def start_webssh(wssh: Path, work: Path) -> Server:
    """webssh with host key files of its own: a node address reused by another run (or by ~/.ssh's
    known_hosts) must not fail its host key check."""
    port = free_port()
    hosts = work / "webssh_known_hosts"
    hosts.touch()
    command = [
        str(wssh),
        "--address=127.0.0.1",
        f"--port={port}",
        "--xsrf=False",
        "--policy=autoadd",
        f"--hostfile={hosts}",
        f"--syshostfile={hosts}",
        "--maxconn=1000",
        "--logging=warning",
        "--delay=30",
    ]
    return Server("webssh", subprocess.Popen(command, stdout=subprocess.DEVNULL), port)


def webssh_version(wssh: Path) -> str:
    pip = wssh.parent / "pip"
    out = subprocess.run([str(pip), "list"], capture_output=True, text=True).stdout
    found = {line.split()[0].lower(): line.split()[1] for line in out.splitlines()[2:] if line.split()}
    names = ("webssh", "tornado", "paramiko")
    return ", ".join(f"{name} {found.get(name, '?')}" for name in names)


# the run --------------------------------------------------------------------------------------------------
async def run(args: argparse.Namespace) -> None:
    import asyncssh
    import fastapi
    import uvicorn
    import websockets
    import yaml

    from stacklab.config import Settings
    from stacklab.types import Desired, Observed
    from stacklab.web.tokens import TokenSigner
    from stacklab.wiring import build_app

    wssh = None if args.skip_webssh else ensure_webssh()
    extra = {
        "lxc": lxc_version(),
        "openssh": subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip(),
        "bridge": f"asyncssh {asyncssh.__version__}, fastapi {fastapi.__version__}, "
        f"uvicorn {uvicorn.__version__} (uvloop, httptools, websockets-sansio), "
        f"websockets {websockets.__version__}",
        "peer": webssh_version(wssh) if wssh else "webssh skipped",
    }
    print_machine("browser terminal bridge benchmark", extra, postgres=False)

    work = Path(tempfile.mkdtemp(prefix="stacklab-bench-term-", dir="/var/tmp"))
    work.chmod(0o755)
    lab = yaml.safe_load((ROOT / "examples" / "hello.yaml").read_text())
    lab["local"]["nodes"][0]["memory_mb"] = 4096  # room for 200+ login shells (and the text file)
    lab["local"]["nodes"][0]["pids_max"] = 16384  # each login takes ~20 pids (sshd, PAM, bash)
    lab_path = work / "hello-bench.yaml"
    lab_path.write_text(yaml.safe_dump(lab))
    data_dir = work / "data"
    app = build_app(Settings(data_dir=str(data_dir), image_dir=IMAGE_DIR, poll_interval_s=0.2))
    servers: list[Server] = []
    env_id = None
    rows: list[list[str]] = []
    try:
        record = app.environments.launch(lab_path, learner="bench", course="bench")
        env_id = record.id
        began = time.perf_counter()
        record = await app.environments.drive(env_id, 300)
        if record.observed != Observed.RUNNING:
            raise RuntimeError(f"the lab did not start: {record.observed} {record.last_error}")
        print(f"lab {env_id} running after {time.perf_counter() - began:.1f} s; node main at {record.nodes}")
        target = app.controller.targets(record, app.environments.lab_of(record))["main"]
        keyfile = work / "id"
        keyfile.write_text(target.private_key.reveal())
        keyfile.chmod(0o600)
        ssh = [
            "ssh", "-tt", "-q", "-i", str(keyfile), "-p", str(target.port),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", f"{target.user}@{target.host}",
        ]  # fmt: skip
        signer = TokenSigner(SIGNER_SECRET)
        token = signer.issue("learner", "bench", env_id, 3600)

        bridge = start_bridge(str(data_dir), "uvloop", False, "bridge")
        own = start_bridge(str(data_dir), "uvloop", False, "bridge, a login per shell", channels=1)
        servers.extend([bridge, own])
        variants = [bridge]
        if not args.quick:
            variants.append(start_bridge(str(data_dir), "asyncio", False, "bridge, asyncio loop"))
            variants.append(start_bridge(str(data_dir), "uvloop", True, "bridge, deflate on"))
            servers.extend(variants[1:])
        webssh = start_webssh(wssh, work) if wssh else None
        if webssh:
            servers.append(webssh)
        for server in servers:
            await wait_port(server.port)

        def bridge_url(server: Server, session: str | None = None) -> str:
            return (
                f"ws://127.0.0.1:{server.port}/api/v1/environments/{env_id}/terminal/main"
                f"?token={token}&session={session or uuid.uuid4().hex[:12]}&cols=120&rows=40"
            )

        async def open_bridge(server: Server, render_mib_s: float = 0) -> BridgeTerm:
            compression = "deflate" if "deflate" in server.name else None
            term = await BridgeTerm.open(bridge_url(server), compression, render_mib_s)
            await term.until(PROMPT)
            return term

        async def open_webssh(render_mib_s: float = 0, server: Server | None = None) -> WebsshTerm:
            server = server or webssh
            assert server is not None
            term = await WebsshTerm.open(server.port, target, render_mib_s)
            await term.until(PROMPT)
            return term

        # 1. throughput --------------------------------------------------------------------------------
        raw = max(1, args.mib * 3 // 4)
        made = await app.environments.exec(
            env_id, f"head -c {raw}M /dev/urandom | base64 > /dev/shm/bench-text", "main"
        )
        if made.exit_status != 0:
            raise RuntimeError(f"could not write the text file on the node: {made.stderr}")
        results: dict[tuple[str, str], list[float]] = {}
        cpu: dict[tuple[str, str], list[float]] = {}
        print(f"\nthroughput: {args.mib} MiB per run, {args.runs} runs, median", flush=True)
        for workload, template in WORKLOADS.items():
            command = template.format(mib=args.mib, raw=raw)
            for round_ in range(args.runs):
                order: list[Server | None] = [None, *variants, *([webssh] if webssh else [])]
                if round_ % 2:
                    order.reverse()
                for server in order:
                    if server is None:
                        count, seconds = await asyncio.to_thread(throughput_ssh, ssh, command)
                        name, used = "ssh -tt", None
                    else:
                        term: Term = await open_webssh() if server is webssh else await open_bridge(server)
                        before = cpu_s(server.pid)
                        count, seconds = await asyncio.wait_for(throughput(term, command), 300)
                        used = cpu_s(server.pid) - before
                        await term.close()
                        name = server.name
                    mib_s = count / seconds / 1048576
                    results.setdefault((name, workload), []).append(mib_s)
                    if used is not None:
                        cpu.setdefault((name, workload), []).append(used / (count / 1048576) * 200)
                    print(
                        f"  {workload:<5} {name:<22} {count / 1048576:7.1f} MiB in {seconds:6.2f} s = "
                        f"{mib_s:6.1f} MiB/s" + (f", server CPU {used:.2f} s" if used is not None else ""),
                        flush=True,
                    )

        # 2. echo latency ------------------------------------------------------------------------------
        print(f"\necho: {args.keys} keys per tool", flush=True)
        echo: dict[str, list[float]] = {}
        floor = SshTerm.spawn(ssh)
        await floor.until(PROMPT)
        echo["ssh -tt"] = await echo_latencies(floor, args.keys)
        await floor.close()
        term = await open_bridge(bridge)
        echo["bridge"] = await echo_latencies(term, args.keys)
        await term.close()
        if webssh:
            term = await open_webssh()
            echo["webssh"] = await echo_latencies(term, args.keys)
            await term.close()
        for name, samples in echo.items():
            print(f"  {name:<8} p50 {p50(samples) * 1000:.3f} ms, p99 {p99(samples) * 1000:.3f} ms")

        # 3. connect to prompt -------------------------------------------------------------------------
        print("\nconnect to prompt: 10 fresh sessions per tool (websocket/HTTP + SSH + login + prompt)")
        connect: dict[str, list[float]] = {"ssh -tt": [], "bridge": [], "bridge, 2nd shell": [], "webssh": []}
        reattach: list[float] = []
        anchor = await open_bridge(bridge)  # the node's shared connection stays up: later shells are 2nd tabs
        for _ in range(10):
            began = time.perf_counter()
            floor = SshTerm.spawn(ssh)
            connect["ssh -tt"].append(await floor.until(PROMPT) - began)
            await floor.close()
            session = uuid.uuid4().hex[:12]
            began = time.perf_counter()
            term = await BridgeTerm.open(bridge_url(own, session))  # a new login: nothing to share
            connect["bridge"].append(await term.until(PROMPT) - began)
            offset = term.offset
            await term.close()
            began = time.perf_counter()
            term = await BridgeTerm.open(bridge_url(own, session) + f"&offset={offset}")
            reattach.append(time.perf_counter() - began)
            await term.close()
            began = time.perf_counter()
            term = await BridgeTerm.open(bridge_url(bridge))
            connect["bridge, 2nd shell"].append(await term.until(PROMPT) - began)
            await term.close()
            if webssh:
                began = time.perf_counter()
                term = await WebsshTerm.open(webssh.port, target)
                connect["webssh"].append(await term.until(PROMPT) - began)
                await term.close()
        for _ in range(10):
            connect.setdefault("asyncssh alone", []).append(await asyncssh_to_prompt(target))
            connect.setdefault("asyncssh defaults", []).append(await asyncssh_to_prompt(target, plain=True))
        for name, samples in connect.items():
            if samples:
                each = ", ".join(f"{s * 1000:.0f}" for s in samples)
                print(f"  {name:<18} median {median(samples) * 1000:.1f} ms ({each})")
        print(
            f"  bridge re-attach to a kept session (ready received): median {median(reattach) * 1000:.1f} ms"
        )

        # 4. Ctrl-C after a flood, client rendering at a browser's pace ---------------------------------
        print(f"\nCtrl-C after 1 s of `yes`, client rendering at {args.render_mib_s:g} MiB/s: 3 runs")
        interrupt: dict[str, list[float]] = {"bridge": [], "webssh": []}
        for _ in range(3):
            term = await open_bridge(bridge, args.render_mib_s)
            interrupt["bridge"].append(await ctrl_c_after_flood(term))
            await term.close()
            if webssh:
                term = await open_webssh(args.render_mib_s)
                interrupt["webssh"].append(await ctrl_c_after_flood(term))
                await term.close()
        for name, samples in interrupt.items():
            if samples:
                print(f"  {name:<8} {', '.join(f'{s * 1000:.0f} ms' for s in samples)}")

        # 5. memory per idle open session ----------------------------------------------------------------
        # Fresh server processes: one that moved 200 MiB has free heap that new sessions reuse unseen.
        # Two batches: the second is the steady cost (the first also pays one-time growth).
        await anchor.close()
        for server in servers:
            server.stop()
        fresh = [
            start_bridge(str(data_dir), "uvloop", False, own.name, channels=1),
            start_bridge(str(data_dir), "uvloop", False, bridge.name),
            *([start_webssh(wssh, work)] if wssh else []),
        ]
        servers.extend(fresh)
        for server in fresh:
            await wait_port(server.port)
        print(
            f"\nmemory: 2 x {args.sessions} idle open sessions per tool, fresh server processes "
            "(server RSS growth / sessions: first batch, then the steady second batch)"
        )
        memory: dict[str, tuple[float, int, int]] = {}
        for server in fresh:
            opener: Callable[[], object] = (
                (lambda s=server: open_webssh(server=s))
                if server.name == "webssh"
                else (lambda s=server: open_bridge(s))
            )
            terms = [await opener() for _ in range(10)]  # type: ignore[misc]
            await asyncio.sleep(1)
            rss = [status(server.pid, "VmRSS")]
            threads0 = status(server.pid, "Threads")
            for _ in range(2):
                terms += [await opener() for _ in range(args.sessions)]  # type: ignore[misc]
                await asyncio.sleep(2)
                rss.append(status(server.pid, "VmRSS"))
            threads1 = status(server.pid, "Threads")
            first, steady = ((rss[i + 1] - rss[i]) / args.sessions for i in range(2))
            memory[server.name] = (steady, threads0, threads1)
            print(
                f"  {server.name:<26} RSS {' -> '.join(f'{r / 1024:.1f}' for r in rss)} MiB: "
                f"{first:.1f}, then {steady:.1f} KiB per session; threads {threads0} -> {threads1}",
                flush=True,
            )
            for term in terms:
                await term.close()  # type: ignore[attr-defined]

        # the table ------------------------------------------------------------------------------------
        def med(name: str, workload: str) -> float:
            return median(results[(name, workload)])

        for workload in WORKLOADS:
            floor_mib = med("ssh -tt", workload)
            ours = med("bridge", workload)
            peer = med("webssh", workload) if webssh else None
            rows.append(
                [
                    f"throughput {workload}, bridge (MiB/s)",
                    f"{ours:.1f} ({ours / floor_mib:.0%} of ssh -tt"
                    + (f", {ours / peer:.2f}x webssh)" if peer else ")"),
                    f">= 90% ssh -tt ({verdict(ours, 0.9 * floor_mib, False)})"
                    + (f", >= 1.5x webssh ({verdict(ours, 1.5 * peer, False)})" if peer else ""),
                    f"ssh -tt {floor_mib:.1f}" + (f"; webssh {peer:.1f}" if peer else ""),
                ]
            )
            for server in variants[1:]:
                value = med(server.name, workload)
                rows.append([f"throughput {workload}, {server.name}", f"{value:.1f}", "-", "(variant)"])
            rows.append(
                [
                    f"server CPU per 200 MiB {workload}",
                    f"{median(cpu[('bridge', workload)]):.2f} s",
                    "-",
                    f"webssh {median(cpu[('webssh', workload)]):.2f} s" if webssh else "-",
                ]
            )
        floor_echo = echo["ssh -tt"]
        ours_echo = echo["bridge"]
        rows.append(
            [
                "echo p50",
                f"{p50(ours_echo) * 1000:.3f} ms",
                f"<= floor + 0.3 ms ({verdict(p50(ours_echo), p50(floor_echo) + 0.0003)})",
                f"ssh -tt {p50(floor_echo) * 1000:.3f} ms"
                + (f"; webssh {p50(echo['webssh']) * 1000:.3f} ms" if webssh else ""),
            ]
        )
        rows.append(
            [
                "echo p99",
                f"{p99(ours_echo) * 1000:.3f} ms",
                f"<= 1 ms ({verdict(p99(ours_echo), 0.001)})",
                f"ssh -tt {p99(floor_echo) * 1000:.3f} ms"
                + (f"; webssh {p99(echo['webssh']) * 1000:.3f} ms" if webssh else ""),
            ]
        )
        rows.append(
            [
                "connect to prompt (median)",
                f"{median(connect['bridge']) * 1000:.0f} ms",
                f"<= 100 ms ({verdict(median(connect['bridge']), 0.1)})",
                f"asyncssh alone {median(connect['asyncssh alone']) * 1000:.0f} ms "
                f"(asyncssh defaults {median(connect['asyncssh defaults']) * 1000:.0f} ms); "
                f"ssh -tt {median(connect['ssh -tt']) * 1000:.0f} ms (incl. process start)"
                + (f"; webssh {median(connect['webssh']) * 1000:.0f} ms" if webssh else ""),
            ]
        )
        rows.append(
            [
                "connect, 2nd shell on a node (shared)",
                f"{median(connect['bridge, 2nd shell']) * 1000:.0f} ms",
                "-",
                "-",
            ]
        )
        rows.append(["re-attach to a kept session", f"{median(reattach) * 1000:.1f} ms", "-", "-"])
        rows.append(
            [
                f"Ctrl-C after flood, {args.render_mib_s:g} MiB/s client",
                f"{median(interrupt['bridge']) * 1000:.0f} ms",
                "-",
                f"webssh {median(interrupt['webssh']) * 1000:.0f} ms" if webssh else "-",
            ]
        )
        per, t0, t1 = memory[own.name]
        rows.append(
            [
                "server memory per idle open session",
                f"{per:.1f} KiB (threads {t0} -> {t1}); shells sharing a node's connection "
                f"{memory[bridge.name][0]:.1f} KiB",
                f"<= 50 KiB ({verdict(per, 50)})",
                (lambda m: f"webssh {m[0]:.1f} KiB (threads {m[1]} -> {m[2]})")(memory["webssh"])
                if webssh
                else "-",
            ]
        )
        print()
        print_table(rows)
    finally:
        for server in servers:
            server.stop()
        if env_id is not None:
            app.environments.request(env_id, Desired.DELETED, "BenchmarkDone")
            await app.environments.drive(env_id, 120)
        app.close()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mib", type=int, default=200, help="output per throughput run (MiB)")
    parser.add_argument("--runs", type=int, default=3, help="throughput runs per tool and workload")
    parser.add_argument("--keys", type=int, default=1000, help="keys per echo measurement")
    parser.add_argument("--sessions", type=int, default=100, help="idle sessions for the memory figure")
    parser.add_argument("--render-mib-s", type=float, default=4.0, help="client render speed for Ctrl-C")
    parser.add_argument("--skip-webssh", action="store_true", help="no peer (no pip install)")
    parser.add_argument("--quick", action="store_true", help="no bridge variants (asyncio loop, deflate)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--loop", default="uvloop", help=argparse.SUPPRESS)
    parser.add_argument("--deflate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--channels", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return
    if os.geteuid() != 0:
        sys.exit("terminal benchmark: needs root (LXC nodes)")
    try:
        import uvloop

        uvloop.run(run(args))
    except ImportError:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
