"""Readiness (`/readyz`): can this process serve requests, that is, does its database answer?

Liveness (`/healthz`) says the process runs; readiness says it is of use, so that a load balancer or an
orchestrator sends learners elsewhere while the database is down instead of letting every page fail. The
check reads the schema's version table (a real query on the real schema, not `SELECT 1`, which some servers
answer even when the database is gone), in a thread and within READY_TIMEOUT_S, so a database that hangs
gives a prompt 503 and never blocks the event loop.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from stacklab.store.repository import Repository
from stacklab.web.context import context

READY_TIMEOUT_S = 5.0
MAX_REASON_CHARS = 300

router = APIRouter(include_in_schema=False)


def database_problem(repo: Repository) -> str | None:
    """What keeps the database from answering, in one line (no URL, no password), or None."""
    try:
        with repo.reader.connect() as connection:
            version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError as exc:
        lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        cause = lines[0] if lines else type(exc).__name__
        return f"the database does not answer: {cause[:MAX_REASON_CHARS]}"
    if version is None:
        return "the database has no schema: run `stacklab migrate` or start the service once"
    return None


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """200 when the database answers; 503 with the reason when it does not (or not within the timeout)."""
    repo = context(request).stack.repo
    try:
        problem = await asyncio.wait_for(asyncio.to_thread(database_problem, repo), READY_TIMEOUT_S)
    except TimeoutError:
        problem = f"the database did not answer within {READY_TIMEOUT_S:g} s"
    if problem:
        return JSONResponse({"status": "unavailable", "reason": problem}, status_code=503)
    return JSONResponse({"status": "ready"})
