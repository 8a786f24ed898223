"""Create what Heat and the tests need in the harness's Keystone (idempotent; runs as the bootstrap admin).

Service project + `heat` service user; the orchestration service with endpoints in RegionOne (the main Heat)
and RegionSmall (the Heat that allows one stack per project); the `heat` domain for stack users; projects
`demo` (user demo) and `small` (user small), both with the `member` role.
"""

from __future__ import annotations

import os

import openstack

KEYSTONE = os.environ["STACKLAB_HEAT_KEYSTONE"]
ENDPOINTS = {
    "RegionOne": os.environ["STACKLAB_HEAT_API"] + "/v1/%(tenant_id)s",
    "RegionSmall": os.environ["STACKLAB_HEAT_SMALL_API"] + "/v1/%(tenant_id)s",
}

conn = openstack.connect(
    auth_url=KEYSTONE,
    username="admin",
    password="secret",
    project_name="admin",
    user_domain_name="Default",
    project_domain_name="Default",
    region_name="RegionOne",
)
identity = conn.identity
default = identity.find_domain("default")


def ensure_role(name: str):
    return identity.find_role(name) or identity.create_role(name=name)


def ensure_project(name: str, domain):
    return identity.find_project(name, domain_id=domain.id) or identity.create_project(
        name=name, domain_id=domain.id
    )


def ensure_user(name: str, password: str, domain):
    return identity.find_user(name, domain_id=domain.id) or identity.create_user(
        name=name, password=password, domain_id=domain.id
    )


admin, member = ensure_role("admin"), ensure_role("member")
ensure_role("heat_stack_user")
service = ensure_project("service", default)
identity.assign_project_role_to_user(service, ensure_user("heat", "heatpass", default), admin)

for region in ENDPOINTS:
    if not identity.find_region(region):
        identity.create_region(id=region)
heat = identity.find_service("heat") or identity.create_service(name="heat", type="orchestration")
present = {(e.region_id, e.interface) for e in identity.endpoints(service_id=heat.id)}
for region, url in ENDPOINTS.items():
    for interface in ("public", "internal", "admin"):
        if (region, interface) not in present:
            identity.create_endpoint(service_id=heat.id, interface=interface, url=url, region_id=region)

stack_domain = identity.find_domain("heat") or identity.create_domain(name="heat")
identity.assign_domain_role_to_user(
    stack_domain, ensure_user("heat_domain_admin", "heatdomainpass", stack_domain), admin
)

for name in ("demo", "small"):
    project = ensure_project(name, default)
    identity.assign_project_role_to_user(project, ensure_user(name, f"{name}pass", default), member)
print("heat-harness: identity ready")
