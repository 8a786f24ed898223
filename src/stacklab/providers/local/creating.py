"""The `.creating` marker: which process is creating a stack, so that a crashed create is seen at once.

A create writes the marker before it makes anything and removes it when it returns. A SIGKILL (OOM
killer, `kill -9`, a host that reboots the service) leaves it behind together with a half-made stack.
The marker names its creator by host, pid and the pid's start time (`stacklab.procs`), so `status`
can tell a create that is still going on (say "creating", and let it finish) from one whose process
is gone (say so at once, so that the controller creates again and finishes the job), without waiting
for a grace period and without mistaking a reused pid for the creator.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import time
from pathlib import Path

from stacklab.procs import holder_is_dead, process_identity

MARKER = ".creating"


class Creator(enum.Enum):
    """Who is creating a stack, as far as its marker tells."""

    NONE = "none"
    """No marker: no create is under way (or one finished)."""
    ALIVE = "alive"
    """A live process is creating the stack (this one or another)."""
    DEAD = "dead"
    """The process that was creating the stack is gone: the create stopped half-way."""


def mark(stack_dir: Path) -> Path:
    """Record this process as the stack's creator; atomically, so a reader never sees half a marker."""
    marker = stack_dir / MARKER
    tmp = stack_dir / f".creating.{os.getpid()}"
    tmp.write_text(json.dumps({"owner": process_identity(), "pid": os.getpid(), "time": time.time()}))
    tmp.rename(marker)
    return marker


def unmark(marker: Path) -> None:
    with contextlib.suppress(OSError):
        marker.unlink()


def creator(stack_dir: Path) -> Creator:
    """Whether a create of this stack is under way, and whether its process still runs."""
    try:
        info = json.loads((stack_dir / MARKER).read_text())
    except (OSError, ValueError):
        return Creator.NONE
    owner = info.get("owner") if isinstance(info, dict) else None
    if isinstance(owner, str):
        return Creator.DEAD if holder_is_dead(owner) else Creator.ALIVE
    # A marker of an older version names only a pid.
    pid = info.get("pid") if isinstance(info, dict) else None
    return Creator.ALIVE if isinstance(pid, int) and _pid_alive(pid) else Creator.DEAD


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
