"""Engine creation and schema migration (Alembic, configured in code so no alembic.ini is needed)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
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


UNKNOWN_SYSTEM_VARIABLE = 1193
"""MySQL's error for a variable the server does not have (Galera's, on a server without it)."""


def _causal_reads(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    """On a Galera node, reads wait for what the cluster committed before them (`wsrep_sync_wait = 1`):
    without it a pass on one node may not find a lab launched through another a moment ago. Per session,
    so that other users of a shared cluster (Open edX) keep their own setting; a MySQL server without
    Galera's variables (error 1193) needs nothing."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SET SESSION wsrep_sync_wait = 1")
    except Exception as exc:
        if getattr(exc, "args", (None,))[0] != UNKNOWN_SYSTEM_VARIABLE:
            raise
    finally:
        cursor.close()


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
    engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    if engine.dialect.name in ("mysql", "mariadb"):
        event.listen(engine, "connect", _causal_reads)
    return engine


MIGRATE_LOCK = "stacklab-migrate"
MIGRATE_LOCK_KEY = 0x5374_6B6C_6162  # PostgreSQL's advisory locks take a number: "Stklab"
MIGRATE_WAIT_S = 300
"""Longest wait for another process's migration (a first start builds the whole schema in seconds)."""


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; safe to run at every start, from many processes at once.

    One process migrates at a time, the others wait for it under a database lock and then find the
    schema up to date: PostgreSQL, an advisory lock of the migration's transaction; MariaDB, GET_LOCK on
    the migrating connection (DDL commits implicitly there, so the lock is the connection's; on Galera it
    holds on one node only: run `stacklab migrate` once before starting processes on several nodes);
    SQLite, a file lock beside the database (its writes are serialized anyway, BEGIN IMMEDIATE).
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = None
    with _migrate_lock(engine), engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATE_LOCK_KEY})")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@contextmanager
def _migrate_lock(engine: Engine) -> Iterator[None]:
    """The lock that is not the migration's transaction's own: MariaDB's GET_LOCK, SQLite's file lock."""
    if engine.dialect.name in ("mysql", "mariadb"):
        with engine.connect() as holder:
            got = holder.exec_driver_sql(f"SELECT GET_LOCK('{MIGRATE_LOCK}', {MIGRATE_WAIT_S})").scalar()
            if got != 1:
                raise TimeoutError(f"another process held the migration lock for {MIGRATE_WAIT_S}s")
            try:
                yield
            finally:
                holder.exec_driver_sql(f"SELECT RELEASE_LOCK('{MIGRATE_LOCK}')")
                holder.commit()
    elif engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        path = Path(str(engine.url.database)).with_name(Path(str(engine.url.database)).name + ".migrate-lock")
        lock = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
        finally:
            os.close(lock)  # releases the lock
    else:
        yield


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
