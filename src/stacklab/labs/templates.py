"""Check Heat (HOT) templates offline, as `FILE:LINE: problem` lines, against the catalogue of current Heat.

What is reported: unknown sections and resource keys; resource types Heat does not know, or hides or
deprecates (with what replaces them); properties (see template_properties.py); `get_attr` of attributes a
type does not have or hides; `get_resource`, `get_param`, `depends_on`, conditions of names that do not
exist; functions the template's version does not have; `get_file` targets and nested templates that are
missing (nested templates are checked too, and their parameters and outputs stand for properties and
attributes). With `given` (the parameter values somebody passes): parameters without a default that nobody
gives.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from stacklab.labs import heat_catalogue as heat
from stacklab.labs.template_properties import PropertyCheck, status_words
from stacklab.labs.yamlmap import HotLoader, Path, line_of, read_yaml, yaml_problem

PSEUDO_PARAMETERS = ("OS::stack_name", "OS::stack_id", "OS::project_id")
PARAMETER_TYPES = ("string", "number", "json", "comma_delimited_list", "boolean")
GROUP_MEMBERS = {"OS::Heat::ResourceGroup": "resource_def", "OS::Heat::AutoScalingGroup": "resource"}
"""Group types and the property that holds their member's definition (its type and properties)."""
NESTED_SUFFIXES = (".yaml", ".yml", ".template", ".json")


@dataclass
class Template:
    """One HOT file as read: its data, the line of every value and what is wrong with it."""

    path: str
    data: dict[str, Any]
    lines: dict[Path, int]
    problems: list[tuple[int, str]] = field(default_factory=list)

    def add(self, where: Path, message: str) -> None:
        self.problems.append((line_of(where, self.lines), message))

    def section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name)
        return value if isinstance(value, dict) else {}

    def formatted(self) -> list[str]:
        return [
            f"{self.path}:{line}: {message}" for line, message in sorted(self.problems, key=lambda p: p[0])
        ]


@dataclass
class Environment:
    """What a Heat environment file gives: parameter values and resource_registry type mappings."""

    parameters: dict[str, Any] = field(default_factory=dict)
    registry: dict[str, str] = field(default_factory=dict)
    """type name -> file (absolute) or another type."""


def read_template(path: str) -> Template:
    """Read a HOT file; an unreadable file or invalid YAML is its first (and only) problem."""
    empty = Template(path, {}, {})
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        empty.problems.append((1, f"cannot read template: {getattr(exc, 'strerror', None) or exc}"))
        return empty
    try:
        data, lines, duplicates = read_yaml(text, HotLoader)
    except yaml.YAMLError as exc:
        line = yaml_problem(exc, text, path).split(":", 2)
        empty.problems.append((int(line[1]), line[2].strip()))
        return empty
    except RecursionError:
        empty.problems.append((1, "invalid YAML: nested too deeply"))
        return empty
    if not isinstance(data, dict):
        empty.problems.append(
            (1, "a Heat template must be a mapping (heat_template_version:, resources:, ...)")
        )
        return empty
    template = Template(path, data, lines)
    template.problems.extend((line, message) for line, _, message in duplicates)
    return template


def read_environment(path: str) -> tuple[Environment, list[str]]:
    """An environment file's parameters and resource_registry, and its problems as FILE:LINE lines."""
    template = read_template(path)
    env = Environment()
    known = (
        "parameters",
        "parameter_defaults",
        "resource_registry",
        "event_sinks",
        "parameter_merge_strategies",
    )
    for key in template.data:
        if key not in known:
            template.add((key,), f"unknown environment section {key!r}{heat.similar(str(key), list(known))}")
    env.parameters = {**template.section("parameter_defaults"), **template.section("parameters")}
    base = os.path.dirname(path)
    for name, target in template.section("resource_registry").items():
        if isinstance(target, str) and name != "resources":
            local = target.endswith(NESTED_SUFFIXES) and "://" not in target
            env.registry[name] = os.path.join(base, target) if local else target
    return env, template.formatted()


class Checker:
    """Checks templates (each file once, nested ones included) and keeps their parameters and outputs."""

    def __init__(self, environment: Environment | None = None) -> None:
        self.environment = environment or Environment()
        self.templates: dict[str, Template] = {}

    def check(self, path: str, given: Collection[str] | None = None) -> Template:
        """The template at `path`, checked; `given`: parameters somebody passes (None: not judged)."""
        key = os.path.normpath(path)
        if key in self.templates:
            return self.templates[key]
        template = read_template(path)
        self.templates[key] = template
        if template.data:
            _TemplateCheck(self, template).run()
        if given is not None:
            self._required_parameters(template, {*given, *self.environment.parameters})
        return template

    def problems(self) -> list[str]:
        return [line for template in self.templates.values() for line in template.formatted()]

    @staticmethod
    def _required_parameters(template: Template, given: Collection[str]) -> None:
        for name, spec in template.section("parameters").items():
            if isinstance(spec, dict) and "default" not in spec and name not in given:
                template.add(("parameters", name), f"parameter {name!r} has no default and nobody gives it")


class _TemplateCheck:
    """The checks of one template."""

    def __init__(self, checker: Checker, template: Template) -> None:
        self.checker = checker
        self.t = template
        self.base = os.path.dirname(template.path)
        self.version: dict[str, Any] = {}
        self.resources = template.section("resources")
        self.parameters = template.section("parameters")
        self.conditions = template.section("conditions")

    def run(self) -> None:
        if not self._version():
            return
        for key in self.t.data:
            if key not in self.version["sections"]:
                self.t.add(
                    (key,), f"unknown section {key!r}{heat.similar(str(key), self.version['sections'])}"
                )
        for key in ("parameters", "resources", "outputs", "conditions"):
            if self.t.data.get(key) is not None and not isinstance(self.t.data[key], dict):
                self.t.add((key,), f"section {key!r} must be a mapping of names")
        self._parameters()
        for name, definition in self.resources.items():
            self._resource(("resources", name), str(name), definition)
        for name, output in self.t.section("outputs").items():
            if not isinstance(output, dict) or "value" not in output:
                self.t.add(("outputs", name), f"output {name!r} needs a value")
            elif isinstance(output, dict):
                self._condition_name(("outputs", name, "condition"), output.get("condition"))
        for section in ("resources", "outputs", "conditions"):
            self._calls((section,), self.t.data.get(section))

    def _version(self) -> bool:
        version = self.t.data.get("heat_template_version")
        if version is None:
            cfn = "AWSTemplateFormatVersion" in self.t.data or "HeatTemplateFormatVersion" in self.t.data
            self.t.add(
                (),
                "a CloudFormation template: only HOT templates are checked"
                if cfn
                else "no heat_template_version (this is not a HOT template)",
            )
            return False
        spec = heat.template_version(str(version))
        if spec is None:
            known = ", ".join(heat.template_versions())
            self.t.add(
                ("heat_template_version",), f"unknown heat_template_version {version!r} (Heat knows {known})"
            )
            return False
        self.version = spec
        return True

    def _parameters(self) -> None:
        for name, spec in self.parameters.items():
            if not isinstance(spec, dict):
                self.t.add(("parameters", name), f"parameter {name!r} must be a mapping with a type")
            elif spec.get("type") not in PARAMETER_TYPES:
                self.t.add(
                    ("parameters", name, "type") if "type" in spec else ("parameters", name),
                    f"parameter {name!r} needs a type, one of {', '.join(PARAMETER_TYPES)}",
                )

    # resources ---------------------------------------------------------------------------------------
    def _resource(self, where: Path, name: str, definition: Any) -> None:
        if not isinstance(definition, dict):
            self.t.add(where, f"resource {name!r} must be a mapping with a type")
            return
        for key in definition:
            if key not in self.version["resource_keys"]:
                keys = self.version["resource_keys"]
                self.t.add(
                    (*where, key), f"resource {name!r}: unknown key {key!r}{heat.similar(str(key), keys)}"
                )
        kind = definition.get("type")
        if not isinstance(kind, str):
            self.t.add(where, f"resource {name!r} needs a type")
            return
        properties = definition.get("properties")
        if properties is not None and not isinstance(properties, dict):
            self.t.add((*where, "properties"), f"resource {name!r}: properties must be a mapping")
            properties = None
        self._type(where, name, kind, properties or {})
        depends = definition.get("depends_on", [])
        for i, other in enumerate([depends] if isinstance(depends, str) else depends or []):
            if isinstance(other, str) and other not in self.resources:
                self.t.add((*where, "depends_on", i), f"depends_on {other!r}: no such resource")
        self._condition_name((*where, "condition"), definition.get("condition"))

    def _type(self, where: Path, name: str, kind: str, properties: dict[str, Any]) -> None:
        mapped = self.checker.environment.registry.get(kind, kind)
        nested = self._nested_path(mapped)
        if nested is not None:
            self._nested(where, name, kind, nested, properties)
            return
        if "://" in mapped:
            return  # a template at a URL: not fetched
        spec = heat.resource_type(mapped)
        if spec is None:
            names = heat.catalogue()["resource_types"]
            self.t.add(
                (*where, "type"),
                f"resource {name!r}: unknown resource type {kind!r}{heat.similar(kind, names)}",
            )
            return
        status = spec.get("status")
        if status:
            self.t.add((*where, "type"), f"resource {name!r}: {status_words(kind, spec)}")
            if not spec["properties"]:
                return  # a placeholder left for old stacks: its properties are not known any more
        PropertyCheck(self.t.add, name, kind).check((*where, "properties"), properties, spec["properties"])
        member = GROUP_MEMBERS.get(mapped)
        inner = properties.get(member) if member else None
        if isinstance(inner, dict) and not heat.is_call(inner):
            self._resource((*where, "properties", member), f"{name}.{member}", inner)

    def _nested_path(self, kind: str) -> str | None:
        if not kind.endswith(NESTED_SUFFIXES) or "://" in kind:
            return None
        return kind if os.path.isabs(kind) else os.path.join(self.base, kind)

    def _nested(self, where: Path, name: str, kind: str, path: str, properties: dict[str, Any]) -> None:
        if not os.path.isfile(path):
            self.t.add(
                (*where, "type"), f"resource {name!r}: nested template {kind!r} not found (looked for {path})"
            )
            return
        nested = self.checker.check(path)
        declared = nested.section("parameters")
        for prop in properties:
            if prop not in declared:
                self.t.add(
                    (*where, "properties", prop),
                    f"resource {name!r}: {kind} has no parameter {prop!r}{heat.similar(str(prop), declared)}",
                )
        for param, spec in declared.items():
            if isinstance(spec, dict) and "default" not in spec and param not in properties:
                self.t.add(
                    (*where, "properties") if properties else where,
                    f"resource {name!r}: {kind} needs parameter {param!r} (it has no default)",
                )

    # function calls ----------------------------------------------------------------------------------
    def _calls(self, where: Path, value: Any) -> None:
        for path, function, args in _find_calls(where, value):
            # condition functions: in the conditions section and in a resource's or output's condition
            in_conditions = path[0] == "conditions" or (len(path) > 2 and path[2] == "condition")
            usable = set(self.version["functions"])
            if in_conditions:
                usable.update(self.version["condition_functions"])
            if function in self.version["condition_functions"] and function not in usable:
                self.t.add(
                    path, f"function {function!r} belongs in conditions (use 'if' with a condition here)"
                )
                continue
            if function not in usable:
                since = heat.first_version_with(function)
                later = f" (it needs heat_template_version {since} or later)" if since else ""
                self.t.add(path, f"function {function!r} is not available in this template's version{later}")
                continue
            check = getattr(self, "_call_" + function, None)
            if check is not None:
                check(path, args)

    def _call_get_param(self, where: Path, args: Any) -> None:
        name = args[0] if isinstance(args, list) and args else args
        if isinstance(name, str) and name not in self.parameters and name not in PSEUDO_PARAMETERS:
            self.t.add(where, f"get_param {name!r}: no such parameter{heat.similar(name, self.parameters)}")

    def _call_get_resource(self, where: Path, args: Any) -> None:
        if isinstance(args, str) and args not in self.resources:
            self.t.add(where, f"get_resource {args!r}: no such resource{heat.similar(args, self.resources)}")

    def _call_get_file(self, where: Path, args: Any) -> None:
        if isinstance(args, str) and "://" not in args:
            path = args if os.path.isabs(args) else os.path.join(self.base, args)
            if not os.path.isfile(path):
                self.t.add(where, f"get_file {args!r}: file not found (looked for {path})")

    def _call_if(self, where: Path, args: Any) -> None:
        if isinstance(args, list) and args:
            self._condition_name(where, args[0])

    def _condition_name(self, where: Path, name: Any) -> None:
        if isinstance(name, str) and name not in self.conditions:
            self.t.add(where, f"condition {name!r}: no such condition{heat.similar(name, self.conditions)}")

    def _call_get_attr(self, where: Path, args: Any) -> None:
        if not isinstance(args, list) or not args or not isinstance(args[0], str):
            return
        target = args[0]
        definition = self.resources.get(target)
        if definition is None:
            self.t.add(where, f"get_attr {target!r}: no such resource{heat.similar(target, self.resources)}")
            return
        attribute = args[1] if len(args) > 1 else None
        if isinstance(attribute, str) and isinstance(definition, dict):
            problem = self._attribute_problem(definition, attribute)
            if problem:
                self.t.add(where, f"get_attr [{target}, {attribute}]: {problem}")

    def _attribute_problem(self, definition: dict[str, Any], attribute: str) -> str | None:
        """Why `attribute` cannot be read from the resource `definition`; None when it can (or is unknown)."""
        kind = self.checker.environment.registry.get(str(definition.get("type")), str(definition.get("type")))
        nested = self._nested_path(kind)
        if nested is not None:
            outputs = self.checker.check(nested).section("outputs") if os.path.isfile(nested) else None
            if outputs is None or attribute in outputs or attribute == "show" or attribute.startswith("OS::"):
                return None
            return f"{kind} has no output {attribute!r}{heat.similar(attribute, outputs)}"
        spec = heat.resource_type(kind)
        if spec is None:
            return None  # an unknown type is reported once, at its resource
        known = spec["attributes"]
        if attribute in known:
            return f"attribute {status_words(attribute, known[attribute])}" if known[attribute] else None
        if kind in GROUP_MEMBERS:
            return self._member_attribute_problem(definition, kind, attribute)
        if spec.get("dynamic_attributes"):
            return None
        return f"{kind} has no attribute {attribute!r}{heat.similar(attribute, known)}"

    def _member_attribute_problem(self, definition: dict[str, Any], kind: str, attribute: str) -> str | None:
        if attribute.startswith("resource.") or attribute in ("outputs", "outputs_list"):
            return None
        member = (definition.get("properties") or {}).get(GROUP_MEMBERS[kind])
        if not isinstance(member, dict) or not isinstance(member.get("type"), str):
            return None
        problem = self._attribute_problem(member, attribute)
        return None if problem is None else f"{kind} members: {problem}"


def _find_calls(where: Path, value: Any) -> Iterator[tuple[Path, str, Any]]:
    """Every intrinsic function call under `value`: (path, function, arguments), outermost first."""
    if heat.is_call(value):
        function, args = next(iter(value.items()))
        yield where, function, args
        yield from _find_calls((*where, function), args)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _find_calls((*where, key), item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _find_calls((*where, i), item)
