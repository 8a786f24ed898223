"""RDP desktops of lab nodes: a bridge on the node turns the RDP server's screen into a VNC one.

No browser RDP client can be built from Debian, PyPI and npm packages alone (docs/desktops.md), so the
node does the translation with Debian's own pieces: a private Xvnc display with FreeRDP's X11 client
(`xfreerdp`) full-screen on it, logged in to the RDP server on the node's 127.0.0.1. The service then
relays that Xvnc exactly as it relays a VNC desktop (`stacklab.access.desktop`), so the browser uses the
same noVNC tab, the same tokens, and a watcher's input is dropped the same way.

The bridge is a shell script (`rdp_bridge.sh`) the service sends over the node's SSH connection as the
login user; nothing is installed for it beyond the packages (tigervnc-standalone-server, freerdp2-x11,
xauth). The RDP password travels on that command's stdin and on to xfreerdp's (`/from-stdin:force`): it
is on no command line and in no file on the node. The bridge's VNC server listens on a unix socket that
only the login user may open (no TCP port), which the service reaches through a `direct-streamlocal`
channel. A running bridge is reused by the next open (a reconnect, a watcher); the controller stops the
bridges before a pause and after a resume (`stop_bridges`), so that a resumed lab starts a fresh RDP
connection instead of one the server may have dropped while the node was frozen.
"""

from __future__ import annotations

import shlex
from importlib import resources

from stacklab.access.ssh import CommandResult, Target, run
from stacklab.errors import AccessError

SCRIPT = resources.files("stacklab.access").joinpath("rdp_bridge.sh").read_text()
OPEN_TIMEOUT_S = 45.0  # the login wait (6 s), Xvnc's start, and a lock held by a concurrent open


class RdpLoginRefused(AccessError):
    """The RDP server refused the lab's login (user name or password): retrying will not help."""


def _command(*args: str) -> str:
    """The bridge script as one command for the login user's shell (the script is no secret)."""
    quoted = " ".join(shlex.quote(a) for a in args)
    script = f"export STACKLAB_RDP_BRIDGE={shlex.quote(SCRIPT)}; "
    return script + f'exec bash -c "$STACKLAB_RDP_BRIDGE" rdp-bridge {quoted}'


async def open_bridge(
    target: Target, port: int, username: str, password: str, connect_timeout_s: float
) -> str:
    """Make sure a bridge to the RDP server on the node's `port` runs, logged in as `username`; returns
    the path of its VNC socket on the node. RdpLoginRefused for a refused login, AccessError otherwise."""
    result = await run(
        target,
        _command("open", str(port), username),
        stdin=password + "\n",
        timeout_s=OPEN_TIMEOUT_S,
        connect_timeout_s=connect_timeout_s,
    )
    return bridge_socket(result)


def bridge_socket(result: CommandResult) -> str:
    """The socket path the bridge script's `open` printed, or its failure as an exception."""
    lines = result.stdout.strip().splitlines()
    word, _, rest = (lines[-1] if lines else "").partition(" ")
    if result.exit_status == 0 and word == "ready" and rest.startswith("/"):
        return rest
    if word == "refused":
        raise RdpLoginRefused(rest)
    if result.timed_out:
        raise AccessError(f"the RDP bridge did not start within {OPEN_TIMEOUT_S:g} s")
    detail = rest if word == "failed" else (result.stderr.strip() or result.stdout.strip())[-300:]
    raise AccessError(f"the RDP bridge failed: {detail}")


async def stop_bridges(target: Target, connect_timeout_s: float) -> None:
    """End every RDP bridge of the login user on the node (none running is fine)."""
    result = await run(target, _command("stop"), timeout_s=20, connect_timeout_s=connect_timeout_s)
    if result.exit_status != 0:
        raise AccessError(
            f"stopping the RDP bridges failed: {(result.stderr or result.stdout).strip()[-300:]}"
        )
