"""`LocalProvider`: labs as unprivileged LXC containers on this host.

On disk, under `root_dir` (the LXC path):

    .stacklab-root                 marks the dir as ours (the cleanup script looks for it)
    subnets.json                   stack name -> its /24
    .locks/<stack>.lock            one create/delete at a time per stack
    <stack>/stack.json             subnet, bridge, base image, node -> address
    <stack>/.creating              present while a create runs: who runs it (creating.py)
    <stack>/<node>/                upper, work, rootfs (overlay mount), config, lxc.log, console.log
    <stack>-<node> -> <stack>/<node>   the container dir as LXC looks it up (container name = <stack>-<node>)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import secrets as token_source
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

from stacklab.errors import ProviderError, TerminalProviderError, TransientProviderError
from stacklab.names import LOGIN_USER, NODE_NAME, SLUG
from stacklab.providers.base import (
    Handle,
    NodeAddress,
    NodeSpec,
    Provider,
    StackRequest,
    StackState,
    StackStatus,
)

from . import lxc
from .creating import Creator, creator, mark, unmark
from .desktop import RDP_PASSWORD_FILE, ensure_desktop_layer, lower_dirs, recipe_of
from .host import prepare_host
from .image import ensure_base_image, file_lock, image_path, image_ready
from .network import (
    allocate_subnet,
    bridge_exists,
    bridge_name,
    delete_bridge,
    ensure_bridge,
    gateway,
    hosts_file,
    list_bridges,
    node_address,
    release_subnet,
    resolv_conf,
)

DEFAULT_ROOT_DIR = "/var/lib/stacklab/local"
DEFAULT_IMAGE_DIR = "/var/lib/stacklab/images"
ROOT_MARKER = ".stacklab-root"
CREATING_GRACE_S = 120
"""A stack dir without record or marker is taken for a create just starting for this long."""
INTERRUPTED = (
    "a create stopped half-way (its process is gone): creating again finishes it, deleting removes it"
)
NAME_RE = re.compile(f"^{SLUG.regex}$")
NODE_RE = re.compile(f"^{NODE_NAME.regex}$")
SHIFT = lxc.UID_SHIFT


class LocalProvider(Provider):
    type_name = "local"

    def __init__(self, name: str, settings: dict[str, Any] | None = None) -> None:
        super().__init__(name, settings)
        self.root = Path(self.settings.get("root_dir") or DEFAULT_ROOT_DIR).resolve()
        self.image_dir = Path(self.settings.get("image_dir") or DEFAULT_IMAGE_DIR).resolve()
        self._host_ready = False

    # ----------------------------------------------------------------------------------------------------
    # paths and records

    def stack_dir(self, stack: str) -> Path:
        return self.root / stack

    @staticmethod
    def container(stack: str, node: str) -> str:
        return f"{stack}-{node}"

    def _record(self, stack: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.stack_dir(stack) / "stack.json").read_text())
        except (OSError, ValueError):
            return None

    def _write_record(self, stack: str, record: dict[str, Any]) -> None:
        d = self.stack_dir(stack)
        tmp = d / f".stack.json.{os.getpid()}"
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.rename(d / "stack.json")

    def _node_names(self, stack: str, handle: Handle | None = None) -> list[str]:
        """Every node this stack may own: from its record, the handle, and the dirs on disk."""
        names: dict[str, None] = {}
        rec = self._record(stack) or {}
        for n in rec.get("nodes", {}):
            names[n] = None
        for n in (handle or {}).get("nodes", {}) or {}:
            names[n] = None
        d = self.stack_dir(stack)
        if d.is_dir():
            for entry in d.iterdir():
                if entry.is_dir() and not entry.name.startswith(".") and NODE_RE.match(entry.name):
                    names[entry.name] = None
        return list(names)

    def _ensure_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # The containers' (shifted) root must traverse the path down to their rootfs.
        for p in [self.root, *self.root.parents]:
            mode = p.stat().st_mode
            if not mode & 0o001:
                os.chmod(p, mode | 0o001)
        (self.root / ROOT_MARKER).touch()
        (self.root / ".locks").mkdir(exist_ok=True)

    def _lock(self, stack: str) -> contextlib.AbstractAsyncContextManager[int]:
        return file_lock(self.root / ".locks" / f"{stack}.lock")

    # ----------------------------------------------------------------------------------------------------
    # create

    async def create(self, request: StackRequest) -> Handle:
        stack = request.name
        if not NAME_RE.match(stack):
            raise TerminalProviderError(f"invalid stack name: {SLUG.problem(stack)}")
        if not request.nodes:
            raise TerminalProviderError(f"stack {stack}: the local provider needs at least one node")
        seen = set()
        for spec in request.nodes:
            if not NODE_RE.match(spec.name):
                raise TerminalProviderError(f"invalid node name: {NODE_NAME.problem(spec.name)}")
            if spec.name in seen:
                raise TerminalProviderError(f"node name {spec.name!r} appears twice")
            seen.add(spec.name)
        if LOGIN_USER.problem(request.login_user):
            raise TerminalProviderError(f"invalid login user: {LOGIN_USER.problem(request.login_user)}")

        self._ensure_root()
        if not self._host_ready:
            await prepare_host()
            self._host_ready = True
        image = await ensure_base_image(self.image_dir)
        layers: dict[str, Path] = {}
        for spec in request.nodes:
            recipe = recipe_of(spec.desktop)
            if recipe is not None:
                layers[spec.name] = await ensure_desktop_layer(self.image_dir, image, recipe=recipe)

        async with self._lock(stack):
            d = self.stack_dir(stack)
            d.mkdir(exist_ok=True)
            os.chmod(d, 0o755)
            marker = mark(d)
            try:
                rec = self._record(stack) or {}
                subnet = rec.get("subnet") or await allocate_subnet(self.root, stack)
                bridge = bridge_name(stack)
                lower = rec.get("image")
                if not lower or not image_ready(Path(lower)):
                    lower = str(image)
                nodes: dict[str, str] = dict(rec.get("nodes", {}))
                used = set(nodes.values())
                index = 0
                for spec in request.nodes:
                    if spec.name in nodes:
                        continue
                    while node_address(subnet, index) in used:
                        index += 1
                    nodes[spec.name] = node_address(subnet, index)
                    used.add(nodes[spec.name])
                rec = {
                    "name": stack,
                    "subnet": subnet,
                    "bridge": bridge,
                    "image": lower,
                    "nodes": nodes,
                    "login_user": request.login_user,
                    # Nodes with a desktop recipe: their root has the recipe's layer under it.
                    "layers": rec.get("layers") or {name: str(layer) for name, layer in layers.items()},
                    # Nodes with the RDP recipe: their login user's password is the secret `password`.
                    "rdp_nodes": rec.get("rdp_nodes")
                    or sorted(n.name for n in request.nodes if n.desktop == "rdp"),
                    # Nodes whose first boot goes on after sshd answers (packages, setup script).
                    "setup_nodes": sorted(n.name for n in request.nodes if n.packages or n.setup),
                    "created": rec.get("created") or time.time(),
                }
                self._write_record(stack, rec)
                # Kept on the RDP nodes only (root's file there), never in the record: a retry finds it.
                rdp_password = self._rdp_secrets(d, rec).get("password") or token_source.token_urlsafe(15)
                await ensure_bridge(bridge, subnet)
                await self._set_bridge_owner(bridge, stack)
                results = await asyncio.gather(
                    *(self._bring_up(stack, rec, spec, request, rdp_password) for spec in request.nodes),
                    return_exceptions=True,
                )
                errors = [r for r in results if isinstance(r, BaseException)]
                if errors:
                    for e in errors:
                        if not isinstance(e, Exception):
                            raise e
                    terminal = [e for e in errors if isinstance(e, TerminalProviderError)]
                    msg = f"create {stack}: " + "; ".join(str(e) for e in errors)
                    if terminal:
                        raise TerminalProviderError(msg)
                    raise TransientProviderError(msg)
            finally:
                unmark(marker)
        return {"name": stack, "subnet": subnet, "nodes": dict(nodes)}

    async def _set_bridge_owner(self, bridge: str, stack: str) -> None:
        # The alias tells list() which root dir and stack a bridge belongs to, even if the dir is gone.
        with contextlib.suppress(OSError):
            Path(f"/sys/class/net/{bridge}/ifalias").write_text(f"stacklab {self.root} {stack}")

    async def _bring_up(
        self, stack: str, rec: dict[str, Any], spec: NodeSpec, request: StackRequest, rdp_password: str
    ) -> None:
        cname = self.container(stack, spec.name)
        if await lxc.is_up(self.root, cname):
            return
        nd = self.stack_dir(stack) / spec.name
        nd.mkdir(exist_ok=True)
        os.chmod(nd, 0o755)
        upper, work, rootfs = nd / "upper", nd / "work", nd / "rootfs"
        for p in (upper, work, rootfs):
            p.mkdir(exist_ok=True)
        # The merged root takes the upper dir's owner: the container's root.
        os.chown(upper, SHIFT, SHIFT)
        os.chmod(upper, 0o755)
        await lxc.mount_overlay(self._lower(rec, spec.name), nd)
        if not (nd / ".provisioned").exists():
            self._write_node_files(rootfs, spec, rec, request, rdp_password)
            (nd / ".provisioned").touch()
        subnet = rec["subnet"]
        prefix = subnet.split("/")[1]
        cfg = lxc.NodeConfig(
            name=cname,
            hostname=spec.name,
            node_dir=nd,
            bridge=rec["bridge"],
            address=f"{rec['nodes'][spec.name]}/{prefix}",
            gateway=gateway(subnet),
            memory_mb=spec.memory_mb,
            pids_max=spec.pids_max,
            hwaddr="00:16:3e:" + ":".join(f"{b:02x}" for b in hashlib.sha256(cname.encode()).digest()[:3]),
        )
        (nd / "config").write_text(lxc.render_config(cfg))
        link = self.root / cname
        if not link.is_symlink():
            if link.exists():
                shutil.rmtree(link)
            link.symlink_to(Path(stack) / spec.name)
        await lxc.start(self.root, cname)

    @staticmethod
    def _write_node_files(
        rootfs: Path, spec: NodeSpec, rec: dict[str, Any], request: StackRequest, rdp_password: str
    ) -> None:
        def put(rel: str, text: str, mode: int = 0o644) -> None:
            p = rootfs / rel
            if p.is_symlink():
                p.unlink()
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_name(f".{p.name}.stacklab")
            tmp.write_text(text)
            os.chown(tmp, SHIFT, SHIFT)
            os.chmod(tmp, mode)
            tmp.rename(p)

        put("etc/hostname", spec.name + "\n")
        put("etc/hosts", hosts_file(spec.name, rec["nodes"]))
        put("etc/resolv.conf", resolv_conf())
        node = {
            "stack": rec["name"],
            "node": spec.name,
            "login_user": request.login_user,
            "public_key": request.public_key.strip(),
            "packages": list(spec.packages),
            "setup": spec.setup,
            "nodes": rec["nodes"],
        }
        put("etc/stacklab/node.json", json.dumps(node, indent=2) + "\n", 0o600)
        env = (
            f"LOGIN_USER={shlex.quote(request.login_user)}\nPACKAGES={shlex.quote(' '.join(spec.packages))}\n"
        )
        put("etc/stacklab/node.env", env, 0o600)
        put("etc/stacklab/authorized_keys", request.public_key.strip() + "\n", 0o600)
        if spec.desktop == "rdp":
            put(RDP_PASSWORD_FILE, rdp_password + "\n", 0o600)
        if spec.setup:
            put(
                "etc/stacklab/setup.sh", spec.setup if spec.setup.endswith("\n") else spec.setup + "\n", 0o700
            )

    # ----------------------------------------------------------------------------------------------------
    # status

    async def status(self, handle: Handle) -> StackStatus:
        """What the stack's containers, record and `.creating` marker say.

        A create whose process died (its marker names a process that is gone) left a stack that is
        neither being made nor failed: it is reported ABSENT, with a reason, so that the caller simply
        creates it again, which finishes the same containers, mounts and bridge instead of duplicating
        them (or deletes it, which removes them).
        """
        stack = handle["name"]
        rec = self._record(stack)
        d = self.stack_dir(stack)
        names = self._node_names(stack, handle)
        nodes_ip: dict[str, str] = dict((rec or {}).get("nodes") or handle.get("nodes") or {})
        running = {n: lxc.is_running(self.container(stack, n)) for n in names}
        if not d.exists() and not any(running.values()) and not bridge_exists(bridge_name(stack)):
            return StackStatus(StackState.ABSENT, reason="no container, dir or bridge exists")
        addresses = tuple(NodeAddress(n, ip) for n, ip in nodes_ip.items())
        outputs: dict[str, Any] = {}
        fb: dict[str, str] = {}
        if rec:
            outputs = {"subnet": rec.get("subnet"), "bridge": rec.get("bridge")}
            for n in nodes_ip:
                with contextlib.suppress(OSError):
                    fb[n] = (d / n / "upper/var/lib/stacklab/firstboot.status").read_text().strip()
            if fb:
                outputs["firstboot"] = fb
        secrets = self._rdp_secrets(d, rec)
        who = creator(d)
        wanted = list(nodes_ip) or names
        stopped = [n for n in wanted if not running.get(n, lxc.is_running(self.container(stack, n)))]
        if rec is None or stopped:
            if who is Creator.ALIVE or (
                who is Creator.NONE
                and rec is None
                and d.exists()
                and time.time() - d.stat().st_mtime < CREATING_GRACE_S
            ):
                return StackStatus(
                    StackState.CREATING, reason="create in progress", nodes=addresses, outputs=outputs
                )
            if who is Creator.DEAD:
                return StackStatus(StackState.ABSENT, reason=INTERRUPTED)
            if rec is None:
                return StackStatus(StackState.FAILED, reason="a create stopped half-way (no stack record)")
            reasons = []
            for n in stopped:
                tail = ""
                with contextlib.suppress(OSError):
                    lines = [x for x in (d / n / "lxc.log").read_text().splitlines() if x.strip()]
                    tail = f" ({lines[-1][-200:]})" if lines else ""
                reasons.append(f"node {n} is not running{tail}")
            return StackStatus(StackState.FAILED, reason="; ".join(reasons), nodes=addresses, outputs=outputs)
        states = {n: lxc.freezer_state(self.container(stack, n)) for n in wanted}
        values = set(states.values())
        if values == {"THAWED"}:
            if who is Creator.ALIVE:
                return StackStatus(StackState.CREATING, nodes=addresses, outputs=outputs)
            busy = self._setting_up(rec, fb)
            if busy:
                reason = "setup running on " + ", ".join(busy)
                return StackStatus(StackState.CREATING, reason=reason, nodes=addresses, outputs=outputs)
            return StackStatus(StackState.RUNNING, nodes=addresses, outputs=outputs, secrets=secrets)
        if values == {"FROZEN"}:
            return StackStatus(StackState.SUSPENDED, nodes=addresses, outputs=outputs, secrets=secrets)
        detail = ", ".join(f"{n}={s}" for n, s in states.items())
        return StackStatus(
            StackState.SUSPENDING, reason=f"nodes partly frozen: {detail}", nodes=addresses, outputs=outputs
        )

    @staticmethod
    def _rdp_secrets(d: Path, rec: dict[str, Any] | None) -> dict[str, str]:
        """The RDP recipe's password (the environment's secret `password`), read back from its node."""
        for node in (rec or {}).get("rdp_nodes") or ():
            with contextlib.suppress(OSError):
                return {"password": (d / node / "upper" / RDP_PASSWORD_FILE).read_text().strip()}
        return {}

    @staticmethod
    def _setting_up(rec: dict[str, Any], firstboot: dict[str, str]) -> list[str]:
        """Nodes whose packages or setup script have not finished (sshd answers while they run).

        No outcome yet counts as running: the status file is written before sshd starts, but this
        check may have read it before that. A failed setup is finished: the learner still gets in.
        """
        return [
            n
            for n in rec.get("setup_nodes", ())
            if not firstboot.get(n) or firstboot[n].startswith("running")
        ]

    # ----------------------------------------------------------------------------------------------------
    # suspend / resume

    def _live(self, stack: str, handle: Handle) -> list[str]:
        return [
            self.container(stack, n)
            for n in self._node_names(stack, handle)
            if lxc.freezer_state(self.container(stack, n)) is not None
        ]

    async def suspend(self, handle: Handle) -> None:
        stack = handle["name"]
        live = self._live(stack, handle)
        if not live:
            raise TerminalProviderError(f"cannot suspend {stack}: no node of it is running")
        await lxc.set_freezer(live, "FROZEN")

    async def resume(self, handle: Handle) -> None:
        stack = handle["name"]
        live = self._live(stack, handle)
        if live:
            await lxc.set_freezer(live, "THAWED")
        rec = self._record(stack)
        if rec is None:
            if not live:
                raise TerminalProviderError(f"cannot resume {stack}: it does not exist")
            return
        stopped = [n for n in rec["nodes"] if not lxc.is_running(self.container(stack, n))]
        if stopped:
            # After a host reboot (or a crash of a node) resume brings the nodes back with their disks.
            await ensure_bridge(rec["bridge"], rec["subnet"])
            await self._set_bridge_owner(rec["bridge"], stack)
            results = await asyncio.gather(
                *(self._restart(stack, rec, n) for n in stopped), return_exceptions=True
            )
            errors = [r for r in results if isinstance(r, Exception)]
            if errors:
                raise TransientProviderError(f"resume {stack}: " + "; ".join(str(e) for e in errors))

    async def _restart(self, stack: str, rec: dict[str, Any], node: str) -> None:
        nd = self.stack_dir(stack) / node
        if not (nd / "config").exists():
            raise TerminalProviderError(f"node {node} of {stack} has no config: create it again")
        await lxc.mount_overlay(self._lower(rec, node), nd)
        await lxc.start(self.root, self.container(stack, node))

    @staticmethod
    def _lower(rec: dict[str, Any], node: str) -> str:
        """The node's overlay lower dirs: the base image, under the desktop layer if it has one."""
        layer = (rec.get("layers") or {}).get(node)
        return lower_dirs(Path(layer) if layer else None, Path(rec["image"]))

    # ----------------------------------------------------------------------------------------------------
    # delete

    async def delete(self, handle: Handle) -> None:
        stack = handle["name"]
        if not NAME_RE.match(stack):
            raise TerminalProviderError(f"invalid stack name {stack!r}")
        self._ensure_root()
        async with self._lock(stack):
            names = self._node_names(stack, handle)
            containers = [self.container(stack, n) for n in names]
            results = await asyncio.gather(
                *(lxc.stop_kill(self.root, c) for c in containers), return_exceptions=True
            )
            errors = [r for r in results if isinstance(r, Exception)]
            if errors:
                raise TransientProviderError(f"delete {stack}: " + "; ".join(str(e) for e in errors))
            d = self.stack_dir(stack)
            await lxc.umount_all(d)
            for c in containers:
                link = self.root / c
                if link.is_symlink():
                    link.unlink()
                _remove_empty_cgroups(c)
            if d.exists():
                rc, _o, err = await lxc.run("rm", "-rf", "--one-file-system", str(d), timeout=300)
                if rc != 0:
                    raise TransientProviderError(f"delete {stack}: removing {d} failed: {err.strip()}")
            await delete_bridge(bridge_name(stack))
            await release_subnet(self.root, stack)
        with contextlib.suppress(OSError):
            (self.root / ".locks" / f"{stack}.lock").unlink()

    # ----------------------------------------------------------------------------------------------------
    # list / check

    async def list(self) -> list[str]:
        names: set[str] = set()
        if self.root.is_dir():
            for entry in self.root.iterdir():
                if entry.name.startswith(".") or entry.is_symlink() or not entry.is_dir():
                    continue
                if NAME_RE.match(entry.name):
                    names.add(entry.name)
        for br in list_bridges():
            try:
                alias = Path(f"/sys/class/net/{br}/ifalias").read_text().split()
            except OSError:
                continue
            if len(alias) == 3 and alias[0] == "stacklab" and alias[1] == str(self.root):
                names.add(alias[2])
        return sorted(names)

    async def check(self) -> list[tuple[str, bool, str]]:
        out: list[tuple[str, bool, str]] = []
        for tool in ("lxc-start", "lxc-stop", "debootstrap", "newuidmap", "iptables", "ip"):
            path = shutil.which(tool)
            out.append((f"tool {tool}", bool(path), path or "not found in PATH"))
        from .host import _subid_ok, sysctl_path

        for f in ("/etc/subuid", "/etc/subgid"):
            ok = _subid_ok(Path(f))
            out.append(
                (
                    f"{f} root:{SHIFT}:{lxc.ID_RANGE}",
                    ok,
                    "present" if ok else "missing (added on first create)",
                )
            )
        has_freezer = (lxc.FREEZER_ROOT / "cgroup.procs").exists()
        out.append(
            ("cgroup v1 freezer", has_freezer, str(lxc.FREEZER_ROOT) if has_freezer else "not mounted")
        )
        img = image_path(self.image_dir)
        ready = image_ready(img)
        out.append(
            ("base image", ready, str(img) if ready else f"{img} not built yet (built on first create)")
        )
        for key, want in (("fs.inotify.max_user_instances", 4096), ("fs.inotify.max_user_watches", 1048576)):
            try:
                cur = int(sysctl_path(key).read_text().split()[0])
            except (OSError, ValueError):
                cur = -1
            out.append((key, cur >= want, f"{cur} (want >= {want}; raised on first create)"))
        return out


def _remove_empty_cgroups(container: str) -> None:
    base = Path("/sys/fs/cgroup")
    with contextlib.suppress(OSError):
        for ctrl in base.iterdir():
            for kind in ("payload", "monitor"):
                cg = ctrl / f"lxc.{kind}.{container}"
                if cg.is_dir():
                    # Children first (systemd inside makes its own), then the cgroup itself.
                    for sub in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                        with contextlib.suppress(OSError):
                            sub.rmdir()
                    with contextlib.suppress(OSError):
                        cg.rmdir()


__all__ = ["LocalProvider", "ProviderError"]
