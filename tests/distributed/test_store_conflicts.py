"""Write conflicts on the real server databases: a true deadlock between two transactions is reported,
recognised and retried, and both transactions get through (the Galera rule: retry every transaction)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select, update
from tests.distributed.conftest import store

from stacklab.store.conflicts import retried
from stacklab.store.database import make_engine, migrate
from stacklab.store.repository import Repository
from stacklab.store.revocations import remember_jti
from stacklab.store.tables import LeaseRecord, LmsTokenIdRecord

CALLS = 400


@pytest.fixture(params=["postgresql", "mariadb"])
def repo(request: pytest.FixtureRequest) -> Iterator[Repository]:
    for url in store(request.param):
        engine = make_engine(url)
        try:
            migrate(engine)
            yield Repository(engine)
        finally:
            engine.dispose()


def test_a_deadlock_is_retried_and_both_transactions_get_through(repo: Repository) -> None:
    with repo.session() as session:
        session.add_all([LeaseRecord(name=n, owner="-", expires_at=0.0, version=0) for n in "ab"])
    both_hold_one = threading.Barrier(2, timeout=10)
    tries: Counter[str] = Counter()

    def bump(first: str, second: str) -> None:
        def transaction() -> None:
            tries[first] += 1
            with repo.session() as session:
                for name in (first, second):
                    session.execute(
                        update(LeaseRecord)
                        .where(LeaseRecord.name == name)
                        .values(version=LeaseRecord.version + 1)
                    )
                    if name == first and tries[first] == 1:
                        both_hold_one.wait()  # each holds one row and wants the other's

        retried(transaction)

    threads = [threading.Thread(target=bump, args=pair) for pair in (("a", "b"), ("b", "a"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    with repo.read() as session:
        versions = dict(session.execute(select(LeaseRecord.name, LeaseRecord.version)).all())
    assert versions == {"a": 2, "b": 2}  # both transactions committed, each exactly once
    assert sorted(tries.values()) == [1, 2]  # the database chose one victim; it was retried


def test_lms_calls_at_once_are_each_remembered_once_and_a_replay_is_refused(repo: Repository) -> None:
    """Many LMS calls at once (a class launching through several web processes): each call's JWT id is
    recorded, none fails, and a second use of one is a replay. Expired ids are purged on the way; on
    MariaDB the purge and the inserts of concurrent calls deadlocked, and the LMS got a 500 (found by
    tests/distributed/test_web_tier.py)."""
    now = time.time()
    with repo.session() as session:  # calls of a few minutes ago, expired: purged as new ones arrive
        session.add_all(
            [LmsTokenIdRecord(issuer="edx", jti=f"old-{n}", expires_at=now - 60 + n) for n in range(40)]
        )
    calls = [f"call-{n}" for n in range(CALLS)]
    with ThreadPoolExecutor(16) as pool:
        fresh = list(pool.map(lambda jti: remember_jti(repo, "edx", jti, now + 60, time.time()), calls))
    assert fresh == [True] * CALLS
    assert remember_jti(repo, "edx", calls[0], now + 60, time.time()) is False  # a replay
    with repo.read() as session:
        kept = set(session.scalars(select(LmsTokenIdRecord.jti)))
    assert set(calls) <= kept and not any(jti.startswith("old-") for jti in kept)
