"""Committed transitions become events, whoever wrote them: a worker's pass, a web request, the CLI.

Every change of state is already recorded as a transition row added to the session that saves it.
Hooks on SQLAlchemy sessions note the transitions that stop a lab's terminals, and a local host's loss
and return (which no pass makes), as a flush writes them, and publish them once the transaction has
committed (nothing for one rolled back): a subscriber that reads the database on the event finds the
change. Only sessions bound to an engine given to `publish_transitions` are followed.
"""

from __future__ import annotations

import weakref

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from stacklab.events import HOST_LOST, HOST_RETURNED, Event, EventBus, EventKind
from stacklab.store.tables import TransitionRecord
from stacklab.types import Desired, Observed

PENDING = "stacklab.events"  # session.info key: the events of the open transaction
_BUSES: weakref.WeakKeyDictionary[Engine, EventBus] = weakref.WeakKeyDictionary()

OBSERVED = {Observed.SUSPENDED: EventKind.SUSPENDED, Observed.DELETED: EventKind.DELETED}
ASKED = frozenset({Desired.SUSPENDED, Desired.DELETED})
BY_HOST = {HOST_LOST: EventKind.FAILED, HOST_RETURNED: EventKind.RETURNED}
"""Observed changes a host's loss or return makes, whatever the state (a pass's failures are its
measurements, published after the pass: jobs/pass_events.py)."""


def publish_transitions(engine: Engine, bus: EventBus) -> None:
    """Publish on `bus` the transitions committed through sessions bound to `engine`."""
    _BUSES[engine] = bus


def event_of(transition: TransitionRecord) -> Event | None:
    """The event a transition makes, when it stops the lab's terminals or is a host's loss or return
    (None: it makes none)."""
    kind: EventKind | None = None
    if transition.kind == "observed" and transition.reason in BY_HOST:
        kind = BY_HOST[transition.reason]
    elif transition.kind == "observed":
        kind = OBSERVED.get(transition.to_state)  # type: ignore[call-overload]
        if transition.to_state == Observed.NEW and transition.reason == "Reset":
            kind = EventKind.RESET
    elif (transition.kind, transition.reason) == ("request", "ResetRequested") or (
        transition.kind == "desired" and transition.to_state in ASKED
    ):
        kind = EventKind.REQUESTED
    return None if kind is None else Event(transition.env_id, kind, 0.0, transition.reason or "")


def _bus(session: Session) -> EventBus | None:
    bind = session.bind
    return _BUSES.get(bind) if isinstance(bind, Engine) else None


@event.listens_for(Session, "after_flush")
def _note(session: Session, _context: object) -> None:
    if _bus(session) is None:
        return
    found = [e for t in session.new if isinstance(t, TransitionRecord) and (e := event_of(t)) is not None]
    if found:
        session.info.setdefault(PENDING, []).extend(found)


@event.listens_for(Session, "after_commit")
def _publish(session: Session) -> None:
    events = session.info.pop(PENDING, None)
    bus = _bus(session)
    if events and bus is not None:
        for item in events:
            bus.publish(item)


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(PENDING, None)
