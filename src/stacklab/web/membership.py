"""This web process as a member of the deployment: its id, the address peers relay terminals to, its
heartbeat, and the record of which terminal sessions it holds (docs/terminals.md).

Every `stacklab serve` registers as a member of role `web` when it starts, heartbeats every
`member_heartbeat_s`, and counts as live for `member_ttl_s` after its last heartbeat. A clean shutdown
removes its row and its sessions' rows at once; a killed process's rows age out, and the first live
member to notice a web member silent for ten times the TTL removes them.

Database work happens off the event loop (a thread), never on a terminal's data path: once per
connect (where is this session?), once per open or re-attach (it is here now), once per close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from stacklab.access.terminal import SessionKey
from stacklab.config import Settings
from stacklab.store import members, terminal_sessions
from stacklab.store.repository import Repository
from stacklab.store.terminal_sessions import Holder

log = logging.getLogger(__name__)

ROLE = "web"
PRUNE_AFTER_TTLS = 10  # a web member silent this many TTLs is removed, with its session rows
WILDCARDS = {"0.0.0.0", "::", ""}


def advertise_url(settings: Settings) -> str:
    """Where peers reach this process: the `advertise_url` setting, else the bind address (a wildcard
    bind advertises the address of the interface of the default route: a pod's or container's own)."""
    if settings.advertise_url:
        return settings.advertise_url
    host = _primary_address() if settings.http_host in WILDCARDS else settings.http_host
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.http_port}"


def _primary_address() -> str:
    """The local address of the default route (a UDP connect sends nothing), else the host name."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only the route is looked up
            return str(probe.getsockname()[0])
    except OSError:
        return socket.gethostname()


class Membership:
    """One web process's membership and its terminal-session records (see the module doc)."""

    def __init__(self, repo: Repository, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.repo = repo
        self.id = f"{ROLE}-{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        self.address = advertise_url(settings)
        self.heartbeat_s = settings.member_heartbeat_s
        self.ttl_s = settings.member_ttl_s
        self._clock = clock
        self._writes: set[asyncio.Task[None]] = set()

    # life -------------------------------------------------------------------------------------------
    def join(self) -> None:
        members.register(self.repo, self.id, ROLE, self.address, self._clock())
        log.info("web member joined", extra={"member": self.id, "address": self.address})

    async def leave(self) -> None:
        """Clean shutdown, once the shells are closed: peers stop relaying here at once."""
        if self._writes:
            await asyncio.wait(self._writes, timeout=5)
        try:
            await asyncio.to_thread(self._leave)
        except SQLAlchemyError as exc:
            log.warning("leaving the member list failed", extra={"member": self.id, "error": str(exc)})

    def _leave(self) -> None:
        terminal_sessions.forget_members(self.repo, [self.id])
        members.leave(self.repo, self.id)

    def beat(self) -> None:
        """One heartbeat (re-registering when the row was pruned), and the removal of long-dead peers."""
        now = self._clock()
        if not members.heartbeat(self.repo, self.id, now):
            members.register(self.repo, self.id, ROLE, self.address, now)
        dead = members.prune(self.repo, ROLE, now, self.ttl_s * PRUNE_AFTER_TTLS)
        terminal_sessions.forget_members(self.repo, dead)

    async def run(self, stop: asyncio.Event) -> None:
        """Heartbeat every `heartbeat_s` until `stop`; a failed one is retried at the next interval."""
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.beat)
            except SQLAlchemyError as exc:
                log.warning("member heartbeat failed", extra={"member": self.id, "error": str(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.heartbeat_s)

    # terminal sessions ------------------------------------------------------------------------------
    async def holder(self, key: SessionKey) -> Holder | None:
        """The live member holding this session (maybe this one), or None."""
        return await asyncio.to_thread(
            terminal_sessions.holder,
            self.repo,
            key.session_id,
            key.env_id,
            key.node,
            key.subject,
            self._clock(),
            self.ttl_s,
        )

    async def watched(self, env_id: str, node: str) -> Holder | None:
        """The live member holding the newest shell on (environment, node), or None."""
        return await asyncio.to_thread(
            terminal_sessions.watched, self.repo, env_id, node, self._clock(), self.ttl_s
        )

    async def hold(self, key: SessionKey) -> None:
        """This process holds the session now (opened or re-attached here); logged, not raised, on a
        database fault: the shell works, only a reconnect through another process misses it."""
        try:
            held = await asyncio.to_thread(
                terminal_sessions.hold,
                self.repo,
                key.session_id,
                key.env_id,
                key.node,
                key.subject,
                self.id,
                self._clock(),
            )
        except SQLAlchemyError as exc:
            log.warning(
                "recording a terminal session failed", extra={"env_id": key.env_id, "error": str(exc)}
            )
            return
        if not held:
            log.warning(
                "a terminal session id of another subject was presented; not recorded",
                extra={"env_id": key.env_id, "node": key.node},
            )

    def released(self, key: SessionKey) -> None:
        """The shell closed (called from the terminal manager): forget its row, in the background."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # closed outside the event loop (a teardown): write it now
            self._release(key.session_id)
            return
        write = loop.create_task(asyncio.to_thread(self._release, key.session_id))
        self._writes.add(write)
        write.add_done_callback(self._writes.discard)

    def _release(self, session_id: str) -> None:
        try:
            terminal_sessions.release(self.repo, session_id, self.id)
        except SQLAlchemyError as exc:
            log.warning("forgetting a terminal session failed", extra={"error": str(exc)})
