"""tutor-stacklab with the real Tutor: `tutor config save` renders a service, an image, an init task and
LMS settings that fit together, and the service started exactly as the rendered compose file says launches a
lab for a JWT signed with the key the rendered LMS settings give the XBlock.

Docker is not available here, so the compose service and its init job run as local processes: the same
command, the environment of their `env_file` plus the image's `ENV`, with the data volume (/data) as a temp
dir. The lab is the packaged hello-lab on the local (LXC) provider, booted for real; the XBlock's own client
signs the calls.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography.fernet import Fernet
from tests.deploy.tutor_env import PLUGIN, Tutor, env_file, run, xblock_settings

ROOT = Path(__file__).resolve().parents[2]
XBLOCK_SRC = ROOT / "xblock/src"
LAB_TIMEOUT_S = 240
COURSE = "course-v1:StacklabOrg+Tutor+2026"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def tutor(tutor_venv: Path, tmp_path: Path) -> Tutor:
    tutor = Tutor(tutor_venv, tmp_path)
    tutor.install_plugin()
    return tutor


@pytest.mark.deploy
def test_tutor_config_save_renders_the_stacklab_service(tutor: Tutor) -> None:
    requirement = "git+https://git.example.org/stacklab.git@main"
    tutor(
        "config",
        "save",
        "--set",
        "LMS_HOST=learn.example.org",
        "--set",
        f"STACKLAB_PIP_REQUIREMENT={requirement}",
    )
    compose = yaml.safe_load(tutor.file("env/local/docker-compose.yml"))
    service = compose["services"]["stacklab"]
    image = tutor("images", "printtag", "stacklab").strip()
    assert service["image"] == image  # the image `tutor images build stacklab` makes (IMAGES_BUILD)
    assert service["command"] == "stacklab serve --host 0.0.0.0 --port 8080"  # no pip at start
    assert service["env_file"] == "../plugins/stacklab/apps/stacklab.env"
    jobs = yaml.safe_load(tutor.file("env/local/docker-compose.jobs.yml"))
    assert jobs["services"]["stacklab-job"]["image"] == image
    assert tutor.init_tasks("stacklab") == ["stacklab migrate"]
    dockerfile = tutor.file("env/plugins/stacklab/build/stacklab/Dockerfile")
    assert f"pip wheel --no-deps --wheel-dir /wheels '{requirement}'" in dockerfile
    caddyfile = tutor.file("env/apps/caddy/Caddyfile")
    assert "labs.learn.example.org{$default_site_port} {" in caddyfile
    assert "reverse_proxy stacklab:8080" in caddyfile
    assert "install 'stacklab-xblock'" in tutor.file("env/build/openedx/Dockerfile")
    assert "stacklab" in yaml.safe_load(tutor.file("config.yml"))["PLUGINS"]

    # tutor k8s: the same image and settings as a Deployment, a Service, a volume and the init Job
    kinds = {
        (doc["kind"], doc["metadata"]["name"])
        for name in ("deployments", "services", "volumes", "jobs")
        for doc in yaml.safe_load_all(tutor.file(f"env/k8s/{name}.yml"))
        if doc
    }
    assert {("Deployment", "stacklab"), ("Service", "stacklab")} <= kinds
    assert {("PersistentVolumeClaim", "stacklab"), ("Job", "stacklab-job")} <= kinds
    generated = yaml.safe_load(tutor.file("env/kustomization.yml"))["configMapGenerator"]
    stacklab_env = next(item for item in generated if item["name"] == "stacklab-env")
    assert stacklab_env["envs"] == ["plugins/stacklab/apps/stacklab.env"]


@pytest.mark.deploy
def test_secrets_are_valid_stable_and_shared_with_the_lms(tutor: Tutor) -> None:
    tutor("config", "save", "--set", "LMS_HOST=learn.example.org")
    first = yaml.safe_load(tutor.file("config.yml"))
    Fernet(first["STACKLAB_SECRET_KEY"])  # the service's secret_key: raises when it is not a Fernet key
    service = env_file(tutor.file("env/plugins/stacklab/apps/stacklab.env"))
    assert service["STACKLAB_SECRET_KEY"] == first["STACKLAB_SECRET_KEY"]

    tutor("config", "save", "--set", "CMS_HOST=studio.learn.example.org")
    again = yaml.safe_load(tutor.file("config.yml"))
    assert again["STACKLAB_SECRET_KEY"] == first["STACKLAB_SECRET_KEY"]
    assert again["STACKLAB_LMS_SECRET"] == first["STACKLAB_LMS_SECRET"]
    assert env_file(tutor.file("env/plugins/stacklab/apps/stacklab.env")) == service

    keys = json.loads(service["STACKLAB_LMS_KEYS"])
    for app in ("lms", "cms"):
        lms = xblock_settings(tutor.file(f"env/apps/openedx/settings/{app}/production.py"))
        assert lms["service_url"] == "http://stacklab:8080"
        assert keys == {lms["lms_key"]: {"secret": lms["lms_secret"], "courses": ["*"]}}
    assert len(keys["openedx"]["secret"]) >= 32

    # a key the service would refuse at every start is refused by Tutor, with the way out
    result = subprocess.run(
        [str(tutor.venv / "bin/tutor"), "config", "save", "--set", "STACKLAB_SECRET_KEY=short"],
        env=tutor.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "tutor config save --unset STACKLAB_SECRET_KEY" in result.stderr + result.stdout


RENDER = """\
- name: Render what the cluster gives an app server
  hosts: app_servers
  gather_facts: false
  connection: local
  vars:
    stacklab_proxy_port: 80
    stacklab_server_name: "_"
    stacklab_listen_port: 8080
    stacklab_lms_upstream: "http://127.0.0.1:8081"
  tasks:
    - name: Tutor settings and the nginx route
      ansible.builtin.copy:
        content: "{{ {'tutor': tutor_settings, 'host': stacklab_meilisearch_host} | to_json }}"
        dest: "{{ out }}/vars.json"
        mode: "0644"
    - name: The stacklab role's nginx site
      ansible.builtin.template:
        src: "{{ roles_dir }}/stacklab/templates/nginx-stacklab.conf.j2"
        dest: "{{ out }}/nginx.conf"
        mode: "0644"
"""


@pytest.mark.deploy
def test_the_cluster_routes_tutors_public_meilisearch_host(
    tutor_venv: Path, deploy_env: dict[str, str], tmp_path: Path
) -> None:
    """Tutor (RUN_MEILISEARCH false) gives browsers MEILISEARCH_PUBLIC_URL and routes it nowhere; the app
    servers' nginx, from the same group_vars, serves that host name and passes it to Meilisearch's node."""
    ansible = PLUGIN.parent / "ansible"
    (tmp_path / "group_vars").symlink_to(ansible / "group_vars")
    (tmp_path / "inventory.ini").write_text(
        "[backend_servers]\n10.0.0.11\n10.0.0.12\n10.0.0.13\n[app_servers]\n10.0.0.21\n"
        "[all:vars]\nstacklab_site=learn.example.org\n"
        "ansible_python_interpreter={{ ansible_playbook_python }}\n"
    )
    (tmp_path / "render.yml").write_text(RENDER)
    run(
        [
            "ansible-playbook",
            "-i",
            "inventory.ini",
            "-e",
            f"out={tmp_path} roles_dir={ansible / 'roles'}",
            "render.yml",
        ],
        {**deploy_env, "PWD": str(tmp_path)},
        cwd=tmp_path,
    )
    rendered = json.loads((tmp_path / "vars.json").read_text())
    nginx = (tmp_path / "nginx.conf").read_text()

    env = {
        **os.environ,
        "TUTOR_ROOT": str(tmp_path / "root"),
        "TUTOR_PLUGINS_ROOT": str(tmp_path / "plugins"),
    }
    env.pop("VIRTUAL_ENV", None)
    settings = [f"--set={key}={value}" for key, value in rendered["tutor"].items()]
    run([str(tutor_venv / "bin/tutor"), "config", "save", *settings], env)
    lms = (tmp_path / "root/env/apps/openedx/settings/lms/production.py").read_text()
    public = re.search(r'^MEILISEARCH_PUBLIC_URL = "(.*)"$', lms, re.M)
    internal = re.search(r'^MEILISEARCH_URL = "(.*)"$', lms, re.M)
    assert public and internal, lms[:2000]
    assert public[1] == "http://meilisearch.learn.example.org"
    assert internal[1] == "http://10.0.0.11:7700"
    caddyfile = (tmp_path / "root/env/apps/caddy/Caddyfile").read_text()
    assert "meilisearch" not in caddyfile  # RUN_MEILISEARCH: false, Caddy has no route for it

    host = public[1].split("://", 1)[1]
    assert rendered["host"] == host
    server = re.search(rf"server_name {re.escape(host)};(.*?)\n}}", nginx, re.S)
    assert server, nginx
    assert f"proxy_pass {internal[1]};" in server[1], nginx


def container_environment(service_env: dict[str, str], data_dir: Path) -> dict[str, str]:
    """What a container of the stacklab image sees: the image's ENV and the env_file, nothing of ours; the
    data volume (/data) is `data_dir`. `stacklab` is this checkout's (the image's venv is /opt/stacklab)."""
    image_env = {"PATH": f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}
    image_env |= {"PYTHONUNBUFFERED": "1", "STACKLAB_DATA_DIR": "/data"}
    merged = image_env | service_env
    return {key: re.sub(r"^/data(?=/|$)", str(data_dir), value) for key, value in merged.items()}


def wait_for(probe, what: str, timeout_s: float, proc: subprocess.Popen | None = None):  # type: ignore[no-untyped-def]
    """Call `probe` until it returns something truthy (bounded); fail naming `what` and the last error."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the service exited with {proc.returncode} while waiting for {what}")
        try:
            result = probe()
            if result:
                return result
            last = result
        except Exception as exc:  # not up yet: retried until the deadline
            last = exc
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {timeout_s:g} s (last: {last!r})")


@contextlib.contextmanager
def compose_service(service: dict, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """The compose service's `command`, run as a process (compose splits it like a shell, runs no shell)."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            shlex.split(service["command"]), env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def wait_ready(url: str, launched: dict, proc: subprocess.Popen) -> dict:
    """The launched lab's status once ready, read with the learner's token the launch returned."""
    from stacklab_xblock.client import ServiceConfig, StacklabClient

    env_id = launched["environment"]["id"]
    learner = StacklabClient(ServiceConfig(url, "", ""))
    learner.server_token = lambda now=None: launched["token"]  # type: ignore[method-assign]
    return wait_for(
        lambda: (s := learner._call("GET", f"/api/v1/environments/{env_id}")) and s["ready"] and s,
        "hello-lab ready",
        LAB_TIMEOUT_S,
        proc,
    )


def delete_environments(env: dict[str, str]) -> None:
    """Every environment of this data dir deleted (containers, mounts, bridge), bounded."""
    listed = run(["stacklab", "env", "list", "--json"], env)
    for record in json.loads(listed or "[]"):
        if record["observed"] != "deleted":
            run(["stacklab", "env", "delete", record["id"], "--wait"], env)


@pytest.mark.deploy
@pytest.mark.lxc
def test_the_rendered_service_launches_a_lab_for_the_rendered_lms_key(tutor: Tutor) -> None:
    from tests.support.lxc import require_lxc

    require_lxc()
    sys.path.insert(0, str(XBLOCK_SRC))
    from stacklab_xblock.client import ServiceConfig, StacklabClient

    port = free_port()  # this machine is shared: the rendered port is one nobody uses
    tutor("config", "save", "--set", "LMS_HOST=learn.example.org", "--set", f"STACKLAB_PORT={port}")
    compose = yaml.safe_load(tutor.file("env/local/docker-compose.yml"))["services"]["stacklab"]
    job = yaml.safe_load(tutor.file("env/local/docker-compose.jobs.yml"))["services"]["stacklab-job"]
    assert job["env_file"] == compose["env_file"]
    service_env = env_file((tutor.root / "env/local" / compose["env_file"]).read_text())
    lms = xblock_settings(tutor.file("env/apps/openedx/settings/lms/production.py"))

    with tempfile.TemporaryDirectory(prefix="stacklab-tutor-", dir="/var/tmp") as data:
        env = container_environment(service_env, Path(data))
        for task in tutor.init_tasks("stacklab"):  # `tutor local do init`: sh -e -c TASK in stacklab-job
            run(["sh", "-e", "-c", task], env)
        assert (Path(data) / "stacklab.db").exists()
        try:
            with compose_service(compose, env, Path(data) / "serve.log") as proc:
                url = lms["service_url"].replace("://stacklab:", "://127.0.0.1:")  # compose's DNS name
                client = StacklabClient(ServiceConfig(url, lms["lms_key"], lms["lms_secret"]))
                labs = wait_for(client.labs, "the service's lab list", 60, proc)
                assert "hello-lab" in [lab["id"] for lab in labs]

                launched = client.launch(COURSE, "hello-lab", "learner-ann")
                assert launched["lab_url"].startswith("http://labs.learn.example.org/lab/")
                env_id = launched["environment"]["id"]
                status = wait_ready(url, launched, proc)
                print(f"\nhello-lab launched through the rendered service: {status['progress']}")
                report = client.run_checks(env_id)  # what "Check my work" in the unit does
                assert [r["name"] for r in report["results"]] == ["hello-file", "user-alice"]
                assert report["score"] == 0 and report["max_score"] == 3
        finally:
            delete_environments(env)


@pytest.mark.deploy
def test_the_worker_service_is_rendered_for_runner_celery_only(tutor: Tutor) -> None:
    """Embedded (the default): one service, SQLite, no worker, no database task. celery: a `stacklab-worker`
    beside it with the same image and env file, a broker in Tutor's Redis and a database in Tutor's MySQL."""
    tutor("config", "save", "--set", "LMS_HOST=learn.example.org")
    services = yaml.safe_load(tutor.file("env/local/docker-compose.yml"))["services"]
    assert "stacklab-worker" not in services and "depends_on" not in services["stacklab"]
    embedded = env_file(tutor.file("env/plugins/stacklab/apps/stacklab.env"))
    assert not {"STACKLAB_RUNNER", "STACKLAB_BROKER_URL", "STACKLAB_DATABASE_URL"} & set(embedded)
    assert "CREATE DATABASE" not in tutor.rendered(stacklab_mysql_task(tutor))

    tutor("config", "save", "--set", "STACKLAB_RUNNER=celery", "--set", "REDIS_PASSWORD=redis-pw")
    services = yaml.safe_load(tutor.file("env/local/docker-compose.yml"))["services"]
    web, worker = services["stacklab"], services["stacklab-worker"]
    assert worker["image"] == web["image"] == tutor("images", "printtag", "stacklab").strip()
    assert worker["env_file"] == web["env_file"] and worker["volumes"] == web["volumes"]
    assert worker["command"] == "stacklab worker --metrics-port 9464"
    assert worker["stop_grace_period"] == "150s"  # SIGTERM, then the passes under way finish (lease 120 s)
    assert web["depends_on"] == worker["depends_on"] == ["mysql", "redis"]
    config = yaml.safe_load(tutor.file("config.yml"))
    celery = env_file(tutor.file("env/plugins/stacklab/apps/stacklab.env"))
    assert celery["STACKLAB_RUNNER"] == "celery"
    assert celery["STACKLAB_BROKER_URL"] == "redis://redis:6379/2"  # Tutor's Redis; Open edX uses 0 and 1
    assert celery["STACKLAB_EVENTS_URL"] == "redis://redis:6379/2"  # terminals learn of the workers' changes
    assert celery["STACKLAB_DATABASE_URL"] == (
        f"mysql+pymysql://stacklab:{config['STACKLAB_MYSQL_PASSWORD']}@mysql:3306/stacklab"
    )
    created = tutor.rendered(stacklab_mysql_task(tutor))
    assert "CREATE DATABASE IF NOT EXISTS stacklab" in created
    assert f"IDENTIFIED BY '{config['STACKLAB_MYSQL_PASSWORD']}'" in created
    assert 'pip install "$(ls /wheels/*.whl)[celery,mysql,postgres]"' in tutor.file(
        "env/plugins/stacklab/build/stacklab/Dockerfile"
    )


def stacklab_mysql_task(tutor: Tutor) -> str:
    """The plugin's init task in Tutor's mysql-job (Tutor's own comes first)."""
    (task,) = [task for task in tutor.init_tasks("mysql") if "STACKLAB_" in task]
    return task


@contextlib.contextmanager
def mariadb_admin() -> Iterator[tuple[str, str]]:
    """An account of the host's MariaDB that may create databases and users (Tutor's MYSQL_ROOT_*); it, and
    what the plugin's task creates with it (`stl_tutor_<pid>`), are dropped at the end."""
    import pymysql

    name, password = f"stl_admin_{os.getpid()}", secrets.token_hex(12)
    root = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
    try:
        with root.cursor() as cur:
            cur.execute(f"CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'")
            cur.execute(f"GRANT ALL ON *.* TO '{name}'@'%' WITH GRANT OPTION")
        yield name, password
    finally:
        with root.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS stl_tutor_{os.getpid()}")
            cur.execute(f"DROP USER IF EXISTS 'stl_tutor_{os.getpid()}'@'%'")
            cur.execute(f"DROP USER IF EXISTS '{name}'@'%'")
        root.close()


def jobs_run(metrics_port: int) -> float:
    """`stacklab_worker_jobs_total` of the worker's /metrics: the passes it has run."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    return sum(
        float(line.split()[-1]) for line in text.splitlines() if line.startswith("stacklab_worker_jobs_total")
    )


@pytest.mark.deploy
@pytest.mark.lxc
def test_the_rendered_web_and_worker_services_run_a_lab_on_mysql_and_redis(tutor: Tutor) -> None:
    """runner celery as rendered: the plugin's database task against the host's MariaDB (Tutor's MySQL), the
    init task, then the web service and the worker service as two processes on that database and the host's
    Redis; a lab launched through the web service with the LMS key is booted on LXC by the worker."""
    from tests.support.lxc import require_lxc

    require_lxc()
    sys.path.insert(0, str(XBLOCK_SRC))
    from stacklab_xblock.client import ServiceConfig, StacklabClient

    port, metrics_port = free_port(), free_port()
    with mariadb_admin() as (admin, admin_password):
        tutor(
            "config", "save", "--set", "LMS_HOST=learn.example.org", "--set", f"STACKLAB_PORT={port}",
            "--set", "STACKLAB_RUNNER=celery", "--set", f"STACKLAB_WORKER_METRICS_PORT={metrics_port}",
            "--set", "MYSQL_HOST=127.0.0.1", "--set", f"MYSQL_ROOT_USERNAME={admin}",
            "--set", f"MYSQL_ROOT_PASSWORD={admin_password}",
            "--set", f"STACKLAB_MYSQL_DATABASE=stl_tutor_{os.getpid()}",
            "--set", f"STACKLAB_MYSQL_USERNAME=stl_tutor_{os.getpid()}",
            "--set", "REDIS_HOST=127.0.0.1", "--set", "STACKLAB_REDIS_DB=11",
        )  # fmt: skip
        services = yaml.safe_load(tutor.file("env/local/docker-compose.yml"))["services"]
        web, worker = services["stacklab"], services["stacklab-worker"]
        service_env = env_file((tutor.root / "env/local" / web["env_file"]).read_text())
        lms = xblock_settings(tutor.file("env/apps/openedx/settings/lms/production.py"))
        with tempfile.TemporaryDirectory(prefix="stacklab-tutor-", dir="/var/tmp") as data:
            env = container_environment(service_env, Path(data))
            run(["sh", "-e", "-c", tutor.rendered(stacklab_mysql_task(tutor))], env)  # in mysql-job
            for task in tutor.init_tasks("stacklab"):
                run(["sh", "-e", "-c", task], env)
            assert not (Path(data) / "stacklab.db").exists()  # the schema went to MariaDB
            with (
                compose_service(web, env, Path(data) / "serve.log") as serving,
                compose_service(worker, env, Path(data) / "worker.log") as working,
            ):
                try:
                    url = lms["service_url"].replace("://stacklab:", "://127.0.0.1:")
                    client = StacklabClient(ServiceConfig(url, lms["lms_key"], lms["lms_secret"]))
                    wait_for(client.labs, "the web service's lab list", 60, serving)
                    (before,) = wait_for(
                        lambda: (jobs_run(metrics_port),), "the worker's /metrics", 60, working
                    )
                    launched = client.launch(COURSE, "hello-lab", "learner-bea")
                    status = wait_ready(url, launched, working)
                    assert serving.poll() is None
                    ran = jobs_run(metrics_port) - before
                    assert ran >= 1, "the lab became ready without a pass of the worker"
                    print(f"\nhello-lab ready through the web service, driven by the worker ({ran:g} passes)")
                    print(f"  {status['progress']}")
                finally:
                    delete_environments(env)  # the worker drives the deletes
