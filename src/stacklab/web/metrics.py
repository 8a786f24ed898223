"""Prometheus metrics: environments by state, launch and resume latency, job failures, open terminals."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from stacklab.store.repository import Repository
from stacklab.store.tables import EnvironmentRecord

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

    def render(self) -> bytes:
        return generate_latest(self.registry)
