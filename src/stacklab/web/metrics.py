"""Prometheus metrics: environments by state, launch and resume latency, job failures, open terminals, and the
cost report's series (node-seconds running and suspended, seconds queued, their cost) per course and lab."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from stacklab.events import MEASURED, Event
from stacklab.store.repository import Repository
from stacklab.store.tables import EnvironmentRecord
from stacklab.store.usage_report import PricingOf, intervals

LATENCY_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600)


class _LiveGauges(Collector):
    """Values read at scrape time, so they are never stale."""

    def __init__(
        self, repo: Repository, open_terminals: Callable[[], int], runner_failures: Callable[[], int]
    ):
        self.repo = repo
        self.open_terminals = open_terminals
        self.runner_failures = runner_failures

    def collect(self):  # type: ignore[no-untyped-def]
        by_state = GaugeMetricFamily(
            "stacklab_environments", "Environments by observed state", labels=["observed"]
        )
        with self.repo.read() as session:
            rows = session.execute(
                select(EnvironmentRecord.observed, func.count()).group_by(EnvironmentRecord.observed)
            )
            for state, count in rows:
                by_state.add_metric([state], count)
        yield by_state
        yield GaugeMetricFamily(
            "stacklab_open_terminals", "Open browser terminals", value=self.open_terminals()
        )
        yield GaugeMetricFamily(
            "stacklab_job_crashes", "Jobs that raised an unexpected error", value=self.runner_failures()
        )


class UsageCollector(Collector):
    """The cost report's figures per course and lab, from the recorded transitions (store/usage_report.py):
    totals since each environment began, read again at most every REFRESH_S (they cost a query per state
    and 500 environments), and what runs now (one grouped query, at every scrape)."""

    REFRESH_S = 60.0

    def __init__(self, repo: Repository, pricing_of: PricingOf, clock: Callable[[], float] = time.time):
        self.repo = repo
        self.pricing_of = pricing_of
        self.clock = clock
        self._totals: list[tuple[str, str, str, float, float | None, str | None]] = []
        self._read_at = float("-inf")

    def _read_totals(self) -> list[tuple[str, str, str, float, float | None, str | None]]:
        now = self.clock()
        if now - self._read_at < self.REFRESH_S:
            return self._totals
        with self.repo.read() as session:
            records = list(session.scalars(select(EnvironmentRecord)))
        by_id = {r.id: r for r in records}
        sums: dict[tuple[str, str, str], list] = {}  # (course, lab, state) -> [seconds, cost, currency]
        for state, found in intervals(self.repo, records, now).items():
            for env_id, begin, end in found:
                record = by_id[env_id]
                pricing = self.pricing_of(record)
                nodes = 1 if state == "queued" else pricing.nodes
                price = None if state == "queued" else getattr(pricing, state)
                entry = sums.setdefault((record.course, record.lab_id, state), [0.0, 0.0, pricing.currency])
                entry[0] += (end - begin) * nodes
                if price is None or entry[2] != pricing.currency:
                    entry[1] = None
                elif entry[1] is not None:
                    entry[1] += (end - begin) / 3600 * nodes * price
        self._totals = [(c, lab, st, v[0], v[1], v[2]) for (c, lab, st), v in sorted(sums.items())]
        self._read_at = now
        return self._totals

    def collect(self):  # type: ignore[no-untyped-def]
        seconds = CounterMetricFamily(
            "stacklab_node_seconds",
            "Node-seconds running or suspended, from the recorded transitions",
            labels=["course", "lab", "state"],
        )
        queued = CounterMetricFamily(
            "stacklab_queued_seconds",
            "Seconds labs waited for a provider (observed new)",
            labels=["course", "lab"],
        )
        cost = CounterMetricFamily(
            "stacklab_cost",
            "Node-hours times the provider's declared price per node-hour",
            labels=["course", "lab", "state", "currency"],
        )
        for course, lab, state, total, money, currency in self._read_totals():
            if state == "queued":
                queued.add_metric([course, lab], total)
                continue
            seconds.add_metric([course, lab, state], total)
            if money is not None and currency:
                cost.add_metric([course, lab, state, currency], money)
        yield seconds
        yield queued
        yield cost
        now = GaugeMetricFamily(
            "stacklab_nodes",
            "Nodes running or suspended now, and labs queued (observed new, waiting for a provider)",
            labels=["course", "lab", "state"],
        )
        with self.repo.read() as session:
            rows = list(
                session.execute(
                    select(EnvironmentRecord)
                    .where(EnvironmentRecord.observed.in_(("running", "suspended", "new")))
                    .where(EnvironmentRecord.desired != "deleted")
                ).scalars()
            )
        counts: dict[tuple[str, str, str], int] = {}
        for record in rows:
            state = "queued" if record.observed == "new" else record.observed
            weight = 1 if state == "queued" else self.pricing_of(record).nodes
            key = (record.course, record.lab_id, state)
            counts[key] = counts.get(key, 0) + weight
        for (course, lab, state), value in sorted(counts.items()):
            now.add_metric([course, lab, state], value)
        yield now


class Metrics:
    def __init__(
        self, repo: Repository, open_terminals: Callable[[], int], runner_failures: Callable[[], int]
    ):
        self.registry = CollectorRegistry()
        self.launch_seconds = Histogram(
            "stacklab_launch_seconds",
            "Launch until every node answers SSH",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.resume_seconds = Histogram(
            "stacklab_resume_seconds",
            "Resume step until every node answers SSH",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.job_failures = Counter(
            "stacklab_job_failures",
            "Steps that ended in a failure, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.registry.register(_LiveGauges(repo, open_terminals, runner_failures))

    def observe(self, event: str, value: float, reason: str = "") -> None:
        """The controller's events: launched, resumed, failed."""
        if event == "launched":
            self.launch_seconds.observe(value)
        elif event == "resumed":
            self.resume_seconds.observe(value)
        elif event == "failed":
            self.job_failures.labels(reason=reason or "unknown").inc()

    def on_event(self, event: Event) -> None:
        """The measurements of passes other processes ran (stacklab worker), as the bus brings them: with
        runner = celery, every web process counts every worker's launches, resumes and failures."""
        if event.kind in MEASURED:
            self.observe(event.kind, event.seconds, event.reason)

    def render(self) -> bytes:
        return generate_latest(self.registry)
