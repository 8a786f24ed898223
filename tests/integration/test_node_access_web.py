"""What a lab lets each node open, as the service enforces it: the access list the lab page reads, and a
terminal refused on a node whose lab says `terminal: false` (the desktop endpoint admits it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.web_app import bearer, drive, launch, serving

from stacklab.errors import Refused
from stacklab.web.terminal import CLOSE_NOT_FOUND, _admit

LAB = """schema: 1
id: desk-only
title: Desk only
login_user: learner
local:
  nodes:
    - name: desk
      desktop: true
    - name: shell
access:
  desk:
    terminal: false
    desktop:
      protocol: vnc
"""


async def test_a_desktop_only_node_has_no_terminal(tmp_path: Path, sshd_port: int) -> None:
    labs = tmp_path / "labs"
    labs.mkdir()
    (labs / "desk-only.yaml").write_text(LAB)
    async with serving(tmp_path, sshd_port, labs_dir=str(labs)) as (http, stack):
        body = await launch(http, "learner-d", lab="desk-only")
        env_id, token = body["environment"]["id"], body["token"]
        await drive(stack, env_id)
        listed = (await http.get(f"/api/v1/environments/{env_id}/access", headers=bearer(token))).json()
        assert listed == {
            "nodes": [
                {"node": "desk", "terminal": False, "desktop": "vnc"},
                {"node": "shell", "terminal": True, "desktop": None},
            ]
        }
        other = await launch(http, "learner-e", lab="desk-only")
        refused = await http.get(f"/api/v1/environments/{env_id}/access", headers=bearer(other["token"]))
        assert refused.status_code == 403

        ctx = http._transport.app.state.ctx  # type: ignore[attr-defined]
        scope = {"headers": [], "query_string": f"token={token}".encode()}
        with pytest.raises(Refused) as caught:
            _admit(ctx, scope, env_id, "desk")
        assert (caught.value.code, caught.value.message) == (
            CLOSE_NOT_FOUND,
            "node desk offers no terminal (its lab says terminal: false)",
        )
        _admit(ctx, scope, env_id, "desk", terminal=False)  # the desktop endpoint's admission
        _admit(ctx, scope, env_id, "shell")
