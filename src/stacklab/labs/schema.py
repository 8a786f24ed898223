"""The lab file schema: frozen pydantic models, one per section of the YAML a course author writes.

Field types and ranges are checked by pydantic; rules that span fields (node references, duplicate names,
provider/section agreement, ...) are in `cross_field_problems`, which works on the plain data so that it can
report its findings even when some fields are invalid. The loader (`stacklab.labs.loader`) turns both kinds
into `FILE:LINE: field: problem` lines. Models built directly in Python are checked by the same rules.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from stacklab.labs.durations import parse_duration
from stacklab.labs.node_access import NodeAccess, access_problems
from stacklab.labs.scripts import Script
from stacklab.names import LoginUser, NodeName, Slug

SUPPORTED_SCHEMA_VERSIONS = (1,)
PROVIDER_TYPES = ("local", "openstack")

Path = tuple[str | int, ...]
"""Where a value sits in the lab file: keys and list indices from the top, e.g. ("checks", 1, "node")."""

SKIP_CROSS_CHECKS = "stacklab.skip_cross_checks"
"""Validation-context key the loader sets: it runs `cross_field_problems` itself, with line numbers."""
LAB_DIR = "stacklab.lab_dir"
"""Validation-context key: the folder of the lab file (templates are relative to it)."""


def _pattern(regex: str, description: str) -> Callable[[str], str]:
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"must be {description}, got {value!r}")
        return value

    return check


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _positive_duration(value: float) -> float:
    if value <= 0:
        raise ValueError("must be longer than 0s")
    return value


def _scalar_parameter(value: object) -> object:
    if not isinstance(value, str | int | float | bool):
        raise ValueError(f"must be a string, number or boolean, got {type_word(value)}")
    return value


def type_word(value: object) -> str:
    """How to name the kind of `value` in a message for a course author."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__


PackageName = Annotated[
    StrictStr, AfterValidator(_pattern(r"[a-z0-9][a-z0-9+.-]+", "a Debian package name such as 'git'"))
]
Text = Annotated[StrictStr, AfterValidator(_not_blank)]
Duration = Annotated[StrictFloat, BeforeValidator(parse_duration), AfterValidator(_positive_duration)]
ParameterValue = Annotated[str | int | float | bool, BeforeValidator(_scalar_parameter)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class LocalNode(_Model):
    """One LXC node of the `local` section."""

    name: NodeName
    memory_mb: StrictInt = Field(512, ge=64, le=65536)
    pids_max: StrictInt = Field(1024, ge=64, le=100000)
    packages: tuple[PackageName, ...] = ()
    setup: StrictStr | None = None
    """First-boot shell script, run as root."""
    desktop: bool = Field(False, strict=True)
    """Run the local desktop recipe (TigerVNC, openbox, xterm; see `stacklab.labs.node_access`)."""


class LocalSection(_Model):
    """How the `local` (LXC) provider builds this lab."""

    nodes: tuple[LocalNode, ...]


class OpenStackSection(_Model):
    """How the `openstack` (Heat) provider builds this lab."""

    template: Text
    """Heat template path, relative to the lab file."""
    parameters: dict[StrictStr, ParameterValue] = Field(default_factory=dict)
    nodes: tuple[NodeName, ...] = ("main",)
    """Node names the template's outputs provide."""


class ProviderEntry(_Model):
    """One provider the lab may run on, in order of preference."""

    name: Slug
    type: Literal["local", "openstack"]
    capacity: StrictInt | None = Field(None, gt=0)
    """Most environments of this lab at once on this provider; None = unlimited."""
    cloud: Text | None = None
    """OpenStack only: the cloud's name in clouds.yaml."""


class Check(_Model):
    """A script run over SSH on `node`; it passes when it exits 0."""

    name: Text
    node: StrictStr
    script: Script
    weight: StrictFloat = Field(1.0, ge=0)
    hint: StrictStr = ""
    timeout_s: Duration = Field(30.0, alias="timeout")
    solve: Script | None = None
    """What a learner would do to pass, run by `stacklab lab test` (never shown to learners)."""


class Hook(_Model):
    """A script run over SSH on `node` at one point of the environment's life."""

    node: StrictStr
    script: Script
    timeout_s: Duration = Field(60.0, alias="timeout")


class Hooks(_Model):
    """Optional lifecycle hooks; each runs on its node before suspend, after resume or before delete."""

    before_suspend: Hook | None = None
    after_resume: Hook | None = None
    before_delete: Hook | None = None


class Timeouts(_Model):
    """Lifecycle limits in seconds (YAML: durations): launch, idle before suspend, age before delete."""

    launch_s: Duration = Field(600.0, alias="launch")
    idle_suspend_s: Duration = Field(900.0, alias="idle_suspend")
    delete_after_s: Duration = Field(7 * 86400.0, alias="delete_after")


DEFAULT_PROVIDERS = (ProviderEntry(name="local", type="local"),)


class Lab(_Model):
    """A whole lab file. `learner_nodes` is resolved to every node when the file leaves it out."""

    schema_version: StrictInt = Field(alias="schema")
    id: Slug
    title: Text
    description: StrictStr = ""
    login_user: LoginUser
    learner_nodes: tuple[NodeName, ...] = ()
    score: Literal["best", "latest"] = "best"
    providers: tuple[ProviderEntry, ...] = DEFAULT_PROVIDERS
    local: LocalSection | None = None
    openstack: OpenStackSection | None = None
    checks: tuple[Check, ...] = ()
    hooks: Hooks = Hooks()
    timeouts: Timeouts = Timeouts()
    access: dict[NodeName, NodeAccess] = Field(default_factory=dict)
    """How each node may be opened (terminal, desktop); nodes left out offer a terminal only."""

    _lab_dir: str | None = PrivateAttr(None)

    @model_validator(mode="before")
    @classmethod
    def _empty_sections_mean_defaults(cls, data: Any) -> Any:
        # `hooks:` or `timeouts:` with every entry commented out reads as null: take it as "all defaults".
        if isinstance(data, Mapping):
            data = dict(data)
            for key in ("hooks", "timeouts"):
                if key in data and data[key] is None:
                    del data[key]
        return data

    @field_validator("schema_version")
    @classmethod
    def _supported_schema(cls, value: int) -> int:
        if value not in SUPPORTED_SCHEMA_VERSIONS:
            supported = ", ".join(str(v) for v in SUPPORTED_SCHEMA_VERSIONS)
            raise ValueError(f"unsupported schema version {value} (this stacklab reads schema {supported})")
        return value

    @model_validator(mode="after")
    def _resolve_and_cross_check(self, info: ValidationInfo) -> Lab:
        context = info.context if isinstance(info.context, Mapping) else {}
        if not context.get(SKIP_CROSS_CHECKS):
            data = self.model_dump(by_alias=True)
            if not data["learner_nodes"]:
                del data["learner_nodes"]  # left out: resolved to every node below
            for kind in PROVIDER_TYPES:
                if data[kind] is None:
                    del data[kind]  # left out (not written empty)
            problems = cross_field_problems(data)
            if problems:
                raise ValueError("; ".join(f"{format_path(path)}: {message}" for path, message in problems))
        if not self.learner_nodes:
            object.__setattr__(self, "learner_nodes", self.common_node_names())
        self._lab_dir = context.get(LAB_DIR)
        return self

    # --- queries -------------------------------------------------------------------------------------------

    @property
    def lab_dir(self) -> str | None:
        """The folder of the lab file when it was loaded from one (Heat templates are relative to it)."""
        return self._lab_dir

    def template_path(self) -> str | None:
        """The Heat template's path (joined to `lab_dir` when known), or None without an openstack section."""
        if self.openstack is None:
            return None
        return os.path.join(self._lab_dir or "", self.openstack.template)

    def node_names(self, provider_type: str) -> tuple[str, ...]:
        """The nodes the section for `provider_type` defines (empty if the lab has no such section)."""
        if provider_type == "local":
            return tuple(node.name for node in self.local.nodes) if self.local else ()
        if provider_type == "openstack":
            return self.openstack.nodes if self.openstack else ()
        raise ValueError(f"unknown provider type {provider_type!r} (known: {', '.join(PROVIDER_TYPES)})")

    def provider_types(self) -> tuple[str, ...]:
        """The provider types in use, in order of first preference."""
        return tuple(dict.fromkeys(entry.type for entry in self.providers))

    def all_node_names(self) -> tuple[str, ...]:
        """Every node of every section in use, in order, without repeats."""
        names: dict[str, None] = {}
        for provider_type in self.provider_types():
            names.update(dict.fromkeys(self.node_names(provider_type)))
        return tuple(names)

    def common_node_names(self) -> tuple[str, ...]:
        """The nodes every section in use defines: those checks, hooks and learner_nodes may name."""
        sections = [self.node_names(t) for t in self.provider_types()]
        if not sections:
            return ()
        return tuple(name for name in sections[0] if all(name in other for other in sections[1:]))

    def provider(self, name: str) -> ProviderEntry:
        """The provider entry called `name`; KeyError if there is none."""
        for entry in self.providers:
            if entry.name == name:
                return entry
        raise KeyError(f"lab {self.id!r} has no provider {name!r}")

    def max_score(self) -> float:
        """The score of a lab whose checks all pass: the sum of the weights."""
        return float(sum(check.weight for check in self.checks))


def format_path(path: Path) -> str:
    """("checks", 1, "node") -> "checks[1].node"."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


# --- rules across fields ------------------------------------------------------------------------------------


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
