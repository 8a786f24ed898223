"""The distributed mode on a real MariaDB Galera cluster of two nodes here (tests/support/galera.py):
`stacklab migrate` on one node gives every node a schema Galera can replicate; two real `stacklab worker`
processes, each on a different node, drive labs launched through one node and suspended and resumed
through the other, and every lab converges with one stack; a certification conflict between the nodes
(Galera's error 1213) and a node outside the primary component (error 1047) are retried, the scheduler
lease's first insert included."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.exc import DBAPIError
from tests.distributed.conftest import RABBITMQ_URL, SECRET, Cluster, make_cluster
from tests.distributed.shared_provider import creates_by_stack, stacks
from tests.e2e.helpers import wait_for
from tests.support.galera import GaleraCluster, Node

from stacklab.store import leases
from stacklab.store.conflicts import is_conflict, retried
from stacklab.store.database import MIGRATIONS_DIR, make_engine
from stacklab.store.repository import Repository
from stacklab.store.tables import LeaseRecord
from stacklab.types import Desired, Observed

ROOT = Path(__file__).resolve().parents[2]
LABS = 30
CONFLICT_COUNTERS = ("wsrep_local_cert_failures", "wsrep_local_bf_aborts")


@pytest.fixture(scope="module")
def galera() -> Iterator[GaleraCluster]:
    cluster = GaleraCluster(2)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def database(galera: GaleraCluster) -> Iterator[str]:
    """A fresh database (made on node 1, replicated), dropped afterwards."""
    name = f"stacklab_{os.urandom(4).hex()}"
    with galera.nodes[0].connect() as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    for node in galera.nodes:  # the other node applies the DDL a moment later (CI saw 1049 on node 2)
        wait_for(lambda node=node: has_database(node, name), 30, f"{name} replicated to every node")
    yield name
    with galera.nodes[0].connect() as connection, connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE {name}")


def stacklab_migrate(url: str, tmp_path: Path) -> None:
    """`stacklab migrate`, the real command, as an installer runs it once on one node."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("STACKLAB_")}
    env.update(
        STACKLAB_DATABASE_URL=url, STACKLAB_DATA_DIR=str(tmp_path / "migrate"), STACKLAB_SECRET_KEY=SECRET
    )
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "stacklab"), "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def has_database(node: Node, name: str) -> bool:
    with node.connect() as connection, connection.cursor() as cursor:
        return bool(cursor.execute("SHOW DATABASES LIKE %s", (name,)))


def query(node: Node, database: str, sql: str, *, causal: bool = False) -> list[tuple[object, ...]]:
    """`causal`: the read waits until the node has applied what the cluster committed before it (as
    stacklab's own sessions read); without it a node may answer before it has applied another's commit."""
    with node.connect(database) as connection, connection.cursor() as cursor:
        if causal:
            cursor.execute("SET SESSION wsrep_sync_wait = 1")
        cursor.execute(sql)
        return list(cursor.fetchall())


def conflicts(galera: GaleraCluster) -> int:
    """Transactions Galera aborted on any node: lost certification, or brute-force aborted by a write set
    of the other node."""
    return sum(int(node.status(name) or 0) for node in galera.nodes for name in CONFLICT_COUNTERS)


def test_migrate_on_one_node_gives_every_node_a_schema_galera_replicates(
    galera: GaleraCluster, database: str, tmp_path: Path
) -> None:
    stacklab_migrate(galera.nodes[0].url(database), tmp_path)
    second = galera.nodes[1]
    tables = query(
        second,
        database,
        f"SELECT table_name, engine FROM information_schema.tables WHERE table_schema = '{database}'",
        causal=True,
    )
    assert len(tables) > 5 and {engine for _, engine in tables} == {"InnoDB"}, tables
    without_key = query(
        second,
        database,
        "SELECT t.table_name FROM information_schema.tables t"
        " LEFT JOIN information_schema.table_constraints c ON c.table_schema = t.table_schema"
        " AND c.table_name = t.table_name AND c.constraint_type = 'PRIMARY KEY'"
        f" WHERE t.table_schema = '{database}' AND c.table_name IS NULL",
        causal=True,
    )
    assert without_key == []  # Galera replicates row changes by primary key
    newest = max(path.name.split("_")[0] for path in (MIGRATIONS_DIR / "versions").glob("0*.py"))
    assert query(second, database, "SELECT version_num FROM alembic_version", causal=True) == [(newest,)]


@pytest.fixture
def on_node_one(
    galera: GaleraCluster, database: str, tmp_path: Path, ssh_banner: int, job_queue: str
) -> Iterator[Cluster]:
    """A deployment on RabbitMQ and the Galera cluster whose service side uses node 1."""
    stacklab_migrate(galera.nodes[0].url(database), tmp_path)
    yield from make_cluster(
        tmp_path, ssh_banner, RABBITMQ_URL, galera.nodes[0].url(database), job_queue, log_level="info"
    )


def chain_is_unbroken(history: list[tuple[str, str, str]], kind: str, first: str) -> bool:
    """Each recorded change of `kind` starts where the previous ended: none lost, none recorded twice."""
    states = [(old, new) for k, old, new in history if k == kind]
    starts = [first] + [new for _, new in states[:-1]]
    return all(old == before for (old, _), before in zip(states, starts, strict=True))


def test_workers_on_two_nodes_drive_labs_requested_through_both_nodes(
    galera: GaleraCluster, database: str, on_node_one: Cluster
) -> None:
    cluster = on_node_one
    cluster.start(1)  # on node 1
    cluster.start(1, env={"STACKLAB_DATABASE_URL": galera.nodes[1].url(database)})
    other = Cluster(
        cluster.tmp, {**cluster.values, "database_url": galera.nodes[1].url(database)}, cluster.ssh_port
    )
    launcher, switcher = cluster.service().environments, other.service().environments
    lab = cluster.lab()
    before = conflicts(galera)
    try:

        def race(n: int) -> str:  # a launch through node 1, a pause and a resume through node 2, at once
            env_id = launcher.launch(lab, f"learner-{n}").id
            switcher.request(env_id, Desired.SUSPENDED, "SuspendRequested")
            launcher.launch(lab, f"learner-{n}")
            switcher.request(env_id, Desired.RUNNING, "ResumeRequested")
            return env_id

        with ThreadPoolExecutor(10) as pool:
            ids = list(pool.map(race, range(LABS)))
        repo = cluster.service().repo
        wait_for(lambda: all(repo.get(i).observed == Observed.RUNNING for i in ids), 60, "every lab runs")
        with ThreadPoolExecutor(10) as pool:  # every lab paused through node 2, resumed through both
            list(pool.map(lambda i: switcher.request(i, Desired.SUSPENDED, "SuspendRequested"), ids))
            wait_for(
                lambda: all(repo.get(i).observed == Observed.SUSPENDED for i in ids), 60, "every lab pauses"
            )
            list(pool.map(lambda i: switcher.request(i, Desired.RUNNING, "ResumeRequested"), ids[::2]))
            list(pool.map(lambda n: launcher.launch(lab, f"learner-{n}"), range(1, LABS, 2)))
        wait_for(
            lambda: all(repo.get(i).observed == Observed.RUNNING for i in ids), 60, "every lab runs again"
        )
    finally:
        other.stop()
    made = creates_by_stack(cluster.cloud)
    assert len(set(ids)) == LABS and sorted(made) == sorted(repo.get(i).stack_name for i in ids)
    assert set(made.values()) == {1}, {name: n for name, n in made.items() if n != 1}
    assert set(stacks(cluster.cloud).values()) == {"running"}
    for env_id in ids:
        history = [(t.kind, t.from_state, t.to_state) for t in repo.history(env_id)]
        assert chain_is_unbroken(history, "observed", Observed.NEW), history
        assert chain_is_unbroken(history, "desired", "-"), history
        assert ("observed", Observed.RUNNING, Observed.SUSPENDED) in history, history
    aborted = conflicts(galera) - before
    retries = sum(log.read_text().count("write conflict") for log in cluster.logs)
    print(f"galera: {aborted} transactions aborted by conflicts, {retries} conflicts retried in the workers")


def test_stacklab_sessions_read_causally_though_the_nodes_do_not(
    galera: GaleraCluster, database: str
) -> None:
    """The nodes keep Galera's default (`wsrep_sync_wait = 0`: a read may miss a commit the node has not
    applied yet, which made a pass through node 2 miss a lab just launched through node 1 in the test
    above, 2 runs in 5, before stacklab asked for causal reads); every session stacklab opens asks for
    them, pooled connections included, while other clients of the cluster keep the node's setting."""
    _, second = galera.nodes
    engine = make_engine(second.url(database))
    try:
        for _ in range(3):  # a new connection and then pooled ones
            with engine.connect() as connection:
                assert connection.exec_driver_sql("SELECT @@wsrep_sync_wait").scalar() == 1
        assert query(second, database, "SELECT @@wsrep_sync_wait") == [(0,)]
    finally:
        engine.dispose()


def test_a_certification_conflict_between_two_nodes_is_retried(galera: GaleraCluster, database: str) -> None:
    first, second = galera.nodes
    engine = make_engine(first.url(database))
    try:
        repo = Repository(engine)
        LeaseRecord.metadata.create_all(engine, tables=[LeaseRecord.__table__])
        with repo.session() as session:
            session.add(LeaseRecord(name="row", owner="-", expires_at=0.0, version=0))
        before = conflicts(galera)
        errors: list[DBAPIError] = []

        def transaction() -> None:
            try:
                with repo.session() as session:
                    session.execute(
                        update(LeaseRecord)
                        .where(LeaseRecord.name == "row")
                        .values(version=LeaseRecord.version + 1)
                    )
                    if not errors:  # the other node commits a change of the same row first
                        query(second, database, "UPDATE leases SET version = version + 10 WHERE name = 'row'")
            except DBAPIError as exc:
                errors.append(exc)
                raise

        retried(transaction)
        with repo.read() as session:
            assert session.scalar(select(LeaseRecord.version)) == 11  # both changes, each once
        assert len(errors) == 1 and errors[0].orig.args[0] == 1213, errors
        assert conflicts(galera) > before  # Galera aborted it (MariaDB 10.11 words it as a deadlock)
    finally:
        engine.dispose()


def test_schedulers_starting_at_once_on_two_nodes_one_leads(galera: GaleraCluster, database: str) -> None:
    """A new install's schedulers start at once, each on its own node: both find no lease row and insert
    it. The other node's insert commits first, so Galera aborts this one at COMMIT (1213): the scheduler is
    told another process leads, where its tick used to fail with the error."""
    first, second = galera.nodes
    engine = make_engine(first.url(database))
    try:
        repo = Repository(engine)
        LeaseRecord.metadata.create_all(engine, tables=[LeaseRecord.__table__])
        inserted: list[str] = []

        @event.listens_for(engine, "before_cursor_execute")
        def note_insert(conn: object, cursor: object, statement: str, *args: object) -> None:
            if statement.startswith("INSERT INTO leases"):
                inserted.append(statement)

        @event.listens_for(engine, "commit")
        def other_node_first(conn: object) -> None:
            if len(inserted) == 1:  # this insert's COMMIT: the other node's insert of the row goes first
                inserted.append("other node")
                query(second, database, "INSERT INTO leases VALUES ('scheduler', 'other', 1e12, 0)")

        before = conflicts(galera)
        assert leases.hold(repo, "scheduler", "this", now=1.0, ttl_s=30.0) is False
        assert leases.holder(repo, "scheduler", now=1.0) == "other"
        assert conflicts(galera) > before  # Galera aborted this node's insert
    finally:
        engine.dispose()


def test_a_node_outside_the_primary_component_is_retried_once_back(
    galera: GaleraCluster, database: str
) -> None:
    _, second = galera.nodes
    engine = make_engine(second.url(database))
    try:
        LeaseRecord.metadata.create_all(engine, tables=[LeaseRecord.__table__])
        repo = Repository(engine)
        errors: list[DBAPIError] = []
        isolate(second, True)  # node 1 keeps the primary component (pc.weight)
        healed = threading.Event()

        def transaction() -> None:
            if errors and not healed.is_set():
                isolate(second, False)
                healed.set()
            try:
                with repo.session() as session:
                    session.add(LeaseRecord(name="joined", owner="-", expires_at=0.0, version=0))
            except DBAPIError as exc:
                errors.append(exc)
                raise

        retried(transaction)
        assert len(errors) == 1 and errors[0].orig.args[0] == 1047, errors
        assert is_conflict(errors[0])
        assert query(galera.nodes[0], database, "SELECT name FROM leases") == [("joined",)]
    finally:
        isolate(second, False)
        engine.dispose()


def isolate(node: Node, on: bool) -> None:
    """Cut the node off the group (it leaves the primary component) or let it back in and wait for it."""
    with node.connect() as connection, connection.cursor() as cursor:
        cursor.execute(f"SET GLOBAL wsrep_provider_options = 'gmcast.isolate={int(on)}'")
    wanted = {"wsrep_ready": "OFF"} if on else {"wsrep_ready": "ON", "wsrep_local_state_comment": "Synced"}
    wait_for(lambda: all(node.status(name) == value for name, value in wanted.items()), 30, "leave or join")
