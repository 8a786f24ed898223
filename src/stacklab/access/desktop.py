"""VNC desktops of lab nodes: the RFB stream between a browser and the node's VNC server, over SSH.

The service stands between the two ends of RFB (RFC 6143) and owns the handshake on both sides:

- towards the node, on a direct-tcpip channel to the node's localhost (so the VNC port never leaves the
  node), it speaks RFB 3.8 as a client and answers the VNC password challenge itself when the lab names
  a password secret: the password never reaches the browser;
- towards the browser, it speaks RFB 3.8 as a server offering security type None (the browser was
  already admitted by its token), then passes ClientInit on with the shared flag set, so that a watcher
  never disconnects the learner, and passes the server's ServerInit and updates back unchanged.

After the handshake, the browser's messages are parsed one by one (`ClientMessages`): a read-only
watcher's input (keys, pointer, clipboard, screen resize) is dropped here, whatever its page does, and
every other client's input is reported as activity. Messages of unknown type end the session: their
length cannot be known, so nothing after them could be trusted.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from dataclasses import dataclass

import asyncssh
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from stacklab.access.ssh import Lease, Target, open_channel
from stacklab.errors import AccessError

VERSION = b"RFB 003.008\n"
SECURITY_NONE, SECURITY_VNC = 1, 2
MAX_CLIPBOARD_BYTES = 1 << 20  # one ClientCutText: a paste
HANDSHAKE_TIMEOUT_S = 10.0


class ProtocolError(Exception):
    """The browser broke RFB: the session ends (the web layer closes with 4400 or 1009)."""

    def __init__(self, message: str, too_big: bool = False) -> None:
        super().__init__(message)
        self.too_big = too_big


# --- the node's side ----------------------------------------------------------------------------------------


@dataclass
class NodeStream:
    """An RFB connection to the node's VNC server, authenticated; `release()` when done."""

    reader: asyncssh.SSHReader[bytes]
    writer: asyncssh.SSHWriter[bytes]
    lease: Lease

    def close(self) -> None:
        self.writer.close()
        self.lease.release()


async def open_node(
    target: Target, port: int | str, password: str | None, connect_timeout_s: float
) -> NodeStream:
    """A direct-tcpip channel to `localhost:port` on the node (or, for a path, a direct-streamlocal one to
    that unix socket: an RDP bridge's), through its pooled SSH connection, past the VNC server's security
    handshake. AccessError when the node or its VNC server cannot be reached."""

    async def opener(
        connection: asyncssh.SSHClientConnection,
    ) -> tuple[asyncssh.SSHReader[bytes], asyncssh.SSHWriter[bytes]]:
        if isinstance(port, str):
            return await connection.open_unix_connection(port, encoding=None)
        return await connection.open_connection("localhost", port, encoding=None)

    try:
        (reader, writer), lease = await open_channel(target, connect_timeout_s, opener)
    except asyncssh.ChannelOpenError as exc:
        raise AccessError(f"nothing answers on port {port} of the node: {exc.reason}") from exc
    except (OSError, asyncssh.Error) as exc:
        raise AccessError(f"the desktop channel to the node failed: {exc}") from exc
    stream = NodeStream(reader, writer, lease)
    try:
        await asyncio.wait_for(_authenticate(reader, writer, password), HANDSHAKE_TIMEOUT_S)
    except TimeoutError as exc:
        stream.close()
        raise AccessError(f"the VNC server on port {port} did not finish its handshake") from exc
    except (AccessError, asyncio.IncompleteReadError, OSError, asyncssh.Error) as exc:
        stream.close()
        if isinstance(exc, AccessError):
            raise
        raise AccessError(f"the VNC server on port {port} closed during its handshake") from exc
    return stream


async def _authenticate(
    reader: asyncssh.SSHReader[bytes], writer: asyncssh.SSHWriter[bytes], password: str | None
) -> None:
    version = await reader.readexactly(12)
    if not version.startswith(b"RFB 003.") or version < b"RFB 003.008":
        raise AccessError(f"the VNC server speaks {version!r}; RFB 3.8 or later is needed")
    writer.write(VERSION)
    (count,) = await reader.readexactly(1)
    if count == 0:
        raise AccessError(f"the VNC server refused: {await _reason(reader)}")
    offered = set(await reader.readexactly(count))
    if password is None and SECURITY_NONE in offered:
        writer.write(bytes([SECURITY_NONE]))
    elif password is not None and SECURITY_VNC in offered:
        writer.write(bytes([SECURITY_VNC]))
        challenge = await reader.readexactly(16)
        writer.write(vnc_response(password, challenge))
    else:
        wanted = "VNC password (2)" if password is not None else "None (1)"
        raise AccessError(
            f"the VNC server offers security types {sorted(offered)}, not {wanted}: "
            "check the lab's access.<node>.desktop.password_secret"
        )
    (result,) = struct.unpack(">I", await reader.readexactly(4))
    if result != 0:
        raise AccessError(f"the VNC server refused the login: {await _reason(reader)}")


async def _reason(reader: asyncssh.SSHReader[bytes]) -> str:
    (length,) = struct.unpack(">I", await reader.readexactly(4))
    return (await reader.readexactly(min(length, 1024))).decode(errors="replace")


def vnc_response(password: str, challenge: bytes) -> bytes:
    """The answer to a VNC challenge: DES with the password (8 bytes, each bit-reversed) as the key."""
    key = bytes(int(f"{b:08b}"[::-1], 2) for b in password.encode()[:8].ljust(8, b"\0"))
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()  # K, K, K: single DES
    return encryptor.update(challenge) + encryptor.finalize()


# --- the browser's side -------------------------------------------------------------------------------------

SECURITY_OFFER = bytes([1, SECURITY_NONE])
SECURITY_OK = struct.pack(">I", 0)


def client_version_ok(version: bytes) -> bool:
    """The browser's ProtocolVersion: 3.8 (noVNC's); older ones handshake differently."""
    return len(version) == 12 and version.startswith(b"RFB 003.") and version >= b"RFB 003.008"


# Client-to-server message types (RFC 6143 and the extensions noVNC sends), with a function giving the
# message's whole length from the bytes available (None until enough are there), and whether it is input.
_FIXED = {0: 20, 3: 10, 4: 8, 5: 6, 150: 10, 250: 4}
INPUT_TYPES = frozenset({4, 5, 6, 250, 251, 253, 255})
"""Key, pointer, clipboard, xvp (power), SetDesktopSize, gii (input devices), QEMU (extended key)."""


def _length(data: bytearray, at: int) -> int | None:
    """The length of the message starting at `at`, or None until enough of it is there to tell."""
    kind, have = data[at], len(data) - at
    if kind in _FIXED:
        return _FIXED[kind]
    if kind == 2:  # SetEncodings
        return None if have < 4 else 4 + 4 * struct.unpack_from(">H", data, at + 2)[0]
    if kind == 6:  # ClientCutText (a negative length: the extended clipboard format)
        if have < 8:
            return None
        size = abs(struct.unpack_from(">i", data, at + 4)[0])
        if size > MAX_CLIPBOARD_BYTES:
            raise ProtocolError(f"a clipboard message may hold at most {MAX_CLIPBOARD_BYTES} bytes", True)
        return 8 + size
    if kind == 248:  # ClientFence
        return None if have < 9 else 9 + data[at + 8]
    if kind == 251:  # SetDesktopSize
        return None if have < 8 else 8 + 16 * data[at + 6]
    if kind == 253:  # gii
        return None if have < 4 else 4 + struct.unpack_from(">H", data, at + 2)[0]
    if kind == 255:  # QEMU: only the extended key event (subtype 0) is sent by browsers
        if have < 2:
            return None
        if data[at + 1] != 0:
            raise ProtocolError(f"QEMU message subtype {data[at + 1]} is not supported")
        return 12
    raise ProtocolError(f"unknown RFB message type {kind}")


class ClientMessages:
    """The browser's RFB messages after the handshake, cut whole: input dropped for a read-only watcher,
    input reported to `on_input` otherwise. `feed(data)` returns the bytes to pass on to the node."""

    __slots__ = ("_buffer", "_on_input", "read_only")

    def __init__(self, read_only: bool, on_input: Callable[[], None]) -> None:
        self.read_only = read_only
        self._on_input = on_input
        self._buffer = bytearray()

    def feed(self, data: bytes) -> bytes:
        buffer = self._buffer
        buffer += data
        out = bytearray()
        start = 0
        saw_input = False
        while start < len(buffer):
            length = _length(buffer, start)
            if length is None or start + length > len(buffer):
                break
            kind = buffer[start]
            if kind in INPUT_TYPES:
                saw_input = True
                if not self.read_only:
                    out += buffer[start : start + length]
            else:
                out += buffer[start : start + length]
            start += length
        del buffer[:start]
        if saw_input and not self.read_only:
            self._on_input()
        return bytes(out)
