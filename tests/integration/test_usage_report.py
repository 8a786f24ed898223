"""The cost report (store/usage_report.py, `stacklab report usage`) from the transitions the engine really
records, on SQLite, PostgreSQL and MariaDB: its numbers equal the transitions they come from, split at a
week's edge, priced by the provider, and the CLI's table, JSON and CSV say the same."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import update
from tests.support.engine import Clock, memory_app, settle
from tests.support.memory_provider import MemoryProvider

from stacklab.cli import main
from stacklab.config import Settings
from stacklab.envs.pricing import pricing_of
from stacklab.store.roster import roster
from stacklab.store.tables import EnvironmentRecord, TransitionRecord
from stacklab.store.usage import running_seconds
from stacklab.store.usage_report import series, totals, week_start, weekly
from stacklab.types import Desired, Observed
from stacklab.web.metrics import UsageCollector
from stacklab.wiring import App

pytestmark = pytest.mark.db

COURSE = "course-v1:Org+Cost+2027"
T0 = 1_800_000_000.0  # Friday 2027-01-15 08:00 UTC
MONDAY = week_start(T0) + 7 * 86400  # 2027-01-18 00:00 UTC
PAST = 1_759_824_000.0  # Tuesday 2025-10-07 08:00 UTC
PRICED = """\
schema: 1
id: cluster
title: Two nodes
login_user: learner
providers:
  - {name: a, type: local, price: {running: 0.5, suspended: 0.1, currency: EUR}}
local:
  nodes: [{name: main}, {name: db}]
"""
UNPRICED = (
    PRICED.replace("id: cluster", "id: single")
    .replace(", price: {running: 0.5, suspended: 0.1, currency: EUR}", "")
    .replace("[{name: main}, {name: db}]", "[{name: main}]")
)


async def _move(app: App, env_id: str, desired: Desired, expected: Observed) -> None:
    app.environments.request(env_id, desired, "TestRequest")
    assert await settle(app, env_id) == expected


def _observed_edges(app: App, env_id: str) -> list[tuple[float, str, str]]:
    with app.repo.read() as session:
        rows = session.query(TransitionRecord).filter_by(env_id=env_id, kind="observed")
        return sorted((r.at, r.from_state, r.to_state) for r in rows)


def _seconds_in(edges: list[tuple[float, str, str]], state: str, begin: float, end: float) -> float:
    """The test's own reading of the transitions: time between entering `state` and leaving it."""
    total, entered = 0.0, None
    for at, old, new in edges:
        if new == state:
            entered = at
        elif old == state and entered is not None:
            total += max(0.0, min(at, end) - max(entered, begin))
            entered = None
    if entered is not None:
        total += max(0.0, end - max(entered, begin))
    return total


async def test_report_equals_the_transitions_split_by_week_and_priced(
    settings: Settings, providers: dict[str, MemoryProvider], tmp_path: Path
) -> None:
    clock = Clock(T0)
    app = memory_app(settings, providers, clock)
    (tmp_path / "cluster.yaml").write_text(PRICED)
    (tmp_path / "single.yaml").write_text(UNPRICED)
    try:
        erin = app.environments.launch(tmp_path / "cluster.yaml", "erin", COURSE).id
        clock.now += 30  # queued 30 s before its first step
        assert await settle(app, erin) == Observed.RUNNING
        clock.now = MONDAY - 3600
        await _move(app, erin, Desired.SUSPENDED, Observed.SUSPENDED)
        clock.now = MONDAY + 100
        frank = app.environments.launch(tmp_path / "single.yaml", "frank", COURSE).id
        assert await settle(app, frank) == Observed.RUNNING
        clock.now += 600
        await _move(app, frank, Desired.DELETED, Observed.DELETED)
        clock.now = MONDAY + 7200
        await _move(app, erin, Desired.RUNNING, Observed.RUNNING)
        other = app.environments.launch(tmp_path / "cluster.yaml", "erin", "another-course").id
        assert await settle(app, other) == Observed.RUNNING
        warm = app.environments.launch(tmp_path / "cluster.yaml", "warm-member", COURSE).id
        assert await settle(app, warm) == Observed.RUNNING
        with app.repo.session() as session:  # a warm pool's member (envs/pools.py keeps them on provider a)
            session.execute(update(EnvironmentRecord).where(EnvironmentRecord.id == warm).values(pool="a"))
        clock.now += 1800  # erin still running: counted up to now
        until = clock.now

        rows = [r.to_json() for r in weekly(app.repo, COURSE, pricing_of(app.environments.lab_of), until)]
        running_1 = MONDAY - 3600 - (T0 + 30)
        assert rows == [
            {
                "course": COURSE,
                "lab": "cluster",
                "week": "2027-01-11",
                "kind": "learners",
                "environments": 1,
                "running_node_hours": round(running_1 * 2 / 3600, 6),
                "suspended_node_hours": 2.0,  # 1 h x 2 nodes before Monday
                "queued_hours": round(30 / 3600, 6),
                "running_cost": round(running_1 * 2 / 3600 * 0.5, 6),
                "suspended_cost": 0.2,
                "currency": "EUR",
            },
            {
                "course": COURSE,
                "lab": "cluster",
                "week": "2027-01-18",
                "kind": "learners",
                "environments": 1,
                "running_node_hours": 1.0,  # 30 min x 2 nodes
                "suspended_node_hours": 4.0,  # 2 h x 2 nodes after Monday
                "queued_hours": 0.0,
                "running_cost": 0.5,
                "suspended_cost": 0.4,
                "currency": "EUR",
            },
            {
                "course": COURSE,
                "lab": "cluster",
                "week": "2027-01-18",
                "kind": "warm pool",  # its own row: what the pool costs, apart from the learners
                "environments": 1,
                "running_node_hours": 1.0,
                "suspended_node_hours": 0.0,
                "queued_hours": 0.0,
                "running_cost": 0.5,
                "suspended_cost": 0.0,
                "currency": "EUR",
            },
            {
                "course": COURSE,
                "lab": "single",
                "week": "2027-01-18",
                "kind": "learners",
                "environments": 1,
                "running_node_hours": round(600 / 3600, 6),
                "suspended_node_hours": 0.0,
                "queued_hours": 0.0,
                "running_cost": None,  # its provider declares no price
                "suspended_cost": None,
                "currency": None,
            },
        ]
        # The same figures read straight from the transitions (and from store/usage.py's running time).
        for env_id, nodes, lab in ((erin, 2, "cluster"), (frank, 1, "single")):
            edges = _observed_edges(app, env_id)
            mine = [r for r in rows if r["lab"] == lab and r["kind"] == "learners"]
            for state in ("running", "suspended"):
                reported = sum(r[f"{state}_node_hours"] for r in mine)  # type: ignore[misc]
                expected = _seconds_in(edges, state, 0, until) * nodes / 3600
                assert reported == pytest.approx(expected, abs=1e-5)
            running = running_seconds(app.repo, [env_id], until)[env_id]
            assert sum(r["running_node_hours"] for r in mine) == pytest.approx(
                running * nodes / 3600, abs=1e-5
            )  # type: ignore[misc]
        assert (
            totals(weekly(app.repo, COURSE, pricing_of(app.environments.lab_of), until))["currency"] is None
        )

        # --since: the first week is left out, the second is whole.
        since_monday = weekly(app.repo, COURSE, pricing_of(app.environments.lab_of), until, MONDAY)
        assert [r.to_json() for r in since_monday] == rows[1:]
        # Prometheus says the same (all time, per course and lab; the pool's member counted with its lab).
        families = {
            f.name: f
            for f in UsageCollector(app.repo, pricing_of(app.environments.lab_of), lambda: until).collect()
        }
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples
        }
        cluster = {"course": COURSE, "lab": "cluster"}
        for state in ("running", "suspended"):
            key = ("stacklab_node_seconds_total", tuple(sorted({**cluster, "state": state}.items())))
            hours = sum(r[f"{state}_node_hours"] for r in rows if r["lab"] == "cluster")  # type: ignore[misc]
            assert samples[key] / 3600 == pytest.approx(hours, abs=1e-5)
            cost = (
                "stacklab_cost_total",
                tuple(sorted({**cluster, "state": state, "currency": "EUR"}.items())),
            )
            money = sum(r[f"{state}_cost"] for r in rows if r["lab"] == "cluster")  # type: ignore[misc]
            assert samples[cost] == pytest.approx(money, abs=1e-5)
        queued = ("stacklab_queued_seconds_total", tuple(sorted(cluster.items())))
        assert samples[queued] == pytest.approx(30)
        assert (
            samples[("stacklab_nodes", tuple(sorted({**cluster, "state": "running"}.items())))] == 4
        )  # erin, warm

        # The class staff see: learners only, never a pool's member.
        assert [m.record.learner for m in roster(app.repo, COURSE, until)] == [
            "erin"
        ]  # frank's lab is deleted

        # Over time (the chart): hourly averages of nodes running and suspended across Monday.
        chart = series(
            app.repo, COURSE, pricing_of(app.environments.lab_of), MONDAY - 7200, MONDAY + 7200, 3600
        )
        assert chart.running == [2.0, 0.0, 1 / 6, 0.0]  # frank: 600 s of one node in [MONDAY, +1 h)
        assert chart.suspended == [0.0, 2.0, 2.0, 2.0]
        assert chart.queued == [0.0, 0.0, 0.0, 0.0]
        assert sum(chart.running) * 3600 == pytest.approx(3600 * 2 + 600)
    finally:
        app.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the formats do not depend on it
async def test_cli_prints_the_report_as_a_table_json_and_csv(
    settings: Settings, providers: dict[str, MemoryProvider], tmp_path: Path
) -> None:
    clock = Clock(PAST)  # the CLI counts up to the real now
    app = memory_app(settings, providers, clock)
    (tmp_path / "cluster.yaml").write_text(PRICED)
    try:
        erin = app.environments.launch(tmp_path / "cluster.yaml", "erin", COURSE).id
        assert await settle(app, erin) == Observed.RUNNING
        clock.now += 5400
        await _move(app, erin, Desired.SUSPENDED, Observed.SUSPENDED)
        clock.now += 3600
        await _move(app, erin, Desired.DELETED, Observed.DELETED)
    finally:
        app.close()
    base = ["--data-dir", settings.data_dir, "--set", f"database_url={settings.database_url}"]
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(main, [*base, "report", "usage", "--course", COURSE, *args])
        assert result.exit_code == 0, result.output
        return result.output

    body = json.loads(run("--json"))
    assert body["course"] == COURSE and body["since"] is None
    expected = {"running_node_hours": 3.0, "suspended_node_hours": 2.0, "running_cost": 1.5}
    assert {k: body["rows"][0][k] for k in expected} == expected
    assert body["rows"][0]["week"] == "2025-10-06" and body["rows"][0]["suspended_cost"] == 0.2
    assert body["totals"]["running_cost"] == 1.5 and body["totals"]["currency"] == "EUR"

    table = run().splitlines()
    assert table[0] == f"course {COURSE} (weeks from Monday 00:00 UTC)"
    assert table[1].split() == [
        *("LAB", "WEEK", "ENVS", "RUNNING", "NODE-H", "SUSPENDED", "NODE-H", "QUEUED", "H"),
        *("RUNNING", "SUSPENDED"),
    ]
    assert table[2].split() == [
        "cluster",
        "2025-10-06",
        "1",
        "3.00",
        "2.00",
        "0.00",
        "1.50",
        "EUR",
        "0.20",
        "EUR",
    ]
    assert table[3].split() == ["total", "3.00", "2.00", "0.00", "1.50", "EUR", "0.20", "EUR"]

    rows = list(csv.DictReader(io.StringIO(run("--csv"))))
    assert rows == [
        {
            "course": COURSE,
            "lab": "cluster",
            "week": "2025-10-06",
            "kind": "learners",
            "environments": "1",
            "running_node_hours": "3.0",
            "suspended_node_hours": "2.0",
            "queued_hours": "0.0",
            "running_cost": "1.5",
            "suspended_cost": "0.2",
            "currency": "EUR",
        }
    ]
    assert "no lab of course" in run("--since", "2025-10-20")
    refused = runner.invoke(main, [*base, "report", "usage", "--course", COURSE, "--since", "last week"])
    assert refused.exit_code == 2 and "not a date" in refused.output
