"""The deployment as operators see it: the processes in the members table (web processes, workers,
schedulers) with their last heartbeat and load, and the local hosts with their capacity, labs and state.

Read from the shared database, so any web process answers for the whole deployment. A member is live while
its heartbeat is younger than `member_ttl_s`; a local host is lost when none of its workers heartbeat for
`host_lost_after_s` (envs/hosts.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from stacklab.envs.hosts import every_host
from stacklab.store import members
from stacklab.store.leases import holder
from stacklab.web.context import context
from stacklab.web.lms import require_admin

router = APIRouter(prefix="/api/v1")


class MemberView(BaseModel):
    id: str = Field(description="host:pid:start time of the process")
    kind: str = Field(description="web, worker or scheduler")
    host: str | None = Field(description="The local host a worker serves (None: none of its own)")
    queue: str | None = Field(description="That host's queue")
    address: str | None = Field(description="Where peers reach a web process")
    started_at: float
    heartbeat_at: float
    live: bool = Field(description="Heartbeat within member_ttl_s")
    jobs_running: int = Field(description="Passes running at its last heartbeat (workers)")
    capacity: int | None = Field(description="Its host's capacity (workers of a local host)")
    scheduler: bool = Field(description="It holds the scheduler's lease (runner = celery)")


class HostView(BaseModel):
    name: str
    capacity: int | None = Field(description="Most local labs at once; None: unlimited")
    labs: int = Field(description="Labs placed on it now (not deleted)")
    workers: int = Field(description="Live workers of the host")
    heartbeat_at: float = Field(description="Last heartbeat of any of its workers")
    state: Literal["live", "lost"]


class Deployment(BaseModel):
    now: float
    runner: str
    members: list[MemberView]
    hosts: list[HostView]


@router.get("/admin/members", tags=["admin"])
async def admin_members(request: Request, _admin: Annotated[str, Depends(require_admin)]) -> Deployment:
    """Live workers, schedulers and web processes with their load, and the local hosts with theirs."""
    ctx = context(request)
    repo, settings, now = ctx.stack.repo, ctx.stack.settings, time.time()
    rows = await asyncio.to_thread(members.every, repo)
    hosts = await asyncio.to_thread(every_host, repo, now, settings.host_lost_after_s)
    leader = await asyncio.to_thread(holder, repo, "scheduler", now)
    return Deployment(
        now=now,
        runner=settings.runner,
        members=[
            MemberView(
                id=m.id,
                kind=m.role,
                host=m.host,
                queue=m.queue,
                address=m.address,
                started_at=m.started_at,
                heartbeat_at=m.heartbeat_at,
                live=m.heartbeat_at >= now - settings.member_ttl_s,
                jobs_running=m.load,
                capacity=m.capacity,
                scheduler=m.id == leader,
            )
            for m in rows
        ],
        hosts=[
            HostView(
                name=h.name,
                capacity=h.capacity,
                labs=h.labs,
                workers=h.workers,
                heartbeat_at=h.heartbeat_at,
                state="lost" if h.lost else "live",
            )
            for h in hosts
        ],
    )
