"""Running an author's script (check, solve, hook) on a node, as the login user, with a timeout.

A script without a `#!` line is fed to bash on stdin: it is never written to a path the learner owns.
A script with one runs as its author wrote it, by its interpreter (`#!/usr/bin/env python3`): it is
uploaded, within the same SSH command that runs it, into a fresh directory that `mktemp` names at random
(mode 0700) and that is removed when it ends, so there is no fixed path a learner could prepare, swap or
read back. The node's own `timeout` stops it a little after the service gave up waiting (nothing lingers).
"""

from __future__ import annotations

import math

from stacklab.access.ssh import CommandResult, Target, run
from stacklab.labs.scripts import shebang

SCRIPT_RUNNER = "exec /bin/bash --noprofile --norc -s"
UPLOAD_DIR_TEMPLATE = "${TMPDIR:-/tmp}/stacklab-script.XXXXXXXX"
KILL_GRACE_S = 5
"""How long after the service's timeout the node's `timeout` stops an uploaded script (then kills it)."""


def uploaded_runner(timeout_s: float) -> str:
    """The POSIX shell command that stores stdin as an executable and runs it (exit 125: upload failed)."""
    limit = math.ceil(timeout_s) + KILL_GRACE_S
    return (
        f'd=$(mktemp -d "{UPLOAD_DIR_TEMPLATE}") || exit 125; '
        "trap 'rm -rf \"$d\"' EXIT; "
        'cat > "$d/script" && chmod 0500 "$d/script" || exit 125; '
        f'timeout --kill-after={KILL_GRACE_S} {limit} "$d/script" </dev/null'
    )


def runner_for(script: str, timeout_s: float) -> str:
    """The command that runs `script`: bash on stdin, or its `#!` interpreter on an uploaded copy."""
    return SCRIPT_RUNNER if shebang(script) is None else uploaded_runner(timeout_s)


async def run_script(target: Target, script: str, timeout_s: float) -> CommandResult:
    return await run(target, runner_for(script, timeout_s), stdin=script, timeout_s=timeout_s)
