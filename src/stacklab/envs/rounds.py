"""Rounds: what the concurrent passes of this process ask of the database in the same moment, served
together, one database round trip (and one commit) a round instead of one each.

A pass asks (`Rounds.ask`) and waits. The first to ask starts a round task that lets the event loop turn
once (the passes started in that turn join), hands everything waiting to `serve` in one call, and goes
on with what was asked meanwhile, round after round, until nothing waits. Passes overlap their database
work in threads (`Controller._blocking`), so while one round is under way the next one fills: the more
passes end at once, the larger the rounds. Leases are taken so (envs/leasing.py), and the passes' last
saves are written so (envs/saving.py).

`serve` answers each key with a result, or with the exception that key's asker raises; a key it leaves
out gets None: the round could not serve it, the asker does it on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
R = TypeVar("R")


class Rounds(Generic[K, V, R]):
    """Requests (key -> value) of concurrent passes, served many at a time by `serve`."""

    def __init__(
        self,
        name: str,
        serve: Callable[[dict[K, V]], Awaitable[Mapping[K, R | BaseException]]],
        unclaimed: Callable[[K, R], None] | None = None,
    ) -> None:
        self.name = name
        self._serve = serve
        self._unclaimed = unclaimed
        """Given a result whose asker was cancelled meanwhile (None: it is dropped)."""
        self._waiting: dict[K, tuple[V, asyncio.Future[R | None]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def ask(self, key: K, value: V) -> R | None:
        """`value` served with the other requests of this moment: the result for `key`, None when the
        round left it to the asker; raises what `serve` answered for it. One request per key at a time."""
        if key in self._waiting:
            raise RuntimeError(f"{self.name}: {key!r} is asked for twice in one round")
        future: asyncio.Future[R | None] = asyncio.get_running_loop().create_future()
        self._waiting[key] = (value, future)
        if self._task is None:
            self._task = asyncio.create_task(self._rounds(), name=self.name)
        return await future

    async def _rounds(self) -> None:
        batch: dict[K, tuple[V, asyncio.Future[R | None]]] = {}
        try:
            await asyncio.sleep(0)  # the passes started in this turn of the loop join the first round
            while self._waiting:
                batch, self._waiting = self._waiting, {}
                try:
                    results = await self._serve({key: value for key, (value, _) in batch.items()})
                except Exception as exc:  # the round as a whole failed: so does every request in it
                    results = dict.fromkeys(batch, exc)
                for key, (_, future) in batch.items():
                    self._settle(key, future, results.get(key))
                batch = {}
        finally:  # cancelled (the loop stops): no pass waits for a round that will not come
            for _, future in (*batch.values(), *self._waiting.values()):
                future.cancel()
            self._waiting = {}
            self._task = None

    def _settle(self, key: K, future: asyncio.Future[R | None], result: R | BaseException | None) -> None:
        if not future.done():
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        elif result is not None and not isinstance(result, BaseException) and self._unclaimed is not None:
            self._unclaimed(key, result)  # its asker was cancelled meanwhile
