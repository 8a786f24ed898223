"""Running an author's script on a node: sent over SSH's stdin, never written to a path the learner owns."""

from __future__ import annotations

from stacklab.access.ssh import CommandResult, Target, run

SCRIPT_RUNNER = "exec /bin/bash --noprofile --norc -s"


async def run_script(target: Target, script: str, timeout_s: float) -> CommandResult:
    return await run(target, SCRIPT_RUNNER, stdin=script, timeout_s=timeout_s)
