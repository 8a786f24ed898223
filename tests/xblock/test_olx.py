"""`<stacklab .../>` OLX: parse, export, round trips and validation (no XBlock runtime needed)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from stacklab_xblock import olx


def test_parse_reads_every_attribute_typed() -> None:
    values = olx.parse_olx(
        '<stacklab url_name="u1" xblock-family="xblock.v1" lab="hello-lab" weight="3" node="main" '
        'read_only="true" background="False" check_label="Grade me" '
        'display_name="Hello"/>'
    )
    assert values == {
        "lab": "hello-lab",
        "weight": 3.0,
        "node": "main",
        "read_only": True,
        "background": False,
        "check_label": "Grade me",
        "display_name": "Hello",
    }


@pytest.mark.parametrize(
    "values",
    [
        {"lab": "hello-lab"},
        {"lab": "hello-lab", "weight": 2.5, "node": "worker1", "read_only": True},
        {"lab": "cluster-lab", "background": True, "check_label": "Prüfen & <go>"},
        {"lab": "x", "weight": 0.0, "display_name": 'A "quoted" lab'},
    ],
)
def test_export_then_parse_round_trips(values: dict) -> None:
    text = olx.export_olx(values, url_name="abc")
    assert ET.fromstring(text).get("url_name") == "abc"
    assert olx.parse_olx(text) == {k: v for k, v in values.items() if v != olx.DEFAULTS[k] or k == "lab"}
    assert olx.export_olx(olx.parse_olx(text), url_name="abc") == text


def test_export_leaves_defaults_out_but_always_names_the_lab() -> None:
    attrs = olx.export_attributes({**olx.DEFAULTS, "lab": "hello-lab", "weight": 3.0})
    assert attrs == {"lab": "hello-lab", "weight": "3"}
    full = olx.export_attributes({**olx.DEFAULTS, "lab": "hello-lab"}, include_defaults=True)
    assert list(full) == list(olx.DEFAULTS)
    assert full["read_only"] == "false" and full["weight"] == "1"


def test_parse_then_export_keeps_the_attributes() -> None:
    text = '<stacklab lab="hello-lab" weight="0.5" node="main" read_only="true" background="true"/>'
    again = ET.fromstring(olx.export_olx(olx.parse_olx(text)))
    assert dict(again.attrib) == dict(ET.fromstring(text).attrib)


def test_a_retired_score_policy_is_a_warning_naming_the_lab_as_the_judge() -> None:
    values, problems = olx.parse_attributes({"lab": "hello-lab", "score_policy": "latest"})
    assert values == {"lab": "hello-lab"}
    assert [(p.level, p.field) for p in problems] == [("warning", "score_policy")]
    assert "lab's own `score`" in problems[0].message


def test_unreadable_values_are_errors_and_unknown_attributes_warnings() -> None:
    values, problems = olx.parse_attributes(
        {"lab": "l", "weight": "heavy", "read_only": "maybe", "colour": "red"}
    )
    assert values == {"lab": "l"}
    assert {(p.level, p.field) for p in problems} == {
        ("error", "weight"),
        ("error", "read_only"),
        ("warning", "colour"),
    }
    with pytest.raises(olx.OlxError, match="weight"):
        olx.parse_olx('<stacklab lab="l" weight="heavy"/>')
    with pytest.raises(olx.OlxError, match="expected <stacklab>"):
        olx.parse_olx('<hastexo lab="l"/>')


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, {("error", "lab")}),
        ({"lab": "  "}, {("error", "lab")}),
        ({"lab": "Not A Slug"}, {("error", "lab")}),
        ({"lab": "hello-lab", "weight": -1.0}, {("error", "weight")}),
        ({"lab": "hello-lab", "weight": float("nan")}, {("error", "weight")}),
        ({"lab": "hello-lab", "weight": "3"}, {("error", "weight")}),
        ({"lab": "hello-lab", "weight": 0.0}, {("warning", "weight")}),
        ({"lab": "hello-lab", "node": "Main Node"}, {("error", "node")}),
        ({"lab": "hello-lab", "check_label": ""}, {("warning", "check_label")}),
        ({"lab": "hello-lab", "check_label": "", "background": True}, set()),
        ({"lab": "hello-lab", "weight": 3.0, "node": "main"}, set()),
    ],
)
def test_validate(values: dict, expected: set) -> None:
    assert {(p.level, p.field) for p in olx.validate(values)} == expected


def test_validate_against_the_labs_the_service_offers() -> None:
    (problem,) = olx.validate({"lab": "helo-lab"}, known_labs=["hello-lab", "cluster-lab"])
    assert problem.field == "lab" and "cluster-lab, hello-lab" in problem.message
    assert olx.validate({"lab": "hello-lab"}, known_labs=["hello-lab"]) == []


@pytest.mark.parametrize(
    ("previous", "new", "policy", "published"),
    [
        (None, 0.0, "best", 0.0),
        (0.5, 0.25, "best", None),
        (0.5, 0.75, "best", 0.75),
        (0.5, 0.5, "best", None),
        (0.5, 0.25, "latest", 0.25),
    ],
)
def test_the_grade_never_goes_down_unless_latest(previous, new, policy, published) -> None:  # type: ignore[no-untyped-def]
    assert olx.grade_to_publish(previous, new, policy) == published


def test_validate_refuses_a_node_the_chosen_lab_does_not_have() -> None:
    nodes = {"pair-lab": ["main", "side"]}
    problems = olx.validate({"lab": "pair-lab", "node": "db"}, ["pair-lab"], nodes)
    assert [(p.level, p.field, p.message) for p in problems] == [
        ("error", "node", "lab 'pair-lab' has no node 'db' (it has: main, side)")
    ]
    assert olx.validate({"lab": "pair-lab", "node": "side"}, ["pair-lab"], nodes) == []


def test_studio_offers_the_nodes_learners_may_open() -> None:
    """A lab whose workers only the lab itself reaches offers its learner nodes; an older service without
    `learner_nodes` offers every node, as before."""
    assert olx.learner_nodes({"nodes": ["deploy", "worker1"], "learner_nodes": ["deploy"]}) == ["deploy"]
    assert olx.learner_nodes({"nodes": ["deploy", "worker1"]}) == ["deploy", "worker1"]
