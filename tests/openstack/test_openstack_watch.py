"""The shared poll of the openstack provider (watch.py) against a stand-in Heat whose answers the test times:
a Heat slow to answer gets a second poll before the first is answered (never a third) when the
provider allows two in flight (`polls_in_flight`), an answer overtaken
by a later one changes nothing, and a deleted stack still listed is polled only while someone waits for it.
No harness needed: what is checked is which requests the watch sends and what its waiters see."""

from __future__ import annotations

import asyncio
import time

import pytest

from stacklab.providers.openstack.watch import Flight, Row, StackWatch


class SlowHeat:
    """Answers each poll after `answer_s`, with each stack's status at the moment the poll is read
    (on arrival, as Heat reads its database), and notes how many polls were out at once."""

    def __init__(self, answer_s: float) -> None:
        self.answer_s = answer_s
        self.status: dict[str, str] = {}
        self.listed: set[str] = set()
        self.out = self.most = self.polls = 0
        self.asked: list[set[str]] = []

    async def fetch(self, flights: list[Flight]) -> dict[str, Row]:
        self.polls += 1
        self.out += 1
        self.most = max(self.most, self.out)
        self.asked.append({f.stack_id for f in flights})
        rows = {
            f.stack_id: {"id": f.stack_id, "stack_status": self.status[f.stack_id], "stack_status_reason": ""}
            for f in flights
            if f.stack_id in self.listed
        }
        try:
            await asyncio.sleep(self.answer_s)
        finally:
            self.out -= 1
        return rows


def flight(stack_id: str, op: str = "CREATE") -> Flight:
    return Flight(f"sl-{stack_id}", stack_id, op, "template", time.monotonic())


@pytest.mark.parametrize("in_flight", [1, 2])
async def test_a_slow_heat_gets_at_most_polls_in_flight_polls_at_once(in_flight: int) -> None:
    heat = SlowHeat(answer_s=0.4)
    watch = StackWatch(
        heat.fetch, fast_poll_s=0.02, slow_poll_s=2.0, forget_s=60.0, polls_in_flight=in_flight
    )
    stacks = [flight(f"s{i}") for i in range(5)]
    for f in stacks:
        heat.status[f.stack_id], heat.listed = "CREATE_IN_PROGRESS", heat.listed | {f.stack_id}
        watch.track(f)
    await asyncio.sleep(1.0)
    for f in stacks:
        heat.status[f.stack_id] = "CREATE_COMPLETE"
    assert all(await asyncio.gather(*(watch.wait(f, 10.0) for f in stacks)))
    assert {f.status for f in stacks} == {"CREATE_COMPLETE"}
    assert heat.most == watch.most_in_flight == in_flight
    assert all(asked == {f.stack_id for f in stacks} for asked in heat.asked)  # one list covers them all


async def test_an_answer_overtaken_by_a_later_poll_changes_nothing() -> None:
    """The first poll read the stack in progress but answers last: the stack stays seen complete."""
    release = asyncio.Event()
    answers: list[str] = []

    async def fetch(flights: list[Flight]) -> dict[str, Row]:
        nth = len(answers)
        status = "CREATE_IN_PROGRESS" if nth == 0 else "CREATE_COMPLETE"
        answers.append(status)
        if nth == 0:
            await release.wait()  # held until a later poll has been answered
        else:
            release.set()
        return {"s": {"id": "s", "stack_status": status, "stack_status_reason": ""}}

    watch = StackWatch(fetch, fast_poll_s=0.02, slow_poll_s=2.0, forget_s=60.0, polls_in_flight=2)
    f = watch.track(flight("s"))
    assert await watch.wait(f, 10.0)
    await asyncio.sleep(0.05)  # the overtaken answer arrives now
    assert answers[0] == "CREATE_IN_PROGRESS" and len(answers) >= 2
    assert f.finished() and f.status == "CREATE_COMPLETE"


async def test_a_deleted_stack_still_listed_is_polled_only_while_someone_waits_for_it() -> None:
    heat = SlowHeat(answer_s=0.01)
    watch = StackWatch(heat.fetch, fast_poll_s=0.02, slow_poll_s=2.0, forget_s=60.0)
    f = flight("d", "DELETE")
    heat.status["d"], heat.listed = "DELETE_COMPLETE", {"d"}
    watch.track(f)
    assert await watch.wait(f, 10.0, settled=True)  # what `delete` waits for
    assert f.deleted() and not f.finished() and watch.deleting() == [f]
    polls = heat.polls
    await asyncio.sleep(0.5)
    assert heat.polls == polls  # left out of the polls: nobody needs it gone yet
    heat.listed.clear()  # Heat lets go of it
    assert await watch.wait(f, 10.0)  # what a create of its name waits for
    assert heat.polls > polls and f.finished() and watch.deleting() == []
