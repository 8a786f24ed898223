"""What a suspend step costs the database, on SQLite, PostgreSQL and MariaDB: one UPDATE of the environment
and one INSERT of its transition (its save, which also gives the lease back), committed with the saves of
the passes that end in the same moment (envs/saving.py): fewer commits than labs; the leases of passes run
together are taken in one statement for all of them. Counted with SQLAlchemy's events, never timed."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from tests.support.engine import settle, write_lab

from stacklab.types import Desired, Observed
from stacklab.wiring import App

pytestmark = pytest.mark.db

LABS = 4


class Counts:
    def __init__(self) -> None:
        self.verbs: collections.Counter[str] = collections.Counter()
        self.commits = 0

    def statements(self) -> int:
        """Statements other than SQLite's BEGIN IMMEDIATE (the server databases begin implicitly)."""
        return sum(n for verb, n in self.verbs.items() if verb != "BEGIN")


@contextmanager
def counted(app: App) -> Iterator[Counts]:
    counts = Counts()

    def statement(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        counts.verbs[sql.lstrip().split(None, 1)[0].upper()] += 1

    def commit(_conn: Any) -> None:
        counts.commits += 1

    engines = {app.repo.engine, app.repo.reader}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", statement)
        event.listen(engine, "commit", commit)
    try:
        yield counts
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", statement)
            event.remove(engine, "commit", commit)


async def running_labs_asked_to_pause(app: App, tmp_path: Path) -> list[str]:
    lab = write_lab(tmp_path)
    ids = [app.environments.launch(lab, f"learner{n}").id for n in range(LABS)]
    for env_id in ids:
        assert await settle(app, env_id) == Observed.RUNNING
        app.environments.request(env_id, Desired.SUSPENDED, "test")
    return ids


async def paused_with(app: App, tmp_path: Path, passes: Callable[[list[str]], Awaitable[object]]) -> Counts:
    ids = await running_labs_asked_to_pause(app, tmp_path)
    with counted(app) as counts:
        await passes(ids)
    for env_id in ids:
        record = app.repo.get(env_id)
        assert (record.observed, record.lease_owner) == (Observed.SUSPENDED, None)
        assert [t.reason for t in app.repo.history(env_id)][-1] == "Suspended"
    return counts


async def test_the_engines_due_batch_suspends_with_one_commit_per_lab(app: App, tmp_path: Path) -> None:
    counts = await paused_with(app, tmp_path, lambda _ids: app.engine.run_pass())
    # each lab: its save (UPDATE + INSERT, the INSERTs of a round maybe in one statement); the batch: the
    # due query and one lease statement (MariaDB, without UPDATE ... RETURNING: and a SELECT of what it
    # took); commits: the lease's and the rounds' (tests/integration/test_group_commit.py: one round)
    assert 1 <= counts.verbs["INSERT"] <= LABS
    assert counts.statements() <= 2 * LABS + 3, counts.verbs
    assert 2 <= counts.commits <= LABS, counts.verbs


async def test_passes_started_together_share_one_lease_commit(app: App, tmp_path: Path) -> None:
    async def together(ids: list[str]) -> None:
        await asyncio.gather(*(app.controller.reconcile(env_id) for env_id in ids))

    counts = await paused_with(app, tmp_path, together)
    assert counts.statements() <= 2 * LABS + 2, counts.verbs
    assert 2 <= counts.commits <= LABS, counts.verbs
