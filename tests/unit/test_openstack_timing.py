"""When the OpenStack provider polls Heat (timing.py): around the completion that recent operations of the
same template predict. Operations are simulated on a clock (no Heat): each takes a known time, and is
polled exactly when `next_poll` asks; a launch is seen late by the time from its completion to the poll
that saw it done."""

from __future__ import annotations

from stacklab.providers.openstack.timing import Durations, next_poll

FAST = 0.1
SLOW = 2.0


def seen(durations: Durations, takes: float) -> tuple[float, int]:
    """One operation taking `takes` seconds, polled as `next_poll` asks: (seen late by, polls)."""
    now, last_poll, running_at = 0.0, 0.0, 0.0
    for polls in range(1, 1001):  # bounded: every poll here moves the clock by a millisecond at least
        wait = next_poll(
            durations, "tpl", "CREATE", 1, elapsed=now, since_poll=now - last_poll, slow_poll_s=SLOW
        )
        now += max(wait, 0.001)
        if now >= takes:
            durations.learn("tpl", "CREATE", running_at, now)
            return now - takes, polls
        running_at = last_poll = now
    raise AssertionError(f"an operation of {takes} s was never seen done")


def test_steady_launches_are_seen_within_a_fast_poll_with_few_polls() -> None:
    durations = Durations(FAST)
    results = [seen(durations, takes) for takes in (2.5, 2.45, 2.4, 2.6, 2.4, 2.4, 2.5)]
    assert all(late <= FAST for late, _ in results[2:]), results
    assert all(polls <= 4 for _, polls in results[2:]), results


def test_a_cloud_slow_once_does_not_leave_later_launches_polled_sparsely() -> None:
    """The first launch on a freshly started Heat took 4 s, every later one 2.4 s: once a few have shown
    the new pace, launches are seen within a fast poll again (the window was spread over both paces, and
    every later launch was seen ~0.15 s late with its polls 0.8 s apart, for good)."""
    durations = Durations(FAST)
    results = [seen(durations, takes) for takes in [4.0] + [2.4] * 7]
    assert all(late <= FAST for late, _ in results[-3:]), results
    window = durations.window("tpl", "CREATE")
    assert window is not None and window.closes - window.opens <= 3 * FAST, window
