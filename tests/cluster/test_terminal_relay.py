"""A learner's terminal across two web processes behind nginx: a reconnect that lands on the other process
finds the same shell; staff watch through either process; tokens are checked on the relay path too; a
killed holder never leaves a reconnect hanging.

Real processes: two `stacklab serve` on one PostgreSQL database (embedded runner, local LXC provider, a
real sshd in the node) and nginx balancing round-robin between them. Which process answered is read from
the handshake's `x-stacklab-member` header (and `x-stacklab-relayed-to` when it relayed). The tests run
in file order on one lab; the last one kills a process.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass

import pytest
from tests.cluster.cluster import SECRET_KEY, Cluster
from tests.support.terminals import Term, refusal
from websockets.asyncio.client import connect

from stacklab.secrets import Vault
from stacklab.web.relay import HEADER, RelayKey

pytestmark = pytest.mark.lxc

PROMPT = re.compile(rb"\$ $")
PID = re.compile(rb"PID=(\d+)")
TRIES = 6  # nginx alternates; a few connects are enough to land on a given process


@dataclass
class Labs:
    env_id: str
    token: str
    bob_env_id: str
    bob_token: str
    session: str
    owner: str = ""  # the member id of the process that opened the shell
    pid: bytes = b""
    offset: int = 0


@pytest.fixture(scope="module")
def labs(cluster: Cluster) -> Labs:
    ann = cluster.launch("ann")
    bob = cluster.launch("bob")
    cluster.wait_ready(*ann)
    cluster.wait_ready(*bob)
    return Labs(*ann, *bob, session=uuid.uuid4().hex[:16])


async def open_term(url: str, **kwargs: object) -> tuple[Term, dict[str, str]]:
    ws = await connect(url, compression=None, max_size=None, **kwargs)  # type: ignore[arg-type]
    term = Term(ws)
    await term.ready()
    assert ws.response is not None
    return term, {name.lower(): value for name, value in ws.response.headers.raw_items()}


async def through_nginx_avoiding(cluster: Cluster, labs: Labs, member: str, offset: int) -> tuple[Term, dict]:
    """A terminal of the lab's session opened through nginx on a process other than `member`."""
    for _ in range(TRIES):
        term, headers = await open_term(
            cluster.ws_url(cluster.url, labs.env_id, labs.token, labs.session, offset)
        )
        if headers["x-stacklab-member"] != member:
            return term, headers
        await term.ws.close()
    raise AssertionError(f"nginx never sent a websocket to the other process in {TRIES} tries")


async def test_a_reconnect_to_the_other_process_finds_the_same_shell(cluster: Cluster, labs: Labs) -> None:
    first, headers = await open_term(cluster.ws_url(cluster.url, labs.env_id, labs.token, labs.session))
    labs.owner = headers["x-stacklab-member"]
    assert "x-stacklab-relayed-to" not in headers  # a fresh session opens where it lands
    await first.until(PROMPT)
    shown = await first.run("echo relay-$((6*7)) > ~/relay.txt; echo PID=$$", PID)
    labs.pid = PID.search(shown).group(1)  # type: ignore[union-attr]
    labs.offset = first.offset
    await first.ws.close()

    second, headers = await through_nginx_avoiding(cluster, labs, labs.owner, labs.offset)
    assert headers["x-stacklab-relayed-to"] == labs.owner
    assert second.events[-1]["offset"] == labs.offset  # resumed where the first websocket stopped
    shown = await second.run("echo PID=$$; cat ~/relay.txt", re.compile(rb"relay-42"))
    assert PID.search(shown).group(1) == labs.pid  # type: ignore[union-attr]
    await second.ws.close()

    reloaded, headers = await through_nginx_avoiding(cluster, labs, labs.owner, 0)
    assert headers["x-stacklab-relayed-to"] == labs.owner
    await reloaded.until(f"PID={labs.pid.decode()}".encode())  # earlier output replayed (a reloaded page)
    await reloaded.run("echo still-$((1+2))", b"still-3")  # and the shell goes on
    labs.offset = reloaded.offset
    await reloaded.ws.close()


async def test_staff_watch_through_the_other_process_and_cannot_type(cluster: Cluster, labs: Labs) -> None:
    owner = cluster.web(labs.owner)
    other = next(web for web in cluster.webs if web is not owner)
    learner, _ = await open_term(
        cluster.ws_url(owner.url, labs.env_id, labs.token, labs.session, labs.offset)
    )
    watcher, headers = await open_term(
        cluster.ws_url(other.url, labs.env_id, cluster.observe("ann"), uuid.uuid4().hex[:16])
    )
    assert headers["x-stacklab-relayed-to"] == labs.owner
    await learner.run("echo watched-$((40+2))", b"watched-42")
    await watcher.until(b"watched-42")
    await watcher.type("echo staff-typed-$((3*3))\r")
    await learner.run("echo after-$((5+5))", b"after-10")
    await watcher.until(b"after-10")
    assert b"staff-typed-9" not in learner.output and b"staff-typed-9" not in watcher.output
    labs.offset = learner.offset
    await watcher.ws.close()
    await learner.ws.close()


async def test_another_learners_token_is_refused_on_the_relay_path(cluster: Cluster, labs: Labs) -> None:
    owner = cluster.web(labs.owner)
    other = next(web for web in cluster.webs if web is not owner)
    url = cluster.ws_url(other.url, labs.env_id, labs.bob_token, labs.session)
    code, messages = await refusal(url)
    assert code == 4403, messages

    path = f"/api/v1/environments/{labs.env_id}/terminal/main"
    owner_url = cluster.ws_url(owner.url, labs.env_id, labs.bob_token, labs.session)
    query = owner_url.split("?", 1)[1]
    signed = RelayKey(Vault(SECRET_KEY).derive("terminal-relay")).sign("web-peer", path, query)
    code, messages = await refusal(owner_url, additional_headers={HEADER: signed})
    assert code == 4403, messages  # a genuine peer's relay still needs the learner's own token

    forged = cluster.ws_url(owner.url, labs.env_id, labs.token, labs.session)
    code, messages = await refusal(forged, additional_headers={HEADER: "web-peer:1:00"})
    assert code == 4403 and "relay" in messages[0], messages


async def test_a_killed_holder_gives_a_new_shell_not_a_hang(cluster: Cluster, labs: Labs) -> None:
    owner = cluster.web(labs.owner)
    other = next(web for web in cluster.webs if web is not owner)
    relayed, headers = await open_term(
        cluster.ws_url(other.url, labs.env_id, labs.token, labs.session, labs.offset)
    )
    assert headers["x-stacklab-relayed-to"] == labs.owner
    owner.kill()  # its member row still looks live for member_ttl_s
    assert await relayed.end() == 1011  # the relayed client is told at once, and reconnects
    assert any("stopped" in event.get("message", "") for event in relayed.events), relayed.events
    async with asyncio.timeout(20):
        term, headers = await open_term(
            cluster.ws_url(cluster.url, labs.env_id, labs.token, labs.session, labs.offset)
        )
    assert headers["x-stacklab-member"] != labs.owner and "x-stacklab-relayed-to" not in headers
    assert term.events[-1]["offset"] == 0  # a new shell: the client starts over
    shown = await term.run("echo PID=$$; cat ~/relay.txt", re.compile(rb"relay-42"))
    assert PID.search(shown).group(1) != labs.pid  # type: ignore[union-attr]
    await term.ws.close()
