"""A creator that stops half-way on purpose, so that a test can kill it at a known point of a create.

`park(node, flag)` wraps the local provider's `lxc.start` in this process: the start of `node` touches
`flag` and then waits until the process is killed; every other node starts for real. By then the stack
has its record, its bridge, its other nodes running and the parked node's rootfs mounted: the most
a crashed create can leave behind. Everything else (LXC, mounts, the database) is real.

Run as `python -m tests.support.park NODE FLAG ARGS...`, it is the `stacklab` command with ARGS and the
park in place (for a controller that dies in the middle of a launch).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path


def park(node: str, flag: Path, in_flight: bool = False) -> None:
    """Make this process stop for good just before it starts `node` (of any stack), or, `in_flight`,
    once its `lxc-start` has begun (to be killed together with it, as Ctrl-C or a killed process group
    would)."""
    from stacklab.providers.local import lxc

    real_start = lxc.start

    async def start(root: Path, name: str) -> None:
        if name.endswith(f"-{node}"):
            if in_flight:
                starting = asyncio.get_running_loop().create_task(real_start(root, name))
                while not lxc.monitor_running(root, name) and not starting.done():
                    await asyncio.sleep(0.002)
            flag.touch()
            await asyncio.Event().wait()  # until SIGKILL
        await real_start(root, name)

    lxc.start = start  # type: ignore[assignment]


if __name__ == "__main__":
    park(sys.argv[1], Path(sys.argv[2]))
    from stacklab.cli import main

    main(args=sys.argv[3:], prog_name="stacklab")
