"""The shared, timed poll of the openstack provider against the real Heat harness: many launches at once are
all seen ready from one stack list per poll, with no more Heat requests per launch than a launch cost when
each stack had its own GET every poll interval."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from pathlib import Path

import pytest

from stacklab.providers.base import StackRequest, StackState, StackStatus
from stacklab.providers.openstack.provider import OpenStackProvider
from stacklab.providers.openstack.watch import Flight

LAB_DIR = Path(__file__).resolve().parent / "lab"
LAUNCHES = 10
REQUESTS_PER_LAUNCH = 4
"""What one launch cost before the shared poll: a find, the create and two status GETs."""

pytestmark = [
    pytest.mark.openstack,
    pytest.mark.usefixtures("clean_clouds"),
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:openstack"),
]


def quick(name: str) -> StackRequest:
    return StackRequest(
        name=name,
        login_user="learner",
        public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ3 learner@stacklab",
        config={"template": "quick.yaml", "nodes": ["main"]},
        lab_dir=str(LAB_DIR),
    )


def counting(provider: OpenStackProvider) -> Counter[str]:
    """Heat requests of `provider` by kind: list, show (one stack), create, delete, other."""
    seen: Counter[str] = Counter()

    def count(method: str, url: str) -> None:
        if ":8004/" not in url:
            return  # Keystone
        path = url.split("/stacks", 1)[-1] if "/stacks" in url else None
        if path is None:
            seen["other"] += 1
        elif method == "GET":
            seen["list" if path.startswith("?") or path == "" else "show"] += 1
        else:
            seen[{"POST": "create" if path == "" else "action", "DELETE": "delete"}.get(method, method)] += 1

    provider.on_request = count
    return seen


async def until_settled(provider: OpenStackProvider, handle: dict) -> StackStatus:
    """Status calls until the stack is no longer creating (each call may wait for the shared poll)."""
    for _ in range(200):
        status = await provider.status(handle)
        if status.state != StackState.CREATING:
            return status
        await asyncio.sleep(0.5)
    raise AssertionError(f"{handle['name']} still creating")


async def test_concurrent_launches_share_the_polls(clean_clouds: Path) -> None:
    provider = OpenStackProvider("heat", {"cloud": "heatbox"})
    first = await provider.create(quick("sl-first"))  # alone: teaches the template's duration
    assert (await until_settled(provider, first)).state == StackState.RUNNING
    seen = counting(provider)
    handles = await asyncio.gather(*(provider.create(quick(f"sl-many{i}")) for i in range(LAUNCHES)))
    assert {h["template"] for h in handles} == {first["template"]}
    statuses = await asyncio.gather(*(until_settled(provider, h) for h in handles))
    assert [s.state for s in statuses] == [StackState.RUNNING] * LAUNCHES, [s.reason for s in statuses]
    assert {s.nodes[0].host for s in statuses} == {"127.0.0.1"}
    assert sorted(s.outputs["stack_name"] for s in statuses) == sorted(f"sl-many{i}" for i in range(LAUNCHES))
    assert seen["create"] == LAUNCHES and seen["list"] >= 1
    assert seen["show"] <= 2 * LAUNCHES, seen  # the outputs of each, not a GET per stack per poll
    assert sum(seen.values()) <= REQUESTS_PER_LAUNCH * LAUNCHES, seen

    seen.clear()
    await asyncio.gather(*(provider.delete(h) for h in [first, *handles]))
    assert await provider.list() == []
    assert (await provider.status(first)).state == StackState.ABSENT
    assert seen["delete"] == LAUNCHES + 1 and seen["show"] <= 3 * (LAUNCHES + 1), seen


async def test_waiters_wake_when_the_shared_poll_sees_their_stack_finish(clean_clouds: Path) -> None:
    """Many launches of a template never seen finish: whoever waits on one (`changed`, as `drive` does
    between passes) wakes when a poll shows that stack complete; the polls are one list each for all of
    them, the watch fetches each finished stack's outputs as soon as a poll sees it complete (the list has
    none), and the status read afterwards sends no request at all."""
    provider = OpenStackProvider("heat", {"cloud": "heatbox"})
    seen = counting(provider)
    fetched: list[str] = []  # stacks whose outputs the watch asked for on its own
    show = provider.watch.show
    assert show is not None

    async def noted(flight: Flight) -> dict | None:
        fetched.append(flight.name)
        return await show(flight)

    provider.watch.show = noted
    handles = await asyncio.gather(*(provider.create(quick(f"sl-wake{i}")) for i in range(LAUNCHES)))
    woken = await asyncio.gather(*(provider.changed(h, 120.0) for h in handles))
    assert woken == [True] * LAUNCHES
    assert seen["create"] == LAUNCHES and seen["list"] >= 1, seen
    flights = [provider.watch.get(h["id"]) for h in handles]
    rows = await asyncio.gather(*(provider.watch.full_row(f) for f in flights if f is not None))
    assert len(rows) == LAUNCHES and all("outputs" in (r or {}) for r in rows)
    # One request per poll, however many stacks are in flight (a lone one's poll is its show, which
    # brings the outputs), and one outputs GET for every stack a list saw complete.
    assert seen["list"] + seen["show"] == provider.watch.polls + len(fetched), seen
    assert len(set(fetched)) == len(fetched) <= LAUNCHES, fetched

    before = sum(seen.values())
    statuses = [await provider.status(h) for h in handles]
    assert [s.state for s in statuses] == [StackState.RUNNING] * LAUNCHES, [s.reason for s in statuses]
    assert sorted(s.outputs["stack_name"] for s in statuses) == sorted(f"sl-wake{i}" for i in range(LAUNCHES))
    assert sum(seen.values()) == before, seen  # the outputs were there already
    assert sum(seen.values()) <= REQUESTS_PER_LAUNCH * LAUNCHES, seen

    assert (
        await provider.changed(handles[0], 120.0) is False
    )  # told already (and then followed no more): at once
    await asyncio.gather(*(provider.delete(h) for h in handles))
    assert await provider.list() == []


async def test_deletes_have_their_own_concurrency_limit(clean_clouds: Path) -> None:
    """Deletes go out at most `api_deletes` at a time, in threads of their own: a burst of them is not held
    to the few slots of the creates (`api_writes`), and each stack is deleted once."""
    provider = OpenStackProvider("heat", {"cloud": "heatbox", "api_writes": 1, "api_deletes": 3})
    handles = await asyncio.gather(*(provider.create(quick(f"sl-del{i}")) for i in range(6)))
    await asyncio.gather(*(until_settled(provider, h) for h in handles))
    heat = provider.connection().orchestration
    sending, most, lock, threads = 0, 0, threading.Lock(), set()
    delete = heat.delete

    def counted(*args: object, **kwargs: object) -> object:
        nonlocal sending, most
        with lock:
            sending += 1
            most = max(most, sending)
            threads.add(threading.current_thread().name.rsplit("_", 1)[0])
        try:
            return delete(*args, **kwargs)
        finally:
            with lock:
                sending -= 1

    heat.delete = counted
    seen = counting(provider)
    await asyncio.gather(*(provider.delete(h) for h in handles))
    assert seen["delete"] == len(handles), seen
    assert 1 <= most <= 3, most
    assert threads == {"openstack-heat-delete"}  # not the creates' (api_writes) threads
    assert await provider.list() == []
