"""The whole distributed deployment as real processes: two web processes (runner = celery: they only
submit) behind a real nginx balancing round-robin, two `stacklab worker` processes, a real broker and a
shared database. Learners launch through the LMS's API at nginx, several times each at once; the
database and the lease keep it to one lab and one stack per learner whichever process answered."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
from tests.cluster.cluster import COURSE, LMS_KEY, LMS_SECRET, free_port, lms_jwt, start_nginx
from tests.distributed.conftest import Cluster
from tests.distributed.shared_provider import creates_by_stack, stacks
from tests.e2e.helpers import wait_for

from stacklab.types import Observed

LEARNERS = 50
TIMES = 4


@contextlib.contextmanager
def web_tier(cluster: Cluster) -> Iterator[tuple[str, list[int]]]:
    """Two web processes of the deployment (stopped with it) and nginx in front, stopped on the way out;
    nginx's URL and the web processes' pids."""
    ports = [free_port(), free_port()]
    nginx_port = free_port()
    webs = []
    for port in ports:
        env = {
            "STACKLAB_HTTP_PORT": str(port),
            "STACKLAB_PUBLIC_URL": f"http://127.0.0.1:{nginx_port}",
            "STACKLAB_LABS_DIR": str(cluster.tmp),
            "STACKLAB_LMS_KEYS": json.dumps({LMS_KEY: {"secret": LMS_SECRET, "courses": ["*"]}}),
            "STACKLAB_ADMIN_PASSWORD": "web-tier-operator-pass",
        }
        webs += cluster.start(1, role="serve", env=env)
    nginx = start_nginx(cluster.tmp / "nginx", nginx_port, ports)
    try:
        yield f"http://127.0.0.1:{nginx_port}", [web.pid for web in webs]
    finally:
        nginx.terminate()
        nginx.wait(10)


def launch(url: str, learner: str) -> dict:
    response = httpx.post(
        f"{url}/api/v1/launch",
        json={"course": COURSE, "lab": "demo", "learner": learner},
        headers={"Authorization": f"Bearer {lms_jwt()}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()


def launches_served(cluster: Cluster, pid: int) -> int:
    """Launch requests a web process answered, from its own access log."""
    logs = zip(cluster.logs, cluster.processes, strict=True)
    log = next(log for log, process in logs if process.pid == pid)
    return len(re.findall(r'"POST /api/v1/launch HTTP/1\.[01]" 200', log.read_text()))


def test_fifty_learners_launching_four_times_through_nginx_get_fifty_labs_made_once(cluster: Cluster) -> None:
    cluster.lab()  # the lab file the web processes offer (labs_dir), id "demo"
    cluster.start(2)
    learners = [f"learner-{n % LEARNERS}" for n in range(TIMES * LEARNERS)]
    with web_tier(cluster) as (url, web_pids), ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda learner: launch(url, learner), learners))
        served = [launches_served(cluster, pid) for pid in web_pids]
        status = httpx.get(  # the learner sees the lab through nginx with the token the launch gave
            f"{url}/api/v1/environments/{answers[0]['environment']['id']}",
            headers={"Authorization": f"Bearer {answers[0]['token']}"},
            timeout=10,
        )
    by_learner: dict[str, set[str]] = {}
    for learner, answer in zip(learners, answers, strict=True):
        by_learner.setdefault(learner, set()).add(answer["environment"]["id"])
    assert all(len(ids) == 1 for ids in by_learner.values()), by_learner
    ids = sorted({env_id for ids in by_learner.values() for env_id in ids})
    repo = cluster.service().repo
    assert len(ids) == LEARNERS and len(repo.list()) == LEARNERS
    assert all(count > 0 for count in served) and sum(served) == len(learners), served  # nginx used both
    assert status.status_code == 200 and status.json()["id"] == answers[0]["environment"]["id"], status.text
    wait_for(lambda: all(repo.get(i).observed == Observed.RUNNING for i in ids), 90, "every lab runs")
    made = creates_by_stack(cluster.cloud)
    assert sorted(made) == sorted(repo.get(env_id).stack_name for env_id in ids)
    assert set(made.values()) == {1}, {name: n for name, n in made.items() if n != 1}
    assert len(stacks(cluster.cloud)) == LEARNERS
