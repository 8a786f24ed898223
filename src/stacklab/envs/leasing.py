"""Where a pass gets its environment's lease and row: many passes' leases in one statement and commit.

A pass needs the lease before it acts (docs/controller.md), and a commit of its own for it would double
the commits of a step that saves once. So leases are taken for many environments at once: ahead, for the
due batch the embedded engine is about to run (`ahead`), and otherwise together with every pass of this
process that asks in the same moment (`take`: a Celery worker's concurrent passes, the runner's
slots), one `UPDATE ... RETURNING` a round (envs/rounds.py). What a round could not take (held by
another pass, by a dead holder, no such row) is left to the caller's own `Repository.lease`, which knows
those cases.

Before it asks for a lease, a pass that none was taken ahead for reads its row, in rounds too (one
SELECT for the passes of the moment): a row at rest needs no pass (envs/resting.py), so none is run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

from stacklab.envs.rounds import Rounds
from stacklab.store.tables import EnvironmentRecord

T = TypeVar("T")
Blocking = Callable[[Callable[[], T]], Awaitable[T]]


class Leases:
    """The leases this process takes for its passes, in rounds of many environments."""

    def __init__(
        self,
        lease_many: Callable[[list[str]], dict[str, EnvironmentRecord]],
        clock: Callable[[], float],
        blocking: Blocking[dict[str, EnvironmentRecord]],
        unleased: Callable[[list[str]], dict[str, EnvironmentRecord]],
        at_rest: Callable[[EnvironmentRecord, float], bool],
    ) -> None:
        self._lease_many = lease_many
        """Lease those of some environments that are free to this process and load them (one commit)."""
        self.clock = clock
        self._blocking = blocking
        self._unleased = unleased
        """Load those of some environments that no pass holds (one read)."""
        self._at_rest = at_rest
        self._ahead: dict[str, EnvironmentRecord] = {}
        # a lease taken for a pass cancelled meanwhile: the next pass over that environment uses it
        self._rounds: Rounds[str, None, EnvironmentRecord] = Rounds(
            "leases", self._serve, self._ahead.__setitem__
        )
        self._looks: Rounds[str, None, EnvironmentRecord] = Rounds("looks", self._serve_looks)
        self._looking: set[str] = set()

    def ahead(self, env_ids: list[str]) -> None:
        """Lease and load `env_ids` now (those free), for their passes to come."""
        self._ahead.update(self._lease_many(env_ids))

    async def take(self, env_id: str) -> EnvironmentRecord | None:
        """The environment leased to this process and loaded (detached); None when a round could not
        take it (another holder, or no such environment)."""
        record = self._ahead.pop(env_id, None)
        if record is not None and (record.lease_until or 0.0) > self.clock():
            return record
        return await self._rounds.ask(env_id, None)

    async def resting(self, env_id: str) -> bool:
        """True when one read (with the other passes of this moment) finds the environment at rest: its
        pass would change nothing (envs/resting.py). False for a lease taken ahead (it was due), and
        for a row the read cannot judge (the pass decides, and reports what is wrong)."""
        if env_id in self._ahead or env_id in self._looking:  # a second pass at once: the lease decides
            return False
        self._looking.add(env_id)
        try:
            record = await self._looks.ask(env_id, None)
            return record is not None and self._at_rest(record, self.clock())
        except Exception:  # its lab cannot be read, say: the pass finds out and reports it
            return False
        finally:
            self._looking.discard(env_id)

    async def _serve_looks(self, batch: dict[str, None]) -> dict[str, EnvironmentRecord]:
        return await self._blocking(partial(self._unleased, sorted(batch)))

    async def _serve(self, batch: dict[str, None]) -> dict[str, EnvironmentRecord]:
        return await self._blocking(partial(self._lease_many, sorted(batch)))
