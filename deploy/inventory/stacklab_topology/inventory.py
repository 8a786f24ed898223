"""Ansible dynamic inventory from the deploy node's instance metadata (OpenStack metadata service).

    stacklab-inventory --list        all groups with _meta.hostvars
    stacklab-inventory --host ADDR   one host's variables

The fixed part of the topology (deploy node, backends, VIPs, site) comes from the deploy node's Nova metadata
(encoding.py); app and worker servers come from their registrations in the deploy server's Heat metadata
(registry.py) when the Nova metadata says ``stacklab_registry: heat``; both are merged.

Environment: STACKLAB_METADATA_URL (default the link-local metadata service), STACKLAB_METADATA_TIMEOUT_S
(default 5), STACKLAB_METADATA_FILE (read a saved meta_data.json instead, for offline runs),
STACKLAB_HEAT_CREDENTIALS (a file with os-collect-config.heat, default Heat's cfn-init-data).
Only the standard library is used: it runs with whatever python3 the deploy node has.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from . import registry
from .encoding import TopologyError, decode

DEFAULT_URL = "http://169.254.169.254/openstack/latest/meta_data.json"

# topology group field -> (Ansible group, role name used in hostvars)
GROUPS = {
    "deploy": "deploy",
    "backend": "backend_servers",
    "app": "app_servers",
    "worker": "worker_servers",
}


class MetadataError(RuntimeError):
    pass


def fetch_metadata() -> dict[str, Any]:
    """The server's metadata items (the "meta" object of meta_data.json)."""
    path = os.environ.get("STACKLAB_METADATA_FILE")
    url = os.environ.get("STACKLAB_METADATA_URL", DEFAULT_URL)
    try:
        timeout = float(os.environ.get("STACKLAB_METADATA_TIMEOUT_S", "5"))
    except ValueError:
        raise MetadataError("STACKLAB_METADATA_TIMEOUT_S is not a number") from None
    try:
        if path:
            with open(path, encoding="utf-8") as stream:
                document = json.load(stream)
            source = path
        else:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                document = json.load(response)
            source = url
    except (OSError, urllib.error.URLError) as error:
        raise MetadataError(f"cannot read metadata from {path or url}: {error}") from None
    except json.JSONDecodeError as error:
        raise MetadataError(f"metadata from {path or url} is not JSON: {error}") from None
    meta = document.get("meta") if isinstance(document, dict) else None
    if not isinstance(meta, dict):
        raise MetadataError(f"{source}: no 'meta' object (is this meta_data.json?)")
    return meta


def build_inventory(
    meta: Mapping[str, Any], registered: Mapping[str, list[str]] | None = None
) -> dict[str, Any]:
    """The --list document: the four groups, their hosts, hostvars and shared variables.

    ``registered`` (role -> addresses, from registry.registrations) is added to the Nova topology's groups.
    """
    topology = decode(meta)
    for field, addresses in (registered or {}).items():
        topology[field] = [*topology.get(field, []), *addresses]
    user = str(meta.get("ssh_user", "debian"))
    settings = {
        f"stacklab_{key}": values[0] if len(values) == 1 else values
        for key, values in topology.items()
        if key not in GROUPS
    }
    inventory: dict[str, Any] = {
        "all": {"children": ["ungrouped", *GROUPS.values()], "vars": settings},
        "ungrouped": {"hosts": []},
    }
    hostvars: dict[str, dict[str, Any]] = {}
    for field, group in GROUPS.items():
        addresses = _unique(topology.get(field, []))
        inventory[group] = {"hosts": addresses}
        for index, address in enumerate(addresses):
            variables = hostvars.setdefault(address, {"ansible_host": address, "ansible_user": user})
            variables.setdefault("stacklab_roles", []).append(field)
            variables[f"stacklab_{field}_index"] = index
    for address in inventory["deploy"]["hosts"]:
        hostvars[address]["ansible_connection"] = "local"
    inventory["backend_servers"]["vars"] = {"stacklab_backend_hosts": inventory["backend_servers"]["hosts"]}
    inventory["_meta"] = {"hostvars": hostvars}
    return inventory


def _unique(addresses: list[str]) -> list[str]:
    return list(dict.fromkeys(addresses))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stacklab-inventory", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--list", action="store_true", help="print every group and _meta.hostvars")
    mode.add_argument("--host", metavar="ADDR", help="print one host's variables")
    args = parser.parse_args(argv)
    try:
        meta = fetch_metadata()
        registered = None
        if meta.get("stacklab_registry") == "heat":
            registered = registry.registrations(registry.fetch_metadata(registry.load_credentials()))
        inventory = build_inventory(meta, registered)
    except (MetadataError, TopologyError, registry.RegistryError) as error:
        print(f"stacklab-inventory: {error}", file=sys.stderr)
        return 1
    if args.list:
        json.dump(inventory, sys.stdout, indent=1, sort_keys=True)
    else:
        json.dump(inventory["_meta"]["hostvars"].get(args.host, {}), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0
