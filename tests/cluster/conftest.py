"""Fixtures of the cluster tests: a fresh PostgreSQL database, two `stacklab serve` behind nginx on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.cluster.cluster import Cluster, web_cluster
from tests.conftest import POSTGRES_URL, _server_database
from tests.support.lxc import IMAGE_DIR, require_lxc, run_sync


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    yield from _server_database(POSTGRES_URL, "postgres")


@pytest.fixture(scope="module")
def cluster(postgres_url: str) -> Iterator[Cluster]:
    require_lxc()
    from stacklab.providers.local.image import ensure_base_image

    run_sync(ensure_base_image(IMAGE_DIR, progress=lambda msg: print(f"[image] {msg}", flush=True)))
    with web_cluster(postgres_url) as running:
        yield running
