"""One bridge and one /24 per lab, allocated from 10.128.0.0/9 without collisions."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
from pathlib import Path

from stacklab.errors import CapacityExhausted, TransientProviderError

from .host import BRIDGE_PREFIX, LAB_RANGE, allow_bridge, forget_bridge
from .image import file_lock
from .lxc import run, run_ok

REGISTRY = "subnets.json"
GLOBAL_LOCK = Path("/run/lock/stacklab-network.lock")
FIRST_HOST = 10


def bridge_name(stack: str) -> str:
    """Deterministic, <= 15 characters: `slb-` + 8 hex digits of the stack name."""
    return BRIDGE_PREFIX + hashlib.sha256(stack.encode()).hexdigest()[:8]


def node_address(subnet: str, index: int) -> str:
    net = ipaddress.ip_network(subnet)
    if FIRST_HOST + index >= net.num_addresses - 1:
        raise CapacityExhausted(f"a /24 lab holds at most {net.num_addresses - 1 - FIRST_HOST} nodes")
    return str(net.network_address + FIRST_HOST + index)


def gateway(subnet: str) -> str:
    return str(ipaddress.ip_network(subnet).network_address + 1)


def _registry(root: Path) -> dict[str, str]:
    try:
        return json.loads((root / REGISTRY).read_text())
    except (OSError, ValueError):
        return {}


def _write_registry(root: Path, reg: dict[str, str]) -> None:
    tmp = root / f".{REGISTRY}.{os.getpid()}"
    tmp.write_text(json.dumps(reg, indent=1, sort_keys=True))
    tmp.rename(root / REGISTRY)


async def _host_networks() -> list[ipaddress.IPv4Network]:
    """Networks the host already uses (addresses, routes, nameservers): never hand these to a lab."""
    nets: list[ipaddress.IPv4Network] = []
    rc, out, _e = await run("ip", "-j", "-4", "addr")
    if rc == 0:
        for link in json.loads(out or "[]"):
            for a in link.get("addr_info", []):
                with contextlib.suppress(ValueError, KeyError):
                    nets.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False))
    rc, out, _e = await run("ip", "-j", "-4", "route", "show", "table", "all")
    if rc == 0:
        for r in json.loads(out or "[]"):
            dst = r.get("dst", "")
            if dst and dst != "default":
                with contextlib.suppress(ValueError):
                    net = ipaddress.ip_network(dst, strict=False)
                    if isinstance(net, ipaddress.IPv4Network):
                        nets.append(net)
    for ns in host_nameservers():
        with contextlib.suppress(ValueError):
            nets.append(ipaddress.ip_network(f"{ns}/32"))
    return nets


def host_nameservers() -> list[str]:
    """The host's IPv4 nameservers that a node can use too (loopback stubs are useless inside a node)."""
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                with contextlib.suppress(ValueError):
                    ip = ipaddress.ip_address(parts[1])
                    if ip.version == 4 and not ip.is_loopback:
                        found.append(parts[1])
    return found


async def allocate_subnet(root: Path, stack: str) -> str:
    """The stack's /24: the one it already has, or the first free one (locked across processes)."""
    async with file_lock(GLOBAL_LOCK), file_lock(root / ".subnets.lock"):
        reg = _registry(root)
        if stack in reg:
            return reg[stack]
        taken = {ipaddress.ip_network(s) for s in reg.values()}
        host = await _host_networks()
        for candidate in ipaddress.ip_network(LAB_RANGE).subnets(new_prefix=24):
            if candidate in taken or any(candidate.overlaps(n) for n in host):
                continue
            reg[stack] = str(candidate)
            _write_registry(root, reg)
            return str(candidate)
    raise CapacityExhausted(f"no free /24 left in {LAB_RANGE}")


async def release_subnet(root: Path, stack: str) -> None:
    async with file_lock(root / ".subnets.lock"):
        reg = _registry(root)
        if reg.pop(stack, None) is not None:
            _write_registry(root, reg)


def bridge_exists(bridge: str) -> bool:
    return Path("/sys/class/net", bridge).exists()


async def ensure_bridge(bridge: str, subnet: str) -> None:
    """The lab's bridge, with the gateway address, up, and allowed to forward between its own ports."""
    prefix = ipaddress.ip_network(subnet).prefixlen
    if not bridge_exists(bridge):
        rc, _o, err = await run("ip", "link", "add", bridge, "type", "bridge")
        if rc != 0 and not bridge_exists(bridge):
            raise TransientProviderError(f"creating bridge {bridge} failed: {err.strip()}")
    rc, out, err = await run("ip", "-j", "-4", "addr", "show", "dev", bridge)
    if rc != 0:
        raise TransientProviderError(f"reading addresses of {bridge} failed: {err.strip()}")
    have = [a.get("local") for link in json.loads(out or "[]") for a in link.get("addr_info", [])]
    if gateway(subnet) not in have:
        await run_ok(
            "ip", "addr", "add", f"{gateway(subnet)}/{prefix}", "dev", bridge, what=f"address on {bridge}"
        )
    await run_ok("ip", "link", "set", bridge, "up", what=f"bringing {bridge} up")
    await allow_bridge(bridge)


async def delete_bridge(bridge: str) -> None:
    if bridge_exists(bridge):
        rc, _o, err = await run("ip", "link", "del", bridge)
        if rc != 0 and bridge_exists(bridge):
            raise TransientProviderError(f"deleting bridge {bridge} failed: {err.strip()}")
    await forget_bridge(bridge)


def list_bridges() -> list[str]:
    with contextlib.suppress(OSError):
        return sorted(n for n in os.listdir("/sys/class/net") if n.startswith(BRIDGE_PREFIX))
    return []


def hosts_file(hostname: str, nodes: dict[str, str]) -> str:
    lines = ["127.0.0.1\tlocalhost", f"127.0.1.1\t{hostname}" if hostname not in nodes else ""]
    lines += [f"{ip}\t{name}" for name, ip in nodes.items()]
    lines += [
        "",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "ff02::1\tip6-allnodes",
        "ff02::2\tip6-allrouters",
    ]
    return "\n".join(x for x in lines if x is not None) + "\n"


def resolv_conf() -> str:
    servers = host_nameservers()
    return "".join(f"nameserver {s}\n" for s in servers) or "# the host has no usable IPv4 nameserver\n"
