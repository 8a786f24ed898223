"""Start-up problems as a real `stacklab` process shows them: one line on stderr naming the setting or path
and what to do, an exit code per kind (2 configuration, 3 database, 4 filesystem), a traceback only with
--debug; and JSON logs from a real `stacklab serve`, uvicorn's access lines included."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

STACKLAB = [sys.executable, "-m", "stacklab.cli"]
TIMEOUT_S = 60


def environment(data_dir: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("STACKLAB_")}
    return {**env, "STACKLAB_DATA_DIR": str(data_dir), **settings}


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*STACKLAB, *args], env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("command", [["serve"], ["env", "list"], ["migrate"], ["reconcile"]])
def test_an_unreachable_database_is_one_line_and_exit_3(tmp_path: Path, command: list[str]) -> None:
    url = "postgresql+psycopg://stacklab:db-password-not-shown@127.0.0.1:1/stacklab"
    result = run(*command, env=environment(tmp_path / "data", STACKLAB_DATABASE_URL=url))
    line = one_line(result)
    assert result.returncode == 3
    assert line.startswith("error: database_url postgresql+psycopg://stacklab:***@127.0.0.1:1/stacklab: ")
    assert "Connection refused" in line and "STACKLAB_DATABASE_URL" in line
    assert "db-password-not-shown" not in result.stdout + result.stderr


def test_a_url_that_is_no_database_url_is_one_line_and_exit_3(tmp_path: Path) -> None:
    result = run("serve", env=environment(tmp_path / "data", STACKLAB_DATABASE_URL="localhost:5432/stacklab"))
    assert result.returncode == 3
    assert "not a database URL; write e.g. postgresql+psycopg://" in one_line(result)


@contextlib.contextmanager
def unwritable(path: Path) -> Iterator[None]:
    """A directory this user cannot write: immutable for root (who ignores modes), mode 0500 otherwise."""
    path.mkdir()
    if os.geteuid() == 0:
        if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(path)], check=False).returncode:
            pytest.skip("needs chattr +i to make a directory root cannot write")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        path.chmod(0o500)
        try:
            yield
        finally:
            path.chmod(0o700)


@pytest.mark.parametrize("command", [["serve"], ["env", "list"], ["config", "check"]])
def test_an_unwritable_data_dir_is_one_line_and_exit_4(tmp_path: Path, command: list[str]) -> None:
    data_dir = tmp_path / "data"
    with unwritable(data_dir):
        result = run(*command, env=environment(data_dir))
    assert result.returncode == 4
    line = one_line(result)
    assert line.startswith(f"error: data_dir {data_dir}: ")
    assert "--data-dir or STACKLAB_DATA_DIR" in line


def test_a_data_dir_that_is_a_file_is_one_line_and_exit_4(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    result = run("serve", env=environment(tmp_path / "file" / "data"))
    assert result.returncode == 4
    assert "not a directory" in one_line(result)


@pytest.mark.parametrize(
    ("args", "settings", "expected"),
    [
        (
            ["serve"],
            {"STACKLAB_DEMO_ENABLED": "ture"},
            "error: setting demo_enabled (from STACKLAB_DEMO_ENABLED): 'ture' is not a boolean: "
            "write true or false",
        ),
        (
            ["--set", "http_port=80.5", "serve"],
            {},
            "error: setting http_port (from command line): '80.5' is not an integer",
        ),
        (
            ["env", "list"],
            {"STACKLAB_SECRET_KEY": "short"},
            "error: setting secret_key (from STACKLAB_SECRET_KEY): too short (5 characters)",
        ),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], settings: dict[str, str], expected: str
) -> None:
    result = run(*args, env=environment(tmp_path / "data", **settings))
    assert result.returncode == 2
    assert one_line(result).startswith(expected)


def test_an_unknown_key_in_the_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "stacklab.toml"
    config.write_text('http_port = 8081\nidle_suspend = "5m"\n')
    result = run("serve", env=environment(tmp_path / "data", STACKLAB_CONFIG=str(config)))
    assert result.returncode == 2
    assert one_line(result).startswith(f"error: {config}: unknown setting 'idle_suspend'")


def test_config_check_gives_one_line_per_problem(tmp_path: Path) -> None:
    env = environment(tmp_path / "data", STACKLAB_DEMO_ENABLED="ture", STACKLAB_LOG_FORMAT="xml")
    result = run("config", "check", env=env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: setting demo_enabled (from STACKLAB_DEMO_ENABLED): 'ture' is not a boolean: "
        "write true or false",
        "error: setting log_format (from STACKLAB_LOG_FORMAT): 'xml' is not one of: text, json",
    ]
    good = run("config", "check", env=environment(tmp_path / "data"))
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("ok: settings valid")


def test_debug_adds_the_traceback_before_the_line(tmp_path: Path) -> None:
    url = "postgresql+psycopg://stacklab@127.0.0.1:1/stacklab"
    result = run("--debug", "env", "list", env=environment(tmp_path / "data", STACKLAB_DATABASE_URL=url))
    assert result.returncode == 3
    assert "Traceback (most recent call last)" in result.stderr
    assert "OperationalError" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: database_url ")


# JSON logs of a real `stacklab serve` ---------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def wait_until_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"stacklab serve exited with {proc.returncode}"
        with contextlib.suppress(OSError):
            get(url, {})
            return
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {TIMEOUT_S} s")


def test_serve_logs_json_lines_with_uvicorns_access_log_and_request_ids(tmp_path: Path) -> None:
    port = free_port()
    env = environment(tmp_path / "data", STACKLAB_HTTP_PORT=str(port), STACKLAB_LOG_FORMAT="json")
    stderr = (tmp_path / "stderr").open("wb")
    proc = subprocess.Popen([*STACKLAB, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base}/healthz", proc)
        env_id = "0123abcd"
        status, headers, body = get(
            f"{base}/api/v1/environments/{env_id}?token=query-token-not-logged",
            {"X-Request-ID": "screenshot-42"},
        )
        status_bad_id, headers_bad_id, _ = get(f"{base}/healthz", {"X-Request-ID": "two words"})
    finally:
        proc.send_signal(signal.SIGTERM)  # as systemd and docker stop it
        proc.wait(timeout=TIMEOUT_S)
        stderr.close()
    assert status == 401
    assert headers["x-request-id"] == "screenshot-42"
    assert json.loads(body)["request_id"] == "screenshot-42"
    assert status_bad_id == 200 and headers_bad_id["x-request-id"] != "two words"

    text = (tmp_path / "stderr").read_text()
    assert text.strip(), "nothing logged"
    lines = [json.loads(line) for line in text.splitlines()]  # every line is a JSON object
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    mine = next(line for line in access if line.get("request_id") == "screenshot-42")
    assert mine["env_id"] == env_id
    assert (mine["method"], mine["path"], mine["status"]) == ("GET", f"/api/v1/environments/{env_id}", 401)
    assert any(line["logger"] == "stacklab.serve" for line in lines)  # the banner, as a log line
    assert "query-token-not-logged" not in text
