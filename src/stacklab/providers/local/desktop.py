"""The desktop recipes: image layers with a light desktop, stacked over the base image for nodes that ask.

Labs that ask for it (`local.nodes[].desktop: true`) get TigerVNC's Xvnc, openbox and xterm, from Debian
packages, and a unit that runs them as the login user (`desktop_files/`). Nodes with `desktop: rdp` get
the RDP recipe instead (`RDP`, `rdp_files/`): xrdp serving openbox and an xterm (through its Xvnc session
back end) to the login user, whose password is the environment's secret `password`, and the packages of
the service's RDP-to-VNC bridge (Xvnc, FreeRDP's X11 client; `stacklab.access.rdp`). The packages are
installed once per host into a layer of their own, cached next to the base image
(`desktop-<base>-<recipe>/rootfs`, `rdp-<base>-<recipe>/rootfs`), so
that neither the base image (and every CI run) pays for them nor a graphical lab waits for apt at launch:
a desktop node's root is an overlay of its own upper dir over the layer over the base image.

The layer is built in a chroot over an overlay of the base image; what apt writes there is then shifted
to the containers' uid range, as the base image is. Built under a file lock, in a temporary dir renamed
into place at the end: concurrent launches wait for one build, a killed build leaves nothing half-made.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from stacklab.errors import TransientProviderError

from .image import UID_SHIFT, Progress, _remove_tree, _umount_under, file_lock, shift_owners
from .lxc import run, run_ok

PACKAGES = (
    "tigervnc-standalone-server",
    "tigervnc-tools",  # vncpasswd, for a lab whose VNC server asks for a password
    "openbox",
    "xterm",
    "x11-utils",
    "x11-xserver-utils",
    "xclip",  # the desktop's clipboard from a shell (labs, checks, tests)
)
RECIPE_REVISION = 1  # bump when the steps below change meaning
FILES_DIR = Path(__file__).with_name("desktop_files")
UNIT = "stacklab-desktop.service"
STAMP_FILE = "stacklab-layer.json"
APT_TIMEOUT_S = 900


@dataclass(frozen=True)
class Recipe:
    """One layer: its name (the layer dir's prefix), Debian packages, and files with a unit to install."""

    name: str
    packages: tuple[str, ...]
    files_dir: Path
    unit: str
    script: str
    revision: int
    configure: tuple[str, ...] = ()
    """Shell commands run in the chroot after apt (as root), to adjust the packages' configuration."""


VNC = Recipe("desktop", PACKAGES, FILES_DIR, UNIT, "stacklab-desktop", RECIPE_REVISION)
RDP = Recipe(
    "rdp",
    (
        "xrdp",
        "tigervnc-standalone-server",  # xrdp's Xvnc session back end, and the bridge's private display
        "openbox",
        "xterm",
        "freerdp2-x11",  # the bridge's RDP client (xfreerdp)
        "xauth",
        "x11-utils",
        "xclip",  # the session's clipboard from a shell (labs, checks, tests)
        "openssl",
    ),
    Path(__file__).with_name("rdp_files"),
    "stacklab-rdp.service",
    "stacklab-rdp",
    2,
    (
        # Only the Xvnc session type (xorgxrdp is not installed), and a wrong login ends the connection
        # instead of leaving xrdp's login dialog up (the bridge reports it; docs/desktops.md).
        r"sed -i -e '/^\[Xorg\]/,/^code=/ s/^/#/' -e 's/^#require_credentials=true/require_credentials=true/'"
        " /etc/xrdp/xrdp.ini",
        "grep -qx require_credentials=true /etc/xrdp/xrdp.ini",
        # The session: openbox and an xterm (xrdp runs this as the user who logged in).
        "install -m 755 /usr/local/share/stacklab/rdp-session /etc/xrdp/startwm.sh",
        # TLS for xrdp (it reaches the snakeoil key only through ssl-cert, not installed): a key of its own.
        "rm -f /etc/xrdp/key.pem /etc/xrdp/cert.pem && openssl req -x509 -newkey rsa:2048 -nodes -days 3650"
        " -subj /CN=stacklab-rdp -keyout /etc/xrdp/key.pem -out /etc/xrdp/cert.pem 2>/dev/null"
        " && chown xrdp:xrdp /etc/xrdp/key.pem && chmod 600 /etc/xrdp/key.pem",
    ),
)
RECIPES = {True: VNC, "vnc": VNC, "rdp": RDP}
RDP_PASSWORD_FILE = "etc/stacklab/rdp-password"
"""In a node of the RDP recipe: the login user's password (root's only), set by its unit at boot."""


def recipe_of(desktop: bool | str) -> Recipe | None:
    """The recipe a node's `desktop` asks for (None: no desktop)."""
    return RECIPES.get(desktop) if desktop else None


def layer_path(image_dir: Path, base: Path, recipe: Recipe = VNC) -> Path:
    """Where the layer for `base` lives: a new base or a changed recipe gives a new dir."""
    if recipe is VNC:  # as before recipes had names: the layers built already stay valid
        h = hashlib.sha256(repr((RECIPE_REVISION, PACKAGES, UID_SHIFT)).encode())
    else:
        h = hashlib.sha256(repr((recipe.revision, recipe.packages, recipe.configure, UID_SHIFT)).encode())
    for f in sorted(recipe.files_dir.iterdir()):
        h.update(f.name.encode() + f.read_bytes())
    return image_dir / f"{recipe.name}-{base.name}-{h.hexdigest()[:12]}"


def lower_dirs(layer: Path | None, base: Path) -> str:
    """The overlay `lowerdir` of a node: the layer (when it has a desktop) over the base image."""
    return f"{layer / 'rootfs'}:{base / 'rootfs'}" if layer else str(base / "rootfs")


async def ensure_desktop_layer(
    image_dir: Path, base: Path, progress: Progress | None = None, recipe: Recipe = VNC
) -> Path:
    """The recipe's layer over `base`, built on first use (once, even with concurrent callers)."""
    final = layer_path(image_dir, base, recipe)
    if (final / STAMP_FILE).is_file():
        return final
    say = progress or (lambda _msg: None)
    async with file_lock(image_dir / f".{recipe.name}.lock"):
        if (final / STAMP_FILE).is_file():
            return final
        for stale in image_dir.glob(f".tmp-{recipe.name}-*"):
            await _remove_tree(stale)
        tmp = image_dir / f".tmp-{final.name}-{os.getpid()}"
        try:
            started = time.monotonic()
            say(f"building the {recipe.name} layer ({', '.join(recipe.packages)}); once per host")
            await _build(tmp, base, recipe)
            tmp.rename(final)
            say(f"{recipe.name} layer ready in {time.monotonic() - started:.0f} s: {final}")
        except BaseException:
            await _remove_tree(tmp)
            raise
    return final


async def _build(tmp: Path, base: Path, recipe: Recipe) -> None:
    upper, work, merged = tmp / "rootfs", tmp / "work", tmp / "merged"
    for d in (upper, work, merged):
        d.mkdir(parents=True)
    async with _chroot(base, upper, work, merged):
        await _apt(merged, recipe.packages)
        _install_unit(merged, recipe)
        for command in recipe.configure:
            rc, out, err = await run("chroot", str(merged), "sh", "-ec", command, timeout=120)
            if rc != 0:
                tail = "\n".join((out + err).strip().splitlines()[-10:])
                raise TransientProviderError(f"{recipe.name} layer: {command} failed (exit {rc}):\n{tail}")
    shutil.rmtree(work)
    merged.rmdir()
    shift_owners(upper, UID_SHIFT)
    stamp = {
        "packages": list(recipe.packages),
        "base": str(base),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    (tmp / STAMP_FILE).write_text(json.dumps(stamp, indent=2) + "\n")
    os.chmod(tmp, 0o755)


@contextlib.asynccontextmanager
async def _chroot(base: Path, upper: Path, work: Path, merged: Path) -> AsyncIterator[None]:
    """`merged`: the base image with writes going to `upper`, with /proc and /dev, for apt in a chroot."""
    opts = f"lowerdir={base / 'rootfs'},upperdir={upper},workdir={work}"
    await run_ok("mount", "-t", "overlay", "overlay", "-o", opts, str(merged), what="mounting the layer")
    try:
        await run_ok("mount", "-t", "proc", "proc", str(merged / "proc"), what="mounting /proc")
        await run_ok("mount", "--bind", "/dev", str(merged / "dev"), what="binding /dev")
        yield
    finally:
        await _umount_under(merged)
        await run("umount", str(merged))


async def _apt(merged: Path, packages: tuple[str, ...]) -> None:
    """Install the packages in the chroot, with the host's DNS; leave no lists, archives or resolv.conf."""
    resolv = merged / "etc" / "resolv.conf"
    saved = resolv.read_bytes() if resolv.is_file() else None
    resolv.unlink(missing_ok=True)
    shutil.copyfile("/etc/resolv.conf", resolv)
    env = ("env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive")
    # The chroot's files belong to the containers' uids: apt's download sandbox user could not write them.
    apt = ("apt-get", "-q", "-o", "APT::Sandbox::User=root")
    script = [
        (*apt, "update"),
        (*apt, "install", "-y", "--no-install-recommends", *packages),
        (*apt, "clean"),
    ]
    try:
        for step in script:
            rc, out, err = await run("chroot", str(merged), *env, *step, timeout=APT_TIMEOUT_S)
            if rc != 0:
                tail = "\n".join((out + err).strip().splitlines()[-10:])
                raise TransientProviderError(f"desktop layer: {' '.join(step)} failed (exit {rc}):\n{tail}")
    finally:
        for lists in (merged / "var" / "lib" / "apt" / "lists").glob("*_*"):
            lists.unlink()
        resolv.unlink(missing_ok=True)
        if saved is not None:
            resolv.write_bytes(saved)


def _install_unit(merged: Path, recipe: Recipe) -> None:
    sbin = merged / "usr" / "local" / "sbin" / recipe.script
    shutil.copyfile(recipe.files_dir / recipe.script, sbin)
    os.chmod(sbin, 0o755)
    share = merged / "usr" / "local" / "share" / "stacklab"
    share.mkdir(parents=True, exist_ok=True)
    for f in recipe.files_dir.iterdir():
        if f.name not in (recipe.script, recipe.unit):
            shutil.copyfile(f, share / f.name)
    system = merged / "etc" / "systemd" / "system"
    shutil.copyfile(recipe.files_dir / recipe.unit, system / recipe.unit)
    wants = system / "multi-user.target.wants" / recipe.unit
    if not wants.is_symlink():
        wants.symlink_to(f"/etc/systemd/system/{recipe.unit}")
