"""The XBlock class in a real XBlock runtime (the workbench's, in its own venv): OLX, validation, export."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import pytest
from tests.xblock.conftest import migrate_workbench

pytestmark = [pytest.mark.e2e]

SCRIPT = """
import io, json, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "workbench.settings")
import django
django.setup()
from workbench.runtime import WorkbenchRuntime
rt = WorkbenchRuntime()
rt.id_generator.set_scenario("t")
out = {}
block = rt.get_block(rt.parse_xml_string('<stacklab lab="" weight="-1" read_only="true" node="main"/>'))
out["read_only"], out["node"] = block.read_only, block.node
out["bad"] = [m.to_json() for m in block.validate().messages]
block = rt.get_block(rt.parse_xml_string('<stacklab lab="hello-lab" weight="3" check_label="Go"/>'))
out["good"] = [m.to_json() for m in block.validate().messages]
out["max_score"] = block.max_score()
buf = io.BytesIO()
rt.export_to_xml(block, buf)
out["xml"] = buf.getvalue().decode()
print(json.dumps(out))
"""


def run_in_runtime(workbench_venv: Path, script: str) -> dict:
    """Run `script` in the workbench's venv (a real XBlock runtime and its database): its JSON last line."""
    python = str(workbench_venv / "bin" / "python")
    env = {"DJANGO_SETTINGS_MODULE": "workbench.settings", "PATH": "/usr/bin:/bin"}
    with tempfile.TemporaryDirectory(prefix="stacklab-xblock-rt-") as workdir:
        (Path(workdir) / "var").mkdir()
        migrate_workbench(python, workdir, env)
        result = subprocess.run(
            [python, "-c", script], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
        )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_parse_validate_and_export_in_a_real_runtime(workbench_venv: Path) -> None:
    out = run_in_runtime(workbench_venv, SCRIPT)
    assert out["read_only"] is True and out["node"] == "main"
    assert [(m["type"], m["text"].split(":")[0]) for m in out["bad"]] == [
        ("error", "lab"),
        ("error", "weight"),
    ]
    assert out["good"] == []
    assert out["max_score"] == 3.0
    assert "<stacklab " in out["xml"] and 'lab="hello-lab"' in out["xml"] and 'weight="3"' in out["xml"]
    assert 'check_label="Go"' in out["xml"] and "read_only" not in out["xml"]


STUDIO_SCRIPT = """
import json, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "workbench.settings")
import django
django.setup()
import webob
from workbench.runtime import WorkbenchRuntime
rt = WorkbenchRuntime()
rt.id_generator.set_scenario("t")
block = rt.get_block(rt.parse_xml_string('<stacklab lab="hello-lab" weight="3"/>'))
out = {"form": rt.render(block, "studio_view").content}
def save(values):
    body = json.dumps({"values": values, "defaults": []}).encode()
    response = rt.handle(block, "submit_studio_edits", webob.Request.blank("/", method="POST", body=body))
    return {"status": response.status_code, "body": json.loads(response.body)}
out["refused"] = save({"lab": "Hello Lab", "weight": -1, "node": "main"})
out["after_refusal"] = [block.lab, block.weight, block.node]
out["saved"] = save({"lab": "pair-lab", "weight": 0, "read_only": True})
out["after_save"] = [block.lab, block.weight, block.read_only]
out["panel"] = [m.to_json() for m in block.validate().messages]
print(json.dumps(out))
"""


def test_studio_form_saves_and_refuses_with_our_messages(workbench_venv: Path) -> None:
    """Studio's editor (StudioEditableXBlockMixin) lists the unit's settings; Save applies our rules: an
    error refuses the whole edit with the message Studio shows, a warning (weight 0) saves and stays in the
    validation panel."""
    out = run_in_runtime(workbench_venv, STUDIO_SCRIPT)
    for label in ("Display name", "Lab", "Weight", "Node opened first", "Read-only", "Check button label"):
        assert f">{label}</label>" in out["form"], label
    assert 'data-field-name="lab"' in out["form"] and 'value="hello-lab"' in out["form"]
    assert out["refused"]["status"] == 400
    texts = [m["text"] for m in out["refused"]["body"]["error"]["messages"]]
    assert texts == [
        "lab: 'Hello Lab' is not a lab id (lowercase letters, digits and '-', at most 40)",
        "weight: must not be negative, got -1.0",
    ]
    assert out["after_refusal"] == ["hello-lab", 3.0, ""]
    assert out["saved"] == {"status": 200, "body": {"result": "success"}}
    assert out["after_save"] == ["pair-lab", 0.0, True]
    assert out["panel"] == [
        {"type": "warning", "text": "weight: is 0: the lab will not count towards the grade"}
    ]


COURSE_NAME_SCRIPT = """
import json, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "workbench.settings")
import django
django.setup()
from urllib.parse import parse_qs, urlsplit
from xblock.core import XBlock
from xblock.fields import Scope, String
from workbench.runtime import WorkbenchRuntime
from stacklab_xblock.block import embedded

class Course(XBlock):
    \"\"\"Stands in for the LMS's course block: the top of the course tree.\"\"\"
    has_children = True
    display_name = String(scope=Scope.settings, default="")

@XBlock.register_temp_plugin(Course, "course")
def names():
    rt = WorkbenchRuntime()
    rt.id_generator.set_scenario("c")
    olx = ('<course display_name="Linux &lt;b&gt;basics&lt;/b&gt; &amp; more"><vertical_demo>'
           '<stacklab lab="hello-lab"/></vertical_demo></course>')
    course = rt.get_block(rt.parse_xml_string(olx))
    unit = rt.get_block(rt.get_block(course.children[0]).children[0])
    alone = rt.get_block(rt.parse_xml_string('<vertical_demo><stacklab lab="hello-lab"/></vertical_demo>'))
    return unit._course_name(), rt.get_block(alone.children[0])._course_name()

in_course, alone = names()
url = embedded("https://labs.example/lab/e1?node=main#token=T", in_course)
parts = urlsplit(url)
print(json.dumps({"in_course": in_course, "alone": alone, "url": url, "query": parse_qs(parts.query),
                  "fragment": parts.fragment}))
"""


def test_the_course_name_comes_from_the_course_above_the_unit(workbench_venv: Path) -> None:
    """The unit finds the course's display name up its parents (the LMS's course tree) and passes it to the
    lab page URL-encoded, beside embedded=1, leaving the token in the fragment; without a course above it
    (and no `course_name` setting) it passes none."""
    out = run_in_runtime(workbench_venv, COURSE_NAME_SCRIPT)
    assert out["in_course"] == "Linux <b>basics</b> & more"
    assert out["alone"] == ""
    assert out["query"] == {
        "node": ["main"],
        "embedded": ["1"],
        "course_name": ["Linux <b>basics</b> & more"],
    }
    assert out["fragment"] == "token=T" and "<" not in out["url"] and " " not in out["url"]
