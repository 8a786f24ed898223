"""The shared base image: a debootstrapped Debian bookworm, owners shifted for unprivileged LXC.

Every node's rootfs is an overlay over this tree, so it is built once per recipe version and never modified.
The build runs in a temporary dir next to the final one and is renamed into place at the end, under a
file lock, so concurrent callers wait for one build and a killed build never leaves a half image behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import struct
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from stacklab.errors import TerminalProviderError, TransientProviderError

from .lxc import run

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
PACKAGES = (
    "openssh-server",
    "systemd-sysv",
    "dbus",
    "iproute2",
    "iputils-ping",
    "procps",
    "less",
    "nano",
    "sudo",
    "ca-certificates",
)
UID_SHIFT = 100000
ID_RANGE = 65536
# Units that cost time or CPU in a lab node and do nothing useful there.
MASKED_UNITS = (
    "apt-daily.service",
    "apt-daily.timer",
    "apt-daily-upgrade.service",
    "apt-daily-upgrade.timer",
    "fstrim.service",
    "fstrim.timer",
    "e2scrub_all.service",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "systemd-pstore.service",
    "man-db.timer",
    "man-db.service",
    "dpkg-db-backup.timer",
    "dpkg-db-backup.service",
    "logrotate.timer",
    "systemd-journald-audit.socket",
    "systemd-udevd.service",
    "systemd-udev-trigger.service",
    "systemd-udev-settle.service",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-kernel-config.mount",
    "dev-hugepages.mount",
    "dev-mqueue.mount",
    "modprobe@.service",
    "kmod-static-nodes.service",
    "systemd-modules-load.service",
    "systemd-remount-fs.service",
    "systemd-hwdb-update.service",
    "getty-static.service",
)
RECIPE_REVISION = 1  # bump when the build steps below change meaning
FILES_DIR = Path(__file__).with_name("files")
STAMP_FILE = "stacklab-image.json"
FIRSTBOOT_UNITS = ("stacklab-firstboot.service", "stacklab-setup.service")
IMAGE_PREFIX = f"debian-{SUITE}-"

Progress = Callable[[str], None]


def recipe_version() -> str:
    """A short hash of everything that shapes the image; a changed recipe gives a new image dir."""
    h = hashlib.sha256()
    h.update(repr((RECIPE_REVISION, SUITE, PACKAGES, MASKED_UNITS, UID_SHIFT)).encode())
    for f in sorted(FILES_DIR.iterdir()):
        if f.is_file():
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


def image_path(image_dir: str | os.PathLike[str]) -> Path:
    """Where the image of the current recipe lives (it may not be built yet)."""
    return Path(image_dir) / f"{IMAGE_PREFIX}{recipe_version()}"


def image_ready(path: Path) -> bool:
    return (path / STAMP_FILE).is_file() and (path / "rootfs" / "sbin" / "init").exists()


# ----------------------------------------------------------------------------------------------------
# Old images: a changed recipe builds a new image dir; the old ones stay as long as a stack boots from them.


@dataclass(frozen=True)
class ImageUse:
    path: Path
    current: bool  # the image of this code's recipe
    users: tuple[str, ...]  # why it is in use: mounted overlays, stacks recorded on it


def _overlay_lowers(mounts: str) -> dict[Path, list[str]]:
    """Image dirs under live overlay mounts (`lowerdir=<image>/rootfs`), with their mount points."""
    lowers: dict[Path, list[str]] = {}
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[2] != "overlay":
            continue
        for option in fields[3].split(","):
            if option.startswith("lowerdir="):
                for lower in option.removeprefix("lowerdir=").split(":"):  # a desktop layer, then the base
                    lowers.setdefault(Path(lower).parent, []).append(fields[1])
    return lowers


def image_uses(image_dir: str | os.PathLike[str], roots: list[Path]) -> list[ImageUse]:
    """Every image under `image_dir` and what uses it: overlays mounted anywhere on the host, and stacks
    recorded (`<root>/<stack>/stack.json`) under the given provider roots (a stopped stack boots again
    from the image it was made on)."""
    base = Path(image_dir)
    users: dict[Path, list[str]] = {}
    mounts = Path("/proc/mounts").read_text() if Path("/proc/mounts").exists() else ""
    for lower, points in _overlay_lowers(mounts).items():
        users.setdefault(lower, []).extend(f"mounted at {point}" for point in points)
    for root in roots:
        for record in sorted(root.glob("*/stack.json")):
            try:
                image = json.loads(record.read_text()).get("image")
            except (OSError, ValueError):
                continue
            if image:
                users.setdefault(Path(image), []).append(f"stack {record.parent.name} under {root}")
    current = image_path(base)
    dirs = sorted(d for d in base.glob(f"{IMAGE_PREFIX}*") if d.is_dir()) if base.is_dir() else []
    return [ImageUse(d, d == current, tuple(users.get(d, ()))) for d in dirs]


async def prune_images(image_dir: str | os.PathLike[str], roots: list[Path], dry_run: bool) -> list[Path]:
    """Remove images that are neither current nor in use (under the build lock, so a build in progress is
    left alone); returns them."""

    def unused() -> list[Path]:
        return [use.path for use in image_uses(image_dir, roots) if not use.current and not use.users]

    if dry_run:
        return unused()
    async with file_lock(Path(image_dir) / ".build.lock"):
        doomed = unused()
        for path in doomed:
            await _remove_tree(path)
    return doomed


# ----------------------------------------------------------------------------------------------------
# Mirror discovery: only the mirror the host is configured with is reachable.


def _apt_entries(sources_dir: Path = Path("/etc/apt")) -> list[tuple[str, list[str]]]:
    """(uri, suites) of every enabled `deb` entry in the host's apt sources (one-line and deb822 formats)."""
    entries: list[tuple[str, list[str]]] = []
    one_line = [sources_dir / "sources.list", *sorted((sources_dir / "sources.list.d").glob("*.list"))]
    for f in one_line:
        with contextlib.suppress(OSError):
            for line in f.read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                if not line.startswith("deb "):
                    continue
                line = re.sub(r"\[[^\]]*\]", " ", line)
                parts = line.split()
                if len(parts) >= 3:
                    entries.append((parts[1], [parts[2]]))
    for f in sorted((sources_dir / "sources.list.d").glob("*.sources")):
        with contextlib.suppress(OSError):
            for para in re.split(r"\n\s*\n", f.read_text()):
                fields: dict[str, str] = {}
                for line in para.splitlines():
                    if line.startswith("#") or ":" not in line or line[:1].isspace():
                        continue
                    k, v = line.split(":", 1)
                    fields[k.strip().lower()] = v.strip()
                if "deb" not in fields.get("types", "").split():
                    continue
                if fields.get("enabled", "yes").lower() == "no":
                    continue
                for uri in fields.get("uris", "").split():
                    entries.append((uri, fields.get("suites", "").split()))
    return entries


def host_mirrors(sources_dir: Path = Path("/etc/apt")) -> tuple[str, str | None]:
    """The Debian mirror and security mirror the host uses for bookworm."""
    main = security = None
    for uri, suites in _apt_entries(sources_dir):
        if main is None and SUITE in suites:
            main = uri
        if security is None and f"{SUITE}-security" in suites:
            security = uri
    return (main or DEFAULT_MIRROR).rstrip("/"), (security.rstrip("/") if security else None)


# ----------------------------------------------------------------------------------------------------
# Locking


@contextlib.asynccontextmanager
async def file_lock(path: Path, poll_s: float = 0.2) -> AsyncIterator[int]:
    """An exclusive flock on `path`, waited for without blocking the event loop; yields the lock's fd."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(poll_s)
        yield fd
    finally:
        os.close(fd)  # closing releases the lock


# ----------------------------------------------------------------------------------------------------
# Build


async def ensure_base_image(image_dir: str | os.PathLike[str], progress: Progress | None = None) -> Path:
    """The base image of the current recipe, built on demand (once, even with concurrent callers)."""
    path = image_path(image_dir)
    if image_ready(path):
        return path
    return await build_base_image(image_dir, force=False, progress=progress)


async def build_base_image(
    image_dir: str | os.PathLike[str], force: bool = False, progress: Progress | None = None
) -> Path:
    """Build the base image (unless an up-to-date one exists and not `force`); return its dir.

    The dir holds `rootfs/` (the tree nodes overlay) and `stacklab-image.json` (the recipe stamp).
    """
    image_dir = Path(image_dir)
    image_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(image_dir, os.stat(image_dir).st_mode | 0o055)
    final = image_path(image_dir)
    say = progress or (lambda _msg: None)
    async with file_lock(image_dir / ".build.lock") as lock_fd:
        if image_ready(final) and not force:
            return final
        # We hold the lock: any temp dir left is from a killed build.
        for stale in image_dir.glob(".tmp-*"):
            await _remove_tree(stale)
        tmp = image_dir / f".tmp-{final.name}-{os.getpid()}"
        try:
            started = time.monotonic()
            await _build_into(tmp, say, lock_fd)
            if final.exists():
                # force: move the old image aside; nodes still using it keep their (now renamed) lower dir
                # only until restart, so only do this when nothing runs on it.
                old = image_dir / f".old-{final.name}-{int(time.time())}"
                final.rename(old)
                await _remove_tree(old)
            tmp.rename(final)
            say(f"base image ready in {time.monotonic() - started:.0f} s: {final}")
        except BaseException:
            await _remove_tree(tmp)
            raise
    return final


async def _build_into(tmp: Path, say: Progress, lock_fd: int) -> None:
    if shutil.which("debootstrap") is None:
        raise TerminalProviderError("debootstrap is not installed (apt-get install debootstrap)")
    rootfs = tmp / "rootfs"
    tmp.mkdir(parents=True)
    mirror, security = host_mirrors()
    say(f"debootstrap {SUITE} from {mirror} (about a minute)")
    rc, out, err = await run(
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(rootfs),
        mirror,
        timeout=900,
        # debootstrap inherits the lock: if we are killed, the next builder waits for it to end before
        # removing its half-built tree.
        pass_fds=(lock_fd,),
    )
    await _umount_under(tmp)
    if rc != 0:
        tail = "\n".join((out + err).strip().splitlines()[-15:])
        raise TransientProviderError(f"debootstrap of the base image failed (exit {rc}):\n{tail}")
    say("configuring the image")
    _configure(rootfs, mirror, security)
    say("shifting owners for unprivileged containers")
    shift_owners(rootfs, UID_SHIFT)
    stamp = {
        "version": recipe_version(),
        "suite": SUITE,
        "mirror": mirror,
        "packages": list(PACKAGES),
        "uid_shift": UID_SHIFT,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (tmp / STAMP_FILE).write_text(json.dumps(stamp, indent=2) + "\n")
    os.chmod(tmp, 0o755)


def _configure(rootfs: Path, mirror: str, security: str | None) -> None:
    etc = rootfs / "etc"
    # apt sources: the host's mirrors (the only ones reachable); no lists: `apt-get update` fetches them.
    lines = [f"deb {mirror} {SUITE} main", f"deb {mirror} {SUITE}-updates main"]
    if security:
        lines.append(f"deb {security} {SUITE}-security main")
    (etc / "apt" / "sources.list").write_text("\n".join(lines) + "\n")
    (etc / "apt" / "apt.conf.d" / "90stacklab").write_text(
        'APT::Install-Recommends "false";\nAcquire::Retries "3";\n'
    )
    # No shared identity: host keys and machine-id are made per node at first start.
    for key in (etc / "ssh").glob("ssh_host_*"):
        key.unlink()
    (etc / "machine-id").write_text("")
    dbus_id = rootfs / "var" / "lib" / "dbus" / "machine-id"
    if dbus_id.exists() or dbus_id.is_symlink():
        dbus_id.unlink()
    dbus_id.symlink_to("/etc/machine-id")
    dropin = etc / "systemd" / "system" / "ssh.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FILES_DIR / "ssh-hostkeys.conf", dropin / "stacklab-hostkeys.conf")
    # Mask units that waste time in a container.
    system = etc / "systemd" / "system"
    for unit in MASKED_UNITS:
        link = system / unit
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to("/dev/null")
    # First boot units: user and key before sshd, packages and setup after it.
    sbin = rootfs / "usr" / "local" / "sbin"
    sbin.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FILES_DIR / "stacklab-firstboot", sbin / "stacklab-firstboot")
    os.chmod(sbin / "stacklab-firstboot", 0o755)
    wants = system / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    for unit in FIRSTBOOT_UNITS:
        shutil.copyfile(FILES_DIR / unit, system / unit)
        link = wants / unit
        if not link.is_symlink():
            link.symlink_to(f"/etc/systemd/system/{unit}")
    # Journald: keep it small.
    jd = etc / "systemd" / "journald.conf.d"
    jd.mkdir(parents=True, exist_ok=True)
    (jd / "stacklab.conf").write_text("[Journal]\nSystemMaxUse=16M\nRuntimeMaxUse=16M\n")
    (etc / "stacklab").mkdir(exist_ok=True)
    (etc / "stacklab" / "image-version").write_text(recipe_version() + "\n")
    # apt-get clean, and no lists (stale the day after; `apt-get update` in the node fetches fresh ones).
    for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*_*"):
        for f in rootfs.glob(pattern):
            f.unlink()
    (etc / "hostname").write_text("localhost\n")


_VFS_CAP_REVISION_2 = 0x02000000
_VFS_CAP_REVISION_3 = 0x03000000
_VFS_CAP_REVISION_MASK = 0xFF000000


def _shifted_caps(raw: bytes, rootid: int) -> bytes | None:
    """A file-capability xattr rewritten as v3 with `rootid`, so that the container's root owns it."""
    if len(raw) < 20:
        return None
    magic, p0, i0, p1, i1 = struct.unpack_from("<5I", raw)
    rev = magic & _VFS_CAP_REVISION_MASK
    if rev not in (_VFS_CAP_REVISION_2, _VFS_CAP_REVISION_3):
        return None
    flags = magic & ~_VFS_CAP_REVISION_MASK
    return struct.pack("<6I", _VFS_CAP_REVISION_3 | flags, p0, i0, p1, i1, rootid)


def shift_owners(root: Path, shift: int) -> int:
    """Add `shift` to the uid and gid of every file under `root`, keeping setuid/setgid bits and file caps."""
    seen: set[tuple[int, int]] = set()
    count = 0
    stack = [str(root)]
    while stack:
        d = stack.pop()
        paths = [d]
        with os.scandir(d) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    paths.append(entry.path)
        for p in paths:
            st = os.lstat(p)
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            if st.st_uid >= shift and st.st_gid >= shift:
                continue  # already shifted (a re-run)
            caps = None
            if stat.S_ISREG(st.st_mode):
                with contextlib.suppress(OSError):
                    caps = os.getxattr(p, "security.capability", follow_symlinks=False)
            os.lchown(p, st.st_uid + shift, st.st_gid + shift)
            if not stat.S_ISLNK(st.st_mode):
                # chown drops setuid/setgid bits: put the mode back.
                os.chmod(p, stat.S_IMODE(st.st_mode))
            if caps:
                new = _shifted_caps(caps, shift)
                if new:
                    os.setxattr(p, "security.capability", new, follow_symlinks=False)
            count += 1
    return count


async def _umount_under(path: Path) -> None:
    """Unmount whatever a killed debootstrap left mounted under `path` (deepest first)."""
    prefix = str(path.resolve()) + "/"
    mounts = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) > 1:
                mp = parts[1].encode().decode("unicode_escape")
                if mp.startswith(prefix):
                    mounts.append(mp)
    for mp in sorted(mounts, key=len, reverse=True):
        await run("umount", "-l", mp)


async def _remove_tree(path: Path) -> None:
    if not path.exists():
        return
    await _umount_under(path)
    rc, _out, err = await run("rm", "-rf", "--one-file-system", str(path))
    if rc != 0:
        raise TransientProviderError(f"could not remove {path}: {err.strip()}")
