"""The controller: a level-triggered reconcile of one environment, idempotent and safe to re-drive.

`reconcile(env_id)` reads the world, lets the policies move the desired state, takes one step towards it
and records where it got. A crash at any point is repaired by the next pass: everything a step creates
outside is named after the environment (`sl-<id>`), and the intent is saved before the step acts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from sqlalchemy import inspect
from sqlalchemy.orm import Session

from stacklab.access.keys import generate_keypair
from stacklab.access.rdp import stop_bridges
from stacklab.access.ssh import Target, probe
from stacklab.checks.scripts import run_script
from stacklab.config import Settings
from stacklab.envs import lifecycle
from stacklab.envs.admission import CAPACITY_REASONS, Admission
from stacklab.envs.allowance import limit_deadline
from stacklab.envs.handover import ROTATED, PoolSteps
from stacklab.envs.idleness import IDLE_REASONS
from stacklab.envs.intent import snapshot
from stacklab.envs.labcache import LabCache
from stacklab.envs.leasing import Leases
from stacklab.envs.policies import apply_policies, is_settled, policy_deadline
from stacklab.envs.pools import apply_pool_policy, pool_deadline
from stacklab.envs.providerset import ProviderSet
from stacklab.envs.resting import at_rest
from stacklab.envs.saving import Saves
from stacklab.envs.transitions import Journal
from stacklab.errors import (
    AccessError,
    LeaseLost,
    NotFound,
    ProviderError,
    TerminalProviderError,
    TransientProviderError,
)
from stacklab.labs.schema import Hook, Lab, ProviderEntry
from stacklab.procs import process_identity
from stacklab.providers.base import Handle, NodeSpec, Provider, StackRequest, StackState, StackStatus
from stacklab.secrets import Secret, Vault
from stacklab.store.conflicts import is_conflict
from stacklab.store.repository import Repository
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Desired, Observed, Progress

log = logging.getLogger(__name__)
T = TypeVar("T")

CLOCK_STEP_S = 5.0
"""A save this far ahead of the clock means the clock stepped back (NTP, a restored VM)."""


@dataclass(frozen=True)
class Result:
    """What a pass decided: look again after `requeue_after` seconds, or wait for the next deadline."""

    requeue_after: float | None = None


def unseal(vault: Vault, sealed: bytes) -> dict[str, str]:
    return json.loads(vault.decrypt(sealed).reveal())


def seal(vault: Vault, secrets: dict[str, str]) -> bytes:
    return vault.encrypt(Secret(json.dumps(secrets)))


class Controller(PoolSteps):
    """Converges each environment's observed state to its desired state, one step per pass."""

    def __init__(
        self,
        repo: Repository,
        vault: Vault,
        providers: ProviderSet,
        labs: LabCache,
        settings: Settings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.repo = repo
        self.vault = vault
        self.providers = providers
        self.labs = labs
        self.settings = settings
        self.clock = clock
        self.owner = process_identity()
        self._database_threads = (
            None
            if repo.engine.dialect.name == "sqlite"
            else ThreadPoolExecutor(settings.reconcile_concurrency, thread_name_prefix="stacklab-db")
        )
        self.listeners: list[Callable[[str, float, str], None]] = []
        self._in_pass: set[str] = set()  # environments with a pass running in this process
        self.leases = Leases(
            self._lease_many, lambda: self.clock(), self._blocking, repo.unleased, partial(at_rest, labs.get)
        )
        self.saves = Saves(repo, lambda: self.owner, lambda: self.clock(), settings.lease_s, self._blocking)
        self.admission = Admission(repo, settings)
        """Called with (event, seconds, reason) for "launched", "resumed" and "failed" (metrics)."""

    def _emit(self, event: str, seconds: float = 0.0, reason: str = "") -> None:
        for listener in self.listeners:
            listener(event, seconds, reason)

    def in_pass(self, env_id: str) -> bool:
        """A pass of this process holds the environment now (another one would find it held)."""
        return env_id in self._in_pass

    # entry point ------------------------------------------------------------------------------------
    async def reconcile(self, env_id: str) -> Result:
        """One pass over one environment; never raises for provider, SSH or unexpected trouble.

        The lease is taken with other passes' (envs/leasing.py); the pass saves its outcome and gives
        the lease back in one transaction, shared with the passes that end in the same moment
        (envs/saving.py): a step that needs no intermediate save commits once, or less. An environment
        at rest (envs/resting.py) costs one read, shared too, and no pass.
        """
        if await self.leases.resting(env_id):
            return Result(None)
        async with self._exclusively(env_id) as journal:
            if journal is None:
                return Result(self.settings.poll_interval_s)
            try:
                return await self._reconcile_leased(journal)
            except LeaseLost:
                log.warning("a pass outlived its lease", extra={"env_id": env_id})
                return Result(self.settings.poll_interval_s)
            except Exception as exc:  # not planned for: retried with backoff like a transient error
                if is_conflict(exc):  # a deadlock or a Galera certification failure: not the lab's fault
                    return await self._redrive(journal, env_id)
                log.exception("unexpected error in a pass", extra={"env_id": env_id})
                return await self._recover(journal.session, env_id, exc)

    @contextlib.asynccontextmanager
    async def _exclusively(self, env_id: str) -> AsyncIterator[Journal | None]:
        """Hold the environment: None when a pass has it already. The lease keeps other processes out;
        a set keeps out a second pass of this process (the lease is this process's already)."""
        if env_id in self._in_pass:
            yield None
            return
        self._in_pass.add(env_id)
        try:
            with self.repo.new_session() as session:
                journal = await self._take(session, env_id)
                try:
                    yield journal
                except BaseException:
                    if journal is not None:
                        session.rollback()
                        self.repo.release_lease(env_id, self.owner)
                    raise
                # Held without a step to save: give the lease back. The loaded state is read, not the
                # attribute: after a rollback that would query, and on SQLite hold the write lock.
                if journal is not None and inspect(journal.record).dict.get("lease_owner") is not None:
                    session.rollback()
                    self.repo.release_lease(env_id, self.owner)
        finally:
            self._in_pass.discard(env_id)

    async def _take(self, session: Session, env_id: str) -> Journal | None:
        """Lease and load the environment, with the other passes of this moment (envs/leasing.py);
        None when another pass holds it."""
        record = await self.leases.take(env_id)
        if record is not None:
            session.add(record)  # loaded and leased already: no statement
        else:  # held elsewhere (or by a dead holder), or no such environment: the single lease decides
            record = await self._blocking(
                partial(self.repo.lease, session, env_id, self.owner, self.clock(), self.settings.lease_s)
            )
        return None if record is None else self._journal(record, session)

    def lease_ahead(self, env_ids: list[str]) -> None:
        """Lease and load, in one statement and commit, environments whose passes this process is about
        to run (the embedded engine's due batch). Those with a pass running here are left out: that
        pass holds the lease and saves its own outcome."""
        self.leases.ahead([env_id for env_id in env_ids if env_id not in self._in_pass])

    def _lease_many(self, env_ids: list[str]) -> dict[str, EnvironmentRecord]:
        return self.repo.lease_many(env_ids, self.owner, self.clock(), self.settings.lease_s)

    def _journal(self, record: EnvironmentRecord, session: Session) -> Journal:
        """A pass's journal, with the learner-side columns as loaded: the base its saves merge on."""
        journal = Journal(record, self.clock(), session)
        journal.base = snapshot(record)
        return journal

    async def _redrive(self, journal: Journal, env_id: str) -> Result:
        """A save lost a write conflict and was rolled back: give the lease back and look again at once,
        without counting an attempt (every step is idempotent, so the next pass carries on from the
        last save)."""
        log.info("a save lost a write conflict; the pass is run again", extra={"env_id": env_id})
        journal.session.rollback()
        await self._blocking(partial(self.repo.release_lease, env_id, self.owner))
        return Result(0.0)

    async def _recover(self, session: Session, env_id: str, exc: Exception) -> Result:
        """After an unexpected error: forget what the pass had not saved (its steps are idempotent and
        re-driven), count the attempt with its reason and back off; `failed` after max_attempts."""
        session.rollback()
        record = await self._blocking(partial(session.get, EnvironmentRecord, env_id, populate_existing=True))
        if record is None:
            raise NotFound(f"no environment {env_id!r}") from exc
        journal = self._journal(record, session)
        return await self._finish(journal, self._retry_later(journal, exc))

    async def _reconcile_leased(self, journal: Journal) -> Result:
        record = journal.record
        lab = self.labs.get(record.lab_digest)
        self._catch_up_after_clock_step(journal)
        was_running = record.observed == Observed.RUNNING
        await self._refresh_usage_limit(journal, lab)
        if record.pool is None:
            apply_policies(journal)
        else:  # a warm pool member: its pool's policy instead of a learner's (envs/pools.py)
            apply_pool_policy(journal, lab)
        self.admission.check_leavers(journal)
        await self._keep_while_busy(journal, lab)
        if journal.entries:
            await self._save(journal)  # the new intent survives a crash in the step below
        if record.next_attempt_at and record.next_attempt_at > journal.now:
            return await self._finish(journal, None)
        try:
            requeue = await self._converge(journal, lab)
        except (TransientProviderError, AccessError) as exc:
            requeue = self._retry_later(journal, exc)
        except ProviderError as exc:
            requeue = self._fail(journal, exc.reason, str(exc))
        if record.observed == Observed.RUNNING and not was_running:  # the time it may run starts now
            await self._refresh_usage_limit(journal, lab)
        return await self._finish(journal, requeue)

    async def _refresh_usage_limit(self, journal: Journal, lab: Lab) -> None:
        """When a lab that wants to run reaches its learner's `block` usage limit (envs/allowance.py): a
        policy deadline, worked out afresh by every pass (grants and a new week move it)."""
        record = journal.record
        if lab.usage_limit is None:
            return
        if record.desired != Desired.RUNNING:
            # Wants no time, so no deadline: one left from the run its limit ended would turn back a resume
            # that a save merges in later (envs/intent.py makes the policy decision again on it).
            if record.usage_limit_at is not None:
                record.usage_limit_at = None
            return
        if record.observed not in (Observed.RUNNING, Observed.SUSPENDED):  # uses no time yet
            return
        record.usage_limit_at = await self._blocking(
            partial(limit_deadline, self.repo, record, lab, journal.now)
        )

    @staticmethod
    def _catch_up_after_clock_step(journal: Journal) -> None:
        """A retry scheduled before the clock stepped back would wait the step on top of its backoff: the
        last save lies ahead of the clock, so the retry is due now."""
        record, now = journal.record, journal.now
        if record.updated_at > now + CLOCK_STEP_S and record.next_attempt_at and record.next_attempt_at > now:
            record.next_attempt_at = None
            journal.note("clock", record.observed, "ClockSteppedBack", f"{record.updated_at - now:.0f}s back")

    async def _converge(self, journal: Journal, lab: Lab) -> float | None:
        record = journal.record
        desired, observed = record.desired, record.observed
        if desired == Desired.DELETED:
            record.reset_requested = False  # nothing to reset in a lab that goes away
            return await self._delete(journal, lab) if observed != Observed.DELETED else None
        if record.rotate_keys and record.provider and observed != Observed.FAILED:
            return await self._finish_handover(journal, lab)  # a stack from a warm pool
        if observed == Observed.CREATING:
            return await self._advance_create(journal, lab)
        # A suspend or resume the provider is still carrying out is finished before changing course.
        if observed == Observed.RUNNING and record.progress == Progress.SUSPENDING:
            return await self._suspend(journal, lab)
        if observed == Observed.SUSPENDED and record.progress == Progress.RESUMING:
            return await self._resume(journal, lab)
        if record.reset_requested:  # before a pause: a fresh lab that waits paused is what was asked for
            return await self._reset(journal, lab)
        if desired == Desired.SUSPENDED:
            return await self._suspend(journal, lab) if observed == Observed.RUNNING else None
        if observed in (Observed.NEW, Observed.DELETED):
            return await self._start_create(journal, lab)
        if observed == Observed.FAILED:
            return await self._retry_create(journal, lab)
        if observed == Observed.SUSPENDED:
            return await self._resume(journal, lab)
        return None

    # create -----------------------------------------------------------------------------------------
    async def _start_create(self, journal: Journal, lab: Lab) -> float | None:
        record = journal.record
        handled, requeue = await self._pool_before_create(journal, lab)
        if handled:
            return requeue
        entry = self._claim_provider(journal, lab)
        if entry is None:
            tried = record.failed_providers or []
            waiting_for = [p.name for p in lab.providers if p.name not in tried]
            record.progress = Progress.QUEUED
            return self.admission.join(journal, waiting_for, "no provider has room")
        record.handle = None
        record.nodes = None
        record.step_started_at = journal.now
        # A fresh key for every stack, made under the lease: nothing else can swap it mid-create.
        keypair = generate_keypair(f"stacklab-{record.id}")
        record.public_key = keypair.public
        record.sealed_secrets = seal(self.vault, {"private_key": keypair.private.reveal()})
        journal.observe(Observed.CREATING, "Creating", f"on provider {entry.name}", Progress.CREATING)
        await self._save(journal)
        provider = self.providers.get(entry)
        try:
            record.handle = await self.bounded(provider.create(self._request(record, lab, entry)), provider)
        except ProviderError as exc:
            return await self._fail_over(journal, lab, exc.reason, str(exc))
        record.progress = Progress.BOOTING
        await self._save(journal)
        return self.settings.poll_interval_s

    async def _advance_create(self, journal: Journal, lab: Lab) -> float | None:
        record = journal.record
        started = record.step_started_at or journal.now
        if journal.now - started > lab.timeouts.launch_s:
            return await self._fail_over(
                journal, lab, "LaunchTimeout", f"not ready after {lab.timeouts.launch_s:g}s"
            )
        entry, provider = self._provider_of(record, lab)
        status = await self.bounded(provider.status(self._handle(record)), provider)
        if status.state == StackState.FAILED:
            return await self._fail_over(journal, lab, "CreateFailed", status.reason or "the stack failed")
        if status.state == StackState.ABSENT:
            record.handle = await self.bounded(provider.create(self._request(record, lab, entry)), provider)
            return self.settings.poll_interval_s
        if status.state != StackState.RUNNING:
            return self._poll_after(provider)
        self._record_nodes(record, status)
        if not await self._all_answer_ssh(record, wait_s=self.settings.poll_interval_s):
            record.progress = Progress.BOOTING
            return 0.0
        # Idleness counts from when the learner has a lab, not from the request (a launch takes a while).
        record.last_activity_at = max(record.last_activity_at, journal.now)
        self._mark_ready(journal, "Ready", f"all nodes answer SSH after {self.clock() - started:.1f}s")
        self._emit("launched", self.clock() - started)
        return None

    async def _retry_create(self, journal: Journal, lab: Lab) -> float | None:
        """A failed environment is retried by policy, starting from a clean slate."""
        record = journal.record
        if record.attempts >= self.settings.max_attempts:
            return None
        await self._remove_stack(journal, lab)
        journal.observe(Observed.NEW, "Retrying", f"attempt {record.attempts + 1}")
        await self._save(journal)
        return await self._start_create(journal, lab)

    async def _reset(self, journal: Journal, lab: Lab) -> float | None:
        record = journal.record
        await self._remove_stack(journal, lab)
        record.reset_requested = False
        journal.observe(Observed.NEW, "Reset", "the learner asked for a fresh lab", Progress.QUEUED)
        await self._save(journal)
        return 0.0

    async def _fail_over(self, journal: Journal, lab: Lab, reason: str, message: str) -> float | None:
        """Give up on this provider for this launch: clean up there, then try the next one."""
        record = journal.record
        failed_name = record.provider or "?"
        journal.note("provider", failed_name, reason, message)
        try:
            await self._remove_stack(journal, lab)
        except ProviderError as exc:  # an unreachable provider must not keep the lab from the next one
            journal.note(
                "provider", failed_name, "LeftBehind", f"{exc}; the sweep deletes it when it answers"
            )
            self._forget_stack(journal)
        record.failed_providers = [*(record.failed_providers or []), failed_name]
        remaining = [p for p in lab.providers if p.name not in record.failed_providers]
        if reason in CAPACITY_REASONS:  # what this create gave back is no room for anyone else
            self.admission.cancel_wakes(record.id)
        if remaining:
            journal.observe(Observed.NEW, "FailingOver", f"{failed_name}: {message}", Progress.QUEUED)
            await self._save(journal)
            return 0.0
        record.failed_providers = None
        if reason in CAPACITY_REASONS:  # every provider is full: wait in line, not fail
            journal.observe(Observed.NEW, "NoRoom", f"{failed_name}: {message}", Progress.QUEUED)
            return self.admission.join(journal, [p.name for p in lab.providers], f"{failed_name}: {message}")
        return self._fail(journal, reason, message)

    def _claim_provider(self, journal: Journal, lab: Lab) -> ProviderEntry | None:
        """Take a slot on the first provider of the lab that has room, atomically with the record."""
        record = journal.record
        tried = set(record.failed_providers or [])
        for entry in lab.providers:
            if entry.name in tried:
                continue
            if self._claim_slot(journal, entry):
                record.provider = entry.name
                return entry  # committed with the record by the caller's next save
            if record.queued_at is None:  # once, not at every look of a lab in line
                journal.note("provider", entry.name, "CapacityExhausted", f"{entry.capacity} in use")
        return None

    def _claim_slot(self, journal: Journal, entry: ProviderEntry) -> bool:
        """A slot of `entry` when this environment's turn in line has come (envs/admission.py)."""
        if not self.admission.may_take(journal, entry):
            return False
        if not self.repo.claim_slot(journal.session, entry.name, entry.capacity):
            return False
        journal.record.capacity_held = entry.name
        self.admission.admitted(journal, entry.name)
        return True

    # suspend, resume, delete ------------------------------------------------------------------------
    async def _suspend(self, journal: Journal, lab: Lab) -> float | None:
        """Hook, then freeze; a provider that suspends asynchronously (Heat) is polled, not re-asked."""
        record = journal.record
        entry, provider = self._provider_of(record, lab)
        if record.progress != Progress.SUSPENDING:
            await self._run_hook(journal, "before_suspend", lab.hooks.before_suspend)
            await self._stop_rdp_bridges(journal, lab)
            await self.bounded(provider.suspend(self._handle(record)), provider)
            record.progress = Progress.SUSPENDING
        status = await self.bounded(provider.status(self._handle(record)), provider)
        if status.state == StackState.FAILED:
            record.progress = Progress.READY  # the retry asks the provider again
            raise TransientProviderError(f"suspend failed: {status.reason}", reason="SuspendFailed")
        if status.state != StackState.SUSPENDED:
            return self._poll_after(provider)
        if entry.capacity_counts == "running" and record.capacity_held:
            self._give_back_slot(journal)
        lifecycle.mark_suspended(journal)
        return None

    async def _resume(self, journal: Journal, lab: Lab) -> float | None:
        record = journal.record
        entry, provider = self._provider_of(record, lab)
        if record.progress != Progress.RESUMING:
            if record.capacity_held is None and not self._claim_slot(journal, entry):
                return self.admission.join(journal, [entry.name], f"{entry.name} is full")
            await self.bounded(provider.resume(self._handle(record)), provider)
            record.progress = Progress.RESUMING
        status = await self.bounded(provider.status(self._handle(record)), provider)
        if status.state == StackState.ABSENT:
            journal.observe(Observed.NEW, "StackVanished", "the suspended stack no longer exists")
            return 0.0
        if status.state == StackState.FAILED:
            record.progress = Progress.SUSPENDED  # the retry asks the provider again
            raise TransientProviderError(f"resume failed: {status.reason}", reason="ResumeFailed")
        if status.state != StackState.RUNNING:
            return self._poll_after(provider)
        self._record_nodes(record, status)
        if not await self._all_answer_ssh(record, wait_s=self.settings.ssh_connect_timeout_s):
            return self._poll_after(provider)
        await self._stop_rdp_bridges(journal, lab)  # a fresh RDP login on the next open
        record.last_activity_at = max(record.last_activity_at, journal.now)
        self._mark_ready(journal, "Resumed", "")
        self._emit("resumed", self.clock() - journal.now)
        await self._save(journal)  # the learner may connect now; the hook runs while they do
        await self._run_hook(journal, "after_resume", lab.hooks.after_resume)
        return None

    async def bounded(self, call: Awaitable[T], provider: Provider) -> T:
        """A provider call that ends: one that hangs past provider_timeout_s is a transient failure, so
        the pass records it and backs off instead of holding the environment until the lease runs out."""
        limit = self.settings.provider_timeout_s
        try:
            return await asyncio.wait_for(call, limit)
        except TimeoutError as exc:
            raise TransientProviderError(
                f"provider {provider.name} did not answer within {limit:g}s", reason="ProviderTimeout"
            ) from exc

    def _poll_after(self, provider: Provider) -> float:
        """Look again soon, but no sooner than the provider wants to be asked (no tight polling)."""
        return max(self.settings.poll_interval_s, provider.poll_interval_s)

    async def _delete(self, journal: Journal, lab: Lab) -> float | None:
        record = journal.record
        if record.observed == Observed.RUNNING:
            await self._run_hook(journal, "before_delete", lab.hooks.before_delete)
        await self._remove_stack(journal, lab)
        record.sealed_secrets = seal(self.vault, {})
        lifecycle.mark_deleted(journal)
        return None

    async def _remove_stack(self, journal: Journal, lab: Lab) -> None:
        """Delete the stack at its provider (if any) and give back its slot; idempotent."""
        record = journal.record
        if record.provider:
            _, provider = self._provider_of(record, lab)
            await self.bounded(provider.delete(self._handle(record)), provider)
        self._forget_stack(journal)
        await self._save(journal)

    def _forget_stack(self, journal: Journal) -> None:
        """Give back the provider slot and drop what pointed at the stack (saved by the caller)."""
        record = journal.record
        if record.capacity_held:
            self._give_back_slot(journal)
        record.handle = None
        record.nodes = None
        record.provider = None

    def _give_back_slot(self, journal: Journal) -> None:
        """Release the provider slot (in the pass's transaction); the head of its line is woken after."""
        record = journal.record
        if record.capacity_held:
            self.repo.release_slot(journal.session, record.capacity_held)
            self.admission.released(journal, record.capacity_held)
        record.capacity_held = None

    async def mark_vanished(self, env_id: str) -> bool:
        """The provider lost this environment's stack: start over from NEW (the sweep calls this).

        Checked again under the lease, at the provider: a stack listed before it was created, or an
        environment that moved on meanwhile, is left alone."""
        async with self._exclusively(env_id) as journal:
            if journal is None:
                return False
            record = journal.record
            if record.observed not in (Observed.RUNNING, Observed.SUSPENDED) or not record.provider:
                return False
            _, provider = self._provider_of(record, self.labs.get(record.lab_digest))
            status = await self.bounded(provider.status(self._handle(record)), provider)
            if status.state != StackState.ABSENT:
                return False
            self._forget_stack(journal)
            journal.observe(
                Observed.NEW, "StackVanished", "the provider no longer has this stack", Progress.QUEUED
            )
            await self._finish(journal, 0.0)
            return True

    async def remove_leak(self, provider: Provider, name: str, env_id: str) -> bool:
        """Delete a stack no environment owned on this provider when the sweep looked (a leak, or what a
        fail-over left behind); checked again under the lease of the environment its name points at, so
        that a lab launched meanwhile is never removed."""
        try:
            async with self._exclusively(env_id) as journal:
                if journal is None:
                    return False
                record = journal.record
                if record.observed != Observed.DELETED and record.provider == provider.name:
                    return False
                await self.bounded(provider.delete({"name": name}), provider)
                return True
        except NotFound:  # no such environment at all: nobody can take this stack back
            await self.bounded(provider.delete({"name": name}), provider)
            return True

    # failures ---------------------------------------------------------------------------------------
    def _retry_later(self, journal: Journal, exc: Exception) -> float | None:
        """A transient error: keep the state, try the same step again after a backoff."""
        record = journal.record
        reason, message = getattr(exc, "reason", type(exc).__name__), str(exc)
        if record.attempts + 1 >= self.settings.max_attempts:
            lifecycle.count_error(record, reason, message)  # this attempt, then the failure: both count
            return self._fail(journal, reason, message)
        lifecycle.retry_later(journal, reason, message, self._backoff(record.attempts + 1))
        return None

    def _fail(self, journal: Journal, reason: str, message: str) -> float | None:
        attempts = journal.record.attempts + 1
        retry_after = self._backoff(attempts) if attempts < self.settings.max_attempts else None
        lifecycle.fail(journal, reason, message, retry_after)
        self._emit("failed", reason=reason)
        return None

    def _backoff(self, attempts: int) -> float:
        steps = self.settings.retry_backoff_s
        delay = steps[min(attempts, len(steps)) - 1]
        return delay * random.uniform(0.8, 1.2)

    # helpers ----------------------------------------------------------------------------------------
    def _mark_ready(self, journal: Journal, reason: str, message: str) -> None:
        """Out of the line for a provider's room, then ready (envs/lifecycle.py)."""
        self.admission.settle(journal)
        lifecycle.mark_ready(journal, reason, message)

    def _provider_of(self, record: EnvironmentRecord, lab: Lab) -> tuple[ProviderEntry, Provider]:
        name = record.provider
        try:
            entry = lab.provider(name)
        except (KeyError, NotFound) as exc:
            raise TerminalProviderError(f"provider {name!r} is not in lab {lab.id}") from exc
        return entry, self.providers.get(entry)

    @staticmethod
    def _handle(record: EnvironmentRecord) -> Handle:
        return record.handle or {"name": record.stack_name}

    def _request(self, record: EnvironmentRecord, lab: Lab, entry: ProviderEntry) -> StackRequest:
        nodes: tuple[NodeSpec, ...] = ()
        config: dict[str, object] = {}
        if entry.type == "local" and lab.local:
            nodes = tuple(
                NodeSpec(n.name, n.memory_mb, n.pids_max, tuple(n.packages), n.setup, n.desktop)
                for n in lab.local.nodes
            )
        elif lab.openstack:
            config = lab.openstack.model_dump()
        return StackRequest(
            name=record.stack_name,
            login_user=lab.login_user,
            public_key=record.public_key,
            nodes=nodes,
            config={**config, "cloud": entry.cloud},
            lab_dir=self.labs.lab_dir(record.lab_digest),
            course=record.course,
        )

    def _record_nodes(self, record: EnvironmentRecord, status: StackStatus) -> None:
        record.nodes = {node.name: {"host": node.host, "port": node.port} for node in status.nodes}
        record.outputs = dict(status.outputs) or None
        if status.secrets:
            secrets = unseal(self.vault, record.sealed_secrets)
            rotated = secrets.get(ROTATED)  # a template's key no longer opens a handed-over pool stack
            secrets.update({k: v for k, v in status.secrets.items() if not (rotated and k == "private_key")})
            record.sealed_secrets = seal(self.vault, secrets)

    async def _all_answer_ssh(self, record: EnvironmentRecord, wait_s: float = 0.0) -> bool:
        """Every node answers SSH; with wait_s, keep probing that long (resume answers within a second)."""
        deadline = time.monotonic() + wait_s
        while True:
            answers = await asyncio.gather(
                *(probe(node["host"], node["port"], timeout_s=1.0) for node in (record.nodes or {}).values())
            )
            if record.nodes and all(answers):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)

    def targets(self, record: EnvironmentRecord, lab: Lab) -> dict[str, Target]:
        """SSH targets for every node, with the environment's key (decrypted only here)."""
        key = Secret(unseal(self.vault, record.sealed_secrets).get("private_key", ""))
        return {
            name: Target(node["host"], node["port"], lab.login_user, key)
            for name, node in (record.nodes or {}).items()
        }

    async def _keep_while_busy(self, journal: Journal, lab: Lab) -> None:
        """The lab's `keep_running_while` script, run when the policies would pause the lab for idleness:
        exit 0 keeps it running for another idle period (and the away marker's, counted from now); any
        other exit, or no answer, lets the pause go on. Recorded either way."""
        rule, record = lab.keep_running_while, journal.record
        pause = next((e for e in journal.entries if e.kind == "desired" and e.reason in IDLE_REASONS), None)
        if rule is None or pause is None:
            return
        target = self.targets(record, lab).get(rule.node)
        if target is None:
            journal.note("policy", "keep_running", "KeepRunningSkipped", f"node {rule.node} has no address")
            return
        try:
            result = await run_script(target, rule.script, rule.timeout_s)
        except AccessError as exc:
            journal.note("policy", "keep_running", "KeepRunningFailed", str(exc))
            return
        output = (result.stdout + result.stderr).strip()
        if result.exit_status != 0:
            journal.note("policy", "keep_running", "NotKeptRunning", f"exit {result.exit_status}: {output}")
            return
        journal.entries.remove(pause)
        record.desired = Desired.RUNNING
        record.last_activity_at = journal.now
        if record.away_kind is not None:
            record.away_at = journal.now
        journal.note("policy", "keep_running", "KeptRunning", f"{pause.reason} deferred: {output}"[:4000])

    async def _stop_rdp_bridges(self, journal: Journal, lab: Lab) -> None:
        """End the RDP desktops' bridges on their nodes (stacklab.access.rdp); a failure is recorded only."""
        nodes = [n for n, a in lab.access.items() if a.desktop is not None and a.desktop.protocol == "rdp"]
        targets = self.targets(journal.record, lab) if nodes else {}
        for node in nodes:
            if node in targets:
                try:
                    await stop_bridges(targets[node], self.settings.ssh_connect_timeout_s)
                except AccessError as exc:
                    journal.note("desktop", "stop_rdp_bridges", "RdpBridgeStopFailed", f"{node}: {exc}")

    async def _run_hook(self, journal: Journal, name: str, hook: Hook | None) -> None:
        """Run a lifecycle hook; a failing hook is recorded, never fatal."""
        if hook is None:
            return
        lab = self.labs.get(journal.record.lab_digest)
        target = self.targets(journal.record, lab).get(hook.node)
        if target is None:
            journal.note("hook", name, "HookSkipped", f"node {hook.node} has no address")
            return
        try:
            result = await run_script(target, hook.script, hook.timeout_s)
        except AccessError as exc:
            journal.note("hook", name, "HookFailed", str(exc))
            return
        output = (result.stdout + result.stderr).strip()
        if result.exit_status == 0:
            journal.note("hook", name, "HookSucceeded", output)
        else:
            journal.note("hook", name, "HookFailed", f"exit {result.exit_status}: {output}")

    async def _save(self, journal: Journal) -> None:
        """Save the step so far (envs/saving.py); the pass goes on."""
        await self.saves.save(journal)

    async def _blocking(self, call: Callable[[], T]) -> T:
        """Database round trips: on a server database in a thread of a pool as large as the passes run at
        once (the default executor has cpu + 4 threads: 6 here), so that passes overlap and commits
        group; on SQLite inline, where one writer at a time is all there is."""
        if self._database_threads is None:
            return call()
        return await asyncio.get_running_loop().run_in_executor(self._database_threads, call)

    async def _finish(self, journal: Journal, requeue: float | None) -> Result:
        record = journal.record
        if journal.look_again:
            requeue = 0.0
        if requeue is not None:
            lifecycle.wake(journal, requeue)
        elif record.next_attempt_at and record.next_attempt_at > journal.now:
            lifecycle.await_retry(record)
        elif not is_settled(record):  # asked for while the step ran (a suspend during a launch): now
            requeue = 0.0
            lifecycle.wake(journal)
        elif record.pool is None:
            lifecycle.rest_until(record, policy_deadline(record))
        else:
            lifecycle.rest_until(record, pool_deadline(record, self.labs.get(record.lab_digest), journal.now))
            if record.due_at is not None and record.due_at <= journal.now:
                requeue = 0.0  # ready: suspended at once
        record.lease_owner = record.lease_until = None
        await self.saves.save(journal)  # with the passes ending in this moment: one commit
        if self.admission.has_wakes(record.id):
            await self._blocking(partial(self.admission.send_wakes, record.id, journal.now))
        return Result(0.0 if journal.look_again else requeue)
