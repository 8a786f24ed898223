"""Shared fixtures: a store on each real database, settings in a temporary data dir."""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from tests.support.sshd import start_sshd

from stacklab.config import Settings

POSTGRES_URL = os.environ.get("STACKLAB_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/{db}")
MARIADB_URL = os.environ.get("STACKLAB_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/{db}")


@pytest.fixture(autouse=True, scope="module")
def _leaks_blamed_on_their_module() -> Iterator[None]:
    """Collect garbage as each module ends. A socket or transport a module left open is then reported
    (filterwarnings = error) at the teardown of that module's last test, not in whichever later test the
    collector happened to run: two CI runs failed on a socket no test in their failing module opened."""
    yield
    gc.collect()


def _server_database(template: str, admin_db: str) -> Iterator[str]:
    """A fresh, uniquely named database on a real server, dropped afterwards."""
    name = f"stacklab_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(template.format(db=admin_db), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield template.format(db=name)
    finally:
        with admin.connect() as connection:
            if admin.dialect.name == "postgresql":
                connection.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
            else:
                connection.execute(text(f"DROP DATABASE {name}"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The same store tests run on SQLite, PostgreSQL and MariaDB."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'stacklab.db'}"
    elif request.param == "postgresql":
        yield from _server_database(POSTGRES_URL, "postgres")
    else:
        yield from _server_database(MARIADB_URL, "mysql")


@pytest.fixture
def settings(tmp_path, database_url: str) -> Settings:  # type: ignore[no-untyped-def]
    return Settings(
        data_dir=str(tmp_path / "data"),
        database_url=database_url,
        poll_interval_s=0.01,
        retry_backoff_s=(0.05, 0.1),
        max_attempts=3,
    )


@pytest.fixture
async def sshd_port():  # type: ignore[no-untyped-def]
    """A real SSH server on loopback (asyncssh) that runs commands with bash."""
    server, port = await start_sshd()
    yield port
    server.close()
    await server.wait_closed()
