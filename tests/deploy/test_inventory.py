"""The dynamic inventory against a loopback metadata service that serves meta_data.json as Nova would.

The metadata is what the cluster template writes (deploy/heat/cluster.yaml): the topology split into
numbered values of at most 255 characters. The script runs on its own and under ansible-inventory.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from deploy.inventory.stacklab_topology import RegistryError, TopologyError, decode, encode, registrations
from tests.deploy.nova_metadata import (
    NOVA_MAX_VALUE,
    MetadataService,
    heat_meta,
    topology,
)

SCRIPT = Path(__file__).resolve().parents[2] / "deploy/inventory/stacklab_inventory.py"


def run_script(url: str, *args: str, credentials: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {"STACKLAB_METADATA_URL": url, "PATH": "/usr/bin:/bin"}
    if credentials:
        env["STACKLAB_HEAT_CREDENTIALS"] = str(credentials)
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=30
    )


def ansible_inventory(url: str, env: dict[str, str]) -> dict:
    result = subprocess.run(
        ["ansible-inventory", "-i", str(SCRIPT), "--list"],
        capture_output=True,
        text=True,
        env={**env, "STACKLAB_METADATA_URL": url},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Unable to parse" not in result.stderr, result.stderr
    return json.loads(result.stdout)


# ---------------------------------------------------------------- encoding


def test_encoding_round_trips_and_every_value_fits_nova() -> None:
    topo = topology(apps=400, workers=40)
    meta = encode(topo)
    assert all(len(v) <= NOVA_MAX_VALUE for v in meta.values())
    assert int(meta["topology_count"]) > 20
    decoded = decode(meta)
    assert decoded["app"] == topo["app"]
    assert decoded["site"] == ["learn.example.org"]


def test_stale_chunks_beyond_the_count_are_ignored() -> None:
    big, small = encode(topology(apps=60)), encode(topology(apps=2))
    assert decode({**big, **small})["app"] == topology(apps=2)["app"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("topology_1"), "topology_1 is missing"),
        (lambda m: m.update(topology_length="3"), "topology_length says 3"),
        (lambda m: m.update(topology_count="many"), "topology_count is 'many', not a number"),
        (lambda m: m.update(stacklab_topology_version="9"), "this inventory reads '1'"),
        (lambda m: m.pop("stacklab_topology_version"), "not a stacklab deploy node"),
    ],
)
def test_broken_metadata_is_named(change, message: str) -> None:  # type: ignore[no-untyped-def]
    meta = encode(topology(apps=30))
    change(meta)
    with pytest.raises(TopologyError, match=message):
        decode(meta)


# ---------------------------------------------------------------- registrations (Heat metadata)


def heat_deployment(name: str, role: str, address: str, group: str = "stacklab-registration") -> dict:
    """One entry of a server's Heat metadata "deployments", as Heat's format_software_config writes it."""
    return {
        "id": f"id-{name}",
        "name": name,
        "group": group,
        "config": "",
        "options": None,
        "outputs": [],
        "creation_time": "2025-01-01T00:00:00Z",
        "inputs": [
            {"name": "stacklab_role", "type": "String", "value": role, "default": None},
            {"name": "stacklab_address", "type": "String", "value": address, "default": None},
            {"name": "deploy_server_id", "type": "String", "value": "srv", "default": None},
            {"name": "deploy_action", "type": "String", "value": "CREATE", "default": None},
        ],
    }


def test_registrations_are_read_from_heat_metadata() -> None:
    meta = {
        "os-collect-config": {"collectors": ["heat"]},
        "deployments": [
            heat_deployment("a-1", "app", "10.20.1.10"),
            heat_deployment("other", "app", "10.99.0.1", group="script"),  # not ours: ignored
            heat_deployment("w-1", "worker", "10.20.9.10"),
            heat_deployment("a-2", "app", "10.20.1.11"),
            heat_deployment("a-2-again", "app", "10.20.1.11"),
        ],
    }
    assert registrations(meta) == {"app": ["10.20.1.10", "10.20.1.11"], "worker": ["10.20.9.10"]}
    assert registrations({}) == {"app": [], "worker": []}
    with pytest.raises(RegistryError, match="registration bad: stacklab_role 'db'"):
        registrations({"deployments": [heat_deployment("bad", "db", "10.0.0.1")]})


def test_registered_servers_join_the_nova_topology() -> None:
    from deploy.inventory.stacklab_topology.inventory import build_inventory

    fixed = heat_meta(topology(apps=0, workers=0))
    inventory = build_inventory(fixed, {"app": ["10.20.1.10", "10.20.1.11"], "worker": ["10.20.9.10"]})
    assert inventory["app_servers"]["hosts"] == ["10.20.1.10", "10.20.1.11"]
    assert inventory["worker_servers"]["hosts"] == ["10.20.9.10"]
    assert inventory["_meta"]["hostvars"]["10.20.1.11"]["stacklab_app_index"] == 1
    assert inventory["backend_servers"]["hosts"] == ["10.20.0.11", "10.20.0.12", "10.20.0.13"]


def test_script_names_missing_heat_credentials(metadata: MetadataService, tmp_path: Path) -> None:
    metadata.write({**heat_meta(topology(apps=0)), "stacklab_registry": "heat"})
    result = run_script(metadata.url, "--list", credentials=tmp_path / "none")
    assert result.returncode == 1
    assert result.stderr.startswith("stacklab-inventory: no Heat credentials in ")
    (tmp_path / "cfn").write_text(json.dumps({"os-collect-config": {"collectors": ["cfn"]}}))
    result = run_script(metadata.url, "--list", credentials=tmp_path / "cfn")
    assert "no os-collect-config.heat (is software_config_transport POLL_SERVER_HEAT?)" in result.stderr


# ---------------------------------------------------------------- the script


def test_script_lists_groups_and_hostvars(metadata: MetadataService) -> None:
    metadata.write(heat_meta(topology(apps=3)))
    result = run_script(metadata.url, "--list")
    assert result.returncode == 0, result.stderr
    inventory = json.loads(result.stdout)
    assert inventory["deploy"]["hosts"] == ["10.20.0.4"]
    assert inventory["backend_servers"]["hosts"] == ["10.20.0.11", "10.20.0.12", "10.20.0.13"]
    assert inventory["app_servers"]["hosts"] == ["10.20.1.10", "10.20.1.11", "10.20.1.12"]
    assert inventory["worker_servers"]["hosts"] == ["10.20.9.10", "10.20.9.11"]
    assert inventory["all"]["vars"] == {
        "stacklab_db_vip": "10.20.0.200",
        "stacklab_public_vip": "203.0.113.7",
        "stacklab_site": "learn.example.org",
    }
    hostvars = inventory["_meta"]["hostvars"]
    assert hostvars["10.20.0.12"] == {
        "ansible_host": "10.20.0.12",
        "ansible_user": "debian",
        "stacklab_roles": ["backend"],
        "stacklab_backend_index": 1,
    }
    assert hostvars["10.20.0.4"]["ansible_connection"] == "local"

    host = run_script(metadata.url, "--host", "10.20.1.11")
    assert json.loads(host.stdout)["stacklab_app_index"] == 1
    assert json.loads(run_script(metadata.url, "--host", "10.99.9.9").stdout) == {}


def test_script_reports_an_unreachable_service_in_one_line() -> None:
    result = run_script("http://127.0.0.1:9/openstack/latest/meta_data.json", "--list")
    assert result.returncode == 1
    assert result.stderr.startswith("stacklab-inventory: cannot read metadata from http://127.0.0.1:9/")
    assert "Traceback" not in result.stderr


def test_script_reports_a_server_without_topology(metadata: MetadataService) -> None:
    metadata.write({"ssh_user": "debian"})
    result = run_script(metadata.url, "--list")
    assert result.returncode == 1
    assert "no stacklab_topology_version" in result.stderr


# ---------------------------------------------------------------- ansible-inventory


@pytest.mark.deploy
def test_ansible_inventory_reads_a_fifty_app_server_topology(
    metadata: MetadataService, deploy_env: dict[str, str]
) -> None:
    meta = heat_meta(topology(apps=50, workers=4))
    assert int(meta["topology_count"]) >= 3  # really split across several values
    metadata.write(meta)
    inventory = ansible_inventory(metadata.url, deploy_env)
    apps = inventory["app_servers"]["hosts"]
    assert len(apps) == 50 and apps == topology(apps=50)["app"]
    assert len(inventory["worker_servers"]["hosts"]) == 4
    assert inventory["backend_servers"]["hosts"] == ["10.20.0.11", "10.20.0.12", "10.20.0.13"]
    assert inventory["deploy"]["hosts"] == ["10.20.0.4"]
    hostvars = inventory["_meta"]["hostvars"]
    assert hostvars[apps[49]]["stacklab_app_index"] == 49
    assert hostvars[apps[0]]["ansible_user"] == "debian"
    # group and shared variables reach every host
    assert hostvars[apps[0]]["stacklab_db_vip"] == "10.20.0.200"
    assert hostvars["10.20.0.11"]["stacklab_backend_hosts"] == ["10.20.0.11", "10.20.0.12", "10.20.0.13"]


@pytest.mark.deploy
def test_ansible_inventory_follows_scaling_down_and_up(
    metadata: MetadataService, deploy_env: dict[str, str]
) -> None:
    metadata.write(heat_meta(topology(apps=50)))
    assert len(ansible_inventory(metadata.url, deploy_env)["app_servers"]["hosts"]) == 50

    # scale down to 2: a store that merges keys would leave topology_1.. behind; the count rules
    metadata.write({**metadata.meta, **heat_meta(topology(apps=2, workers=1))})
    inventory = ansible_inventory(metadata.url, deploy_env)
    assert inventory["app_servers"]["hosts"] == ["10.20.1.10", "10.20.1.11"]
    assert inventory["worker_servers"]["hosts"] == ["10.20.9.10"]
    assert "10.20.1.30" not in inventory["_meta"]["hostvars"]

    # scale up again, with other members (an AutoScalingGroup removes and adds arbitrary ones)
    metadata.write(heat_meta(topology(apps=70, first_app=5)))
    inventory = ansible_inventory(metadata.url, deploy_env)
    assert inventory["app_servers"]["hosts"] == topology(apps=70, first_app=5)["app"]
    assert "10.20.1.10" not in inventory["_meta"]["hostvars"]
