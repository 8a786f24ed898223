"""Rules of a lab file that span fields (node references, duplicate names, provider/section agreement, the
template file, weights), checked on the plain data so that they are reported even when some fields are
invalid. The schema (`stacklab.labs.schema`) applies them to every Lab; the loader adds line numbers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from stacklab.labs.node_access import access_problems

PROVIDER_TYPES = ("local", "openstack")
Path = tuple[str | int, ...]
"""Where a value sits in the lab file: keys and list indices from the top, e.g. ("checks", 1, "node")."""


Add = Callable[[Path, str], None]
NodeCheck = Callable[[Path, object], None]


def cross_field_problems(data: Mapping[str, Any], lab_dir: str | None = None) -> list[tuple[Path, str]]:
    """Every rule that spans fields, checked on plain (possibly partly invalid) lab data.

    Values of the wrong type are skipped here: the field validation reports them. The template file's
    existence is checked only when `lab_dir` is given.
    """
    problems: list[tuple[Path, str]] = []

    def add(path: Path, message: str) -> None:
        problems.append((path, message))

    first_of_type = _provider_problems(data, add)
    sections = _section_problems(data, first_of_type, add)
    if lab_dir is not None and "openstack" in first_of_type:
        _template_problems(data, lab_dir, add)
    check_node = _node_checker(sections, first_of_type, add)
    _learner_node_problems(data, check_node, add)
    _check_problems(data, check_node, add)
    hooks = data.get("hooks")
    for moment, hook in hooks.items() if isinstance(hooks, Mapping) else ():
        if isinstance(hook, Mapping):
            check_node(("hooks", moment, "node"), hook.get("node"))
    keep = data.get("keep_running_while")
    if isinstance(keep, Mapping):
        check_node(("keep_running_while", "node"), keep.get("node"))
    access_problems(data, check_node, add)
    return problems


def _duplicate_names(key: str, entries: list[Any], noun: str, add: Add) -> None:
    """Each entry of the list `data[key]` whose name an earlier entry has already."""
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if not isinstance(name, str):
            continue
        if name in seen:
            add((key, i, "name"), f"duplicate {noun} name {name!r} (also {key}[{seen[name]}])")
        else:
            seen[name] = i


def _provider_problems(data: Mapping[str, Any], add: Add) -> dict[str, int]:
    """Provider entries: at least one, unique names, a cloud exactly for openstack ones. Returns where
    each known provider type first appears (the types in use, in order of preference)."""
    raw = data.get("providers", [{"name": "local", "type": "local"}])
    if not isinstance(raw, list | tuple):
        return {}
    providers = list(raw)
    if not providers:
        add(("providers",), "must list at least one provider")
    _duplicate_names("providers", providers, "provider", add)
    first_of_type: dict[str, int] = {}
    for i, entry in enumerate(providers):
        kind = entry.get("type") if isinstance(entry, Mapping) else None
        if kind not in PROVIDER_TYPES:
            continue
        first_of_type.setdefault(kind, i)
        cloud = entry.get("cloud")
        if kind == "local" and cloud is not None:
            add(("providers", i, "cloud"), "only openstack providers take a cloud")
        if kind == "openstack" and cloud is None:
            add(("providers", i), "an openstack provider needs 'cloud' (the cloud's name in clouds.yaml)")
    return first_of_type


def _all_provider_types_known(data: Mapping[str, Any]) -> bool:
    providers = data.get("providers", [{"name": "local", "type": "local"}])
    return (
        isinstance(providers, list | tuple)
        and bool(providers)
        and all(isinstance(entry, Mapping) and entry.get("type") in PROVIDER_TYPES for entry in providers)
    )


def _section_problems(
    data: Mapping[str, Any], first_of_type: dict[str, int], add: Add
) -> dict[str, list[str]]:
    """Each provider type in use has its section and no section is unused. Returns the node names of
    each section in use, as far as they can be read."""
    sections: dict[str, list[str]] = {}
    all_known = _all_provider_types_known(data)
    for kind in PROVIDER_TYPES:
        section = data.get(kind)
        if kind in first_of_type and section is None:
            _missing_section(data, kind, first_of_type[kind], add)
        elif section is not None and all_known and kind not in first_of_type:
            add((kind,), f"section unused: no provider of type {kind}")
        elif isinstance(section, Mapping):
            names = _section_node_names(kind, section, add)
            if names is not None and kind in first_of_type:
                sections[kind] = names
    return sections


def _missing_section(data: Mapping[str, Any], kind: str, first: int, add: Add) -> None:
    if kind in data:
        add((kind,), f"is empty, but providers of type {kind} need it")
    elif "providers" not in data:
        add((), f"no '{kind}:' section, but the default provider is {kind} (add one, or list providers)")
    else:
        add(("providers", first, "type"), f"provider type {kind} needs a top-level '{kind}:' section")


def _template_problems(data: Mapping[str, Any], lab_dir: str, add: Add) -> None:
    section = data.get("openstack")
    template = section.get("template") if isinstance(section, Mapping) else None
    if isinstance(template, str) and template.strip():
        path = os.path.join(lab_dir, template)
        if not os.path.isfile(path):
            add(("openstack", "template"), f"template file {template!r} not found (looked for {path})")


def _node_checker(sections: dict[str, list[str]], first_of_type: dict[str, int], add: Add) -> NodeCheck:
    """A check that a node reference names a node of every section in use (judged only when every
    section in use could be read)."""
    in_use = [sections[kind] for kind in first_of_type if kind in sections]
    complete = len(in_use) == len(first_of_type) and bool(in_use)
    common = [name for name in in_use[0] if all(name in other for other in in_use[1:])] if in_use else []

    def check_node(path: Path, name: object) -> None:
        if not complete or not isinstance(name, str):
            return
        missing = [kind for kind in sections if name not in sections[kind]]
        if not missing:
            return
        known = ", ".join(common) or "none"
        if len(missing) == len(sections):
            add(path, f"unknown node {name!r} (nodes: {known})")
        else:
            add(
                path,
                f"node {name!r} is missing from the {missing[0]} section (nodes in every section: {known})",
            )

    return check_node


def _learner_node_problems(data: Mapping[str, Any], check_node: NodeCheck, add: Add) -> None:
    learner_nodes = data.get("learner_nodes")
    if "learner_nodes" not in data or not isinstance(learner_nodes, list | tuple):
        return
    if not learner_nodes:
        add(("learner_nodes",), "must name at least one node (leave it out to allow every node)")
    for i, name in enumerate(learner_nodes):
        check_node(("learner_nodes", i), name)


def _check_problems(data: Mapping[str, Any], check_node: NodeCheck, add: Add) -> None:
    """Unique check names, known nodes, and a weight above 0 somewhere."""
    checks = data.get("checks")
    if not isinstance(checks, list | tuple):
        return
    _duplicate_names("checks", list(checks), "check", add)
    weights: list[float] = []
    for i, check in enumerate(checks):
        weight = check.get("weight", 1.0) if isinstance(check, Mapping) else 1.0
        weights.append(weight if isinstance(weight, int | float) and not isinstance(weight, bool) else 1.0)
        if isinstance(check, Mapping):
            check_node(("checks", i, "node"), check.get("node"))
    if weights and not any(weights):
        add(("checks",), "all check weights are 0: no learner could ever score")


def _section_node_names(kind: str, section: Mapping[str, Any], add: Add) -> list[str] | None:
    """The node names a section defines, reporting duplicates; None if they cannot be read."""
    if kind == "local":
        nodes = section.get("nodes")
        if not isinstance(nodes, list | tuple):
            return None
        entries = [
            (("local", "nodes", i, "name"), node.get("name") if isinstance(node, Mapping) else None)
            for i, node in enumerate(nodes)
        ]
    else:
        nodes = section.get("nodes", ["main"])
        if not isinstance(nodes, list | tuple):
            return None
        entries = [(("openstack", "nodes", i), name) for i, name in enumerate(nodes)]
    if not entries:
        add((kind, "nodes"), "must list at least one node")
    names: list[str] = []
    readable = True
    for path, name in entries:
        if not isinstance(name, str):
            readable = False  # reported by the field validation; node references cannot be judged
        elif name in names:
            add(path, f"duplicate node name {name!r}")
        else:
            names.append(name)
    return names if readable else None
