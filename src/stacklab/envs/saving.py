"""How a pass saves its environment: compare-and-set, merged with the learner's changes, and the saves
of the passes that reach one in the same moment written in one transaction (group commit).

Every save is one compare-and-set UPDATE on the version and the lease that carries the changed columns,
with the step's transitions INSERTed in the same transaction (docs/controller.md). A commit waits for the
database to make it durable, and a step that saves once or twice (a suspend; an idle suspend saves
the new intent before it asks the provider) spends most of its database time there: so the saves of
this process's passes that reach one in the same moment are written in rounds (envs/rounds.py), every
pass's UPDATE and the round's INSERTs on one connection, one commit a round. A save the pass makes
before its provider step is awaited like any other: it is durable before the step, in a round or not.
Each pass keeps its own outcome: a compare-and-set that matches nothing merges the learner's change or
loses the lease for that pass only; a write conflict (deadlock, serialization, Galera certification)
runs the whole round again; any other error leaves each pass of the round to save on its own.
Transitions become events when the round commits (store/transition_events.py): only written ones, once.

A pass whose session holds more than its record (a provider slot given back or claimed, a queue row, a
read: in the pass's own transaction, to be committed with its save) saves on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

from sqlalchemy import inspect
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from stacklab.envs.intent import INTENT_FIELDS, merge_intent, snapshot
from stacklab.envs.rounds import Rounds
from stacklab.envs.transitions import Journal
from stacklab.errors import Conflict, LeaseLost
from stacklab.store.conflicts import retried
from stacklab.store.repository import CasWrite, Repository
from stacklab.store.tables import EnvironmentRecord

log = logging.getLogger(__name__)
T = TypeVar("T")
Outcome = bool | BaseException
"""A pass's part of a round: True, written; an exception, what its pass raises."""


class _Mismatch(Exception):
    """A compare-and-set of a batch matched nothing: the batch is written again one pass at a time."""


def changed_columns(record: EnvironmentRecord) -> dict[str, object]:
    """The columns a pass changed since the record was loaded or last saved, with their new values."""
    state = inspect(record)
    columns = state.mapper.column_attrs.keys()
    return {name: getattr(record, name) for name in state.committed_state if name in columns}


def holds_only(session: Session, record: EnvironmentRecord) -> bool:
    """Nothing in the session but `record`: no statement ran in its transaction (SQLAlchemy names no
    public way to ask whether a connection was begun), nothing else added, changed or deleted."""
    transaction = session.get_transaction()
    if transaction is not None and transaction._connections:
        return False
    return not session.new and not session.deleted and all(obj is record for obj in session.dirty)


class Saves:
    """The saves of this process's passes, in rounds."""

    def __init__(
        self,
        repo: Repository,
        owner: Callable[[], str],
        clock: Callable[[], float],
        lease_s: float,
        blocking: Callable[[Callable[[], T]], Awaitable[T]],
    ) -> None:
        self.repo = repo
        self.owner = owner
        """This process's name as a lease holder, read at each save (a restarted test process renames it)."""
        self.clock = clock
        self.lease_s = lease_s
        self._blocking = blocking
        self._rounds: Rounds[str, Journal, bool] = Rounds("saves", self._serve)

    async def save(self, journal: Journal) -> None:
        """Save the pass's record and transitions, in this moment's round when its session holds nothing
        else. Raises LeaseLost when another process holds the lease."""
        journal.record.updated_at = journal.now
        if holds_only(journal.session, journal.record) and await self._rounds.ask(journal.record.id, journal):
            return
        await self._blocking(partial(self.commit, journal))

    def commit(self, journal: Journal) -> None:
        """Save on its own, in the pass's session (with what else its transaction holds)."""
        session = journal.session
        try:
            changes = self._write(journal, session)
        except LeaseLost:
            session.rollback()
            raise
        self._written(journal, changes)  # before the commit: its flush has no UPDATE left to send
        session.commit()

    def _write(self, journal: Journal, session: Session) -> dict[str, object]:
        """Compare-and-set on the version and the lease, the record's changes in the same UPDATE, and the
        transitions added to `session`: a learner's change made during the pass is merged
        (envs/intent.py), never overwritten; a pass whose lease was taken over writes nothing. Returns
        the columns written; the record is told once they are committed (`_written`)."""
        record = journal.record
        with session.no_autoflush:
            changes = self._changes(journal)
            if not self.repo.bump_version(session, record.id, record.version, self.owner(), changes):
                theirs = self.repo.locked_columns(
                    session, record.id, ("version", "lease_owner", *INTENT_FIELDS)
                )
                if theirs["lease_owner"] != self.owner():
                    raise LeaseLost(f"environment {record.id} was taken over by {theirs['lease_owner']}")
                journal.look_again |= merge_intent(journal, journal.base, theirs)
                set_committed_value(record, "version", theirs["version"])
                changes = changed_columns(record)
                if not self.repo.bump_version(session, record.id, record.version, self.owner(), changes):
                    raise Conflict(f"environment {record.id} changed under its row lock")
        session.add_all(journal.entries)
        return changes

    def _changes(self, journal: Journal) -> dict[str, object]:
        """The columns the save writes: the pass's changes, and the lease renewed for a pass that goes
        on (every save renews it)."""
        record = journal.record
        if record.lease_owner is not None:
            record.lease_until = self.clock() + self.lease_s
        return changed_columns(record)

    @staticmethod
    def _written(journal: Journal, changes: dict[str, object]) -> None:
        """The record as saved: its loaded state is what the row holds now."""
        record = journal.record
        for name, value in changes.items():
            set_committed_value(record, name, value)
        set_committed_value(record, "version", record.version + 1)
        journal.entries = []
        journal.base = snapshot(record)

    async def _serve(self, journals: dict[str, Journal]) -> dict[str, Outcome]:
        return await self._blocking(partial(self._round, journals))

    def _round(self, journals: dict[str, Journal]) -> dict[str, Outcome]:
        """One round, retried as a whole through write conflicts; after any other error (or conflicts
        past the retries) every pass saves on its own (none left out of the answer), so that one pass's
        bad write keeps no other pass's from landing."""
        try:
            return retried(partial(self._write_round, journals))
        except Exception:
            log.warning("a round of saves failed; its passes save one by one", exc_info=True)
            return {}

    def _write_round(self, journals: dict[str, Journal]) -> dict[str, Outcome]:
        """Every pass's compare-and-set in one batch when all of them match (the common case); when one
        does not, the batch is rolled back and each is written on its own, in one transaction still."""
        try:
            return self._write_batch(journals)
        except _Mismatch:
            return self._write_each(journals)

    def _write_batch(self, journals: dict[str, Journal]) -> dict[str, Outcome]:
        ordered = sorted(journals)  # rows locked in one order by every round: no deadlock
        written = {env_id: self._changes(journals[env_id]) for env_id in ordered}
        writes = [CasWrite(env_id, journals[env_id].record.version, written[env_id]) for env_id in ordered]
        with self.repo.session() as session:
            if not self.repo.bump_versions(session, self.owner(), writes):
                raise _Mismatch  # leaves the session: rolled back
            for env_id in ordered:
                session.add_all(journals[env_id].entries)
        for env_id, changes in written.items():
            self._written(journals[env_id], changes)
        return dict.fromkeys(written, True)

    def _write_each(self, journals: dict[str, Journal]) -> dict[str, Outcome]:
        outcomes: dict[str, Outcome] = {}
        written: dict[str, dict[str, object]] = {}
        with self.repo.session() as session:
            for env_id in sorted(journals):  # rows locked in one order by every round: no deadlock
                try:
                    written[env_id] = self._write(journals[env_id], session)
                except Conflict as exc:  # LeaseLost too: that pass wrote nothing, the others go on
                    outcomes[env_id] = exc
        for env_id, changes in written.items():
            self._written(journals[env_id], changes)
            outcomes[env_id] = True
        return outcomes
