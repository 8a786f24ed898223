"""Every problem in a lab file is reported as `FILE:LINE: field: problem`, all at once, never a traceback."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from stacklab.errors import LabError
from stacklab.labs import lab_digest, load_lab, parse_lab

HEADER = """\
schema: 1
id: demo
title: Demo
login_user: learner
"""


def problems(text: str, lab_dir: str | None = None) -> list[str]:
    with pytest.raises(LabError) as info:
        parse_lab(textwrap.dedent(text), source="lab.yaml", lab_dir=lab_dir)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def test_minimal_lab_gets_defaults() -> None:
    lab = parse_lab(HEADER + "local:\n  nodes:\n    - name: main\n")
    assert lab.schema_version == 1
    assert lab.providers[0].name == "local" and lab.providers[0].type == "local"
    assert lab.learner_nodes == ("main",)
    assert lab.score == "best"
    assert lab.local is not None and lab.local.nodes[0].memory_mb == 512
    assert lab.local.nodes[0].pids_max == 1024
    assert lab.timeouts.launch_s == 600 and lab.timeouts.idle_suspend_s == 900
    assert lab.timeouts.delete_after_s == 7 * 86400
    assert lab.checks == () and lab.max_score() == 0
    assert lab.hooks.before_suspend is None


def test_empty_hooks_and_timeouts_mean_defaults() -> None:
    lab = parse_lab(HEADER + "local: {nodes: [{name: main}]}\nhooks:\ntimeouts:\n")
    assert lab.timeouts.launch_s == 600
    assert lab.hooks.after_resume is None


# --- unknown keys -------------------------------------------------------------------------------------------


def test_unknown_top_level_key() -> None:
    assert problems(
        """\
        schema: 1
        id: demo
        title: Demo
        colour: blue
        login_user: learner
        local: {nodes: [{name: main}]}
        """
    ) == [
        "lab.yaml:4: unknown field 'colour' (known: schema, id, title, description, login_user,"
        " learner_nodes, score, providers, local, openstack, checks, hooks, timeouts,"
        " keep_running_while, access, usage_limit, warm)"
    ]


def test_unknown_nested_keys_suggest_the_close_name() -> None:
    assert problems(
        HEADER
        + """\
local:
  nodes:
    - name: main
      memroy_mb: 256
checks:
  - name: c
    node: main
    script: "true"
    timout: 5s
hooks:
  before_suspend: {node: main, script: "true", extra: 1}
"""
    ) == [
        "lab.yaml:8: local.nodes[0]: unknown field 'memroy_mb' (did you mean 'memory_mb'?)",
        "lab.yaml:13: checks[0]: unknown field 'timout' (did you mean 'timeout'?)",
        "lab.yaml:15: hooks.before_suspend: unknown field 'extra' (known: node, script, timeout)",
    ]


def test_python_field_names_are_not_yaml_keys() -> None:
    text = HEADER + "local: {nodes: [{name: main}]}\ntimeouts:\n  launch_s: 60\n"
    assert problems(text) == ["lab.yaml:7: timeouts: unknown field 'launch_s' (did you mean 'launch'?)"]


def test_duplicate_yaml_key() -> None:
    assert problems(HEADER + "title: Again\nlocal: {nodes: [{name: main}]}\n") == [
        "lab.yaml:5: duplicate key 'title' (first at line 3)"
    ]


# --- types and values ---------------------------------------------------------------------------------------


def test_wrong_types_in_human_words() -> None:
    assert problems(
        """\
        schema: "1"
        id: 42
        title: [a, b]
        login_user: learner
        score: highest
        learner_nodes: main
        local:
          nodes:
            - name: main
              memory_mb: lots
              pids_max: true
              packages: git
        checks:
          - name: c
            node: main
            script: "true"
            weight: heavy
            hint: {a: 1}
        """
    ) == [
        "lab.yaml:1: schema: must be a whole number, got the text '1'",
        "lab.yaml:2: id: must be a string, got the number 42",
        "lab.yaml:3: title: must be a string, got a list",
        "lab.yaml:5: score: must be 'best' or 'latest', got the text 'highest'",
        "lab.yaml:6: learner_nodes: must be a list, got the text 'main'",
        "lab.yaml:10: local.nodes[0].memory_mb: must be a whole number, got the text 'lots'",
        "lab.yaml:11: local.nodes[0].pids_max: must be a whole number, got true",
        "lab.yaml:12: local.nodes[0].packages: must be a list, got the text 'git'",
        "lab.yaml:17: checks[0].weight: must be a number, got the text 'heavy'",
        "lab.yaml:18: checks[0].hint: must be a string, got a mapping",
    ]


def test_ranges_and_patterns() -> None:
    assert problems(
        HEADER
        + """\
providers:
  - name: Local
    type: lxc
    capacity: 0
local:
  nodes:
    - name: Main_1
      memory_mb: 10
      pids_max: 1000000
      packages: [git, "rm -rf"]
checks:
  - name: c
    node: main
    script: "  "
    weight: -1
"""
    ) == [
        "lab.yaml:6: providers[0].name: must be a slug (lowercase letters, digits and '-', starting with a"
        " letter or digit, at most 40 characters), got 'Local'",
        "lab.yaml:7: providers[0].type: must be 'local' or 'openstack', got the text 'lxc'",
        "lab.yaml:8: providers[0].capacity: must be greater than 0, got 0",
        "lab.yaml:11: local.nodes[0].name: must be a hostname-safe node name (lowercase letters, digits and"
        " '-', starting with a letter, at most 20 characters), got 'Main_1'",
        "lab.yaml:12: local.nodes[0].memory_mb: must be at least 64, got 10",
        "lab.yaml:13: local.nodes[0].pids_max: must be at most 100000, got 1000000",
        "lab.yaml:14: local.nodes[0].packages[1]: must be a Debian package name such as 'git', got 'rm -rf'",
        "lab.yaml:18: checks[0].script: must not be empty",
        "lab.yaml:19: checks[0].weight: must be at least 0, got -1",
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "id: Hello Lab",
            "lab.yaml:2: id: must be a slug (lowercase letters, digits and '-', starting with a"
            " letter or digit, at most 40 characters), got 'Hello Lab'",
        ),
        (
            "id: " + "a" * 41,
            "lab.yaml:2: id: must be a slug (lowercase letters, digits and '-', starting with"
            " a letter or digit, at most 40 characters), got '" + "a" * 41 + "'",
        ),
        (
            "login_user: root",
            "lab.yaml:4: login_user: must not be root: the learner logs in as an ordinary user (with sudo)",
        ),
        (
            "login_user: Bob",
            "lab.yaml:4: login_user: must be a Linux user name (lowercase letters, digits, '_'"
            " and '-', starting with a letter or '_', at most 32 characters), got 'Bob'",
        ),
        ("schema: 2", "lab.yaml:1: schema: unsupported schema version 2 (this stacklab reads schema 1)"),
        ("title: ''", "lab.yaml:3: title: must not be empty"),
    ],
)
def test_bad_header_fields(line: str, message: str) -> None:
    key = line.split(":")[0]
    text = "".join(line + "\n" if row.startswith(key + ":") else row + "\n" for row in HEADER.splitlines())
    assert problems(text + "local: {nodes: [{name: main}]}\n") == [message]


def test_bad_durations() -> None:
    assert problems(
        HEADER
        + """\
local: {nodes: [{name: main}]}
checks:
  - {name: c, node: main, script: "true", timeout: 5 minutes}
hooks:
  before_delete: {node: main, script: "true", timeout: 0s}
timeouts:
  launch: -1s
  idle_suspend: yes
  delete_after: ""
"""
    ) == [
        "lab.yaml:7: checks[0].timeout: invalid duration '5 minutes': expected something like 30s, 5m, 2h,"
        " 7d, 1h30m, 500ms or a number of seconds",
        "lab.yaml:9: hooks.before_delete.timeout: must be longer than 0s",
        "lab.yaml:11: timeouts.launch: must not be negative, got '-1s'",
        "lab.yaml:12: timeouts.idle_suspend: must be a duration such as 30s, 5m, 2h, 7d, 1h30m, 500ms or a"
        " number of seconds, not a boolean",
        "lab.yaml:13: timeouts.delete_after: must be a duration such as 30s, 5m, 2h, 7d, 1h30m, 500ms or a"
        " number of seconds, got an empty string",
    ]


def test_durations_are_seconds() -> None:
    lab = parse_lab(
        HEADER
        + """\
local: {nodes: [{name: main}]}
checks:
  - {name: c, node: main, script: "true", timeout: 90}
hooks:
  after_resume: {node: main, script: "true"}
timeouts: {launch: 1h30m, idle_suspend: 500ms, delete_after: 2d}
"""
    )
    assert lab.checks[0].timeout_s == 90.0
    assert lab.hooks.after_resume is not None and lab.hooks.after_resume.timeout_s == 60.0
    assert (lab.timeouts.launch_s, lab.timeouts.idle_suspend_s, lab.timeouts.delete_after_s) == (
        5400.0,
        0.5,
        172800.0,
    )


def test_missing_required_fields() -> None:
    assert problems(
        """\
        # a comment
        id: demo
        local:
          nodes:
            - memory_mb: 256
        checks:
          - name: c
            node: main
        openstack: {}
        """
    ) == [
        "lab.yaml:2: schema: required field missing",
        "lab.yaml:2: title: required field missing",
        "lab.yaml:2: login_user: required field missing",
        "lab.yaml:5: local.nodes[0].name: required field missing",
        "lab.yaml:7: checks[0].script: required field missing",
        "lab.yaml:9: openstack.template: required field missing",
        "lab.yaml:9: openstack: section unused: no provider of type openstack",
    ]


def test_parameters_must_be_scalars_with_string_keys() -> None:
    text = (
        HEADER
        + """\
providers: [{name: os, type: openstack, cloud: mycloud}]
openstack:
  template: stack.yaml
  parameters:
    flavor: m1.small
    count: 2
    ratio: 0.5
    debug: false
    nets: [a, b]
    3: three
"""
    )
    assert problems(text) == [
        "lab.yaml:13: openstack.parameters.nets: must be a string, number or boolean, got a list",
        "lab.yaml:14: openstack.parameters: keys must be strings, got the number 3",
    ]


# --- rules across fields ------------------------------------------------------------------------------------


def test_unknown_nodes_everywhere() -> None:
    assert problems(
        HEADER
        + """\
learner_nodes: [deploy, nope]
local:
  nodes:
    - name: deploy
    - name: worker1
checks:
  - name: ok
    node: deploy
    script: "true"
  - name: typo
    node: wrker
    script: "true"
hooks:
  before_suspend: {node: ghost, script: "true"}
"""
    ) == [
        "lab.yaml:5: learner_nodes[1]: unknown node 'nope' (nodes: deploy, worker1)",
        "lab.yaml:15: checks[1].node: unknown node 'wrker' (nodes: deploy, worker1)",
        "lab.yaml:18: hooks.before_suspend.node: unknown node 'ghost' (nodes: deploy, worker1)",
    ]


def test_duplicate_names() -> None:
    assert problems(
        HEADER
        + """\
providers:
  - {name: here, type: local}
  - {name: here, type: local}
local:
  nodes:
    - name: main
    - name: main
checks:
  - {name: c, node: main, script: "true"}
  - {name: c, node: main, script: "true"}
"""
    ) == [
        "lab.yaml:7: providers[1].name: duplicate provider name 'here' (also providers[0])",
        "lab.yaml:11: local.nodes[1].name: duplicate node name 'main'",
        "lab.yaml:14: checks[1].name: duplicate check name 'c' (also checks[0])",
    ]


def test_provider_section_mismatch() -> None:
    assert problems(
        HEADER
        + """\
providers:
  - name: cloud
    type: openstack
  - name: here
    type: local
    cloud: mycloud
local:
  nodes: [{name: main}]
"""
    ) == [
        "lab.yaml:6: providers[0]: an openstack provider needs 'cloud' (the cloud's name in clouds.yaml)",
        "lab.yaml:7: providers[0].type: provider type openstack needs a top-level 'openstack:' section",
        "lab.yaml:10: providers[1].cloud: only openstack providers take a cloud",
    ]


def test_unused_section_and_missing_local_section() -> None:
    assert problems(HEADER + "openstack:\n  template: stack.yaml\n") == [
        "lab.yaml:1: no 'local:' section, but the default provider is local (add one, or list providers)",
        "lab.yaml:5: openstack: section unused: no provider of type openstack",
    ]
    assert problems(
        HEADER
        + "providers: [{name: os, type: openstack, cloud: c}]\n"
        + "openstack: {template: t.yaml}\nlocal: {nodes: []}\n"
    ) == ["lab.yaml:7: local: section unused: no provider of type local"]


def test_node_must_exist_in_every_section_in_use(tmp_path: Path) -> None:
    (tmp_path / "stack.yaml").write_text("heat_template_version: 2018-08-31\n")
    text = (
        HEADER
        + """\
providers:
  - {name: cloud, type: openstack, cloud: mycloud}
  - {name: here, type: local}
openstack:
  template: stack.yaml
  nodes: [deploy]
local:
  nodes: [{name: deploy}, {name: extra}]
checks:
  - {name: c, node: extra, script: "true"}
"""
    )
    assert problems(text, lab_dir=str(tmp_path)) == [
        "lab.yaml:14: checks[0].node: node 'extra' is missing from the openstack section"
        " (nodes in every section: deploy)"
    ]


def test_missing_template_only_checked_with_lab_dir(tmp_path: Path) -> None:
    text = HEADER + "providers: [{name: os, type: openstack, cloud: c}]\nopenstack:\n  template: stack.yaml\n"
    lab = parse_lab(text)
    assert lab.openstack is not None and lab.openstack.nodes == ("main",)
    assert problems(text, lab_dir=str(tmp_path)) == [
        f"lab.yaml:7: openstack.template: template file 'stack.yaml' not found"
        f" (looked for {tmp_path}/stack.yaml)"
    ]
    (tmp_path / "stack.yaml").write_text("heat_template_version: 2018-08-31\n")
    lab = parse_lab(text, lab_dir=str(tmp_path))
    assert lab.template_path() == f"{tmp_path}/stack.yaml"


def test_all_weights_zero_and_empty_lists() -> None:
    assert problems(
        HEADER
        + """\
learner_nodes: []
providers: []
local: {nodes: [{name: main}]}
checks:
  - {name: a, node: main, script: "true", weight: 0}
  - {name: b, node: main, script: "true", weight: 0.0}
"""
    ) == [
        "lab.yaml:5: learner_nodes: must name at least one node (leave it out to allow every node)",
        "lab.yaml:6: providers: must list at least one provider",
        "lab.yaml:8: checks: all check weights are 0: no learner could ever score",
    ]


def test_many_problems_are_all_reported_in_line_order() -> None:
    found = problems(
        """\
        schema: 3
        id: BAD
        title: t
        login_user: root
        local:
          nodes:
            - name: main
              memory_mb: 1
        checks:
          - {name: c, node: nowhere, script: "true", timeout: soon}
        """
    )
    assert found == [
        "lab.yaml:1: schema: unsupported schema version 3 (this stacklab reads schema 1)",
        "lab.yaml:2: id: must be a slug (lowercase letters, digits and '-', starting with a letter or digit,"
        " at most 40 characters), got 'BAD'",
        "lab.yaml:4: login_user: must not be root: the learner logs in as an ordinary user (with sudo)",
        "lab.yaml:8: local.nodes[0].memory_mb: must be at least 64, got 1",
        "lab.yaml:10: checks[0].timeout: invalid duration 'soon': expected something like 30s, 5m, 2h, 7d,"
        " 1h30m, 500ms or a number of seconds",
        "lab.yaml:10: checks[0].node: unknown node 'nowhere' (nodes: main)",
    ]


# --- not a lab at all ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "lab.yaml:1: empty lab file: expected fields such as schema, id, title and login_user"),
        (
            "# only a comment\n",
            "lab.yaml:1: empty lab file: expected fields such as schema, id, title and login_user",
        ),
        ("~\n", "lab.yaml:1: empty lab file: expected fields such as schema, id, title and login_user"),
        (
            "\n- a\n- b\n",
            "lab.yaml:2: a lab file must be a mapping of fields (such as 'id: my-lab'), got a list",
        ),
        (
            "just text\n",
            "lab.yaml:1: a lab file must be a mapping of fields (such as 'id: my-lab'),"
            " got the text 'just text'",
        ),
        (
            "schema: 1\nid: demo\ntitle: [unclosed\n",
            "lab.yaml:4: invalid YAML: expected ',' or ']', but got"
            " '<stream end>' (while parsing a flow sequence at line 3)",
        ),
        (
            "schema: 1\nid: demo\n  title: x\n",
            "lab.yaml:3: invalid YAML: mapping values are not allowed here",
        ),
        (
            "schema: 1\n\tid: x\n",
            "lab.yaml:2: invalid YAML: found character '\\t' that cannot start any token"
            " (while scanning for the next token)",
        ),
        (
            "a: 1\n---\nb: 2\n",
            "lab.yaml:2: invalid YAML: but found another document (expected a single"
            " document in the stream at line 1)",
        ),
        (
            "a: !!python/object:os.system x\n",
            "lab.yaml:1: invalid YAML: could not determine a constructor for"
            " the tag 'tag:yaml.org,2002:python/object:os.system'",
        ),
        ("a: 1\nb: \x07\n", "lab.yaml:2: invalid YAML: character U+0007 is not allowed"),
    ],
)
def test_not_a_lab(text: str, message: str) -> None:
    assert problems(text) == [message]


def test_load_lab_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(HEADER + "local: {nodes: [{name: main}]}\nchecks:\n  - {name: c, node: x, script: s}\n")
    with pytest.raises(LabError) as info:
        load_lab(path)
    assert info.value.problems == [f"{path}:7: checks[0].node: unknown node 'x' (nodes: main)"]


def test_unreadable_file_gives_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(LabError) as info:
        load_lab(missing)
    assert info.value.problems == [f"{missing}: cannot read lab file: No such file or directory"]
    with pytest.raises(LabError) as info:
        load_lab(tmp_path)
    assert info.value.problems == [f"{tmp_path}: cannot read lab file: Is a directory"]
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"schema: 1\nid: \xff\xfe\n")
    with pytest.raises(LabError) as info:
        load_lab(binary)
    assert info.value.problems == [f"{binary}:2: not UTF-8 text (byte 14)"]


def test_lab_digest() -> None:
    assert lab_digest("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert lab_digest(HEADER) != lab_digest(HEADER + "\n")
    assert len(lab_digest("é")) == 64


def test_odd_yaml_shapes() -> None:
    assert problems(HEADER + "local: {nodes: [{name: main, 5: x}]}\n1: one\n") == [
        "lab.yaml:5: local.nodes[0]: field names must be text, got the number 5",
        "lab.yaml:6: field names must be text, got the number 1",
    ]
    assert problems(HEADER + "local:\n") == [
        "lab.yaml:5: local: is empty, but providers of type local need it"
    ]
    assert problems("[" * 5000) == ["lab.yaml:1: invalid YAML: nested too deeply"]
    assert problems(HEADER + "local: {nodes: [{name: main, packages: &p [*p]}]}\n") == [
        "lab.yaml:5: local.nodes[0].packages[0]: must be a string, got a list"
    ]


def test_yaml_merge_keys_work() -> None:
    lab = parse_lab(HEADER + "local:\n  nodes:\n    - <<: {name: main}\n      memory_mb: 128\n")
    assert lab.local is not None and lab.local.nodes[0].name == "main"
    assert lab.local.nodes[0].memory_mb == 128
