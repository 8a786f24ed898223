"""Environment events (stacklab.events): the wire format, bad payloads, in-process delivery, which
transitions publish (store/transition_events.py) and the measurements of a pass (jobs/pass_events.py)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from tests.support.engine import write_lab

from stacklab.config import Settings
from stacklab.events import BadEvent, Event, EventKind, LocalBus
from stacklab.jobs.pass_events import in_pass, measurements_to
from stacklab.store.tables import TransitionRecord
from stacklab.store.transition_events import event_of
from stacklab.types import Desired
from stacklab.wiring import build_app


def test_an_event_goes_through_its_text_unchanged() -> None:
    event = Event("0a1b2c3d4e5f6a7b", EventKind.LAUNCHED, 12.5, "Ready")
    text = event.encode()
    assert len(text) < 200
    assert Event.decode(text) == event
    assert Event.decode(text.encode()) == event
    assert Event.decode('{"env":"e1","kind":"deleted"}') == Event("e1", EventKind.DELETED)


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ("", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        ("[1, 2]", "not a JSON object but list"),
        ('{"kind": "deleted"}', "env must be an id"),
        ('{"env": "", "kind": "deleted"}', "env must be an id"),
        ('{"env": "' + "x" * 65 + '", "kind": "deleted"}', "env must be an id"),
        ('{"env": "e1", "kind": "exploded"}', "kind 'exploded' is not one of"),
        ('{"env": "e1", "kind": "launched", "s": "soon"}', "s must be a number"),
        ('{"env": "e1", "kind": "launched", "s": true}', "s must be a number"),
        ('{"env": "e1", "kind": "launched", "s": NaN}', "s must be a number"),
        ('{"env": "e1", "kind": "launched", "s": -1}', "s must not be negative"),
        ('{"env": "e1", "kind": "failed", "reason": 7}', "reason must be text"),
    ],
)
def test_a_payload_that_is_not_an_event_is_refused_with_the_problem_named(
    payload: str | bytes, problem: str
) -> None:
    with pytest.raises(BadEvent, match=problem):
        Event.decode(payload)


def test_a_long_reason_is_cut_on_the_wire() -> None:
    assert Event.decode(Event("e1", EventKind.FAILED, 0, "R" * 500).encode()).reason == "R" * 200


def test_a_failing_handler_does_not_keep_the_others_from_the_event(caplog: pytest.LogCaptureFixture) -> None:
    bus, got = LocalBus(), []

    def broken(_event: Event) -> None:
        raise RuntimeError("handler bug")

    bus.subscribe(broken)
    unsubscribe = bus.subscribe(got.append)
    with caplog.at_level(logging.ERROR):
        bus.publish(Event("e1", EventKind.SUSPENDED))
    assert got == [Event("e1", EventKind.SUSPENDED)]
    assert "an event handler failed" in caplog.text
    unsubscribe()
    bus.publish(Event("e2", EventKind.SUSPENDED))
    assert len(got) == 1
    assert bus.live is False  # nothing comes from other processes: subscribers keep polling


def transition(kind: str, to_state: str, reason: str) -> TransitionRecord:
    return TransitionRecord(
        env_id="e1", at=0.0, kind=kind, from_state="running", to_state=to_state, reason=reason
    )


@pytest.mark.parametrize(
    ("row", "kind"),
    [
        (transition("observed", "suspended", "Suspended"), EventKind.SUSPENDED),
        (transition("observed", "deleted", "Deleted"), EventKind.DELETED),
        (transition("observed", "new", "Reset"), EventKind.RESET),
        (transition("desired", "suspended", "Idle"), EventKind.REQUESTED),
        (transition("desired", "deleted", "DeleteRequested"), EventKind.REQUESTED),
        (transition("request", "running", "ResetRequested"), EventKind.REQUESTED),
        (transition("observed", "failed", "HostLost"), EventKind.FAILED),  # no pass fails it
        (transition("observed", "running", "HostReturned"), EventKind.RETURNED),
        (transition("observed", "suspended", "HostReturned"), EventKind.RETURNED),
        (transition("observed", "failed", "CreateFailed"), None),  # a pass's measurement says so
        (transition("observed", "running", "Ready"), None),  # a pass's measurement says so, with seconds
        (transition("observed", "new", "Retrying"), None),
        (transition("desired", "running", "LaunchRequested"), None),
        (transition("hook", "before_suspend", "HookSucceeded"), None),
    ],
)
def test_the_transitions_that_stop_terminals_make_events(
    row: TransitionRecord, kind: EventKind | None
) -> None:
    made = event_of(row)
    assert (made.kind if made else None) == kind
    if made:
        assert (made.env_id, made.reason) == ("e1", row.reason)


def test_a_committed_request_is_published_and_a_rolled_back_one_is_not(tmp_path: Path) -> None:
    app = build_app(Settings(data_dir=str(tmp_path)), serving=False)
    got: list[Event] = []
    app.events.subscribe(got.append)
    try:
        record = app.environments.launch(write_lab(tmp_path), "ann")
        assert got == []  # a launch stops no terminal
        with app.repo.new_session() as session:
            session.add(
                TransitionRecord(
                    env_id=record.id,
                    at=0.0,
                    kind="desired",
                    from_state="running",
                    to_state="deleted",
                    reason="Test",
                )
            )
            session.flush()
            session.rollback()
        assert got == []
        app.environments.request(record.id, Desired.SUSPENDED, "SuspendRequested")
        assert got == [Event(record.id, EventKind.REQUESTED, 0.0, "SuspendRequested")]
    finally:
        app.close()


async def test_a_pass_publishes_its_measurements_after_it_returns_and_only_then() -> None:
    bus, got = LocalBus(), []
    bus.subscribe(got.append)
    listener = measurements_to(bus)

    async def launched(env_id: str) -> str:
        listener("launched", 3.5, "")
        listener("hook", 1.0, "")  # not a measurement
        await asyncio.sleep(0)
        assert got == []  # not before the pass has saved
        return env_id

    assert await in_pass("e1", launched) == "e1"
    assert got == [Event("e1", EventKind.LAUNCHED, 3.5, "")]
    listener("failed", 0.0, "X")  # outside a pass (this process does not run them): nothing
    assert len(got) == 1

    async def crashed(_env_id: str) -> None:
        listener("failed", 0.0, "CreateFailed")
        raise RuntimeError("crash before the save")

    with pytest.raises(RuntimeError):
        await in_pass("e2", crashed)
    assert len(got) == 1


async def test_passes_side_by_side_keep_their_own_measurements() -> None:
    bus, got = LocalBus(), []
    bus.subscribe(got.append)
    listener = measurements_to(bus)

    async def step(env_id: str) -> None:
        await asyncio.sleep(0)
        listener("resumed", 1.0 if env_id == "a" else 2.0, "")
        await asyncio.sleep(0)

    await asyncio.gather(in_pass("a", step), in_pass("b", step))
    assert sorted((e.env_id, e.seconds) for e in got) == [("a", 1.0), ("b", 2.0)]
