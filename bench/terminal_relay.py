"""Terminal relay benchmark: one shell reached directly on the web process holding it vs relayed by the
other web process (docs/terminals.md), in the same run, on the same shell.

Two real `stacklab serve` processes on one PostgreSQL database behind nginx (tests/cluster/cluster.py),
one LXC lab. Figures: re-attach (connect to `ready`), keystroke echo latency (p50/p99), output
throughput through a PTY, and CPU seconds per MiB of the holder and of the relaying process. The direct
path is the peer; the relay's cost is the difference. Prints figures; never asserts.

    .venv/bin/python bench/terminal_relay.py      # as root, ~1 min; --keys 500 --mib 50 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import lxc_version, p50, p99, print_machine, print_table
from bench.terminal import PROMPT, WORKLOADS, BridgeTerm, cpu_s, echo_latencies, throughput
from bench.web_cluster import postgres_web_cluster
from tests.cluster.cluster import Cluster


async def attach(url: str) -> tuple[BridgeTerm, float]:
    began = time.perf_counter()
    term = await BridgeTerm.open(url)
    return term, time.perf_counter() - began


async def measure(
    cluster: Cluster, base: str, env_id: str, token: str, session: str, args: argparse.Namespace
):  # type: ignore[no-untyped-def]
    """Re-attach times, echo latencies, throughput and per-process CPU through `base`."""
    attaches = []
    for _ in range(args.attaches):
        term, seconds = await attach(cluster.ws_url(base, env_id, token, session, 1 << 40))
        attaches.append(seconds)
        await term.close()
    term, _ = await attach(cluster.ws_url(base, env_id, token, session, 1 << 40))
    await term.send(b"\r")
    await term.until(PROMPT)
    echoes = await echo_latencies(term, args.keys)
    await term.send(b"\x15")  # clear the line
    pids = [web.process.pid for web in cluster.webs]
    cpu_before = [cpu_s(pid) for pid in pids]
    count, seconds = await throughput(term, WORKLOADS["zeros"].format(mib=args.mib))
    cpu = [cpu_s(pid) - before for pid, before in zip(pids, cpu_before, strict=True)]
    await term.send(b"\r")  # the prompt after END may have come in END's frame
    await term.until(PROMPT)
    await term.close()
    return attaches, echoes, count / seconds / 1048576, [c / (count / 1048576) for c in cpu]


async def run(args: argparse.Namespace, cluster: Cluster) -> None:
    env_id, token = cluster.launch("bench")
    cluster.wait_ready(env_id, token)
    session = uuid.uuid4().hex[:16]
    holder = cluster.webs[0]
    first = await BridgeTerm.open(cluster.ws_url(holder.url, env_id, token, session))  # the shell lives here
    await first.send(b"\r")
    await first.until(PROMPT)
    await first.close()
    results: dict[str, list] = {"direct": [], "relayed": []}  # type: ignore[type-arg]
    for _ in range(args.rounds):
        for label, web in (("direct", cluster.webs[0]), ("relayed", cluster.webs[1])):
            results[label].append(await measure(cluster, web.url, env_id, token, session, args))
    rows = []
    for label, runs in results.items():
        attaches = [s for run_ in runs for s in run_[0]]
        echoes = [s for run_ in runs for s in run_[1]]
        mib_s = max(run_[2] for run_ in runs)
        cpu = [min(run_[3][i] for run_ in runs) for i in range(2)]
        rows.append(
            [
                label,
                f"{p50(attaches) * 1000:.1f}",
                f"{p50(echoes) * 1000:.2f} / {p99(echoes) * 1000:.2f}",
                f"{mib_s:.1f}",
                f"{cpu[0] * 1000:.1f}",
                f"{cpu[1] * 1000:.1f}",
            ]
        )
    header = ["path", "re-attach p50 ms", "echo p50 / p99 ms", "MiB/s (best)", "holder CPU ms/MiB"]
    print_table(rows, [*header, "relay CPU ms/MiB"])
    print(
        f"{args.rounds} rounds; {args.keys} keys and {args.mib} MiB of zeros per round and path; the "
        "holder is web-a, the relay web-b (in the direct rows, web-b's CPU is what it spends idle)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=500, help="keystrokes per round and path")
    parser.add_argument("--mib", type=int, default=50, help="MiB of output per round and path")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--attaches", type=int, default=20, help="re-attaches per round and path")
    args = parser.parse_args()
    print_machine("terminal relay benchmark", {"lxc": lxc_version()})
    with postgres_web_cluster() as cluster:
        asyncio.run(run(args, cluster))


if __name__ == "__main__":
    main()
