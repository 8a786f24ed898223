"""A small RFB (VNC) client over a websocket, for the desktop tests and bench/desktop.py.

It speaks RFB 3.8 with security type None (what the service's desktop websocket and a websockify in
front of a password-less VNC server offer), asks for Raw, CopyRect and ZRLE rectangles, and reads
framebuffer updates without decoding their pixels: enough to type, point, and count frames and bytes.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect

ENCODINGS = (16, 1, 0)  # ZRLE, CopyRect, Raw: what Xvnc offers and a client can skip without decoding
XK_RETURN = 0xFF0D


@dataclass
class Update:
    rects: int
    bytes: int


class RfbClient:
    def __init__(self, ws: ClientConnection, server_control: bool) -> None:
        self.ws = ws
        self.server_control = server_control
        self.buffer = bytearray()
        self.received = 0
        self.width = self.height = 0
        self.bpp = 4

    @classmethod
    async def open(cls, url: str, *, origin: str | None = None, control: bool = True) -> RfbClient:
        """Connect and handshake. `control`: the service's websocket (a `ready` message comes first)."""
        ws = await connect(url, origin=origin, max_size=None, compression=None, subprotocols=None)
        client = cls(ws, control)
        if control:
            first = await ws.recv()
            message = json.loads(first)
            if message.get("type") != "ready":
                raise ConnectionError(message.get("message", first))
        await client._handshake()
        return client

    async def need(self, count: int) -> bytes:
        while len(self.buffer) < count:
            data = await self.ws.recv()
            if isinstance(data, str):
                raise ConnectionError(f"a text frame in the RFB stream: {data}")
            self.received += len(data)
            self.buffer += data
        out = bytes(self.buffer[:count])
        del self.buffer[:count]
        return out

    async def _handshake(self) -> None:
        version = await self.need(12)
        await self.ws.send(b"RFB 003.008\n" if version >= b"RFB 003.008" else version)
        (count,) = await self.need(1)
        if 1 not in await self.need(count):
            raise ConnectionError("the server asks for a password")
        await self.ws.send(b"\x01")
        if struct.unpack(">I", await self.need(4))[0] != 0:
            raise ConnectionError("security handshake refused")
        await self.ws.send(b"\x01")  # shared
        self.width, self.height = struct.unpack(">HH", await self.need(4))
        self.bpp = (await self.need(16))[0] // 8
        (name_length,) = struct.unpack(">I", await self.need(4))
        await self.need(name_length)
        await self.ws.send(struct.pack(f">BxH{len(ENCODINGS)}i", 2, len(ENCODINGS), *ENCODINGS))

    async def request(self, incremental: bool = True) -> None:
        await self.ws.send(struct.pack(">BBHHHH", 3, int(incremental), 0, 0, self.width, self.height))

    async def update(self) -> Update:
        """The next framebuffer update (other server messages are skipped)."""
        while True:
            kind = (await self.need(1))[0]
            if kind == 0:
                break
            if kind == 2:  # bell
                continue
            if kind == 3:  # server cut text
                await self.need(3)
                (length,) = struct.unpack(">I", await self.need(4))
                await self.need(length)
                continue
            raise ConnectionError(f"unexpected server message {kind}")
        start = self.received - len(self.buffer) - 1
        (count,) = struct.unpack(">xH", await self.need(3))
        for _ in range(count):
            _x, _y, w, h, encoding = struct.unpack(">HHHHi", await self.need(12))
            if encoding == 0:
                await self.need(w * h * self.bpp)
            elif encoding == 1:
                await self.need(4)
            elif encoding == 16:
                (length,) = struct.unpack(">I", await self.need(4))
                await self.need(length)
            else:
                raise ConnectionError(f"unexpected encoding {encoding}")
        return Update(count, self.received - len(self.buffer) - start)

    async def key(self, keysym: int) -> None:
        await self.ws.send(struct.pack(">BBxxI", 4, 1, keysym) + struct.pack(">BBxxI", 4, 0, keysym))

    async def type_text(self, text: str) -> None:
        for char in text:
            await self.key(XK_RETURN if char == "\n" else ord(char))

    async def click(self, x: int, y: int) -> None:
        await self.ws.send(struct.pack(">BBHH", 5, 1, x, y) + struct.pack(">BBHH", 5, 0, x, y))

    async def close(self) -> None:
        await self.ws.close()
