"""Import a hastexo-xblock `<hastexo>` element into a stacklab lab definition and a `<stacklab>` element.

Written from hastexo-xblock's documented OLX (no code of it is used). The lab is defined once per course in
the service; the unit keeps its per-unit options (weight, read-only, check label) on `<stacklab>`. Anything
the import cannot carry over is listed in `ImportResult.report`, one sentence each, for the course author.

    python -m stacklab_xblock.hastexo_import hastexo/unit.xml [--lab-id ID] [--template-dir DIR]
"""

from __future__ import annotations

import argparse
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from stacklab_xblock import olx

OPTION_NS = "http://code.edx.org/xblock/option"
DEFAULT_PORTS = {22, 3389}
SSH_PORT = 22
LOGIN_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
TRUE = ("true", "1", "yes", "on")

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
class ImportResult:
    lab: dict
    """The lab definition as plain data (what `lab_yaml` holds)."""
    lab_yaml: str
    stacklab_olx: str
    """The `<stacklab .../>` element that replaces the `<hastexo>` one in the unit."""
    template_path: str | None
    """The course asset the lab's Heat template comes from (copy it next to the lab file)."""
    report: list[str] = field(default_factory=list)


def _slug(text: str, fallback: str = "lab") -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40].strip("-")
    return slug if slug and slug[0].isalnum() else fallback


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


def _truthy(value: object) -> bool:
    return str(value).strip().lower() in TRUE


def _seconds(text: str, what: str, report: list[str]) -> int | None:
    try:
        value = int(float(text))
    except ValueError:
        report.append(f"{what}={text!r} is not a number of seconds: not imported (the default applies)")
        return None
    if value <= 0:
        report.append(f"{what}={text!r} is not a positive duration: not imported (the default applies)")
        return None
    return value


def _fix_option_prefix(text: str) -> str:
    """hastexo exports may use `option:` without declaring it; declare it so the XML parses."""
    if "option:" in text and "xmlns:option" not in text:
        return re.sub(r"<hastexo\b", f'<hastexo xmlns:option="{OPTION_NS}"', text, count=1)
    return text


def _option_yaml(child: ET.Element, report: list[str]) -> object:
    try:
        return yaml.safe_load(child.text or "")
    except yaml.YAMLError as exc:
        report.append(f"<option:{_local(child.tag)[1]}> is not valid YAML ({exc}): not imported")
        return None


def import_hastexo(
    text: str, lab_id: str | None = None, templates: dict[str, str] | None = None
) -> ImportResult:
    """Convert one `<hastexo>` element (OLX text) to a stacklab lab and a `<stacklab>` element.

    `lab_id` names the lab (default: from url_name or display_name). `templates` maps course asset paths to
    the lab-relative file name to use for them (default: the asset's base name).
    """
    root = ET.fromstring(_fix_option_prefix(text))
    report: list[str] = []
    if _local(root.tag)[1] != "hastexo":
        raise ValueError(f"expected a <hastexo> element, got <{root.tag}>")
    a = dict(root.attrib)

    for name in sorted(set(a) - KNOWN_ATTRIBUTES):
        report.append(f"attribute {name}={a[name]!r} is unknown to the import: not mapped")

    providers_raw: list[dict] = []
    ports_raw: list[dict] = []
    tests: list[str] = []
    hook_events: dict[str, object] = {}
    instructions: list[str] = []
    for child in root:
        ns, tag = _local(child.tag)
        if ns == OPTION_NS:
            data = _option_yaml(child, report)
            if data is None:
                continue
            if tag == "providers" and isinstance(data, list):
                providers_raw += [p for p in data if isinstance(p, dict)]
            elif tag == "ports" and isinstance(data, list):
                ports_raw += [p for p in data if isinstance(p, dict)]
            elif tag == "tests" and isinstance(data, list):
                tests += [str(t) for t in data]
            elif tag == "hook_events" and isinstance(data, dict):
                hook_events.update(data)
            else:
                report.append(f"<option:{tag}> is not understood by the import: not mapped")
        elif tag == "provider":
            providers_raw.append(dict(child.attrib))
        elif tag == "port":
            ports_raw.append(dict(child.attrib))
        elif tag == "test":
            tests.append(child.text or "")
        elif tag == "hook_events":
            hook_events.update(child.attrib)
        elif tag in INSTRUCTION_TAGS:
            instructions.append(tag)
        elif tag:
            report.append(f"child <{tag}> is not understood by the import: not mapped")

    # --- identity ---
    title = a.get("display_name", "").strip() or "Lab"
    lab_id = lab_id or _slug(a.get("url_name") or title or Path(a.get("stack_template_path", "")).stem)
    if not olx.LAB_ID.fullmatch(lab_id):
        report.append(f"lab id {lab_id!r} is not a slug; used {_slug(lab_id)!r}")
        lab_id = _slug(lab_id)

    user = a.get("stack_user_name", "").strip()
    if not user:
        report.append("stack_user_name is missing (hastexo requires it): login_user set to 'training'")
        user = "training"
    elif user == "root" or not LOGIN_USER.fullmatch(user):
        report.append(f"stack_user_name {user!r} cannot be a stacklab login user: set to 'training'")
        user = "training"

    # --- template and providers ---
    templates = templates or {}
    template_asset = a.get("stack_template_path", "").strip() or None
    providers: list[dict] = []
    if not providers_raw and a.get("provider"):
        report.append(f"the deprecated provider attribute {a['provider']!r} became the only provider")
        providers_raw = [{"name": a["provider"]}]
    for i, p in enumerate(providers_raw):
        name = str(p.get("name", "")).strip()
        if not name:
            report.append(f"provider #{i + 1} has no name: skipped")
            continue
        entry: dict = {"name": _slug(name, f"provider-{i + 1}"), "type": "openstack", "cloud": name}
        capacity_text = str(p.get("capacity", "-1")).strip()
        try:
            capacity = int(capacity_text)
        except ValueError:
            report.append(f"provider {name}: capacity {capacity_text!r} is not a number: taken as unlimited")
            capacity = -1
        if capacity == 0:
            report.append(f"provider {name} has capacity 0 (disabled in hastexo): left out")
            continue
        if capacity > 0:
            entry["capacity"] = capacity
        if p.get("template"):
            if template_asset is None:
                template_asset = str(p["template"])
            elif str(p["template"]) != template_asset:
                report.append(
                    f"provider {name} uses its own template {p['template']!r}: stacklab uses one template "
                    f"per lab ({template_asset!r}); not mapped"
                )
        if p.get("environment"):
            report.append(
                f"provider {name}: Heat environment file {p['environment']!r} is not mapped; put its "
                "parameter values into openstack.parameters"
            )
        if entry["name"] in {e["name"] for e in providers}:
            report.append(f"provider {name} is listed twice: the second entry was skipped")
            continue
        providers.append(entry)
    if not providers:
        report.append(
            "no usable provider: added one openstack provider 'default' (cloud 'default' in clouds.yaml); "
            "point it at your cloud"
        )
        providers = [{"name": "default", "type": "openstack", "cloud": "default"}]
    else:
        report.append(
            "providers name clouds.yaml entries after hastexo's provider names "
            f"({', '.join(e['cloud'] for e in providers)}): the operator's clouds.yaml must define them"
        )
    if template_asset is None:
        report.append("stack_template_path is missing: template set to 'heat-template.yaml', provide it")
        template_file = "heat-template.yaml"
    else:
        template_file = templates.get(template_asset) or Path(template_asset).name or "heat-template.yaml"
    report.append(
        "the Heat template gets stacklab's `run` parameter (the stack name) where hastexo passed the course "
        "run; check the template does not depend on it"
    )

    # --- protocol, ports, key ---
    protocol = a.get("stack_protocol", "ssh").strip().lower() or "ssh"
    if protocol != "ssh":
        report.append(f"stack_protocol {protocol!r}: stacklab offers SSH terminals only; not mapped")
    for p in ports_raw:
        try:
            number = int(str(p.get("number", "")).strip())
        except ValueError:
            report.append(f"port {p.get('name', '?')!r}: number {p.get('number')!r} is not a number: skipped")
            continue
        if number != SSH_PORT:
            report.append(
                f"port {p.get('name', number)!r} ({number}): stacklab connects on SSH port 22 only; not mapped"
            )
    if a.get("stack_key_type", "").strip():
        report.append(
            f"stack_key_type {a['stack_key_type']!r}: stacklab takes the key from the template's private_key "
            "output; not mapped"
        )

    # --- checks ---
    checks = []
    for i, script in enumerate(tests):
        if not script.strip():
            report.append(f"test #{i + 1} is empty: skipped")
            continue
        checks.append(
            {"name": f"test-{i + 1}", "node": "main", "script": script.strip("\n") + "\n", "weight": 1.0}
        )
    if checks:
        report.append(
            "tests became checks of weight 1 on node main, run as the login user; hastexo showed each "
            "test's stderr as the hint, stacklab shows the check's output (add static hints if wanted)"
        )

    # --- hooks ---
    hook_script = a.get("hook_script", "").strip()
    events = {k: _truthy(v) for k, v in hook_events.items()}
    wanted = [e for e in ("suspend", "resume", "delete") if events.get(e, bool(hook_script))]
    for extra in sorted(set(events) - {"suspend", "resume", "delete"}):
        report.append(f"hook event {extra!r} is unknown: not mapped")
    hooks: dict = {}
    if hook_script and wanted:
        remote = f"/usr/local/lib/stacklab-hooks/{Path(hook_script).name}"
        for event, key in (
            ("suspend", "before_suspend"),
            ("resume", "after_resume"),
            ("delete", "before_delete"),
        ):
            if event in wanted:
                hooks[key] = {"node": "main", "script": f"sudo {remote} {event}\n"}
        report.append(
            f"hook_script {hook_script!r} ran by hastexo on {', '.join(wanted)}; the hooks now run {remote} "
            "on node main: install that script there from the Heat template (course assets are not copied)"
        )
    elif hook_events and not hook_script:
        report.append("hook_events are set but there is no hook_script: no hooks imported")

    # --- timeouts ---
    timeouts: dict = {}
    for attr, key in (
        ("launch_timeout", "launch"),
        ("suspend_timeout", "idle_suspend"),
        ("delete_age", "delete_after"),
    ):
        if a.get(attr, "").strip():
            seconds = _seconds(a[attr], attr, report)
            if seconds is not None:
                timeouts[key] = f"{seconds}s"

    # --- unit options and leftovers ---
    for attr in (
        "hidden",
        "enable_fullscreen",
        "show_feedback",
        "show_hints_on_error",
        "progress_check_result_heading",
    ):
        if attr in a:
            report.append(f"{attr}={a[attr]!r} has no stacklab equivalent: not mapped")
    if instructions:
        report.append(
            f"instruction children ({', '.join(instructions)}) are not part of a lab: move them to components "
            "next to the <stacklab> block in the unit"
        )

    lab: dict = {
        "schema": 1,
        "id": lab_id,
        "title": title,
        "description": f"Imported from hastexo-xblock ({a.get('url_name') or title}).",
        "login_user": user,
        "score": "best",
        "providers": providers,
        "openstack": {"template": template_file, "parameters": {}, "nodes": ["main"]},
    }
    if checks:
        lab["checks"] = checks
    if hooks:
        lab["hooks"] = hooks
    if timeouts:
        lab["timeouts"] = timeouts

    unit: dict[str, object] = {"lab": lab_id, "display_name": title}
    for attr, key, kind in (
        ("weight", "weight", "number"),
        ("read_only", "read_only", "bool"),
        ("progress_check_label", "check_label", "text"),
    ):
        if attr in a:
            try:
                unit[key] = (
                    float(a[attr]) if kind == "number" else _truthy(a[attr]) if kind == "bool" else a[attr]
                )
            except ValueError:
                report.append(f"{attr}={a[attr]!r} is not a number: not mapped")
    stacklab_olx = olx.export_olx(unit, url_name=a.get("url_name"))
    header = "# Imported from a hastexo-xblock <hastexo> element by stacklab_xblock.hastexo_import.\n"
    lab_yaml = header + yaml.safe_dump(lab, sort_keys=False, allow_unicode=True, width=110)
    return ImportResult(lab, lab_yaml, stacklab_olx, template_asset, report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", help="a hastexo OLX file (hastexo/URL_NAME.xml) or - for stdin")
    parser.add_argument("--lab-id")
    args = parser.parse_args(argv)
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    result = import_hastexo(text, lab_id=args.lab_id)
    sys.stdout.write(result.lab_yaml)
    sys.stderr.write(f"unit OLX: {result.stacklab_olx}\n")
    if result.template_path:
        sys.stderr.write(f"copy the course asset {result.template_path} next to the lab file\n")
    for line in result.report:
        sys.stderr.write(f"not mapped / note: {line}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
