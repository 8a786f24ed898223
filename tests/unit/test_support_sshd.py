"""tests/support/sshd.py: closing the test SSH server ends everything it runs, so no bash outlives a test
(one that did was collected unclosed in a later test's setup and failed it, in a CI run)."""

from __future__ import annotations

import asyncio

import asyncssh
import pytest
from tests.support.sshd import SHELLS, start_sshd

CLOSE_BOUND_S = 10.0


async def test_a_client_still_connected_gets_no_shell_once_the_server_closed() -> None:
    server, port = await start_sshd()
    key = asyncssh.generate_private_key("ssh-ed25519")
    async with asyncssh.connect("127.0.0.1", port, known_hosts=None, client_keys=[key]) as conn:
        shell = await conn.create_process(term_type="xterm")
        shell.stdin.write("echo up-$((6*7))\n")
        assert "up-42" in await asyncio.wait_for(shell.stdout.readuntil("up-42"), CLOSE_BOUND_S)
        server.close()
        with pytest.raises((asyncssh.ChannelOpenError, asyncssh.DisconnectError, ConnectionError)):
            await conn.create_process(term_type="xterm")
        await asyncio.wait_for(server.wait_closed(), CLOSE_BOUND_S)
    loop = asyncio.get_running_loop()
    assert [s for s in SHELLS if s.get_loop() is loop and not s.done()] == []
