"""A lab's Heat template checked against the lab: what the lab passes, what stacklab supplies, what it reads.

On top of the template check (`stacklab.labs.templates`): parameters the lab passes that the template does
not declare (reported at the lab file's line), parameters without a default that neither the lab nor
stacklab gives, the outputs the openstack provider reads for each of the lab's nodes, and a way for
stacklab to log in (a public key parameter or a private_key output). `cloud_names` lists what the template
needs the cloud to have by name (flavors, images, networks, key pairs) for `stacklab provider check --lab`.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from stacklab.labs.schema import Lab
from stacklab.labs.templates import Checker, Template
from stacklab.labs.yamlmap import line_of, read_yaml
from stacklab.providers.openstack.contract import (
    LOGIN_KEY_OUTPUT,
    PUBLIC_KEY_PARAMETERS,
    SUPPLIED_PARAMETERS,
    address_outputs,
)

CLOUD_NAMES = {
    ("OS::Nova::Server", "flavor"): "flavor",
    ("OS::Nova::Server", "image"): "image",
    ("OS::Nova::Server", "key_name"): "key pair",
    ("OS::Nova::Server", "networks", "network"): "network",
    ("OS::Neutron::Port", "network"): "network",
    ("OS::Neutron::FloatingIP", "floating_network"): "network",
    ("OS::Neutron::Router", "external_gateway_info", "network"): "network",
    ("OS::Cinder::Volume", "image"): "image",
}
"""(resource type, property path) -> the kind of cloud object the value names (list items are looked into)."""
CUSTOM_CONSTRAINTS = {
    "nova.flavor": "flavor",
    "glance.image": "image",
    "neutron.network": "network",
    "nova.keypair": "key pair",
}
"""A parameter's custom_constraint -> the kind of cloud object its value names."""


def lab_template_problems(lab: Lab, lab_file: str) -> list[str]:
    """Every problem of the lab's template (and the files it uses) seen with the lab, as FILE:LINE lines."""
    path = lab.template_path()
    if lab.openstack is None or path is None or not os.path.isfile(path):
        return []  # no template, or a missing one (the lab's own validation reports that)
    checker = Checker()
    given = {*lab.openstack.parameters, *SUPPLIED_PARAMETERS}
    template = checker.check(path, given=given)
    problems = checker.problems()
    declared = template.section("parameters")
    lines = _lab_lines(lab_file)
    for name in lab.openstack.parameters:
        if name not in declared:
            line = line_of(("openstack", "parameters", name), lines)
            problems.append(
                f"{lab_file}:{line}: openstack.parameters.{name}: the template {path} has no parameter "
                f"{name!r}"
            )
    if template.data:
        problems += [f"{path}:{line}: {message}" for line, message in _contract(lab, template)]
    return problems


def _contract(lab: Lab, template: Template) -> list[tuple[int, str]]:
    outputs = template.section("outputs")
    where = line_of(("outputs",), template.lines)
    found: list[tuple[int, str]] = []
    for i, node in enumerate(lab.node_names("openstack")):
        keys = address_outputs(i, node)
        if not any(key in outputs for key in keys):
            found.append(
                (where, f"no output {' or '.join(keys)}: stacklab reads the address of node {node!r} from it")
            )
    declared = template.section("parameters")
    if LOGIN_KEY_OUTPUT not in outputs and not any(key in declared for key in PUBLIC_KEY_PARAMETERS):
        found.append(
            (
                where,
                f"neither an output {LOGIN_KEY_OUTPUT!r} nor a parameter "
                f"{' or '.join(PUBLIC_KEY_PARAMETERS)}: stacklab would have no key to log in with",
            )
        )
    return found


def _lab_lines(lab_file: str) -> dict[tuple[str | int, ...], int]:
    try:
        with open(lab_file, encoding="utf-8") as handle:
            return read_yaml(handle.read())[1]
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}


def cloud_names(lab: Lab) -> dict[str, list[str]]:
    """What the lab's template names in the cloud, by kind (flavor, image, network, key pair): literal values
    and parameters (the lab's value, else the default) of the properties in CLOUD_NAMES and of parameters
    with a custom constraint."""
    path = lab.template_path()
    if lab.openstack is None or path is None:
        return {}
    template = Checker().check(path)
    parameters = template.section("parameters")
    values = {
        name: lab.openstack.parameters.get(name, spec.get("default"))
        for name, spec in parameters.items()
        if isinstance(spec, dict)
    }
    names: dict[str, list[str]] = {}

    def add(kind: str, value: Any) -> None:
        if isinstance(value, dict) and set(value) == {"get_param"} and isinstance(value["get_param"], str):
            value = values.get(value["get_param"])
        if isinstance(value, str) and value and value not in names.setdefault(kind, []):
            names[kind].append(value)

    for name, spec in parameters.items():
        for constraint in (spec.get("constraints") or []) if isinstance(spec, dict) else []:
            kind = (
                CUSTOM_CONSTRAINTS.get(constraint.get("custom_constraint"))
                if isinstance(constraint, dict)
                else None
            )
            if kind:
                add(kind, values.get(name))
    for definition in template.section("resources").values():
        if not isinstance(definition, dict) or not isinstance(definition.get("properties"), dict):
            continue
        for (kind_of, *prop_path), kind in CLOUD_NAMES.items():
            if definition.get("type") == kind_of:
                for value in _values_at(definition["properties"], prop_path):
                    add(kind, value)
    return {kind: found for kind, found in names.items() if found}


def _values_at(value: Any, path: list[str]) -> list[Any]:
    """The values at `path` under `value`, looking into every item of a list on the way."""
    if isinstance(value, list):
        return [found for item in value for found in _values_at(item, path)]
    if not path:
        return [value]
    if isinstance(value, dict) and path[0] in value:
        return _values_at(value[path[0]], path[1:])
    return []
