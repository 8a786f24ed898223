"""Author scripts: a `#!` line picks the interpreter (checked in the lab file), `solve` is optional, and the
command that runs a script either feeds bash or uploads an executable. The name rules hold everywhere."""

from __future__ import annotations

import subprocess

import pytest
from pydantic import TypeAdapter, ValidationError

from stacklab.checks.scripts import SCRIPT_RUNNER, runner_for
from stacklab.errors import LabError
from stacklab.labs import parse_lab
from stacklab.labs.scripts import shebang
from stacklab.names import LOGIN_USER, NODE_NAME, SLUG, LoginUser, NodeName, Slug

LAB = """\
schema: 1
id: scripts
title: Scripts
login_user: learner
local:
  nodes: [{name: main}]
checks:
  - name: py
    node: main
    script: |
      #!/usr/bin/env python3
      print("hi")
    solve: |
      #!/bin/sh
      true
  - {name: plain, node: main, script: "true"}
"""


def test_a_check_may_have_a_solve_and_a_shebang() -> None:
    lab = parse_lab(LAB, "lab.yaml")
    py, plain = lab.checks
    assert shebang(py.script) == "/usr/bin/env python3"
    assert py.solve is not None and shebang(py.solve) == "/bin/sh"
    assert plain.solve is None and shebang(plain.script) is None


def test_a_shebang_needs_an_absolute_interpreter() -> None:
    text = LAB.replace("#!/usr/bin/env python3", "#!python3")
    with pytest.raises(LabError) as raised:
        parse_lab(text, "lab.yaml")
    assert raised.value.problems == [
        "lab.yaml:10: checks[0].script: the '#!' line must name an interpreter by its absolute path, "
        "e.g. '#!/usr/bin/env python3' (got '#!python3')"
    ]


def test_an_empty_solve_is_refused() -> None:
    with pytest.raises(LabError) as raised:
        parse_lab(LAB.replace('script: "true"}', 'script: "true", solve: " "}'), "lab.yaml")
    assert [p.split(": ", 1)[1] for p in raised.value.problems] == ["checks[1].solve: must not be empty"]


def test_bash_scripts_go_on_stdin_and_others_are_uploaded() -> None:
    assert runner_for("test -f x", 10) == SCRIPT_RUNNER
    uploaded = runner_for("#!/usr/bin/env python3\nprint(1)\n", 10)
    assert "mktemp -d" in uploaded and "timeout --kill-after=5 15 " in uploaded


def test_the_uploaded_runner_runs_the_interpreter_and_leaves_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    script = '#!/bin/sh\necho "$0" > "$OUT"; exit 3\n'
    env = {"TMPDIR": str(tmp_path), "OUT": str(tmp_path / "out"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(["sh", "-c", runner_for(script, 5)], input=script, text=True, env=env)
    assert done.returncode == 3
    ran_as = (tmp_path / "out").read_text().strip()
    assert ran_as.startswith(f"{tmp_path}/stacklab-script.") and ran_as.endswith("/script")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # its directory is gone


@pytest.mark.parametrize(
    ("rule", "kind", "good", "bad"),
    [
        (SLUG, Slug, ["a", "0-lab", "x" * 40], ["", "-a", "A", "x" * 41, "a_b"]),
        (NODE_NAME, NodeName, ["main", "w-1", "n" * 20], ["1node", "n" * 21, "Main", "a.b"]),
        (LOGIN_USER, LoginUser, ["learner", "_svc", "u" * 32], ["Learner", "1x", "u" * 33, "root"]),
    ],
)
def test_name_rules(rule, kind, good: list[str], bad: list[str]) -> None:  # type: ignore[no-untyped-def]
    adapter = TypeAdapter(kind)
    for name in good:
        assert adapter.validate_python(name) == name and rule.problem(name) is None
    for name in bad:
        with pytest.raises(ValidationError):
            adapter.validate_python(name)
    assert adapter.json_schema()["pattern"] == f"^{rule.regex}$"
