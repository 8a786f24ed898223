"""Bad input on the terminal websocket gets the protocol's error message and a close code (issue 10, item 8).

Never a dropped connection, never an exception in the server's log, and the service keeps serving: after
each case a normal terminal still opens. The service is the real app served by uvicorn on SQLite, with the
in-memory provider whose nodes are a real SSH server.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.terminals import LabService, Term, lab_service, refusal, terminal

PROMPT = b"$ "
NON_ASCII_TOKEN = "jeton-\u00e9t\u00e9.sign\u00e9"


async def still_serves(service: LabService) -> None:
    """A learner's normal terminal opens and runs a command."""
    async with terminal(service.url()) as term:
        await term.run("echo fine-$((6*7))", b"fine-42")


@pytest.fixture
async def service(
    tmp_path: Path, sshd_port: int, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[LabService]:
    """The service; at the end, nothing in its log is an error or carries a traceback."""
    async with lab_service(tmp_path, sshd_port) as served:
        caplog.set_level(logging.INFO)
        yield served
        faults = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
        assert not faults, [r.getMessage() for r in faults]


def error_of(messages: list[Any]) -> str:
    """The message of the protocol's `{"type": "error"}`, which must be the first text frame."""
    first = json.loads(next(m for m in messages if isinstance(m, str)))
    assert first["type"] == "error" and first["message"], first
    return str(first["message"])


# before the terminal opens: nothing is known about the client --------------------------------------------
async def test_a_non_ascii_token_in_the_query_is_a_bad_token(service: LabService) -> None:
    code, messages = await refusal(service.url(token=NON_ASCII_TOKEN))
    assert code == 4401 and error_of(messages)
    await still_serves(service)


async def test_a_non_ascii_or_bad_token_in_the_header_is_a_bad_token(service: LabService) -> None:
    bare = service.url().replace(f"token={service.token}", "token=")
    for token in (NON_ASCII_TOKEN, "x" * 5000, "a.b"):
        header = {"Authorization": f"Bearer {token}"}
        code, messages = await refusal(bare, additional_headers=header)
        assert code == 4401 and error_of(messages), token[:20]
    async with terminal(bare, additional_headers={"Authorization": f"Bearer {service.token}"}) as term:
        await term.until(PROMPT)  # a good one in the header opens the terminal


@pytest.mark.parametrize(
    ("where", "value", "code"),
    [
        ("session", "s\u00e9ance", 4400),
        ("session", "x" * 65, 4400),
        ("node", "n\u0153ud", 4404),
        ("origin", "https://\u00e9vil.example", 4403),
    ],
)
async def test_bad_parameters_are_refused_with_their_code(
    service: LabService, where: str, value: str, code: int
) -> None:
    if where == "session":
        address, extra = service.url(session=value), {}
    elif where == "node":
        address, extra = service.url(node=value), {}
    else:
        address, extra = service.url(), {"origin": value}
    refused, messages = await refusal(address, **extra)
    assert refused == code and error_of(messages)
    await still_serves(service)


async def test_bad_sizes_and_offsets_in_the_query_fall_back_to_defaults(service: LabService) -> None:
    address = service.url(cols="-5", rows="9" * 5000, offset="\u0663\u0664x")
    async with terminal(address) as term:
        await term.until(PROMPT)


# once it is open: control messages and frames ------------------------------------------------------------
BAD_MESSAGES: dict[str, str | bytes] = {
    "ack-huge": json.dumps({"type": "ack", "offset": 2**64}),
    "ack-negative": json.dumps({"type": "ack", "offset": -1}),
    "ack-string": json.dumps({"type": "ack", "offset": "12"}),
    "ack-float": json.dumps({"type": "ack", "offset": 1.5}),
    "ack-bool": json.dumps({"type": "ack", "offset": True}),
    "ack-missing": json.dumps({"type": "ack"}),
    "ack-nan": '{"type": "ack", "offset": NaN}',
    "ack-infinity": '{"type": "ack", "offset": 1e999}',
    "ack-digits": '{"type": "ack", "offset": ' + "9" * 4000 + "}",
    "resize-text": json.dumps({"type": "resize", "cols": "wide", "rows": 20}),
    "resize-zero": json.dumps({"type": "resize", "cols": 0, "rows": 20}),
    "not-json": "{type: ack",
    "empty": "",
    "not-an-object": json.dumps(["ack", 5]),
    "type-not-a-string": json.dumps({"type": 5}),
    "no-type": json.dumps({"offset": 5}),
    "deep-nesting": "[" * 4000,
    "unknown-type": json.dumps({"type": "shout", "text": "hi"}),
    "non-ascii-type": json.dumps({"type": "\u00e9cho" * 50}),
}


async def bad_frame_closes(service: LabService, frame: str | bytes, code: int) -> str:
    """Send `frame` on an open terminal; the server answers with an error message and `code`."""
    async with terminal(service.url()) as term:
        await term.until(PROMPT)
        await term.ws.send(frame)
        assert await term.end() == code
    return error_in(term)


def error_in(term: Term) -> str:
    errors = [e for e in term.events if e.get("type") == "error"]
    assert len(errors) == 1 and errors[0]["message"], term.events
    return str(errors[0]["message"])


@pytest.mark.parametrize("case", list(BAD_MESSAGES))
async def test_a_bad_control_message_gets_an_error_and_4400(service: LabService, case: str) -> None:
    assert await bad_frame_closes(service, BAD_MESSAGES[case], 4400)
    await still_serves(service)


@pytest.mark.parametrize(
    "frame",
    [b"y" * ((1 << 20) + 1), json.dumps({"type": "ping", "pad": "x" * 5000})],
    ids=["input", "control"],
)
async def test_an_oversize_frame_gets_an_error_and_1009(service: LabService, frame: str | bytes) -> None:
    message = await bad_frame_closes(service, frame, 1009)
    assert "at most" in message
    await still_serves(service)


async def test_good_control_messages_keep_the_terminal_open(service: LabService) -> None:
    """The protocol's own messages, at their edges, are accepted: an ack beyond what was sent is clamped
    (a client reconnected to a new shell may ack its old offset once), a huge window is clamped."""
    async with terminal(service.url()) as term:
        await term.until(PROMPT)
        for message in (
            {"type": "ack", "offset": 2**62},
            {"type": "ack", "offset": 0},
            {"type": "resize", "cols": 100000, "rows": 1},
            {"type": "ping"},
        ):
            await term.ws.send(json.dumps(message))
        await term.run("echo ok-$((6*7))", b"ok-42")
        await term.drain(0.2)
        assert {"type": "pong"} in term.events
        assert not [e for e in term.events if e.get("type") in ("error", "closed")]
