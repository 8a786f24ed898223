"""Terminals follow their lab: a shell closes when its environment stops running, whoever stopped it.

A lab is paused, deleted or reset by many hands: the web API of this process, another web process, the
`stacklab env` command, the controller's idle and age policies. Only the first can close this process's
shells directly, so every web process also watches the environments it has shells for: one query per
`terminal_watch_interval_s` over those ids (the primary key; nothing at all when no terminal is open),
and the shells of any environment no longer desired and observed running, reset requested, or gone are
closed with a `{"type": "closed"}` message saying why (read-only watchers with them); so are the shells
opened with tokens the LMS has since withdrawn (revoke: the token generation moved on). A paused lab's
shells are only let go, not closed: its frozen nodes keep them, and the learner's return within
`terminal_keep_s` finds the same shell (as after a closed tab). The web API's
immediate close takes the same path (`close_now`), so a reason reads the same wherever the change came
from. Costs nothing per session: one task per application.

Events make it immediate (stacklab.events): a lab paused, deleted or reset, or asked to be, in any
process is published, and the watch looks at once at those of its environments (one query for a burst).
Polling keeps it certain, since events are delivered at most once: while the bus is live the full sweep
runs every LIVE_POLL_EVERY intervals only, and every interval again while it is not; after the bus
(re)connects, a full sweep catches up on what it missed.

A reset that goes all the way from running to running again between two sweeps is not seen here; on a
real provider the old node is gone by then, and the shell ends with its SSH connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from stacklab.access.terminal import TerminalManager
from stacklab.events import Event
from stacklab.store.repository import Repository
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Desired, Observed

log = logging.getLogger(__name__)

IDS_PER_QUERY = 500  # well under every supported database's limit on bound parameters
LIVE_POLL_EVERY = 10
"""While events arrive, the full sweep runs every this many intervals (a safety net for a lost event)."""

DELETED = "the lab was deleted"
RESET = "the lab was reset"
PAUSED = "the lab was paused"
FAILED = "the lab failed"
REVOKED = "the lab access was withdrawn; open the lab again from your course"


class LabState(NamedTuple):
    """The columns of an environment that decide whether its terminals may stay open."""

    desired: str
    observed: str
    reset_requested: bool
    token_generation: int = 0


def lab_states(repo: Repository, env_ids: Iterable[str]) -> dict[str, LabState]:
    """The state of each environment that still exists, by id (read-only, primary-key lookups)."""
    ids = sorted(env_ids)
    table = EnvironmentRecord
    states: dict[str, LabState] = {}
    with repo.read() as session:
        for start in range(0, len(ids), IDS_PER_QUERY):
            query = select(
                table.id, table.desired, table.observed, table.reset_requested, table.token_generation
            ).where(table.id.in_(ids[start : start + IDS_PER_QUERY]))
            for env_id, desired, observed, reset, generation in session.execute(query):
                states[env_id] = LabState(desired, observed, bool(reset), generation)
    return states


def closing_reason(state: LabState | None) -> str | None:
    """Why the terminals of an environment in `state` (None: the row is gone) must close; None: they stay."""
    if state is None or Desired.DELETED in (state.desired, state.observed):
        return DELETED
    if state.reset_requested or state.observed in (Observed.NEW, Observed.CREATING):
        return RESET  # a running lab goes back to new only to be rebuilt: reset (or its stack vanished)
    if Desired.SUSPENDED in (state.desired, state.observed):
        return PAUSED
    if state.observed == Observed.FAILED:
        return FAILED
    return None


class TerminalWatch:
    """Closes the terminals of one application whose environments stopped running (see the module doc)."""

    def __init__(
        self,
        manager: TerminalManager,
        repo: Repository,
        interval_s: float,
        keep_s: float,
        events_live: Callable[[], bool] = lambda: False,
    ) -> None:
        self.manager = manager
        self.repo = repo
        self.interval_s = interval_s
        self.keep_s = keep_s  # how long the shells of a paused lab are kept for the learner's return
        self.events_live = events_live
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: set[str] | None = set()  # None: look at every environment
        self._lock = threading.Lock()

    def sweep(self, env_ids: Iterable[str] | None = None) -> int:
        """Close the sessions of the given environments (default: all with sessions) that may not stay
        open; returns how many sessions were closed."""
        ids = set(self.manager.env_ids() if env_ids is None else env_ids)
        if not ids:
            return 0
        states = lab_states(self.repo, ids)
        closed = 0
        for env_id in ids:
            state = states.get(env_id)
            reason = closing_reason(state)
            if reason == PAUSED:
                closed += self.manager.pause_sessions(env_id, reason, self.keep_s)
            elif reason is not None:
                closed += self.manager.close_sessions(env_id, reason)
            elif state is not None:  # running: only the shells opened with withdrawn tokens close
                closed += self.manager.close_revoked(env_id, state.token_generation, REVOKED)
        return closed

    async def close_now(self, env_id: str) -> None:
        """This process just changed the environment: close its terminals now, not at the next sweep."""
        self.sweep((env_id,))

    # events (called in the bus's thread) ------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        """An environment changed in some process: look at it now, when this process has shells on it."""
        self._look_soon({event.env_id})

    def on_connected(self) -> None:
        """The bus (re)connected: events may have been missed, look at every environment."""
        self._look_soon(None)

    def _look_soon(self, env_ids: set[str] | None) -> None:
        if self._loop is None:
            return  # not running yet: its first sweep looks at everything
        with self._lock:
            first = self._changed is not None and not self._changed
            if env_ids is None or self._changed is None:
                self._changed = None
            else:
                self._changed |= env_ids
        if first:
            with contextlib.suppress(RuntimeError):  # the loop has closed: the app is gone
                self._loop.call_soon_threadsafe(self._look)

    def _look(self) -> None:
        with self._lock:
            changed, self._changed = self._changed, set()
        held = self.manager.env_ids()
        self._sweep_logged(held if changed is None else changed & held)

    def _sweep_logged(self, env_ids: set[str]) -> None:
        if not env_ids:
            return
        try:
            self.sweep(env_ids)
        except SQLAlchemyError as exc:  # retried at the next interval
            log.warning("terminal watch: reading environment states failed", extra={"error": str(exc)})

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep every `interval_s` (every LIVE_POLL_EVERY intervals while events are live) until `stop`
        is set, and on events; a failed read is retried at the next sweep."""
        self._loop = asyncio.get_running_loop()
        tick = 0
        while not stop.is_set():
            if tick % LIVE_POLL_EVERY == 0 or not self.events_live():
                self._sweep_logged(self.manager.env_ids())
            tick += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
