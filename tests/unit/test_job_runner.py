"""The in-process job runner: one pass at a time per environment, bounded concurrency, requeues."""

from __future__ import annotations

import asyncio
import io
import logging
from dataclasses import dataclass

import pytest

from stacklab.jobs.runner import InProcessRunner
from stacklab.logs import TextFormatter


@dataclass
class Outcome:
    requeue_after: float | None = None


class Jobs:
    """A job that records its calls and can be held at a gate, fail or ask to be requeued."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.running = 0
        self.most_at_once = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.requeue: dict[str, float | None] = {}
        self.fail: set[str] = set()

    async def __call__(self, env_id: str) -> Outcome:
        self.calls.append(env_id)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await self.gate.wait()
            if env_id in self.fail:
                raise RuntimeError(f"{env_id} broke")
            return Outcome(self.requeue.pop(env_id, None))
        finally:
            self.running -= 1


async def test_a_submit_during_a_pass_runs_one_more_pass_after_it_not_beside_it() -> None:
    jobs = Jobs()
    jobs.gate.clear()
    runner = InProcessRunner(jobs)
    runner.submit("a")
    await asyncio.sleep(0)
    runner.submit("a")
    runner.submit("a")  # coalesced with the one before
    jobs.gate.set()
    await asyncio.wait_for(runner.idle(), 5)
    assert jobs.calls == ["a", "a"]
    assert jobs.most_at_once == 1


async def test_concurrency_is_bounded() -> None:
    jobs = Jobs()
    jobs.gate.clear()
    runner = InProcessRunner(jobs, concurrency=3)
    for env_id in "abcdefg":
        runner.submit(env_id)
    await asyncio.sleep(0.01)
    assert jobs.running == 3
    jobs.gate.set()
    await asyncio.wait_for(runner.idle(), 5)
    assert sorted(jobs.calls) == list("abcdefg") and jobs.most_at_once == 3


async def test_a_requeue_is_followed_after_its_delay_unless_told_not_to() -> None:
    jobs = Jobs()
    jobs.requeue["a"] = 0.01
    runner = InProcessRunner(jobs)
    runner.submit("a")
    await asyncio.wait_for(runner.idle(), 5)  # idle waits for the timer and the pass it fires
    assert jobs.calls == ["a", "a"]
    still = Jobs()
    still.requeue["a"] = 0.01
    quiet = InProcessRunner(still, follow_requeue=False)
    quiet.submit("a")
    await asyncio.wait_for(quiet.idle(), 5)
    assert still.calls == ["a"]


async def test_a_failing_job_is_counted_and_logged_and_the_runner_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    jobs = Jobs()
    jobs.fail.add("bad")
    runner = InProcessRunner(jobs)
    with caplog.at_level(logging.ERROR, logger="stacklab.jobs.runner"):
        runner.submit("bad")
        runner.submit("good")
        await asyncio.wait_for(runner.idle(), 5)
    assert runner.failures == 1 and sorted(jobs.calls) == ["bad", "good"]
    assert any(record.env_id == "bad" for record in caplog.records)  # type: ignore[attr-defined]


async def test_cancelled_timers_do_not_fire() -> None:
    jobs = Jobs()
    runner = InProcessRunner(jobs)
    runner.submit("later", delay_s=0.05)
    runner.cancel_timers()
    await asyncio.sleep(0.1)
    await asyncio.wait_for(runner.idle(), 5)
    assert jobs.calls == []


async def test_every_line_a_pass_logs_names_its_environment() -> None:
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger("stacklab.test.runner")
    logger.addHandler(handler)

    async def job(env_id: str) -> Outcome:
        logger.warning("a step went wrong")  # no extra= given
        return Outcome()

    try:
        runner = InProcessRunner(job)
        runner.submit("0000beef")
        await asyncio.wait_for(runner.idle(), 5)
    finally:
        logger.removeHandler(handler)
    assert "a step went wrong" in lines.getvalue() and "env_id=0000beef" in lines.getvalue()
