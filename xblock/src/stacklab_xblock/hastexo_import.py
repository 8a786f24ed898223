"""Import a hastexo-xblock `<hastexo>` (or, since its 9.0 rename, stackamole-xblock `<stackamole>`) element
into a stacklab lab definition and a `<stacklab>` element.

Written from hastexo-xblock's documented OLX (no code of it is used). The lab is defined once per course in
the service; the unit keeps its per-unit options (weight, read-only, check label) on `<stacklab>`. What the
import had to drop or change is listed in `ImportResult.report`, one sentence each, for the course author.
Where the unit leaves a setting out, hastexo's own default applies (launch 900 s, suspend after 120 s idle,
delete after 14 days, 120 s per check), so that the lab behaves as it did.

    python -m stacklab_xblock.hastexo_import UNIT.xml [--lab-id ID]     # one unit: the lab on stdout
    python -m stacklab_xblock.hastexo_import COURSE_EXPORT_DIR OUT_DIR  # every unit of a course export
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from stacklab_xblock import olx
from stacklab_xblock.hastexo_olx import Unit, read_unit

SSH_PORT = 22
DEFAULT_USER = "training"
TRUE = ("true", "1", "yes", "on")
HASTEXO_DEFAULTS = {"launch": 900, "idle_suspend": 120, "delete_after": 14 * 86400}
"""hastexo's operator defaults (launch_timeout, suspend_timeout, delete_age) in seconds."""
CHECK_TIMEOUT_S = 120
"""hastexo's check_timeout: how long a progress check may take."""
HOOK_TIMEOUT_S = 300
"""hastexo's remote_exec_timeout: how long a hook script may take."""
HOOK_EVENTS = {"suspend": "before_suspend", "resume": "after_resume", "delete": "before_delete"}

UNMAPPED_UNIT_OPTIONS = (
    "hidden",
    "enable_fullscreen",
    "show_feedback",
    "show_hints_on_error",
    "progress_check_result_heading",
)
Assets = Callable[[str], str | None]
"""Reads a course asset (a template, an environment file, a hook script) by its path; None when absent."""


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


# --- converting, one part of the lab at a time -----------------------------------------------------------


def _slug(text: str, fallback: str = "lab", limit: int = 40) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")
    return slug if slug and slug[0].isalnum() else fallback


def _truthy(value: object) -> bool:
    return str(value).strip().lower() in TRUE


def _seconds(text: str, what: str, report: list[str]) -> int | None:
    try:
        value = int(float(text))
    except ValueError:
        report.append(f"{what}={text!r} is not a number of seconds: hastexo's default applies")
        return None
    if value <= 0:
        report.append(f"{what}={text!r} is not a positive duration: hastexo's default applies")
        return None
    return value


def lab_id_for(a: Mapping[str, str], text: str, lab_id: str | None, report: list[str]) -> str:
    """The lab's id: given, else the unit's url_name, else its title plus a digest of the element (so
    that two units titled alike, neither with a url_name, still get two labs)."""
    if lab_id is None and a.get("url_name"):
        lab_id = _slug(a["url_name"])
    if lab_id is None:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        lab_id = f"{_slug(a.get('display_name', ''), 'lab', 31)}-{digest}"
        report.append(f"the unit has no url_name: the lab is called {lab_id!r} (title and content digest)")
    if not olx.LAB_ID.fullmatch(lab_id):
        report.append(f"lab id {lab_id!r} is not a slug; used {_slug(lab_id)!r}")
        lab_id = _slug(lab_id)
    return lab_id


def login_user(a: Mapping[str, str], report: list[str]) -> str:
    user = a.get("stack_user_name", "").strip()
    if not user:
        report.append(f"stack_user_name is missing (hastexo requires it): login_user set to {DEFAULT_USER!r}")
        return DEFAULT_USER
    if user == "root" or not olx.LOGIN_USER.fullmatch(user):
        report.append(f"stack_user_name {user!r} cannot be a stacklab login user: set to {DEFAULT_USER!r}")
        return DEFAULT_USER
    return user


@dataclass
class Providers:
    entries: list[dict]
    template_asset: str | None
    environment_asset: str | None


def _capacity(name: str, p: Mapping, report: list[str]) -> int:
    text = str(p.get("capacity", "-1")).strip()
    try:
        return int(text)
    except ValueError:
        report.append(f"provider {name}: capacity {text!r} is not a number: taken as unlimited")
        return -1


def providers(unit: Unit, report: list[str]) -> Providers:
    """hastexo's providers in order (clouds named after them); capacity 0 (disabled) is left out. One
    template and one environment file per lab: a provider's own differing one is reported."""
    a, raw = unit.attributes, unit.providers
    if not raw and a.get("provider"):
        report.append(f"the deprecated provider attribute {a['provider']!r} became the only provider")
        raw = [{"name": a["provider"]}]
    chosen = Providers([], a.get("stack_template_path", "").strip() or None, None)
    for i, p in enumerate(raw):
        name = str(p.get("name", "")).strip()
        if not name:
            report.append(f"provider #{i + 1} has no name: skipped")
            continue
        capacity = _capacity(name, p, report)
        if capacity == 0:
            report.append(f"provider {name} has capacity 0 (disabled in hastexo): left out")
            continue
        entry: dict = {"name": _slug(name, f"provider-{i + 1}"), "type": "openstack", "cloud": name}
        if capacity > 0:
            entry["capacity"] = capacity
        if entry["name"] in {e["name"] for e in chosen.entries}:
            report.append(f"provider {name} is listed twice: the second entry was skipped")
            continue
        for key, what in (("template", "template"), ("environment", "environment")):
            value = str(p.get(key) or "").strip() or None
            current = getattr(chosen, f"{what}_asset")
            if value and current is None:
                setattr(chosen, f"{what}_asset", value)
            elif value and value != current:
                report.append(
                    f"provider {name} uses its own {what} {value!r}: stacklab uses one per lab "
                    f"({current!r}); not mapped"
                )
        chosen.entries.append(entry)
    if not chosen.entries:
        report.append(
            "no usable provider: added one openstack provider 'default' (cloud 'default' in clouds.yaml); "
            "point it at your cloud"
        )
        chosen.entries = [{"name": "default", "type": "openstack", "cloud": "default"}]
    else:
        clouds = ", ".join(e["cloud"] for e in chosen.entries)
        report.append(
            f"providers name clouds.yaml entries after hastexo's provider names ({clouds}): the operator's "
            "clouds.yaml must define them"
        )
    return chosen


def _asset(assets: Assets | None, asset: str, what: str, otherwise: str, report: list[str]) -> str | None:
    """A course asset's text; None (and a report of `otherwise`) when it cannot be read."""
    text = assets(asset) if assets else None
    if text is None:
        report.append(
            f"{what} {asset!r} was not read (import the course export to carry it over): {otherwise}"
        )
    return text


def environment_parameters(asset: str | None, assets: Assets | None, report: list[str]) -> dict:
    """The parameter values of a provider's Heat environment file (`parameters`, `parameter_defaults`)."""
    if asset is None:
        return {}
    text = _asset(
        assets, asset, "Heat environment file", "put its parameter values into openstack.parameters", report
    )
    if text is None:
        return {}
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        report.append(f"Heat environment file {asset!r} is not valid YAML ({exc}): not mapped")
        return {}
    values: dict = {}
    for section in ("parameter_defaults", "parameters"):
        for name, value in (data.get(section) or {}).items():
            if isinstance(value, str | int | float | bool):
                values[str(name)] = value
            else:
                report.append(f"environment {asset!r}: {section}.{name} is not a plain value: not mapped")
    for section in sorted(set(data) - {"parameter_defaults", "parameters"}):
        report.append(f"environment {asset!r}: section {section!r} is not mapped (only parameter values are)")
    return values


def access(unit: Unit, report: list[str]) -> None:
    """What the learner connects with: stacklab offers an SSH terminal on port 22."""
    a = unit.attributes
    protocol = a.get("stack_protocol", "ssh").strip().lower() or "ssh"
    if protocol != "ssh":
        report.append(f"stack_protocol {protocol!r}: stacklab offers SSH terminals only; not mapped")
    for p in unit.ports:
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


def _runnable(script: str, what: str, report: list[str]) -> str:
    """The script as stacklab runs it: a `#!` naming a bare command gets `/usr/bin/env`."""
    first, _, rest = script.partition("\n")
    if first.startswith("#!") and not first[2:].strip().startswith("/"):
        fixed = f"#!/usr/bin/env {first[2:].strip()}"
        report.append(f"{what}: '{first}' became '{fixed}' (an interpreter needs an absolute path)")
        return f"{fixed}\n{rest}"
    return script


def checks(unit: Unit, report: list[str]) -> list[dict]:
    """Each test becomes a check of weight 1 on node main; it runs by its `#!` interpreter (or bash)."""
    found = []
    for i, script in enumerate(unit.tests):
        if not script.strip():
            report.append(f"test #{i + 1} is empty: skipped")
            continue
        text = _runnable(script.strip("\n") + "\n", f"test #{i + 1}", report)
        found.append(
            {
                "name": f"test-{i + 1}",
                "node": "main",
                "script": text,
                "weight": 1.0,
                "timeout": f"{CHECK_TIMEOUT_S}s",
            }
        )
    if found:
        report.append(
            "tests became checks of weight 1 on node main, run as the login user with hastexo's 120 s "
            "check timeout each; hastexo showed each test's stderr as the hint, stacklab shows the check's "
            "output (add static hints if wanted)"
        )
    return found


def _hook_script(source: str, event: str) -> str:
    """A bash hook that runs the course's hook script as hastexo did: an executable, the event its argument."""
    runner = '"$hook"' if source.startswith("#!") else 'bash "$hook"'
    return (
        "hook=$(mktemp) && trap 'rm -f \"$hook\"' EXIT\n"
        "cat > \"$hook\" <<'STACKLAB_HOOK_EOF'\n"
        f"{source.rstrip()}\n"
        "STACKLAB_HOOK_EOF\n"
        f'chmod 0700 "$hook" && {runner} {event}\n'
    )


def hooks(unit: Unit, assets: Assets | None, report: list[str]) -> dict:
    """hastexo's hook_script, run on node main for the hook_events asked for (all three by default)."""
    asset = unit.attributes.get("hook_script", "").strip()
    events = {str(k): _truthy(v) for k, v in unit.hook_events.items()}
    for extra in sorted(set(events) - set(HOOK_EVENTS)):
        report.append(f"hook event {extra!r} is unknown: not mapped")
    if not asset:
        if unit.hook_events:
            report.append("hook_events are set but there is no hook_script: no hooks imported")
        return {}
    wanted = [event for event in HOOK_EVENTS if events.get(event, True)]
    source = _asset(assets, asset, "hook_script", "no hooks imported", report)
    if source is None:
        return {}
    if wanted:
        report.append(
            f"hook_script {asset!r} runs on node main as the login user ({', '.join(wanted)}), with the "
            f"event as its argument and hastexo's {HOOK_TIMEOUT_S} s limit"
        )
    return {
        HOOK_EVENTS[event]: {
            "node": "main",
            "script": _hook_script(source, event),
            "timeout": f"{HOOK_TIMEOUT_S}s",
        }
        for event in wanted
    }


def timeouts(a: Mapping[str, str], report: list[str]) -> dict:
    """launch_timeout, suspend_timeout and delete_age, or hastexo's defaults where the unit has none."""
    found = dict(HASTEXO_DEFAULTS)
    for attr, key in (
        ("launch_timeout", "launch"),
        ("suspend_timeout", "idle_suspend"),
        ("delete_age", "delete_after"),
    ):
        if a.get(attr, "").strip():
            seconds = _seconds(a[attr], attr, report)
            if seconds is not None:
                found[key] = seconds
    return {key: f"{seconds}s" for key, seconds in found.items()}


def unit_options(a: Mapping[str, str], lab_id: str, title: str, report: list[str]) -> str:
    """The `<stacklab>` element with the unit's own options; options stacklab lacks are reported."""
    for attr in UNMAPPED_UNIT_OPTIONS:
        if attr in a:
            report.append(f"{attr}={a[attr]!r} has no stacklab equivalent: not mapped")
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
    return olx.export_olx(unit, url_name=a.get("url_name"))


# --- the whole import ----------------------------------------------------------------------------------


def import_hastexo(
    text: str,
    lab_id: str | None = None,
    assets: Assets | None = None,
    url_name: str | None = None,
) -> ImportResult:
    """Convert one `<hastexo>`/`<stackamole>` element (OLX text) to a stacklab lab and a `<stacklab>` element.

    `lab_id` names the lab (default: from url_name, else title and content). `assets` reads course assets
    (environment files, hook scripts); without it, what needs them is reported. `url_name` is the unit's
    when the element itself has none (an export names the file after it).
    """
    report: list[str] = []
    unit = read_unit(text, report)
    a = unit.attributes
    if url_name and not a.get("url_name"):
        a["url_name"] = url_name
    lab_id = lab_id_for(a, text, lab_id, report)
    title = a.get("display_name", "").strip() or "Lab"
    chosen = providers(unit, report)
    template_asset = chosen.template_asset
    if template_asset is None:
        report.append("stack_template_path is missing: template set to 'heat-template.yaml', provide it")
    access(unit, report)
    lab: dict = {
        "schema": 1,
        "id": lab_id,
        "title": title,
        "description": f"Imported from hastexo-xblock ({a.get('url_name') or title}).",
        "login_user": login_user(a, report),
        "score": "best",
        "providers": chosen.entries,
        "openstack": {
            "template": Path(template_asset).name if template_asset else "heat-template.yaml",
            "parameters": environment_parameters(chosen.environment_asset, assets, report),
            "nodes": ["main"],
        },
        "checks": checks(unit, report),
        "hooks": hooks(unit, assets, report),
        "timeouts": timeouts(a, report),
    }
    for empty in ("checks", "hooks"):
        if not lab[empty]:
            del lab[empty]
    stacklab_olx = unit_options(a, lab_id, title, report)
    if unit.instructions:
        report.append(
            f"instruction children ({', '.join(unit.instructions)}) are not part of a lab: move them to "
            "components next to the <stacklab> block in the unit"
        )
    header = "# Imported from a hastexo-xblock element by stacklab_xblock.hastexo_import.\n"
    lab_yaml = header + yaml.safe_dump(lab, sort_keys=False, allow_unicode=True, width=110)
    return ImportResult(lab, lab_yaml, stacklab_olx, template_asset, report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "source", help="a unit's OLX file (hastexo/URL_NAME.xml), - for stdin, or a course export"
    )
    parser.add_argument("out_dir", nargs="?", help="with a course export: where the labs are written")
    parser.add_argument("--lab-id", help="with one unit: the lab's id")
    args = parser.parse_args(argv)
    source = Path(args.source)
    if source.is_dir():
        from stacklab_xblock.hastexo_export import import_export

        if not args.out_dir or args.lab_id:
            parser.error("a course export needs OUT_DIR (and takes no --lab-id: each unit has its own)")
        for written in import_export(source, Path(args.out_dir)):
            sys.stderr.write(f"{written}\n")
        return 0
    if args.out_dir:
        parser.error("OUT_DIR goes with a course export directory, not with one unit")
    text = sys.stdin.read() if args.source == "-" else source.read_text()
    name = None if args.source == "-" else source.stem
    result = import_hastexo(text, lab_id=args.lab_id, url_name=name)
    sys.stdout.write(result.lab_yaml)
    sys.stderr.write(f"unit OLX: {result.stacklab_olx}\n")
    if result.template_path:
        sys.stderr.write(f"copy the course asset {result.template_path} next to the lab file\n")
    for line in result.report:
        sys.stderr.write(f"not mapped / note: {line}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
