"""The terminal session's output book-keeping: offsets, replay after a reconnect, trimming, flow control.

No SSH here: output is fed the way asyncssh delivers it (`data_received`), and the channel is a recorder
of pause/resume calls.
"""

from __future__ import annotations

import asyncio

from stacklab.access.terminal import HIGH_WATER, LOW_WATER, REPLAY_TAIL, SessionKey, TerminalSession


class Channel:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")

    def close(self) -> None:
        self.calls.append("close")


def session() -> tuple[TerminalSession, Channel]:
    closed: list[TerminalSession] = []
    shell = TerminalSession(SessionKey("e1", "main", "learner:ann", "s1"), closed.append)
    channel = Channel()
    shell.connection_made(channel)  # type: ignore[arg-type]
    return shell, channel


def feed(shell: TerminalSession, *chunks: bytes) -> None:
    for chunk in chunks:
        shell.data_received(chunk, None)


async def test_a_client_gets_what_it_has_not_seen_in_order() -> None:
    shell, _ = session()
    feed(shell, b"one\n", b"two\n")
    client = shell.attach(offset=4)  # it already had "one\n"
    assert client.ready_offset == 4
    assert await client.output() == b"two\n"
    feed(shell, b"thr", b"ee\n")
    assert await client.output() == b"three\n"
    assert client.sent == shell.end == 14


async def test_a_reloaded_page_gets_the_tail_from_a_line_start() -> None:
    shell, _ = session()
    lines = [f"line {n:05d}\n".encode() for n in range(5000)]  # 55,000 bytes, more than the tail
    feed(shell, *lines)
    client = shell.attach(offset=0)
    replay = await client.output()
    assert REPLAY_TAIL - len(lines[0]) < len(replay) <= REPLAY_TAIL
    assert replay.startswith(b"line ") and replay.endswith(b"line 04999\n")
    assert client.ready_offset == shell.end - len(replay)


async def test_acknowledged_output_is_dropped_but_the_replay_tail_is_kept() -> None:
    shell, _ = session()
    feed(shell, *[b"x" * 1000 for _ in range(100)])
    client = shell.attach(offset=0)
    await client.output()
    client.ack(shell.end)
    assert REPLAY_TAIL <= shell.held() < REPLAY_TAIL + 4096  # whole chunks, or cut when 4 KiB would go
    assert shell.read(0) == b"x" * shell.held()  # an offset that was dropped gives what is held


async def test_output_pauses_past_the_high_water_mark_until_the_client_catches_up() -> None:
    shell, channel = session()
    client = shell.attach(offset=0)
    feed(shell, *[b"y" * 32768 for _ in range(HIGH_WATER // 32768 + 1)])
    assert channel.calls == ["pause"]
    await client.output()
    client.ack(shell.end - LOW_WATER)  # still LOW_WATER behind: stays paused
    assert channel.calls == ["pause"]
    client.ack(shell.end)
    assert channel.calls == ["pause", "resume"]


async def test_the_client_waiting_for_output_is_woken_and_told_why_it_ended() -> None:
    shell, _ = session()
    client = shell.attach(offset=0)
    waiting = asyncio.ensure_future(client.output())
    await asyncio.sleep(0)
    feed(shell, b"hello")
    assert await waiting == b"hello"
    waiting = asyncio.ensure_future(client.output())
    await asyncio.sleep(0)
    shell.close("the shell exited")
    assert await waiting is None
    assert client.ended == "the shell exited"


async def test_an_ack_beyond_what_was_sent_is_capped() -> None:
    shell, channel = session()
    client = shell.attach(offset=0)
    feed(shell, b"z" * (HIGH_WATER + 1))
    client.ack(10**12)  # nothing was handed out yet: a lying client cannot lift the pause
    assert channel.calls == ["pause"]


async def test_a_watcher_neither_holds_the_shell_back_nor_takes_it() -> None:
    shell, channel = session()
    learner = shell.attach(offset=0)
    feed(shell, b"scrollback\n")
    watcher = shell.watch(offset=0)
    assert await watcher.output() == b"scrollback\n"
    assert not watcher.write(b"rm -rf ~\n")  # watchers never type
    feed(shell, b"w" * (HIGH_WATER + 1))
    assert channel.calls == ["pause"]
    watcher.ack(shell.end)  # a watcher's ack does not release the shell ...
    assert channel.calls == ["pause"]
    await learner.output()
    learner.ack(shell.end)  # ... the learner's does
    assert channel.calls == ["pause", "resume"]
    assert learner.ended is None and shell.attachment is learner
    feed(shell, b"v" * (HIGH_WATER + 1))  # the watcher has not read: it is now too far behind
    assert watcher.ended is not None and "behind" in watcher.ended
    assert shell.watchers == []
    shell.detach(watcher, keep_s=60)  # its websocket closing afterwards changes nothing
    assert shell.attachment is learner and shell.closed is None
