"""App servers registered in Heat, read by the inventory: against the real Keystone + Heat of the harness.

The harness has no Nova, so no server can be booted and no template-defined SoftwareDeployment can name one.
What Heat does for the cluster template is done here through Heat's own software-deployment API, with the
same engine code path: a deployment is created for a resource's physical id (the deploy node in the
cluster), Heat writes the list of that resource's deployments into its metadata, and rewrites the list
when a deployment is deleted (a member removed by scaling down). The inventory then authenticates to the
real Keystone as the credentials file says, finds Heat in the catalog and reads that metadata — exactly
what it does on the deploy node with the stack user Heat made for it.

A second test runs the scaling wiring of cluster.yaml (AutoScalingGroup + ScalingPolicy, signalled)
in the real Heat with Heat-only members.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import openstack
import pytest
from openstack.warnings import RemovedInSDK60Warning
from tests.deploy.nova_metadata import MetadataService, heat_meta, topology

SCRIPT = Path(__file__).resolve().parents[2] / "deploy/inventory/stacklab_inventory.py"

pytestmark = [pytest.mark.openstack, pytest.mark.deploy]

REGISTRATION = "stacklab-registration"

DEPLOY_NODE_STACK = """\
heat_template_version: 2021-04-16
description: stands in for the cluster's deploy node (any resource with a UUID physical id holds deployments)
resources:
  deploy_server:
    type: OS::Heat::SoftwareConfig
    properties: {group: none, config: ""}
outputs:
  server_id:
    value: {get_resource: deploy_server}
"""

SCALING_STACK = """\
heat_template_version: 2021-04-16
description: the scaling wiring of deploy/heat/cluster.yaml with Heat-only members
resources:
  app_group:
    type: OS::Heat::AutoScalingGroup
    properties:
      min_size: 1
      max_size: 4
      desired_capacity: 2
      resource:
        type: OS::Heat::RandomString
  app_scale_up:
    type: OS::Heat::ScalingPolicy
    properties:
      auto_scaling_group_id: {get_resource: app_group}
      adjustment_type: change_in_capacity
      scaling_adjustment: 1
      cooldown: 0
  app_scale_down:
    type: OS::Heat::ScalingPolicy
    properties:
      auto_scaling_group_id: {get_resource: app_group}
      adjustment_type: change_in_capacity
      scaling_adjustment: -1
      cooldown: 0
outputs:
  scale_up_signal_url:
    value: {get_attr: [app_scale_up, signal_url]}
  scale_down_signal_url:
    value: {get_attr: [app_scale_down, signal_url]}
  group_id:
    value: {get_resource: app_group}
"""


def connect(cloud: str = "heatbox") -> openstack.connection.Connection:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RemovedInSDK60Warning)
        return openstack.connect(cloud=cloud)


def create_stack(conn: openstack.connection.Connection, name: str, template: str):  # type: ignore[no-untyped-def]
    heat = conn.orchestration
    for old in heat.stacks():
        if old.name == name:
            heat.delete_stack(old)
            heat.wait_for_delete(old, wait=120)  # test setup only
    stack = heat.create_stack(name=name, template=json.loads(json.dumps(_yaml(template))))
    return heat.wait_for_status(stack, status="CREATE_COMPLETE", failures=["CREATE_FAILED"], wait=120)


def _yaml(text: str) -> dict:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        k: [(t, r) for t, r in v if t != "tag:yaml.org,2002:timestamp"]
        for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return yaml.load(text, Loader=Loader)


@pytest.fixture
def conn(heat_clouds: Path) -> Iterator[openstack.connection.Connection]:
    connection = connect()
    yield connection
    for stack in list(connection.orchestration.stacks()):
        if stack.name.startswith("sl-deploy-"):
            connection.orchestration.delete_stack(stack)
            connection.orchestration.wait_for_delete(stack, wait=120)  # test cleanup only


def physical_id(conn, stack, name: str) -> str:  # type: ignore[no-untyped-def]
    (found,) = [r for r in conn.orchestration.resources(stack) if r.name == name]
    return str(found.physical_resource_id)


def register(conn, server_id: str, role: str, address: str, name: str) -> str:  # type: ignore[no-untyped-def]
    """What a member's OS::Heat::SoftwareDeployment makes: a derived config with inputs, a deployment."""
    heat = conn.orchestration
    config = heat.create_software_config(
        name=name,
        group=REGISTRATION,
        config="",
        inputs=[
            {"name": "stacklab_role", "type": "String", "value": role},
            {"name": "stacklab_address", "type": "String", "value": address},
            {"name": "deploy_action", "type": "String", "value": "CREATE"},
            {"name": "deploy_signal_transport", "type": "String", "value": "NO_SIGNAL"},
        ],
    )
    deployment = heat.create_software_deployment(
        server_id=server_id,
        config_id=config.id,
        action="CREATE",
        status="COMPLETE",
        status_reason="Not waiting for outputs signal",
    )
    return str(deployment.id)


def inventory(url: str, env: dict[str, str], credentials: Path) -> dict:
    result = subprocess.run(
        ["ansible-inventory", "-i", str(SCRIPT), "--list"],
        capture_output=True,
        text=True,
        env={**env, "STACKLAB_METADATA_URL": url, "STACKLAB_HEAT_CREDENTIALS": str(credentials)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_inventory_follows_registrations_in_real_heat(
    conn, metadata: MetadataService, deploy_env: dict[str, str], tmp_path: Path
) -> None:
    stack = create_stack(conn, "sl-deploy-registry", DEPLOY_NODE_STACK)
    server_id = physical_id(conn, stack, "deploy_server")
    assert server_id

    # boot data as Heat writes it for POLL_SERVER_HEAT (here the demo user instead of a stack user)
    token = conn.session.auth.get_access(conn.session)
    credentials = tmp_path / "cfn-init-data"
    credentials.write_text(
        json.dumps(
            {
                "deployments": [],
                "os-collect-config": {
                    "collectors": ["ec2", "heat", "local"],
                    "heat": {
                        "user_id": token.user_id,
                        "password": "demopass",
                        "auth_url": "http://127.0.0.1:5000/v3",
                        "project_id": token.project_id,
                        "stack_id": f"{stack.name}/{stack.id}",
                        "resource_name": "deploy_server",
                        "region_name": "RegionOne",
                    },
                },
            }
        )
    )
    fixed = topology(apps=0, workers=0)
    metadata.write({**heat_meta(fixed), "stacklab_registry": "heat"})

    # nothing registered yet: the fixed topology only
    listed = inventory(metadata.url, deploy_env, credentials)
    assert (
        "app_servers" not in listed and "worker_servers" not in listed
    )  # ansible-inventory drops empty groups
    assert listed["backend_servers"]["hosts"] == fixed["backend"]

    apps = [f"10.20.1.{10 + i}" for i in range(5)]
    ids = {a: register(conn, server_id, "app", a, f"app-server-{i:02d}") for i, a in enumerate(apps)}
    register(conn, server_id, "worker", "10.20.9.10", "worker-00")
    meta = conn.orchestration.get(f"/stacks/{stack.name}/{stack.id}/resources/deploy_server/metadata").json()[
        "metadata"
    ]
    assert len(meta["deployments"]) == 6  # Heat itself wrote them into the resource's metadata

    listed = inventory(metadata.url, deploy_env, credentials)
    assert listed["app_servers"]["hosts"] == apps
    assert listed["worker_servers"]["hosts"] == ["10.20.9.10"]
    hostvars = listed["_meta"]["hostvars"]
    assert hostvars[apps[4]]["stacklab_app_index"] == 4
    assert hostvars[apps[0]]["stacklab_db_vip"] == "10.20.0.200"

    # scale down: a member's deployment is deleted with it, Heat rewrites the list
    conn.orchestration.delete_software_deployment(ids[apps[1]])
    conn.orchestration.delete_software_deployment(ids[apps[3]])
    listed = inventory(metadata.url, deploy_env, credentials)
    assert listed["app_servers"]["hosts"] == [apps[0], apps[2], apps[4]]
    assert apps[1] not in listed["_meta"]["hostvars"]

    # scale up again: a new member appears
    register(conn, server_id, "app", "10.20.1.99", "app-server-05")
    listed = inventory(metadata.url, deploy_env, credentials)
    assert listed["app_servers"]["hosts"] == [apps[0], apps[2], apps[4], "10.20.1.99"]

    # wrong credentials: one line naming Keystone's answer, no traceback
    bad = json.loads(credentials.read_text())
    bad["os-collect-config"]["heat"]["password"] = "wrong"
    credentials.write_text(json.dumps(bad))
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--list"],
        capture_output=True,
        text=True,
        env={"STACKLAB_METADATA_URL": metadata.url, "STACKLAB_HEAT_CREDENTIALS": str(credentials)},
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("stacklab-inventory: http://127.0.0.1:5000/v3/auth/tokens: HTTP 401")
    assert "Traceback" not in result.stderr


def test_the_scaling_policies_signal_urls_resize_the_group_in_real_heat(conn) -> None:  # type: ignore[no-untyped-def]
    stack = create_stack(conn, "sl-deploy-scaling", SCALING_STACK)
    outputs = {o["output_key"]: o["output_value"] for o in conn.orchestration.get_stack(stack).outputs}
    group = physical_id(conn, stack, "app_group")
    nested = conn.orchestration.find_stack(group)
    assert len(list(conn.orchestration.resources(nested))) == 2
    token = conn.session.get_token()
    base = f"/stacks/{stack.name}/{stack.id}"

    def signal(url: str, expected: int) -> None:
        response = httpx.post(url, headers={"X-Auth-Token": token}, json={}, timeout=30)
        assert response.status_code == 200, response.text
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # done: the members are there and the group finished scaling (it ignores signals till then)
            if len(list(conn.orchestration.resources(nested))) == expected and not any(
                conn.orchestration.get(f"{base}/resources/{resource}/metadata")
                .json()["metadata"]
                .get("scaling_in_progress")
                for resource in ("app_group", "app_scale_up")
            ):
                return
            time.sleep(0.5)
        raise AssertionError(f"the group did not reach {expected} members")

    signal(outputs["scale_up_signal_url"], 3)
    signal(outputs["scale_up_signal_url"], 4)
    signal(outputs["scale_down_signal_url"], 3)
