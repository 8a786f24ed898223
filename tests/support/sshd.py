"""A real SSH server (asyncssh) on loopback that runs commands with bash, and gives terminals a bash shell,
for tests without containers."""

from __future__ import annotations

import asyncio

import asyncssh


class _AnyKeyServer(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return True


class _TrackedServer(_AnyKeyServer):
    """One per connection; it keeps its connection in its server's set while open (`SshServer` closes
    them)."""

    def __init__(self, connections: set[asyncssh.SSHServerConnection]) -> None:
        self.connections = connections
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self.conn)  # type: ignore[arg-type]


SHELLS: set[asyncio.Task[None]] = set()  # the shells running now (one event loop per test)


async def _shell(process: asyncssh.SSHServerProcess) -> None:
    """A login shell (no command: a terminal): bash reading the client's lines, `$ ` as its prompt."""
    child = await asyncio.create_subprocess_exec(
        "bash",
        "--norc",
        "--noprofile",
        "-i",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={"PS1": "$ ", "PATH": "/usr/bin:/bin", "TERM": "dumb"},
    )
    assert child.stdin and child.stdout
    stdin = child.stdin

    async def feed() -> None:
        while True:
            try:
                data = await process.stdin.read(65536)
            except (asyncssh.TerminalSizeChanged, asyncssh.BreakReceived, asyncssh.SignalReceived):
                continue
            if not data:
                break
            stdin.write(data.encode())
            await stdin.drain()
        stdin.close()

    feeder = asyncio.create_task(feed())
    try:
        while data := await child.stdout.read(65536):
            process.stdout.write(data.decode(errors="replace"))
        process.exit(await child.wait())
    finally:
        feeder.cancel()
        if child.returncode is None:
            child.kill()
            await child.wait()


async def _handle(process: asyncssh.SSHServerProcess) -> None:
    """Run the command with bash, feeding it the client's stdin as it comes (EOF closes it)."""
    if process.command is None:
        shell = asyncio.create_task(_shell(process))
        SHELLS.add(shell)
        shell.add_done_callback(SHELLS.discard)
        await shell
        return
    child = await asyncio.create_subprocess_shell(
        process.command or "true",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert child.stdin and child.stdout and child.stderr

    async def feed() -> None:
        while data := await process.stdin.read(65536):
            child.stdin.write(data.encode())
            await child.stdin.drain()
        child.stdin.close()

    feeder = asyncio.create_task(feed())
    out, err = await asyncio.gather(child.stdout.read(), child.stderr.read())
    await child.wait()
    feeder.cancel()
    process.stdout.write(out.decode())
    process.stderr.write(err.decode())
    process.exit(child.returncode or 0)


class SshServer:
    """The listening server, its connections and the shells it runs: closing it ends them all, so no bash
    outlives a test. The connections are closed too: asyncssh's acceptor only stops listening, and a client
    still connected (a service not yet stopped) could open a shell after the others were ended, left running
    when the test's loop closed (its transport then collected unclosed: a warning in a later test)."""

    def __init__(
        self, acceptor: asyncssh.SSHAcceptor, connections: set[asyncssh.SSHServerConnection]
    ) -> None:
        self.acceptor = acceptor
        self.connections = connections

    def close(self) -> None:
        self.acceptor.close()
        for conn in list(self.connections):
            conn.close()
        _cancel(_shells_here())

    async def wait_closed(self) -> None:
        await self.acceptor.wait_closed()
        for conn in list(self.connections):
            await conn.wait_closed()
        shells = _shells_here()  # with any opened before its connection closed
        _cancel(shells)
        await asyncio.gather(*shells, return_exceptions=True)


def _cancel(shells: list[asyncio.Task[None]]) -> None:
    """Cancel each shell once: a second cancel would cut short its wait for the bash it killed."""
    for shell in shells:
        if not shell.cancelling():
            shell.cancel()


def _shells_here() -> list[asyncio.Task[None]]:
    """The shells of this event loop, not those of an earlier test's loop (closed before they ended, so
    their done callback never ran). Those stay in SHELLS: dropped, their bash's transport would be
    collected unclosed, a warning in whatever test runs then."""
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:  # closed from a thread of its own: every shell whose loop still runs
        loop = None
    return [
        s
        for s in SHELLS
        if not s.done() and not s.get_loop().is_closed() and (loop is None or s.get_loop() is loop)
    ]


async def start_sshd() -> tuple[SshServer, int]:
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    connections: set[asyncssh.SSHServerConnection] = set()
    server = await asyncssh.create_server(
        lambda: _TrackedServer(connections),
        "127.0.0.1",
        0,
        server_host_keys=[host_key],
        process_factory=_handle,
    )
    return SshServer(server, connections), server.sockets[0].getsockname()[1]
