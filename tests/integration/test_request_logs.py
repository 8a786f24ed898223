"""A learner's screenshot finds the log line: a request through the real app gets a request id in its
header and error bodies, and what the controller logs for the lab that request launched carries both that
request id and the environment, as JSON lines."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.memory_provider import MemoryProvider
from tests.support.web_app import bearer, lms_jwt, make_stack

from stacklab.logs import HideQueries, JsonFormatter
from stacklab.web.app import create_app


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """What the process logs, through the JSON formatter `log_format = "json"` installs."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(HideQueries())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_a_failed_launch_is_found_by_the_request_id(
    tmp_path: Path, sshd_port: int, json_log: io.StringIO
) -> None:
    broken = MemoryProvider("local", {"ssh": ("127.0.0.1", sshd_port)})
    broken.fail_create = RuntimeError("the cloud answered nonsense")  # an error nobody planned for
    stack = make_stack(
        tmp_path, {"_ssh": MemoryProvider("_ssh", {"ssh": ("127.0.0.1", sshd_port)}), "local": broken}
    )
    app = create_app(stack, run_engine=False)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as http:
            launched = await http.post(
                "/api/v1/launch",
                json={"course": "c1", "lab": "hello-lab", "learner": "ann"},
                headers={**bearer(lms_jwt()), "X-Request-ID": "screenshot-42"},
            )
            await stack.engine.runner.idle()  # the pass the launch started
            env_id = launched.json()["environment"]["id"]
            denied = await http.get(f"/api/v1/environments/{env_id}", headers={"X-Request-ID": "bad id\n"})
    finally:
        stack.close()

    assert launched.status_code == 200 and launched.headers["x-request-id"] == "screenshot-42"
    assert denied.status_code == 401
    generated = denied.headers["x-request-id"]
    assert generated != "bad id\n" and denied.json()["request_id"] == generated
    assert set(denied.json()) == {"detail", "request_id"}

    logged = lines(json_log)
    failure = next(line for line in logged if line["message"] == "unexpected error in a pass")
    assert failure["request_id"] == "screenshot-42"
    assert failure["env_id"] == env_id
    assert failure["level"] == "ERROR" and "the cloud answered nonsense" in failure["exception"]
