"""bench/cost_sim.py on a small course: the real controller on a simulated clock, figures a course team
would notice (what a lab costs, when it stops costing, what a learner waits). No wall-clock figure."""

from __future__ import annotations

import pytest
from bench.cost_sim import (
    API_S,
    HASTEXO,
    HASTEXO_SUSPEND_INTERVAL_S,
    HASTEXO_SUSPEND_TIMEOUT_S,
    PAGE_LOAD_S,
    PROMPT_S,
    WEEK_H,
    Outcome,
    Policy,
    built,
    keys_only,
    simulate,
    target_wait_s,
)
from bench.cost_sim_learners import HOUR, MIX, THINK, Course, Trace, make_traces
from bench.cost_sim_provider import HEAT, LOCAL, ProviderModel

DAY_COURSE = Course(days=1)
MINUTE = 60.0
SLACK_MIN = 0.1
"""The lab starts costing when the page asks for it, a fraction of a second after the learner opens it."""
THROTTLE_MIN = 10 / MINUTE
"""Activity is written at most every 10 s (activity_throttle_s): a lab may pause that much sooner."""


@pytest.fixture(scope="module")
def learners() -> list[Trace]:
    return make_traces(20, seed=7, mix=MIX, course=DAY_COURSE)


def one_visit(work_min: float = 30.0, close_after_min: float = 1.0) -> Trace:
    """Opens the unit at 09:00, types for `work_min`, closes the tab `close_after_min` later."""
    start = 9 * HOUR
    end = start + work_min * MINUTE
    return Trace("learner-solo", "closes_tab", [start], [end + close_after_min * MINUTE], [(start, end)])


def come_back(trace: Trace, at: float = 11 * HOUR) -> Trace:
    """The same learner opens the unit again later that morning and types for 10 minutes."""
    trace.opens.append(at)
    trace.bursts.append((at, at + 10 * MINUTE))
    trace.closes.append(at + 11 * MINUTE)
    return trace


async def run_solo(policy: Policy, trace: Trace, model: ProviderModel = LOCAL) -> Outcome:
    return await simulate(policy, model, [trace], DAY_COURSE, scale=1 / 1000)


async def test_every_policy_costs_between_the_floor_and_always_on(learners: list[Trace]) -> None:
    for policy in (keys_only(15), HASTEXO, built(5)):
        outcome = await simulate(policy, LOCAL, learners, DAY_COURSE, scale=len(learners) / 1000)
        assert outcome.floor <= outcome.cost <= WEEK_H, policy.name
        assert len(outcome.first_waits) == len(learners)  # everyone launched once
        assert outcome.return_waits, "learners came back to their labs"


async def test_a_first_launch_waits_for_a_create_unless_the_learner_reads_first(
    learners: list[Trace],
) -> None:
    outcome = await simulate(keys_only(15), LOCAL, learners, DAY_COURSE, scale=len(learners) / 1000)
    readers = sum(trace.behaviour == "reads_first" for trace in learners)
    assert 0 < readers < len(learners)
    # the lab launched while they read the unit (10 minutes, less than the 15 min idle timeout)
    assert sum(wait == 0 for wait in outcome.first_waits) == readers
    assert sum(wait >= LOCAL.create_s for wait in outcome.first_waits) == len(learners) - readers


async def test_a_closed_tab_stops_costing_after_the_idle_timeout_when_the_page_says_nothing() -> None:
    for idle_min in (5.0, 20.0):
        outcome = await run_solo(keys_only(idle_min), one_visit(work_min=30))
        running_min = outcome.running_h * 60
        # 30 minutes of typing, then the lab runs idle for the timeout and is suspended; not a minute more
        low = 30 + idle_min - THROTTLE_MIN - SLACK_MIN
        assert low <= running_min <= 30 + idle_min + 1, (idle_min, running_min)
        assert outcome.ops["suspend"] == 1


async def test_the_idle_timeout_does_not_pause_a_learner_who_keeps_typing() -> None:
    outcome = await run_solo(keys_only(5), one_visit(work_min=50))
    assert outcome.ops["suspend"] == 1  # only after the work, none during it
    assert 55 - THROTTLE_MIN - SLACK_MIN <= outcome.running_h * 60 <= 56


async def test_a_pause_inside_the_work_longer_than_the_idle_timeout_stalls_the_next_key() -> None:
    trace = one_visit(work_min=30)
    start = trace.bursts[0][0]
    # keys for 10 min, 3 min waiting for a build without a key, keys again until the end of the burst
    trace.typing = [(start, start + 10 * MINUTE), (start + 13 * MINUTE, start + 30 * MINUTE)]
    short = await run_solo(keys_only(1), trace)
    assert short.ops["suspend"] == 2 and short.ops["resume"] == 1  # paused in the pause, and after the work
    assert len(short.stall_waits) == 1 and 0 < short.stall_waits[0] <= target_wait_s(LOCAL)
    assert short.return_waits == []  # a stall is not a return: the first key of the visit was its launch
    assert short.running_h * 60 < 30 + 1  # the 3 minutes cost less than running through them
    long = await run_solo(keys_only(5), trace)
    assert long.stall_waits == [] and long.ops["suspend"] == 1  # a 5 min timeout outlasts the pause


def test_the_keys_come_in_runs_inside_the_bursts_of_work() -> None:
    paused, plain = (
        make_traces(5, seed=3, mix=MIX, course=Course(days=1, think=think)) for think in (THINK, ())
    )
    for with_pauses, without in zip(paused, plain, strict=True):
        assert with_pauses.bursts == without.bursts  # the same work (the floor) with or without pauses
        assert without.typing == without.bursts
        assert len(with_pauses.typing) > len(with_pauses.bursts)
        for run_start, run_end in with_pauses.typing:
            assert any(s <= run_start < run_end <= e for s, e in with_pauses.bursts)


async def test_the_close_beacon_pauses_the_lab_after_its_grace() -> None:
    outcome = await run_solo(built(20), one_visit(work_min=30, close_after_min=1))
    running_min = outcome.running_h * 60
    # closed a minute after typing, paused close_grace (45 s) later, not after the 20 min idle timeout
    assert 31.75 - SLACK_MIN <= running_min <= 31.75 + 0.5, running_min


async def test_a_hidden_tab_pauses_the_lab_after_a_third_of_the_idle_timeout() -> None:
    trace = one_visit(work_min=30, close_after_min=240)  # the tab stays open all day...
    trace.hides.append((9 * HOUR + 31 * MINUTE, 17 * HOUR))  # ...behind others from a minute after the work
    outcome = await run_solo(built(15), trace)
    assert 36 - SLACK_MIN <= outcome.running_h * 60 <= 36.5  # hidden at 31 min, paused 5 min later


async def test_pre_resume_has_the_lab_running_when_the_page_asks() -> None:
    outcome = await run_solo(built(5), come_back(one_visit(work_min=20, close_after_min=0)))
    # the unit view woke the paused lab: the page's POST /resume finds it running, no Resume to wait for
    assert outcome.ops["resume"] == 1 and outcome.return_resumed == 0
    assert outcome.return_waits == [pytest.approx(PAGE_LOAD_S + API_S + PROMPT_S)]


async def test_a_return_to_a_paused_lab_waits_less_than_the_target_on_both_providers() -> None:
    for model in (LOCAL, HEAT):
        outcome = await run_solo(keys_only(5), come_back(one_visit(work_min=20, close_after_min=0)), model)
        assert outcome.ops["resume"] == 1 and outcome.return_resumed == 1
        # on Heat the provider's status waits for the resume it expects soon (not a 2 s poll later)
        assert model.resume_s < outcome.return_waits[0] <= target_wait_s(model), model.name


async def test_a_warm_pool_hands_the_first_launch_a_ready_lab() -> None:
    outcome = await run_solo(built(5, pool=1000), one_visit(work_min=30))  # one member at this scale
    assert outcome.pool_size == 1
    assert outcome.first_waits[0] < LOCAL.create_s  # a resume and the key rotation, not a create
    # the member before each session (morning, afternoon) and its refill after the hand-over; none for the
    # learner; the pool is drained after each session
    assert outcome.ops["create"] == 3 and outcome.ops["delete"] == 2
    assert 0 < outcome.pool_h < outcome.running_h and outcome.pool_suspended_h > 0


async def test_hastexo_keeps_the_lab_for_the_open_page_and_suspends_after_its_timeout() -> None:
    outcome = await run_solo(HASTEXO, one_visit(work_min=30, close_after_min=20))
    running_min = outcome.running_h * 60
    # an open page is kept alive (20 min without a keystroke), then 120 s and the next minute's sweep
    low = 50 + HASTEXO_SUSPEND_TIMEOUT_S / MINUTE - SLACK_MIN
    assert low <= running_min <= low + HASTEXO_SUSPEND_INTERVAL_S / MINUTE + 1
    assert outcome.first_waits[0] >= 15  # its page asks for the status every 15 s
