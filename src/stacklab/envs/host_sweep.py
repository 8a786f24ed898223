"""One local host's sweep (runner = celery, `local_host` set): what the host holds against the database.

The elected scheduler's sweep leaves `local` providers alone once hosts are in use (envs/engine.py): one
host's containers are not every local lab. So each host sweeps itself: a worker of a local host, once its
host is live (its own heartbeat in the members table), lists the stacks of the `local` providers of the
stored labs, which on this host are this host's only (never another host's), and decides for each:

- **delete** it when no environment names it, or its environment is deleted, or the database places its
  environment on another host (failed with HostLost while this host was away, then launched again and
  placed elsewhere);
- **adopt** it back when its environment is still placed here, failed with HostLost and not deleted
  (its learner has not launched it again elsewhere): the host came back with the learner's work, so the
  lab takes the state its stack is in (running or suspended; transition HostReturned) and a pass looks at
  it at once. A stack in any other state (stopped by a reboot, half-made) cannot be taken back as it was:
  it is deleted and the lab stays failed (a launch starts it afresh);
- **keep** it otherwise (a lab this host drives; a lab placed before hosts were used, which names none).

Each decision is made again under the environment's lease (no pass of it runs meanwhile: a lab placed
back here and created again since the list is kept); an adoption is then one row-locked write that holds
only while the lab is still failed so (a learner who deleted it meanwhile wins). A worker sweeps once its
host is live at its start, then every `sweep_interval_s` while it is (a host back from a partition without
a restart is swept within that time); what one sweep skipped (a lease held) the next one does.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from stacklab.envs.controller import Controller
from stacklab.envs.engine import STACK_PREFIX
from stacklab.envs.hosts import LOST, every_host
from stacklab.envs.lifecycle import take_back
from stacklab.envs.transitions import Journal
from stacklab.errors import NotFound, ProviderError, StacklabError
from stacklab.events import HOST_RETURNED
from stacklab.providers.base import Provider, StackState
from stacklab.store import hosts as placed_store
from stacklab.store.repository import Repository
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Desired, Observed, Progress

log = logging.getLogger(__name__)

RETURNED = HOST_RETURNED
TAKEN_BACK = {StackState.RUNNING: Progress.READY, StackState.SUSPENDED: Progress.SUSPENDED}
"""The stack states a returning host's lab is adopted in, with the progress the learner then sees."""


class Verdict(enum.StrEnum):
    KEEP = "keep"
    DELETE = "delete"
    ADOPT = "adopt"


class Held(Protocol):
    """What the verdict reads of an environment (a stored row, or its placement columns)."""

    @property
    def host(self) -> str | None: ...
    @property
    def desired(self) -> str: ...
    @property
    def observed(self) -> str: ...
    @property
    def last_reason(self) -> str | None: ...


def verdict(env: Held | None, me: str) -> Verdict:
    """What host `me` does with a stack of its own that `env` names (None: no environment does)."""
    if env is None or env.observed == Observed.DELETED:
        return Verdict.DELETE
    if env.host is None:
        return Verdict.KEEP  # placed before hosts were used: it runs where it was made
    if env.host != me:
        return Verdict.DELETE
    lost = env.observed == Observed.FAILED and env.last_reason == LOST
    return Verdict.ADOPT if lost and env.desired != Desired.DELETED else Verdict.KEEP


@dataclass
class HostSweepReport:
    deleted: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class HostSweep:
    """The sweep of host `local_host`, run by its workers with their controller (its providers, its
    lease owner)."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.repo = controller.repo
        self.settings = controller.settings
        self.clock = controller.clock
        self.me = controller.settings.local_host

    def live(self) -> bool:
        """Whether this host's workers heartbeat (before that, the scheduler may still fail its labs)."""
        hosts = every_host(self.repo, self.clock(), self.settings.host_lost_after_s)
        return any(host.name == self.me and not host.lost for host in hosts)

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep once the host is live, then every sweep_interval_s, until `stop`."""
        while not stop.is_set():
            wait_s = self.settings.member_heartbeat_s
            try:
                if await asyncio.to_thread(self.live):
                    report = await self.sweep()
                    if report.deleted or report.adopted or report.errors:
                        log.info("host swept", extra={"host": self.me, **vars(report)})
                    wait_s = self.settings.sweep_interval_s
            except Exception:
                log.exception("host sweep failed", extra={"host": self.me})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait_s)

    async def sweep(self) -> HostSweepReport:
        """List this host's stacks, read their environments, and act on each verdict."""
        report = HostSweepReport()
        found: dict[str, Provider] = {}
        for provider in await asyncio.to_thread(self._local_providers, report):
            try:
                names = await self.controller.bounded(provider.list(), provider)
            except ProviderError as exc:
                report.errors.append(f"{provider.name}: {exc}")
                continue
            for name in names:
                if name.startswith(STACK_PREFIX):
                    found.setdefault(name, provider)
        envs = await asyncio.to_thread(placed_store.holding, self.repo, sorted(found))
        for name, provider in sorted(found.items()):
            env = envs.get(name)
            try:
                judged = verdict(env, self.me)
                if judged == Verdict.DELETE and await self._delete(provider, name, env.id if env else None):
                    report.deleted.append(name)
                elif judged == Verdict.ADOPT and env and await self._adopt(provider, name, env.id):
                    report.adopted.append(env.id)
            except (ProviderError, NotFound) as exc:  # NotFound: removed meanwhile, unknown next time
                report.errors.append(f"{provider.name}/{name}: {exc}")
        return report

    def _local_providers(self, report: HostSweepReport) -> list[Provider]:
        """The providers of type `local` the stored labs name (on this host: its own root)."""
        providers: dict[str, Provider] = {}
        for digest in self.repo.lab_digests():
            try:
                for entry in self.controller.labs.get(digest).providers:
                    if entry.type == "local" and entry.name not in providers:
                        providers[entry.name] = self.controller.providers.get(entry)
            except StacklabError as exc:  # a lab that no longer parses, a provider type this host lacks
                report.errors.append(f"lab {digest[:12]}: {exc}")
        return list(providers.values())

    @contextlib.asynccontextmanager
    async def _leased(self, env_id: str) -> AsyncIterator[EnvironmentRecord | None]:
        """Hold the environment's lease (None: a pass holds it; NotFound: no such environment)."""
        owner, repo = self.controller.owner, self.repo
        with repo.new_session() as session:
            now = self.clock()
            record = await asyncio.to_thread(repo.lease, session, env_id, owner, now, self.settings.lease_s)
            try:
                yield record
            finally:
                session.rollback()
                if record is not None:
                    await asyncio.to_thread(repo.release_lease, env_id, owner)

    async def _delete(self, provider: Provider, name: str, env_id: str | None) -> bool:
        """Delete a leftover, its verdict checked again under its environment's lease."""
        try:
            if env_id is not None:
                async with self._leased(env_id) as record:
                    if record is None or verdict(record, self.me) != Verdict.DELETE:
                        return False  # a pass holds it (the next sweep looks again), or it moved on
                    await self.controller.bounded(provider.delete({"name": name}), provider)
                    return True
        except NotFound:  # removed meanwhile: nobody can take this stack back
            pass
        await self.controller.bounded(provider.delete({"name": name}), provider)
        return True

    async def _adopt(self, provider: Provider, name: str, env_id: str) -> bool:
        """Under the lease: take a lab failed with this host back in the state its stack is in; delete a
        stack in no state to be taken back (the lab stays failed)."""
        async with self._leased(env_id) as record:
            if record is None or verdict(record, self.me) != Verdict.ADOPT:
                return False
            handle = record.handle or {"name": name}  # the provider's own handle: a local one names its nodes
            status = await self.controller.bounded(provider.status(handle), provider)
            progress = TAKEN_BACK.get(status.state)
            if progress is None:
                await self.controller.bounded(provider.delete({"name": name}), provider)
                log.info("removed a lost lab's stack that cannot be taken back", extra={"stack": name})
                return False
            state = Observed.RUNNING if status.state == StackState.RUNNING else Observed.SUSPENDED
            message = f"host {self.me} came back with the lab's stack {status.state.value}"
            now, owner = self.clock(), self.controller.owner
            return await asyncio.to_thread(
                adopt, self.repo, env_id, owner, now, Adoption(self.me, state, progress, message)
            )


@dataclass(frozen=True)
class Adoption:
    """A lab taken back: on `host`, in `state`, shown with `progress`, recorded with `message`."""

    host: str
    state: Observed
    progress: Progress
    message: str


def adopt(repo: Repository, env_id: str, owner: str, now: float, adoption: Adoption) -> bool:
    """Set a lab failed with its lost host back to the state of its stack (transition HostReturned,
    published as a `returned` event once committed; due now), in one row-locked write that holds only
    while `owner` holds its lease and it is still failed so (a learner who deleted it meanwhile wins)."""

    query = select(EnvironmentRecord).where(
        EnvironmentRecord.id == env_id,
        EnvironmentRecord.host == adoption.host,
        EnvironmentRecord.observed == Observed.FAILED,
        EnvironmentRecord.last_reason == LOST,
        EnvironmentRecord.desired != Desired.DELETED,
        EnvironmentRecord.lease_owner == owner,
    )

    def write(session: Session) -> bool:
        record = session.scalars(query.with_for_update()).one_or_none()
        if record is None:
            return False
        journal = Journal(record, now, session)
        take_back(journal, adoption.state, adoption.progress, adoption.message)
        record.version += 1
        session.add_all(journal.entries)
        return True

    adopted = repo.write(write)
    if adopted:  # logged once committed: a try that lost a write conflict adopted nothing
        log.info("adopted a lab back", extra={"env_id": env_id, "host": adoption.host})
    return adopted
