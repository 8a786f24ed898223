"""A loopback metadata service serving meta_data.json as Nova would (the `metadata` fixture); topologies."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from deploy.inventory.stacklab_topology import encode

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


def heat_meta(topo: dict[str, object]) -> dict[str, str]:
    return {"ssh_user": "debian", "stack": "sl-edx", **encode(topo)}
