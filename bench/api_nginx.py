"""Learner API with two web processes behind nginx vs one process direct, in the same run.

tests/cluster/cluster.py starts two real `stacklab serve` processes (embedded runner, LXC) on one
PostgreSQL database and a real nginx balancing round-robin between them; `--envs` hello labs are launched
through nginx (each learner with its own token). wrk then drives, with bench/api_load.py's scripts and
runner, each mix at saturation (`--connections`, no pause): `GET /healthz` (the floor: no auth, no
database), status GET, activity POST and 90% GET / 10% POST, once against web-a directly and once
against nginx, alternating, `--rounds` times. Every run prints its rate, latency and the CPU% (of one
core) of each process a request crosses (web-a, web-b, nginx's worker), of wrk and of everything else on
the host; the table keeps each target's best round. Prints figures; never asserts.
See bench/README.md, "api_nginx.py".

    .venv/bin/python bench/api_nginx.py     # as root, ~4 min; --envs 4 --duration 10 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.api_load import Learner, Run, measure
from bench.common import lxc_version, print_machine, print_table
from bench.web_cluster import postgres_web_cluster
from tests.cluster.cluster import Cluster

MIXES = {
    "healthz": "GET /healthz (floor)",
    "status": "status GET",
    "activity": "activity POST",
    "mix": "90% GET / 10% POST",
}
TARGETS = ("direct", "nginx")


def nginx_worker(master: int) -> int:
    """The pid of nginx's one worker (worker_processes 1): it, not the master, carries the requests."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return int(children[0]) if children else master


def launch(cluster: Cluster, count: int) -> list[Learner]:
    """`count` hello labs launched through nginx, each ready (its learner's token kept)."""
    learners = [Learner(*cluster.launch(f"bench-{n:03d}")) for n in range(count)]
    for learner in learners:
        cluster.wait_ready(learner.env, learner.token)
    return learners


def cpu(run: Run) -> str:
    web_a, web_b, nginx = run.parts
    return f"web-a {web_a:.0f}% web-b {web_b:.0f}% nginx {nginx:.0f}%"


async def bench(cluster: Cluster, args: argparse.Namespace) -> None:
    learners = await asyncio.to_thread(launch, cluster, args.envs)
    assert cluster.nginx is not None
    pids = [web.process.pid for web in cluster.webs] + [nginx_worker(cluster.nginx.pid)]
    urls = {"direct": cluster.webs[0].url, "nginx": cluster.url}
    print(
        f"{len(learners)} labs ready; saturate: {args.connections} connections, no pause, "
        f"{args.duration:g} s each, wrk -t1; direct = web-a alone (web-b idles), nginx = round-robin "
        "over web-a and web-b; CPU% of one core: web-a, web-b, nginx's worker (in that order)"
    )
    scripts = tempfile.mkdtemp(prefix="stacklab-bench-nginx-")
    best: dict[tuple[str, str], Run] = {}
    try:
        warm_up = argparse.Namespace(**{**vars(args), "duration": 3})
        for target in TARGETS:
            await measure((urls[target], pids), scripts, learners, "status", 16, 0, warm_up, f"{target}/warm")
        print("(warm-ups above, not counted)")
        for _ in range(args.rounds):
            for mix in MIXES:
                for target in TARGETS:
                    run = await measure(
                        (urls[target], pids),
                        scripts,
                        learners,
                        mix,
                        args.connections,
                        0,
                        args,
                        f"{target}/{mix}",
                    )
                    print(f"    {cpu(run)}", flush=True)
                    if (target, mix) not in best or run.rate > best[target, mix].rate:
                        best[target, mix] = run
    finally:
        shutil.rmtree(scripts, ignore_errors=True)

    rows = []
    for mix, name in MIXES.items():
        direct, nginx = best["direct", mix], best["nginx", mix]
        rows.append(
            (
                name,
                f"{direct.figure()}; {cpu(direct)}",
                f"{nginx.figure()}; {cpu(nginx)}",
                f"{nginx.rate / direct.rate:.2f}x" if direct.rate else "-",
                f"{direct.errors} / {nginx.errors}",
            )
        )
    print()
    print_table(
        rows, ("mix (saturated)", "one process direct", "two behind nginx", "nginx / direct", "errors")
    )
    print(f"best of {args.rounds} rounds per target and mix; the healthz row is the floor of each path.")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", type=int, default=4, help="hello labs launched (distinct learner tokens)")
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32, help="connections of every run")
    parser.add_argument("--rounds", type=int, default=2, help="runs per target and mix (the best is kept)")
    args = parser.parse_args()
    args.pin = False  # two servers and nginx on shared cores: nothing is pinned
    if os.geteuid() != 0:
        sys.exit("the local (LXC) provider needs root")
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install -y {tool}")
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split(" Copyright")[0]
    print_machine(
        "learner API: two web processes behind nginx vs one process direct",
        {
            "lxc": lxc_version(),
            "wrk": wrk.strip(),
            "nginx": nginx.removeprefix("nginx version: "),
            "server": "2 x stacklab serve (uvicorn, 1 process each), embedded runner, PostgreSQL",
        },
    )
    with postgres_web_cluster() as cluster:
        asyncio.run(bench(cluster, args))


if __name__ == "__main__":
    main()
