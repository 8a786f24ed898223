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


def test_parse_validate_and_export_in_a_real_runtime(workbench_venv: Path) -> None:
    python = str(workbench_venv / "bin" / "python")
    env = {"DJANGO_SETTINGS_MODULE": "workbench.settings", "PATH": "/usr/bin:/bin"}
    with tempfile.TemporaryDirectory(prefix="stacklab-xblock-rt-") as workdir:
        (Path(workdir) / "var").mkdir()
        migrate_workbench(python, workdir, env)
        result = subprocess.run(
            [python, "-c", SCRIPT], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
        )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["read_only"] is True and out["node"] == "main"
    assert [(m["type"], m["text"].split(":")[0]) for m in out["bad"]] == [
        ("error", "lab"),
        ("error", "weight"),
    ]
    assert out["good"] == []
    assert out["max_score"] == 3.0
    assert "<stacklab " in out["xml"] and 'lab="hello-lab"' in out["xml"] and 'weight="3"' in out["xml"]
    assert 'check_label="Go"' in out["xml"] and "read_only" not in out["xml"]
