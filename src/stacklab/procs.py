"""Who a process is: host, pid and the pid's start time, so that a crashed holder is told from a live one.

The store's leases and the local provider's "create in progress" marker both name their holder this way.
A pid alone is not enough: after a crash the kernel may give the same pid to an unrelated process, but
not with the same start time (in clock ticks since boot, from /proc/<pid>/stat).
"""

from __future__ import annotations

import os
import socket


def process_identity() -> str:
    """Who holds a lease: host, pid and the pid's start time (so a reused pid is not mistaken)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def _start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def holder_is_dead(owner: str) -> bool:
    """True when a lease holder on this host is no longer running (it crashed or was killed).

    A holder on another host, or an identity that cannot be read, counts as alive: we cannot know.
    """
    host, pid, started = ([*owner.split(":"), "", "", ""])[:3]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return _start_time(int(pid)) != started
