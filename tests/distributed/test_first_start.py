"""Two `stacklab serve` processes started at once on an empty PostgreSQL or MariaDB database both come up:
each migrates at start, one at a time under the database's lock (store/database.py), the other then
finds the schema up to date. Real processes, real servers."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from tests.distributed.conftest import SECRET, free_port, store
from tests.e2e.helpers import wait_for
from tests.support.processes import stop_all

from stacklab.store.database import MIGRATIONS_DIR

ROOT = Path(__file__).resolve().parents[2]
STACKLAB = str(ROOT / ".venv" / "bin" / "stacklab")


@pytest.fixture(params=["postgresql", "mariadb"])
def empty_database(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from store(request.param)


def _serve(tmp_path: Path, name: str, database_url: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    port, log = free_port(), tmp_path / f"{name}.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith("STACKLAB_")}
    env.update(
        STACKLAB_DATA_DIR=str(tmp_path / name),
        STACKLAB_DATABASE_URL=database_url,
        STACKLAB_SECRET_KEY=SECRET,
        STACKLAB_HTTP_PORT=str(port),
        STACKLAB_LOCAL_ROOT_DIR=str(tmp_path / "local"),
    )
    with log.open("wb") as out:
        process = subprocess.Popen([STACKLAB, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
    return process, port, log


def _ready(port: int) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    return False


def _up(process: subprocess.Popen[bytes], port: int) -> bool:
    return _ready(port) or process.poll() is not None


def test_two_serves_starting_at_once_on_an_empty_database_both_come_up(
    tmp_path: Path, empty_database: str
) -> None:
    webs = [_serve(tmp_path, name, empty_database) for name in ("web-a", "web-b")]
    try:
        for process, port, log in webs:
            wait_for(partial(_up, process, port), 60, "serve answers")
            assert process.poll() is None, log.read_text()[-3000:]
        newest = max(path.name.split("_")[0] for path in (MIGRATIONS_DIR / "versions").glob("0*.py"))
        engine = create_engine(empty_database)
        try:
            with engine.connect() as connection:
                assert connection.execute(
                    text("SELECT version_num FROM alembic_version")
                ).scalars().all() == [newest]
        finally:
            engine.dispose()
    finally:
        stop_all([process for process, _, _ in webs])
