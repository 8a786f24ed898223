"""Placement of local labs on hosts and the routing of their passes (envs/hosts.py), on SQLite, PostgreSQL
and MariaDB: the hosts are rows of the members table as workers write them, the clock is the test's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.engine import Clock, memory_app, write_lab
from tests.support.memory_provider import MemoryProvider

from stacklab.config import Settings
from stacklab.envs.hosts import LOST, WAIT, Placement, every_host, host_queue
from stacklab.store import members
from stacklab.types import Observed
from stacklab.wiring import App


def announce(app: App, host: str, capacity: int | None, now: float) -> None:
    queue = host_queue(app.settings.job_queue, host)
    members.register(app.repo, f"{host}:1:1", "worker", None, now, host=host, queue=queue, capacity=capacity)


@pytest.fixture
def app(settings: Settings, clock: Clock) -> Iterator[App]:
    built = memory_app(settings, {"a": MemoryProvider("a"), "local": MemoryProvider("local")}, clock)
    yield built
    built.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_placement_routing_and_a_lost_host(
    app: App, clock: Clock, settings: Settings, tmp_path: Path
) -> None:
    placement = Placement(app.repo, app.controller.labs, settings, clock)
    lab = write_lab(tmp_path)
    first = app.environments.launch(lab, "learner-0").id
    assert placement.route([first]) == {}  # no host announced: the default queue, nothing placed
    assert app.repo.get(first).host is None

    announce(app, "host-a", 1, clock.now)
    announce(app, "host-b", 2, clock.now)
    clock.now += 2  # past the members cache
    ids = [first] + [app.environments.launch(lab, f"learner-{n}").id for n in (1, 2, 3)]
    routes = placement.route(ids)
    hosts = [app.repo.get(env_id).host for env_id in ids]
    assert hosts == ["host-b", "host-a", "host-b", None]  # most free first, ties by name; then full
    assert routes[ids[3]] == WAIT
    assert routes[ids[0]] == host_queue(settings.job_queue, "host-b")
    assert placement.route(ids[:1]) == {ids[0]: host_queue(settings.job_queue, "host-b")}  # stays put
    # a lab that held a stack before hosts were announced is left where it runs (the default queue)
    older = app.environments.launch(lab, "learner-older").id
    app.repo.update(older, lambda record, _session: setattr(record, "provider", "a"))
    assert placement.route([older]) == {} and app.repo.get(older).host is None
    # a worker of A does not run B's pass; B's does
    assert placement.elsewhere(ids[0], "host-a") == host_queue(settings.job_queue, "host-b")
    assert placement.elsewhere(ids[0], "host-b") is None
    assert placement.elsewhere(ids[1], "host-a") is None

    # B falls silent: after host_lost_after_s its labs fail with the reason, A's stay as they are
    clock.now += settings.host_lost_after_s / 2
    members.heartbeat(app.repo, "host-a:1:1", clock.now)
    assert placement.fail_lost(clock.now) == {}  # not yet
    clock.now += settings.host_lost_after_s
    members.heartbeat(app.repo, "host-a:1:1", clock.now)
    failed = placement.fail_lost(clock.now)
    assert sorted(failed["host-b"]) == sorted([ids[0], ids[2]])
    for env_id in failed["host-b"]:
        record = app.repo.get(env_id)
        assert (record.observed, record.last_reason, record.due_at) == (Observed.FAILED, LOST, None)
        assert "host host-b was lost" in (record.last_error or "")
    assert app.repo.get(ids[1]).observed == Observed.NEW
    assert placement.fail_lost(clock.now) == {}  # once
    states = {h.name: h.lost for h in every_host(app.repo, clock.now, settings.host_lost_after_s)}
    assert states == {"host-a": False, "host-b": True}

    # a new lab avoids the lost host (A has room again once its lab is gone); a lab failed with its lost
    # host, launched again, is placed afresh on a live host
    announce(app, "host-a", 3, clock.now)
    clock.now += 2
    assert placement.route([ids[3]]) == {ids[3]: host_queue(settings.job_queue, "host-a")}
    app.environments.launch(lab, "learner-0")
    assert placement.route([ids[0]]) == {ids[0]: host_queue(settings.job_queue, "host-a")}
    assert app.repo.get(ids[0]).host == "host-a"
