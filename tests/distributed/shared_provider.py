"""A provider whose stacks live in a SQLite file, so that worker processes share one "cloud" and the
test counts what each of them did (creates per stack name, deletes) after killing some of them.

Used where the real provider cannot tell apart two creates of one stack (LXC would fail the second one
loudly only sometimes) and where fifty labs must boot in seconds. Its nodes answer SSH at a banner
server the test runs (`ssh` setting: host, port).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path
from typing import Any

from stacklab.errors import TerminalProviderError
from stacklab.providers.base import Handle, NodeAddress, Provider, StackRequest, StackState, StackStatus

SCHEMA = """
CREATE TABLE IF NOT EXISTS stacks (name TEXT PRIMARY KEY, provider TEXT, state TEXT, nodes TEXT, key TEXT);
CREATE TABLE IF NOT EXISTS calls (id INTEGER PRIMARY KEY, op TEXT, name TEXT, counted INTEGER, pid INTEGER);
"""


class SharedProvider(Provider):
    """Settings: path (the SQLite file), ssh ([host, port] of the banner server), create_delay_s,
    suspend_delay_s. Each
    provider name is a cloud of its own in the file (it lists only its own stacks)."""

    type_name = "shared"

    def __init__(self, name: str, settings: dict[str, Any] | None = None) -> None:
        super().__init__(name, settings)
        self.path = Path(self.settings["path"])
        self.ssh = tuple(self.settings.get("ssh", ("127.0.0.1", 1)))
        self.create_delay_s = float(self.settings.get("create_delay_s", 0.0))
        self.suspend_delay_s = float(self.settings.get("suspend_delay_s", 0.0))
        with self._db() as db:
            db.executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30, isolation_level="IMMEDIATE")

    def _call(self, op: str, name: str, counted: bool) -> None:
        with self._db() as db:
            db.execute(
                "INSERT INTO calls (op, name, counted, pid) VALUES (?, ?, ?, ?)",
                (op, name, counted, os.getpid()),
            )

    async def create(self, request: StackRequest) -> Handle:
        await asyncio.sleep(self.create_delay_s)  # a kill -9 can land mid-launch
        nodes = ",".join(n.name for n in request.nodes) or "main"
        with self._db() as db:
            made = db.execute(
                "INSERT OR IGNORE INTO stacks VALUES (?, ?, ?, ?, ?)",
                (request.name, self.name, StackState.RUNNING.value, nodes, request.public_key),
            ).rowcount
            db.execute(
                "INSERT INTO calls (op, name, counted, pid) VALUES ('create', ?, ?, ?)",
                (request.name, made, os.getpid()),
            )
        return {"name": request.name}

    async def status(self, handle: Handle) -> StackStatus:
        with self._db() as db:
            row = db.execute("SELECT state, nodes FROM stacks WHERE name = ?", (handle["name"],)).fetchone()
        if row is None:
            return StackStatus(StackState.ABSENT, "", ())
        host, port = self.ssh
        nodes = tuple(NodeAddress(n, str(host), int(port)) for n in row[1].split(","))
        return StackStatus(StackState(row[0]), "", nodes)

    async def suspend(self, handle: Handle) -> None:
        await asyncio.sleep(self.suspend_delay_s)  # a kill -9 can land mid-suspend
        self._set(handle, StackState.SUSPENDED, "suspend")

    async def resume(self, handle: Handle) -> None:
        self._set(handle, StackState.RUNNING, "resume")

    def _set(self, handle: Handle, state: StackState, op: str) -> None:
        with self._db() as db:
            changed = db.execute(
                "UPDATE stacks SET state = ? WHERE name = ?", (state.value, handle["name"])
            ).rowcount
        if not changed:
            raise TerminalProviderError(f"no stack {handle['name']}")
        self._call(op, handle["name"], True)

    async def delete(self, handle: Handle) -> None:
        with self._db() as db:
            gone = db.execute("DELETE FROM stacks WHERE name = ?", (handle["name"],)).rowcount
        self._call("delete", handle["name"], bool(gone))

    async def list(self) -> list[str]:
        with self._db() as db:
            return [row[0] for row in db.execute("SELECT name FROM stacks WHERE provider = ?", (self.name,))]


def creates_by_stack(path: Path) -> dict[str, int]:
    """Stacks actually made, by name (a create that found its stack is not counted)."""
    with sqlite3.connect(path, timeout=30) as db:
        rows = db.execute("SELECT name, SUM(counted) FROM calls WHERE op = 'create' GROUP BY name")
        return {name: int(count) for name, count in rows}


def stacks(path: Path) -> dict[str, str]:
    with sqlite3.connect(path, timeout=30) as db:
        return dict(db.execute("SELECT name, state FROM stacks"))
