"""Usage limits on real LXC nodes through the `stacklab` command (every call a new process: the service
restarts between steps): running time equals the intervals of the recorded transitions across a suspend
and a resume, the scheduler's pass pauses the lab at its limit, a resume is then refused with a sentence,
and an operator's grant (audited) lets the learner go on."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.test_lab_lifecycle import Cli

from stacklab.store.database import make_engine
from stacklab.store.operators import audit_entries
from stacklab.store.repository import Repository

pytestmark = pytest.mark.lxc

HOURS = 0.004
"""14.4 s of running time (room for the CLI calls before the deadline on a loaded machine)."""


def _running_intervals(history: list[dict[str, object]], until: float) -> float:
    """The running time the transitions say, summed here independently of store/usage.py."""
    total, began = 0.0, None
    for t in history:
        if t["kind"] != "observed":
            continue
        if t["to"] == "running":
            began = float(t["at"])  # type: ignore[arg-type]
        elif t["from"] == "running" and began is not None:
            total += float(t["at"]) - began  # type: ignore[arg-type]
            began = None
    return total + (until - began if began is not None else 0.0)


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    runner = Cli(tmp_path / "data")
    yield runner
    for record in runner.json("env", "list"):  # type: ignore[union-attr]
        if record["observed"] != "deleted":
            runner.run("env", "delete", record["id"], "--wait", check=False)


def test_time_is_counted_across_suspends_and_restarts_and_enforced(cli: Cli, tmp_path: Path) -> None:
    lab = tmp_path / "limited.yaml"
    lab.write_text(
        textwrap.dedent(
            f"""\
            schema: 1
            id: limited
            title: Limited
            login_user: learner
            local: {{nodes: [{{name: main}}]}}
            checks: [{{name: notes, node: main, script: "test -f ~/notes.txt"}}]
            usage_limit: {{hours: {HOURS}, per: total, policy: block}}
            """
        )
    )
    ref = "c1/limited/ann"
    cli.run("env", "launch", str(lab), "--learner", "ann", "--course", "c1", "--wait")
    cli.exec(ref, "main", "echo notes > ~/notes.txt")
    cli.run("env", "suspend", ref, "--wait")
    time.sleep(1.0)  # paused: not counted
    cli.run("env", "resume", ref, "--wait")
    asked, shown = time.time(), cli.json("env", "usage", ref)
    usage, answered = shown["usage"], time.time()  # type: ignore[index]
    history = cli.json("env", "show", ref)["history"]  # type: ignore[index]
    # The figure is the transitions' (the open interval counted up to when `usage` asked).
    assert _running_intervals(history, asked) <= usage["used_s"] <= _running_intervals(history, answered)
    assert usage["remaining_s"] == pytest.approx(HOURS * 3600 - usage["used_s"])
    # The scheduler's pass after the deadline written in the database pauses the lab.
    deadline = shown["limit_at"]  # type: ignore[index]
    time.sleep(max(0.0, float(deadline) - time.time()) + 0.2)
    for _ in range(20):
        cli.run("reconcile")
        shown = cli.json("env", "show", ref)
        if shown["observed"] == "suspended":  # type: ignore[index]
            break
    reasons = [t["reason"] for t in shown["history"]]  # type: ignore[index]
    assert shown["observed"] == "suspended" and "UsageLimit" in reasons  # type: ignore[index]
    refused = cli.run("env", "resume", ref, check=False)
    assert refused.returncode != 0 and "You have used all" in refused.stderr
    used = cli.json("env", "usage", ref)["usage"]  # type: ignore[index]
    assert used["over"] and used["used_s"] == pytest.approx(
        _running_intervals(shown["history"], 0.0), abs=1e-6
    )  # type: ignore[index]
    # An operator grants time (audited); the learner resumes, their notes as they left them.
    cli.run("env", "grant", ref, "--hours", "1", "--reason", "node was broken on Tuesday")
    assert cli.json("env", "usage", ref)["grants"][0]["reason"] == "node was broken on Tuesday"  # type: ignore[index]
    repo = Repository(make_engine(f"sqlite:///{cli.data_dir / 'stacklab.db'}"))
    (audited,) = [e for e in audit_entries(repo, 10, None, None, None) if e.action == "grant"]
    assert audited.operator.startswith("cli:") and "Tuesday" in audited.detail
    repo.engine.dispose()
    cli.run("env", "resume", ref, "--wait")
    assert cli.exec(ref, "main", "cat ~/notes.txt").strip() == "notes"
