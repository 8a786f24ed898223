"""Browser tests: Playwright for Python driving Debian's chromium.

Two servers: `mock_url`, a stand-in that speaks the web protocol with a local shell (fast, no LXC), and
`stacklab_url`, the real `stacklab serve` with its own data dir, whose environments are all deleted at the
end. The pages come from src/stacklab/web/static/ and its dist/ (built by `scripts/dev setup`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from tests.e2e.helpers import post
from tests.support.lxc import IMAGE_DIR

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "src" / "stacklab" / "web" / "static"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
CHECKOUT_CLI = (sys.executable, "-m", "stacklab.cli")  # the `stacklab` command of this checkout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except Exception as exc:
            if isinstance(exc, urllib.error.HTTPError):
                exc.close()  # kept in `last`, an unclosed answer holds its socket until a later test's GC
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s: {last}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="session")
def built_pages() -> None:
    if not (STATIC / "dist" / "lab.js").exists():
        pytest.fail(
            "the pages are not built: run scripts/dev setup (or cd frontend && npm ci && npm run build)"
        )


@pytest.fixture(scope="module")
def browser(built_pages: None) -> Iterator[object]:
    from playwright import sync_api

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/dev setup does)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def context(browser) -> Iterator[object]:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    yield context
    context.close()


@pytest.fixture
def page(context) -> object:  # type: ignore[no-untyped-def]
    return context.new_page()


# ---- the stand-in server ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mock_server(built_pages: None) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.mock_app", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/static/lab.html", 30, proc)
        yield url
    finally:
        stop(proc)


@pytest.fixture
def mock_url(mock_server: str) -> Iterator[str]:
    """The stand-in, reset to a fresh environment for each test."""
    post(f"{mock_server}/mock/reset")
    yield mock_server


# ---- the real service --------------------------------------------------------------------------------


class Stacklab:
    """A running `stacklab serve` and its CLI with the same data dir."""

    def __init__(
        self,
        url: str,
        env: dict[str, str],
        admin_password: str,
        command: Sequence[str] = CHECKOUT_CLI,
        cwd: Path = ROOT,
    ) -> None:
        self.url = url
        self.env = env
        self.admin_password = admin_password
        self.command = tuple(command)
        self.cwd = cwd

    def cli(self, *args: str, timeout_s: float = 600, stdin: str | None = None) -> str:
        result = subprocess.run(
            [*self.command, *args],
            input=stdin,
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if result.returncode != 0:
            raise AssertionError(f"stacklab {' '.join(args)} failed: {result.stderr or result.stdout}")
        return result.stdout

    def delete_all(self) -> None:
        envs = json.loads(self.cli("env", "list", "--json") or "[]")
        for env in envs:
            if env.get("observed") != "deleted" or env.get("desired") != "deleted":
                self.cli("env", "delete", env["id"], "--wait")


@contextlib.contextmanager
def serving_stacklab(
    prefix: str,
    extra_env: dict[str, str] | None = None,
    command: Sequence[str] = CHECKOUT_CLI,
    cwd: Path = ROOT,
) -> Iterator[Stacklab]:
    """`stacklab serve` on a free port with its own data dir; every environment is deleted at the end.

    `command` is the `stacklab` to run (this checkout's by default; an installed wheel's in tests/dist/).
    """
    if os.geteuid() != 0:
        pytest.fail("the local provider needs root: run the tests as root (scripts/dev test)")
    data_dir = tempfile.mkdtemp(prefix=prefix)
    port = free_port()
    password = secrets.token_urlsafe(12)
    env = {
        **os.environ,
        "STACKLAB_DATA_DIR": data_dir,
        "STACKLAB_IMAGE_DIR": IMAGE_DIR,
        "STACKLAB_HTTP_PORT": str(port),
        "STACKLAB_ADMIN_PASSWORD": password,
        "STACKLAB_DEMO_ENABLED": "1",  # the tests open /demo (off unless turned on) ...
        "STACKLAB_DEMO_LAUNCHES_PER_CLIENT": "100",  # ... many times, all from 127.0.0.1
        **(extra_env or {}),
    }
    log = open(Path(data_dir) / "serve.log", "wb")  # noqa: SIM115 - kept open while the server runs
    proc = subprocess.Popen(
        [*command, "serve"],
        env=env,
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    service = Stacklab(f"http://127.0.0.1:{port}", env, password, command, cwd)
    try:
        try:
            wait_http(f"{service.url}/healthz", 120, proc)
        except (RuntimeError, TimeoutError) as exc:
            log.flush()
            tail = (Path(data_dir) / "serve.log").read_text(errors="replace")[-3000:]
            pytest.fail(f"stacklab serve did not come up: {exc}\n{tail}")
        yield service
    finally:
        stop(proc)
        log.close()
        service.delete_all()  # raises (and keeps the data dir and its serve.log) if anything is left
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def stacklab(built_pages: None) -> Iterator[Stacklab]:
    with serving_stacklab("stacklab-e2e-") as service:
        yield service
