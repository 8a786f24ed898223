"""The `stacklab` and `course_from_git` roles applied for real to a local LXC node, checked from the host.

One node (LocalProvider on a temporary root), an inventory with the node's SSH key (user `learner`, sudo), and
ansible-playbook from the deploy venv:

- `stacklab` installs the service from a wheel of this repo built on the host and copied in, a systemd unit
  and nginx in front; no Open edX on the node, so the XBlock step is off. From the host: /healthz answers
  through nginx, and a websocket upgrade through nginx reaches the terminal endpoint (closed with 44xx).
  nginx also routes Tutor's MEILISEARCH_PUBLIC_URL host (meilisearch.<LMS host>) to the Meilisearch upstream:
  Meilisearch itself is not installable here, so a stand-in HTTP server on the node answers its /health.
- `stacklab` with runner celery, as the cluster's app and worker servers have it, on the same node: the web
  unit and the `stacklab-worker` unit on the host's MariaDB and Redis (SSH remote forwards to the node's
  loopback); the worker runs the passes of a lab launched through nginx.
- `course_from_git` gets the course as a git bundle (nodes cannot reach the host); its import command appends
  a line to a log on the node: it runs once, not again when nothing changed, and again after a new commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import httpx
import pytest
import websockets
from tests.deploy.tutor_env import Tutor, env_file, xblock_settings
from tests.support.lxc import lxc_nodes, run_sync

from stacklab.providers.base import NodeSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "xblock/src"))
from stacklab_xblock.client import ServiceConfig, StacklabClient

pytestmark = [pytest.mark.deploy, pytest.mark.lxc]

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE = ROOT / "deploy/ansible"
LOGIN = "learner"
IMPORT_LOG = "/var/log/course-import.log"
MEILISEARCH_HOST = "meilisearch.learn.example.org"
# Answers like Meilisearch's GET /health, 404 elsewhere; says which Host it was asked for.
MEILISEARCH_STANDIN = """
import http.server, json
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        found = self.path == "/health"
        body = json.dumps({"status": "available"} if found else {"code": "not_found"}).encode()
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Standin-Host", self.headers.get("Host", ""))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", 7700), H).serve_forever()
"""
LABS_HOST = "labs.learn.example.org"
WORKER_METRICS_PORT = 9464
REDIS_DB = 12  # the broker's database on the host's shared Redis
SEED = secrets.token_hex(24)
HOST_CAS = sorted(str(p) for p in Path("/usr/local/share/ca-certificates").glob("**/*.crt"))

BOOTSTRAP = """\
- name: Python for Ansible (the LXC base image is minimal)
  hosts: all
  gather_facts: false
  become: true
  tasks:
    - name: Install python3
      ansible.builtin.raw: >-
        test -x /usr/bin/python3 || (apt-get update -q &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3)
      changed_when: false
    - name: Trust the host's extra CAs (an egress proxy that re-signs TLS), for pip on the node
      ansible.builtin.copy:
        src: "{{ item }}"
        dest: /usr/local/share/ca-certificates/
        mode: "0644"
      loop: "{{ host_ca_certificates }}"
      register: host_cas
    - name: Update the CA store
      ansible.builtin.command: update-ca-certificates
      when: host_cas is changed
      changed_when: true
"""

SITE = (
    BOOTSTRAP
    + """
- name: Apply the roles
  hosts: all
  become: true
  roles:
    - role: stacklab
    - role: course_from_git
"""
)

SERVICE = (
    BOOTSTRAP
    + """
- name: Apply the stacklab role
  hosts: all
  become: true
  roles:
    - role: stacklab
"""
)

COURSE = (
    BOOTSTRAP
    + """
- name: Apply the course role
  hosts: all
  become: true
  roles:
    - role: course_from_git
"""
)


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="stacklab-roles-", dir="/var/tmp") as tmp:
        yield Path(tmp)


@pytest.fixture(scope="module")
def node() -> Iterator[dict[str, str]]:
    """One LXC node on its own provider root; deleted (root and all) at the end, even on failure."""
    spec = NodeSpec("app", memory_mb=1536, pids_max=4096)
    with lxc_nodes(f"slr-{os.getpid() % 100000:05d}", LOGIN, (spec,)) as (addresses, key_file):
        yield {"ip": addresses["app"], "key_file": str(key_file)}


@pytest.fixture(scope="module")
def wheel(workdir: Path) -> Path:
    """A wheel of this repo, built on the host."""
    dist = workdir / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (built,) = dist.glob("stacklab-*.whl")
    return built


def service_variables(wheel: Path) -> dict:
    """The stacklab role's variables in these tests: this repo's wheel, no Open edX on the node, a seed of
    this run for the secrets, the service on its own host name for an LMS at learn.example.org."""
    return {
        "stacklab_wheel": str(wheel),
        "stacklab_install_xblock": False,
        "stacklab_pip_environment": {"PIP_CERT": "/etc/ssl/certs/ca-certificates.crt"},
        "host_ca_certificates": HOST_CAS,
        "stacklab_secret_seed": SEED,
        "stacklab_public_host": LABS_HOST,
        "stacklab_allowed_origins": ["http://learn.example.org", "http://studio.learn.example.org"],
    }


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def commit_and_bundle(course: Path, bundle: Path, text: str) -> str:
    (course / "course.xml").write_text(f'<course org="stacklab" course="roles" url_name="{text}"/>\n')
    git(course, "add", "-A")
    git(course, "commit", "-q", "-m", text)
    git(course, "bundle", "create", "-q", str(bundle), "--all")
    return git(course, "rev-parse", "HEAD")


class Ansible:
    def __init__(self, workdir: Path, node: dict[str, str], deploy_env: dict[str, str], variables: dict):
        self.workdir = workdir
        self.env = {
            **deploy_env,
            "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"),
            "ANSIBLE_ROLES_PATH": str(ANSIBLE / "roles"),
            "ANSIBLE_HOST_KEY_CHECKING": "False",
        }
        (workdir / "inventory.ini").write_text(
            f"app ansible_host={node['ip']} ansible_user={LOGIN} ansible_become=true "
            f"ansible_ssh_private_key_file={node['key_file']} "
            "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'\n"
        )
        (workdir / "vars.json").write_text(json.dumps(variables))
        (workdir / "site.yml").write_text(SITE)
        (workdir / "course.yml").write_text(COURSE)
        (workdir / "service.yml").write_text(SERVICE)

    def play(self, playbook: str) -> tuple[str, float]:
        started = time.monotonic()
        result = subprocess.run(
            ["ansible-playbook", "-i", "inventory.ini", "-e", "@vars.json", playbook],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        took = time.monotonic() - started
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
        return result.stdout, took


def node_run(node: dict[str, str], command: str) -> str:
    async def go() -> str:
        async with asyncssh.connect(
            node["ip"], username=LOGIN, client_keys=[node["key_file"]], known_hosts=None
        ) as conn:
            return str((await conn.run(command, check=True, timeout=60)).stdout)

    return run_sync(go())


def task_result(output: str, task: str) -> str:
    """The first result line ansible-playbook printed for a task (e.g. "changed: [app]")."""
    after_header = output.split(f"TASK [{task}]", 1)[1].split("\n", 1)[1]
    return next(line.strip() for line in after_header.splitlines() if line.strip())


async def websocket_close_code(url: str) -> int | None:
    """Open a websocket through nginx and read until the service closes it; return the close code."""
    async with websockets.connect(url, open_timeout=10, close_timeout=5) as ws:
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed:
            pass
        return ws.close_code


def test_stacklab_and_course_roles_on_an_lxc_node(
    node: dict[str, str], wheel: Path, workdir: Path, deploy_env: dict[str, str]
) -> None:
    course = workdir / "course"
    course.mkdir()
    git(course, "init", "-q", "-b", "main")
    bundle = workdir / "course.bundle"
    first = commit_and_bundle(course, bundle, "one")

    ansible = Ansible(
        workdir,
        node,
        deploy_env,
        {
            **service_variables(wheel),
            "stacklab_meilisearch_host": MEILISEARCH_HOST,
            "stacklab_meilisearch_upstream": "http://127.0.0.1:7700",
            "course_from_git_bundle": str(bundle),
            "course_from_git_version": "main",
            "course_from_git_environment": {},
            "course_from_git_import_command": (
                f"sh -c 'echo imported $(git rev-parse HEAD) >> {IMPORT_LOG}'"
            ),
        },
    )
    first_out, took = ansible.play("site.yml")
    print(f"\nsite.yml (stacklab + course_from_git): {took:.0f} s")

    # The service answers through nginx...
    base = f"http://{node['ip']}"
    response = httpx.get(f"{base}/healthz", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["server"].startswith("nginx")
    # ...and nginx carries the websocket upgrade to it: the service itself refuses an unknown environment.
    code = run_sync(websocket_close_code(f"ws://{node['ip']}/api/v1/environments/00000000/terminal/main"))
    assert code is not None and 4400 <= code < 4500, code
    print(f"terminal websocket through nginx: closed by the service with {code}")
    assert node_run(node, "systemctl is-active stacklab nginx").split() == ["active", "active"]

    # Tutor's MEILISEARCH_PUBLIC_URL host goes to Meilisearch (a stand-in here), every other host to stacklab
    node_run(
        node, f"sudo systemd-run --unit meilisearch-standin python3 -c {shlex.quote(MEILISEARCH_STANDIN)}"
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        search = httpx.get(f"{base}/health", headers={"Host": MEILISEARCH_HOST}, timeout=10)
        if search.status_code != 502:
            break
        time.sleep(0.5)
    assert search.status_code == 200, search.text
    assert search.json() == {"status": "available"}
    assert search.headers["server"].startswith("nginx")
    assert search.headers["x-standin-host"] == MEILISEARCH_HOST
    assert httpx.get(f"{base}/healthz", headers={"Host": MEILISEARCH_HOST}, timeout=10).status_code == 404
    other = httpx.get(f"{base}/health", headers={"Host": "learn.example.org"}, timeout=10)
    assert "x-standin-host" not in other.headers
    assert httpx.get(f"{base}/healthz", headers={"Host": "learn.example.org"}, timeout=10).json() == {
        "status": "ok"
    }
    print(f"{MEILISEARCH_HOST} through nginx: /health answered by the Meilisearch stand-in")

    # The course was imported once, from the first commit.
    assert task_result(first_out, "course_from_git : Import the course") == "changed: [app]"
    assert node_run(node, f"cat {IMPORT_LOG}").splitlines() == [f"imported {first}"]

    # Unchanged: a second run of both roles changes nothing, and the course is not imported again.
    out, took = ansible.play("site.yml")
    print(f"site.yml again, unchanged: {took:.0f} s")
    assert task_result(out, "course_from_git : Import the course") == "skipping: [app]"
    assert " changed=0 " in out.split("PLAY RECAP")[1], out[-3000:]
    assert node_run(node, f"cat {IMPORT_LOG}").splitlines() == [f"imported {first}"]

    # A new commit: imported again.
    second = commit_and_bundle(course, bundle, "two")
    _, took = ansible.play("course.yml")
    print(f"course.yml after a new commit: {took:.0f} s")
    assert node_run(node, f"cat {IMPORT_LOG}").splitlines() == [f"imported {first}", f"imported {second}"]


def test_the_role_connects_the_lms_and_the_service(
    node: dict[str, str],
    wheel: Path,
    workdir: Path,
    deploy_env: dict[str, str],
    tutor_venv: Path,
    tmp_path: Path,
) -> None:
    """The service's env file and the LMS settings the role renders hold one key: Tutor renders the role's LMS
    plugin into XBLOCK_SETTINGS, and the service (started by systemd from its env file) launches a lab for a
    JWT the XBlock's client signs with that key, through nginx on the service's own host name."""
    ansible = Ansible(workdir, node, deploy_env, service_variables(wheel))
    ansible.play("service.yml")
    service = env_file(node_run(node, "sudo cat /etc/stacklab/stacklab.env"))
    assert node_run(node, "sudo stat -c %a /etc/stacklab/stacklab.env").strip() == "600"

    tutor = Tutor(tutor_venv, tmp_path)  # the real Tutor renders the role's plugin as the app servers' does
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "stacklab_lms.yml").write_text(
        node_run(node, "sudo cat /etc/stacklab-lms/tutor-stacklab-lms.yml")
    )
    tutor("plugins", "enable", "stacklab_lms")
    tutor("config", "save", "--set", "LMS_HOST=learn.example.org")
    lms = xblock_settings(tutor.file("env/apps/openedx/settings/lms/production.py"))
    assert lms["service_url"] == f"http://{LABS_HOST}"
    keys = json.loads(service["STACKLAB_LMS_KEYS"].strip("'"))
    assert keys == {lms["lms_key"]: {"secret": lms["lms_secret"], "courses": ["*"]}}

    def launch(secret: str) -> httpx.Response:
        token = StacklabClient(ServiceConfig(lms["service_url"], lms["lms_key"], secret)).server_token()
        # labs.<LMS host> resolves to the load balancer in a cluster; here it is the node's nginx
        return httpx.post(
            f"http://{node['ip']}/api/v1/launch",
            headers={"Host": LABS_HOST, "Authorization": f"Bearer {token}"},
            json={"course": "course-v1:Org+Roles+2026", "lab": "hello-lab", "learner": "learner-ann"},
            timeout=30,
        )

    assert launch(secrets.token_hex(24)).status_code == 401  # another key: refused
    accepted = launch(lms["lms_secret"])
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    assert body["lab_url"].startswith(f"http://{LABS_HOST}/lab/")
    status = httpx.get(
        f"http://{node['ip']}/api/v1/environments/{body['environment']['id']}",
        headers={"Host": LABS_HOST, "Authorization": f"Bearer {body['token']}"},
        timeout=10,
    )
    assert status.status_code == 200, status.text
    assert (status.json()["course"], status.json()["learner"]) == ("course-v1:Org+Roles+2026", "learner-ann")
    print(f"\nlaunch through nginx on {LABS_HOST} accepted: environment {body['environment']['id']} created")


@contextlib.contextmanager
def host_ports_on_node(node: dict[str, str], ports: dict[int, int]) -> Iterator[None]:
    """Each host port (value) reachable on the node's 127.0.0.1 at the key, over SSH remote forwards: the
    node does not reach the host's MariaDB and Redis otherwise (they listen on the host's loopback)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def connect() -> asyncssh.SSHClientConnection:
        conn = await asyncssh.connect(
            node["ip"], username=LOGIN, client_keys=[node["key_file"]], known_hosts=None
        )
        for on_node, on_host in ports.items():
            await conn.forward_remote_port("127.0.0.1", on_node, "127.0.0.1", on_host)
        return conn

    conn = asyncio.run_coroutine_threadsafe(connect(), loop).result(60)
    try:
        yield
    finally:
        conn.close()
        asyncio.run_coroutine_threadsafe(conn.wait_closed(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@contextlib.contextmanager
def mariadb_database(name: str, password: str) -> Iterator[None]:
    """A database and its user on the host's MariaDB (the Galera cluster's stand-in), dropped at the end."""
    import pymysql

    root = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
    try:
        with root.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
            cur.execute(f"CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'")
            cur.execute(f"GRANT ALL ON {name}.* TO '{name}'@'%'")
        yield
    finally:
        with root.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
            cur.execute(f"DROP USER IF EXISTS '{name}'@'%'")
        root.close()


def worker_jobs(node: dict[str, str]) -> float:
    """The passes the node's `stacklab worker` has run (its /metrics, stacklab_worker_jobs_total)."""
    text = httpx.get(f"http://{node['ip']}:{WORKER_METRICS_PORT}/metrics", timeout=5).text
    return sum(
        float(line.split()[-1]) for line in text.splitlines() if line.startswith("stacklab_worker_jobs_total")
    )


def wait_until(probe, what: str, timeout_s: float = 90):  # type: ignore[no-untyped-def]
    """`probe()` until truthy, bounded; fail naming `what` and the last answer."""
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        try:
            last = probe()
            if last:
                return last
        except (httpx.HTTPError, OSError) as exc:  # not up yet
            last = exc
        time.sleep(1)
    pytest.fail(f"{what}: not within {timeout_s:g} s (last: {last!r})")


def unit(node: dict[str, str], name: str, *props: str) -> dict[str, str]:
    shown = node_run(node, f"systemctl show {name} " + " ".join(f"-p {p}" for p in props))
    return dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)


def test_the_role_runs_web_and_worker_apart_on_a_shared_database_and_broker(
    node: dict[str, str], wheel: Path, workdir: Path, deploy_env: dict[str, str]
) -> None:
    """runner celery as the cluster has it: the role gives the node `stacklab serve` (web, behind nginx) and a
    `stacklab worker` unit, both on one MariaDB database and one Redis broker (the host's, forwarded to the
    node), migrated once; a launch through the web side's API is run by the worker (its /metrics counts the
    passes; the node has no LXC, so the lab's create fails there, with the reason recorded). The worker stops
    on SIGTERM cleanly and comes back after a crash."""
    database, password = f"stl_roles_{os.getpid()}", secrets.token_hex(12)
    variables = {
        **service_variables(wheel),
        "stacklab_runner": "celery",
        "stacklab_worker": True,
        "stacklab_worker_metrics_port": WORKER_METRICS_PORT,
        "stacklab_database_url": f"mysql+pymysql://{database}:{password}@127.0.0.1:13306/{database}",
        "stacklab_broker_url": f"redis://127.0.0.1:16379/{REDIS_DB}",
        "stacklab_events_url": f"redis://127.0.0.1:16379/{REDIS_DB}",
    }
    with (
        mariadb_database(database, password),
        host_ports_on_node(node, {13306: 3306, 16379: 6379}),
    ):
        out, took = Ansible(workdir, node, deploy_env, variables).play("service.yml")
        print(f"\nservice.yml with runner celery and a worker: {took:.0f} s")
        service = env_file(node_run(node, "sudo cat /etc/stacklab/stacklab.env"))
        assert service["STACKLAB_SECRET_KEY"] not in out  # no_log: the secret never reaches the log
        assert service["STACKLAB_BROKER_URL"] == variables["stacklab_broker_url"]
        assert service["STACKLAB_EVENTS_URL"] == variables["stacklab_events_url"]
        assert 'runner = "celery"' in node_run(node, "sudo cat /etc/stacklab/stacklab.toml")
        assert "Migrate the database" in out  # once, before the units (run_once)
        assert node_run(node, "systemctl is-active stacklab stacklab-worker nginx").split() == ["active"] * 3
        try:
            before = wait_until(lambda: (worker_jobs(node),), "the worker's /metrics")[0]
            lms_key = json.loads(service["STACKLAB_LMS_KEYS"].strip("'"))
            ((key_id, key),) = lms_key.items()
            token = StacklabClient(ServiceConfig(f"http://{LABS_HOST}", key_id, key["secret"])).server_token()
            launched = httpx.post(
                f"http://{node['ip']}/api/v1/launch",
                headers={"Host": LABS_HOST, "Authorization": f"Bearer {token}"},
                json={"course": "course-v1:Org+Roles+2026", "lab": "hello-lab", "learner": "learner-cy"},
                timeout=30,
            )
            assert launched.status_code == 200, launched.text
            body = launched.json()

            seen: dict[str, dict] = {}

            def looked_at() -> dict | None:
                record = httpx.get(
                    f"http://{node['ip']}/api/v1/environments/{body['environment']['id']}",
                    headers={"Host": LABS_HOST, "Authorization": f"Bearer {body['token']}"},
                    timeout=10,
                ).json()
                seen["record"] = record
                return record if worker_jobs(node) > before and record["observed"] == "failed" else None

            try:
                record = wait_until(looked_at, "a pass of the worker over the launched lab")
            except BaseException:
                print(f"the lab: {seen.get('record')}")
                print(node_run(node, "sudo journalctl -u stacklab-worker -n 60 --no-pager"))
                raise
            print(f"worker ran {worker_jobs(node) - before:g} passes; the lab: {record['message']}")

            # SIGTERM: a warm shutdown, no SIGKILL; a crash (SIGKILL): systemd starts it again
            node_run(node, "sudo systemctl stop stacklab-worker")
            assert unit(node, "stacklab-worker", "Result")["Result"] == "success"
            node_run(node, "sudo systemctl start stacklab-worker")
            pid = unit(node, "stacklab-worker", "MainPID")["MainPID"]
            node_run(node, f"sudo kill -9 {pid}")
            wait_until(
                lambda: (
                    (s := unit(node, "stacklab-worker", "MainPID", "ActiveState", "NRestarts"))
                    and s["ActiveState"] == "active"
                    and s["MainPID"] not in ("0", pid)
                    and int(s["NRestarts"]) >= 1
                ),
                "the worker restarted after SIGKILL",
            )
        finally:  # the database and the broker go away with this block
            node_run(node, "sudo systemctl stop stacklab stacklab-worker")
