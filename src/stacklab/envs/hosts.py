"""Local labs on many hosts (runner = celery): placement by free capacity, a queue per host, lost hosts.

An operator with several Linux servers and no OpenStack runs `stacklab worker` on each with `local_host`
set (and `local_capacity`). Each such worker announces its host, the host's queue and capacity in the
members table and heartbeats; it consumes the shared job queue and its host's own queue.

- **Placement.** An environment of a lab with a `local` provider that holds no stack yet (or failed) is
  placed on a host the first time its pass is sent (`environments.host`, compare-and-set): the live host
  with the most free places (capacity minus the labs it holds), ties by name. When no live host has room
  it is not sent; it stays due in the database and is tried again when the scheduler sends it next
  (`redeliver_after_s`).
- **Routing.** Every pass of a placed environment goes to its host's queue (`<job_queue>.host.<host>`), so
  only that host's workers drive it; a worker that still receives one (a message sent before placement)
  forwards it instead of running it. Labs without a local provider are not placed and run anywhere.
- **Lost hosts.** A host none of whose workers heartbeat for `host_lost_after_s` is lost: the elected
  scheduler fails its labs with reason HostLost and a sentence naming the host; placement skips it. A lab
  failed so is placed afresh (on a live host) when its learner launches it again; when the lost host
  comes back, its own sweep deletes such leftovers and takes back the labs nobody launched again
  (envs/host_sweep.py).

Without any worker announcing a host, none of this costs more than one small query a second.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from stacklab.config import Settings
from stacklab.envs.labcache import LabCache
from stacklab.envs.lifecycle import lose_with_host
from stacklab.envs.transitions import Journal
from stacklab.errors import StacklabError
from stacklab.events import HOST_LOST
from stacklab.store import hosts as placed_store
from stacklab.store import members
from stacklab.store.repository import Repository
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Desired, Observed

log = logging.getLogger(__name__)

WAIT = ""
"""A route meaning: send nothing now (no live host has room; the database keeps it due)."""
LOST = HOST_LOST
CACHE_S = 1.0
"""How long one read of the members table serves routing."""


def host_queue(job_queue: str, host: str) -> str:
    """The queue of one local host's workers."""
    return f"{job_queue}.host.{host}"


@dataclass(frozen=True)
class Host:
    """One local host as its workers report it, with the labs the database places on it."""

    name: str
    capacity: int | None
    labs: int
    workers: int
    heartbeat_at: float
    lost: bool

    @property
    def free(self) -> float:
        return math.inf if self.capacity is None else self.capacity - self.labs


def every_host(repo: Repository, now: float, lost_after_s: float) -> list[Host]:
    """Every host a worker announced or an environment names, live or lost, by name."""
    rows = [m for m in members.every(repo) if m.host]
    labs = placed_store.labs_on(repo)
    hosts = []
    for name in sorted({m.host for m in rows if m.host} | set(labs)):
        mine = [m for m in rows if m.host == name]
        heard = max((m.heartbeat_at for m in mine), default=0.0)
        live = [m for m in mine if m.heartbeat_at >= now - lost_after_s]
        capacities = [m.capacity for m in (live or mine)]
        capacity = (
            None if not capacities or None in capacities else max(c for c in capacities if c is not None)
        )
        hosts.append(Host(name, capacity, labs.get(name, 0), len(live), heard, not live))
    return hosts


class Placement:
    """Routes passes to their host's queue, placing new local labs on the host with the most room."""

    def __init__(
        self, repo: Repository, labs: LabCache, settings: Settings, clock: Callable[[], float] = time.time
    ) -> None:
        self.repo = repo
        self.labs = labs
        self.settings = settings
        self.clock = clock
        self._read_at = -math.inf
        self._known = False
        self._hosts: dict[str, Host] = {}

    def queue_of(self, host: str) -> str:
        return host_queue(self.settings.job_queue, host)

    def _live(self, now: float) -> dict[str, Host] | None:
        """Live hosts by name (read at most every CACHE_S); None while no worker ever announced one."""
        if now - self._read_at >= CACHE_S:
            self._known = self._known or placed_store.any_host(self.repo)
            if self._known:
                found = every_host(self.repo, now, self.settings.host_lost_after_s)
                self._hosts = {h.name: h for h in found if not h.lost}
            self._read_at = now
        return self._hosts if self._known else None

    def in_use(self) -> bool:
        """Whether any worker ever announced a local host."""
        return self._live(self.clock()) is not None

    def _local(self, digest: str) -> bool:
        try:
            return any(entry.type == "local" for entry in self.labs.get(digest).providers)
        except StacklabError:
            return False

    def route(self, ids: list[str]) -> dict[str, str]:
        """Environment id -> queue (a host's; WAIT: not now) for the ids that belong to a host; the others
        go to the default queue."""
        live = self._live(self.clock())
        if live is None or not ids:
            return {}
        routes: dict[str, str] = {}
        labs: Counter[str] | None = None  # read once a batch, when something is to be placed
        order = {env_id: n for n, env_id in enumerate(ids)}  # placed in the order sent (oldest due first)
        for row in sorted(placed_store.placed(self.repo, ids), key=lambda r: order[r.id]):
            failed = row.observed == Observed.FAILED
            if row.host and (row.host in live or (row.provider and not failed)):
                routes[row.id] = self.queue_of(row.host)  # its host, or its stack waits there for it
            elif (
                row.desired != Desired.DELETED
                and (row.provider is None or failed)  # a stack from before hosts: left where it runs
                and self._local(row.lab_digest)
            ):
                if labs is None:
                    labs = Counter(placed_store.labs_on(self.repo, list(live)))
                routes[row.id] = self._place(row.id, row.host, live, labs)
        return routes

    def _place(self, env_id: str, was: str | None, live: dict[str, Host], labs: Counter[str]) -> str:
        """The live host with the most free places (capacity minus the labs the database places on it
        now), ties by name; WAIT when none has room."""

        def free(host: Host) -> float:
            return math.inf if host.capacity is None else host.capacity - labs[host.name]

        room = sorted(live.values(), key=lambda h: (-free(h), h.name))
        if not room or free(room[0]) <= 0:
            return WAIT
        host = room[0].name
        if placed_store.place(self.repo, env_id, host, was):
            labs[host] += 1
            log.info("placed on host", extra={"env_id": env_id, "host": host})
            return self.queue_of(host)
        again = placed_store.placed(self.repo, [env_id])  # placed meanwhile by another process
        return self.queue_of(again[0].host) if again and again[0].host else WAIT

    def elsewhere(self, env_id: str, my_host: str) -> str | None:
        """For a worker: None when it should run this pass itself; else the queue it belongs to (WAIT:
        nowhere now)."""
        queue = self.route([env_id]).get(env_id)
        if queue is None or (my_host and queue == self.queue_of(my_host)):
            return None
        return queue

    def fail_lost(self, now: float) -> dict[str, list[str]]:
        """Fail the labs of every lost host (the elected scheduler calls this); host -> failed ids."""
        if not placed_store.any_host(self.repo):
            return {}
        failed = {}
        for host in every_host(self.repo, now, self.settings.host_lost_after_s):
            if host.lost and host.labs:
                silent = f"for {now - host.heartbeat_at:.0f}s" if host.heartbeat_at else "since placement"
                message = (
                    f"host {host.name} was lost: no worker of it has been heard from {silent} "
                    f"(host_lost_after_s = {self.settings.host_lost_after_s:g}); launch the lab again to "
                    "start it afresh on another host"
                )
                ids = fail_host(self.repo, host.name, now, message)
                if ids:
                    log.warning("host lost: its labs failed", extra={"host": host.name, "count": len(ids)})
                    failed[host.name] = ids
        return failed


def fail_host(repo: Repository, host: str, now: float, message: str) -> list[str]:
    """Fail every environment of `host` not failed or deleted yet, each with its transition (reason
    HostLost, published as a `failed` event once committed: store/transition_events.py); nothing of
    other hosts is touched. No pass looks at them (due_at cleared) until a learner launches again.
    Returns their ids."""

    query = select(EnvironmentRecord).where(
        EnvironmentRecord.host == host,
        EnvironmentRecord.observed.not_in((Observed.FAILED, Observed.DELETED)),
    )

    def write(session: Session) -> list[str]:
        failed = []
        for record in session.scalars(query.with_for_update()):
            journal = Journal(record, now, session)
            lose_with_host(journal, message)
            record.version += 1
            session.add_all(journal.entries)
            failed.append(record.id)
        return failed

    return repo.write(write)
