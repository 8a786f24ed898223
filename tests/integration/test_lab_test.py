"""`stacklab lab test` on real LXC nodes: every example that runs locally passes it, and a lab whose solve
is wrong fails it, naming the check (and a failing hook, naming the hook). The wrong lab's other check, its
solve and a hook are Python scripts with a `#!` line: they run by their interpreter. One lab at a time; the
examples share the cached image.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.lxc import IMAGE_DIR, require_lxc, run_sync

from stacklab.labs import load_lab
from stacklab.providers.local import LocalProvider

pytestmark = pytest.mark.lxc

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
LOCAL_EXAMPLES = sorted(
    path.name for path in EXAMPLES.glob("*.yaml") if "local" in load_lab(path).provider_types()
)

WRONG_SOLVE = """\
schema: 1
id: wrong-solve
title: A lab whose second solve is wrong and whose third check passes from the start
login_user: learner
local:
  nodes:
    - name: main
      memory_mb: 256
      packages: [python3-minimal]
checks:
  - name: python-greeting
    node: main
    script: |
      #!/usr/bin/env python3
      import pathlib, sys
      path = pathlib.Path.home() / "greeting.txt"
      if not path.exists() or path.read_text().strip() != "hi":
          sys.exit(f"{path} should say hi")
      print("checked by", sys.executable, "from", __file__)
    solve: |
      #!/usr/bin/env python3
      import pathlib
      (pathlib.Path.home() / "greeting.txt").write_text("hi\\n")
  - name: flag-file
    node: main
    script: test -f ~/flag
    hint: touch ~/flag
    solve: touch ~/flagg
  - name: free-point
    node: main
    script: test -d ~
    solve: "true"
hooks:
  before_suspend: {node: main, script: "echo disk full >&2; exit 3"}
  after_resume:
    node: main
    script: |
      #!/usr/bin/env python3
      import os, pathlib
      pathlib.Path.home().joinpath("resumed.txt").write_text(f"resumed by {os.path.basename(__file__)}\\n")
"""


def stacklab(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STACKLAB_DATA_DIR": str(data_dir), "STACKLAB_IMAGE_DIR": IMAGE_DIR}
    return subprocess.run(
        [sys.executable, "-m", "stacklab.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data dir outside pytest's 0700 temporary root, which the containers' shifted root must traverse
    (and which another pytest run may lock down again at any time); removed afterwards."""
    require_lxc()
    root = Path(tempfile.mkdtemp(prefix="stacklab-labtest-", dir="/var/tmp"))
    root.chmod(0o755)
    yield root / "data"
    local = root / "data" / "local"
    if local.is_dir():  # what a crashed run left: deleted like any stack
        provider = LocalProvider("lab-test-sweep", {"root_dir": str(local), "image_dir": IMAGE_DIR})

        async def sweep() -> None:
            for name in await provider.list():
                await provider.delete({"name": name})

        run_sync(sweep())
    shutil.rmtree(root, ignore_errors=True)


def containers(data_dir: Path) -> list[str]:
    listed = subprocess.run(["lxc-ls", "-P", str(data_dir / "local")], capture_output=True, text=True)
    return listed.stdout.split()


def test_the_examples_that_run_locally_are_listed() -> None:
    assert {"hello.yaml", "cluster.yaml"} <= set(LOCAL_EXAMPLES)


@pytest.mark.parametrize("example", LOCAL_EXAMPLES)
def test_every_local_example_passes_lab_test(example: str, data_dir: Path) -> None:
    result = stacklab(data_dir, "lab", "test", str(EXAMPLES / example), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["surprises"] == []
    assert [step["name"] for step in report["steps"]] == ["launch", "suspend", "resume", "delete"]
    lab = load_lab(EXAMPLES / example)
    assert [row["name"] for row in report["checks"]] == [check.name for check in lab.checks]
    for row in report["checks"]:
        assert (row["before_solve"], row["solve"], row["after_solve"], row["after_resume"]) == (
            "fail",
            "ok",
            "pass",
            "pass",
        )
    assert containers(data_dir) == []


@pytest.mark.network
def test_a_wrong_solve_fails_and_names_its_check(data_dir: Path, tmp_path: Path) -> None:
    lab = tmp_path / "wrong.yaml"
    lab.write_text(WRONG_SOLVE)
    data = data_dir
    result = stacklab(data, "lab", "test", str(lab), "--keep")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line for line in lines if line.startswith("SURPRISE")] == [
        "SURPRISE check free-point: passed before its solve ran (a learner scores without doing the task)",
        "SURPRISE check flag-file: failed after its solve script ran",
        "SURPRISE hook before_suspend: HookFailed: exit 3: disk full",  # recorded, never fatal
    ]
    python_row = next(line for line in lines if line.startswith("python-greeting"))
    assert python_row.split()[2:] == ["fail", "ok", "pass", "pass"]  # the Python check and solve ran
    env_id = lines[0].split("(environment ")[1].rstrip(")")
    assert lines[-1] == f"FAILED: 3 surprises; environment {env_id} kept"
    try:
        shown = json.loads(stacklab(data, "env", "show", env_id, "--json").stdout)
        assert shown["observed"] == "running"
        checked = json.loads(stacklab(data, "env", "check", env_id, "--json").stdout)
        greeting = checked["results"][0]
        assert greeting["passed"] and "checked by /usr/bin/python3 from " in greeting["output"]
        assert "/stacklab-script." in greeting["output"]  # an uploaded copy, in a fresh directory
        left = stacklab(data, "env", "exec", env_id, "--", "cat ~/resumed.txt; ls -d /tmp/stacklab-script.*")
        assert left.stdout.splitlines() == ["resumed by script"]  # the Python hook ran; nothing was left
    finally:
        assert stacklab(data, "env", "delete", env_id, "--wait").returncode == 0
    assert containers(data) == []
