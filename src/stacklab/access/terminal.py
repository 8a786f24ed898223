"""Terminal sessions: an interactive shell on a node (asyncssh, with a PTY) that a browser tab attaches to.

Framework-free: the web layer (`stacklab.web.terminal`) moves bytes between a websocket and an `Attachment`.

- **Output** is kept as the bytes SSH delivered (no decoding, no copying on the hot path) in a short list of
  chunks with stream offsets: byte N of a session's output always has offset N.
- **Flow control**: the SSH channel is not read while more than `HIGH_WATER` (512 KiB) bytes are produced but
  not acknowledged by the client, and is read again below `LOW_WATER` (128 KiB). The SSH channel window is
  small too (`CHANNEL_WINDOW`), so after a flood only a bounded backlog sits between the shell and the
  screen and Ctrl-C acts at once. The same bound holds while no client is attached.
- **Watching**: read-only clients (staff looking at a learner's lab) watch the learner's live shell instead of
  opening one of their own: they get the same output, never type, never hold the shell back (their acks do
  not count) and never take it from the learner; a watcher that falls `HIGH_WATER` behind is dropped.
- **Keeping**: a session outlives its websocket for `keep_s` (detached), so a reconnect with the same
  session id re-attaches to the same shell; it replays what the server still holds after the client's
  offset (every unacknowledged byte, and at least the last `REPLAY_TAIL` bytes, so a reloaded page that
  starts at offset 0 shows the prompt).
- **Costs**: no thread per session, no preallocated buffers; an idle session holds an SSH channel and a few
  KiB of output tail. Shells on one node share its SSH connection (`stacklab.access.ssh.POOL`), so a second
  tab opens in a few ms.

The private key is used only to open the SSH connection; it is never stored here nor logged.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncssh

from stacklab.access.ssh import Lease, Target, open_channel
from stacklab.errors import AccessError

log = logging.getLogger(__name__)

HIGH_WATER = 512 * 1024
LOW_WATER = 128 * 1024
REPLAY_TAIL = 16 * 1024
CHANNEL_WINDOW = 256 * 1024
CHANNEL_PACKET = 32 * 1024
MAX_SESSIONS_PER_SUBJECT = 10
TERM_TYPE = "xterm-256color"


@dataclass(frozen=True)
class SessionKey:
    """Who owns a shell: one per (environment, node, token subject, browser tab's session id)."""

    env_id: str
    node: str
    subject: str
    session_id: str


def new_session_id() -> str:
    return secrets.token_urlsafe(12)


class Attachment:
    """One client (a websocket) attached to a session: what to send it next, and what it sent back."""

    __slots__ = ("_pending", "_waiter", "ended", "read_only", "ready_offset", "sent", "session", "watching")

    def __init__(
        self, session: TerminalSession, start: int, replay: bytes, read_only: bool, watching: bool = False
    ) -> None:
        self.session = session
        self.read_only = read_only or watching
        self.watching = watching  # a watcher: output only, and its acks do not count
        self.ready_offset = start  # stream offset of the first byte this attachment will receive
        self.sent = start  # stream offset after the last byte handed out by `output()`
        self._pending: list[bytes] = [replay] if replay else []
        self._waiter: asyncio.Future[None] | None = None  # not an asyncio.Event: this costs less per session
        self.ended: str | None = None  # why this attachment ended (the session closed, another tab took it)

    # session -> client --------------------------------------------------------------------------------
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _push(self, data: bytes) -> None:
        self._pending.append(data)
        self._wake()

    def _end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
        self._wake()

    async def output(self) -> bytes | None:
        """The output produced since the last call, as one chunk; None once this attachment has ended
        (all output produced before the end is handed out first)."""
        while True:
            pending = self._pending
            if pending:
                self._pending = []
                data = pending[0] if len(pending) == 1 else b"".join(pending)
                self.sent += len(data)
                return data
            if self.ended is not None:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    # client -> session --------------------------------------------------------------------------------
    def write(self, data: bytes) -> bool:
        """Input from the client; dropped for read-only clients. True when it went to the shell."""
        if self.read_only or self.ended is not None:
            return False
        return self.session._input(data)

    def resize(self, cols: int, rows: int) -> None:
        if self.ended is None:
            self.session.resize(cols, rows)

    def ack(self, offset: int) -> None:
        """The client rendered output up to `offset` (a stream offset); never beyond what it was sent."""
        if self.ended is None and not self.watching:
            self.session._ack(min(offset, self.sent))


class TerminalSession(asyncssh.SSHClientSession[bytes]):
    """A shell with a PTY on one node, its recent output, and at most one attached client."""

    def __init__(
        self,
        key: SessionKey,
        on_closed: Callable[[TerminalSession], None],
        activity: Callable[[], None] | None = None,
        activity_throttle_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.key = key
        self._on_closed = on_closed
        self._activity = activity
        self._activity_throttle_s = activity_throttle_s
        self._clock = clock
        self._last_activity = float("-inf")
        self._lease: Lease | None = None
        self._chan: asyncssh.SSHClientChannel[bytes] | None = None
        self._chunks: list[bytes] = []  # few per idle session: a list is smaller than a deque
        self.base = 0  # stream offset of the first byte still held
        self.end = 0  # stream offset after the last byte produced
        self.acked = 0  # the client rendered everything before this offset
        self._paused = False
        self.attachment: Attachment | None = None
        self.watchers: list[Attachment] = []
        self.closed: str | None = None  # the reason, once closed
        self._keep_timer: asyncio.TimerHandle | None = None
        self.created_at = clock()
        self.attached_at = self.created_at
        self.detached_at: float | None = None
        self.generation: int | None = None  # the environment's token generation it was opened with

    # opening -------------------------------------------------------------------------------------------
    async def start(self, target: Target, cols: int, rows: int, connect_timeout_s: float) -> None:
        """Start the login shell (on the node's shared connection); raises AccessError when the node
        cannot be reached."""

        async def shell(connection: asyncssh.SSHClientConnection) -> object:
            return await connection.create_session(
                lambda: self,
                term_type=TERM_TYPE,
                term_size=(cols, rows),
                env={"LANG": "C.UTF-8"},
                encoding=None,
                window=CHANNEL_WINDOW,
                max_pktsize=CHANNEL_PACKET,
            )

        try:
            _, self._lease = await open_channel(target, connect_timeout_s, shell)
        except (OSError, asyncssh.Error) as exc:
            raise AccessError(f"opening a shell on {target.host} failed: {exc}") from exc
        if self.closed is not None:  # the shell ended before we got the lease
            self._release()

    # asyncssh callbacks --------------------------------------------------------------------------------
    def connection_made(self, chan: asyncssh.SSHClientChannel[bytes]) -> None:  # type: ignore[override]
        self._chan = chan

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        """The hot path: keep the chunk, hand it to the client, stop reading when too much is unacked."""
        self._chunks.append(data)
        self.end += len(data)
        attachment = self.attachment
        if attachment is not None:
            attachment._push(data)
        if self.watchers:
            self._feed_watchers(data, self.end - len(data))
        if not self._paused and self.end - self.acked > HIGH_WATER and self._chan is not None:
            self._paused = True
            self._chan.pause_reading()

    def _feed_watchers(self, data: bytes, offset: int) -> None:
        """Hand `data` (at stream `offset`) to the watchers; one that has not taken HIGH_WATER bytes is
        dropped (what it holds is everything after what `output()` handed it: `offset - sent`)."""
        for watcher in list(self.watchers):
            if offset - watcher.sent > HIGH_WATER:
                self.watchers.remove(watcher)
                watcher._end("the view fell too far behind the terminal; reopen it")
            else:
                watcher._push(data)

    def eof_received(self) -> bool:
        return False  # let the channel close

    def connection_lost(self, exc: Exception | None) -> None:
        self.close("the shell exited" if exc is None else f"the connection to the node was lost: {exc}")

    # client side ---------------------------------------------------------------------------------------
    def _input(self, data: bytes) -> bool:
        chan = self._chan
        if chan is None or self.closed is not None:
            return False
        chan.write(data)
        if self._activity is not None:
            now = self._clock()
            if now - self._last_activity >= self._activity_throttle_s:
                self._last_activity = now
                try:
                    self._activity()
                except Exception:  # activity is best effort; the keystroke already went through
                    log.warning("recording terminal activity failed", exc_info=True)
        return True

    def resize(self, cols: int, rows: int) -> None:
        if self._chan is not None and self.closed is None:
            self._chan.change_terminal_size(cols, rows)

    def _ack(self, offset: int) -> None:
        if offset <= self.acked:
            return
        self.acked = offset
        self._trim()
        if self._paused and self.end - self.acked < LOW_WATER and self._chan is not None:
            self._paused = False
            self._chan.resume_reading()

    def _trim(self) -> None:
        """Drop output that is both acknowledged and older than the replay tail."""
        keep_from = min(self.acked, self.end - REPLAY_TAIL)
        chunks = self._chunks
        done = 0
        while done < len(chunks) and self.base + len(chunks[done]) <= keep_from:
            self.base += len(chunks[done])
            done += 1
        del chunks[:done]
        if chunks and keep_from - self.base >= 4096:
            chunks[0] = chunks[0][keep_from - self.base :]
            self.base = keep_from

    def held(self) -> int:
        """Bytes of output held for replay."""
        return self.end - self.base

    def read(self, start: int) -> bytes:
        """The held output from stream offset `start` (clamped to what is held) to the end."""
        start = max(start, self.base)
        pieces = []
        pos = self.base
        for chunk in self._chunks:
            chunk_end = pos + len(chunk)
            if chunk_end > start:
                pieces.append(chunk if pos >= start else chunk[start - pos :])
            pos = chunk_end
        return b"".join(pieces)

    def attach(self, offset: int, read_only: bool = False, cols: int = 0, rows: int = 0) -> Attachment:
        """Attach a client that already has `offset` bytes of output (0: none); a previous client is detached.

        The client is first sent what the server holds after its offset. A client at offset 0 (a reloaded
        page) or beyond the end (an offset from another shell) gets the last `REPLAY_TAIL` bytes, from a
        line start when there is one. `Attachment.ready_offset` is the stream offset of the first byte sent.
        """
        if self.closed is not None:
            raise RuntimeError("attach to a closed terminal session")
        if self._keep_timer is not None:
            self._keep_timer.cancel()
            self._keep_timer = None
        self.detached_at = None
        self.attached_at = self._clock()
        previous = self.attachment
        if previous is not None:
            previous._end("the terminal was opened in another tab")
        start = self._replay_from(offset)
        if 0 < offset <= self.end:
            self._ack(offset)
        attachment = Attachment(self, start, self.read(start), read_only)
        self.attachment = attachment
        if cols > 0 and rows > 0:
            self.resize(cols, rows)
        return attachment

    def watch(self, offset: int) -> Attachment:
        """Add a watcher (see the module doc) that already has `offset` bytes; replay as for `attach`."""
        if self.closed is not None:
            raise RuntimeError("watch a closed terminal session")
        start = self._replay_from(offset)
        watcher = Attachment(self, start, self.read(start), read_only=True, watching=True)
        self.watchers.append(watcher)
        return watcher

    def _replay_from(self, offset: int) -> int:
        """Where a client with `offset` bytes resumes: after its offset, or for a fresh client (or an offset
        of another shell) the last `REPLAY_TAIL` bytes, from a line start when there is one."""
        if 0 < offset <= self.end:
            return max(offset, self.base)
        start = max(self.base, self.end - REPLAY_TAIL)
        if start > 0:
            newline = self.read(start)[:4096].find(b"\n")
            if newline >= 0:
                start += newline + 1
        return start

    def detach(self, attachment: Attachment, keep_s: float) -> None:
        """The client went away: keep the shell for `keep_s` seconds for a reconnect, then close it.
        A watcher going away changes nothing for the shell."""
        attachment._end("detached")
        if attachment in self.watchers:
            self.watchers.remove(attachment)
            return
        if self.attachment is not attachment or self.closed is not None:
            return
        self.attachment = None
        self.detached_at = self._clock()
        if keep_s <= 0:
            self.close("detached")
            return
        self._keep_timer = asyncio.get_running_loop().call_later(keep_s, self.close, "kept long enough")

    def pause(self, reason: str, keep_s: float) -> None:
        """The lab was paused: its clients are told why and let go, the shell is kept as after a closed
        tab (its frozen node keeps it as it was), so the learner's return finds it with its history."""
        if self.closed is not None:
            return
        for watcher in self.watchers:
            watcher._end(reason)
        self.watchers.clear()
        if self.attachment is not None:
            attachment = self.attachment
            attachment._end(reason)
            self.detach(attachment, keep_s)

    # closing -------------------------------------------------------------------------------------------
    def _release(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.release()

    def close(self, reason: str) -> None:
        """Close the shell and the SSH connection; the attached client gets the rest of the output first."""
        if self.closed is not None:
            return
        self.closed = reason
        if self._keep_timer is not None:
            self._keep_timer.cancel()
            self._keep_timer = None
        if self.attachment is not None:
            self.attachment._end(reason)
        for watcher in self.watchers:
            watcher._end(reason)
        self.watchers.clear()
        if self._chan is not None:
            self._chan.close()
        self._release()
        self._chunks.clear()
        self._on_closed(self)


class TerminalManager:
    """The live terminal sessions of one web application, by key; opens, re-attaches, counts and closes them.

    One per application (not per module): two applications in one process (tests, a second instance
    standing for another process) must not close each other's shells. `on_closed` hears of every shell
    that closes (the web process forgets where it lived)."""

    def __init__(
        self,
        max_per_subject: int = MAX_SESSIONS_PER_SUBJECT,
        on_closed: Callable[[SessionKey], None] | None = None,
    ) -> None:
        self.max_per_subject = max_per_subject
        self._on_closed = on_closed
        self._sessions: dict[SessionKey, TerminalSession] = {}
        self._opening: dict[SessionKey, asyncio.Future[TerminalSession]] = {}

    def get(self, key: SessionKey) -> TerminalSession | None:
        session = self._sessions.get(key)
        return session if session is not None and session.closed is None else None

    async def open(
        self,
        key: SessionKey,
        target: Callable[[], Target],
        cols: int,
        rows: int,
        *,
        connect_timeout_s: float = 5.0,
        activity: Callable[[], None] | None = None,
        activity_throttle_s: float = 10.0,
        generation: int | None = None,
    ) -> tuple[TerminalSession, bool]:
        """The live session for `key`, or a new one (then True); concurrent opens of one key share a shell.

        `target` is called only when a new shell is needed. Raises AccessError when SSH fails.
        `generation`: the environment's token generation of the token that opens it (None: a token not
        bound to the environment); a new shell keeps it, so that a later revocation closes it.
        """
        session = self.get(key)
        if session is not None:
            return session, False
        pending = self._opening.get(key)
        if pending is None:
            self._make_room(key)
            pending = asyncio.ensure_future(
                self._start(
                    key, target(), cols, rows, connect_timeout_s, activity, activity_throttle_s, generation
                )
            )
            self._opening[key] = pending
            pending.add_done_callback(lambda _: self._opening.pop(key, None))
            return await asyncio.shield(pending), True
        return await asyncio.shield(pending), False

    async def _start(
        self,
        key: SessionKey,
        target: Target,
        cols: int,
        rows: int,
        connect_timeout_s: float,
        activity: Callable[[], None] | None,
        activity_throttle_s: float,
        generation: int | None,
    ) -> TerminalSession:
        session = TerminalSession(key, self._forget, activity, activity_throttle_s)
        session.generation = generation
        await session.start(target, cols, rows, connect_timeout_s)
        if session.closed is None:
            self._sessions[key] = session
            log.info(
                "terminal opened",
                extra={"env_id": key.env_id, "node": key.node, "subject": key.subject},
            )
        return session

    def _make_room(self, key: SessionKey) -> None:
        """At most `max_per_subject` shells per (environment, subject): close the longest-detached first."""
        mine = [s for k, s in self._sessions.items() if (k.env_id, k.subject) == (key.env_id, key.subject)]
        if len(mine) < self.max_per_subject:
            return
        detached = sorted((s for s in mine if s.detached_at is not None), key=lambda s: s.detached_at or 0)
        for session in detached[: len(mine) - self.max_per_subject + 1]:
            session.close("too many terminals open; this one was detached longest")

    def _forget(self, session: TerminalSession) -> None:
        if self._sessions.get(session.key) is session:
            del self._sessions[session.key]
            if self._on_closed is not None:
                self._on_closed(session.key)
            log.info(
                "terminal closed",
                extra={
                    "env_id": session.key.env_id,
                    "node": session.key.node,
                    "subject": session.key.subject,
                    "reason": session.closed,
                },
            )

    def watchable(self, env_id: str, node: str) -> TerminalSession | None:
        """The shell a watcher of (environment, node) should see: the one attached most recently, else the
        one detached most recently; None when there is none."""
        live = [
            s for k, s in self._sessions.items() if (k.env_id, k.node) == (env_id, node) and s.closed is None
        ]
        if not live:
            return None
        return max(live, key=lambda s: (s.attachment is not None, s.attached_at))

    def count(self) -> int:
        """Sessions open, attached or kept detached (for a Prometheus gauge)."""
        return len(self._sessions)

    def env_ids(self) -> set[str]:
        """The environments with a session open or opening: what must be watched for a state change."""
        return {key.env_id for key in self._sessions} | {key.env_id for key in self._opening}

    def attached(self) -> int:
        return sum(1 for s in self._sessions.values() if s.attachment is not None)

    def close_sessions(self, env_id: str, reason: str = "the environment was stopped") -> int:
        """Close every session of one environment (deleted, reset, suspended); returns how many."""
        doomed = [s for k, s in self._sessions.items() if k.env_id == env_id]
        for session in doomed:
            session.close(reason)
        return len(doomed)

    def pause_sessions(self, env_id: str, reason: str, keep_s: float) -> int:
        """Let go of the clients of one paused environment, keeping its shells; returns how many had one."""
        paused = [s for k, s in self._sessions.items() if k.env_id == env_id and (s.attachment or s.watchers)]
        for session in paused:
            session.pause(reason, keep_s)
        return len(paused)

    def close_revoked(self, env_id: str, generation: int, reason: str) -> int:
        """Close the sessions of one environment opened with tokens older than `generation` (its tokens
        were withdrawn); returns how many."""
        doomed = [
            s
            for k, s in self._sessions.items()
            if k.env_id == env_id and s.generation is not None and s.generation < generation
        ]
        for session in doomed:
            session.close(reason)
        return len(doomed)

    def close_all(self, reason: str = "the service is shutting down") -> int:
        doomed = list(self._sessions.values())
        for session in doomed:
            session.close(reason)
        return len(doomed)

    async def shutdown(self) -> None:
        """Close every session (on application shutdown) and let the closing messages go out."""
        if self.close_all():
            await asyncio.sleep(0)
