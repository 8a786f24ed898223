"""`stacklab template check` and the template half of `stacklab lab validate`, offline, on real files."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from stacklab.cli import main
from stacklab.labs.heat_catalogue import heat_version, resource_type

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_TEMPLATES = sorted(
    [*(ROOT / "deploy/heat").glob("*.yaml"), *(ROOT / "deploy/heat/lib").glob("*.yaml")]
)
EXAMPLE_LABS = sorted(  # lab files (they have a schema:), not the templates and files beside them
    p
    for p in (ROOT / "examples").rglob("*.yaml")
    if "bad" not in p.parts and "\nschema: " in "\n" + p.read_text()
)


def run(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output.splitlines()


def lines_of(output: list[str], file: Path) -> dict[int, str]:
    """{line: problem} of the output lines about `file` (one problem a line in these tests)."""
    found: dict[int, str] = {}
    for text in output:
        match = re.fullmatch(rf"{re.escape(str(file))}:(\d+): (.*)", text)
        if match:
            assert int(match[1]) not in found, f"two problems at line {match[1]}: {text}"
            found[int(match[1])] = match[2]
    return found


def checked(folder: Path, name: str, text: str) -> dict[int, str]:
    """Write a template, check it: it must fail; {line: problem}."""
    path = folder / name
    path.write_text(text)
    code, output = run("template", "check", str(path))
    assert code == 1, output
    return lines_of(output, path)


def test_the_catalogue_is_package_data_from_heat() -> None:
    assert heat_version().split(".")[0].isdigit()
    server = resource_type("OS::Nova::Server")
    assert server is not None and server["properties"]["flavor"]["required"]
    assert server["attributes"]["first_address"]["status"] == "HIDDEN"
    assert resource_type("OS::Neutron::Pool")["status"] == "HIDDEN"


@pytest.mark.parametrize("path", DEPLOY_TEMPLATES, ids=lambda p: p.name)
def test_the_deploy_templates_are_clean(path: Path) -> None:
    code, output = run("template", "check", str(path))
    assert output[-1].startswith("ok: ") and code == 0, output


def test_every_example_lab_and_its_template_are_clean() -> None:
    code, output = run("lab", "validate", *map(str, EXAMPLE_LABS))
    assert code == 0, output
    assert any("template checked against Heat" in line for line in output)
    code, output = run("template", "check", str(ROOT / "examples/heat/server.yaml"))
    assert code == 0, output


BAD = """\
heat_template_version: 2015-04-30
parameters:
  flavor: {type: string}
  size: {type: integer}
resources:
  server:
    type: OS::Nova::Server
    properties:
      flavor: {get_param: flavour}
      colour: blue
      networks: [{network: net, fixd_ip: 10.0.0.1}]
      user_data_format: TEXT
  nope:
    type: OS::Nova::Sever
  typo:
    type: OS::Heat::Value
    propertes: {value: 1}
  value:
    type: OS::Heat::Value
    properties:
      value: {get_attr: [server, no_such]}
    depends_on: [ghost]
  nested:
    type: missing.yaml
  choice:
    type: OS::Heat::Value
    properties:
      value: {if: [c, 1, 2]}
  file:
    type: OS::Heat::Value
    properties:
      value: {get_file: nothere.txt}
  ref:
    type: OS::Heat::Value
    properties:
      value: {get_resource: srv}
outputs:
  ip: {value: {get_attr: [server, first_address]}}
  nothing: {description: no value}
colours: []
"""


def test_each_kind_of_problem_is_reported_at_its_line(tmp_path: Path) -> None:
    problems = checked(tmp_path, "bad.yaml", BAD)
    expected = {
        4: "parameter 'size' needs a type",
        9: "get_param 'flavour': no such parameter (did you mean 'flavor'?)",
        10: "OS::Nova::Server has no property 'colour'",
        11: "has no property 'networks.0.fixd_ip' (did you mean 'fixed_ip'?)",
        12: "user_data_format must be one of HEAT_CFNTOOLS, RAW, SOFTWARE_CONFIG, got 'TEXT'",
        14: "unknown resource type 'OS::Nova::Sever' (did you mean 'OS::Nova::Server'?)",
        15: "resource 'typo': OS::Heat::Value needs property 'value'",
        17: "resource 'typo': unknown key 'propertes' (did you mean 'properties'?)",
        21: "get_attr [server, no_such]: OS::Nova::Server has no attribute 'no_such'",
        22: "depends_on 'ghost': no such resource",
        24: "nested template 'missing.yaml' not found",
        28: "function 'if' is not available in this template's version (it needs heat_template_version "
        "2016-10-14 or later)",
        32: "get_file 'nothere.txt': file not found",
        36: "get_resource 'srv': no such resource",
        38: "get_attr [server, first_address]: attribute first_address is hidden in Heat",
        39: "output 'nothing' needs a value",
        40: "unknown section 'colours'",
    }
    assert sorted(problems) == sorted(expected), problems
    for line, words in expected.items():
        assert words in problems[line], (line, problems[line])
    assert "networks attribute instead" in problems[38]


def test_yaml_errors_and_non_hot_files_are_one_clear_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("heat_template_version: 2018-08-31\nresources:\n  a: [\n")
    cfn = tmp_path / "cfn.yaml"
    cfn.write_text("AWSTemplateFormatVersion: 2010-09-09\nResources: {}\n")
    old = tmp_path / "old.yaml"
    old.write_text("heat_template_version: 2012-01-01\nresources: {}\n")
    code, output = run("template", "check", str(broken), str(cfn), str(old))
    assert code == 1
    assert re.fullmatch(rf"{re.escape(str(broken))}:4: invalid YAML: .*", output[0]), output
    assert output[1] == f"{cfn}:1: a CloudFormation template: only HOT templates are checked"
    assert output[2].startswith(f"{old}:1: unknown heat_template_version '2012-01-01' (Heat knows 2013-05-23")


LBAAS_V1 = """\
heat_template_version: 2016-04-08
description: Two web servers behind a Neutron LBaaS v1 pool, the way 2014 templates did it.
parameters:
  subnet: {type: string}
  external_network: {type: string}
  image: {type: string}
resources:
  router:
    type: OS::Neutron::Router
  gateway:
    type: OS::Neutron::RouterGateway
    properties: {router_id: {get_resource: router}, network_id: {get_param: external_network}}
  monitor:
    type: OS::Neutron::HealthMonitor
    properties: {type: HTTP, delay: 5, max_retries: 3, timeout: 5}
  pool:
    type: OS::Neutron::Pool
    properties:
      protocol: HTTP
      subnet: {get_param: subnet}
      lb_method: ROUND_ROBIN
      monitors: [{get_resource: monitor}]
      vip: {protocol_port: 80}
  web1:
    type: OS::Nova::Server
    properties: {image: {get_param: image}, flavor: m1.small}
  member1:
    type: OS::Neutron::PoolMember
    properties: {pool_id: {get_resource: pool}, address: {get_attr: [web1, first_address]}, protocol_port: 80}
  balancer:
    type: OS::Neutron::LoadBalancer
    properties: {pool_id: {get_resource: pool}, protocol_port: 80, members: [{get_resource: web1}]}
  vip_ip:
    type: OS::Nova::FloatingIP
    properties: {pool: {get_param: external_network}}
outputs:
  vip: {value: {get_attr: [pool, vip, address]}}
"""


def test_an_old_lbaas_v1_template_is_told_what_replaces_each_resource(tmp_path: Path) -> None:
    problems = checked(tmp_path, "lbaas-v1.yaml", LBAAS_V1)
    expected = {
        11: (
            "OS::Neutron::RouterGateway is hidden",
            "Use the `external_gateway_info` property in the router",
        ),
        12: ("resource 'gateway': property network_id is hidden", "Use property network"),
        14: ("OS::Neutron::HealthMonitor is hidden", "use OS::Octavia::HealthMonitor instead"),
        17: (
            "OS::Neutron::Pool is hidden",
            "use OS::Octavia::Pool (behind an OS::Octavia::Listener) instead",
        ),
        28: ("OS::Neutron::PoolMember is hidden", "use OS::Octavia::PoolMember instead"),
        29: ("get_attr [web1, first_address]: attribute first_address is hidden", "networks attribute"),
        31: (
            "OS::Neutron::LoadBalancer is hidden",
            "use OS::Octavia::LoadBalancer with an OS::Octavia::Listener",
        ),
        34: ("OS::Nova::FloatingIP is hidden", "Please use OS::Neutron::FloatingIP instead"),
    }
    assert sorted(problems) == sorted(expected), problems
    for line, words in expected.items():
        assert all(word in problems[line] for word in words), (line, problems[line])


def test_nested_templates_get_files_and_environments(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib/member.yaml").write_text(
        "heat_template_version: 2018-08-31\n"
        "parameters:\n"
        "  name: {type: string}\n"
        "resources:\n"
        "  v: {type: OS::Heat::Value, properties: {value: {get_param: name}}}\n"
        "outputs:\n"
        "  address: {value: {get_attr: [v, value]}}\n"
    )
    (tmp_path / "top.yaml").write_text(
        "heat_template_version: 2018-08-31\n"
        "parameters:\n"
        "  count: {type: number}\n"
        "resources:\n"
        "  one: {type: lib/member.yaml, properties: {name: a, colour: b}}\n"
        "  two: {type: lib/member.yaml}\n"
        "  group:\n"
        "    type: OS::Heat::ResourceGroup\n"
        "    properties:\n"
        "      count: {get_param: count}\n"
        "      resource_def: {type: My::Member, properties: {name: x}}\n"
        "outputs:\n"
        "  a: {value: {get_attr: [one, address]}}\n"
        "  b: {value: {get_attr: [one, addres]}}\n"
        "  c: {value: {get_attr: [group, address]}}\n"
        "  d: {value: {get_attr: [group, resource.0.address]}}\n"
        "  e: {value: {get_attr: [group, nothing]}}\n"
    )
    (tmp_path / "env.yaml").write_text(
        "parameters: {count: 2}\nresource_registry:\n  My::Member: lib/member.yaml\nparameter_defualts: {}\n"
    )
    top, env = tmp_path / "top.yaml", tmp_path / "env.yaml"
    code, output = run("template", "check", str(top), "-e", str(env))
    assert code == 1
    assert lines_of(output, env) == {
        4: "unknown environment section 'parameter_defualts' (did you mean 'parameter_defaults'?)"
    }
    problems = lines_of(output, top)
    assert sorted(problems) == [5, 6, 14, 17], output
    assert "lib/member.yaml has no parameter 'colour'" in problems[5]
    assert "lib/member.yaml needs parameter 'name'" in problems[6]
    assert "lib/member.yaml has no output 'addres' (did you mean 'address'?)" in problems[14]
    assert "OS::Heat::ResourceGroup members: " in problems[17]
    assert "lib/member.yaml has no output 'nothing'" in problems[17]
    # without the environment My::Member is unknown, and count is not judged (nobody said what is given)
    code, output = run("template", "check", str(top))
    assert "unknown resource type 'My::Member'" in lines_of(output, top)[11]


HEAT_LAB = """\
schema: 1
id: heat-lab
title: A Heat lab
login_user: learner
providers:
  - {name: cloud, type: openstack, cloud: mycloud}
openstack:
  template: server.yaml
  parameters:
    flavor: m1.small
    flavour: m1.tiny
  nodes: [main, worker1]
"""
HEAT_TEMPLATE = """\
heat_template_version: 2018-08-31
parameters:
  run: {type: string}
  flavor: {type: string}
  image: {type: string}
resources:
  server:
    type: OS::Nova::Server
    properties: {name: {get_param: run}, flavor: {get_param: flavor}, image: {get_param: image}}
outputs:
  public_ip: {value: {get_attr: [server, networks, public, 0]}}
"""


def test_lab_validate_checks_the_template_with_the_lab(tmp_path: Path) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text(HEAT_LAB)
    (tmp_path / "server.yaml").write_text(HEAT_TEMPLATE)
    code, output = run("lab", "validate", str(lab))
    assert code == 1
    assert lines_of(output, lab) == {
        11: f"openstack.parameters.flavour: the template {tmp_path}/server.yaml has no parameter 'flavour'"
    }
    template = [line.replace(f"{tmp_path}/", "") for line in output if "server.yaml:" in line]
    assert template == [
        "server.yaml:5: parameter 'image' has no default and nobody gives it",
        "server.yaml:10: no output worker1_public_ip or worker1_ip: stacklab reads the address of node "
        "'worker1' from it",
        "server.yaml:10: neither an output 'private_key' nor a parameter public_key or ssh_public_key: "
        "stacklab would have no key to log in with",
    ]


def test_lab_validate_names_what_the_cloud_must_have(tmp_path: Path) -> None:
    """`cloud_names` feeds `provider check --lab`: the lab's values, else the template's defaults."""
    from stacklab.labs.lab_templates import cloud_names
    from stacklab.labs.loader import load_lab

    shutil.copytree(ROOT / "examples/heat", tmp_path / "heat")
    lab = load_lab(tmp_path / "heat/lab.yaml")
    assert cloud_names(lab) == {"flavor": ["m1.small"], "image": ["debian-12"], "network": ["public"]}


def test_conditions_and_sections(tmp_path: Path) -> None:
    conditional = tmp_path / "conditions.yaml"
    conditional.write_text(
        "heat_template_version: 2018-08-31\n"
        "parameters:\n"
        "  env: {type: string, default: prod}\n"
        "conditions:\n"
        "  prod: {equals: [{get_param: env}, prod]}\n"
        "resources:\n"
        "  a:\n"
        "    type: OS::Heat::Value\n"
        "    condition: {not: prod}\n"
        "    properties: {value: {equals: [1, 1]}}\n"
        "  b:\n"
        "    type: OS::Heat::Value\n"
        "    condition: prd\n"
        "    properties: {value: {if: [prod, 1, 2]}}\n"
        "outputs:\n"
        "  x: {value: 1, condition: nope}\n"
        "  y: {value: {if: [prod, 1, 2]}, condition: prod}\n"
    )
    listed = tmp_path / "listed.yaml"
    listed.write_text("heat_template_version: 2018-08-31\nresources: [a, b]\n")
    code, output = run("template", "check", str(conditional), str(listed))
    assert code == 1
    assert lines_of(output, conditional) == {
        10: "function 'equals' belongs in conditions (use 'if' with a condition here)",
        13: "condition 'prd': no such condition (did you mean 'prod'?)",
        16: "condition 'nope': no such condition",
    }
    assert lines_of(output, listed) == {2: "section 'resources' must be a mapping of names"}


def test_literal_values_of_the_wrong_type(tmp_path: Path) -> None:
    problems = checked(
        tmp_path,
        "types.yaml",
        "heat_template_version: 2018-08-31\n"
        "resources:\n"
        "  a:\n"
        "    type: OS::Heat::RandomString\n"
        "    properties:\n"
        "      length: abc\n"
        "      character_classes: {class: digits}\n"
        "  b:\n"
        "    type: OS::Heat::RandomString\n"
        "    properties: {length: '16'}\n"  # Heat reads numbers in text
        "  c:\n"
        "    type: OS::Nova::Server\n"
        "    properties:\n"
        "      flavor: [m1.small]\n"
        "      networks: {network: public}\n"
        "      config_drive: maybe\n",
    )
    assert problems == {
        6: "resource 'a': length must be a whole number, got the text 'abc'",
        7: "resource 'a': character_classes must be a list, got a mapping",
        14: "resource 'c': flavor must be a string, got a list",
        15: "resource 'c': networks must be a list, got a mapping",
        16: "resource 'c': config_drive must be true or false, got the text 'maybe'",
    }
