"""The labs in examples/ load cleanly, and the deliberately bad ones report exactly what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from stacklab.errors import LabError
from stacklab.labs import load_lab

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_hello() -> None:
    lab = load_lab(EXAMPLES / "hello.yaml")
    assert lab.id == "hello-lab"
    assert lab.login_user == "learner"
    assert lab.all_node_names() == ("main",)
    assert lab.learner_nodes == ("main",)
    assert [(c.name, c.node, c.weight) for c in lab.checks] == [
        ("hello-file", "main", 2),
        ("user-alice", "main", 1),
    ]
    assert all(c.hint for c in lab.checks)
    assert lab.max_score() == 3
    assert lab.lab_dir == str(EXAMPLES)


def test_cluster() -> None:
    lab = load_lab(EXAMPLES / "cluster.yaml")
    assert lab.id == "cluster-lab"
    assert lab.all_node_names() == ("deploy", "worker1", "worker2")
    assert lab.learner_nodes == ("deploy",)
    assert {c.name: c.node for c in lab.checks} == {
        "known-hosts": "deploy",
        "worker1-version": "worker1",
        "worker2-version": "worker2",
    }
    assert lab.max_score() == 5
    assert lab.hooks.before_suspend is not None and lab.hooks.before_suspend.node == "deploy"
    assert lab.hooks.after_resume is not None and lab.hooks.after_resume.timeout_s == 60
    assert lab.hooks.before_delete is None
    assert lab.local is not None
    workers = [node for node in lab.local.nodes if node.name.startswith("worker")]
    assert all(node.setup and "useradd" in node.setup for node in workers)
    assert lab.provider("local").capacity == 10
    assert all(check.solve for check in lab.checks)  # `stacklab lab test` proves them


def test_readme_describes_every_example() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    for path in sorted(EXAMPLES.glob("*.yaml")) + sorted((EXAMPLES / "bad").glob("*.yaml")):
        assert str(path.relative_to(EXAMPLES)) in readme


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("unknown-node.yaml", [":15: checks[1].node: unknown node 'wrker' (nodes: deploy, worker1)"]),
        (
            "missing-template.yaml",
            [
                ":11: openstack.template: template file 'no-such-stack.yaml' not found"
                " (looked for {dir}/no-such-stack.yaml)"
            ],
        ),
        (
            "many-problems.yaml",
            [
                ":3: id: must be a slug (lowercase letters, digits and '-', starting with a letter or digit,"
                " at most 40 characters), got 'Many_Problems'",
                ":5: login_user: must not be root: the learner logs in as an ordinary user (with sudo)",
                ":6: unknown field 'colour' (known: schema, id, title, description, login_user,"
                " learner_nodes, score, providers, local, openstack, checks, hooks, timeouts,"
                " keep_running_while, access, usage_limit, warm)",
                ":10: local.nodes[0].memory_mb: must be a whole number, got the text 'lots'",
                ":11: local.nodes[1].name: duplicate node name 'main'",
                ":16: checks[0].timeout: invalid duration '5 minutes': expected something like 30s, 5m,"
                " 2h, 7d, 1h30m, 500ms or a number of seconds",
                ":17: checks[1].name: duplicate check name 'first' (also checks[0])",
                ":18: checks[1].node: unknown node 'mian' (nodes: main)",
                ":20: checks[1]: unknown field 'hnit' (did you mean 'hint'?)",
                ":22: timeouts.launch: must not be negative, got '-1s'",
            ],
        ),
    ],
)
def test_bad_examples(name: str, expected: list[str]) -> None:
    path = EXAMPLES / "bad" / name
    with pytest.raises(LabError) as info:
        load_lab(path)
    assert info.value.problems == [f"{path}{line.format(dir=path.parent)}" for line in expected]
