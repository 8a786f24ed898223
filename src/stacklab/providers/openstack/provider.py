"""Labs as OpenStack Heat stacks, through openstacksdk's proxy layer (`conn.orchestration.*`).

The SDK's blocking HTTP calls run in this provider's own thread pools. Every operation the provider starts
is watched by one shared poll per cloud (watch.py), timed around the completion expected from recent
operations of the same template (timing.py). `status` of a stack whose operation is expected to finish soon
waits (asynchronously, at most `status_wait_s`) for that poll to see it finish, so the controller learns of
a finished stack when the poll does, not a poll interval later; `delete` waits (at most `delete_wait_s`) so
that a DELETE_FAILED is raised instead of dropped. The controller re-drives everything else.

Output contract of a template (the same as hastexo-xblock's): `public_ip` is the address of the lab's first
node (optional `ssh_port`, default 22); a further node N is `N_public_ip` (or `N_ip`, with `N_ssh_port`);
`private_key` (the key the learner logs in with) and `password` are secrets; every other output is kept as a
plain output. Parameters stacklab supplies when the template declares them: `run` (the course run, as
hastexo gives it), `stacklab_stack_name` (the stack name, `sl-<environment id>`), `public_key` /
`ssh_public_key` (the environment's login key) and `login_user`. A `reboot_on_resume` output (hastexo's)
names servers that are hard-rebooted after every resume (reboot.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, ClassVar, TypeVar

import openstack
from keystoneauth1 import exceptions as ksa_exceptions
from openstack import exceptions as sdk
from openstack import warnings as sdk_warnings

from stacklab.errors import (
    CapacityExhausted,
    ProviderError,
    TerminalProviderError,
    TransientProviderError,
)
from stacklab.providers.base import Handle, NodeAddress, Provider, StackRequest, StackState, StackStatus
from stacklab.providers.openstack.contract import (
    SECRET_OUTPUTS,
    address_outputs,
    port_output,
    supplied_parameters,
)
from stacklab.providers.openstack.errors import translate
from stacklab.providers.openstack.options import ProviderOptions
from stacklab.providers.openstack.reboot import reboot_after_resume, servers_to_reboot
from stacklab.providers.openstack.room import WriteRoom
from stacklab.providers.openstack.throttle import WriteThrottle
from stacklab.providers.openstack.watch import Flight, Row, StackWatch

log = logging.getLogger(__name__)
T = TypeVar("T")

TAG = "stacklab"
"""Every stack this provider creates carries this tag; `list()` returns only those."""
TEMPLATE_VERSION = "2018-08-31"
LIST_IDS = 60
"""Stack ids per list request: `?id=..&id=..` must stay within a URL line that every Heat front end takes
(gunicorn and uWSGI refuse request lines over 4 KB)."""
LOOKUPS = {
    "flavor": ("compute", "find_flavor"),
    "image": ("image", "find_image"),
    "network": ("network", "find_network"),
    "key pair": ("compute", "find_keypair"),
}
"""What `check_lab` can look up: kind -> (openstacksdk service, proxy method)."""

STATES = {
    "CREATE_IN_PROGRESS": StackState.CREATING,
    "ADOPT_IN_PROGRESS": StackState.CREATING,
    "ROLLBACK_IN_PROGRESS": StackState.CREATING,
    "UPDATE_IN_PROGRESS": StackState.CREATING,
    "SUSPEND_IN_PROGRESS": StackState.SUSPENDING,
    "SUSPEND_COMPLETE": StackState.SUSPENDED,
    "RESUME_IN_PROGRESS": StackState.RESUMING,
    "DELETE_IN_PROGRESS": StackState.DELETING,
    "DELETE_COMPLETE": StackState.ABSENT,
    "ROLLBACK_COMPLETE": StackState.FAILED,
}
"""Heat's stack_status to ours; every other *_COMPLETE is RUNNING and every *_FAILED is FAILED."""


def map_state(heat_status: str) -> StackState:
    if heat_status in STATES:
        return STATES[heat_status]
    if heat_status.endswith("_FAILED"):
        return StackState.FAILED
    if heat_status.endswith("_COMPLETE"):
        return StackState.RUNNING
    return StackState.CREATING


def _scalar(value: Any) -> Any:
    """A list output (a server's addresses) counts as its first element."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


class OpenStackProvider(Provider):
    """One Heat stack per environment, on the cloud named in the provider entry (clouds.yaml)."""

    type_name = "openstack"
    poll_interval_s: ClassVar[float] = 2.0

    def __init__(self, name: str, settings: dict[str, Any] | None = None) -> None:
        super().__init__(name, settings)
        self.cloud: str = self.settings.get("cloud") or name
        self.options = options = ProviderOptions.of(self.settings)
        # Writes (create, suspend, resume), deletes and status reads each have threads of their own, so
        # that a burst of one kind does not hold up the others (options.py says why each count).
        self._pool = ThreadPoolExecutor(options.api_writes, f"openstack-{name}")
        self._deletes = ThreadPoolExecutor(options.api_deletes, f"openstack-{name}-delete")
        self._reads = ThreadPoolExecutor(options.api_threads, f"openstack-{name}-status")
        self._conn: Any = None
        self._conn_lock = threading.Lock()
        self.room = WriteRoom(options.api_writes, margin_s=options.fast_poll_s)
        """Of the writes' threads, how many may send now: as many as leave Heat room for the polls."""
        self.watch = StackWatch(
            self._poll,
            fast_poll_s=options.fast_poll_s,
            slow_poll_s=self.poll_interval_s,
            forget_s=options.status_wait_s + 60.0,
            show=self._outputs,
            polls_in_flight=options.polls_in_flight,
            on_answer=self.room.answered,
        )
        self.throttle = WriteThrottle(
            self.cloud,
            retries=options.write_retries,
            backoff_s=options.write_backoff_s,
            max_wait_s=options.write_backoff_max_s,
        )
        """Writes Heat answers 429 or 503 are sent again after its Retry-After (throttle.py)."""
        self.on_request: Callable[[str, str], None] | None = None
        """Called with (method, url) for every HTTP request this provider makes (benchmarks)."""

    # plumbing ---------------------------------------------------------------------------------------
    def connection(self) -> Any:
        """The cloud's openstacksdk connection, built once (credentials come from clouds.yaml only)."""
        with self._conn_lock:
            if self._conn is None:
                with warnings.catch_warnings():  # the SDK warns about its own defaults (InfluxDB)
                    warnings.simplefilter("ignore", sdk_warnings.RemovedInSDK60Warning)
                    conn = openstack.connect(
                        cloud=self.cloud, app_name="stacklab", api_timeout=self.options.api_timeout_s
                    )
                adapter = conn.session.session.get_adapter("http://")
                connections = sum(p._max_workers for p in (self._pool, self._deletes, self._reads))
                adapter.init_poolmanager(connections, connections, block=False)
                conn.session.session.hooks["response"].append(self._count)
                # The token now, not inside the first write: a write is timed from when it goes out
                # (`_write`), and a first create that also fetched the token would seem to take longer.
                conn.authorize()
                self._conn = conn
            return self._conn

    def _count(self, response: Any, *args: Any, **kwargs: Any) -> None:
        if self.on_request is not None:
            self.on_request(response.request.method, response.request.url)

    async def _run(
        self, doing: str, call: Callable[[], T], *, read: bool = False, pool: ThreadPoolExecutor | None = None
    ) -> T:
        """`call` in a thread: of `pool`, else the reads' (`read`) or the writes' (create, actions)."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(pool or (self._reads if read else self._pool), call)
        except Exception as exc:
            raise translate(exc, self.cloud, doing) from exc

    def _show(self, name: str, stack_id: str | None = None, *, deleted: bool = False) -> Row | None:
        """The stack (status, reason, outputs), or None when it is gone. One GET by name/id when the id
        is known (Heat answers without a redirect); by name, Heat redirects to name/id. Heat shows a
        deleted stack by id for ever as DELETE_COMPLETE: None unless `deleted` asks for that row too."""
        path = f"/stacks/{name}/{stack_id}" if stack_id else f"/stacks/{name}"
        response = self.connection().orchestration.get(path)
        if response.status_code == 404:
            return None
        sdk.raise_from_response(response)
        row = response.json().get("stack") or {}
        return row if deleted or row.get("stack_status") != "DELETE_COMPLETE" else None

    def _rows(self, stacks: list[tuple[str, str]], listed: bool) -> dict[str, Row]:
        """The stacks' rows by id, in one request (the show of a lone stack also brings its outputs).
        `listed`: from the stack list even for one stack, which alone tells a stack whose delete is
        complete but still holds its name and its place in the quota (DELETE_COMPLETE, listed) from one
        Heat has let go of (not listed)."""
        if len(stacks) == 1 and not listed:
            row = self._show(*stacks[0])
            return {row["id"]: row} if row else {}
        heat, ids, rows = self.connection().orchestration, [i for _, i in stacks], {}
        for start in range(0, len(ids), LIST_IDS):
            response = heat.get("/stacks", params=[("id", i) for i in ids[start : start + LIST_IDS]])
            sdk.raise_from_response(response)
            rows.update((row["id"], row) for row in response.json().get("stacks") or [])
        return rows

    async def _outputs(self, flight: Flight) -> Row | None:
        """The stack with its outputs, asked by the watch as soon as a poll sees it complete."""
        show = partial(self._show, flight.name, flight.stack_id)
        return await self._run(f"reading stack {flight.name}", show, read=True)

    async def _poll(self, flights: list[Flight]) -> dict[str, Row]:
        stacks = [(f.name, f.stack_id) for f in flights]
        listed = any(f.op == "DELETE" for f in flights)
        return await self._run("polling stacks", partial(self._rows, stacks, listed), read=True)

    def _fly(
        self, handle: Handle, stack_id: str, op: str, sent: float, row: Row | None = None, timed: bool = True
    ) -> Flight:
        """Watch an operation sent at `sent` (`timed`: by us, so its duration is known and taught)."""
        before = (
            (str(row.get("stack_status") or ""), str(row.get("stack_status_reason") or ""))
            if row
            else ("", "")
        )
        key = str(handle.get("template") or "") if timed else ""
        return self.watch.track(Flight(handle["name"], stack_id, op, key, sent, before))

    # create -----------------------------------------------------------------------------------------
    async def create(self, request: StackRequest) -> Handle:
        """POST the stack, once a delete of the same name has let go of it. A project whose quota is full
        while deletes of ours still hold places in it (DELETE_COMPLETE, still listed) is asked again once
        they are gone: `delete` returns at DELETE_COMPLETE, and this keeps a re-create right after it from
        meeting the old stack's name or place."""
        doing = f"creating stack {request.name}"
        await self._until_gone(doing, self.watch.deleting(request.name))
        try:
            handle, sent = await self._run(doing, partial(self._create, request))
        except CapacityExhausted:
            if not await self._until_gone(doing, self.watch.deleting()):
                raise
            handle, sent = await self._run(doing, partial(self._create, request))
        if sent is not None:
            self._fly(handle, handle["id"], "CREATE", sent)
        return handle

    async def _until_gone(self, doing: str, deletes: list[Flight]) -> bool:
        """Wait (at most delete_wait_s) until these deleted stacks have left Heat's list; False if none."""
        try:
            await asyncio.gather(*(self.watch.wait(f, self.options.delete_wait_s) for f in deletes))
        except Exception as exc:
            raise translate(exc, self.cloud, doing) from exc
        return bool(deletes)

    def _create(self, request: StackRequest) -> tuple[Handle, float | None]:
        """POST the stack (and say when); a name Heat already has (an earlier, interrupted pass) is found
        instead."""
        nodes = list(request.config.get("nodes") or ["main"])
        attrs = self._template(request)
        key = _digest(attrs)
        parameters = self._parameters(request, attrs["template"])
        heat = self.connection().orchestration
        handle: Handle = {"name": request.name, "nodes": nodes, "template": key}
        try:
            create = partial(heat.create_stack, name=request.name, parameters=parameters, tags=TAG, **attrs)
            stack, sent = self._write(f"creating stack {request.name}", create)
        except sdk.ConflictException:  # the name exists: created by an earlier, interrupted pass
            row = self._show(request.name)
            if row is None:
                raise
            return {**handle, "id": row["id"]}, None
        log.info("stack created", extra={"stack": request.name, "cloud": self.cloud})
        return {**handle, "id": stack.id}, sent

    @staticmethod
    def _parameters(request: StackRequest, template: dict[str, Any]) -> dict[str, Any]:
        """The lab's parameters and those stacklab supplies (contract.SUPPLIED_PARAMETERS)."""
        parameters: dict[str, Any] = dict(request.config.get("parameters") or {})
        declared = template.get("parameters") or {}
        parameters.update(
            supplied_parameters(
                declared,
                stack_name=request.name,
                course=request.course,
                login_user=request.login_user,
                public_key=request.public_key,
            )
        )
        return parameters

    def _template(self, request: StackRequest) -> dict[str, Any]:
        """Template and `files` (get_file targets, nested templates), resolved relative to the lab file."""
        template = request.config.get("template")
        if not template:
            raise TerminalProviderError("the lab has no openstack template", reason="TemplateInvalid")
        path = os.path.join(request.lab_dir or "", template)
        heat = self.connection().orchestration  # outside the try: a failed sign-in is not the template's
        try:
            attrs = heat.read_env_and_templates(template_file=os.path.abspath(path))
        except (OSError, sdk.SDKException, ValueError) as exc:
            if isinstance(exc, sdk.HttpException):
                raise
            raise TerminalProviderError(f"template {path}: {exc}", reason="TemplateInvalid") from exc
        attrs.setdefault("files", {})
        return attrs

    # status -----------------------------------------------------------------------------------------
    async def status(self, handle: Handle) -> StackStatus:
        return await self._reboot_on_resume(await self._stack_status(handle))

    async def _reboot_on_resume(self, status: StackStatus) -> StackStatus:
        """A resumed stack whose template names servers in `reboot_on_resume` (hastexo's output) runs
        once those servers were hard-rebooted (reboot.py); until then it is still resuming."""
        servers = servers_to_reboot(status.outputs)
        if not servers or status.state != StackState.RUNNING or not status.reason.startswith("RESUME_"):
            return status
        busy = await self._run(
            "rebooting servers after a resume",
            lambda: reboot_after_resume(self.connection().compute, servers),
        )
        if not busy:
            return status
        return StackStatus(StackState.RESUMING, f"hard-rebooting {', '.join(busy)} after the resume")

    async def _stack_status(self, handle: Handle) -> StackStatus:
        doing = f"reading stack {handle['name']}"
        flight = self.watch.get(handle.get("id"))
        if flight is None:
            row = await self._run(doing, partial(self._show, handle["name"], handle.get("id")), read=True)
            heat_status = str((row or {}).get("stack_status") or "")
            if row is not None and heat_status.endswith("_IN_PROGRESS"):  # begun elsewhere: watched from now
                self._fly(handle, row["id"], heat_status.split("_")[0], time.monotonic(), row, timed=False)
            return self._observe(handle, row)
        wait_s = self._hold(flight)
        if not flight.settled() and wait_s > 0:
            try:
                await self.watch.wait(flight, wait_s, settled=True)
            except Exception as exc:
                raise translate(exc, self.cloud, doing) from exc
        if not flight.settled():  # as the last poll saw it; not begun yet: in progress all the same
            begun = flight.row is not None and (flight.status, flight.reason) != flight.before
            return StackStatus(
                map_state(flight.status if begun else f"{flight.op}_IN_PROGRESS"),
                flight.status if begun else f"{flight.op} requested",
            )
        if flight.finished():  # a deleted stack still listed stays watched until it leaves (create)
            self.watch.forget(flight)
        row = await self.watch.full_row(flight)
        if row is not None and map_state(flight.status) == StackState.RUNNING and "outputs" not in row:
            row = await self._run(doing, partial(self._show, handle["name"], handle.get("id")), read=True)
        return self._observe(handle, row)

    async def changed(self, handle: Handle, timeout_s: float) -> bool:
        """Until the operation the shared poll follows on this stack finishes (at most `timeout_s`; at once
        if it had, once): a caller between passes (`drive`) looks again the moment the poll sees it, not a
        requeue delay later, and holds nothing while it waits."""
        flight = self.watch.get(handle.get("id"))
        return flight is not None and await self.watch.finishes(flight, timeout_s)

    def _hold(self, flight: Flight) -> float:
        """How long `status` may wait for this flight: all of status_wait_s once its expected completion
        is nearer than the controller's next look (two poll intervals), a short while for a template
        never seen finish, not at all before that (a waiting pass holds one of the runner's slots)."""
        soon = 2 * self.poll_interval_s
        expected = self.watch.expected_in(flight)
        if expected is None:
            return min(self.options.status_wait_s, soon)
        return self.options.status_wait_s if expected <= soon else 0.0

    def _observe(self, handle: Handle, row: Row | None) -> StackStatus:
        if row is None:
            return StackStatus(StackState.ABSENT)
        heat_status = str(row.get("stack_status") or "")
        state = map_state(heat_status)
        reason = f"{heat_status}: {row.get('stack_status_reason') or ''}".strip().rstrip(":")
        if state != StackState.RUNNING:
            return StackStatus(state, reason)
        return self._running(handle, row, reason)

    def _running(self, handle: Handle, row: Row, reason: str) -> StackStatus:
        outputs = {o["output_key"]: o.get("output_value") for o in row.get("outputs") or []}
        errors = {
            o["output_key"]: o["output_error"] for o in row.get("outputs") or [] if o.get("output_error")
        }
        names = list(handle.get("nodes") or ["main"])
        nodes, missing = [], []
        for i, node in enumerate(names):
            keys = address_outputs(i, node)
            host = next((_scalar(outputs[k]) for k in keys if outputs.get(k)), None)
            port_key = port_output(i, node)
            if host is None:
                missing.append(f"{keys[0]} ({errors[keys[0]]})" if keys[0] in errors else keys[0])
                continue
            nodes.append(NodeAddress(node, str(host), int(outputs.get(port_key) or 22)))
        if missing:
            return StackStatus(
                StackState.FAILED,
                f"{row.get('stack_status')}, but the template gave no output {', '.join(missing)}",
            )
        secrets = {k: str(outputs[k]) for k in SECRET_OUTPUTS if outputs.get(k)}
        plain = {k: v for k, v in outputs.items() if k not in SECRET_OUTPUTS}
        return StackStatus(StackState.RUNNING, reason, tuple(nodes), plain, secrets)

    # suspend, resume --------------------------------------------------------------------------------
    async def suspend(self, handle: Handle) -> None:
        await self._action(handle, "suspend")

    async def resume(self, handle: Handle) -> None:
        await self._action(handle, "resume")

    async def _action(self, handle: Handle, action: str) -> None:
        doing = f"{action[:-1]}ing stack {handle['name']}"
        started = await self._run(doing, partial(self._start_action, handle, action))
        if started is not None:
            row, sent = started
            self._fly(handle, row["id"], action.upper(), sent, row)

    def _start_action(self, handle: Handle, action: str) -> tuple[Row, float] | None:
        """POST the action unless the stack is doing it or has done it; the row before and when sent."""
        row = self._show(handle["name"], handle.get("id"))
        if row is None:
            if action == "suspend":
                raise TerminalProviderError(f"stack {handle['name']} does not exist", reason="StackVanished")
            return None  # resume reports the vanished stack through status()
        heat_status = str(row.get("stack_status") or "")
        state = map_state(heat_status)
        if action == "suspend":
            if state in (StackState.SUSPENDING, StackState.SUSPENDED):
                return None
            if state != StackState.RUNNING and heat_status != "SUSPEND_FAILED":
                raise TransientProviderError(f"stack {handle['name']} is {heat_status}", reason="NotReady")
        elif state in (StackState.RESUMING, StackState.RUNNING) or heat_status == "RESUME_COMPLETE":
            return None
        url = _stack_url(row) + "/actions"
        post = partial(self.connection().orchestration.post, url, json={action: None})
        _, sent = self._write(f"{action[:-1]}ing stack {handle['name']}", post)
        return row, sent

    def _write(self, doing: str, call: Callable[[], T]) -> tuple[T, float]:
        """Send a write once the room has a place for it (throttled); its answer, and when the attempt Heat
        took went out (not the wait for room)."""
        with self.room.slot():
            return self.throttle.send(doing, call)

    # delete -----------------------------------------------------------------------------------------
    async def delete(self, handle: Handle) -> None:
        """Delete and wait (bounded, without holding a thread) until Heat confirms; DELETE_FAILED raises.
        Returns at DELETE_COMPLETE, as the SDK's wait does: the stack stays watched until it leaves Heat's
        list (~1.3 s later), and a create of its name waits for that (`create`)."""
        name = handle["name"]
        reason = ""
        for attempt in range(1, self.options.delete_attempts + 1):
            try:
                started = await self._run(
                    f"deleting stack {name}", partial(self._start_delete, handle), pool=self._deletes
                )
            except TerminalProviderError as exc:
                if handle.get("id") or exc.reason not in ("AuthFailed", "CloudNotConfigured"):
                    raise
                return  # no id: create never succeeded with these credentials, so there is nothing to delete
            if started is None:
                return
            flight, settled = await self._await_delete(handle, *started)
            if flight is None or flight.deleted():
                return
            self.watch.forget(flight)
            if not settled:
                raise TransientProviderError(
                    f"cloud {self.cloud!r}: stack {name} still {flight.status} "
                    f"after {self.options.delete_wait_s:g}s",
                    reason="DeleteInProgress",
                )
            reason = flight.reason or "no reason given"
            log.warning("DELETE_FAILED", extra={"stack": name, "attempt": attempt, "reason": reason})
        raise TerminalProviderError(
            f"cloud {self.cloud!r}: stack {name} DELETE_FAILED "
            f"after {self.options.delete_attempts} attempts: {reason}",
            reason="DeleteFailed",
        )

    async def _await_delete(self, handle: Handle, row: Row, sent: float) -> tuple[Flight | None, bool]:
        """Watch the delete until Heat is done with it or delete_wait_s passes: (its flight, settled).
        A stack still showing no DELETE_ status after delete_resend_s is sent its DELETE again (a stack
        gone by then: no flight)."""
        name, deadline = handle["name"], time.monotonic() + self.options.delete_wait_s
        flight = self._fly(handle, row["id"], "DELETE", sent, row)
        while True:
            left = deadline - time.monotonic()
            try:
                settled = await self.watch.wait(flight, min(left, self.options.delete_resend_s), settled=True)
            except Exception as exc:
                self.watch.forget(flight)
                raise translate(exc, self.cloud, f"deleting stack {name}") from exc
            if settled or left <= self.options.delete_resend_s:
                return flight, settled
            if not _delete_dropped(flight):
                continue
            log.warning("DELETE not taken up: sent again", extra={"stack": name, "status": flight.status})
            self.watch.forget(flight)
            started = await self._run(
                f"deleting stack {name}", partial(self._start_delete, handle), pool=self._deletes
            )
            if started is None:
                return None, True
            flight = self._fly(handle, started[0]["id"], "DELETE", started[1], started[0])

    def _start_delete(self, handle: Handle) -> tuple[Row, float] | None:
        """DELETE the stack unless Heat is deleting it already; None when it is gone."""
        row = self._show(handle["name"], handle.get("id"), deleted=True)
        if row is None:
            return None
        sent = time.monotonic()
        if row.get("stack_status") not in ("DELETE_IN_PROGRESS", "DELETE_COMPLETE"):
            delete = partial(self.connection().orchestration.delete, _stack_url(row))
            answer, sent = self.throttle.send(f"deleting stack {handle['name']}", delete, gone_ok=True)
            if answer is None:
                return None
        return row, sent

    # list, check ------------------------------------------------------------------------------------
    async def list(self) -> list[str]:
        def names() -> list[str]:
            stacks = self.connection().orchestration.stacks(tags=[TAG])
            return sorted(s.name for s in stacks if s.status != "DELETE_COMPLETE")

        return await self._run("listing stacks", names)

    async def check(self) -> list[tuple[str, bool, str]]:
        results: list[tuple[str, bool, str]] = []

        def credentials() -> str:
            conn = self.connection()  # signs in
            auth = conn.config.get_auth_args()
            user, project = auth.get("username"), auth.get("project_name")
            return f"authenticated at {auth.get('auth_url')} as {user} in project {project}"

        def endpoint() -> str:
            heat = self.connection().orchestration
            url = heat.get_endpoint()
            heat.validate_template(template={"heat_template_version": TEMPLATE_VERSION, "resources": {}})
            return f"{url} answers (a template validation reached heat-engine)"

        def quota() -> str:
            stacks = list(self.connection().orchestration.stacks())
            ours = sum(1 for s in stacks if TAG in (s.tags or []))
            return (
                f"{len(stacks)} stacks in the project ({ours} tagged {TAG}); Heat publishes no per-project "
                "limit: a full project fails creates with QuotaExceeded and the lab fails over"
            )

        for what, call in (("credentials", credentials), ("heat endpoint", endpoint), ("quota", quota)):
            try:
                results.append((what, True, await self._run(what, call)))
            except Exception as exc:
                results.append((what, False, f"{getattr(exc, 'reason', type(exc).__name__)}: {exc}"))
                if what == "credentials":
                    break
        return results

    async def check_lab(
        self, request: StackRequest, names: Mapping[str, Sequence[str]]
    ) -> list[tuple[str, bool, str]]:
        """Heat's validation of the lab's real template (with its files and parameters), then whether the
        cloud has each of `names` (kind -> names: flavor, image, network, key pair)."""
        results: list[tuple[str, bool, str]] = []
        try:
            results.append(
                (
                    "template",
                    True,
                    await self._run("validating the template", partial(self._validate, request)),
                )
            )
        except ProviderError as exc:
            results.append(("template", False, str(exc)))
        for kind, wanted in names.items():
            for name in wanted:
                ok, detail = await self._run(
                    f"finding {kind} {name}", partial(self._lookup, kind, name), read=True
                )
                results.append((f"{kind} {name}", ok, detail))
        return results

    def _validate(self, request: StackRequest) -> str:
        """POST /validate with `files` and the parameters (the SDK's validate_template sends no files)."""
        attrs = self._template(request)
        parameters = self._parameters(request, attrs["template"])
        body = {
            "template": attrs["template"],
            "files": attrs["files"],
            "environment": {"parameters": parameters},
        }
        response = self.connection().orchestration.post("/validate", json=body)
        sdk.raise_from_response(response)
        declared = response.json().get("Parameters") or {}
        files = len(attrs["files"])
        return f"Heat accepts it ({len(declared)} parameters, {files} file{'' if files == 1 else 's'})"

    def _lookup(self, kind: str, name: str) -> tuple[bool, str]:
        service, method = LOOKUPS[kind]
        conn = self.connection()
        try:
            found = getattr(getattr(conn, service), method)(name, ignore_missing=True)
        except (
            sdk.ServiceDisabledException,
            sdk.EndpointNotFound,
            ksa_exceptions.EndpointNotFound,
            ksa_exceptions.EmptyCatalog,
        ):
            return False, f"the cloud has no {service} service, so it has no {kind} {name!r}"
        except sdk.SDKException as exc:
            return False, str(translate(exc, self.cloud, f"finding {kind} {name}"))
        if found is None:
            return False, f"the cloud has no {kind} {name!r} (visible to this project)"
        return True, f"found ({getattr(found, 'id', None) or name})"


def _delete_dropped(flight: Flight) -> bool:
    """The stack is listed, settled, and shows nothing of the DELETE sent to it."""
    status = flight.status
    return flight.row is not None and not status.startswith("DELETE_") and not status.endswith("_IN_PROGRESS")


def _stack_url(row: Row) -> str:
    return f"/stacks/{row['stack_name']}/{row['id']}"  # by name and id: Heat answers without a redirect


def _digest(attrs: dict[str, Any]) -> str:
    """Which template (with its files) a stack was made of: the key of its operations' timing."""
    text = json.dumps([attrs.get("template"), attrs.get("files")], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
