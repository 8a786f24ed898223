"""OLX of `<stacklab .../>`: attribute parsing, export and validation, without importing XBlock.

The block's settings are plain values here (a dict keyed by field name) so that the rules can be tested and
reused (by Studio validation, by the hastexo importer) without an XBlock runtime.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

TAG = "stacklab"
# The service's name rules (stacklab.names). The XBlock is a distribution of its own that installs into the
# LMS without the service, so it cannot import them: this is its one copy, kept equal by a test.
LAB_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
NODE_NAME = re.compile(r"[a-z][a-z0-9-]{0,19}")
LOGIN_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off", "")

DEFAULTS: dict[str, object] = {
    "display_name": "Lab",
    "lab": "",
    "weight": 1.0,
    "node": "",
    "read_only": False,
    "background": False,
    "check_label": "Check my work",
}
"""Every OLX attribute with its default, in export order."""

RETIRED = {
    "score_policy": "ignored: the lab's own `score` (best or latest) decides whether a grade may go down"
}
"""Attributes earlier versions wrote, with why they no longer apply."""

BOOLEAN = frozenset({"read_only", "background"})
NUMBER = frozenset({"weight"})


@dataclass(frozen=True)
class Problem:
    """A validation finding: `level` is "error" or "warning"; `field` the attribute concerned."""

    level: str
    field: str
    message: str


class OlxError(ValueError):
    """The OLX cannot be read; `problems` says why."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


def parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"must be true or false, got {text!r}")


def parse_attributes(attrs: dict[str, str]) -> tuple[dict[str, object], list[Problem]]:
    """Values of the known attributes (typed) and problems for unreadable or unknown ones.

    Attributes left out are not in the result (the block keeps its defaults). Runtime attributes such as
    `url_name` and `xblock-family` are ignored.
    """
    values: dict[str, object] = {}
    problems: list[Problem] = []
    for name, text in attrs.items():
        if name in ("url_name", "xblock-family", "filename") or name.startswith("{"):
            continue
        if name in RETIRED:
            problems.append(Problem("warning", name, RETIRED[name]))
            continue
        if name not in DEFAULTS:
            problems.append(Problem("warning", name, "unknown attribute, ignored"))
            continue
        try:
            if name in BOOLEAN:
                values[name] = parse_bool(text)
            elif name in NUMBER:
                values[name] = float(text)
            else:
                values[name] = text
        except ValueError as exc:
            problems.append(
                Problem("error", name, str(exc) if name in BOOLEAN else f"not a number: {text!r}")
            )
    return values, problems


def format_value(name: str, value: object) -> str:
    if name in BOOLEAN:
        return "true" if value else "false"
    if name in NUMBER:
        number = float(value)  # type: ignore[arg-type]
        return str(int(number)) if number.is_integer() else repr(number)
    return str(value)


def export_attributes(values: dict[str, object], include_defaults: bool = False) -> dict[str, str]:
    """OLX attributes for `values` (known fields only, in a stable order); defaults left out unless asked."""
    attrs: dict[str, str] = {}
    for name, default in DEFAULTS.items():
        if name not in values:
            continue
        value = values[name]
        if not include_defaults and value == default and name != "lab":
            continue
        attrs[name] = format_value(name, value)
    return attrs


def parse_element(element: ET.Element) -> dict[str, object]:
    """Values from a `<stacklab>` element; raises OlxError for unreadable values (unknown ones are dropped)."""
    if element.tag != TAG:
        raise OlxError([Problem("error", "tag", f"expected <{TAG}>, got <{element.tag}>")])
    values, problems = parse_attributes(dict(element.attrib))
    errors = [p for p in problems if p.level == "error"]
    if errors:
        raise OlxError(errors)
    return values


def to_element(values: dict[str, object], url_name: str | None = None) -> ET.Element:
    element = ET.Element(TAG)
    if url_name:
        element.set("url_name", url_name)
    for name, text in export_attributes(values).items():
        element.set(name, text)
    return element


def parse_olx(text: str) -> dict[str, object]:
    return parse_element(ET.fromstring(text))


def export_olx(values: dict[str, object], url_name: str | None = None) -> str:
    return ET.tostring(to_element(values, url_name), encoding="unicode")


def learner_nodes(lab: dict[str, Any]) -> list[str]:
    """The nodes a unit may open for learners, from the service's lab list (a service older than
    `learner_nodes` lists only all nodes)."""
    return list(lab.get("learner_nodes", lab.get("nodes", [])))


def validate(
    values: dict[str, object],
    known_labs: list[str] | None = None,
    lab_nodes: dict[str, list[str]] | None = None,
) -> list[Problem]:
    """Problems with complete settings (defaults filled in) for Studio; `known_labs` and `lab_nodes` (each
    lab's nodes) when the service told us."""
    merged = {**DEFAULTS, **values}
    problems: list[Problem] = []
    lab = str(merged["lab"] or "").strip()
    if not lab:
        problems.append(Problem("error", "lab", "no lab id: set the id of a lab the stacklab service offers"))
    elif not LAB_ID.fullmatch(lab):
        problems.append(
            Problem(
                "error", "lab", f"{lab!r} is not a lab id (lowercase letters, digits and '-', at most 40)"
            )
        )
    elif known_labs is not None and lab not in known_labs:
        offered = ", ".join(sorted(known_labs)) or "none"
        problems.append(Problem("error", "lab", f"the service offers no lab {lab!r} (it offers: {offered})"))
    weight = merged["weight"]
    if not isinstance(weight, int | float) or isinstance(weight, bool) or not math.isfinite(weight):
        problems.append(Problem("error", "weight", f"must be a number, got {weight!r}"))
    elif weight < 0:
        problems.append(Problem("error", "weight", f"must not be negative, got {weight}"))
    elif weight == 0:
        problems.append(Problem("warning", "weight", "is 0: the lab will not count towards the grade"))
    node = str(merged["node"] or "")
    if node and not NODE_NAME.fullmatch(node):
        problems.append(Problem("error", "node", f"{node!r} is not a node name"))
    elif node and lab_nodes is not None and lab in lab_nodes and node not in lab_nodes[lab]:
        offered = ", ".join(lab_nodes[lab]) or "none"
        problems.append(Problem("error", "node", f"lab {lab!r} has no node {node!r} (it has: {offered})"))
    if not str(merged["check_label"] or "").strip() and not merged["background"]:
        problems.append(Problem("warning", "check_label", "is empty: the check button will have no label"))
    return problems


def grade_to_publish(previous: float | None, new: float, policy: str) -> float | None:
    """The value to publish after a check scored `new`, or None to keep `previous`.

    `policy` is the lab's `score` (the service reports it with each check): the grade never goes down unless
    the lab asks for its latest attempt.
    """
    if policy == "latest" or previous is None or new > previous:
        return new
    return None
