"""The operator page's "Workers and hosts" section, end to end: a real `stacklab serve` (runner = celery, on
PostgreSQL and RabbitMQ) and two real `stacklab worker` processes standing for two local hosts, in chromium.

The operator sees both hosts live with their capacity, every process with its kind, host, heartbeat and
load; when host B's worker is killed, host B turns lost and its worker silent without a reload. axe finds
no serious violation in the section.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu import Connection, Queue
from tests.conftest import POSTGRES_URL, _server_database
from tests.e2e.conftest import CHECKOUT_CLI, ROOT, Stacklab, serving_stacklab
from tests.e2e.helpers import serious_violations, wait_for
from tests.support.processes import stop_all

from stacklab.envs.hosts import host_queue

pytestmark = [pytest.mark.e2e, pytest.mark.db]

RABBITMQ_URL = os.environ.get("STACKLAB_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//")
SECRET = "members-e2e-secret-key-0123456789abcdef"
HOSTS = {"host-a": 2, "host-b": 3}


@pytest.fixture(scope="module")
def deployment(built_pages: None) -> Iterator[tuple[Stacklab, dict[str, subprocess.Popen[bytes]]]]:
    queue = f"stacklab-e2e-{uuid.uuid4().hex[:8]}"
    for database_url in _server_database(POSTGRES_URL, "postgres"):
        shared = {
            "STACKLAB_RUNNER": "celery",
            "STACKLAB_BROKER_URL": RABBITMQ_URL,
            "STACKLAB_DATABASE_URL": database_url,
            "STACKLAB_SECRET_KEY": SECRET,
            "STACKLAB_JOB_QUEUE": queue,
            "STACKLAB_MEMBER_HEARTBEAT_S": "0.5",
            "STACKLAB_MEMBER_TTL_S": "2",
            "STACKLAB_HOST_LOST_AFTER_S": "2",
        }
        with serving_stacklab("stacklab-members-e2e-", extra_env=shared) as service:
            workers: dict[str, subprocess.Popen[bytes]] = {}
            work = Path(tempfile.mkdtemp(prefix="stacklab-members-workers-", dir="/var/tmp"))
            try:
                for host, capacity in HOSTS.items():
                    env = {k: v for k, v in service.env.items() if not k.startswith("STACKLAB_")}
                    env.update(
                        shared,
                        STACKLAB_DATA_DIR=str(work / host),
                        STACKLAB_LOCAL_HOST=host,
                        STACKLAB_LOCAL_CAPACITY=str(capacity),
                    )
                    with (work / f"{host}.log").open("wb") as out:
                        workers[host] = subprocess.Popen(
                            [*CHECKOUT_CLI, "worker"], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
                        )
                yield service, workers
            finally:
                stop_all(workers.values())
                for log in sorted(work.glob("*.log")):
                    print(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}")
                shutil.rmtree(work, ignore_errors=True)
                with Connection(RABBITMQ_URL, connect_timeout=5) as connection:
                    for name in (queue, *(host_queue(queue, host) for host in HOSTS)):
                        Queue(name, channel=connection.channel()).delete()


def host_cells(page, host: str) -> list[str]:  # type: ignore[no-untyped-def]
    """[host, state, labs, capacity, live workers, last heartbeat] as the operator reads them."""
    row = page.locator(f"#hosts-rows tr[data-host='{host}']")
    return [cell.strip() for cell in row.locator("td").all_text_contents()] if row.count() else []


@pytest.fixture
def page(browser) -> Iterator[object]:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)  # axe's script
    yield context.new_page()
    context.close()


def test_the_operator_sees_workers_and_hosts_with_their_load_and_a_lost_host(page, deployment) -> None:  # type: ignore[no-untyped-def]
    service, workers = deployment
    page.set_default_timeout(30_000)
    page.goto(f"{service.url}/admin")
    page.wait_for_url("**/admin/login")
    page.get_by_label("Operator").fill("admin")
    page.get_by_label("Password").fill(service.admin_password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Workers and hosts").wait_for()

    wait_for(lambda: all(host_cells(page, h)[1:2] == ["live"] for h in HOSTS), 60, "both hosts live")
    for host, capacity in HOSTS.items():
        name, state, labs, shown_capacity, live_workers, _ = host_cells(page, host)
        assert (name, state, labs, shown_capacity, live_workers) == (host, "live", "0", str(capacity), "1")
    processes = page.get_by_role("table", name="Processes")
    for host in HOSTS:
        row = processes.locator("tr", has_text=host)
        assert row.count() == 1 and "live" in row.inner_text()
        assert str(HOSTS[host]) in row.inner_text().split("\t")[-1]
        assert row.inner_text().split("\t")[0].startswith("worker")
    assert processes.locator("tr", has_text="(scheduler)").count() == 1  # one worker leads
    assert processes.locator("tr", has_text="web").count() >= 1  # the serve itself
    assert "runner celery" in page.locator("#members-status").inner_text()
    assert serious_violations(page, "#members-section") == []

    workers["host-b"].kill()
    workers["host-b"].wait(10)
    wait_for(lambda: host_cells(page, "host-b")[1:2] == ["lost"], 30, "host B shows lost")
    assert host_cells(page, "host-a")[1] == "live"
    row_b = processes.locator("tr", has_text="host-b")
    assert "silent" in row_b.inner_text()
    assert serious_violations(page, "#members-section") == []
