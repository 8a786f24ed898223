"""hastexo's `reboot_on_resume`: after a resume, the servers the template names are hard-rebooted once, and
the stack counts as running only when they are back. This Heat harness has no Nova, so Nova is faked at
its REST layer (instance actions, server show, the reboot action) and driven by the real openstacksdk."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import openstack
import pytest

from stacklab.providers.base import StackState, StackStatus
from stacklab.providers.openstack.provider import OpenStackProvider
from stacklab.providers.openstack.reboot import servers_to_reboot


class FakeNova:
    """Servers with their instance actions (oldest first) and status; counts reboot requests."""

    def __init__(self) -> None:
        self.actions: dict[str, list[str]] = {}
        self.status: dict[str, str] = {}
        self.reboots: list[str] = []

    endpoint = ""

    def answer(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        parts = path.strip("/").split("/")  # v2.1, servers, ID, ...
        if len(parts) < 3:  # version discovery
            version = {"id": "v2.1", "status": "CURRENT", "version": "2.90", "min_version": "2.1"}
            return 200, {"version": {**version, "links": [{"rel": "self", "href": f"{self.endpoint}/"}]}}
        server = parts[2]
        if method == "POST" and body.get("reboot", {}).get("type") == "HARD":
            self.reboots.append(server)
            self.actions[server].append("reboot")
            self.status[server] = "HARD_REBOOT"
            return 202, None
        if parts[3:] == ["os-instance-actions"]:
            listed = [
                {"action": action, "start_time": f"2026-01-01T00:00:{i:02d}.000000", "request_id": f"r{i}"}
                for i, action in enumerate(self.actions[server])
            ]
            return 200, {"instanceActions": listed[::-1]}  # newest first, as Nova lists them
        return 200, {"server": {"id": server, "name": server, "status": self.status[server]}}


@pytest.fixture
def nova() -> Iterator[tuple[FakeNova, Any]]:
    fake = FakeNova()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            code, answer = fake.answer(method, self.path, body)
            data = json.dumps(answer).encode() if answer is not None else b""
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = fake.endpoint = f"http://127.0.0.1:{server.server_address[1]}/v2.1"
    yield fake, openstack.connection.Connection(auth_type="none", compute_endpoint_override=endpoint)
    server.shutdown()
    server.server_close()


def resumed(
    *servers: str, reason: str = "RESUME_COMPLETE: Stack RESUME completed successfully"
) -> StackStatus:
    return StackStatus(StackState.RUNNING, reason, outputs={"reboot_on_resume": list(servers)})


async def test_servers_are_hard_rebooted_once_after_a_resume(nova: tuple[FakeNova, Any]) -> None:
    fake, connection = nova
    fake.actions = {"web": ["create", "suspend", "resume"], "db": ["create", "resume", "reboot"]}
    fake.status = {"web": "ACTIVE", "db": "ACTIVE"}
    provider = OpenStackProvider("cloud", {"cloud": "unused"})
    provider._conn = connection  # the connection openstack.connect would have built

    first = await provider._reboot_on_resume(resumed("web", "db"))
    assert (first.state, first.reason) == (StackState.RESUMING, "hard-rebooting web after the resume")
    assert fake.reboots == ["web"]  # db's latest action is a reboot already

    again = await provider._reboot_on_resume(resumed("web", "db"))
    assert again.state == StackState.RESUMING and fake.reboots == ["web"]  # asked once, waited for

    fake.status["web"] = "ACTIVE"
    done = await provider._reboot_on_resume(resumed("web", "db"))
    assert done == resumed("web", "db") and fake.reboots == ["web"]


async def test_other_stacks_are_left_alone(nova: tuple[FakeNova, Any]) -> None:
    fake, connection = nova
    provider = OpenStackProvider("cloud", {"cloud": "unused"})
    provider._conn = connection
    created = resumed("web", reason="CREATE_COMPLETE: Stack CREATE completed successfully")
    assert await provider._reboot_on_resume(created) == created  # only a resume asks for reboots
    plain = StackStatus(StackState.RUNNING, "RESUME_COMPLETE", outputs={"other": 1})
    assert await provider._reboot_on_resume(plain) == plain
    assert fake.reboots == []


@pytest.mark.parametrize(
    ("value", "servers"),
    [(["a", "b"], ["a", "b"]), ("a", ["a"]), ([], []), (None, []), (["a", 3, ""], ["a"])],
)
def test_the_output_names_servers(value: object, servers: list[str]) -> None:
    assert servers_to_reboot({"reboot_on_resume": value}) == servers
