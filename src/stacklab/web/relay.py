"""Terminal relays: a websocket that reached a web process other than the one holding its shell is passed
on to that one, frames unchanged (docs/terminals.md).

The entry process has admitted the client already (origin, token, environment, node). It opens a
websocket to the holder's advertised address with the client's path and query (and its Authorization
header, if any) and a `x-stacklab-relay` header: `<member id>:<unix time>:<HMAC-SHA256>` over the member
id, the time, the path and the query, keyed by a secret derived from the service's `secret_key`. The
holder admits the client again (the learner's token is checked there too, never trusted from a peer);
the signature only tells it that a peer sent the connection, so it serves the session itself and never
relays it further. Frames are passed through unchanged both ways, so acks, offsets, replay and close
codes work end to end; flow control stays the holder's (the browser's acks reach it), and the relay holds
at most what the holder sends before the browser acks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable

from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from stacklab.access.terminal import SessionKey, TerminalManager
from stacklab.errors import Refused
from stacklab.web.membership import Membership

log = logging.getLogger(__name__)

HEADER = "x-stacklab-relay"
MAX_SKEW_S = 60.0  # a signed relay request is accepted this long (clocks of peers may differ a little)
CLOSE_FORBIDDEN = 4403
CLOSE_UNREACHABLE = 1011
NO_CLOSE_FRAME = 1006  # the holder vanished without closing: never sent on the wire
OWNER_LOST = "the process holding this terminal stopped; reconnect to open a new shell"


class RelayKey:
    """Signs and checks the header that marks a websocket as relayed by a peer."""

    def __init__(self, secret: str, clock: Callable[[], float] = time.time) -> None:
        self._secret = secret.encode()
        self._clock = clock

    def _mac(self, member_id: str, stamp: str, path: str, query: str) -> str:
        message = "\n".join((member_id, stamp, path, query)).encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def sign(self, member_id: str, path: str, query: str) -> str:
        stamp = str(int(self._clock()))
        return f"{member_id}:{stamp}:{self._mac(member_id, stamp, path, query)}"

    def verify(self, header: str, path: str, query: str) -> str:
        """The relaying member's id; Refused (4403) for a header that is malformed, stale or forged."""
        parts = header.rsplit(":", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            raise Refused(CLOSE_FORBIDDEN, "a malformed relay header")
        member_id, stamp, mac = parts
        if abs(self._clock() - int(stamp)) > MAX_SKEW_S:
            raise Refused(CLOSE_FORBIDDEN, "a stale relay header")
        if not hmac.compare_digest(mac.encode(), self._mac(member_id, stamp, path, query).encode()):
            raise Refused(CLOSE_FORBIDDEN, "a relay header with a bad signature")
        return member_id


def websocket_url(address: str, path: str, query: str) -> str:
    """The holder's websocket URL for the client's path and query (http -> ws, https -> wss)."""
    base = "ws" + address.removeprefix("http") if address.startswith("http") else address
    return f"{base}{path}" + (f"?{query}" if query else "")


async def open_relay(
    key: RelayKey,
    member_id: str,
    address: str,
    path: str,
    query: str,
    authorization: str | None,
    timeout_s: float,
) -> ClientConnection:
    """A websocket to the holder at `address`; raises OSError, TimeoutError or a websockets error when it
    cannot be opened (the caller then takes the holder for dead)."""
    headers = {HEADER: key.sign(member_id, path, query)}
    if authorization:
        headers["authorization"] = authorization
    return await connect(
        websocket_url(address, path, query),
        additional_headers=headers,
        compression=None,
        max_size=None,
        open_timeout=timeout_s,
        close_timeout=timeout_s,
    )


async def pipe(receive: Receive, send: Send, holder: ClientConnection) -> None:
    """Pass frames between the client (ASGI) and the holder until either side leaves; the client gets
    the holder's close code and reason, or 1011 with an error message when the holder vanished."""
    upward = asyncio.ensure_future(_upward(receive, holder))
    try:
        await _downward(send, holder)
    finally:
        upward.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await upward
        await holder.close()


async def _upward(receive: Receive, holder: ClientConnection) -> None:
    """Client -> holder, until the client leaves (then the holder is told, which ends `_downward`)."""
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            await holder.close()
            return
        data = message.get("bytes")
        try:
            await holder.send(data if data is not None else message.get("text") or "")
        except ConnectionClosed:
            return


async def _downward(send: Send, holder: ClientConnection) -> None:
    """Holder -> client, then the holder's close passed on."""
    try:
        async for message in holder:
            if isinstance(message, bytes):
                await send({"type": "websocket.send", "bytes": message})
            else:
                await send({"type": "websocket.send", "text": message})
    except ConnectionClosed:
        pass
    except (RuntimeError, OSError):
        return  # the client went away mid-send
    code = holder.close_code
    reason = holder.close_reason or ""
    with contextlib.suppress(RuntimeError, OSError):
        if code is None or code == NO_CLOSE_FRAME:
            await send(
                {"type": "websocket.send", "text": json.dumps({"type": "error", "message": OWNER_LOST})}
            )
            await send({"type": "websocket.close", "code": CLOSE_UNREACHABLE, "reason": OWNER_LOST[:120]})
        else:
            await send({"type": "websocket.close", "code": code, "reason": reason})


class Relays:
    """Where a terminal websocket is served: here, or relayed to the live member holding its shell."""

    def __init__(self, membership: Membership, key: RelayKey, connect_timeout_s: float) -> None:
        self.membership = membership
        self.key = key
        self.connect_timeout_s = connect_timeout_s

    def relayed(self, scope: Scope) -> bool:
        """True for a websocket a peer relayed here (serve it here, never relay it on); Refused (4403)
        for a relay header that does not check out."""
        header = _header(scope, HEADER.encode())
        if header is None:
            return False
        self.key.verify(header, *_target(scope))
        return True

    async def route(
        self, key: SessionKey, read_only: bool, local: TerminalManager, scope: Scope
    ) -> tuple[ClientConnection, str] | None:
        """A websocket to the live peer that holds the session (for a watcher: the newest shell on the
        node), and its member id; None to serve here (this process holds it, nobody does, or the holder
        does not answer: its shells are gone with it, and a new one opens here)."""
        membership = self.membership
        if read_only:
            holder = await membership.watched(key.env_id, key.node) or await membership.holder(key)
        elif local.get(key) is not None:
            return None
        else:
            holder = await membership.holder(key)
        if holder is None or holder.member_id == membership.id or not holder.address:
            return None
        extra = {"env_id": key.env_id, "node": key.node, "holder": holder.member_id}
        if holder.address == membership.address:  # two machines advertising 127.0.0.1: a relay to ourselves
            log.warning(
                "terminal: another web member advertises this one's address; set advertise_url", extra=extra
            )
        try:
            connection = await open_relay(
                self.key,
                membership.id,
                holder.address,
                *_target(scope),
                _header(scope, b"authorization"),
                self.connect_timeout_s,
            )
        except (OSError, TimeoutError, WebSocketException) as exc:
            log.warning(
                "terminal: the holder does not answer; serving here", extra={**extra, "error": str(exc)}
            )
            return None
        log.info("terminal relayed", extra=extra)
        return connection, holder.member_id


def _header(scope: Scope, name: bytes) -> str | None:
    return next((value.decode("latin-1") for key, value in scope["headers"] if key == name), None)


def _target(scope: Scope) -> tuple[str, str]:
    """The request's path as sent (percent-encoding kept) and its query string."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else scope["path"]
    return path, scope.get("query_string", b"").decode("latin-1")
