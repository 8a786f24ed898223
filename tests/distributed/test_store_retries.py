"""Every write transaction of the store gets through the write conflicts a server database reports under
concurrency (issue 13: on MariaDB/Galera every transaction is retried on deadlock or certification
failure). Each test drives one concurrent path of real processes hard, from many threads at once, on the
real PostgreSQL and MariaDB; on MariaDB these paths deadlocked (error 1213) before their transactions
were retried, and the caller got the error (a web process that did not start, a heartbeat that failed)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from argon2 import PasswordHasher
from sqlalchemy import delete, select
from tests.distributed import test_store_conflicts

from stacklab.errors import Conflict
from stacklab.store import members, operators, terminal_sessions
from stacklab.store.repository import Repository
from stacklab.store.tables import MemberRecord, OperatorRecord, TerminalSessionRecord

THREADS = 12
ROUNDS = 20

repo = test_store_conflicts.repo
"""The fixture: a fresh database on each server, PostgreSQL and MariaDB."""


@pytest.fixture(autouse=True)
def quick_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id at its cheapest: the threads then meet in the database, not in the hash (under test here
    is the transaction, not the hash's cost)."""
    monkeypatch.setattr(operators, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


def _at_once(calls: list[Callable[[], object]]) -> list[object]:
    """Run `calls` each in a thread of its own, released together; their results (errors raised)."""
    start = threading.Barrier(len(calls), timeout=30)

    def run(call: Callable[[], object]) -> object:
        start.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return [future.result() for future in [pool.submit(run, call) for call in calls]]


def test_web_processes_starting_at_once_each_get_the_admin_account(repo: Repository) -> None:
    """Web processes of an older install start at once (a rolling deploy, a host reboot): each makes
    sure the `admin` account exists. On MariaDB each one's locking read of the missing row took a gap
    lock and their inserts into that gap deadlocked: a web process failed to start."""
    for _ in range(ROUNDS):
        with repo.session() as session:
            session.execute(delete(OperatorRecord))
        now = time.time()
        _at_once([lambda now=now: operators.sync_setting_account(repo, "setting-password", now)] * THREADS)
        with repo.read() as session:
            accounts = list(session.scalars(select(OperatorRecord)))
        assert [(a.name, a.from_setting) for a in accounts] == [("admin", True)]
        assert operators.sign_in(repo, "admin", "setting-password") is not None


def test_operators_added_at_once_are_each_added(repo: Repository) -> None:
    """Several operators added at once (an onboarding script, two admins at the same moment): each
    account is created, none fails with a deadlock, and adding one again is a Conflict."""
    for round_ in range(ROUNDS):
        names = [f"op{round_}-{n}" for n in range(THREADS)]
        now = time.time()
        added = _at_once(
            [
                lambda name=name, now=now: operators.add_operator(repo, name, "password-1", now)
                for name in names
            ]
        )
        assert sorted(a.name for a in added) == sorted(names)  # type: ignore[attr-defined]
    with pytest.raises(Conflict):
        operators.add_operator(repo, "op0-0", "password-2", time.time())


def test_members_heartbeat_prune_and_hold_sessions_at_once(repo: Repository) -> None:
    """A deployment's processes at work: each registers, heartbeats, holds and releases terminal
    sessions, prunes the silent and leaves, all at once. None of these calls fails."""
    old = time.time() - 3600
    with repo.session() as session:  # members that died long ago, pruned on the way
        session.add_all(
            [
                MemberRecord(id=f"dead-{n}", role="web", heartbeat_at=old, started_at=old, load=0)
                for n in range(40)
            ]
        )

    def process(n: int) -> None:
        me = f"web-{n}"
        rng = random.Random(n)
        for step in range(15):
            now = time.time()
            members.register(repo, me, "web", f"10.0.0.{n}:8000", now)
            members.heartbeat(repo, me, now, load=step)
            session_id = f"s-{n}-{step}"
            assert terminal_sessions.hold(repo, session_id, "env", "node", "learner", me, now)
            gone = members.prune(repo, "web", now, older_s=60.0)
            terminal_sessions.forget_members(repo, gone)
            terminal_sessions.release(repo, session_id, me)
            if rng.random() < 0.3:
                members.leave(repo, me)

    _at_once([lambda n=n: process(n) for n in range(THREADS)])
    with repo.read() as session:
        ids = set(session.scalars(select(MemberRecord.id)))
        held = list(session.scalars(select(TerminalSessionRecord.session_id)))
    assert not any(member.startswith("dead-") for member in ids)
    assert held == []
