"""A course written for hastexo-xblock, unchanged: its export (every element hastexo documents) is imported
and the lab is launched on the real Heat of the harness, whose template hands out a real LXC node (as in
test_heat_to_lxc). The template gets hastexo's `run`, the unit's timeouts and the provider's environment file
carry over, its tests run by their own interpreters, and its hook script runs on suspend, resume and delete.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from stacklab_xblock import olx
from stacklab_xblock.hastexo_export import import_export
from tests.openstack import test_heat_to_lxc as heat_to_lxc
from tests.openstack.test_heat_to_lxc import LOGIN, Node
from tests.support.heat_harness import heat_clouds as heat_clouds

from stacklab.labs import load_lab
from stacklab.types import Desired, Observed
from stacklab.wiring import App

pytestmark = [
    pytest.mark.openstack,
    pytest.mark.lxc,
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:openstack"),
]

COURSE = "course-v1:Org+Intro+2026_T1"
app = heat_to_lxc.app  # the engine on the harness's clouds
lxc_node = heat_to_lxc.lxc_node  # a real LXC node with a login key

UNIT = """\
<hastexo display_name="Intro lab" weight="3" stack_user_name="{login}" stack_protocol="ssh"
    stack_template_path="hot_lab.yaml" stack_key_type="" launch_timeout="180" suspend_timeout="600"
    delete_age="86400" hook_script="hooks/lab.sh" read_only="false" hidden="false" enable_fullscreen="inherit"
    progress_check_label="Check my lab" show_feedback="true" show_hints_on_error="true"
    progress_check_result_heading="Your results">
  <provider name="heatbox" capacity="5" template="hot_lab.yaml" environment="env.yaml"/>
  <provider name="retired" capacity="0"/>
  <port name="server" number="22"/>
  <port name="web" number="8080"/>
  <test><![CDATA[#!/bin/sh
test "$(cat ~/answer.txt 2>/dev/null)" = 42 || { echo "write 42 into ~/answer.txt" >&2; exit 1; }
]]></test>
  <test><![CDATA[#!/usr/bin/perl
exit(-e "$ENV{HOME}/answer.txt" && $0 =~ m{/stacklab-script\\.} ? 0 : 1);
]]></test>
  <test><![CDATA[[[ -n "$BASH_VERSION" ]] && test -d ~]]></test>
  <hook_events suspend="true" resume="true" delete="true"/>
  <html><p>Write 42 into ~/answer.txt.</p></html>
  <video youtube_id_1_0="abc"/>
  <pdf url="/static/handout.pdf"/>
  <markdown>Good luck</markdown>
</hastexo>
"""

# hastexo's contract: `run` in, `public_ip` and `private_key` out, and the optional `reboot_on_resume`.
TEMPLATE = heat_to_lxc.TEMPLATE.replace(
    "  run: {value: {get_param: run}}\n",
    "  reboot_on_resume: {value: []}\n  course_run: {value: {get_param: run}}\n",
)

HOOK = '#!/bin/sh\necho "$1" >> "$HOME/hook-events"\n'


def course_export(root: Path, node: Node) -> Path:
    course = root / "course"
    for folder in ("hastexo", "static/hooks"):
        (course / folder).mkdir(parents=True)
    (course / "course.xml").write_text('<course url_name="2026_T1" org="Org" course="Intro"/>')
    (course / "hastexo" / "intro_lab.xml").write_text(UNIT.replace("{login}", LOGIN))
    (course / "static" / "hot_lab.yaml").write_text(TEMPLATE)
    environment = {"parameters": {"node_address": node.address, "node_key": node.private_key}}
    (course / "static" / "env.yaml").write_text(json.dumps(environment))  # JSON is YAML
    (course / "static" / "hooks" / "lab.sh").write_text(HOOK)
    return root


async def drive_to(app: App, env_id: str, desired: Desired | None, observed: Observed) -> None:
    if desired is not None:
        app.environments.request(env_id, desired, "test")
    done = await app.environments.drive(env_id, timeout_s=120)
    assert done.observed == observed, (done.observed, done.last_reason, done.last_error)


async def test_a_hastexo_export_imported_and_launched(app: App, lxc_node: Node, tmp_path: Path) -> None:
    out = tmp_path / "labs"
    (line,) = import_export(course_export(tmp_path / "export", lxc_node), out)
    assert line.startswith("hastexo/intro_lab.xml -> ")
    folder = out / "intro-lab"
    report = (folder / "report.txt").read_text()
    for dropped in ("retired", "8080", "enable_fullscreen", "show_feedback", "html, video, pdf, markdown"):
        assert dropped in report, dropped
    assert olx.parse_olx((folder / "unit.xml").read_text()) == {
        "lab": "intro-lab",
        "display_name": "Intro lab",
        "weight": 3.0,
        "check_label": "Check my lab",
    }
    lab = load_lab(folder / "lab.yaml")
    assert (lab.timeouts.launch_s, lab.timeouts.idle_suspend_s, lab.timeouts.delete_after_s) == (
        180,
        600,
        86400,
    )

    env_id = app.environments.launch(folder / "lab.yaml", "ann", COURSE).id
    deleted = False
    try:
        await drive_to(app, env_id, None, Observed.RUNNING)
        done = app.repo.get(env_id)
        assert done.nodes == {"main": {"host": lxc_node.address, "port": 22}}
        assert done.outputs["course_run"] == "2026_T1"  # hastexo's `run`: the course run

        before = await app.environments.check(env_id)
        assert [r.passed for r in before.results] == [False, False, True]
        assert "write 42" in before.results[0].output  # the test's stderr, as hastexo showed it
        assert (await app.environments.exec(env_id, "echo 42 > ~/answer.txt")).exit_status == 0
        after = await app.environments.check(env_id)
        assert (after.score, after.max_score) == (3, 3), [r.to_json() for r in after.results]

        await drive_to(app, env_id, Desired.SUSPENDED, Observed.SUSPENDED)
        await drive_to(app, env_id, Desired.RUNNING, Observed.RUNNING)
        events = await app.environments.exec(env_id, "cat ~/hook-events")
        assert events.stdout.split() == ["suspend", "resume"]

        await drive_to(app, env_id, Desired.DELETED, Observed.DELETED)
        deleted = True
    finally:
        if not deleted:
            with contextlib.suppress(Exception):
                await drive_to(app, env_id, Desired.DELETED, Observed.DELETED)
