"""The warm pool's policy and deadlines for one member (envs/pools.py), on records in memory."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from stacklab.envs.pools import apply_pool_policy, member_name, next_stack_name, pool_deadline
from stacklab.envs.transitions import Journal
from stacklab.labs.loader import parse_lab
from stacklab.labs.schema import Lab
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Desired, Observed, Progress

UTC = ZoneInfo("UTC")
MONDAY_10 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC).timestamp()
MONDAY_17 = datetime(2026, 1, 5, 17, 0, tzinfo=UTC).timestamp()
TUESDAY_9 = datetime(2026, 1, 6, 9, 0, tzinfo=UTC).timestamp()


def lab(size: int = 2, state: str = "suspended", providers: str = "[{name: local, type: local}]") -> Lab:
    return parse_lab(
        f"""\
schema: 1
id: pooled
title: Pooled
login_user: learner
providers: {providers}
local: {{nodes: [{{name: main}}]}}
warm: {{size: {size}, max_age: 2h, hours: "Mon-Fri 09:00-17:00", lead: 0s, state: {state}}}
"""
    )


def member(slot: int = 0, **state: object) -> EnvironmentRecord:
    values: dict[str, object] = {
        "id": "abcd0001",
        "learner": member_name("local", slot),
        "pool": "local",
        "desired": Desired.RUNNING,
        "observed": Observed.NEW,
        "progress": Progress.QUEUED,
        "provider": None,
        "ready_at": None,
        "reset_requested": False,
        "attempts": 0,
        "stack_name": "sl-abcd0001-0",
    }
    values.update(state)
    return EnvironmentRecord(**values)


def decide(record: EnvironmentRecord, at: float, pool: Lab | None = None) -> list[str]:
    journal = Journal(record, at)
    apply_pool_policy(journal, pool or lab())
    return [entry.reason for entry in journal.entries]


def waiting(ready_at: float) -> dict[str, object]:
    return {
        "desired": Desired.SUSPENDED,
        "observed": Observed.SUSPENDED,
        "progress": Progress.SUSPENDED,
        "provider": "local",
        "ready_at": ready_at,
    }


def test_filled_in_the_hours_and_suspended_once_ready() -> None:
    drained = member(desired=Desired.DELETED, observed=Observed.DELETED, attempts=5)
    assert decide(drained, MONDAY_10) == ["PoolFill"]
    assert drained.desired == Desired.RUNNING and drained.attempts == 0
    ready = member(observed=Observed.RUNNING, progress=Progress.READY, provider="local", ready_at=MONDAY_10)
    assert decide(ready, MONDAY_10) == ["PoolReady"] and ready.desired == Desired.SUSPENDED
    assert decide(member(**waiting(MONDAY_10)), MONDAY_10 + 60) == []
    kept_running = member(
        observed=Observed.RUNNING, progress=Progress.READY, provider="local", ready_at=MONDAY_10 - 120
    )
    assert decide(kept_running, MONDAY_10 - 60, lab(state="running")) == []


def test_drained_outside_the_hours_or_when_the_lab_no_longer_wants_the_slot() -> None:
    record = member(**waiting(MONDAY_10))
    assert decide(record, MONDAY_17) == ["PoolClosed"] and record.desired == Desired.DELETED
    assert decide(member(slot=1, **waiting(MONDAY_10)), MONDAY_10, lab(size=1)) == ["PoolShrunk"]
    other = lab(providers="[{name: cloud, type: local}]")
    assert decide(member(**waiting(MONDAY_10)), MONDAY_10, other) == ["PoolRemoved"]


def test_replaced_past_max_age() -> None:
    record = member(**waiting(MONDAY_10 - 2 * 3600))
    assert decide(record, MONDAY_10) == ["PoolMemberExpired", "PoolFill"]
    assert record.reset_requested and record.desired == Desired.RUNNING


def test_deadlines_are_the_hours_and_the_age() -> None:
    pool = lab()
    assert pool_deadline(member(**waiting(MONDAY_10)), pool, MONDAY_10) == MONDAY_10 + 2 * 3600  # max_age
    assert pool_deadline(member(**waiting(MONDAY_17 - 3600)), pool, MONDAY_17 - 1800) == MONDAY_17  # closing
    closed = member(desired=Desired.DELETED, observed=Observed.DELETED)
    assert pool_deadline(closed, pool, MONDAY_17) == TUESDAY_9
    ready = member(observed=Observed.RUNNING, progress=Progress.READY, provider="local", ready_at=MONDAY_10)
    assert pool_deadline(ready, pool, MONDAY_10) == MONDAY_10  # to be suspended now
    assert pool_deadline(member(slot=3), pool, MONDAY_10) is None  # a slot the lab no longer wants


def test_every_fill_gets_a_stack_name_of_its_own() -> None:
    record = member()
    record.stack_name = next_stack_name(record)
    assert record.stack_name == "sl-abcd0001-1"
    assert next_stack_name(record) == "sl-abcd0001-2"


def test_a_member_that_failed_every_retry_is_tried_again_after_max_age() -> None:
    failed = member(observed=Observed.FAILED, progress=Progress.FAILED, attempts=3, updated_at=MONDAY_10)
    assert pool_deadline(failed, lab(), MONDAY_10) == MONDAY_10 + 2 * 3600
    assert decide(failed, MONDAY_10 + 3600) == [] and failed.attempts == 3
    assert decide(failed, MONDAY_10 + 2 * 3600) == ["PoolRetry"] and failed.attempts == 0
