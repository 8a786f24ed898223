"""The engine: controller passes over due environments, and sweeps for what no environment owns."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from stacklab.envs.controller import CLOCK_STEP_S, Controller
from stacklab.errors import ProviderError, StacklabError
from stacklab.jobs.runner import JobRunner
from stacklab.providers.base import Provider
from stacklab.store.repository import Repository
from stacklab.types import Observed

log = logging.getLogger(__name__)

STACK_PREFIX = "sl-"


@dataclass
class SweepReport:
    removed: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Engine:
    """Drives the controller: due environments are submitted as jobs to the runner."""

    def __init__(self, repo: Repository, controller: Controller, runner: JobRunner) -> None:
        self.repo = repo
        self.controller = controller
        self.runner = runner
        self._latest = 0.0  # the latest time the clock showed (a step back is caught up with)

    @property
    def clock(self) -> Callable[[], float]:
        return self.controller.clock

    def submit_due(self) -> int:
        """Submit every environment whose deadline has come (one indexed query); passes that run in this
        process get their leases and rows at once (one more statement for the batch).

        After the clock stepped back, the environments saved ahead of the clock whose retry was due by
        the latest time seen plus the longest backoff get a pass too: a retry must not wait the step on
        top of its backoff. (Only this process's memory knows the step: after a restart the retry waits.)
        """
        settings = self.controller.settings
        now, batch = self.clock(), settings.reconcile_batch
        self._latest = max(self._latest, now)
        due = self.repo.due_ids(now, batch)
        if self._latest - now > CLOCK_STEP_S:
            horizon = self._latest + max(settings.retry_backoff_s, default=0.0) * 1.2
            due = list(dict.fromkeys(due + self.repo.due_ids(horizon, batch, saved_after=now)))
        if self.runner.in_process:  # one lease commit for the batch instead of one per pass
            self.controller.lease_ahead(due)
        for env_id in due:
            self.runner.submit(env_id)
        return len(due)

    async def run_pass(self) -> int:
        """One full pass: submit what is due and wait for those jobs."""
        count = self.submit_due()
        await self.runner.idle()
        return count

    async def sweep(self, skip_types: frozenset[str] = frozenset()) -> SweepReport:
        """Delete stacks no environment owns; repair environments whose stack vanished.

        Each provider is listed first and the owners read after, so a stack created meanwhile has its
        owner in the read; each candidate is checked again under its environment's lease before it goes.
        Providers of `skip_types` are left alone (`local` with several hosts: this host's containers are
        not all the labs on provider `local`).
        """
        report = SweepReport()
        for provider in self._every_provider(report):
            if provider.type_name in skip_types:
                continue
            try:
                names = set(await self.controller.bounded(provider.list(), provider))
            except ProviderError as exc:
                report.errors.append(f"{provider.name}: {exc}")
                continue
            owners = self.repo.stack_owners()
            for name in sorted(names):
                if name.startswith(STACK_PREFIX) and owners.get(name, "") not in (None, provider.name):
                    await self._remove_leak(provider, name, report)
            report.repaired += await self._repair_vanished(provider, names, report)
        return report

    def _every_provider(self, report: SweepReport) -> list[Provider]:
        """Every provider a stored lab names, not only those this process has used since it started: a
        leak on a cloud nobody launches on any more is found too."""
        providers = self.controller.providers
        for digest in self.repo.lab_digests():
            try:
                for entry in self.controller.labs.get(digest).providers:
                    providers.get(entry)
            except StacklabError as exc:  # a provider type this host lacks, a lab that no longer parses
                report.errors.append(f"lab {digest[:12]}: {exc}")
        return providers.all()

    async def _remove_leak(self, provider: Provider, name: str, report: SweepReport) -> None:
        try:
            if await self.controller.remove_leak(provider, name, name.removeprefix(STACK_PREFIX)):
                report.removed.append(name)
                log.info("removed leaked stack", extra={"stack": name, "provider": provider.name})
        except ProviderError as exc:
            report.errors.append(f"{provider.name}/{name}: {exc}")

    async def _repair_vanished(self, provider: Provider, present: set[str], report: SweepReport) -> list[str]:
        repaired = []
        for env_id, stack_name in self.repo.settled_on(provider.name, (Observed.RUNNING, Observed.SUSPENDED)):
            if stack_name in present:
                continue
            try:
                if await self.controller.mark_vanished(env_id):
                    repaired.append(env_id)
            except ProviderError as exc:
                report.errors.append(f"{provider.name}/{stack_name}: {exc}")
        return repaired

    async def run_forever(self, stop: asyncio.Event) -> None:
        """The controller loop of the embedded `stacklab serve`: passes every interval, a sweep now and
        then. (With runner = celery the elected scheduler does this instead: jobs/scheduler.py.)"""
        interval = self.controller.settings.reconcile_interval_s
        sweep_every_s = self.controller.settings.sweep_interval_s
        last_sweep = 0.0
        while not stop.is_set():
            try:
                self.submit_due()
                if self.clock() - last_sweep >= sweep_every_s:
                    last_sweep = self.clock()
                    await self.sweep()
            except Exception:
                log.exception("controller pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
        self.runner.cancel_timers()
        await self.runner.idle()
