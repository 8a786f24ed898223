"""Controller pass cost on SQLite and PostgreSQL.

1. A pass over 100,000 environments with nothing due (`Engine.run_pass()`), target 50 ms; the peer is
   the same pass after dropping `ix_environments_due_at` in the same run (a full scan). The due query's
   plan is printed with and without the index.
2. 1,000 environments due (desired suspended, observed running) on the in-memory provider: suspends per
   second by repeated `Engine.run_pass()` until nothing is due (target 500/s), with the database
   statements and commits per environment (below 1: the last saves of passes that end together share
   a commit, envs/saving.py); the floor is the least a recorded suspend must write on its own (one
   transaction: UPDATE the environment, INSERT one transition), timed sequentially on the same rows.

    .venv/bin/python bench/controller_pass.py [--rows 100000] [--due 1000] [--sqlite-only]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import random
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    POSTGRES_ADMIN_URL,
    median,
    print_machine,
    print_table,
    summary_ms,
    verdict,
)
from sqlalchemy import Engine, create_engine, event, insert, select, text, update
from tests.support.memory_provider import MemoryProvider

from stacklab.access.keys import generate_keypair
from stacklab.config import Settings
from stacklab.envs.controller import seal
from stacklab.labs.loader import lab_digest
from stacklab.providers.base import StackState
from stacklab.store.tables import EnvironmentRecord, LabRecord, TransitionRecord
from stacklab.types import Desired, Observed, Progress
from stacklab.wiring import App, build_app

NOW = 1_800_000_000.0
INDEX = "ix_environments_due_at"
LAB = textwrap.dedent(
    """\
    schema: 1
    id: bench-lab
    title: Controller benchmark
    login_user: learner
    providers:
      - {name: local, type: local}
    local:
      nodes:
        - name: deploy
        - name: worker1
        - name: worker2
    timeouts: {launch: 10m, idle_suspend: 15m, delete_after: 7d}
    """
)


class FixedClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class StatementCounter:
    """Counts the statements (by verb) and commits an engine executes while enabled."""

    def __init__(self, engine: Engine) -> None:
        self.enabled = False
        self.verbs: collections.Counter[str] = collections.Counter()
        self.commits = 0
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", self._commit)

    def _statement(self, _conn, _cursor, statement: str, *_args: Any) -> None:  # type: ignore[no-untyped-def]
        if self.enabled:
            self.verbs[statement.lstrip().split(None, 1)[0].upper()] += 1

    def _commit(self, _conn) -> None:  # type: ignore[no-untyped-def]
        if self.enabled:
            self.commits += 1

    def reset(self) -> None:
        self.verbs.clear()
        self.commits = 0


# data -------------------------------------------------------------------------------------------------
def build(url: str, data_dir: Path, provider: MemoryProvider) -> App:
    settings = Settings(data_dir=str(data_dir), database_url=url)
    app = build_app(settings, {"local": lambda entry: provider}, follow_requeue=False)
    clock = FixedClock(NOW)
    app.controller.clock = clock
    app.environments.clock = clock
    return app


def populate(app: App, lab_path: Path, rows: int) -> tuple[float, list[str]]:
    """Bulk insert `rows` settled environments (60% running, 30% suspended, 10% deleted); none due now.

    Returns the insert time and the ids of the running ones.
    """
    digest = lab_digest(LAB)
    keypair = generate_keypair("stacklab-bench")
    sealed = seal(app.controller.vault, {"private_key": keypair.private.reveal()})
    rng = random.Random(42)
    running: list[str] = []
    started = time.perf_counter()
    with app.repo.engine.begin() as connection:
        connection.execute(
            insert(LabRecord.__table__),
            [dict(digest=digest, lab_id="bench-lab", source_path=str(lab_path), text=LAB, loaded_at=NOW)],
        )
    batch: list[dict[str, Any]] = []
    for i in range(rows):
        env_id = f"{i:08x}"
        kind = rng.random()
        created = NOW - rng.uniform(3600, 30 * 86400)
        activity = NOW - rng.uniform(0, 14 * 60)  # active within the idle limit: nothing due
        base = dict(
            id=env_id,
            course=f"course-{i % 40}",
            lab_id="bench-lab",
            learner=f"learner-{i:06d}@example.org",
            lab_digest=digest,
            provider="local",
            capacity_held="local",
            stack_name=f"sl-{env_id}",
            handle={"name": f"sl-{env_id}"},
            nodes={
                n: {"host": f"10.128.{(i >> 8) % 256}.{10 + k}", "port": 22}
                for k, n in enumerate(("deploy", "worker1", "worker2"))
            },
            outputs={"subnet": f"10.128.{(i >> 8) % 256}.0/24", "bridge": f"slb-{env_id}"},
            failed_providers=None,
            public_key=keypair.public,
            sealed_secrets=sealed,
            idle_suspend_s=900.0,
            delete_after_s=7 * 86400.0,
            reset_requested=False,
            created_at=created,
            updated_at=activity,
            last_activity_at=activity,
            step_started_at=None,
            ready_at=created + 2.0,
            attempts=0,
            next_attempt_at=None,
            last_error=None,
            last_reason=None,
            lease_owner=None,
            lease_until=None,
        )
        if kind < 0.6:
            base.update(
                desired=Desired.RUNNING,
                observed=Observed.RUNNING,
                progress=Progress.READY,
                suspended_at=None,
                due_at=activity + 900.0,
            )
            running.append(env_id)
        elif kind < 0.9:
            base.update(
                desired=Desired.SUSPENDED,
                observed=Observed.SUSPENDED,
                progress=Progress.SUSPENDED,
                suspended_at=activity + 900.0,
                due_at=activity + 7 * 86400.0,
            )
        else:
            base.update(
                desired=Desired.DELETED,
                observed=Observed.DELETED,
                progress=Progress.DELETED,
                provider=None,
                capacity_held=None,
                handle=None,
                nodes=None,
                outputs=None,
                suspended_at=None,
                due_at=None,
            )
        batch.append(base)
        if len(batch) == 10_000:
            with app.repo.engine.begin() as connection:
                connection.execute(insert(EnvironmentRecord.__table__), batch)
            batch = []
    if batch:
        with app.repo.engine.begin() as connection:
            connection.execute(insert(EnvironmentRecord.__table__), batch)
    if app.repo.engine.dialect.name == "postgresql":
        with app.repo.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE environments"))
    else:
        with app.repo.engine.begin() as connection:
            connection.execute(text("ANALYZE"))
    return time.perf_counter() - started, running


# measurements -----------------------------------------------------------------------------------------
def due_query_sql(app: App, limit: int) -> str:
    statement = (
        select(EnvironmentRecord.id)
        .where(EnvironmentRecord.due_at <= NOW)
        .order_by(EnvironmentRecord.due_at)
        .limit(limit)
    )
    return str(statement.compile(dialect=app.repo.engine.dialect, compile_kwargs={"literal_binds": True}))


def plan(app: App) -> list[str]:
    sql = due_query_sql(app, app.settings.reconcile_batch)
    with app.repo.engine.connect() as connection:
        if app.repo.engine.dialect.name == "sqlite":
            return [row[3] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
        return [row[0] for row in connection.exec_driver_sql(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}")]


def plan_shape(lines: list[str]) -> str:
    """The plan's operations on one line (PostgreSQL's timings and details left out)."""
    skip = ("Planning", "Execution", "Filter", "Sort Key", "Sort Method", "Rows Removed", "Index Cond")
    steps = []
    for line in lines:
        step = line.strip().removeprefix("->").strip().split(" (actual", 1)[0]
        if step and not step.startswith(skip):
            steps.append(step)
    return " / ".join(steps)


async def time_passes(app: App, warmup: int, count: int) -> list[float]:
    durations = []
    for i in range(warmup + count):
        start = time.perf_counter()
        submitted = await app.engine.run_pass()
        elapsed = time.perf_counter() - start
        if submitted:
            raise RuntimeError(f"expected nothing due, {submitted} were submitted")
        if i >= warmup:
            durations.append(elapsed)
    return durations


def set_index(app: App, present: bool) -> None:
    with app.repo.engine.begin() as connection:
        if present:
            connection.execute(text(f"CREATE INDEX {INDEX} ON environments (due_at)"))
        else:
            connection.execute(text(f"DROP INDEX {INDEX}"))
        if app.repo.engine.dialect.name == "sqlite":
            connection.execute(text("ANALYZE"))
    if app.repo.engine.dialect.name == "postgresql":
        with app.repo.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("ANALYZE environments"))


async def suspend_burst(
    app: App, provider: MemoryProvider, counter: StatementCounter, ids: list[str]
) -> dict[str, Any]:
    """Make `ids` due for a suspend, then run passes until nothing is due."""
    for env_id in ids:
        provider.stacks[f"sl-{env_id}"] = StackState.RUNNING
        provider.node_names[f"sl-{env_id}"] = ("deploy", "worker1", "worker2")
    with app.repo.engine.begin() as connection:
        for start in range(0, len(ids), 500):
            connection.execute(
                update(EnvironmentRecord)
                .where(EnvironmentRecord.id.in_(ids[start : start + 500]))
                .values(desired=Desired.SUSPENDED, due_at=NOW - 1.0)
            )
    provider.calls.clear()
    counter.reset()
    counter.enabled = True
    passes = []
    start = time.perf_counter()
    while True:
        pass_start = time.perf_counter()
        submitted = await app.engine.run_pass()
        passes.append((submitted, time.perf_counter() - pass_start))
        if submitted == 0:
            break
    elapsed = time.perf_counter() - start
    counter.enabled = False
    suspends = sum(1 for call, _ in provider.calls if call == "suspend")
    with app.repo.engine.connect() as connection:
        settled = connection.execute(
            select(EnvironmentRecord.id).where(
                EnvironmentRecord.id.in_(ids), EnvironmentRecord.observed == Observed.SUSPENDED
            )
        ).all()
    return {
        "seconds": elapsed,
        "suspends": suspends,
        "settled": len(settled),
        "passes": passes,
        "verbs": dict(counter.verbs),
        "commits": counter.commits,
        "failures": app.engine.runner.failures,
    }


def suspend_floor(app: App, ids: list[str]) -> float:
    """The least a recorded suspend writes: one transaction per environment, one UPDATE and one INSERT."""
    engine = app.repo.engine
    transitions = TransitionRecord.__table__
    start = time.perf_counter()
    for env_id in ids:
        with engine.begin() as connection:
            connection.execute(
                update(EnvironmentRecord)
                .where(EnvironmentRecord.id == env_id)
                .values(
                    observed=Observed.SUSPENDED,
                    progress=Progress.SUSPENDED,
                    suspended_at=NOW,
                    updated_at=NOW,
                    due_at=NOW + 7 * 86400,
                )
            )
            connection.execute(
                insert(transitions).values(
                    env_id=env_id,
                    at=NOW,
                    kind="observed",
                    from_state="running",
                    to_state="suspended",
                    reason="Suspended",
                    message="",
                )
            )
    return time.perf_counter() - start


async def run_database(label: str, url: str, rows: int, due: int, work: Path) -> list[list[str]]:
    print(f"## {label}: {rows:,} environments", flush=True)
    provider = MemoryProvider("local")
    lab_path = work / "bench-lab.yaml"
    lab_path.write_text(LAB)
    app = build(url, work, provider)
    try:
        counter = StatementCounter(app.repo.engine)
        seconds, running = populate(app, lab_path, rows)
        print(f"inserted {rows:,} rows in {seconds:.1f} s ({rows / seconds:,.0f} rows/s, bulk core insert)")

        with_index = plan(app)
        print(f"due query: {due_query_sql(app, app.settings.reconcile_batch)}")
        print("plan with the index:")
        print(textwrap.indent("\n".join(with_index), "    "))
        uses_index = any(INDEX in line for line in with_index)
        print(f"uses {INDEX}: {'yes' if uses_index else 'NO'}", flush=True)
        indexed = await time_passes(app, warmup=10, count=200)
        counter.reset()
        counter.enabled = True
        await app.engine.run_pass()
        counter.enabled = False
        pass_statements = sum(counter.verbs.values())

        set_index(app, present=False)
        without_index = plan(app)
        print("plan without the index (peer):")
        print(textwrap.indent("\n".join(without_index), "    "))
        scanned = await time_passes(app, warmup=3, count=30)
        set_index(app, present=True)
        again = plan(app)
        if not any(INDEX in line for line in again):
            print("warning: the recreated index is not used")

        ids = random.Random(7).sample(running, due)
        burst = await suspend_burst(app, provider, counter, ids)
        rate = burst["suspends"] / burst["seconds"]
        per_env = {verb: n / due for verb, n in sorted(burst["verbs"].items())}
        print(
            f"{due} due: {burst['suspends']} suspends issued, {burst['settled']} observed suspended, "
            f"{len(burst['passes'])} passes (batch {app.settings.reconcile_batch}, "
            f"concurrency {app.settings.reconcile_concurrency}), job failures {burst['failures']}"
        )
        print("  passes: " + ", ".join(f"{n} in {s * 1000:.0f} ms" for n, s in burst["passes"]))
        print(
            "  per environment: "
            + ", ".join(f"{verb} {n:.1f}" for verb, n in per_env.items())
            + f"; {sum(burst['verbs'].values()) / due:.1f} statements, {burst['commits'] / due:.2f} commits"
        )
        floor_s = suspend_floor(app, ids)
        floor_rate = due / floor_s
        print(
            f"  floor (1 transaction: UPDATE environment + INSERT transition, sequential): "
            f"{floor_rate:,.0f}/s, {floor_s / due * 1000:.2f} ms each; "
            f"engine {burst['seconds'] / due * 1000:.2f} ms each",
            flush=True,
        )
        print()
        return [
            [
                f"{label}: pass, {rows:,} rows, nothing due (median)",
                summary_ms(indexed),
                f"50 ms ({verdict(median(indexed), 0.050)})",
                f"no index (full scan): {summary_ms(scanned)}; {median(scanned) / median(indexed):.0f}x",
            ],
            [
                f"{label}: due query uses {INDEX}",
                "yes" if uses_index else "NO",
                "yes",
                f"without it: {plan_shape(without_index)}",
            ],
            [
                f"{label}: statements per idle pass",
                str(pass_statements),
                "-",
                "-",
            ],
            [
                f"{label}: suspends/s, {due} due (run_pass until idle)",
                f"{rate:,.0f}/s ({burst['seconds'] / due * 1000:.2f} ms each)",
                f"500/s ({verdict(rate, 500, lower_is_better=False)})",
                f"floor UPDATE+INSERT txn: {floor_rate:,.0f}/s (engine {rate / floor_rate:.2f}x)",
            ],
            [
                f"{label}: DB work per suspended environment",
                f"{sum(burst['verbs'].values()) / due:.1f} statements, {burst['commits'] / due:.2f} commits",
                "-",
                "floor: 2 statements, 1 commit",
            ],
        ]
    finally:
        app.close()


def postgres_database() -> tuple[str, Engine, str]:
    name = f"stacklab_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL.format(db="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    return name, admin, POSTGRES_ADMIN_URL.format(db=name)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=1_000)
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    print_machine("controller pass benchmark", postgres=not args.sqlite_only)
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="stacklab-bench-") as tmp:
        work = Path(tmp) / "sqlite"
        work.mkdir()
        rows += await run_database("SQLite", f"sqlite:///{work / 'stacklab.db'}", args.rows, args.due, work)
        if not args.sqlite_only:
            name, admin, url = postgres_database()
            try:
                work = Path(tmp) / "postgresql"
                work.mkdir()
                rows += await run_database("PostgreSQL", url, args.rows, args.due, work)
            finally:
                with admin.connect() as connection:
                    connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                admin.dispose()
    print_table(rows)


if __name__ == "__main__":
    asyncio.run(main())
