"""A real SSH server (asyncssh) on loopback that runs commands with bash, for tests without containers."""

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


async def _handle(process: asyncssh.SSHServerProcess) -> None:
    """Run the command with bash, feeding it the client's stdin as it comes (EOF closes it)."""
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


async def start_sshd() -> tuple[asyncssh.SSHAcceptor, int]:
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.create_server(
        _AnyKeyServer, "127.0.0.1", 0, server_host_keys=[host_key], process_factory=_handle
    )
    return server, server.sockets[0].getsockname()[1]
