"""Reading a hastexo-xblock `<hastexo>` (stackamole-xblock: `<stackamole>`) element: its attributes and its
children in both OLX forms (plain XML children, or YAML in the `option:` namespace), as plain values."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import yaml

OPTION_NS = "http://code.edx.org/xblock/option"
TAGS = ("hastexo", "stackamole")
"""The element's name before and after the project's rename (stackamole-xblock 9.0)."""
KNOWN_ATTRIBUTES = {
    "display_name",
    "weight",
    "stack_user_name",
    "stack_protocol",
    "stack_template_path",
    "stack_key_type",
    "launch_timeout",
    "suspend_timeout",
    "delete_age",
    "hook_script",
    "read_only",
    "hidden",
    "enable_fullscreen",
    "progress_check_label",
    "show_feedback",
    "show_hints_on_error",
    "progress_check_result_heading",
    "provider",
    "url_name",
    "xblock-family",
    "filename",
}
INSTRUCTION_TAGS = {"html", "video", "pdf", "markdown"}


@dataclass
class Unit:
    """The element read into plain values: attributes and children, both OLX forms merged."""

    attributes: dict[str, str]
    providers: list[dict] = field(default_factory=list)
    ports: list[dict] = field(default_factory=list)
    tests: list[str] = field(default_factory=list)
    hook_events: dict[str, object] = field(default_factory=dict)
    instructions: list[str] = field(default_factory=list)


def _local(tag: object) -> tuple[str | None, str]:
    if not isinstance(tag, str):
        return None, ""
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    if ":" in tag:  # a prefix left unresolved (e.g. `option:tests` without xmlns)
        prefix, _, name = tag.partition(":")
        return (OPTION_NS if prefix == "option" else prefix), name
    return None, tag


def _fix_option_prefix(text: str) -> str:
    """Exports may use `option:` without declaring it; declare it so the XML parses."""
    if "option:" in text and "xmlns:option" not in text:
        return re.sub(r"<(hastexo|stackamole)\b", rf'<\1 xmlns:option="{OPTION_NS}"', text, count=1)
    return text


def _option_yaml(child: ET.Element, report: list[str]) -> object:
    try:
        return yaml.safe_load(child.text or "")
    except yaml.YAMLError as exc:
        report.append(f"<option:{_local(child.tag)[1]}> is not valid YAML ({exc}): not imported")
        return None


def _read_option(unit: Unit, tag: str, data: object, report: list[str]) -> None:
    if tag == "providers" and isinstance(data, list):
        unit.providers += [p for p in data if isinstance(p, dict)]
    elif tag == "ports" and isinstance(data, list):
        unit.ports += [p for p in data if isinstance(p, dict)]
    elif tag == "tests" and isinstance(data, list):
        unit.tests += [str(t) for t in data]
    elif tag == "hook_events" and isinstance(data, dict):
        unit.hook_events.update(data)
    else:
        report.append(f"<option:{tag}> is not understood by the import: not mapped")


def _read_child(unit: Unit, child: ET.Element, report: list[str]) -> None:
    ns, tag = _local(child.tag)
    if ns == OPTION_NS:
        data = _option_yaml(child, report)
        if data is not None:
            _read_option(unit, tag, data, report)
    elif tag == "provider":
        unit.providers.append(dict(child.attrib))
    elif tag == "port":
        unit.ports.append(dict(child.attrib))
    elif tag == "test":
        unit.tests.append(child.text or "")
    elif tag == "hook_events":
        unit.hook_events.update(child.attrib)
    elif tag in INSTRUCTION_TAGS:
        unit.instructions.append(tag)
    elif tag:
        report.append(f"child <{tag}> is not understood by the import: not mapped")


def read_unit(text: str, report: list[str]) -> Unit:
    """The element's attributes and children; ValueError when it is no `<hastexo>`/`<stackamole>`."""
    root = ET.fromstring(_fix_option_prefix(text))
    if _local(root.tag)[1] not in TAGS:
        raise ValueError(f"expected a <hastexo> or <stackamole> element, got <{root.tag}>")
    unit = Unit(dict(root.attrib))
    for name in sorted(set(unit.attributes) - KNOWN_ATTRIBUTES):
        report.append(f"attribute {name}={unit.attributes[name]!r} is unknown to the import: not mapped")
    for child in root:
        _read_child(unit, child, report)
    return unit
