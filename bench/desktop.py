"""Desktop relay benchmark: the service's RFB relay over SSH against noVNC's usual path, websockify.

One node of examples/desktop.yaml (the desktop recipe: Xvnc on the node's localhost). Two paths to the same
Xvnc in the same run, measured with the same RFB client (tests/support/rfb.py: ZRLE, CopyRect, Raw, pixels
not decoded, one incremental update request outstanding, as noVNC keeps):

- "stacklab": `stacklab serve`'s desktop websocket (token admission, RFB handshake by the service, a
  direct-tcpip channel of the node's pooled SSH connection, input filtered);
- "websockify": PyPI websockify on this host, straight to the node's VNC port (exposed on the node's
  address for this run only, by socat on the node: Xvnc itself listens on localhost).

Figures: frames per second and bandwidth while a window over most of the screen scrolls random text as fast
as xterm draws it, for a few seconds (`base64 /dev/urandom`); input-to-screen latency (a key sent to the
xterm until the framebuffer update that shows it). Prints figures; never asserts.

    .venv/bin/python bench/desktop.py          # as root, ~2 min; --seconds 5 --keys 40 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, lxc_version, p50, p99, print_machine, print_table
from tests.e2e.conftest import Stacklab, free_port, serving_stacklab, stop
from tests.support.rfb import RfbClient

from stacklab.secrets import Vault, load_or_create_key
from stacklab.web.tokens import TokenSigner

LAB = ROOT / "src" / "stacklab" / "examples" / "desktop.yaml"
PEER_PORT = 5911  # socat on the node: <node address>:5911 -> localhost:5901
XTERM_AT = (300, 250)
XK_BACKSPACE = 0xFF08
SCROLL = (  # a window over most of the screen, scrolling random text as fast as xterm draws it
    "DISPLAY=:1 timeout {seconds} xterm -geometry 200x56+0+0 -e sh -c 'base64 /dev/urandom' || true"
)


async def frames(client: RfbClient, until: asyncio.Future[str]) -> tuple[int, int, float]:
    """Updates and bytes received until `until` is done (the scrolling ended): (frames, bytes, s)."""
    count = received = 0
    started = time.monotonic()
    while not until.done():
        await client.request()
        try:
            update = await asyncio.wait_for(client.update(), 1.0)
        except TimeoutError:  # nothing changed for a second: the script is over or not started
            continue
        if update.rects:
            count += 1
            received += update.bytes
    return count, received, time.monotonic() - started


async def latency(client: RfbClient, keys: int) -> list[float]:
    """Seconds from a key sent to the xterm to the update that shows it (then the key is erased)."""
    await client.click(*XTERM_AT)
    await client.request(incremental=False)
    await client.update()
    samples = []
    for index in range(keys):
        await client.request()
        sent = time.monotonic()
        await client.key(ord("x") if index % 2 == 0 else XK_BACKSPACE)
        await asyncio.wait_for(client.update(), 5.0)
        samples.append(time.monotonic() - sent)
        await asyncio.sleep(0.05)  # let xterm settle: one change per sample
    return samples


async def measure(url: str, control: bool, origin: str | None, exec_node, args) -> dict[str, float]:  # type: ignore[no-untyped-def]
    client = await RfbClient.open(url, origin=origin, control=control)
    try:
        await client.request(incremental=False)
        await client.update()
        scroll = asyncio.ensure_future(asyncio.to_thread(exec_node, SCROLL.format(seconds=args.seconds)))
        count, received, seconds = await frames(client, scroll)
        await scroll
        lat = await latency(client, args.keys)
    finally:
        await client.close()
    return {
        "fps": count / seconds,
        "mib_s": received / seconds / 2**20,
        "lat_p50": p50(lat),
        "lat_p99": p99(lat),
    }


def websockify(target: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    binary = shutil.which("websockify", path=str(Path(sys.executable).parent)) or "websockify"
    proc = subprocess.Popen(
        [binary, f"127.0.0.1:{port}", target], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        time.sleep(0.1)
    stop(proc)
    raise RuntimeError("websockify did not start (pip install websockify)")


def run(args: argparse.Namespace) -> None:
    print_machine("bench/desktop.py: desktop relay vs websockify", {"lxc": lxc_version()}, postgres=False)
    with serving_stacklab("stacklab-bench-desktop-") as service:
        service.cli("env", "launch", str(LAB), "--learner", "bench", "--course", "bench", "--wait")
        env = next(e for e in json.loads(service.cli("env", "list", "--json")) if e["learner"] == "bench")
        env_id = env["id"]

        def exec_node(command: str) -> str:
            return service.cli("env", "exec", env_id, "--node", "desk", "--", command, timeout_s=120)

        address = json.loads(service.cli("env", "show", env_id, "--json"))["nodes"]["desk"]["host"]
        exec_node(
            "for i in $(seq 60); do xwininfo -display :1 -root -tree | grep -q xterm && break; sleep 1; done"
        )
        exec_node(
            "sudo apt-get -qq update >/dev/null && sudo apt-get -qq install -y socat >/dev/null && "
            f"(sudo setsid socat TCP-LISTEN:{PEER_PORT},bind={address},fork,reuseaddr TCP:127.0.0.1:5901 "
            ">/dev/null 2>&1 < /dev/null &)"
        )
        proc, port = websockify(f"{address}:{PEER_PORT}")
        try:
            results = asyncio.run(_all(service, env_id, port, exec_node, args))
        finally:
            stop(proc)
            service.cli("env", "delete", env_id, "--wait")
    rows = []
    for name, runs in results.items():
        mean = {key: sum(r[key] for r in runs) / len(runs) for key in runs[0]}
        rows.append(
            [
                name,
                f"{mean['fps']:.1f}",
                f"{mean['mib_s']:.2f}",
                f"{mean['lat_p50'] * 1000:.1f}",
                f"{mean['lat_p99'] * 1000:.1f}",
            ]
        )
    print_table(rows, ("path", "frames/s", "MiB/s", "key->screen p50 ms", "p99 ms"))
    print(f"# {args.rounds} round(s) per path, alternating; {args.seconds} s scrolling, {args.keys} keys")


async def _all(
    service: Stacklab, env_id: str, port: int, exec_node, args
) -> dict[str, list[dict[str, float]]]:  # type: ignore[no-untyped-def]
    key = load_or_create_key("", service.env["STACKLAB_DATA_DIR"])
    token = TokenSigner(Vault(key).derive("access-tokens")).issue("learner", "bench", env_id, 3600)
    ours = (
        service.url.replace("http://", "ws://") + f"/api/v1/environments/{env_id}/desktop/desk?token={token}"
    )
    peer = f"ws://127.0.0.1:{port}/"
    results: dict[str, list[dict[str, float]]] = {"stacklab": [], "websockify": []}
    for _ in range(args.rounds):
        results["stacklab"].append(await measure(ours, True, service.url, exec_node, args))
        results["websockify"].append(await measure(peer, False, None, exec_node, args))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="seconds of scrolling per measurement")
    parser.add_argument("--keys", type=int, default=40, help="keys sent per latency measurement")
    parser.add_argument("--rounds", type=int, default=2, help="measurements per path (alternating)")
    run(parser.parse_args())
