"""hastexo-xblock OLX becomes a stacklab lab that validates, plus a report of what could not be mapped."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from stacklab_xblock import olx
from stacklab_xblock.hastexo_export import import_export
from stacklab_xblock.hastexo_import import import_hastexo, main

from stacklab.labs.loader import LabError, parse_lab

# A unit as hastexo-xblock courses export it: plain XML children.
PLAIN = """\
<hastexo url_name="lab_openstack_intro" display_name="Lab: OpenStack introduction" weight="10"
    stack_user_name="training" stack_protocol="ssh" stack_template_path="hot_lab.yaml"
    launch_timeout="1800" suspend_timeout="300" delete_age="1209600"
    progress_check_label="Check progress" read_only="false">
  <provider name="cloud-de" capacity="20" template="hot_lab.yaml" environment="hot_env_de.yaml"/>
  <provider name="cloud-ch" capacity="-1"/>
  <provider name="cloud-old" capacity="0"/>
  <port name="server1" number="22"/>
  <port name="web console" number="8080"/>
  <test><![CDATA[
#!/bin/bash
# the learner created the instance
openstack server show test1 >/dev/null 2>&1 || { echo "Create the server test1" >&2; exit 1; }
]]></test>
  <test><![CDATA[
test -f /home/training/.ssh/id_rsa
]]></test>
  <hook_events suspend="True" resume="False" delete="True"/>
  <html><p>Log in and create a server.</p></html>
</hastexo>
"""

# The same kind of unit written with the option: namespace (YAML children), RDP, a hook script.
OPTIONS = """\
<hastexo xmlns:option="http://code.edx.org/xblock/option" url_name="win_lab" display_name="Windows lab"
    stack_user_name="Administrator1" stack_protocol="rdp" stack_template_path="windows/hot.yaml"
    stack_key_type="rsa" hook_script="hooks/lab-hook.sh" hidden="true" enable_fullscreen="inherit"
    show_feedback="false" progress_check_result_heading="Your results">
  <option:providers>
  - name: default
    capacity: 5
    template: windows/hot.yaml
  - name: spare
    capacity: -1
    template: windows/hot-spare.yaml
  </option:providers>
  <option:ports>
  - name: rdp
    number: 3389
  </option:ports>
  <option:tests>
  - |
    #!/bin/bash
    test -d /srv/share
  - |
    #!/bin/bash
    grep -q ready /srv/share/status
  </option:tests>
  <option:hook_events>
    suspend: true
    resume: true
    delete: false
  </option:hook_events>
</hastexo>
"""

# The oldest form: a single deprecated provider attribute, no tests, no timeouts.
DEPRECATED = """\
<hastexo display_name="Ceph 101" stack_user_name="training" stack_template_path="ceph/hot_lab.yaml"
    provider="my-cloud" weight="0"/>
"""

# Broken bits: no user, no providers, bad timeouts, an unknown attribute, an unknown child.
BROKEN = """\
<hastexo display_name="!!!" launch_timeout="soon" delete_age="-5" colour="blue" weight="heavy">
  <test>   </test>
  <gizmo/>
</hastexo>
"""


def lab_of(result) -> object:  # type: ignore[no-untyped-def]
    try:
        return parse_lab(result.lab_yaml, source="imported.yaml")
    except LabError as exc:  # pragma: no cover - shown on failure
        pytest.fail(f"the imported lab does not validate: {exc}\n{result.lab_yaml}")


def mentions(report: list[str], *words: str) -> bool:
    return any(all(w in line for w in words) for line in report)


def test_plain_children_map_to_providers_checks_hooks_and_timeouts() -> None:
    result = import_hastexo(PLAIN)
    lab = lab_of(result)
    assert lab.id == "lab-openstack-intro"
    assert lab.title == "Lab: OpenStack introduction"
    assert lab.login_user == "training"
    assert [(p.name, p.type, p.cloud, p.capacity) for p in lab.providers] == [
        ("cloud-de", "openstack", "cloud-de", 20),
        ("cloud-ch", "openstack", "cloud-ch", None),
    ]
    assert lab.openstack.template == "hot_lab.yaml"
    assert result.template_path == "hot_lab.yaml"
    assert [c.name for c in lab.checks] == ["test-1", "test-2"]
    assert "openstack server show test1" in lab.checks[0].script
    assert all(c.node == "main" for c in lab.checks)
    assert (lab.timeouts.launch_s, lab.timeouts.idle_suspend_s, lab.timeouts.delete_after_s) == (
        1800,
        300,
        1209600,
    )
    # hook_events without a hook_script: nothing to run
    assert lab.hooks.before_suspend is None
    report = result.report
    assert mentions(report, "cloud-old", "capacity 0")
    assert mentions(report, "hot_env_de.yaml")
    assert mentions(report, "8080", "not mapped")
    assert not mentions(report, "server1")  # port 22 is what stacklab uses
    assert mentions(report, "hook_events", "no hook_script")
    assert mentions(report, "html", "move them")
    assert mentions(report, "stderr")
    unit = olx.parse_olx(result.stacklab_olx)
    assert unit == {
        "lab": "lab-openstack-intro",
        "display_name": "Lab: OpenStack introduction",
        "weight": 10.0,
        "check_label": "Check progress",
    }


def test_option_namespace_yaml_children_and_hooks() -> None:
    hook = '#!/bin/sh\necho "$1" >> /var/tmp/events\n'
    result = import_hastexo(OPTIONS, lab_id="windows-lab", assets={"hooks/lab-hook.sh": hook}.get)
    lab = lab_of(result)
    assert lab.id == "windows-lab"
    assert lab.login_user == "training"  # "Administrator1" is not a Linux login name
    assert [(p.name, p.capacity) for p in lab.providers] == [("default", 5), ("spare", None)]
    assert lab.openstack.template == "hot.yaml"
    assert len(lab.checks) == 2 and "grep -q ready" in lab.checks[1].script
    assert lab.hooks.before_suspend is not None and lab.hooks.before_suspend.script.endswith(
        '"$hook" suspend\n'
    )
    assert hook in lab.hooks.before_suspend.script and lab.hooks.before_suspend.timeout_s == 300
    assert lab.hooks.after_resume is not None and lab.hooks.after_resume.script.endswith('"$hook" resume\n')
    assert lab.hooks.before_delete is None
    report = result.report
    assert mentions(report, "Administrator1")
    assert mentions(report, "stack_protocol", "rdp")
    assert mentions(report, "3389", "not mapped")
    assert mentions(report, "hot-spare.yaml", "one per lab")
    assert mentions(report, "stack_key_type")
    assert mentions(report, "hooks/lab-hook.sh", "suspend, resume", "argument")
    for attr in ("hidden", "enable_fullscreen", "show_feedback", "progress_check_result_heading"):
        assert mentions(report, attr, "not mapped"), attr
    assert olx.parse_olx(result.stacklab_olx)["lab"] == "windows-lab"


def test_undeclared_option_prefix_is_accepted() -> None:
    text = OPTIONS.replace(' xmlns:option="http://code.edx.org/xblock/option"', "")
    assert import_hastexo(text).lab["providers"][0]["capacity"] == 5


def test_deprecated_single_provider() -> None:
    result = import_hastexo(DEPRECATED)
    lab = lab_of(result)
    assert lab.id.startswith("ceph-101-")  # no url_name: title and a digest of the element
    assert import_hastexo(DEPRECATED).lab["id"] == lab.id  # the same unit gets the same id again
    assert import_hastexo(DEPRECATED.replace('weight="0"', 'weight="1"')).lab["id"] != lab.id
    assert mentions(result.report, "no url_name")
    assert [(p.name, p.cloud) for p in lab.providers] == [("my-cloud", "my-cloud")]
    assert lab.checks == ()
    assert mentions(result.report, "deprecated provider")
    assert olx.parse_olx(result.stacklab_olx)["weight"] == 0.0


def test_broken_units_still_give_a_valid_lab_and_say_why() -> None:
    result = import_hastexo(BROKEN)
    lab = lab_of(result)
    assert lab.id.startswith("lab-")
    assert lab.login_user == "training"
    assert [(p.name, p.cloud) for p in lab.providers] == [("default", "default")]
    assert lab.openstack.template == "heat-template.yaml"
    report = result.report
    for words in (
        ("stack_user_name", "missing"),
        ("no usable provider",),
        ("stack_template_path", "missing"),
        ("launch_timeout", "not a number"),
        ("delete_age", "not a positive"),
        ("colour", "unknown"),
        ("gizmo",),
        ("test #1", "empty"),
        ("weight", "not a number"),
    ):
        assert mentions(report, *words), words


def test_imported_template_is_checked_when_the_lab_dir_is_known(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = import_hastexo(PLAIN)
    (tmp_path / "lab.yaml").write_text(result.lab_yaml)
    with pytest.raises(LabError, match=r"hot_lab\.yaml"):
        parse_lab(result.lab_yaml, lab_dir=str(tmp_path))
    (tmp_path / "hot_lab.yaml").write_text("heat_template_version: 2018-08-31\n")
    assert parse_lab(result.lab_yaml, lab_dir=str(tmp_path)).id == "lab-openstack-intro"


def test_not_a_hastexo_element() -> None:
    with pytest.raises(ValueError, match="hastexo"):
        import_hastexo('<stacklab lab="x"/>')


def test_command_line(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "unit.xml"
    source.write_text(PLAIN)
    assert main([str(source), "--lab-id", "intro"]) == 0
    out, err = capsys.readouterr()
    assert yaml.safe_load(out)["id"] == "intro"
    assert '<stacklab url_name="lab_openstack_intro"' in err
    assert "not mapped" in err


def test_stackamole_units_and_hastexo_defaults() -> None:
    text = DEPRECATED.replace("<hastexo", '<stackamole url_name="ceph"').replace(
        "/>", "><test>#!python3\nprint(1)\n</test></stackamole>"
    )
    result = import_hastexo(text)
    lab = lab_of(result)
    assert lab.id == "ceph"
    # what hastexo does when the unit says nothing: launch 900 s, suspend after 120 s, delete after 14 days
    assert (lab.timeouts.launch_s, lab.timeouts.idle_suspend_s, lab.timeouts.delete_after_s) == (
        900,
        120,
        14 * 86400,
    )
    (check,) = lab.checks
    assert check.timeout_s == 120  # hastexo's check_timeout
    assert check.script.startswith("#!/usr/bin/env python3\n")
    assert mentions(result.report, "'#!python3' became '#!/usr/bin/env python3'")


def test_hooks_and_environment_files_need_the_course_assets() -> None:
    result = import_hastexo(
        OPTIONS.replace("windows/hot.yaml\n", "windows/hot.yaml\n    environment: env.yaml\n", 1)
    )
    assert "hooks" not in result.lab
    assert mentions(result.report, "hooks/lab-hook.sh", "not read", "no hooks imported")
    assert mentions(result.report, "env.yaml", "not read")
    assets = {"env.yaml": "parameter_defaults: {flavor: m1.large, count: 2}\nresource_registry: {}\n"}
    text = OPTIONS.replace("windows/hot.yaml\n", "windows/hot.yaml\n    environment: env.yaml\n", 1)
    mapped = import_hastexo(text, assets=assets.get)
    assert mapped.lab["openstack"]["parameters"] == {"flavor": "m1.large", "count": 2}
    assert mentions(mapped.report, "resource_registry", "not mapped")


def course_export(root: Path) -> Path:
    """A course export as Open edX writes it: units under hastexo/ and stackamole/, assets under static/."""
    course = root / "course"
    (course / "hastexo").mkdir(parents=True)
    (course / "stackamole").mkdir()
    (course / "static" / "hooks").mkdir(parents=True)
    (course / "course.xml").write_text('<course url_name="2026_T1" org="Org" course="Intro"/>')
    (course / "hastexo" / "lab_intro.xml").write_text(PLAIN.replace(' url_name="lab_openstack_intro"', ""))
    (course / "stackamole" / "lab_two.xml").write_text(
        DEPRECATED.replace("<hastexo", '<stackamole hook_script="hooks/h.sh"')
    )
    (course / "static" / "hot_lab.yaml").write_text("heat_template_version: 2018-08-31\nresources: {}\n")
    (course / "static" / "hot_env_de.yaml").write_text("parameters: {flavor: m1.small}\n")
    (course / "static" / "hooks" / "h.sh").write_text("echo hook $1\n")
    return root


def test_a_course_export_becomes_one_lab_folder_per_unit(tmp_path: Path) -> None:
    out = tmp_path / "labs"
    done = import_export(course_export(tmp_path / "export"), out)
    assert [line.split(" -> ")[0] for line in done] == ["hastexo/lab_intro.xml", "stackamole/lab_two.xml"]
    assert sorted(p.name for p in out.iterdir()) == ["lab-intro", "lab-two"]
    intro = parse_lab((out / "lab-intro" / "lab.yaml").read_text(), lab_dir=str(out / "lab-intro"))
    assert intro.openstack.parameters == {"flavor": "m1.small"}  # from the provider's environment file
    assert (out / "lab-intro" / "hot_lab.yaml").is_file()
    assert olx.parse_olx((out / "lab-intro" / "unit.xml").read_text())["lab"] == "lab-intro"
    assert "8080" in (out / "lab-intro" / "report.txt").read_text()
    two = parse_lab((out / "lab-two" / "lab.yaml").read_text(), "lab.yaml")
    assert two.hooks.before_delete is not None and "echo hook $1" in two.hooks.before_delete.script
    assert "ceph/hot_lab.yaml" in (out / "lab-two" / "report.txt").read_text()  # not among the assets


def test_the_command_line_imports_an_export(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    export = course_export(tmp_path / "export")
    assert main([str(export), str(tmp_path / "labs")]) == 0
    assert "lab-intro" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(export), str(tmp_path / "labs"), "--lab-id", "x"])  # each unit has its own id


def test_the_xblock_copy_of_the_name_rules_is_the_services() -> None:
    from stacklab.names import LOGIN_USER, NODE_NAME, SLUG

    assert (olx.LAB_ID.pattern, olx.NODE_NAME.pattern, olx.LOGIN_USER.pattern) == (
        SLUG.regex,
        NODE_NAME.regex,
        LOGIN_USER.regex,
    )
