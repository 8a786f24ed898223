"""The dynamic inventory against a loopback metadata service that serves meta_data.json as Nova would.

The metadata is what the cluster template writes (deploy/heat/cluster.yaml): the topology split into
numbered values of at most 255 characters. The script runs on its own and under ansible-inventory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from deploy.inventory.stacklab_topology import TopologyError, decode, encode

SCRIPT = Path(__file__).resolve().parents[2] / "deploy/inventory/stacklab_inventory.py"
NOVA_MAX_VALUE = 255
NOVA_METADATA_ITEMS = 128  # Nova's default metadata_items quota


def topology(apps: int, workers: int = 2, first_app: int = 0) -> dict[str, object]:
    return {
        "deploy": ["10.20.0.4"],
        "backend": ["10.20.0.11", "10.20.0.12", "10.20.0.13"],
        "app": [f"10.20.{1 + (i // 250)}.{10 + i % 240}" for i in range(first_app, first_app + apps)],
        "worker": [f"10.20.9.{10 + i}" for i in range(workers)],
        "db_vip": "10.20.0.200",
        "public_vip": "203.0.113.7",
        "site": "learn.example.org",
    }


class MetadataService:
    """A loopback stand-in for the metadata service: GET /openstack/latest/meta_data.json."""

    def __init__(self) -> None:
        self.meta: dict[str, str] = {}
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/openstack/latest/meta_data.json":
                    self.send_error(404)
                    return
                body = json.dumps(
                    {
                        "uuid": "5d1c2f2e-0000-4000-8000-000000000001",
                        "name": "sl-edx-deploy",
                        "hostname": "sl-edx-deploy",
                        "availability_zone": "nova",
                        "project_id": "demo",
                        "launch_index": 0,
                        "meta": service.meta,
                        "public_keys": {"sl-edx": "ssh-ed25519 AAAA test"},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/openstack/latest/meta_data.json"

    def write(self, meta: dict[str, str]) -> None:
        """Replace the metadata as Heat's server update does, checking Nova's limits on the way."""
        for key, value in meta.items():
            assert isinstance(value, str), key
            assert len(key) <= NOVA_MAX_VALUE and len(value) <= NOVA_MAX_VALUE, (key, len(value))
        assert len(meta) <= NOVA_METADATA_ITEMS
        self.meta = dict(meta)


@pytest.fixture
def metadata() -> Iterator[MetadataService]:
    service = MetadataService()
    thread = threading.Thread(target=service.server.serve_forever, daemon=True)
    thread.start()
    yield service
    service.server.shutdown()
    service.server.server_close()


def heat_meta(topo: dict[str, object]) -> dict[str, str]:
    return {"ssh_user": "debian", "stack": "sl-edx", **encode(topo)}


def run_script(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env={"STACKLAB_METADATA_URL": url, "PATH": "/usr/bin:/bin"},
        timeout=30,
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
