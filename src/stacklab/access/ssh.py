"""Running commands on nodes over SSH (asyncssh), as the lab's login user with the environment's key."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass

import asyncssh

from stacklab.errors import AccessError
from stacklab.secrets import Secret


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


# AES-GCM first: with AES-NI it costs this process about a third less CPU per MiB than ChaCha20-Poly1305
# (measured with asyncssh 2.24); both are AEAD ciphers every OpenSSH since 6.5 offers.
ENCRYPTION_ALGS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
)


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
                encryption_algs=ENCRYPTION_ALGS,
            ),
            timeout_s,
        )
    except TimeoutError as exc:
        raise AccessError(f"SSH to {target.host}:{target.port} timed out after {timeout_s:g}s") from exc
    except (OSError, asyncssh.Error) as exc:
        raise AccessError(f"SSH to {target.user}@{target.host}:{target.port} failed: {exc}") from exc


async def run(
    target: Target,
    command: str,
    *,
    stdin: str | None = None,
    timeout_s: float = 60.0,
    connect_timeout_s: float = 5.0,
) -> CommandResult:
    """Run one command; a timeout is a result (exit 124, like coreutils' timeout), not an exception."""
    connection = await connect(target, connect_timeout_s)
    try:
        async with connection:
            if stdin is None:  # a command that reads stdin gets EOF at once instead of waiting forever
                result = await connection.run(command, stdin=asyncssh.DEVNULL, check=False, timeout=timeout_s)
            else:
                result = await connection.run(command, input=stdin, check=False, timeout=timeout_s)
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
