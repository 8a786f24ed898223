"""Admission under pressure: when every provider a lab can use is full, a launch (or a resume that needs a
place again) waits in line instead of failing; first come, first served; a learner who leaves drops out.

The controller asks `may_take` before it claims a slot: a provider's slot goes to someone only when fewer
are in line ahead of them for that provider than the provider has free places (for a provider without a
`capacity`, whose limit is the cloud's quota: only to the head of the line). A newcomer has everyone in
line ahead of it, so it never overtakes. Whoever finds no room `join`s the line (kept in the database,
store/queue.py) and is looked at again every `queue_recheck_s`; a slot given back wakes the head of the
line for that provider at once (after the commit that gave it back), as does the head taking its slot
(the next may fit too) and someone leaving. A waiter whose page stops asking for `queue_leave_after_s`
is taken out of line (desired: suspended, reason `LeftQueue`), as is one whose learner cancels, and one
whose page said it was closed (the pagehide beacon) once the lab's `close_grace` has passed.
"""

from __future__ import annotations

from collections.abc import Iterable

from stacklab.config import Settings
from stacklab.envs.transitions import Journal
from stacklab.labs.durations import format_duration
from stacklab.labs.schema import ProviderEntry
from stacklab.store import queue
from stacklab.store.repository import Repository
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Desired

CAPACITY_REASONS = frozenset({"NoCapacity", "CapacityExhausted", "QuotaExceeded"})
"""A provider refused for want of room: the launch waits in line rather than failing."""


def _closed_for_good(record: EnvironmentRecord, now: float) -> bool:
    """The page's pagehide beacon said `closed` (envs/idleness.py), its grace has passed and no page of
    the lab has asked since (a reload asks at once)."""
    if record.away_kind != "closed" or record.away_at is None or record.away_limit_s is None:
        return False
    seen = record.queue_seen_at or record.queued_at or 0.0
    return now >= record.away_at + record.away_limit_s and seen <= record.away_at


class Admission:
    """The controller's side of the queue; one per controller."""

    def __init__(self, repo: Repository, settings: Settings) -> None:
        self.repo = repo
        self.settings = settings
        self._wakes: dict[str, set[str]] = {}
        """env id -> providers whose line its pass must wake once its changes are committed."""

    @property
    def leave_after_s(self) -> float:
        return self.settings.queue_leave_after_s

    # in a pass, under the lease -------------------------------------------------------------------------
    def check_leavers(self, journal: Journal) -> None:
        """Out of line: a learner who cancelled (desired moved on) or whose page stopped asking."""
        record, now = journal.record, journal.now
        if record.queued_at is None:
            return
        waiting = record.capacity_held is None
        seen = record.queue_seen_at or record.queued_at
        closed = _closed_for_good(record, now)
        if waiting and record.desired == Desired.RUNNING and closed:
            journal.desire(Desired.SUSPENDED, "LeftQueue", "the lab page was closed while in line")
        elif waiting and record.desired == Desired.RUNNING and now - seen >= self.leave_after_s:
            journal.desire(
                Desired.SUSPENDED,
                "LeftQueue",
                f"the lab page stopped asking {format_duration(now - seen)} ago while in line",
            )
        if record.desired != Desired.RUNNING:
            self.settle(journal, "LeftQueue" if waiting else None)

    def may_take(self, journal: Journal, entry: ProviderEntry) -> bool:
        """Whether this environment's turn has come for a slot of `entry` (claim_slot still decides
        whether one is free)."""
        record, session = journal.record, journal.session
        ahead = queue.ahead(session, record.id, record.queued_at, entry.name, journal.now, self.leave_after_s)
        if ahead == 0:
            return True
        if entry.capacity is None:
            return False
        return ahead < entry.capacity - queue.used(session, entry.name)

    def join(self, journal: Journal, providers: Iterable[str], why: str) -> float:
        """In line for `providers` (once, at the time of the request); look again after the recheck. A
        warm pool member waits without a place in line: learners, in line or not, go first."""
        record, now = journal.record, journal.now
        if record.pool is not None:  # a warm pool member never takes a learner's place in line
            return self.settings.queue_recheck_s
        names = list(providers)
        record.queue_providers = queue.encode(names)
        if record.queued_at is None:
            record.queued_at = min(record.last_activity_at, now)
            record.queue_seen_at = now
            journal.note("queue", "-", "Queued", f"{why}; waiting for {', '.join(names)}")
        return self.settings.queue_recheck_s

    def admitted(self, journal: Journal, provider: str) -> None:
        """A waiter took its slot: the next in line may fit too."""
        record = journal.record
        if record.queued_at is not None:
            waited = format_duration(max(0.0, journal.now - record.queued_at))
            journal.note("queue", provider, "Admitted", f"after {waited} in line")
            self._wake(record.id, [provider])

    def settle(self, journal: Journal, reason: str | None = None) -> None:
        """Out of line for good (running, or left); a waiter that leaves lets the next one look."""
        record = journal.record
        if record.queued_at is None:
            return
        if record.capacity_held is None:
            self._wake(record.id, queue.decode(record.queue_providers))
        if reason:
            journal.note("queue", "-", reason, "")
        record.queued_at = record.queue_providers = record.queue_seen_at = None

    def released(self, journal: Journal, provider: str) -> None:
        """A slot of `provider` was given back in this pass's transaction."""
        queue.record_release(journal.session, provider, journal.now)
        self._wake(journal.record.id, [provider])

    def cancel_wakes(self, env_id: str) -> None:
        """Nothing this pass gave back is room for others (a create refused for want of room)."""
        self._wakes.pop(env_id, None)

    def _wake(self, env_id: str, providers: Iterable[str]) -> None:
        self._wakes.setdefault(env_id, set()).update(providers)

    # after the pass's commit ----------------------------------------------------------------------------
    def has_wakes(self, env_id: str) -> bool:
        return bool(self._wakes.get(env_id))

    def send_wakes(self, env_id: str, now: float) -> list[str]:
        """Make the head of each touched line due now (the scheduler or the engine sends its pass)."""
        providers = self._wakes.pop(env_id, set())
        woken: list[str] = []
        for provider in sorted(providers):
            woken += [i for i in queue.heads(self.repo, provider, 1, now, self.leave_after_s) if i != env_id]
        queue.wake(self.repo, sorted(set(woken)), now)
        return woken
