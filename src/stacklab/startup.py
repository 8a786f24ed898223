"""Start-up problems as one line each: what is wrong, which setting or path, and what to do.

The commands that open the store go through `open_app`, which checks the data dir and converts database
and filesystem errors at this boundary, so the CLI prints one line and exits with the problem's code:

    2  configuration: a setting is invalid (config.SettingsInvalid, any ConfigError)
    3  database: unreachable, refused, a bad URL, a missing driver, a schema newer than this stacklab
    4  filesystem: the data dir (or a file in it) cannot be created, read or written
"""

from __future__ import annotations

import getpass
import os
import tempfile
from pathlib import Path
from typing import Any

from alembic.util.exc import CommandError
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from stacklab.config import Settings
from stacklab.errors import StacklabError
from stacklab.wiring import App, build_app

EXIT_CONFIG, EXIT_DATABASE, EXIT_FILESYSTEM = 2, 3, 4


class StartupError(StacklabError):
    """The service cannot start; `exit_code` tells scripts which kind of problem it is."""

    exit_code = 1


class DatabaseUnavailable(StartupError):
    """The database cannot be reached or used."""

    exit_code = EXIT_DATABASE


class DataDirUnusable(StartupError):
    """The data dir, or a file the service keeps in it, cannot be created, read or written."""

    exit_code = EXIT_FILESYSTEM


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.geteuid())


def filesystem_problem(path: str | Path, exc: OSError, setting: str = "") -> DataDirUnusable:
    """One line: the path, what went wrong, and who must be able to write it."""
    reason = (exc.strerror or str(exc)).lower()
    if setting:
        return DataDirUnusable(
            f"{setting} {path}: {reason}; make it writable for user {_user()} or choose another "
            f"(--data-dir or STACKLAB_{setting.upper()})"
        )
    return DataDirUnusable(f"{path}: {reason}; check that user {_user()} may write it (--debug: where)")


def check_data_dir(settings: Settings) -> None:
    """Create the data dir if needed and prove that files can be written in it."""
    path = Path(settings.data_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise filesystem_problem(path, exc, "data_dir") from exc


def shown_url(url: str) -> str:
    """The database URL without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return repr(url) if "@" not in url else "(the configured URL)"


def database_problem(url: str, exc: BaseException) -> DatabaseUnavailable:
    where = f"database_url {shown_url(url)}"
    if isinstance(exc, ArgumentError):
        what = "not a database URL; write e.g. postgresql+psycopg://user:password@host/stacklab"
    elif isinstance(exc, ModuleNotFoundError):
        what = (
            f"its driver is not installed ({exc}); install stacklab[postgres] (psycopg: "
            "postgresql+psycopg://...) or stacklab[mysql] (pymysql: mysql+pymysql://...)"
        )
    elif isinstance(exc, CommandError):
        what = f"{exc}; is this database used by a newer stacklab?"
    else:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        what = f"{first}; check that the server runs and accepts this user, or fix database_url"
    return DatabaseUnavailable(f"{where}: {what} (STACKLAB_DATABASE_URL)")


def check_database(settings: Settings) -> None:
    """Connect once (server databases; SQLite lives in the data dir), changing nothing."""
    url = settings.resolved_database_url
    try:
        if make_url(url).get_backend_name() == "sqlite":
            return
        engine = create_engine(url)
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
    except (SQLAlchemyError, ModuleNotFoundError) as exc:
        raise database_problem(url, exc) from exc


def open_app(settings: Settings, **options: Any) -> App:
    """`build_app` with its start-up failures converted to one-line errors (see the module docstring)."""
    check_data_dir(settings)
    try:
        return build_app(settings, **options)
    except (SQLAlchemyError, ModuleNotFoundError, CommandError) as exc:
        raise database_problem(settings.resolved_database_url, exc) from exc
    except OSError as exc:
        raise filesystem_problem(exc.filename or settings.data_dir, exc) from exc
