"""When the process a session is recorded on does not answer, a reconnect gets a new shell where it landed,
within `relay_connect_timeout_s`, and the session is recorded there from then on.

The service is the real app served by uvicorn (its lifespan runs: it joins the member list) on SQLite, with
the in-memory provider whose nodes are a real SSH server. The "holder" is a member row written as a peer
would write it, whose address refuses connections (a killed process) or accepts them and never answers
(a hung one).
"""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.terminals import lab_service, terminal

from stacklab.store import members, terminal_sessions

TIMEOUT_S = 0.5


@contextlib.contextmanager
def dead_address(kind: str) -> Iterator[str]:
    """An address that refuses connections, or one that accepts them (the kernel's backlog) and never
    answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        if kind == "hung":
            sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("kind", ["refusing", "hung"])
async def test_a_holder_that_does_not_answer_gives_a_new_shell_here(
    tmp_path: Path, sshd_port: int, kind: str
) -> None:
    async with lab_service(tmp_path, sshd_port, relay_connect_timeout_s=TIMEOUT_S) as service:
        repo, session = service.stack.repo, uuid.uuid4().hex[:16]
        with dead_address(kind) as address:
            members.register(repo, "web-gone", "web", address, time.time())
            terminal_sessions.hold(
                repo, session, service.env_id, "main", "learner:ann", "web-gone", time.time()
            )
            async with terminal(service.url(session=session, offset="5000")) as term:  # ready within 10 s
                member = term.ws.response.headers["x-stacklab-member"]  # type: ignore[union-attr]
                assert "x-stacklab-relayed-to" not in term.ws.response.headers  # type: ignore[union-attr]
                assert term.events[-1]["offset"] == 0  # a new shell
                await term.run("echo fresh-$((2*3))", b"fresh-6")
        found = terminal_sessions.holder(
            repo, session, service.env_id, "main", "learner:ann", time.time(), 60
        )
        assert found is not None and found.member_id == member  # recorded here from now on
