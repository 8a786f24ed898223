"""The RDP bridge's script and what the service makes of its answers (stacklab.access.rdp).

The script runs here under the real bash, as the service runs it on a node (`_command`), with a home of
its own: its checks before anything starts, and `stop` with nothing running. The bridge itself (Xvnc,
xfreerdp, xrdp) is tested on real LXC in tests/e2e/test_rdp.py.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from stacklab.access.rdp import RdpLoginRefused, _command, bridge_socket
from stacklab.access.ssh import CommandResult
from stacklab.errors import AccessError


def run_script(
    home: Path, *args: str, stdin: str = "", path: str = "/usr/bin:/bin"
) -> subprocess.CompletedProcess[str]:
    env = {"HOME": str(home), "PATH": path}
    return subprocess.run(
        ["bash", "-c", _command(*args)], input=stdin, env=env, capture_output=True, text=True, timeout=30
    )


def test_stop_with_no_bridge_running_is_fine(tmp_path: Path) -> None:
    done = run_script(tmp_path, "stop")
    assert (done.returncode, done.stdout.strip()) == (0, "stopped")
    assert oct((tmp_path / ".stacklab" / "rdp").stat().st_mode & 0o777) == "0o700"


def test_open_says_which_package_is_missing(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("Xvnc", "xauth"):  # xfreerdp missing
        (bin_dir / tool).write_text("#!/bin/sh\n")
        os.chmod(bin_dir / tool, 0o755)
    done = run_script(tmp_path, "open", "3389", "learner", stdin="pw\n", path=f"{bin_dir}:/usr/bin:/bin")
    assert done.returncode == 4
    assert done.stdout.strip().startswith("failed xfreerdp is not installed on this node")
    result = CommandResult(done.returncode, done.stdout, done.stderr)
    with pytest.raises(AccessError, match="the RDP bridge failed: xfreerdp is not installed"):
        bridge_socket(result)


def test_open_needs_the_password_on_stdin(tmp_path: Path) -> None:
    done = run_script(tmp_path, "open", "3389", "learner")
    assert (done.returncode, done.stdout.strip()) == (4, "failed no password on stdin")


def test_the_answers() -> None:
    assert bridge_socket(CommandResult(0, "ready /home/l/.stacklab/rdp/3389/vnc.sock\n", "")) == (
        "/home/l/.stacklab/rdp/3389/vnc.sock"
    )
    refused = CommandResult(3, "refused the RDP server on port 3389 refused the login of bob\n", "")
    with pytest.raises(RdpLoginRefused, match="refused the login of bob"):
        bridge_socket(refused)
    with pytest.raises(AccessError, match="did not start within"):
        bridge_socket(CommandResult(124, "", "", timed_out=True))
    with pytest.raises(AccessError, match="bash: oops"):
        bridge_socket(CommandResult(127, "", "bash: oops\n"))
