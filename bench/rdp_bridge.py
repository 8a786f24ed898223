"""RDP bridge benchmark: what the RDP-to-VNC bridge costs on the node, beside the RDP server it shows.

One node of examples/rdp.yaml (the RDP recipe: xrdp serving openbox and an xterm through its Xvnc session
type), opened through `stacklab serve`'s desktop websocket with the RFB client of tests/support/rfb.py, as
the lab page's noVNC would: the service starts the bridge on the node (a private Xvnc with xfreerdp
full-screen on it, logged in to xrdp) and relays it.

Figures, for the bridge (its Xvnc and xfreerdp) and, in the same run, for the RDP server's own processes
(xrdp's session process, its session Xvnc, chansrv) as the peer it runs beside: resident memory, CPU while
the screen is still (one update request outstanding, as noVNC keeps) and while a window over most of the
screen scrolls random text as fast as xterm draws it; frames per second and bandwidth the browser side
receives meanwhile; input-to-screen latency through the whole chain (a key sent until the update that
shows it). Prints figures; never asserts.

    .venv/bin/python bench/rdp_bridge.py      # as root, ~1 min; --seconds 5 --keys 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, lxc_version, p50, p99, print_machine, print_table
from bench.desktop import frames, latency
from tests.e2e.conftest import serving_stacklab
from tests.support.rfb import RfbClient

from stacklab.secrets import Vault, load_or_create_key
from stacklab.web.tokens import TokenSigner

LAB = ROOT / "src" / "stacklab" / "examples" / "rdp.yaml"
SCROLL = "DISPLAY=:10 timeout {seconds} xterm -geometry 200x56+0+0 -e sh -c 'base64 /dev/urandom' || true"
# Per group: the pids of its processes; then per pid "ticks rss_kib" (utime+stime in clock ticks).
GROUPS = {
    "bridge": "pgrep -f '^Xvnc :[0-9]+ .*-rfbunixpath' ; pgrep -x xfreerdp",
    "rdp server": "pgrep -f '^Xvnc :10 ' ; pgrep -u learner -x xrdp-chansrv ; pgrep -n -x xrdp",
}
SAMPLE = (
    'for pid in $({pids}); do [ -r /proc/$pid/stat ] && echo "$(cut -d" " -f14,15 /proc/$pid/stat) '
    "$(awk '/VmRSS/ {{print $2}}' /proc/$pid/status)\"; done"
)


def sample(exec_node) -> dict[str, tuple[int, int]]:  # type: ignore[no-untyped-def]
    """Per group: (CPU clock ticks so far, resident KiB now)."""
    out = {}
    for name, pids in GROUPS.items():
        ticks = rss = 0
        for line in exec_node(SAMPLE.format(pids=pids)).split("\n"):
            parts = line.split()
            if len(parts) == 3:
                ticks += int(parts[0]) + int(parts[1])
                rss += int(parts[2])
        out[name] = (ticks, rss)
    return out


def cpu_percent(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], seconds: float
) -> dict[str, float]:
    hz = os.sysconf("SC_CLK_TCK")
    return {name: 100 * (after[name][0] - before[name][0]) / hz / seconds for name in GROUPS}


async def measure(url: str, origin: str, exec_node, args) -> dict[str, object]:  # type: ignore[no-untyped-def]
    client = await RfbClient.open(url, origin=origin)
    try:
        await client.request(incremental=False)
        await client.update()
        exec_node(
            "for i in $(seq 60); do DISPLAY=:10 xwininfo -root -tree | grep -q xterm && break; sleep 1; done"
        )
        # Still screen: one incremental request outstanding, nothing changes.
        before, started = sample(exec_node), time.monotonic()
        still = asyncio.ensure_future(asyncio.sleep(args.seconds))
        await frames(client, still)
        idle = cpu_percent(before, sample(exec_node), time.monotonic() - started)
        # Scrolling window.
        before, started = sample(exec_node), time.monotonic()
        scroll = asyncio.ensure_future(asyncio.to_thread(exec_node, SCROLL.format(seconds=args.seconds)))
        count, received, seconds = await frames(client, scroll)
        await scroll
        busy = cpu_percent(before, sample(exec_node), time.monotonic() - started)
        lat = await latency(client, args.keys)
        rss = {name: kib for name, (_, kib) in sample(exec_node).items()}
    finally:
        await client.close()
    return {
        "idle": idle,
        "busy": busy,
        "rss": rss,
        "fps": count / seconds,
        "mib_s": received / seconds / 2**20,
        "lat": lat,
    }


def run(args: argparse.Namespace) -> None:
    print_machine(
        "bench/rdp_bridge.py: the RDP bridge's cost on the node", {"lxc": lxc_version()}, postgres=False
    )
    with serving_stacklab("stacklab-bench-rdp-") as service:
        service.cli("env", "launch", str(LAB), "--learner", "bench", "--course", "bench", "--wait")
        env_id = next(e for e in json.loads(service.cli("env", "list", "--json")) if e["learner"] == "bench")[
            "id"
        ]

        def exec_node(command: str) -> str:
            return service.cli("env", "exec", env_id, "--node", "desk", "--", command, timeout_s=120)

        key = load_or_create_key("", service.env["STACKLAB_DATA_DIR"])
        token = TokenSigner(Vault(key).derive("access-tokens")).issue("learner", "bench", env_id, 3600)
        url = (
            service.url.replace("http://", "ws://")
            + f"/api/v1/environments/{env_id}/desktop/desk?token={token}"
        )
        opened = time.monotonic()
        try:
            result = asyncio.run(measure(url, service.url, exec_node, args))
        finally:
            service.cli("env", "delete", env_id, "--wait")
    first_open = time.monotonic() - opened
    rows = [
        [
            name,
            f"{result['rss'][name] / 1024:.0f}",
            f"{result['idle'][name]:.1f}",
            f"{result['busy'][name]:.1f}",
        ]  # type: ignore[index]
        for name in GROUPS
    ]
    print_table(rows, ("processes", "RSS MiB", "CPU % still", "CPU % scrolling"))
    lat: list[float] = result["lat"]  # type: ignore[assignment]
    print(
        f"browser side while scrolling: {result['fps']:.1f} frames/s, {result['mib_s']:.2f} MiB/s; "
        f"key->screen p50 {p50(lat) * 1000:.0f} ms, p99 {p99(lat) * 1000:.0f} ms ({args.keys} keys)"
    )
    print(
        f"# {args.seconds} s per phase; the whole measurement, the bridge's start included, "
        f"{first_open:.0f} s; CPU % of one core"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="seconds per phase (still, scrolling)")
    parser.add_argument("--keys", type=int, default=20, help="keys sent for the latency figure")
    run(parser.parse_args())
