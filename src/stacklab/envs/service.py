"""What learners, adapters and operators can ask of environments: the one API the CLI and web share."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from stacklab.access.ssh import CommandResult, run
from stacklab.checks.runner import CheckResult, counted_score, run_checks, weighted_score
from stacklab.envs import lifecycle
from stacklab.envs.allowance import Allowance, allowance, allowance_of
from stacklab.envs.controller import Controller, Result, seal
from stacklab.envs.idleness import PAGE_KINDS, Away, clear_away, mark_away
from stacklab.envs.new_record import NewEnvironment
from stacklab.envs.policies import is_settled
from stacklab.envs.transitions import Journal
from stacklab.errors import Conflict, InvalidInput, NotFound, UsageLimitReached
from stacklab.jobs.runner import JobRunner
from stacklab.labs.loader import lab_digest, parse_lab
from stacklab.labs.schema import Lab
from stacklab.store import queue
from stacklab.store.grants import Grant, add_grant
from stacklab.store.repository import EnvKey
from stacklab.store.tables import CheckRunRecord, EnvironmentRecord, TransitionRecord
from stacklab.store.usage import learner_environments
from stacklab.types import Desired, Observed

Presence = Literal["visible", "hidden", "closed"]
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+@-]{0,199}$")


@dataclass(frozen=True)
class CheckReport:
    results: list[CheckResult]
    score: float
    max_score: float
    counted: float
    at: float
    """When the checks ran (the service's clock): the unit adopts a check made elsewhere by it."""


def _validate_name(kind: str, value: str) -> str:
    if not NAME_PATTERN.match(value or ""):
        raise InvalidInput(
            f"{kind} {value!r} is invalid: use 1-200 letters, digits and _ . : + @ - (no spaces or '/')"
        )
    return value


class Environments:
    """Launch, observe and act on environments; every change goes through the controller.

    A change that makes an environment due now is handed to the runner after it commits, so that a
    pass starts at once wherever passes run (this process, or a worker); callers never kick passes.
    """

    def __init__(self, controller: Controller, runner: JobRunner) -> None:
        self.controller = controller
        self.runner = runner
        self.repo = controller.repo
        self.clock: Callable[[], float] = controller.clock

    def _submitted(self, record: EnvironmentRecord) -> EnvironmentRecord:
        """Committed: a pass now, if the change made the environment due."""
        if record.due_at is not None and record.due_at <= self.clock():
            self.runner.submit(record.id)
        return record

    # lookup -----------------------------------------------------------------------------------------
    def resolve(self, ref: str) -> EnvironmentRecord:
        """An environment by id, or by `course/lab/learner`."""
        if ref.count("/") == 2:
            record = self.repo.find(EnvKey(*ref.split("/")))
            if record is None:
                raise NotFound(f"no environment {ref!r}")
            return record
        return self.repo.get(ref)

    def lab_of(self, record: EnvironmentRecord) -> Lab:
        return self.controller.labs.get(record.lab_digest)

    def history(self, record: EnvironmentRecord) -> list[TransitionRecord]:
        return self.repo.history(record.id)

    # launch -----------------------------------------------------------------------------------------
    def launch(
        self, lab_path: str | os.PathLike[str], learner: str, course: str = "default"
    ) -> EnvironmentRecord:
        """One environment per (course, lab, learner): a second launch, even a concurrent one, finds it."""
        _validate_name("learner", learner)
        _validate_name("course", course)
        path = Path(lab_path).resolve()
        try:
            text = path.read_text()
        except OSError as exc:
            raise NotFound(f"{lab_path}: cannot read lab file: {exc.strerror}") from exc
        lab = parse_lab(text, str(lab_path), lab_dir=str(path.parent))
        digest = lab_digest(text)
        now = self.clock()
        self.repo.save_lab(digest, lab.id, str(path), text, now)
        key = EnvKey(course, lab.id, learner)
        existing = self.repo.find(key)
        if existing is None:
            self._admit_new(key, lab, now)
            if self._insert(key, lab, digest, now):
                return self._submitted(self.repo.find(key) or self._missing(key))
        record = self.repo.find(key) or self._missing(key)
        if self._would_start(record) and self._blocked(record) is not None:
            return record  # left paused: the lab page shows the limit and the last check results
        return self._submitted(self._relaunch(record, digest))

    def _insert(self, key: EnvKey, lab: Lab, digest: str, now: float) -> bool:
        new = NewEnvironment(
            course=key.course,
            lab_id=key.lab_id,
            learner=key.learner,
            lab_digest=digest,
            sealed_secrets=seal(self.controller.vault, {}),
            idle_suspend_s=lab.timeouts.idle_suspend_s,
            delete_after_s=lab.timeouts.delete_after_s,
            reason="Launched",
        )
        return self.repo.insert_environment(*new.rows(now))

    @staticmethod
    def _missing(key: EnvKey) -> EnvironmentRecord:
        raise Conflict(f"environment {key} vanished while launching; try again")

    def _relaunch(self, record: EnvironmentRecord, digest: str) -> EnvironmentRecord:
        lab = self.controller.labs.get(digest)  # outside the transaction: it reads the store itself

        def mutate(current: EnvironmentRecord, session) -> None:  # type: ignore[no-untyped-def]
            journal = Journal(current, self.clock())
            if current.observed in (Observed.NEW, Observed.DELETED):
                current.lab_digest = digest
                current.idle_suspend_s = lab.timeouts.idle_suspend_s
                current.delete_after_s = lab.timeouts.delete_after_s
            self._wake(journal, "Launched")
            session.add_all(journal.entries)

        return self.repo.update(record.id, mutate)

    # usage limits -----------------------------------------------------------------------------------
    def allowance(self, record: EnvironmentRecord) -> Allowance | None:
        """The learner's running time against the lab's usage limit (None: the lab sets none)."""
        return allowance_of(self.repo, record, self.lab_of(record), self.clock())

    @staticmethod
    def _would_start(record: EnvironmentRecord) -> bool:
        return record.desired != Desired.RUNNING or record.observed != Observed.RUNNING

    def _blocked(self, record: EnvironmentRecord) -> Allowance | None:
        """The allowance when the learner is past a `block` limit, else None."""
        found = self.allowance(record)
        return found if found is not None and found.blocked else None

    def _admit(self, record: EnvironmentRecord) -> None:
        """Refuse to start or resume a lab whose learner is past a `block` usage limit."""
        if self._would_start(record):
            blocked = self._blocked(record)
            if blocked is not None:
                raise UsageLimitReached(blocked.sentence())

    def _admit_new(self, key: EnvKey, lab: Lab, now: float) -> None:
        """A first launch under a course-wide limit the learner has used up is refused (there is no lab
        of theirs to show)."""
        if lab.usage_limit is None:
            return
        limit = lab.usage_limit.for_course(key.course)
        found = allowance(self.repo, limit, key.course, key.lab_id, key.learner, now, None)
        if found.blocked:
            raise UsageLimitReached(found.sentence())

    def grant(self, ref: str, hours: float, reason: str, granted_by: str) -> EnvironmentRecord:
        """Give the learner of an environment `hours` more running time on its lab (staff only).

        The grant is kept with who gave it and why; each of the learner's labs in the course notes it in
        its history and is looked at again now, so that a running one gets its new deadline."""
        record = self.resolve(ref)
        now = self.clock()
        add_grant(
            self.repo,
            Grant(record.course, record.lab_id, record.learner, hours * 3600.0, reason, granted_by, now),
        )
        message = f"{hours:g} h more lab time from {granted_by}: {reason.strip()}"

        def note(journal: Journal) -> None:
            journal.note("usage", "grant", "UsageGranted", message)
            lifecycle.wake(journal)

        for env_id in learner_environments(self.repo, record.course, record.learner):
            self._change(self.repo.get(env_id), note)
        return self.repo.get(record.id)

    def _wake(self, journal: Journal, reason: str, activity: bool = False) -> None:
        """Make an environment want to run now, forgetting the backoff of earlier failures. A page that
        opens ends the page's away markers; only activity ends a pre-resume's (envs/idleness.py)."""
        record = journal.record
        record.last_activity_at = journal.now
        clear_away(record, None if activity else PAGE_KINDS)
        if record.desired != Desired.RUNNING or record.observed != Observed.RUNNING:
            lifecycle.request(journal, Desired.RUNNING, reason)

    # activity and requests --------------------------------------------------------------------------
    def touch(self, ref: str) -> EnvironmentRecord:
        """Learner activity: keeps a running lab running, wakes a suspended one (not past a `block` usage
        limit).

        A running lab's activity is written at most once per `activity_throttle_s`: idle deadlines are
        minutes, and a burst of pings (an LMS, a tool, keystrokes) must not become a burst of writes.
        """
        record = self.resolve(ref)
        if record.desired == Desired.RUNNING and record.observed == Observed.RUNNING:
            now = self.clock()
            away = record.away_kind is not None  # the first activity after it ends the marker at once
            if away or now - (record.last_activity_at or 0.0) >= self.controller.settings.activity_throttle_s:
                record.last_activity_at = now
                self.repo.touch(record.id, now, clear_away=away)
            return record
        if record.desired == Desired.DELETED:
            raise Conflict(f"environment {record.id} is being deleted; launch it again instead")
        if self._blocked(record) is not None:
            return record  # past a `block` usage limit: activity (a late keystroke) wakes nothing
        return self._change(record, lambda journal: self._wake(journal, "Activity", activity=True))

    def presence(self, ref: str, state: Presence) -> EnvironmentRecord:
        """What the learner's lab page says of itself: `visible`, `hidden` or `closed` (envs/idleness.py).

        Not activity: a hidden or closed page brings the idle deadline forward (the lab's
        `idle_suspend_hidden`, `close_grace`), a visible one ends that. Writes only when something changes.
        """
        record = self.resolve(ref)
        if state == "visible":
            if record.away_kind is None or Away(record.away_kind) not in PAGE_KINDS:
                return record

            def shown(journal: Journal) -> None:
                clear_away(journal.record, PAGE_KINDS)

            return self._change(record, shown)
        if record.desired != Desired.RUNNING:
            return record  # paused or going away: nothing to bring forward
        timeouts = self.lab_of(record).timeouts
        kind, limit = (
            (Away.CLOSED, timeouts.close_grace_s)
            if state == "closed"
            else (Away.HIDDEN, timeouts.hidden_idle_s)
        )

        def away(journal: Journal) -> None:
            mark_away(journal.record, kind, journal.now, limit)

        return self._change(record, away)

    def prepare(self, key: EnvKey) -> tuple[EnvironmentRecord | None, bool]:
        """The LMS rendered the lab's unit for this learner (pre-resume): a paused lab starts waking up now,
        before the learner acts, and is paused again after the lab's `pre_resume_idle` unless they act.
        A lab that runs (or is waking, failed, deleted, or not there yet) is left as it is: a view is not
        activity. Returns the environment (None when the learner has none) and whether it was woken."""
        record = self.repo.find(key)
        if record is None or record.desired != Desired.SUSPENDED or record.observed == Observed.FAILED:
            return record, False
        if self._blocked(record) is not None:  # past a `block` usage limit: it stays paused
            return record, False
        limit = self.lab_of(record).timeouts.pre_resume_idle_s

        def wake(journal: Journal) -> None:
            self._wake(journal, "PreResume")
            mark_away(journal.record, Away.PRERESUME, journal.now, limit)
            lifecycle.wake(journal)

        return self._change(record, wake), True

    def request(self, ref: str, desired: Desired, reason: str) -> EnvironmentRecord:
        """An explicit suspend, resume or delete: recorded as the new desired state, converged by the loop."""
        record = self.resolve(ref)
        if desired == Desired.RUNNING:
            if record.desired == Desired.DELETED and record.observed != Observed.DELETED:
                raise Conflict(f"environment {record.id} is being deleted")
            self._admit(record)
            return self._change(record, lambda journal: self._wake(journal, reason))

        def move(journal: Journal) -> None:
            lifecycle.request(journal, desired, reason)
            if desired == Desired.DELETED:
                journal.record.token_generation += 1  # earlier access tokens stop working

        return self._change(record, move)

    def reset(self, ref: str) -> EnvironmentRecord:
        """Throw the lab away and start a fresh one for the same learner."""
        record = self.resolve(ref)
        if record.observed != Observed.RUNNING:  # a running lab is replaced within its own time
            self._admit(record)

        def mark(journal: Journal) -> None:
            journal.record.reset_requested = True
            journal.record.token_generation += 1  # earlier access tokens stop working
            journal.note("request", journal.record.observed, "ResetRequested")
            self._wake(journal, "Reset")
            lifecycle.wake(journal)

        return self._change(record, mark)

    def _change(self, record: EnvironmentRecord, change: Callable[[Journal], None]) -> EnvironmentRecord:
        def mutate(current: EnvironmentRecord, session) -> None:  # type: ignore[no-untyped-def]
            journal = Journal(current, self.clock())
            change(journal)
            session.add_all(journal.entries)

        return self._submitted(self.repo.update(record.id, mutate))

    # the admission queue ----------------------------------------------------------------------------
    def seen(self, record: EnvironmentRecord) -> None:
        """The learner's page (or a command waiting for the lab) asked about it: a lab waiting in line keeps
        its place (written at most every activity_throttle_s, never less often than needed to stay)."""
        if record.queued_at is None or record.capacity_held is not None:
            return
        settings, now = self.controller.settings, self.clock()
        every = min(settings.activity_throttle_s, settings.queue_leave_after_s / 4)
        if now - (record.queue_seen_at or 0.0) >= every:
            queue.mark_seen(self.repo, record.id, now)
            record.queue_seen_at = now

    def leave_queue(self, ref: str) -> EnvironmentRecord:
        """The learner gives up their place in line; their lab stays as it was (not started, or paused)."""
        record = self.resolve(ref)
        if record.queued_at is None or record.capacity_held is not None or record.desired != Desired.RUNNING:
            raise Conflict(f"environment {record.id} is not waiting in line")
        return self.request(record.id, Desired.SUSPENDED, "LeftQueue")

    def queue_spot(self, record: EnvironmentRecord) -> tuple[int | None, float | None]:
        """(place in line, seconds until its turn by the recent pace of releases), or (None, None)."""
        now, leave_after_s = self.clock(), self.controller.settings.queue_leave_after_s
        place = queue.position(self.repo, record, now, leave_after_s)
        if place is None:
            return None, None
        return place, queue.estimate_s(self.repo, queue.decode(record.queue_providers), place, now)

    # driving ----------------------------------------------------------------------------------------
    @staticmethod
    def settled(record: EnvironmentRecord) -> bool:
        return is_settled(record)

    async def drive(
        self,
        env_id: str,
        timeout_s: float,
        on_progress: Callable[[EnvironmentRecord], None] | None = None,
    ) -> EnvironmentRecord:
        """Reconcile in this process until the environment settles (or fails, or time runs out). With
        runner = celery the workers run the passes (on the hosts that hold the labs): this only follows."""
        deadline = self.clock() + timeout_s
        last = None
        here = self.controller.settings.runner == "embedded"
        while True:
            result = await self.controller.reconcile(env_id) if here else Result(None)
            record = self.repo.get(env_id)
            self.seen(record)  # a command waiting for a lab in line keeps its place
            if on_progress and (record.observed, record.progress) != last:
                last = (record.observed, record.progress)
                on_progress(record)
            if self.settled(record) or self.clock() >= deadline:
                return record
            delay_s = 0.2 if result.requeue_after is None else result.requeue_after
            await self._until_next_pass(record, delay_s, deadline - self.clock())

    async def _until_next_pass(self, record: EnvironmentRecord, delay_s: float, limit_s: float) -> None:
        """As the controller asks (a cloud's poll interval is kept, a local boot is not slowed); but while
        the provider follows an operation on the stack, until the provider sees it finish: the next pass
        comes when the stack is ready, not a requeue delay later; and while a pass of the service's own
        runner holds the environment (this pass found it held), until that pass ends."""
        if self.controller.in_pass(record.id):  # the runner's pass has it: look when that one ends
            end = self.clock() + min(limit_s, self.controller.settings.provider_timeout_s)
            while self.controller.in_pass(record.id) and self.clock() < end:
                await asyncio.sleep(0.02)
            return
        provider = self.controller.providers.named(record.provider) if record.provider else None
        if delay_s > 0 and provider is not None and record.handle:
            limit_s = min(limit_s, self.controller.settings.provider_timeout_s)
            if await provider.changed(record.handle, limit_s):
                return
        await asyncio.sleep(delay_s)

    # exec and checks --------------------------------------------------------------------------------
    def _running(self, ref: str) -> tuple[EnvironmentRecord, Lab]:
        record = self.resolve(ref)
        if record.observed != Observed.RUNNING:
            blocked = self._blocked(record)
            if blocked is not None:  # paused by its usage limit: say so, not "resume it first"
                raise UsageLimitReached(blocked.sentence())
            raise Conflict(
                f"environment {record.id} is {record.observed}, not running"
                + (": resume it first" if record.observed == Observed.SUSPENDED else "")
            )
        return record, self.lab_of(record)

    async def exec(
        self, ref: str, command: str, node: str | None = None, timeout_s: float = 600
    ) -> CommandResult:
        """Run a command on a node as the login user; counts as activity."""
        record, lab = self._running(ref)
        targets = self.controller.targets(record, lab)
        name = node or lab.learner_nodes[0]
        if name not in targets:
            raise NotFound(f"no node {name!r} in environment {record.id} (nodes: {', '.join(targets)})")
        self.repo.touch(record.id, self.clock())
        return await run(targets[name], command, timeout_s=timeout_s)

    async def check(self, ref: str) -> CheckReport:
        """Run the lab's checks, keep the attempt, and report the score that counts."""
        record, lab = self._running(ref)
        results = await run_checks(lab.checks, self.controller.targets(record, lab))
        score, at = weighted_score(results), self.clock()
        self.repo.add_check_run(
            CheckRunRecord(
                env_id=record.id,
                at=at,
                score=score,
                max_score=lab.max_score(),
                results=[result.to_json() for result in results],
            )
        )
        scores = [run_.score for run_ in self.repo.check_runs(record.id)]
        return CheckReport(results, score, lab.max_score(), counted_score(scores, lab.score) or 0.0, at)
