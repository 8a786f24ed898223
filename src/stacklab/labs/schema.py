"""The lab file schema: frozen pydantic models, one per section of the YAML a course author writes.

Field types and ranges are checked by pydantic; rules that span fields (node references, duplicate names,
provider/section agreement, ...) are in `stacklab.labs.rules`, which works on the plain data so that it can
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
from stacklab.labs.node_access import NodeAccess
from stacklab.labs.rules import PROVIDER_TYPES, Path, cross_field_problems
from stacklab.labs.scripts import Script
from stacklab.labs.usage_limit import UsageLimit
from stacklab.labs.warm import Warm
from stacklab.names import LoginUser, NodeName, Slug

SUPPORTED_SCHEMA_VERSIONS = (1,)


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


def _desktop_kind(value: object) -> object:
    if value is True or value is False or value == "rdp":
        return value
    raise ValueError(f"must be true, false or rdp, got {type_word(value)}")


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
    desktop: Annotated[bool | Literal["rdp"], BeforeValidator(_desktop_kind)] = False
    """Run the local desktop recipe (true: TigerVNC, openbox, xterm) or its RDP recipe (rdp: xrdp serving
    openbox and xterm, with the bridge's packages); see `stacklab.labs.node_access`."""


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


class NodeHourPrice(_Model):
    """What one node costs an hour on a provider, running and suspended (the cost report multiplies its
    node-hours by these); `currency` is a label only (no conversion)."""

    running: float = Field(0.0, ge=0, allow_inf_nan=False)
    suspended: float = Field(0.0, ge=0, allow_inf_nan=False)
    currency: StrictStr = Field("EUR", pattern=r"^[A-Za-z$€£¥]{1,8}$")


class ProviderEntry(_Model):
    """One provider the lab may run on, in order of preference."""

    name: Slug
    type: Literal["local", "openstack"]
    capacity: StrictInt | None = Field(None, gt=0)
    """Most environments of this lab at once on this provider; None = unlimited. When every provider of
    the lab is full, a launch waits in line (docs/queue.md)."""
    capacity_counts: Literal["held", "running"] = "held"
    """What takes a place of `capacity`: `held`, every lab holding a stack there, paused ones included;
    `running`, running labs only (a pause gives the place back, a resume takes one again or waits in line)."""
    cloud: Text | None = None
    """OpenStack only: the cloud's name in clouds.yaml."""
    price: NodeHourPrice | None = None
    """Price per node-hour (running, suspended) for the cost report; None: it shows hours only."""


class Check(_Model):
    """A script run over SSH on `node` as the login user; it passes when it exits 0. A script (or solve)
    starting with `#!` runs by that interpreter, any other by bash (`stacklab.checks.scripts`)."""

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


class KeepRunningWhile(Hook):
    """A check-like script run on `node` when the lab would be paused for inactivity: exit 0 keeps it
    running for another idle period (e.g. "a build is still running"); anything else lets the pause go on."""

    timeout_s: Duration = Field(20.0, alias="timeout")


class Timeouts(_Model):
    """Lifecycle limits in seconds (YAML: durations): launch, idle before suspend, age before delete, and
    how the lab page's presence shortens the idle limit (docs/idle.md)."""

    launch_s: Duration = Field(600.0, alias="launch")
    idle_suspend_s: Duration = Field(900.0, alias="idle_suspend")
    delete_after_s: Duration = Field(7 * 86400.0, alias="delete_after")
    idle_warning_s: Duration = Field(60.0, alias="idle_warning")
    """How long before an idle pause the lab page shows its countdown (a key press keeps the lab)."""
    idle_suspend_hidden_s: Duration | None = Field(None, alias="idle_suspend_hidden")
    """The idle limit while the lab page is hidden (another tab, minimised), counted from when it was
    hidden; default a third of idle_suspend."""
    close_grace_s: Duration = Field(45.0, alias="close_grace")
    """How long after the lab page is closed (or navigated away from) the lab is paused, unless a page
    of it opens again (a reload) or the learner acts."""
    pre_resume_idle_s: Duration = Field(300.0, alias="pre_resume_idle")
    """A lab woken by the LMS rendering its unit (pre-resume) is paused again after this without activity."""

    @property
    def hidden_idle_s(self) -> float:
        """The idle limit of a hidden page (idle_suspend_hidden, default a third of idle_suspend)."""
        if self.idle_suspend_hidden_s is not None:
            return self.idle_suspend_hidden_s
        return self.idle_suspend_s / 3


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
    keep_running_while: KeepRunningWhile | None = None
    """Run before an idle pause: exit 0 keeps the lab running (docs/idle.md)."""
    access: dict[NodeName, NodeAccess] = Field(default_factory=dict)
    """How each node may be opened (terminal, desktop); nodes left out offer a terminal only."""
    usage_limit: UsageLimit | None = None
    """Running hours per learner (per week or in total) and what happens past them; None = no limit."""
    warm: Warm | None = None
    """A warm pool: environments launched ahead of learners during session hours; None = no pool."""

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
