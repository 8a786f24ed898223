"""Two `stacklab serve` behind a real nginx on a fresh PostgreSQL database: the setup of the benchmarks that
compare one web process with several (terminal_relay.py, api_nginx.py). Everything is removed afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from bench.common import POSTGRES_ADMIN_URL
from tests.cluster.cluster import Cluster, web_cluster
from tests.conftest import _server_database


@contextlib.contextmanager
def postgres_web_cluster() -> Iterator[Cluster]:
    """The cluster of tests/cluster on a database of its own, dropped at the end."""
    with (
        contextlib.contextmanager(_server_database)(POSTGRES_ADMIN_URL, "postgres") as url,
        web_cluster(url) as cluster,
    ):
        yield cluster
