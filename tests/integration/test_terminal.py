"""The browser terminal bridge on a real LXC node with a real sshd: websocket <-> asyncssh shell.

One environment (examples/hello.yaml) serves the whole module; each test serves the terminal router with
uvicorn on 127.0.0.1 (a free port) in its own event loop and talks to it with the `websockets` client, as a
browser would: binary frames for bytes, JSON text frames for control, acks as output is "rendered".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
import pytest
from tests.support.lxc import IMAGE_DIR, require_lxc, run_sync, sweep_stacks
from tests.support.terminals import FRAMES, refusal, serve_asgi, terminal
from websockets.exceptions import ConnectionClosed

from stacklab.access import terminal as sessions
from stacklab.access.ssh import POOL, ConnectionPool, Target, open_channel, run
from stacklab.access.ssh import connect as ssh_connect
from stacklab.config import Settings
from stacklab.labs.catalog import LabCatalog
from stacklab.types import Desired, Observed
from stacklab.web.context import WebContext
from stacklab.web.terminal import TerminalSockets
from stacklab.web.tokens import TokenSigner
from stacklab.wiring import App, build_app

pytestmark = pytest.mark.lxc

REPO = Path(__file__).resolve().parents[2]
SECRET = "terminal-test-signing-secret"
PROMPT = re.compile(rb"\$ $")
MANAGER = sessions.TerminalManager()  # the shells of every test's terminal router


@dataclass
class Lab:
    app: App
    env_id: str
    idle_env_id: str  # launched but never driven: observed "new", so not running
    signer: TokenSigner = field(default_factory=lambda: TokenSigner(SECRET))

    def token(self, env_id: str | None = None, ttl_s: float = 300, read_only: bool = False) -> str:
        return self.signer.issue("learner", "ann", env_id or self.env_id, ttl_s, read_only=read_only)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    require_lxc()
    data_dir = Path(tempfile.mkdtemp(prefix="stacklab-term-", dir="/var/tmp"))
    data_dir.chmod(0o755)
    app = build_app(
        Settings(data_dir=str(data_dir), image_dir=IMAGE_DIR, poll_interval_s=0.2, terminal_keep_s=60.0)
    )
    env_ids = []
    try:
        record = app.environments.launch(REPO / "examples" / "hello.yaml", learner="ann", course="term")
        env_ids.append(record.id)
        record = run_sync(app.environments.drive(record.id, 300))
        assert record.observed == Observed.RUNNING, (record.observed, record.last_error)
        idle = app.environments.launch(REPO / "examples" / "hello.yaml", learner="bob", course="term")
        env_ids.append(idle.id)
        yield Lab(app, record.id, idle.id)
    finally:
        MANAGER.close_all()
        try:
            for env_id in env_ids:
                app.environments.request(env_id, Desired.DELETED, "TestDone")
                run_sync(app.environments.drive(env_id, 120))
        finally:
            app.close()
            sweep_stacks(data_dir / "local")
            shutil.rmtree(data_dir, ignore_errors=True)


@contextlib.asynccontextmanager
async def serve(lab: Lab) -> AsyncIterator[str]:
    """The terminal router on 127.0.0.1:<free port>; yields the ws:// base URL. Closes its sessions after."""
    web = TerminalSockets(
        None,
        WebContext(
            stack=lab.app,
            signer=lab.signer,
            catalog=LabCatalog(REPO / "examples"),
            public_url="http://127.0.0.1",
            admin_password="x",
        ),
        MANAGER,
    )
    try:
        async with serve_asgi(web) as base:
            web.ctx.public_url = base.replace("ws://", "http://")
            yield base
    finally:
        MANAGER.close_all()


def url(base: str, lab: Lab, *, node: str = "main", env_id: str | None = None, **params: object) -> str:
    params.setdefault("token", lab.token())
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{base}/api/v1/environments/{env_id or lab.env_id}/terminal/{node}?{query}"


def line(text: bytes) -> re.Pattern[bytes]:
    """`text` as a whole output line (bash's bracketed-paste switch may precede it with a bare CR)."""
    return re.compile(rb"[\r\n]" + text + rb"\r\n")


def sid() -> str:
    return uuid.uuid4().hex[:16]


# tests ---------------------------------------------------------------------------------------------------
async def test_prompt_then_echo_arithmetic(lab: Lab) -> None:
    async with serve(lab) as base, terminal(url(base, lab, session=sid())) as term:
        assert term.events[0]["type"] == "ready" and term.events[0]["offset"] == 0
        await term.until(PROMPT)
        await term.run("echo $((6*7))", line(rb"42"))
        assert MANAGER.count() == 1


async def test_size_from_query_then_resize(lab: Lab) -> None:
    async with serve(lab) as base, terminal(url(base, lab, session=sid(), cols=91, rows=21)) as term:
        await term.until(PROMPT)
        await term.run("stty size", line(rb"21 91"))
        await term.ws.send(json.dumps({"type": "resize", "cols": 132, "rows": 43}))
        await term.run("stty size", line(rb"43 132"))


async def test_ctrl_c_after_a_flood_acts_and_the_shell_still_works(lab: Lab) -> None:
    async with serve(lab) as base, terminal(url(base, lab, session=sid())) as term:
        await term.until(PROMPT)
        await term.type("yes\r")
        await term.amount(2_000_000)
        await term.type(b"\x03")
        await term.run("echo done-$((40+2))", re.compile(rb"done-42"), timeout=30)
        await term.type("cat /dev/zero | head -c 50M | base64\r")
        await term.amount(2_000_000)
        await term.type(b"\x03")
        await term.run("echo again-$((40+3))", re.compile(rb"again-43"), timeout=30)


async def test_output_stops_while_the_client_does_not_ack(lab: Lab) -> None:
    """Flow control: without acks, the server sends a bounded amount; acking lets the rest come."""
    async with serve(lab) as base, terminal(url(base, lab, session=sid()), ack=False) as term:
        await term.until(PROMPT)
        await term.send_ack()
        start = term.offset
        await term.type("yes | head -c 20000000; echo flood-$((1+1))\r")
        await term.drain(1.5)
        held = term.offset - start
        assert held < 2 * 1024 * 1024, f"{held} bytes arrived without an ack"
        assert b"flood-2" not in term.output
        term.ack = True
        await term.send_ack()
        await term.until(re.compile(rb"flood-2"), timeout=60, since=start)


async def test_reconnect_with_the_same_session_finds_the_same_shell(lab: Lab) -> None:
    session = sid()
    async with serve(lab) as base:
        async with terminal(url(base, lab, session=session)) as term:
            await term.until(PROMPT)
            await term.run("export MARKER_VAR=kept-$((7*6))", PROMPT)
            received = term.offset
        for _ in range(100):  # the server notices the close
            if MANAGER.attached() == 0:
                break
            await asyncio.sleep(0.02)
        assert MANAGER.count() == 1  # detached, kept
        async with terminal(url(base, lab, session=session, offset=received)) as term:
            assert term.events[-1]["offset"] == received  # nothing lost, nothing repeated
            term.offset = received
            await term.run("echo $MARKER_VAR", line(rb"kept-42"))
            received = term.offset
        async with terminal(url(base, lab, session=session, offset=0)) as term:  # a reloaded page
            assert term.events[-1]["offset"] == max(0, received - 16384)  # the tail, whole here
            await term.until(PROMPT)  # the replayed tail ends with the prompt
            assert b"kept-42" in term.output
        async with terminal(url(base, lab, session=sid())) as term:  # another tab: another shell
            await term.until(PROMPT)
            await term.run("echo [$MARKER_VAR]", line(rb"\[\]"))
            assert MANAGER.count() == 2


async def test_second_tab_with_the_same_session_takes_it_over(lab: Lab) -> None:
    session = sid()
    async with serve(lab) as base, terminal(url(base, lab, session=session)) as first:
        await first.until(PROMPT)
        async with terminal(url(base, lab, session=session, offset=first.offset)) as second:
            with pytest.raises(ConnectionClosed):
                await first.drain(5)
            assert first.events[-1] == {"type": "closed", "reason": "the terminal was opened in another tab"}
            await second.run("echo $((3*3))", line(rb"9"))


async def test_refusals(lab: Lab) -> None:
    async with serve(lab) as base:
        other = lab.token(env_id="someone-else")
        assert (await refusal(url(base, lab, token=other)))[0] == 4403
        expired = lab.token(ttl_s=-5)
        code, messages = await refusal(url(base, lab, token=expired))
        assert code == 4401 and "expired" in messages[0]
        header, body, signature = lab.token().split(".")
        tampered = json.loads(__import__("base64").urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        tampered["sub"] = "mallory"
        forged = __import__("base64").urlsafe_b64encode(json.dumps(tampered).encode()).rstrip(b"=").decode()
        assert (await refusal(url(base, lab, token=f"{header}.{forged}.{signature}")))[0] == 4401
        assert (await refusal(url(base, lab, token="garbage")))[0] == 4401
        assert (await refusal(url(base, lab).replace("token=", "nothing=")))[0] == 4401
        foreign = await refusal(url(base, lab), origin="https://evil.example")  # type: ignore[arg-type]
        assert foreign[0] == 4403
        own = base.replace("ws://", "http://")
        async with terminal(url(base, lab, session=sid()), origin=own) as term:  # type: ignore[arg-type]
            await term.until(PROMPT)
        assert (await refusal(url(base, lab, node="nosuchnode")))[0] == 4404
        assert (await refusal(url(base, lab, env_id="00000000", token=lab.token("00000000"))))[0] == 4404
        idle = lab.idle_env_id
        code, messages = await refusal(url(base, lab, env_id=idle, token=lab.token(idle)))
        assert code == 4409 and "not running" in messages[0]
        staff = lab.signer.issue("staff", "tutor", None, 300)
        async with terminal(url(base, lab, session=sid(), token=staff)) as term:
            await term.until(PROMPT)


async def test_read_only_token_sees_output_but_cannot_type(lab: Lab) -> None:
    async with serve(lab) as base:
        token = lab.token(read_only=True)
        async with terminal(url(base, lab, session=sid(), token=token)) as term:
            await term.until(PROMPT)  # output flows
            mark = len(term.output)
            await term.type("echo typed-$((5*5))\r")
            await term.ws.send(json.dumps({"type": "resize", "cols": 33, "rows": 11}))
            await term.drain(1.0)
            assert term.output[mark:] == b""  # no echo, no SIGWINCH redraw


async def test_input_is_activity_and_output_is_not(lab: Lab) -> None:
    repo = lab.app.repo
    async with serve(lab) as base, terminal(url(base, lab, session=sid())) as term:
        await term.until(PROMPT)
        repo.touch(lab.env_id, time.time() - 60)  # the learner was last active a minute ago
        before = repo.get(lab.env_id).last_activity_at
        await term.run("echo $((2+2))", line(rb"4"))
        after = repo.get(lab.env_id).last_activity_at
        assert after > before
        await term.run("echo $((2+3))", line(rb"5"))  # within the throttle: no write
        await term.type("yes | head -c 300000\r")
        await term.drain(1.0)
        assert repo.get(lab.env_id).last_activity_at == after


async def test_close_sessions_ends_the_terminals_of_an_environment(lab: Lab) -> None:
    async with serve(lab) as base, terminal(url(base, lab, session=sid())) as term:
        await term.until(PROMPT)
        assert MANAGER.close_sessions("not-this-one") == 0
        assert MANAGER.close_sessions(lab.env_id) == 1
        with pytest.raises(ConnectionClosed) as closed:
            await term.drain(5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
        assert term.events[-1]["type"] == "closed"
        assert MANAGER.count() == 0


async def test_shell_exit_closes_the_session(lab: Lab) -> None:
    async with serve(lab) as base, terminal(url(base, lab, session=sid())) as term:
        await term.until(PROMPT)
        await term.type("exit\r")
        with pytest.raises(ConnectionClosed):
            await term.drain(5)
        assert term.events[-1] == {"type": "closed", "reason": "the shell exited"}
        assert MANAGER.count() == 0


async def test_binary_output_is_not_reencoded(lab: Lab) -> None:
    async with serve(lab) as base, terminal(url(base, lab, session=sid())) as term:
        await term.until(PROMPT)
        mark = len(term.output)
        await term.type("stty raw -echo; printf 'A\\377\\376\\000\\303\\251Z'; stty sane\r")
        await term.until(b"\xa9Z", since=mark)
        assert b"A\xff\xfe\x00\xc3\xa9Z" in term.output[mark:]


async def test_private_key_never_reaches_the_client_or_the_logs(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    async with serve(lab) as base, terminal(url(base, lab, session=sid())) as term:
        await term.until(PROMPT)
        await term.run("cat ~/.ssh/authorized_keys; echo end-$((1+1))", b"end-2")
    record = lab.app.repo.get(lab.env_id)
    key = lab.app.controller.targets(record, lab.app.environments.lab_of(record))["main"].private_key.reveal()
    secret_lines = [line for line in key.splitlines() if len(line) > 20 and "PRIVATE KEY" not in line]
    assert secret_lines
    everything = b"".join(FRAMES)
    assert len(FRAMES) > 50
    for line in secret_lines:
        assert line.encode() not in everything
        assert line not in caplog.text


async def test_node_connections_prefer_aes_gcm_and_carry_bulk_output_intact(lab: Lab) -> None:
    """The quick-ACK layer under asyncssh passes every byte (2.6 MiB here), and AES-GCM is negotiated."""
    target = node_target(lab)
    conn = await ssh_connect(target, 10)
    try:
        assert conn.get_extra_info("recv_cipher") == "aes128-gcm@openssh.com"
    finally:
        conn.close()
    result = await run(target, "seq 1 400000")
    assert result.exit_status == 0
    assert result.stdout == "".join(f"{n}\n" for n in range(1, 400001))


def node_target(lab: Lab) -> Target:
    record = lab.app.environments.resolve(lab.env_id)
    return lab.app.controller.targets(record, lab.app.environments.lab_of(record))["main"]


async def test_shells_and_commands_on_one_node_share_one_ssh_connection(lab: Lab) -> None:
    target = node_target(lab)
    async with (
        serve(lab) as base,
        terminal(url(base, lab, session=sid())) as one,
        terminal(url(base, lab, session=sid())) as two,
    ):
        await one.until(PROMPT)
        await two.until(PROMPT)
        assert POOL.usage() == (1, 2)  # two shells, one login on the node
        shared = await run(target, "echo shared")  # a check while the terminals are open
        assert shared.stdout == "shared\n"
        timed_out = await run(target, "sleep 30", timeout_s=0.5)
        assert timed_out.timed_out
        assert POOL.usage() == (1, 2)  # the timed-out command gave its channel back
        await one.type("echo still-$((20+22))\r")
        await one.until(b"still-42")
    assert POOL.usage() == (0, 0)  # closing the last shell closed the connection


async def test_a_full_connection_gives_way_to_a_new_one(lab: Lab) -> None:
    """At most `max_channels` per connection, and a node refusing one more (sshd's MaxSessions, 10 by
    default) makes the pool open another connection instead of failing."""
    target = node_target(lab)

    async def exec_channel(connection: asyncssh.SSHClientConnection) -> asyncssh.SSHClientProcess:
        return await connection.create_process("sleep 30", stdin=asyncssh.DEVNULL)

    small = ConnectionPool(max_channels=2)
    leases = [await small.lease(target, 10) for _ in range(3)]
    assert small.usage() == (2, 3)
    for lease in leases:
        lease.release()
    assert small.usage() == (0, 0)

    greedy = ConnectionPool(max_channels=50)
    opened = [await open_channel(target, 10, exec_channel, pool=greedy) for _ in range(12)]
    try:
        assert greedy.usage() == (2, 12)  # sshd refused the 11th channel on the first connection
        assert all(process.exit_status is None for process, _ in opened)  # all twelve are running
    finally:
        for process, lease in opened:
            process.close()
            lease.release()
    assert greedy.usage() == (0, 0)


async def test_a_read_only_viewer_watches_the_learners_live_shell(lab: Lab) -> None:
    """Staff masquerading as the learner see the learner's own shell (with its scrollback), live, without
    typing into it or taking it from the learner."""
    watcher_token = lab.signer.issue("learner", "staff-view.ann", lab.env_id, 300, read_only=True)
    async with serve(lab) as base, terminal(url(base, lab, session=sid())) as learner:
        await learner.until(PROMPT)
        await learner.type("echo before-$((6*7))\r")
        await learner.until(b"before-42")
        async with terminal(url(base, lab, session=sid(), token=watcher_token)) as watcher:
            await watcher.until(b"before-42")  # the scrollback of the learner's shell
            await learner.type("echo live-$((7*7))\r")
            await watcher.until(b"live-49")  # and what happens in it now
            await watcher.type("echo from-staff\r")
            await watcher.ws.send(json.dumps({"type": "resize", "cols": 20, "rows": 5}))
            await learner.type("echo after-$((8*8))\r")
            await learner.until(b"after-64")
            assert b"from-staff" not in learner.output
            assert MANAGER.count() == 1  # no shell of the watcher's own
        await learner.type("echo still-mine\r")
        await learner.until(b"still-mine")  # the learner kept the shell when the watcher left
        assert not any(event.get("type") == "closed" for event in learner.events)
