"""Engine creation and schema migration (Alembic, configured in code so no alembic.ini is needed)."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _private_database_file(path: Path) -> None:
    """The database file (and its WAL and shared-memory files) readable by this user only (0600).

    They hold sealed secrets and every learner's state. SQLite creates -wal and -shm with the mode of the
    database file, so creating that one 0600 before SQLite opens it covers the others; files left by an
    older version are tightened. A folder created here for the database is 0700 (an existing one is
    left as it is: it may be shared).
    """
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if file.exists() and file.stat().st_mode & 0o077:
            os.chmod(file, 0o600)


def make_reader(url: str, writer: Engine) -> Engine:
    """On SQLite, a second engine for reads: no BEGIN IMMEDIATE, so reads never queue behind writes."""
    if not url.startswith("sqlite"):
        return writer
    reader = create_engine(url, connect_args={"timeout": 30, "isolation_level": None})
    event.listen(reader, "connect", _sqlite_pragmas)
    return reader


def make_engine(url: str) -> Engine:
    """An engine tuned for the embedded default (SQLite in WAL mode) or a server database."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            _private_database_file(Path(path))
        engine = create_engine(url, connect_args={"timeout": 30, "isolation_level": None})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; safe to run at every start."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = None
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
