"""Two real `stacklab serve` processes on one PostgreSQL database behind a real nginx (round-robin), with
the embedded runner and the local LXC provider: the distributed web tier as an operator runs it.

Shared by the cluster tests (tests/cluster/) and the relay benchmark (bench/terminal_relay.py). Every
process started here is stopped, and every lab deleted, on the way out, even on failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import jwt
from tests.support.lxc import sweep_stacks

REPO = Path(__file__).resolve().parents[2]
STACKLAB = str(REPO / ".venv" / "bin" / "stacklab")
LMS_KEY, LMS_SECRET = "edx-cluster", "cluster-test-lms-secret-at-least-32-bytes-long"
COURSE = "course-v1:Org+Cluster+2026"
SECRET_KEY = "cluster-test-secret-key-shared-by-every-process"
NGINX_CONF = """
daemon off;
worker_processes 1;
user root root;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log {prefix}/access.log;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  upstream stacklab {{
    server 127.0.0.1:{port_a};
    server 127.0.0.1:{port_b};
  }}
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://stacklab;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_read_timeout 3600s;
      proxy_buffering off;
    }}
  }}
}}
"""
UP_TIMEOUT_S = 30.0
LAB_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def lms_jwt() -> str:
    body = {"iss": LMS_KEY, "exp": int(time.time() + 60), "jti": uuid.uuid4().hex}
    return jwt.encode(body, LMS_SECRET, algorithm="HS256")


@dataclass
class Web:
    """One `stacklab serve` process."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, its member row stays behind."""
        if self.alive():
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Cluster:
    """Two web processes, nginx in front, the LMS's view of them (launch, observe)."""

    work: Path
    webs: list[Web]
    nginx_port: int
    nginx: subprocess.Popen[bytes] | None = None
    env_ids: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}"

    def web(self, member_id: str) -> Web:
        """The process a member id names (ids carry the pid)."""
        return next(web for web in self.webs if f"-{web.process.pid}-" in member_id)

    def lms(self, path: str, body: dict[str, object], method: str = "POST") -> dict[str, object]:
        response = httpx.request(
            method,
            f"{self.url}{path}",
            json=body if method == "POST" else None,
            headers={"Authorization": f"Bearer {lms_jwt()}"},
            timeout=30,
        )
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def launch(self, learner: str) -> tuple[str, str]:
        """A lab launched for `learner` (through nginx); its environment id and learner token."""
        body = self.lms("/api/v1/launch", {"course": COURSE, "lab": "hello-lab", "learner": learner})
        env_id = str(body["environment"]["id"])  # type: ignore[index]
        self.env_ids.append(env_id)
        return env_id, str(body["token"])

    def observe(self, learner: str) -> str:
        """A read-only (staff) token for the learner's lab."""
        body = self.lms("/api/v1/observe", {"course": COURSE, "lab": "hello-lab", "learner": learner})
        return str(body["token"])

    def wait_ready(self, env_id: str, token: str) -> None:
        deadline = time.monotonic() + LAB_TIMEOUT_S
        status: dict[str, object] = {}
        while time.monotonic() < deadline:
            response = httpx.get(
                f"{self.url}/api/v1/environments/{env_id}",
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            status = response.json()
            if status.get("ready"):
                return
            assert status.get("progress") != "failed", status
            time.sleep(0.5)
        raise AssertionError(f"lab {env_id} not ready within {LAB_TIMEOUT_S} s: {status}")

    def ws_url(self, base: str, env_id: str, token: str, session: str, offset: int = 0) -> str:
        query = httpx.QueryParams({"token": token, "session": session, "offset": str(offset)})
        return f"{base.replace('http', 'ws', 1)}/api/v1/environments/{env_id}/terminal/main?{query}"

    def delete_labs(self) -> None:
        """Delete every lab launched here and wait (bounded) until the provider let them go."""
        live = next((web for web in self.webs if web.alive()), None)
        if live is None:
            return
        for env_id in self.env_ids:
            with contextlib.suppress(httpx.HTTPError):
                response = httpx.delete(
                    f"{live.url}/api/v1/environments/{env_id}",
                    headers={"Authorization": f"Bearer {lms_jwt()}"},
                    timeout=30,
                )
                response.raise_for_status()
        deadline = time.monotonic() + LAB_TIMEOUT_S
        pending = list(self.env_ids)
        while pending and time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                response = httpx.get(
                    f"{live.url}/api/v1/environments/{pending[0]}",
                    headers={"Authorization": f"Bearer {lms_jwt()}"},
                    timeout=10,
                )
                if response.json().get("observed") == "deleted":
                    pending.pop(0)
                    continue
            time.sleep(0.5)


def _serve(work: Path, name: str, database_url: str, public_url: str, port: int) -> Web:
    data_dir = work / name
    data_dir.mkdir()
    log = work / f"{name}.log"
    env = {
        **os.environ,
        "STACKLAB_DATA_DIR": str(data_dir),
        "STACKLAB_DATABASE_URL": database_url,
        "STACKLAB_SECRET_KEY": SECRET_KEY,
        "STACKLAB_LOCAL_ROOT_DIR": str(work / "local"),
        "STACKLAB_IMAGE_DIR": os.environ.get("STACKLAB_IMAGE_DIR", "/var/lib/stacklab/images"),
        "STACKLAB_LMS_KEYS": f'{{"{LMS_KEY}": {{"secret": "{LMS_SECRET}", "courses": ["*"]}}}}',
        "STACKLAB_PUBLIC_URL": public_url,
        "STACKLAB_ADMIN_PASSWORD": "cluster-operator-pass",
        "STACKLAB_HTTP_PORT": str(port),
        "STACKLAB_MEMBER_HEARTBEAT_S": "1",
        "STACKLAB_MEMBER_TTL_S": "5",
        "STACKLAB_POLL_INTERVAL_S": "0.2",
        "STACKLAB_RECONCILE_INTERVAL_S": "0.5",
    }
    env.pop("STACKLAB_CONFIG", None)
    with log.open("wb") as out:
        process = subprocess.Popen([STACKLAB, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
    return Web(name, port, process, log)


def _wait_up(url: str, check: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + UP_TIMEOUT_S
    while time.monotonic() < deadline:
        assert check.poll() is None, f"{url}: exited with {check.returncode}: {log.read_text()[-2000:]}"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {UP_TIMEOUT_S} s: {log.read_text()[-2000:]}")


def start_nginx(prefix: Path, port: int, upstreams: list[int]) -> subprocess.Popen[bytes]:
    """A real nginx on `port` balancing round-robin between two local web processes; returns once it
    answers their /readyz (the caller terminates it)."""
    for sub in ("body", "proxy"):
        (prefix / sub).mkdir(parents=True)
    conf = prefix / "nginx.conf"
    port_a, port_b = upstreams
    conf.write_text(NGINX_CONF.format(prefix=prefix, port=port, port_a=port_a, port_b=port_b))
    with (prefix / "stderr").open("wb") as err:
        nginx = subprocess.Popen(["nginx", "-p", str(prefix), "-c", str(conf)], stderr=err)
    try:
        _wait_up(f"http://127.0.0.1:{port}", nginx, prefix / "error.log")
    except BaseException:
        nginx.terminate()
        nginx.wait(10)
        raise
    return nginx


@contextlib.contextmanager
def web_cluster(database_url: str) -> Iterator[Cluster]:
    """Two web processes and nginx, on a fresh LXC root; everything stopped and removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix="stacklab-lxc-cluster-", dir="/var/tmp"))
    work.chmod(0o755)
    nginx_port = free_port()
    public = f"http://127.0.0.1:{nginx_port}"
    cluster = Cluster(work, [], nginx_port)
    try:
        for name in ("web-a", "web-b"):  # one after the other: each migrates the schema when it starts
            web = _serve(work, name, database_url, public, free_port())
            cluster.webs.append(web)
            _wait_up(web.url, web.process, web.log)
        cluster.nginx = start_nginx(work / "nginx", nginx_port, [web.port for web in cluster.webs])
        yield cluster
    finally:
        try:
            cluster.delete_labs()
        finally:
            if cluster.nginx is not None:
                cluster.nginx.terminate()
                cluster.nginx.wait(10)
            for web in cluster.webs:
                web.stop()
            sweep_stacks(work / "local")
            shutil.rmtree(work, ignore_errors=True)
