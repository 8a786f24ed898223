"""Rounds (envs/rounds.py): requests of one moment served in one call, each with its own outcome."""

from __future__ import annotations

import asyncio

import pytest

from stacklab.envs.rounds import Rounds


class Server:
    def __init__(self) -> None:
        self.rounds: list[list[str]] = []

    async def serve(self, batch: dict[str, int]) -> dict[str, int | BaseException]:
        self.rounds.append(sorted(batch))
        await asyncio.sleep(0.01)  # asks made meanwhile go in the next round
        answers: dict[str, int | BaseException] = {}
        for key, value in batch.items():
            if key.startswith("bad"):
                answers[key] = ValueError(key)
            elif not key.startswith("left"):
                answers[key] = value * 2
        return answers


async def test_asks_of_one_moment_share_a_round_and_keep_their_outcomes() -> None:
    server = Server()
    rounds: Rounds[str, int, int] = Rounds("test", server.serve)
    results = await asyncio.gather(
        rounds.ask("a", 1), rounds.ask("bad", 2), rounds.ask("left", 3), return_exceptions=True
    )
    assert server.rounds == [["a", "bad", "left"]]
    assert results[0] == 2 and isinstance(results[1], ValueError) and results[2] is None


async def test_asks_made_during_a_round_go_in_the_next() -> None:
    server = Server()
    rounds: Rounds[str, int, int] = Rounds("test", server.serve)
    first = asyncio.ensure_future(rounds.ask("a", 1))
    await asyncio.sleep(0.001)
    assert await asyncio.gather(first, rounds.ask("b", 2), rounds.ask("c", 3)) == [2, 4, 6]
    assert server.rounds == [["a"], ["b", "c"]]


async def test_a_failed_round_fails_each_of_its_asks() -> None:
    async def broken(_batch: dict[str, int]) -> dict[str, int | BaseException]:
        raise RuntimeError("down")

    rounds: Rounds[str, int, int] = Rounds("test", broken)
    results = await asyncio.gather(rounds.ask("a", 1), rounds.ask("b", 2), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    with pytest.raises(RuntimeError):
        await rounds.ask("c", 3)  # and the next ask starts a round of its own


async def test_a_result_whose_asker_was_cancelled_is_handed_on() -> None:
    server, unclaimed = Server(), {}
    rounds: Rounds[str, int, int] = Rounds("test", server.serve, unclaimed.__setitem__)
    asker = asyncio.ensure_future(rounds.ask("a", 1))
    await asyncio.sleep(0.001)
    asker.cancel()
    assert await rounds.ask("b", 2) == 4
    assert unclaimed == {"a": 2}
