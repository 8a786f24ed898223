"""Members and terminal-session records on each real database (SQLite, PostgreSQL, MariaDB): what the
relay relies on to find the process holding a shell, and to stop counting on a dead one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stacklab.store import members, terminal_sessions
from stacklab.store.database import make_engine, migrate
from stacklab.store.repository import Repository

TTL_S = 10.0


@pytest.fixture
def repo(database_url: str) -> Iterator[Repository]:
    engine = make_engine(database_url)
    migrate(engine)
    yield Repository(engine)
    engine.dispose()


def test_a_session_is_found_on_its_live_holder_and_not_on_a_silent_one(repo: Repository) -> None:
    members.register(repo, "web-a", "web", "http://10.0.0.1:8080", now=100.0)
    members.register(repo, "web-b", "web", "http://10.0.0.2:8080", now=100.0)
    members.register(repo, "worker-1", "worker", None, now=100.0)
    assert terminal_sessions.hold(repo, "s1", "env1", "main", "learner:ann", "web-a", now=101.0)

    found = terminal_sessions.holder(repo, "s1", "env1", "main", "learner:ann", now=105.0, ttl_s=TTL_S)
    assert found == terminal_sessions.Holder("web-a", "http://10.0.0.1:8080")
    assert terminal_sessions.holder(repo, "s1", "env1", "main", "learner:bob", 105.0, TTL_S) is None
    assert sorted(m.id for m in members.live(repo, "web", 105.0, TTL_S)) == ["web-a", "web-b"]

    assert members.heartbeat(repo, "web-b", now=112.0)
    assert (
        terminal_sessions.holder(repo, "s1", "env1", "main", "learner:ann", 112.0, TTL_S) is None
    )  # web-a silent
    assert [m.id for m in members.live(repo, "web", 112.0, TTL_S)] == ["web-b"]
    assert members.find_live(repo, "web-a", 112.0, TTL_S) is None

    assert terminal_sessions.hold(repo, "s1", "env1", "main", "learner:ann", "web-b", now=113.0)  # taken over
    assert (
        terminal_sessions.holder(repo, "s1", "env1", "main", "learner:ann", 113.0, TTL_S).member_id == "web-b"
    )  # type: ignore[union-attr]
    terminal_sessions.release(repo, "s1", "web-a")  # the old holder's late close does not erase it
    assert terminal_sessions.holder(repo, "s1", "env1", "main", "learner:ann", 113.0, TTL_S) is not None


def test_a_session_id_of_another_learner_is_never_taken_over(repo: Repository) -> None:
    members.register(repo, "web-a", "web", "http://10.0.0.1:8080", now=100.0)
    assert terminal_sessions.hold(repo, "s1", "env1", "main", "learner:ann", "web-a", 100.0)
    assert not terminal_sessions.hold(repo, "s1", "env2", "main", "learner:bob", "web-a", 101.0)
    assert terminal_sessions.holder(repo, "s1", "env1", "main", "learner:ann", 101.0, TTL_S) is not None


def test_watchers_go_to_the_newest_live_shell_of_the_node(repo: Repository) -> None:
    members.register(repo, "web-a", "web", "http://a", now=100.0)
    members.register(repo, "web-b", "web", "http://b", now=100.0)
    terminal_sessions.hold(repo, "s1", "env1", "main", "learner:ann", "web-a", 100.0)
    terminal_sessions.hold(repo, "s2", "env1", "main", "learner:ann", "web-b", 102.0)
    terminal_sessions.hold(repo, "s3", "env1", "other", "learner:ann", "web-a", 103.0)
    assert terminal_sessions.watched(repo, "env1", "main", 104.0, TTL_S).member_id == "web-b"  # type: ignore[union-attr]
    terminal_sessions.release(repo, "s2", "web-b")
    assert terminal_sessions.watched(repo, "env1", "main", 104.0, TTL_S).member_id == "web-a"  # type: ignore[union-attr]
    assert terminal_sessions.watched(repo, "env9", "main", 104.0, TTL_S) is None


def test_a_member_that_left_or_died_long_ago_is_gone_with_its_sessions(repo: Repository) -> None:
    members.register(repo, "web-a", "web", "http://a", now=100.0)
    members.register(repo, "web-b", "web", "http://b", now=100.0)
    members.register(repo, "worker-1", "worker", None, now=100.0)
    terminal_sessions.hold(repo, "s1", "env1", "main", "learner:ann", "web-a", 100.0)
    members.heartbeat(repo, "web-b", now=300.0)

    gone = members.prune(repo, "web", now=300.0, older_s=100.0)
    terminal_sessions.forget_members(repo, gone)
    assert gone == ["web-a"]  # the worker of the same age is another role's business
    assert members.live(repo, "worker", 100.0, TTL_S)
    assert not members.heartbeat(repo, "web-a", now=301.0)  # its row is gone: it registers again
    members.register(repo, "web-a", "web", "http://a", now=301.0)
    assert terminal_sessions.holder(repo, "s1", "env1", "main", "learner:ann", 301.0, TTL_S) is None

    members.leave(repo, "web-b")
    assert [m.id for m in members.live(repo, "web", 301.0, TTL_S)] == ["web-a"]
