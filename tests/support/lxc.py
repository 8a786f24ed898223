"""What the LXC tests need from the host (checked with a message that says what is missing), and LXC nodes
of their own for tests that drive them from outside the service (Ansible roles)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")
IMAGE_DIR = os.environ.get("STACKLAB_IMAGE_DIR", "/var/lib/stacklab/images")


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


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on a private loop (module fixtures must not touch a test's event loop)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def wait_ssh(ip: str, timeout_s: float = 180) -> None:
    """Until the node's sshd sends its banner."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((ip, 22), timeout=1) as s:
                s.settimeout(2)
                if s.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"no SSH banner from {ip} within {timeout_s} s")


@contextlib.contextmanager
def lxc_nodes(name: str, login: str, nodes: tuple[Any, ...]) -> Iterator[tuple[dict[str, str], Path]]:
    """Stack `name` of LXC `nodes` (NodeSpecs) on a provider root of its own, with a fresh key for `login`;
    yields (node -> address, the private key file) once every node answers SSH; deleted, root and all, at
    the end, even on failure."""
    import asyncssh

    from stacklab.providers.base import StackRequest
    from stacklab.providers.local import LocalProvider
    from stacklab.providers.local.image import ensure_base_image

    require_lxc()
    run_sync(ensure_base_image(IMAGE_DIR, progress=lambda msg: print(f"[image] {msg}", flush=True)))
    root = Path(tempfile.mkdtemp(prefix=f"stacklab-lxc-{name}-", dir="/var/tmp"))
    root.chmod(0o755)
    provider = LocalProvider(f"local-{name}", {"root_dir": str(root), "image_dir": IMAGE_DIR})
    key = asyncssh.generate_private_key("ssh-ed25519")
    key_file = root / "id_ed25519"
    key_file.write_bytes(key.export_private_key())
    key_file.chmod(0o600)
    request = StackRequest(
        name=name, login_user=login, public_key=key.export_public_key().decode(), nodes=nodes
    )
    try:
        handle = run_sync(provider.create(request))
        addresses = {spec.name: handle["nodes"][spec.name] for spec in nodes}
        for address in addresses.values():
            wait_ssh(address)
        yield addresses, key_file
    finally:
        run_sync(provider.delete({"name": name}))
        shutil.rmtree(root, ignore_errors=True)


def sweep_stacks(root: Path) -> None:
    """Delete every stack left under an LXC root dir (after a failed or unfinished delete)."""
    if not root.exists():
        return
    from stacklab.providers.local import LocalProvider

    provider = LocalProvider("sweep", {"root_dir": str(root), "image_dir": IMAGE_DIR})

    async def sweep() -> None:
        for name in await provider.list():
            await provider.delete({"name": name})

    run_sync(sweep())
