"""The lab file's `access:` section: what each node offers (terminal, desktop) and its errors."""

from __future__ import annotations

import pytest

from stacklab.errors import LabError
from stacklab.labs import parse_lab
from stacklab.labs.node_access import desktop_of, offers_terminal

HEAD = """schema: 1
id: desk-lab
title: Desk
login_user: learner
local:
  nodes:
    - name: desk
      desktop: true
    - name: plain
"""


def test_declared_desktop_and_default_terminal() -> None:
    lab = parse_lab(HEAD + "access:\n  desk:\n    desktop:\n      protocol: vnc\n")
    desktop = desktop_of(lab.access, "desk")
    assert desktop is not None and (desktop.protocol, desktop.port) == ("vnc", 5901)
    assert desktop_of(lab.access, "plain") is None
    assert offers_terminal(lab.access, "plain") and offers_terminal(lab.access, "desk")


def test_every_problem_is_named_with_its_line() -> None:
    text = HEAD + (
        "access:\n"
        "  desk:\n    desktop:\n      protocol: vnc\n      port: 5999\n"
        "  ghost:\n    terminal: false\n"
        "  plain:\n    desktop:\n      protocol: spice\n      port: 0\n"
    )
    with pytest.raises(LabError) as caught:
        parse_lab(text, source="lab.yaml")
    lines = str(caught.value).splitlines()
    assert (
        "lab.yaml:14: access.desk.desktop.port: the local desktop recipe serves VNC on port 5901, not 5999"
        in lines
    )
    assert any(line.startswith("lab.yaml:15: access.ghost: unknown node 'ghost'") for line in lines)
    assert any("access.ghost: offers nothing to open" in line for line in lines)
    assert any(
        line.startswith("lab.yaml:19: access.plain.desktop.protocol: must be 'vnc' or 'rdp'")
        for line in lines
    )
    assert any(line.startswith("lab.yaml:20: access.plain.desktop.port:") for line in lines)


def test_the_recipe_needs_its_desktop_declared() -> None:
    with pytest.raises(
        LabError, match=r"local.nodes\[0\].desktop: the desktop recipe needs access.desk.desktop"
    ):
        parse_lab(HEAD)


RDP = """schema: 1
id: rdp-lab
title: RDP
login_user: learner
local:
  nodes:
    - name: desk
      desktop: rdp
access:
  desk:
    desktop:
      protocol: rdp
      username: learner
      password_secret: password
"""


def test_an_rdp_desktop_defaults_to_port_3389_and_keeps_its_login() -> None:
    desktop = desktop_of(parse_lab(RDP).access, "desk")
    assert desktop is not None
    assert (desktop.protocol, desktop.port, desktop.username, desktop.password_secret) == (
        "rdp",
        3389,
        "learner",
        "password",
    )
    assert parse_lab(RDP).local is not None and parse_lab(RDP).local.nodes[0].desktop == "rdp"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            ("      username: learner\n", ""),
            "access.desk.desktop: an rdp desktop needs username and password_secret",
        ),
        (("      password_secret: password\n", ""), "an rdp desktop needs username and password_secret"),
        (
            ("username: learner", "username: bob"),
            "access.desk.desktop.username: the local RDP recipe logs in",
        ),
        (
            ("protocol: rdp", "protocol: rdp\n      port: 3390"),
            "the local RDP recipe serves RDP on port 3389",
        ),
        (("protocol: rdp", "protocol: vnc"), "access.desk.desktop.protocol: the local RDP recipe serves rdp"),
        (("desktop: rdp", "desktop: spice"), "local.nodes[0].desktop:"),
        (
            ("access:\n  desk:\n    desktop:", "access:\n  other:\n    desktop:"),
            "the RDP recipe needs access.desk",
        ),
    ],
)
def test_rdp_problems_are_named(change: tuple[str, str], problem: str) -> None:
    with pytest.raises(LabError) as caught:
        parse_lab(RDP.replace(*change), source="lab.yaml")
    assert problem in str(caught.value)


def test_a_vnc_desktop_takes_no_username() -> None:
    text = HEAD + "access:\n  desk:\n    desktop:\n      protocol: vnc\n      username: learner\n"
    with pytest.raises(LabError, match="username is for rdp only"):
        parse_lab(text)
