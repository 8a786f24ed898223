"""What the LXC tests need from the host, checked once with a message that says what is missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def lxc_missing() -> str | None:
    """Why LXC nodes cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("lxc-start", "debootstrap", "newuidmap", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not Path("/sys/fs/cgroup/freezer").is_dir():
        return "no cgroup v1 freezer"
    return None


def require_lxc() -> None:
    """Fail (not skip: a skip would hide a missing feature) when LXC cannot run here."""
    reason = lxc_missing()
    if reason:
        pytest.fail(f"LXC tests cannot run here: {reason} (scripts/dev test sets the host up)")
