"""Queries the engine needs, each one short transaction. Callers get detached records back."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from itertools import groupby
from typing import Any, TypeVar

from sqlalchemy import Engine, bindparam, inspect, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from stacklab.errors import NotFound
from stacklab.procs import holder_is_dead
from stacklab.store.conflicts import retried
from stacklab.store.database import session_factory
from stacklab.store.tables import (
    CheckRunRecord,
    EnvironmentRecord,
    LabRecord,
    ProviderUsageRecord,
    TransitionRecord,
)

T = TypeVar("T")


@dataclass(frozen=True)
class CasWrite:
    """One environment's compare-and-set save: from version `expected`, the columns `changes`."""

    env_id: str
    expected: int
    changes: Mapping[str, Any]


@dataclass(frozen=True)
class EnvKey:
    course: str
    lab_id: str
    learner: str


class Repository:
    """All reads and writes of environments, labs, transitions, check runs and provider slots."""

    def __init__(self, engine: Engine, reader: Engine | None = None) -> None:
        self.engine = engine
        self.reader = reader or engine
        self._sessions: sessionmaker[Session] = session_factory(engine)
        self._reads: sessionmaker[Session] = session_factory(self.reader)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A write transaction (on SQLite: BEGIN IMMEDIATE, so writers queue instead of failing)."""
        with self._sessions.begin() as session:
            yield session

    def write(self, work: Callable[[Session], T]) -> T:
        """Run `work` in one write transaction, and the whole of it again when the database reports a
        write conflict (a deadlock, a Galera certification failure: store/conflicts.py). So `work` must
        only touch the database through `session` and compute what it writes from what it reads there:
        a try that lost left nothing behind."""

        def transaction() -> T:
            with self.session() as session:
                return work(session)

        return retried(transaction)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """For queries only: on SQLite it takes no write lock, so readers never wait for writers."""
        with self._reads() as session:
            yield session

    # labs -------------------------------------------------------------------------------------------
    def save_lab(self, digest: str, lab_id: str, source_path: str, text: str, now: float) -> None:
        def save(session: Session) -> None:
            if session.get(LabRecord, digest) is None:
                session.add(
                    LabRecord(digest=digest, lab_id=lab_id, source_path=source_path, text=text, loaded_at=now)
                )

        with suppress(IntegrityError):  # a concurrent launch stored the same content first
            self.write(save)

    def lab_digests(self) -> list[str]:
        """Every stored lab version (a handful per lab: one per edit that was launched)."""
        with self.read() as session:
            return list(session.scalars(select(LabRecord.digest)))

    def get_lab(self, digest: str) -> LabRecord:
        with self.read() as session:
            record = session.get(LabRecord, digest)
            if record is None:
                raise NotFound(f"lab content {digest[:12]} is not stored")
            return record

    # environments -----------------------------------------------------------------------------------
    def insert_environment(self, record: EnvironmentRecord, transition: TransitionRecord) -> bool:
        """Insert a new environment; False when one with the same key exists already."""

        def insert(session: Session) -> None:
            session.add(record)
            session.flush()
            session.add(transition)

        try:
            self.write(insert)  # concurrent inserts of one key deadlock on MariaDB before one conflicts
        except IntegrityError:
            return False
        return True

    def get(self, env_id: str) -> EnvironmentRecord:
        with self.read() as session:
            record = session.get(EnvironmentRecord, env_id)
            if record is None:
                raise NotFound(f"no environment {env_id!r}")
            return record

    def find(self, key: EnvKey) -> EnvironmentRecord | None:
        with self.read() as session:
            return session.scalars(
                select(EnvironmentRecord).where(
                    EnvironmentRecord.course == key.course,
                    EnvironmentRecord.lab_id == key.lab_id,
                    EnvironmentRecord.learner == key.learner,
                )
            ).one_or_none()

    def list(
        self,
        *,
        course: str | None = None,
        observed: str | None = None,
        limit: int = 1000,
        pools: bool = False,
    ) -> list[EnvironmentRecord]:
        """Learners' environments, or with `pools` the warm pools' members (never both: members are
        nobody's lab)."""
        query = select(EnvironmentRecord).order_by(EnvironmentRecord.created_at).limit(limit)
        pool = EnvironmentRecord.pool
        query = query.where(pool.is_not(None) if pools else pool.is_(None))
        if course:
            query = query.where(EnvironmentRecord.course == course)
        if observed:
            query = query.where(EnvironmentRecord.observed == observed)
        with self.read() as session:
            return list(session.scalars(query))

    def stack_owners(self) -> dict[str, str | None]:
        """stack name -> the provider its environment holds it on ("" for none yet; None while a pass
        holds the environment: it may be creating anywhere), for every environment that may own one."""
        with self.read() as session:
            may_own = or_(EnvironmentRecord.observed != "deleted", EnvironmentRecord.lease_owner.is_not(None))
            columns = (
                EnvironmentRecord.stack_name,
                EnvironmentRecord.provider,
                EnvironmentRecord.lease_owner,
            )
            rows = session.execute(select(*columns).where(may_own))
            owners: dict[str, str | None] = {}
            for name, provider, leased in rows:  # a row that holds the stack wins over one that does not
                if owners.get(name, "") == "":
                    owners[name] = None if leased else provider or ""
            return owners

    def settled_on(self, provider: str, states: tuple[str, ...]) -> list[tuple[str, str]]:
        """(id, stack name) of unleased environments on a provider in the given observed states."""
        with self.read() as session:
            rows = session.execute(
                select(EnvironmentRecord.id, EnvironmentRecord.stack_name).where(
                    EnvironmentRecord.provider == provider,
                    EnvironmentRecord.observed.in_(states),
                    EnvironmentRecord.lease_owner.is_(None),
                )
            )
            return [(env_id, name) for env_id, name in rows]

    def due_ids(self, now: float, limit: int, saved_after: float | None = None) -> list[str]:
        """Environments with something to do by `now`; served by the due_at index, never a scan.
        `saved_after` keeps only those last saved after that time (scheduled before a clock step)."""
        query = select(EnvironmentRecord.id).where(EnvironmentRecord.due_at <= now)
        if saved_after is not None:
            query = query.where(EnvironmentRecord.updated_at > saved_after)
        with self.read() as session:
            return list(session.scalars(query.order_by(EnvironmentRecord.due_at).limit(limit)))

    def update(self, env_id: str, mutate: Callable[[EnvironmentRecord, Session], Any]) -> EnvironmentRecord:
        """Load (row locked), change and save one environment in one transaction; bumps its version, so
        a pass running meanwhile merges the change instead of overwriting it. Retried as a whole (mutate
        too) when the database reports a write conflict."""

        def change(session: Session) -> EnvironmentRecord:
            record = session.get(EnvironmentRecord, env_id, with_for_update=True)
            if record is None:
                raise NotFound(f"no environment {env_id!r}")
            mutate(record, session)
            record.version += 1
            return record

        return self.write(change)

    def touch(self, env_id: str, now: float, clear_away: bool = False) -> bool:
        """Record learner activity in one statement (the hot path); False for an unknown id. With
        `clear_away`, the away marker goes too (envs/idleness.py: activity ends it).

        due_at is left alone: when the old idle deadline comes, the pass sees the newer activity and
        moves the deadline, which costs one cheap pass per idle period instead of a write per keystroke.
        """
        values: dict[str, Any] = {"last_activity_at": now, "version": EnvironmentRecord.version + 1}
        if clear_away:
            values.update(away_at=None, away_kind=None, away_limit_s=None)

        def write(session: Session) -> bool:
            result = session.execute(
                update(EnvironmentRecord).where(EnvironmentRecord.id == env_id).values(**values)
            )
            return result.rowcount > 0

        return self.write(write)

    def history(self, env_id: str) -> list[TransitionRecord]:
        with self.read() as session:
            return list(
                session.scalars(
                    select(TransitionRecord)
                    .where(TransitionRecord.env_id == env_id)
                    .order_by(TransitionRecord.at, TransitionRecord.id)
                )
            )

    def new_session(self) -> Session:
        """A session for a multi-step unit of work; the caller commits (records stay loaded)."""
        return self._sessions()

    def lease(
        self, session: Session, env_id: str, owner: str, now: float, lease_s: float
    ) -> EnvironmentRecord | None:
        """Take the one-pass-at-a-time lease and load the record, in one transaction; None if held."""

        def take() -> EnvironmentRecord | None:
            try:
                return self._lease(session, env_id, owner, now, lease_s)
            except Exception:
                session.rollback()
                raise

        return retried(take)

    def _lease(
        self, session: Session, env_id: str, owner: str, now: float, lease_s: float
    ) -> EnvironmentRecord | None:
        record = self._take_leases(session, [env_id], owner, now, lease_s).get(env_id)
        if record is None:
            holder = session.scalar(
                select(EnvironmentRecord.lease_owner).where(EnvironmentRecord.id == env_id)
            )
            if holder is None or not holder_is_dead(holder):
                session.rollback()
                if holder is None and session.get(EnvironmentRecord, env_id) is None:
                    raise NotFound(f"no environment {env_id!r}")
                return None
            record = self._take_leases(session, [env_id], owner, now, lease_s, holder=holder).get(env_id)
            if record is None:
                session.rollback()
                return None
        session.commit()
        return record

    def unleased(self, env_ids: list[str]) -> dict[str, EnvironmentRecord]:
        """Those of `env_ids` that no pass holds, loaded (one read, no lock): for envs/resting.py."""
        query = select(EnvironmentRecord).where(
            EnvironmentRecord.id.in_(env_ids), EnvironmentRecord.lease_owner.is_(None)
        )
        with self.read() as session:
            return {record.id: record for record in session.scalars(query)}

    def lease_many(
        self, env_ids: list[str], owner: str, now: float, lease_s: float
    ) -> list[EnvironmentRecord]:
        """Take the lease of those of `env_ids` that are free and load them, in one statement and one
        commit for the lot (envs/leasing.py: the passes then need one commit each, their save). Rows held
        by another live or dead process are left to their passes' own `lease`."""
        if not env_ids:
            return {}

        return self.write(lambda session: self._take_leases(session, env_ids, owner, now, lease_s))

    def _take_leases(
        self,
        session: Session,
        env_ids: list[str],
        owner: str,
        now: float,
        lease_s: float,
        holder: str | None = None,
    ) -> dict[str, EnvironmentRecord]:
        """Lease the free rows of `env_ids` (or, with `holder`, those a dead holder left) and load them:
        `UPDATE ... RETURNING` where the database has it (PostgreSQL, SQLite), else the UPDATE and a
        SELECT of what it took (MariaDB)."""
        free = (
            EnvironmentRecord.lease_owner == holder
            if holder is not None
            else or_(
                EnvironmentRecord.lease_owner.is_(None),
                EnvironmentRecord.lease_owner == owner,
                EnvironmentRecord.lease_until < now,
            )
        )
        until = now + lease_s
        take = (
            update(EnvironmentRecord)
            .where(EnvironmentRecord.id.in_(env_ids), free)
            .values(lease_owner=owner, lease_until=until)
        )
        loaded = {"populate_existing": True, "synchronize_session": False}
        if self.engine.dialect.update_returning:
            records = session.scalars(take.returning(EnvironmentRecord), execution_options=loaded)
        else:
            session.execute(take, execution_options={"synchronize_session": False})
            mine = (EnvironmentRecord.lease_owner == owner, EnvironmentRecord.lease_until == until)
            query = select(EnvironmentRecord).where(EnvironmentRecord.id.in_(env_ids), *mine)
            records = session.scalars(query, execution_options={"populate_existing": True})
        return {record.id: record for record in records}

    @staticmethod
    def bump_version(
        session: Session, env_id: str, expected: int, owner: str, changes: Mapping[str, Any] | None = None
    ) -> bool:
        """Compare-and-set: move the version on from `expected` and write `changes`, in one statement,
        while `owner` holds the lease; or do nothing when the version moved or the lease went elsewhere.

        Once it succeeds, the row stays locked for the rest of the caller's transaction (a row lock on
        PostgreSQL and MariaDB, the database's write lock on SQLite)."""
        result = session.execute(
            update(EnvironmentRecord)
            .where(
                EnvironmentRecord.id == env_id,
                EnvironmentRecord.version == expected,
                EnvironmentRecord.lease_owner == owner,
            )
            .values({**(changes or {}), "version": expected + 1})
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    @staticmethod
    def bump_versions(session: Session, owner: str, writes: list[CasWrite]) -> bool:
        """`bump_version` for many environments at once, all or nothing: the UPDATEs that change the
        same columns go in one executemany (psycopg sends them in one pipeline: one round trip, not one
        each). True when every one matched; False when one did not (its version moved, its lease went)
        or the driver cannot count rows per batch: the caller then rolls back and writes one by one.
        Each UPDATE matches one row at most (by id), so all matched when the count is theirs."""
        if not session.get_bind().dialect.supports_sane_multi_rowcount:
            return False
        columns = inspect(EnvironmentRecord).column_attrs
        table = EnvironmentRecord.__table__
        connection = session.connection()
        for names, run in groupby(writes, key=lambda write: tuple(sorted(write.changes))):
            rows = [  # a run of the same columns: the rows stay locked in the caller's order
                {"_id": w.env_id, "_expected": w.expected, "_owner": owner}
                | {f"_set_{name}": value for name, value in w.changes.items()}
                for w in run
            ]
            sets = {
                columns[n].columns[0]: bindparam(f"_set_{n}", type_=columns[n].columns[0].type) for n in names
            }
            statement = (
                update(table)
                .where(
                    table.c.id == bindparam("_id"),
                    table.c.version == bindparam("_expected"),
                    table.c.lease_owner == bindparam("_owner"),
                )
                .values({**sets, table.c.version: table.c.version + 1})
            )
            if connection.execute(statement, rows).rowcount != len(rows):
                return False
        return True

    @staticmethod
    def locked_columns(session: Session, env_id: str, names: tuple[str, ...]) -> dict[str, Any]:
        """The current values of some columns of one environment, row locked until the caller commits."""
        columns = [getattr(EnvironmentRecord, name) for name in names]
        row = session.execute(select(*columns).where(EnvironmentRecord.id == env_id).with_for_update()).one()
        return dict(zip(names, row, strict=True))

    # leases -----------------------------------------------------------------------------------------
    def release_lease(self, env_id: str, owner: str) -> None:
        self.write(
            lambda session: session.execute(
                update(EnvironmentRecord)
                .where(EnvironmentRecord.id == env_id, EnvironmentRecord.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )
        )

    # provider capacity ------------------------------------------------------------------------------
    @staticmethod
    def claim_slot(session: Session, provider: str, capacity: int | None) -> bool:
        """Take one slot on a provider inside the caller's transaction; atomic on every database."""
        if session.get(ProviderUsageRecord, provider) is None:
            try:
                with session.begin_nested():
                    session.add(ProviderUsageRecord(name=provider, used=0))
            except IntegrityError:
                pass
        condition = [ProviderUsageRecord.name == provider]
        if capacity is not None:
            condition.append(ProviderUsageRecord.used < capacity)
        result = session.execute(
            update(ProviderUsageRecord)
            .where(*condition)
            .values(used=ProviderUsageRecord.used + 1)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    @staticmethod
    def release_slot(session: Session, provider: str) -> None:
        session.execute(
            update(ProviderUsageRecord)
            .where(ProviderUsageRecord.name == provider, ProviderUsageRecord.used > 0)
            .values(used=ProviderUsageRecord.used - 1)
            .execution_options(synchronize_session=False)
        )

    def usage(self) -> dict[str, int]:
        with self.read() as session:
            return {row.name: row.used for row in session.scalars(select(ProviderUsageRecord))}

    # checks -----------------------------------------------------------------------------------------
    def add_check_run(self, run: CheckRunRecord) -> None:
        self.write(lambda session: session.add(run))

    def check_runs(self, env_id: str) -> list[CheckRunRecord]:
        with self.read() as session:
            return list(
                session.scalars(
                    select(CheckRunRecord)
                    .where(CheckRunRecord.env_id == env_id)
                    .order_by(CheckRunRecord.at, CheckRunRecord.id)
                )
            )
