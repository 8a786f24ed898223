"""App and worker servers that registered themselves on the deploy node, read from its Heat metadata.

Why not the Nova metadata: a scaling policy's signal resizes the AutoScalingGroup's nested stack only, so
anything the parent stack computed from the group (the deploy node's Nova metadata included) stays stale
until the next stack update. Instead each member (deploy/heat/lib/app-server.yaml) holds an
``OS::Heat::SoftwareDeployment`` whose *server* is the deploy node, with config group
``stacklab-registration`` and inputs ``stacklab_role`` and ``stacklab_address``. Heat keeps every
deployment of a server in that server's Heat metadata (``deployments``) and rewrites the list when one is
created or deleted, in whichever stack it lives: the list follows the group however it was resized.

The deploy server has ``software_config_transport: POLL_SERVER_HEAT``: Heat puts credentials of a stack
domain user in its boot data (``/var/lib/heat-cfntools/cfn-init-data``, ``os-collect-config.heat``), which
may read exactly that metadata — the same path os-collect-config's heat collector uses:

    POST {auth_url}/auth/tokens   (user id + password, scoped to the stack user project)
    GET  {orchestration endpoint}/stacks/{stack_id}/resources/{resource_name}/metadata

Standard library only, like the rest of the inventory.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

GROUP = "stacklab-registration"
ROLES = ("app", "worker")
CREDENTIAL_FILES = ("/var/lib/heat-cfntools/cfn-init-data", "/var/lib/cloud/data/cfn-init-data")
CREDENTIAL_KEYS = ("user_id", "password", "auth_url", "project_id", "stack_id", "resource_name")


class RegistryError(RuntimeError):
    """The registrations cannot be read; the message says where and why."""


def load_credentials(path: str | None = None) -> dict[str, str]:
    """``os-collect-config.heat`` from the boot data (or the file STACKLAB_HEAT_CREDENTIALS names)."""
    candidates = [path] if path else [os.environ.get("STACKLAB_HEAT_CREDENTIALS", ""), *CREDENTIAL_FILES]
    for candidate in filter(None, candidates):
        try:
            with open(candidate, encoding="utf-8") as stream:
                document = json.load(stream)
        except FileNotFoundError:
            continue
        except (OSError, json.JSONDecodeError) as error:
            raise RegistryError(f"cannot read Heat credentials from {candidate}: {error}") from None
        heat = (document.get("os-collect-config") or {}).get("heat") if isinstance(document, dict) else None
        if not isinstance(heat, dict):
            raise RegistryError(
                f"{candidate}: no os-collect-config.heat (is software_config_transport POLL_SERVER_HEAT?)"
            )
        missing = [key for key in CREDENTIAL_KEYS if not heat.get(key)]
        if missing:
            raise RegistryError(f"{candidate}: os-collect-config.heat lacks {', '.join(missing)}")
        return {key: str(value) for key, value in heat.items() if value is not None}
    raise RegistryError(f"no Heat credentials in {' or '.join(filter(None, candidates))}")


def fetch_metadata(credentials: Mapping[str, str], timeout_s: float = 10) -> dict[str, Any]:
    """The deploy server's Heat metadata, read as its stack user."""
    auth_url = credentials["auth_url"].rstrip("/")
    if not auth_url.endswith("/v3"):
        auth_url += "/v3"
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"id": credentials["user_id"], "password": credentials["password"]}},
            },
            "scope": {"project": {"id": credentials["project_id"]}},
        }
    }
    token, document = _request(f"{auth_url}/auth/tokens", timeout_s, body=body)
    if not token:
        raise RegistryError(f"{auth_url}/auth/tokens gave no X-Subject-Token")
    endpoint = _orchestration_endpoint(
        document.get("token", {}).get("catalog", []), credentials.get("region_name")
    )
    stack, resource = credentials["stack_id"], credentials["resource_name"]
    url = f"{endpoint.rstrip('/')}/stacks/{stack}/resources/{resource}/metadata"
    _, metadata = _request(url, timeout_s, token=token)
    inner = metadata.get("metadata")
    if not isinstance(inner, dict):
        raise RegistryError(f"{url}: no 'metadata' object in the answer")
    return inner


def registrations(metadata: Mapping[str, Any]) -> dict[str, list[str]]:
    """{"app": [addresses], "worker": [addresses]} from the ``deployments`` list of Heat metadata.

    Heat lists a server's deployments sorted by their config's name, which does not change for a member:
    the order (and so each host's index) is stable while members come and go.
    """
    found: dict[str, list[str]] = {role: [] for role in ROLES}
    deployments = metadata.get("deployments") or []
    if not isinstance(deployments, list):
        raise RegistryError("Heat metadata: 'deployments' is not a list")
    for deployment in deployments:
        if not isinstance(deployment, dict) or deployment.get("group") != GROUP:
            continue
        inputs = {
            i.get("name"): i.get("value") for i in deployment.get("inputs") or [] if isinstance(i, dict)
        }
        role, address = inputs.get("stacklab_role"), inputs.get("stacklab_address")
        if role not in found or not isinstance(address, str) or not address:
            raise RegistryError(
                f"registration {deployment.get('name', '?')}: stacklab_role {role!r} / stacklab_address "
                f"{address!r} (expected one of {', '.join(ROLES)} and an address)"
            )
        if address not in found[role]:
            found[role].append(address)
    return found


def _orchestration_endpoint(catalog: list[dict[str, Any]], region: str | None) -> str:
    for service in catalog:
        if service.get("type") != "orchestration":
            continue
        endpoints = service.get("endpoints", [])
        for interface in ("public", "internal"):
            for endpoint in endpoints:
                if endpoint.get("interface") == interface and (
                    not region or endpoint.get("region_id", endpoint.get("region")) == region
                ):
                    return str(endpoint["url"])
    raise RegistryError(f"no orchestration endpoint in the token's catalog (region {region or 'any'})")


def _request(
    url: str, timeout_s: float, body: dict[str, Any] | None = None, token: str | None = None
) -> tuple[str | None, dict[str, Any]]:
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["X-Auth-Token"] = token
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.headers.get("X-Subject-Token"), json.load(response)
    except urllib.error.HTTPError as error:
        raise RegistryError(f"{url}: HTTP {error.code} {error.reason}") from None
    except (OSError, urllib.error.URLError) as error:
        raise RegistryError(f"cannot reach {url}: {error}") from None
    except json.JSONDecodeError as error:
        raise RegistryError(f"{url}: answer is not JSON: {error}") from None
