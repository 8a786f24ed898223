"""Labs as OpenStack Heat stacks, through openstacksdk's proxy layer (`conn.orchestration.*`).

Every call returns quickly: the SDK's blocking HTTP calls run in this provider's own thread pool and the
provider never waits for a stack to change, except in `delete`, which waits (asynchronously, a bounded
time) so that a DELETE_FAILED is raised instead of dropped. The controller re-drives everything else.

Output contract of a template (the same as hastexo-xblock's): `public_ip` is the address of the lab's first
node (optional `ssh_port`, default 22); a further node N is `N_public_ip` (or `N_ip`, with `N_ssh_port`);
`private_key` (the key the learner logs in with) and `password` are secrets; every other output is kept as a
plain output. Parameters stacklab supplies when the template declares them: `run` (the stack name,
`sl-<environment id>`), `public_key` / `ssh_public_key` (the environment's login key) and `login_user`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, ClassVar, TypeVar

import openstack
from keystoneauth1 import exceptions as ksa_exceptions
from openstack import exceptions as sdk
from openstack import warnings as sdk_warnings

from stacklab.errors import ProviderError, TerminalProviderError, TransientProviderError
from stacklab.providers.base import Handle, NodeAddress, Provider, StackRequest, StackState, StackStatus
from stacklab.providers.openstack.contract import (
    SECRET_OUTPUTS,
    address_outputs,
    port_output,
    supplied_parameters,
)
from stacklab.providers.openstack.errors import translate

log = logging.getLogger(__name__)
T = TypeVar("T")

TAG = "stacklab"
"""Every stack this provider creates carries this tag; `list()` returns only those."""
TEMPLATE_VERSION = "2018-08-31"
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
        self.delete_wait_s = float(self.settings.get("delete_wait_s", 60.0))
        self.delete_attempts = int(self.settings.get("delete_attempts", 3))
        self.api_timeout_s = float(self.settings.get("api_timeout_s", 30.0))
        """One HTTP request's bound: a Heat whose engine is gone answers only after its RPC timeout (60 s),
        and keystoneauth has no timeout of its own; a hung call would hold the environment's lease."""
        threads = int(self.settings.get("api_threads", 16))
        self._pool = ThreadPoolExecutor(threads, f"openstack-{name}")
        # Status reads get their own threads: a burst of creates must not delay noticing a finished stack.
        self._reads = ThreadPoolExecutor(threads, f"openstack-{name}-status")
        self._conn: Any = None
        self._conn_lock = threading.Lock()
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
                        cloud=self.cloud, app_name="stacklab", api_timeout=self.api_timeout_s
                    )
                adapter = conn.session.session.get_adapter("http://")
                connections = self._pool._max_workers + self._reads._max_workers
                adapter.init_poolmanager(connections, connections, block=False)
                conn.session.session.hooks["response"].append(self._count)
                self._conn = conn
            return self._conn

    def _count(self, response: Any, *args: Any, **kwargs: Any) -> None:
        if self.on_request is not None:
            self.on_request(response.request.method, response.request.url)

    async def _run(self, doing: str, call: Callable[[], T], *, read: bool = False) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._reads if read else self._pool, call)
        except Exception as exc:
            raise translate(exc, self.cloud, doing) from exc

    def _find(self, handle: Handle) -> Any:
        """The stack of `handle`, or None. One GET by name/id (no redirect) when the id is known."""
        heat = self.connection().orchestration
        name, stack_id = handle["name"], handle.get("id")
        try:
            if stack_id:
                return heat.get_stack(f"{name}/{stack_id}")
            return heat.find_stack(name, ignore_missing=True)
        except sdk.NotFoundException:
            return None

    # create -----------------------------------------------------------------------------------------
    async def create(self, request: StackRequest) -> Handle:
        return await self._run(f"creating stack {request.name}", partial(self._create, request))

    def _create(self, request: StackRequest) -> Handle:
        nodes = list(request.config.get("nodes") or ["main"])
        existing = self._find({"name": request.name})
        if existing is not None and existing.status != "DELETE_COMPLETE":
            return {"name": request.name, "id": existing.id, "nodes": nodes}
        attrs = self._template(request)
        parameters = self._parameters(request, attrs["template"])
        heat = self.connection().orchestration
        try:
            stack = heat.create_stack(name=request.name, parameters=parameters, tags=TAG, **attrs)
        except sdk.ConflictException:  # created concurrently by an earlier, interrupted pass
            stack = self._find({"name": request.name})
            if stack is None:
                raise
        log.info("stack created", extra={"stack": request.name, "cloud": self.cloud})
        return {"name": request.name, "id": stack.id, "nodes": nodes}

    @staticmethod
    def _parameters(request: StackRequest, template: dict[str, Any]) -> dict[str, Any]:
        """The lab's parameters and those stacklab supplies (contract.SUPPLIED_PARAMETERS)."""
        parameters: dict[str, Any] = dict(request.config.get("parameters") or {})
        declared = template.get("parameters") or {}
        parameters.update(
            supplied_parameters(
                declared,
                stack_name=request.name,
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
        try:
            attrs = self.connection().orchestration.read_env_and_templates(
                template_file=os.path.abspath(path)
            )
        except (OSError, sdk.SDKException, ValueError) as exc:
            if isinstance(exc, sdk.HttpException):
                raise
            raise TerminalProviderError(f"template {path}: {exc}", reason="TemplateInvalid") from exc
        attrs.setdefault("files", {})
        return attrs

    # status -----------------------------------------------------------------------------------------
    async def status(self, handle: Handle) -> StackStatus:
        return await self._run(f"reading stack {handle['name']}", partial(self._status, handle), read=True)

    def _status(self, handle: Handle) -> StackStatus:
        stack = self._find(handle)
        if stack is None:
            return StackStatus(StackState.ABSENT)
        state = map_state(stack.status or "")
        reason = f"{stack.status}: {stack.status_reason or ''}".strip().rstrip(":")
        if state != StackState.RUNNING:
            return StackStatus(state, reason)
        return self._running(handle, stack, reason)

    def _running(self, handle: Handle, stack: Any, reason: str) -> StackStatus:
        outputs = {o["output_key"]: o.get("output_value") for o in stack.outputs or []}
        errors = {o["output_key"]: o["output_error"] for o in stack.outputs or [] if o.get("output_error")}
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
                StackState.FAILED, f"{stack.status}, but the template gave no output {', '.join(missing)}"
            )
        secrets = {k: str(outputs[k]) for k in SECRET_OUTPUTS if outputs.get(k)}
        plain = {k: v for k, v in outputs.items() if k not in SECRET_OUTPUTS}
        return StackStatus(StackState.RUNNING, reason, tuple(nodes), plain, secrets)

    # suspend, resume --------------------------------------------------------------------------------
    async def suspend(self, handle: Handle) -> None:
        await self._run(f"suspending stack {handle['name']}", partial(self._action, handle, "suspend"))

    async def resume(self, handle: Handle) -> None:
        await self._run(f"resuming stack {handle['name']}", partial(self._action, handle, "resume"))

    def _action(self, handle: Handle, action: str) -> None:
        stack = self._find(handle)
        if stack is None:
            if action == "suspend":
                raise TerminalProviderError(f"stack {handle['name']} does not exist", reason="StackVanished")
            return  # resume reports the vanished stack through status()
        state = map_state(stack.status or "")
        if action == "suspend":
            if state in (StackState.SUSPENDING, StackState.SUSPENDED):
                return
            if state != StackState.RUNNING and stack.status != "SUSPEND_FAILED":
                raise TransientProviderError(f"stack {handle['name']} is {stack.status}", reason="NotReady")
            self._post_action(stack, "suspend")
        else:
            if state in (StackState.RESUMING, StackState.RUNNING) or stack.status == "RESUME_COMPLETE":
                return
            self._post_action(stack, "resume")

    def _stack_url(self, stack: Any) -> str:
        return f"/stacks/{stack.name}/{stack.id}"  # by name and id: Heat answers without a redirect

    def _post_action(self, stack: Any, action: str) -> None:
        response = self.connection().orchestration.post(
            self._stack_url(stack) + "/actions", json={action: None}
        )
        sdk.raise_from_response(response)

    def _delete_stack(self, stack: Any) -> None:
        response = self.connection().orchestration.delete(self._stack_url(stack))
        if response.status_code != 404:
            sdk.raise_from_response(response)

    # delete -----------------------------------------------------------------------------------------
    async def delete(self, handle: Handle) -> None:
        """Delete and wait (bounded, without holding a thread) until Heat confirms; DELETE_FAILED raises."""
        name = handle["name"]
        reason = ""
        loop = asyncio.get_running_loop()
        for attempt in range(1, self.delete_attempts + 1):
            try:
                stack = await self._run(f"finding stack {name}", partial(self._find, {"name": name}))
            except TerminalProviderError as exc:
                if handle.get("id") or exc.reason not in ("AuthFailed", "CloudNotConfigured"):
                    raise
                return  # no id: create never succeeded with these credentials, so there is nothing to delete
            if stack is None:
                return
            if stack.status != "DELETE_IN_PROGRESS":
                await self._run(f"deleting stack {name}", partial(self._delete_stack, stack))
            deadline = loop.time() + self.delete_wait_s
            handle_now = {"name": name, "id": stack.id}
            while True:
                await asyncio.sleep(min(1.0, self.poll_interval_s))
                stack = await self._run(f"deleting stack {name}", partial(self._find, handle_now))
                if stack is None or stack.status == "DELETE_COMPLETE":
                    return
                if stack.status == "DELETE_FAILED":
                    reason = stack.status_reason or "no reason given"
                    log.warning("DELETE_FAILED", extra={"stack": name, "attempt": attempt, "reason": reason})
                    break
                if loop.time() > deadline:
                    raise TransientProviderError(
                        f"cloud {self.cloud!r}: stack {name} still {stack.status} "
                        f"after {self.delete_wait_s:g}s",
                        reason="DeleteInProgress",
                    )
        raise TerminalProviderError(
            f"cloud {self.cloud!r}: stack {name} DELETE_FAILED "
            f"after {self.delete_attempts} attempts: {reason}",
            reason="DeleteFailed",
        )

    # list, check ------------------------------------------------------------------------------------
    async def list(self) -> list[str]:
        def names() -> list[str]:
            stacks = self.connection().orchestration.stacks(tags=[TAG])
            return sorted(s.name for s in stacks if s.status != "DELETE_COMPLETE")

        return await self._run("listing stacks", names)

    async def check(self) -> list[tuple[str, bool, str]]:
        results: list[tuple[str, bool, str]] = []

        def credentials() -> str:
            conn = self.connection()
            conn.authorize()
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
        return f"Heat accepts it ({len(declared)} parameters, {len(attrs['files'])} files)"

    def _lookup(self, kind: str, name: str) -> tuple[bool, str]:
        service, method = LOOKUPS[kind]
        conn = self.connection()
        try:
            found = getattr(getattr(conn, service), method)(name, ignore_missing=True)
        except (sdk.EndpointNotFound, ksa_exceptions.EndpointNotFound, ksa_exceptions.EmptyCatalog):
            return False, f"the cloud has no {service} service, so it has no {kind} {name!r}"
        except sdk.SDKException as exc:
            return False, str(translate(exc, self.cloud, f"finding {kind} {name}"))
        if found is None:
            return False, f"the cloud has no {kind} {name!r} (visible to this project)"
        return True, f"found ({getattr(found, 'id', None) or name})"
