"""Log lines carry their context in both formats; bound fields flow into tasks; paths lose their queries."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from stacklab.logs import HideQueries, JsonFormatter, TextFormatter, log_context


def emit(formatter: logging.Formatter, name: str, *args: object, **kwargs: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(HideQueries())
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(*args, **kwargs)  # type: ignore[arg-type]
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    return stream.getvalue()


def test_text_lines_end_with_their_context_well_known_fields_first() -> None:
    with log_context(request_id="r-1"):
        line = emit(
            TextFormatter(), "stacklab.t", "stack %s gone", "sl-1", extra={"stack": "sl-1", "attempt": 2}
        )
    assert line.rstrip().endswith("WARNING stacklab.t: stack sl-1 gone request_id=r-1 stack=sl-1 attempt=2")


def test_text_values_with_spaces_are_quoted_so_lines_stay_parseable() -> None:
    line = emit(TextFormatter(), "stacklab.t", "failed", extra={"error": 'host "a" unreachable'})
    assert line.rstrip().endswith('failed error="host \\"a\\" unreachable"')


def test_json_lines_carry_context_and_the_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        with log_context(env_id="0123abcd"):
            line = emit(JsonFormatter(), "stacklab.t", "pass failed", exc_info=True, extra={"provider": "a"})
    entry = json.loads(line)
    assert {k: entry[k] for k in ("level", "logger", "message", "env_id", "provider")} == {
        "level": "WARNING",
        "logger": "stacklab.t",
        "message": "pass failed",
        "env_id": "0123abcd",
        "provider": "a",
    }
    assert entry["time"].endswith("+00:00") and "ValueError: boom" in entry["exception"]


async def test_bound_fields_flow_into_tasks_started_while_bound() -> None:
    async def job() -> str:
        await asyncio.sleep(0)
        return emit(JsonFormatter(), "stacklab.t", "reconciled")

    with log_context(request_id="r-2"):
        task = asyncio.create_task(job())
    assert json.loads(await task)["request_id"] == "r-2"
    assert "request_id" not in json.loads(emit(JsonFormatter(), "stacklab.t", "later"))


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()])
def test_uvicorn_paths_lose_their_query_strings(formatter: logging.Formatter) -> None:
    args = ("127.0.0.1:5", "GET", "/terminal/abc?token=SECRET&x=1", "1.1", 101)
    line = emit(formatter, "uvicorn.access", '%s - "%s %s HTTP/%s" %d', *args)
    assert "SECRET" not in line and "/terminal/abc" in line
