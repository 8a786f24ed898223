"""SSH to lab nodes (asyncssh), as the lab's login user with the environment's key: connections, shared
among the shells and commands of one node, and commands run on them."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import asyncssh

from stacklab.errors import AccessError
from stacklab.secrets import Secret

T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    """Where and as whom to connect. The key is a Secret, so logging a Target never leaks it."""

    host: str
    port: int
    user: str
    private_key: Secret


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: str
    stderr: str
    timed_out: bool = False


async def probe(host: str, port: int = 22, timeout_s: float = 1.0) -> bool:
    """True when an SSH server answers with its banner (TCP alone is not enough: a frozen sshd accepts)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError):
        return False
    try:
        banner = await asyncio.wait_for(reader.readline(), timeout_s)
        return banner.startswith(b"SSH-")
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()


# Modern algorithms only (every OpenSSH since 6.5, 2014, has them), in short lists: asyncssh's defaults
# (32 key exchanges with GSS-API, 40 host key types) cost every connection kilobytes of lists and of
# KEXINIT, and the key exchange time to match. AES-GCM first: with AES-NI it costs this process about a
# third less CPU per MiB than ChaCha20-Poly1305 (measured with asyncssh 2.24).
ALGORITHMS: dict[str, tuple[str, ...]] = {
    "kex_algs": ("curve25519-sha256", "curve25519-sha256@libssh.org", "ecdh-sha2-nistp256"),
    "server_host_key_algs": ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", "rsa-sha2-256"),
    "encryption_algs": (
        "aes128-gcm@openssh.com",
        "aes256-gcm@openssh.com",
        "chacha20-poly1305@openssh.com",
        "aes128-ctr",
    ),
    "mac_algs": ("hmac-sha2-256-etm@openssh.com", "hmac-sha2-256"),
    "compression_algs": ("none",),
}


class _QuickAck(asyncio.Protocol):
    """Sits between the socket and asyncssh's protocol and acknowledges every read at once.

    sshd leaves Nagle's algorithm on until a session asks for a PTY (and for good on exec channels), so
    its second small reply of a round waits for our ACK, which Linux delays by 40 ms: a fresh SSH
    connection lost 40 ms opening its first channel, and so did every check run. TCP_QUICKACK after a
    read sends the pending ACK now.
    """

    __slots__ = ("_ack", "inner")

    def __init__(self, inner: asyncio.Protocol) -> None:
        self.inner = inner
        self._ack: Callable[[], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        quickack = getattr(socket, "TCP_QUICKACK", None)
        if sock is not None and quickack is not None:
            self._ack = lambda: sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)
        if self._ack is not None:
            try:
                self._ack()
            except OSError:  # the socket closed under us; the protocol sees that itself
                self._ack = None

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class _QuickAckConnector:
    """What asyncssh calls to open the TCP connection (its `tunnel` hook), so that `_QuickAck` is in place."""

    async def create_connection(
        self, protocol_factory: Callable[[], asyncio.Protocol], host: str, port: int
    ) -> tuple[asyncio.BaseTransport, asyncio.Protocol]:
        loop = asyncio.get_running_loop()
        transport, wrapper = await loop.create_connection(lambda: _QuickAck(protocol_factory()), host, port)
        return transport, wrapper.inner


_CONNECTOR = _QuickAckConnector()


async def connect(target: Target, timeout_s: float) -> asyncssh.SSHClientConnection:
    """Open an SSH connection; failures become AccessError naming the node."""
    try:
        key = asyncssh.import_private_key(target.private_key.reveal())
        return await asyncio.wait_for(
            asyncssh.connect(
                target.host,
                port=target.port,
                username=target.user,
                client_keys=[key],
                known_hosts=None,
                agent_path=None,
                config=[],
                tunnel=_CONNECTOR,
                gss_auth=False,
                gss_kex=False,
                **ALGORITHMS,
            ),
            timeout_s,
        )
    except TimeoutError as exc:
        raise AccessError(f"SSH to {target.host}:{target.port} timed out after {timeout_s:g}s") from exc
    except (OSError, asyncssh.Error) as exc:
        raise AccessError(f"SSH to {target.user}@{target.host}:{target.port} failed: {exc}") from exc


PoolKey = tuple[asyncio.AbstractEventLoop, str, int, str, bytes]


@dataclass(eq=False)
class _Shared:
    conn: asyncssh.SSHClientConnection
    key: PoolKey
    channels: int = 0
    full: bool = False  # the node refused one more channel on it (its sshd's MaxSessions)


class Lease:
    """One channel's claim on a shared connection; `release()` once the channel is closed."""

    __slots__ = ("_pool", "_shared")

    def __init__(self, pool: ConnectionPool, shared: _Shared) -> None:
        self._pool = pool
        self._shared: _Shared | None = shared

    @property
    def connection(self) -> asyncssh.SSHClientConnection:
        if self._shared is None:
            raise RuntimeError("lease already released")
        return self._shared.conn

    def release(self, refused: bool = False) -> None:
        """Give the channel back (`refused`: the node would not open it: use another connection next)."""
        shared, self._shared = self._shared, None
        if shared is not None:
            self._pool._release(shared, refused)


class ConnectionPool:
    """SSH connections shared by the channels (shells, commands) to one node with one key.

    A new connection costs ~50 ms of login on the node and ~20 KiB here; a channel on an open one a few ms
    and a few KiB. So a second tab on a node, or a check run while a terminal is open, reuses the
    connection, as OpenSSH's ControlMaster does. sshd allows 10 sessions per connection by default
    (MaxSessions): a connection carries at most `max_channels`, and one that refuses a channel is not used
    for new ones. A connection closes with its last channel: nothing lingers. Connections belong to the
    event loop that opened them.
    """

    def __init__(self, max_channels: int = 8) -> None:
        self.max_channels = max_channels
        self._open: dict[PoolKey, list[_Shared]] = {}
        self._opening: dict[PoolKey, asyncio.Future[_Shared]] = {}

    @staticmethod
    def _key(target: Target) -> PoolKey:
        key_id = hashlib.sha256(target.private_key.reveal().encode()).digest()
        return (asyncio.get_running_loop(), target.host, target.port, target.user, key_id)

    async def lease(self, target: Target, timeout_s: float) -> Lease:
        """A channel slot on a connection to `target`: an open one with room, or a new one."""
        key = self._key(target)
        while True:
            for shared in self._open.get(key, ()):
                if shared.conn.is_closed():
                    self._forget(shared)
                elif not shared.full and shared.channels < self.max_channels:
                    shared.channels += 1
                    return Lease(self, shared)
            pending = self._opening.get(key)
            if pending is None:
                pending = asyncio.ensure_future(self._connect(key, target, timeout_s))
                self._opening[key] = pending
                pending.add_done_callback(lambda _: self._opening.pop(key, None))
            await asyncio.shield(pending)  # then take a slot on it (or a later one) in the loop above

    async def _connect(self, key: PoolKey, target: Target, timeout_s: float) -> _Shared:
        shared = _Shared(await connect(target, timeout_s), key)
        self._open.setdefault(key, []).append(shared)
        return shared

    def _release(self, shared: _Shared, refused: bool) -> None:
        shared.channels -= 1
        shared.full = shared.full or refused
        if shared.channels <= 0:
            self._forget(shared)
            shared.conn.close()

    def _forget(self, shared: _Shared) -> None:
        entries = self._open.get(shared.key, [])
        if shared in entries:
            entries.remove(shared)
        if not entries:
            self._open.pop(shared.key, None)

    def usage(self) -> tuple[int, int]:
        """(open connections, channels on them), over every event loop."""
        entries = [shared for group in self._open.values() for shared in group]
        return len(entries), sum(shared.channels for shared in entries)


POOL = ConnectionPool()


async def open_channel(
    target: Target,
    timeout_s: float,
    opener: Callable[[asyncssh.SSHClientConnection], Awaitable[T]],
    pool: ConnectionPool = POOL,
) -> tuple[T, Lease]:
    """`opener(connection)` on a pooled connection; one retry on a fresh connection when the node refuses
    another channel on a busy one. The caller releases the lease when its channel is closed."""
    try:
        return await _open_once(target, timeout_s, opener, pool)
    except asyncssh.ChannelOpenError:  # that connection is marked full: the pool picks or opens another
        return await _open_once(target, timeout_s, opener, pool)


async def _open_once(
    target: Target,
    timeout_s: float,
    opener: Callable[[asyncssh.SSHClientConnection], Awaitable[T]],
    pool: ConnectionPool,
) -> tuple[T, Lease]:
    lease = await pool.lease(target, timeout_s)
    try:
        return await opener(lease.connection), lease
    except asyncssh.ChannelOpenError:
        lease.release(refused=True)
        raise
    except BaseException:
        lease.release()
        raise


async def run(
    target: Target,
    command: str,
    *,
    stdin: str | None = None,
    timeout_s: float = 60.0,
    connect_timeout_s: float = 5.0,
) -> CommandResult:
    """Run one command (on the node's shared connection); a timeout is a result (exit 124, like
    coreutils' timeout), not an exception."""

    async def command_run(connection: asyncssh.SSHClientConnection) -> asyncssh.SSHCompletedProcess:
        # Without input, stdin is /dev/null: a command that reads it gets EOF instead of waiting forever.
        process = await (
            connection.create_process(command, stdin=asyncssh.DEVNULL)
            if stdin is None
            else connection.create_process(command, input=stdin)
        )
        try:
            return await process.wait(check=False, timeout=timeout_s)
        finally:
            process.close()  # a timed-out command's channel must not stay open on a shared connection

    try:
        result, lease = await open_channel(target, connect_timeout_s, command_run)
        lease.release()
    except asyncssh.TimeoutError as exc:
        return CommandResult(124, _text(exc.stdout), _text(exc.stderr), timed_out=True)
    except (OSError, asyncssh.Error) as exc:
        raise AccessError(f"running a command on {target.host} failed: {exc}") from exc
    status = result.exit_status if result.exit_status is not None else 255
    return CommandResult(status, _text(result.stdout), _text(result.stderr))


def _text(value: object) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
