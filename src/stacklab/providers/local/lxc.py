"""Thin async wrappers over the lxc-* tools, the overlay rootfs and the cgroup v1 freezer of one node."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from stacklab.errors import TransientProviderError

FREEZER_ROOT = Path("/sys/fs/cgroup/freezer")
LXC_CONFIG_DIR = Path("/usr/share/lxc/config")
UID_SHIFT = 100000
ID_RANGE = 65536


async def run(
    *cmd: str, timeout: float = 120, input: bytes | None = None, pass_fds: tuple[int, ...] = ()
) -> tuple[int, str, str]:
    """Run a command; return (exit code, stdout, stderr). A missing binary gives exit code 127."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            pass_fds=pass_fds,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError as e:
        return 127, "", f"{cmd[0]}: not found ({e})"
    try:
        out, err = await asyncio.wait_for(proc.communicate(input), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return 124, "", f"{' '.join(cmd)}: timed out after {timeout:.0f} s"
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


async def run_ok(*cmd: str, timeout: float = 120, what: str | None = None) -> str:
    """Run a command; raise TransientProviderError (naming it, with its stderr) when it fails."""
    rc, out, err = await run(*cmd, timeout=timeout)
    if rc != 0:
        msg = (err or out).strip() or f"exit code {rc}"
        raise TransientProviderError(f"{what or ' '.join(cmd)} failed: {msg}")
    return out


# ----------------------------------------------------------------------------------------------------
# Mounts


def _unescape(field: str) -> str:
    # /proc/mounts escapes space, tab, newline and backslash as octal.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts_under(prefix: Path) -> list[str]:
    """Mount points at or below `prefix`, deepest first."""
    p = str(prefix)
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 1:
                mp = _unescape(parts[1])
                if mp == p or mp.startswith(p.rstrip("/") + "/"):
                    found.append(mp)
    return sorted(found, key=len, reverse=True)


def is_mounted(path: Path) -> bool:
    return str(path) in mounts_under(path)


async def mount_overlay(lower: Path | str, node_dir: Path) -> None:
    rootfs = node_dir / "rootfs"
    if is_mounted(rootfs):
        return
    opts = f"lowerdir={lower},upperdir={node_dir / 'upper'},workdir={node_dir / 'work'}"
    await run_ok("mount", "-t", "overlay", "overlay", "-o", opts, str(rootfs), what=f"mounting {rootfs}")


async def umount_all(path: Path) -> None:
    for mp in mounts_under(path):
        rc, _out, err = await run("umount", mp)
        if rc != 0:
            rc, _out, err2 = await run("umount", "-l", mp)
            if rc != 0:
                raise TransientProviderError(f"umount {mp} failed: {err.strip()} / {err2.strip()}")


# ----------------------------------------------------------------------------------------------------
# Container config


@dataclass(frozen=True)
class NodeConfig:
    name: str  # container name
    hostname: str
    node_dir: Path
    bridge: str
    address: str  # with prefix length, e.g. 10.128.3.10/24
    gateway: str
    memory_mb: int
    pids_max: int
    hwaddr: str


def render_config(c: NodeConfig) -> str:
    return "\n".join(
        [
            "# written by stacklab; do not edit",
            f"lxc.include = {LXC_CONFIG_DIR / 'debian.common.conf'}",
            f"lxc.include = {LXC_CONFIG_DIR / 'debian.userns.conf'}",
            "lxc.arch = linux64",
            f"lxc.uts.name = {c.hostname}",
            f"lxc.rootfs.path = dir:{c.node_dir / 'rootfs'}",
            f"lxc.idmap = u 0 {UID_SHIFT} {ID_RANGE}",
            f"lxc.idmap = g 0 {UID_SHIFT} {ID_RANGE}",
            "lxc.apparmor.profile = unconfined",
            "lxc.tty.max = 0",
            "lxc.net.0.type = veth",
            f"lxc.net.0.link = {c.bridge}",
            "lxc.net.0.flags = up",
            "lxc.net.0.name = eth0",
            f"lxc.net.0.hwaddr = {c.hwaddr}",
            f"lxc.net.0.ipv4.address = {c.address}",
            f"lxc.net.0.ipv4.gateway = {c.gateway}",
            f"lxc.cgroup.memory.limit_in_bytes = {c.memory_mb * 1024 * 1024}",
            f"lxc.cgroup.memory.memsw.limit_in_bytes = {c.memory_mb * 1024 * 1024}"
            if Path("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
            else "# no swap accounting on this host",
            f"lxc.cgroup.pids.max = {c.pids_max}",
            f"lxc.log.file = {c.node_dir / 'lxc.log'}",
            "lxc.log.level = WARN",
            f"lxc.console.logfile = {c.node_dir / 'console.log'}",
            "lxc.console.size = 1MB",
            "lxc.start.auto = 0",
            "",
        ]
    )


# ----------------------------------------------------------------------------------------------------
# Lifecycle


def freezer_dir(name: str) -> Path:
    return FREEZER_ROOT / f"lxc.payload.{name}"


def cgroup_procs(name: str) -> list[int]:
    try:
        text = (freezer_dir(name) / "cgroup.procs").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def is_running(name: str) -> bool:
    """Running = the container's payload cgroup holds processes (cheap; no lxc-info)."""
    return bool(cgroup_procs(name))


def freezer_state(name: str) -> str | None:
    """THAWED, FREEZING, FROZEN, or None when the container has no cgroup."""
    try:
        return (freezer_dir(name) / "freezer.state").read_text().strip()
    except OSError:
        return None


def monitor_running(root: Path, name: str) -> bool:
    """Whether an lxc-start monitor for this container exists (its title names the lxcpath and name)."""
    want = f"[lxc monitor] {root} {name}"
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if cmd.startswith(b"[lxc monitor]") and cmd.rstrip(b"\0 ").decode(errors="replace") == want:
            return True
    return False


async def start(root: Path, name: str) -> None:
    if await is_up(root, name):
        return
    rc, out, err = await run("lxc-start", "-P", str(root), "-n", name, timeout=60)
    if rc != 0 and not await is_up(root, name):
        log = ""
        with contextlib.suppress(OSError):
            log = "\n".join((root / name / "lxc.log").read_text().splitlines()[-8:])
        raise TransientProviderError(
            f"lxc-start {name} failed (exit {rc}): {(err or out).strip()}" + (f"\n{log}" if log else "")
        )


async def is_up(root: Path, name: str, timeout_s: float = 30) -> bool:
    """Whether the container runs, once a start still in flight has ended.

    A create killed during `lxc-start` leaves its monitor starting the container: the container has
    processes before it is up, and the monitor aborts it when it cannot report RUNNING to the dead
    `lxc-start`. So a container whose monitor says STARTING is waited for, not taken as running.
    """
    if not is_running(name) and not monitor_running(root, name):
        return False
    deadline = time.monotonic() + timeout_s
    state = await lxc_state(root, name)
    while state in ("STARTING", "STOPPING", "ABORTING") and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        state = await lxc_state(root, name)
    return state not in ("STOPPED", "STARTING", "STOPPING", "ABORTING") and is_running(name)


async def lxc_state(root: Path, name: str) -> str:
    """The container's state as its monitor reports it (RUNNING, STARTING, FROZEN, ...; STOPPED if none)."""
    rc, out, _err = await run("lxc-info", "-P", str(root), "-n", name, "-s", "-H", timeout=10)
    return out.strip() if rc == 0 and out.strip() else "STOPPED"


async def stop_kill(root: Path, name: str) -> None:
    """Stop the container at once (SIGKILL); thaws first, since a frozen container cannot die."""
    if freezer_state(name) in ("FROZEN", "FREEZING"):
        await set_freezer([name], "THAWED")
    if not is_running(name) and not monitor_running(root, name):
        return
    rc, out, err = await run("lxc-stop", "-P", str(root), "-n", name, "-k", timeout=30)
    if rc != 0 and is_running(name):
        raise TransientProviderError(f"lxc-stop {name} failed (exit {rc}): {(err or out).strip()}")
    # The monitor removes the cgroups right after; wait briefly so that a delete leaves nothing behind.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (freezer_dir(name).exists() or monitor_running(root, name)):
        await asyncio.sleep(0.02)


async def set_freezer(names: list[str], target: str, timeout_s: float = 10) -> None:
    """Write `target` (FROZEN / THAWED) into each container's freezer and wait until all report it."""
    for n in names:
        try:
            (freezer_dir(n) / "freezer.state").write_text(target)
        except OSError as e:
            raise TransientProviderError(f"cannot write {target} to the freezer of {n}: {e}") from e
    deadline = time.monotonic() + timeout_s
    pending = list(names)
    while pending:
        pending = [n for n in pending if freezer_state(n) != target]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TransientProviderError(
                f"freezer did not reach {target} within {timeout_s:.0f} s for: {', '.join(pending)}"
            )
        for n in pending:
            # Re-writing FROZEN retries a freeze that a forking process interrupted.
            with contextlib.suppress(OSError):
                (freezer_dir(n) / "freezer.state").write_text(target)
        await asyncio.sleep(0.002)


def cpu_usage_ns(name: str) -> int | None:
    try:
        return int(Path(f"/sys/fs/cgroup/cpuacct/lxc.payload.{name}/cpuacct.usage").read_text())
    except (OSError, ValueError):
        return None
