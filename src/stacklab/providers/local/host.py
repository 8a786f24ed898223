"""Host preparation for LXC labs (idempotent): sub-ids, sysctls, and the iptables rules shared by all labs.

The iptables rules live in chains of our own so that removing them is one flush:

    filter FORWARD     -> STACKLAB-FWD
        STACKLAB-FWD   -> STACKLAB-BR              per lab bridge: -i BR -o BR ACCEPT (nodes of one lab talk)
                          -i slb-+ -o slb-+ DROP   one lab never reaches another
                          -o slb-+ ESTABLISHED     replies come back in
                          -o slb-+ DROP            nothing else enters a lab from outside
                          -i slb-+ ACCEPT          labs reach the world (apt)
    filter INPUT       -> STACKLAB-IN              labs do not reach host services (replies, ping only)
    nat POSTROUTING    -> STACKLAB-NAT             MASQUERADE of the lab range towards the outside

The host itself reaches every node (its SSH goes through OUTPUT, which these rules leave alone).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from stacklab.errors import TerminalProviderError, TransientProviderError

from .lxc import ID_RANGE, UID_SHIFT, run

LAB_RANGE = "10.128.0.0/9"
BRIDGE_PREFIX = "slb-"
BRIDGE_MATCH = BRIDGE_PREFIX + "+"
CHAIN_FWD = "STACKLAB-FWD"
CHAIN_BR = "STACKLAB-BR"
CHAIN_IN = "STACKLAB-IN"
CHAIN_NAT = "STACKLAB-NAT"
SYSCTLS = {
    "fs.inotify.max_user_instances": 4096,
    "fs.inotify.max_user_watches": 1048576,
    "net.ipv4.ip_forward": 1,
}

FWD_RULES = [
    ["-j", CHAIN_BR],
    ["-i", BRIDGE_MATCH, "-o", BRIDGE_MATCH, "-j", "DROP"],
    ["-o", BRIDGE_MATCH, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
    ["-o", BRIDGE_MATCH, "-j", "DROP"],
    ["-i", BRIDGE_MATCH, "-j", "ACCEPT"],
]
IN_RULES = [
    ["-i", BRIDGE_MATCH, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
    ["-i", BRIDGE_MATCH, "-p", "icmp", "-j", "ACCEPT"],
    ["-i", BRIDGE_MATCH, "-j", "DROP"],
]
NAT_RULES = [
    ["-s", LAB_RANGE, "!", "-o", BRIDGE_MATCH, "-j", "MASQUERADE"],
]


async def iptables(*args: str, table: str = "filter") -> tuple[int, str, str]:
    return await run("iptables", "-w", "5", "-t", table, *args, timeout=30)


async def iptables_ok(*args: str, table: str = "filter") -> str:
    rc, out, err = await iptables(*args, table=table)
    if rc != 0:
        raise TransientProviderError(f"iptables -t {table} {' '.join(args)} failed: {(err or out).strip()}")
    return out


def _subid_ok(path: Path) -> bool:
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            parts = line.strip().split(":")
            if len(parts) == 3 and parts[0] in ("root", "0"):
                with contextlib.suppress(ValueError):
                    start, count = int(parts[1]), int(parts[2])
                    if start <= UID_SHIFT and start + count >= UID_SHIFT + ID_RANGE:
                        return True
    return False


def ensure_subids() -> None:
    for path in (Path("/etc/subuid"), Path("/etc/subgid")):
        if _subid_ok(path):
            continue
        text = path.read_text() if path.exists() else ""
        if text and not text.endswith("\n"):
            text += "\n"
        try:
            path.write_text(text + f"root:{UID_SHIFT}:{ID_RANGE}\n")
        except OSError as e:
            raise TerminalProviderError(f"cannot add root:{UID_SHIFT}:{ID_RANGE} to {path}: {e}") from e


def sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def ensure_sysctls() -> None:
    """Raise the sysctls we need (never lower one that is already higher)."""
    for key, want in SYSCTLS.items():
        p = sysctl_path(key)
        try:
            cur = int(p.read_text().split()[0])
            if cur < want:
                p.write_text(str(want))
        except (OSError, ValueError) as e:
            raise TerminalProviderError(f"cannot set sysctl {key}={want}: {e}") from e


async def _ensure_chain(chain: str, table: str, rules: list[list[str]]) -> None:
    rc, _out, err = await iptables("-N", chain, table=table)
    if rc != 0 and "exists" not in err:
        raise TransientProviderError(f"iptables -t {table} -N {chain} failed: {err.strip()}")
    if not rules:
        return
    expected = [f"-A {chain} " + " ".join(r) for r in rules]
    current = [
        line
        for line in (await iptables_ok("-S", chain, table=table)).splitlines()
        if line.startswith(f"-A {chain} ")
    ]
    if [_norm(x) for x in current] == [_norm(x) for x in expected]:
        return
    await iptables_ok("-F", chain, table=table)
    for r in rules:
        await iptables_ok("-A", chain, *r, table=table)


def _norm(rule: str) -> str:
    # `iptables -S` prints "-m conntrack --ctstate" and "! -d" consistently; collapse whitespace only.
    return " ".join(rule.split())


async def _ensure_jump(parent: str, chain: str, table: str) -> None:
    rc, _o, _e = await iptables("-C", parent, "-j", chain, table=table)
    if rc != 0:
        await iptables_ok("-I", parent, "1", "-j", chain, table=table)


async def ensure_firewall() -> None:
    await _ensure_chain(CHAIN_BR, "filter", [])
    await _ensure_chain(CHAIN_FWD, "filter", FWD_RULES)
    await _ensure_chain(CHAIN_IN, "filter", IN_RULES)
    await _ensure_chain(CHAIN_NAT, "nat", NAT_RULES)
    await _ensure_jump("FORWARD", CHAIN_FWD, "filter")
    await _ensure_jump("INPUT", CHAIN_IN, "filter")
    await _ensure_jump("POSTROUTING", CHAIN_NAT, "nat")


async def prepare_host() -> None:
    """Everything the host needs before the first node starts; cheap to call again."""
    ensure_subids()
    ensure_sysctls()
    await ensure_firewall()


async def allow_bridge(bridge: str) -> None:
    """Let the nodes on one lab bridge talk to each other (br_netfilter sends bridged frames via FORWARD)."""
    rule = ["-i", bridge, "-o", bridge, "-j", "ACCEPT"]
    rc, _o, _e = await iptables("-C", CHAIN_BR, *rule)
    if rc != 0:
        await iptables_ok("-A", CHAIN_BR, *rule)


async def forget_bridge(bridge: str) -> None:
    rule = ["-i", bridge, "-o", bridge, "-j", "ACCEPT"]
    while (await iptables("-C", CHAIN_BR, *rule))[0] == 0:
        await iptables_ok("-D", CHAIN_BR, *rule)


async def bridge_rules(bridge: str) -> list[str]:
    """iptables rules that name `bridge` (for tests and leak checks)."""
    rules = []
    for table in ("filter", "nat"):
        rc, out, _e = await iptables("-S", table=table)
        if rc == 0:
            rules += [line for line in out.splitlines() if bridge in line.split()]
    return rules
