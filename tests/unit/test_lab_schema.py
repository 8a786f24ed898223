"""The Python side of the lab models: defaults, queries, immutability, and cross-field rules on direct use."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stacklab.labs import Lab, parse_lab
from stacklab.labs.schema import (
    Check,
    Hook,
    Hooks,
    LocalNode,
    LocalSection,
    OpenStackSection,
    ProviderEntry,
    Timeouts,
    format_path,
)

TWO_PROVIDERS = """\
schema: 1
id: both
title: Both providers
login_user: learner
providers:
  - {name: cloud, type: openstack, cloud: mycloud, capacity: 50}
  - {name: here, type: local}
  - {name: cloud2, type: openstack, cloud: other}
openstack:
  template: stack.yaml
  parameters: {flavor: m1.small, count: 2, ratio: 0.5, debug: true}
  nodes: [deploy, worker1, bastion]
local:
  nodes:
    - {name: worker1, memory_mb: 1024, packages: [git, nginx-light], setup: "echo hi"}
    - {name: deploy}
checks:
  - {name: a, node: deploy, script: "true", weight: 2.5}
  - {name: b, node: worker1, script: "true", weight: 1, hint: Try harder, timeout: 1m}
"""


def test_queries_on_a_two_provider_lab() -> None:
    lab = parse_lab(TWO_PROVIDERS)
    assert lab.provider_types() == ("openstack", "local")
    assert lab.node_names("openstack") == ("deploy", "worker1", "bastion")
    assert lab.node_names("local") == ("worker1", "deploy")
    assert lab.all_node_names() == ("deploy", "worker1", "bastion")
    assert lab.common_node_names() == ("deploy", "worker1")
    assert lab.learner_nodes == ("deploy", "worker1")
    assert lab.provider("cloud").capacity == 50
    assert lab.provider("here").cloud is None
    with pytest.raises(KeyError, match="lab 'both' has no provider 'nope'"):
        lab.provider("nope")
    with pytest.raises(ValueError, match="unknown provider type 'kubernetes'"):
        lab.node_names("kubernetes")
    assert lab.max_score() == 3.5
    assert lab.checks[1].timeout_s == 60.0 and lab.checks[1].hint == "Try harder"
    assert lab.openstack is not None
    assert lab.openstack.parameters == {"flavor": "m1.small", "count": 2, "ratio": 0.5, "debug": True}
    assert lab.local is not None and lab.local.nodes[0].packages == ("git", "nginx-light")
    assert lab.local.nodes[0].setup == "echo hi" and lab.local.nodes[1].setup is None
    assert lab.lab_dir is None and lab.template_path() == "stack.yaml"


def test_models_are_frozen() -> None:
    lab = parse_lab(TWO_PROVIDERS)
    with pytest.raises(ValidationError, match="frozen"):
        lab.id = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        lab.checks[0].weight = 3  # type: ignore[misc]


def test_building_a_lab_in_python() -> None:
    lab = Lab(
        schema_version=1,
        id="py-lab",
        title="Built in Python",
        login_user="learner",
        local=LocalSection(nodes=(LocalNode(name="main"), LocalNode(name="side", pids_max=2048))),
        checks=(Check(name="c", node="side", script="true", timeout_s=5),),
        hooks=Hooks(before_delete=Hook(node="main", script="true")),
        timeouts=Timeouts(launch_s=60),
    )
    assert lab.learner_nodes == ("main", "side")
    assert lab.providers == (ProviderEntry(name="local", type="local"),)
    assert lab.node_names("openstack") == ()
    assert lab.checks[0].timeout_s == 5.0 and lab.checks[0].weight == 1.0
    assert lab.hooks.before_delete is not None and lab.hooks.before_delete.timeout_s == 60.0
    assert lab.timeouts.launch_s == 60.0 and lab.timeouts.idle_suspend_s == 900.0
    assert OpenStackSection(template="t.yaml").nodes == ("main",)


def test_cross_field_rules_apply_to_labs_built_in_python() -> None:
    with pytest.raises(ValidationError) as info:
        Lab(
            schema_version=1,
            id="py-lab",
            title="Built in Python",
            login_user="learner",
            local=LocalSection(nodes=(LocalNode(name="main"),)),
            checks=(Check(name="c", node="nowhere", script="true"),),
        )
    assert "checks[0].node: unknown node 'nowhere' (nodes: main)" in str(info.value)
    with pytest.raises(ValidationError) as info:
        Lab(schema_version=1, id="py-lab", title="t", login_user="learner")
    assert "providers[0].type: provider type local needs a top-level 'local:' section" in str(info.value)


def test_field_rules_apply_to_models_built_in_python() -> None:
    with pytest.raises(ValidationError, match="greater than or equal to 64"):
        LocalNode(name="main", memory_mb=1)
    with pytest.raises(ValidationError, match="invalid duration '5 minutes'"):
        Check(name="c", node="main", script="true", timeout_s="5 minutes")
    with pytest.raises(ValidationError, match="should be 'local' or 'openstack'"):
        ProviderEntry(name="x", type="lxc")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("path", "text"),
    [((), ""), (("checks", 1, "node"), "checks[1].node"), (("hooks", "after_resume"), "hooks.after_resume")],
)
def test_format_path(path: tuple[str | int, ...], text: str) -> None:
    assert format_path(path) == text
