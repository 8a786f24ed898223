"""The openstack provider's write room (room.py): how many writes go to Heat at once, moved by how promptly
Heat answers the polls sent meanwhile."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from stacklab.providers.openstack.room import RECENT, WriteRoom

QUICK, SLOW = 0.03, 1.0


@contextmanager
def writes_out(room: WriteRoom, count: int) -> Iterator[None]:
    """`count` writes holding their room until the block ends."""
    release = threading.Event()
    holding = threading.Barrier(count + 1)

    def write() -> None:
        with room.slot():
            holding.wait()
            release.wait()

    threads = [threading.Thread(target=write) for _ in range(count)]
    for thread in threads:
        thread.start()
    holding.wait(timeout=5)
    try:
        yield
    finally:
        release.set()
        for thread in threads:
            thread.join(timeout=5)


def waiter(room: WriteRoom) -> tuple[threading.Thread, threading.Event]:
    """A write waiting for room in its own thread; the event is set once it got in."""
    got_in = threading.Event()

    def write() -> None:
        with room.slot():
            got_in.set()

    thread = threading.Thread(target=write)
    thread.start()
    for _ in range(500):
        if room.waiting:
            break
        time.sleep(0.001)
    return thread, got_in


def test_a_write_waits_while_the_room_is_full_and_goes_when_one_ends() -> None:
    room = WriteRoom(2, margin_s=0.1)
    with writes_out(room, 2):
        thread, got_in = waiter(room)
        assert room.waiting == 1
        assert not got_in.wait(0.1)
    assert got_in.wait(5)
    thread.join(5)
    assert room.out == 0


def test_slow_answers_while_writes_are_out_halve_the_room_down_to_one() -> None:
    room = WriteRoom(4, margin_s=0.1)
    room.answered(time.monotonic(), QUICK)  # before the burst: Heat answers quickly
    with writes_out(room, 4):
        for expected in (2, 1, 1):
            room.answered(time.monotonic(), SLOW)
            assert room.limit == expected
    assert room.lowest == 1


def test_a_burst_to_a_cloud_never_polled_before_is_judged_by_the_margin() -> None:
    room = WriteRoom(4, margin_s=0.1)
    with writes_out(room, 4):
        room.answered(time.monotonic(), 0.05)
        assert room.limit == 4
        room.answered(time.monotonic(), 0.3)
        assert room.limit == 2


def test_a_slow_answer_with_no_write_of_ours_out_leaves_the_room_as_it_is() -> None:
    room = WriteRoom(4, margin_s=0.1)
    room.answered(time.monotonic(), QUICK)
    room.answered(time.monotonic(), SLOW)
    assert room.limit == 4


def halved(most: int) -> WriteRoom:
    """A room of `most` writes that Heat answered quickly, then slowly while all `most` were out."""
    room = WriteRoom(most, margin_s=0.1)
    room.answered(time.monotonic(), QUICK)
    with writes_out(room, most):
        room.answered(time.monotonic(), SLOW)
    return room


def test_prompt_answers_while_writes_wait_open_the_room_again_up_to_api_writes() -> None:
    room = halved(2)
    assert room.limit == 1
    with writes_out(room, 1):
        thread, got_in = waiter(room)
        room.answered(time.monotonic(), QUICK)
        assert room.limit == 2
        assert got_in.wait(5)
        thread.join(5)
    with writes_out(room, 2):
        thread, got_in = waiter(room)
        room.answered(time.monotonic(), QUICK)
        assert room.limit == 2  # api_writes
        assert not got_in.wait(0.05)
    assert got_in.wait(5)
    thread.join(5)


def test_prompt_answers_with_nobody_waiting_leave_the_room_as_it_is() -> None:
    room = halved(4)
    with writes_out(room, 2):
        room.answered(time.monotonic(), QUICK)
    assert room.limit == 2


def test_an_answer_to_a_poll_sent_before_the_room_moved_changes_nothing() -> None:
    room = WriteRoom(4, margin_s=0.1)
    room.answered(time.monotonic(), QUICK)
    with writes_out(room, 4):
        sent_before = time.monotonic()
        room.answered(time.monotonic(), SLOW)
        assert room.limit == 2
        room.answered(sent_before, SLOW)  # it queued behind the 4 writes the room allowed then
        assert room.limit == 2


def test_a_heat_slow_for_its_own_reasons_gets_its_room_back() -> None:
    """An engine slow with other work answers slowly whatever we send: once that is the quickest recent
    answer, answers at that pace are prompt for it and the writes waiting get room again."""
    room = WriteRoom(4, margin_s=0.1)
    room.answered(time.monotonic(), QUICK)
    with writes_out(room, 1):
        for _ in range(3):
            room.answered(time.monotonic(), SLOW)
        assert room.limit == 1
        thread, got_in = waiter(room)
        for _ in range(RECENT):
            room.answered(time.monotonic(), SLOW)
        assert room.limit > 1
        assert got_in.wait(5)
        thread.join(5)


def test_a_quiet_answer_ends_the_busy_pace() -> None:
    """Once Heat answers promptly with nothing of ours in its way, slow answers under writes close the room
    again, however slow it was during the burst."""
    room = WriteRoom(4, margin_s=0.1)
    room.answered(time.monotonic(), QUICK)
    with writes_out(room, 1):
        for _ in range(3):
            room.answered(time.monotonic(), SLOW)
        thread, got_in = waiter(room)
        for _ in range(RECENT):
            room.answered(time.monotonic(), SLOW)
        assert got_in.wait(5)
        thread.join(5)
    assert room.limit == 2  # Heat's busy pace made its slow answers prompt
    room.answered(time.monotonic(), QUICK)
    with writes_out(room, 2):
        room.answered(time.monotonic(), SLOW)
    assert room.limit == 1
