"""bench/cost_sim.py on a small course: the real controller on a simulated clock, figures a course team
would notice (what a lab costs, when it stops costing, what a learner waits). No wall-clock figure."""

from __future__ import annotations

import pytest
from bench.cost_sim import (
    HASTEXO,
    HASTEXO_SUSPEND_INTERVAL_S,
    HASTEXO_SUSPEND_TIMEOUT_S,
    HOUR,
    LOCAL,
    MIX,
    WEEK_H,
    Course,
    Outcome,
    Policy,
    Trace,
    make_traces,
    planned,
    simulate,
    today,
)

DAY_COURSE = Course(days=1)
MINUTE = 60.0
SLACK_MIN = 0.1
"""The lab starts costing when the page asks for it, a fraction of a second after the learner opens it."""


@pytest.fixture(scope="module")
def learners() -> list[Trace]:
    return make_traces(20, seed=7, mix=MIX, course=DAY_COURSE)


def one_visit(work_min: float = 30.0, close_after_min: float = 1.0) -> Trace:
    """Opens the unit at 09:00, types for `work_min`, closes the tab `close_after_min` later."""
    start = 9 * HOUR
    end = start + work_min * MINUTE
    return Trace("learner-solo", "closes_tab", [start], [end + close_after_min * MINUTE], [(start, end)])


async def run_solo(policy: Policy, trace: Trace) -> Outcome:
    return await simulate(policy, LOCAL, [trace], DAY_COURSE, scale=1 / 1000)


async def test_every_policy_costs_between_the_floor_and_always_on(learners: list[Trace]) -> None:
    for policy in (today(15), HASTEXO, planned(5, 0)):
        outcome = await simulate(policy, LOCAL, learners, DAY_COURSE, scale=len(learners) / 1000)
        assert outcome.floor <= outcome.cost <= WEEK_H, policy.label
        assert len(outcome.first_waits) == len(learners)  # everyone launched once
        assert outcome.return_waits, "learners came back to their labs"


async def test_a_first_launch_waits_for_a_create_unless_the_learner_reads_first(
    learners: list[Trace],
) -> None:
    outcome = await simulate(today(15), LOCAL, learners, DAY_COURSE, scale=len(learners) / 1000)
    readers = sum(trace.behaviour == "reads_first" for trace in learners)
    assert 0 < readers < len(learners)
    # the lab launched while they read the unit (10 minutes, less than the 15 min idle timeout)
    assert sum(wait == 0 for wait in outcome.first_waits) == readers
    assert sum(wait >= LOCAL.create_s for wait in outcome.first_waits) == len(learners) - readers


async def test_a_closed_tab_stops_costing_after_the_idle_timeout() -> None:
    for idle_min in (5.0, 20.0):
        outcome = await run_solo(today(idle_min), one_visit(work_min=30))
        running_min = outcome.running_h * 60
        # 30 minutes of typing, then the lab runs idle for the timeout and is suspended; not a minute more
        assert 30 + idle_min - SLACK_MIN <= running_min <= 30 + idle_min + 1, (idle_min, running_min)
        assert outcome.ops["suspend"] == 1


async def test_the_idle_timeout_does_not_pause_a_learner_who_keeps_typing() -> None:
    outcome = await run_solo(today(5), one_visit(work_min=50))
    assert outcome.ops["suspend"] == 1  # only after the work, none during it
    assert 55 - SLACK_MIN <= outcome.running_h * 60 <= 56


async def test_planned_suspend_on_tab_close_stops_costing_within_its_grace() -> None:
    outcome = await run_solo(planned(20, 0), one_visit(work_min=30, close_after_min=1))
    running_min = outcome.running_h * 60
    assert 31 - SLACK_MIN <= running_min <= 31 + 1  # closed a minute after typing, suspended 30 s later


async def test_hastexo_keeps_the_lab_for_the_open_page_and_suspends_after_its_timeout() -> None:
    outcome = await run_solo(HASTEXO, one_visit(work_min=30, close_after_min=20))
    running_min = outcome.running_h * 60
    # an open page is kept alive (20 min without a keystroke), then 120 s and the next minute's sweep
    low = 50 + HASTEXO_SUSPEND_TIMEOUT_S / MINUTE - SLACK_MIN
    assert low <= running_min <= low + HASTEXO_SUSPEND_INTERVAL_S / MINUTE + 1
    assert outcome.first_waits[0] >= 15  # its page asks for the status every 15 s


async def test_a_return_to_a_paused_lab_on_local_waits_less_than_the_target() -> None:
    trace = one_visit(work_min=20, close_after_min=0)
    trace.opens.append(11 * HOUR)  # comes back later the same morning: the lab was paused meanwhile
    trace.bursts.append((11 * HOUR, 11 * HOUR + 10 * MINUTE))
    trace.closes.append(11 * HOUR + 11 * MINUTE)
    outcome = await run_solo(today(5), trace)
    assert outcome.ops["resume"] == 1 and outcome.return_resumed == 1
    assert 0 < outcome.return_waits[0] <= 1.5
