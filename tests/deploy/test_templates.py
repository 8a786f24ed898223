"""The Heat templates: structure, resource types, references, cloud-configs and Heat's own validation."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy.inventory.stacklab_topology import decode, encode

HEAT = Path(__file__).resolve().parents[2] / "deploy/heat"
TEMPLATES = sorted([*HEAT.glob("*.yaml"), *HEAT.glob("lib/*.yaml")])
HELPERS = Path(__file__).parent / "helpers"


class _HotLoader(yaml.SafeLoader):
    """HOT keeps heat_template_version a string (a plain YAML loader turns it into a date)."""


_HotLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_HotLoader)


def test_the_templates_exist() -> None:
    names = {str(p.relative_to(HEAT)) for p in TEMPLATES}
    assert {"single-node.yaml", "cluster.yaml", "lib/backend.yaml", "lib/app-server.yaml"} <= names


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: str(p.relative_to(HEAT)))
def test_template_is_current_hot_and_described(path: Path) -> None:
    """Types, properties, attributes and references are `stacklab template check`'s (tests/unit/
    test_template_check.py runs it on these files); here what a reader of the deploy templates relies on."""
    template = load(path)
    assert template["heat_template_version"] == "2021-04-16"
    assert template.get("description")
    if path.parent == HEAT:  # top-level templates: every parameter has a type
        for name, param in template.get("parameters", {}).items():
            assert "type" in param, name


def test_single_node_has_the_parameters_and_outputs_users_need() -> None:
    template = load(HEAT / "single-node.yaml")
    assert {"key_name", "image", "flavor", "public_network"} <= set(template["parameters"])
    assert {"public_ip", "site_url"} <= set(template["outputs"])
    assert template["resources"]["wait"]["type"] == "OS::Heat::WaitCondition"


def test_cluster_topology() -> None:
    template = load(HEAT / "cluster.yaml")
    resources = template["resources"]
    params = template["parameters"]
    assert {"key_name", "public_network", "image", "app_count", "worker_count"} <= set(params)
    assert {"deploy_flavor", "backend_flavor", "app_flavor", "worker_flavor"} <= set(params)
    # exactly three backends, anti-affine, each with a volume
    assert resources["backends"]["properties"]["count"] == 3
    assert resources["backend_server_group"]["properties"]["policies"] == ["anti-affinity"]
    backend = load(HEAT / "lib/backend.yaml")["resources"]
    assert backend["server"]["properties"]["scheduler_hints"] == {"group": {"get_param": "server_group"}}
    assert backend["volume_attachment"]["type"] == "OS::Cinder::VolumeAttachment"
    assert {
        r["properties"]["protocol_port"] for r in backend.values() if r["type"] == "OS::Octavia::PoolMember"
    } == {
        3306,
        6379,
    }
    # app tier: autoscaling behind the public LB with a health monitor; policies both ways
    assert resources["app_group"]["type"] == "OS::Heat::AutoScalingGroup"
    adjustments = {
        r["properties"]["scaling_adjustment"]
        for r in resources.values()
        if r["type"] == "OS::Heat::ScalingPolicy"
    }
    assert adjustments == {1, -1}
    assert resources["app_monitor"]["properties"]["pool"] == {"get_resource": "app_pool"}
    assert resources["worker_group"]["properties"]["desired_capacity"] == {"get_param": "worker_count"}
    outputs = template["outputs"]
    assert {"public_ips", "lb_address", "scale_up_url", "scale_down_url", "dns_names", "search_url"} <= set(
        outputs
    )
    # browsers reach Meilisearch at Tutor's MEILISEARCH_PUBLIC_URL (meilisearch.<LMS host>) via the public LB
    assert outputs["search_url"]["value"] == {
        "list_join": ["", ["http://meilisearch.", {"get_attr": ["site_host", "value"]}]]
    }
    # every server waits for its wait condition
    for path in (HEAT / "cluster.yaml", HEAT / "lib/backend.yaml", HEAT / "lib/app-server.yaml"):
        types = [r["type"] for r in load(path)["resources"].values()]
        assert "OS::Heat::WaitCondition" in types and "OS::Heat::MultipartMime" in types, path.name


def _placeholders(node: Any) -> Any:
    """Intrinsic functions replaced by a string, as cloud-init sees them once Heat resolved them."""
    if isinstance(node, dict):
        if len(node) == 1 and next(iter(node)) in {
            "get_param",
            "get_attr",
            "str_replace",
            "list_join",
            "get_file",
        }:
            return "resolved-by-heat"
        return {key: _placeholders(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_placeholders(item) for item in node]
    return node


def cloud_configs() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in TEMPLATES:
        for name, resource in load(path)["resources"].items():
            if resource["type"] == "OS::Heat::CloudConfig":
                found.append(
                    (
                        f"{path.relative_to(HEAT)}:{name}",
                        _placeholders(resource["properties"]["cloud_config"]),
                    )
                )
    return found


def test_every_server_boots_with_a_cloud_config() -> None:
    assert len(cloud_configs()) == 4


@pytest.mark.deploy
@pytest.mark.parametrize(("where", "config"), cloud_configs(), ids=[w for w, _ in cloud_configs()])
def test_cloud_config_validates_against_cloud_inits_schema(
    where: str, config: dict, cloud_init_schema: Path, deploy_venv: Path
) -> None:
    assert schema_errors(deploy_venv, cloud_init_schema, config) == [], where


@pytest.mark.deploy
def test_the_schema_check_catches_a_wrong_cloud_config(cloud_init_schema: Path, deploy_venv: Path) -> None:
    errors = schema_errors(deploy_venv, cloud_init_schema, {"packages": "git", "runcmd": {"a": 1}})
    assert any(e.startswith("packages:") for e in errors) and any(e.startswith("runcmd:") for e in errors)


def schema_errors(venv: Path, schema: Path, config: dict) -> list[str]:
    """jsonschema runs in the deploy venv (the project venv does not carry it)."""
    result = subprocess.run(
        [str(venv / "bin/python"), str(HELPERS / "cloud_config_check.py"), str(schema)],
        input=json.dumps(config),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.deploy
@pytest.mark.parametrize("apps", [0, 3, 50, 600])
def test_the_templates_yaql_writes_what_the_inventory_reads(apps: int, deploy_venv: Path) -> None:
    """cluster.yaml slices the topology with yaql; evaluated with Heat's limits it matches encode()."""
    metadata = load(HEAT / "cluster.yaml")["resources"]["deploy_server"]["properties"]["metadata"]
    yaql_fn = metadata["map_merge"][1]["yaql"]
    topo: dict[str, object] = {
        "deploy": ["10.20.0.4"],
        "backend": ["10.20.0.11", "10.20.0.12", "10.20.0.13"],
        "app": [f"10.20.{1 + i // 250}.{i % 250}" for i in range(apps)],
        "worker": ["10.20.9.10"],
        "db_vip": "10.20.0.200",
    }
    text = ";".join(f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in topo.items())
    result = subprocess.run(
        [str(deploy_venv / "bin/python"), str(HELPERS / "heat_yaql.py"), yaql_fn["expression"]],
        input=json.dumps({"text": text}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    meta = json.loads(result.stdout)
    assert meta == encode(topo)
    assert all(len(value) <= 255 for value in meta.values())
    assert decode(meta)["app"] == topo["app"]


@pytest.mark.deploy
def test_heat_engine_validates_every_template(heat_python: Path) -> None:
    """Heat's resource registry (types, properties, attributes, support status) and Heat's Stack.validate."""
    result = subprocess.run(
        [str(heat_python), str(HELPERS / "heat_check.py"), *map(str, TEMPLATES)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout) == []


@pytest.mark.deploy
def test_heat_engine_check_rejects_hidden_types_and_unknown_properties(
    heat_python: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "heat_template_version: 2021-04-16\n"
        "description: bad\n"
        "resources:\n"
        "  lb: {type: OS::Neutron::LBaaS::LoadBalancer, properties: {vip_subnet: s}}\n"
        "  fip: {type: OS::Nova::FloatingIP}\n"
        "  srv: {type: OS::Nova::Server, properties: {image: i, flavor: f, colour: blue}}\n"
        "  v: {type: OS::Heat::Value, properties: {value: {get_attr: [srv, no_such_attribute]}}}\n"
    )
    result = subprocess.run(
        [str(heat_python), str(HELPERS / "heat_check.py"), str(bad)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    problems = "\n".join(json.loads(result.stdout))
    assert "OS::Neutron::LBaaS::LoadBalancer is HIDDEN" in problems
    assert "OS::Nova::FloatingIP is HIDDEN" in problems
    assert "OS::Nova::Server has no property colour" in problems
    assert "has no attribute no_such_attribute" in problems
