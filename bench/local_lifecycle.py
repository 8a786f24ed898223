"""The local (LXC) provider through the engine, against the bare provider measured in the same run.

(a) launch of examples/cluster.yaml (3 nodes) through the engine (`Environments.launch` + `drive`) until
    every node answers SSH, versus the floor: the provider's own `create()` of the same nodes, then
    polling port 22 of every node for an SSH banner (no engine, no database). Rounds alternate (engine
    first on even rounds, floor first on odd ones); medians. Target: engine overhead <= max(10%, 200 ms).
(b) suspend and resume of a 3-node environment through the engine (request + drive), target 100 ms each,
    and the time from the resume request until every node answers SSH (target 1 s); the floor is the
    raw freezer write (`provider.suspend` / `provider.resume`, then SSH). Measured on cluster.yaml (whose
    before_suspend / after_resume hooks run over SSH) and on the same lab without its hooks.
(c) memory per idle node after ~10 s idle: the node's memory cgroup (usage_in_bytes, total_rss +
    total_cache), the PSS of its processes, and the lxc-start monitor's RSS / PSS.

Needs root, LXC, the cgroup v1 freezer and the base image (`stacklab image build`). Everything it creates
lives in a temporary data dir under /var/tmp and is deleted at the end, even on error.

    .venv/bin/python bench/local_lifecycle.py [--rounds 3] [--cycles 5] [--idle 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, lxc_version, median, print_machine, print_table, verdict

from stacklab.access.keys import generate_keypair
from stacklab.config import Settings
from stacklab.labs.loader import load_lab
from stacklab.labs.schema import Lab
from stacklab.providers.base import NodeSpec, StackRequest
from stacklab.providers.local import (
    LocalProvider,
    lxc,
)
from stacklab.providers.local.image import image_path, image_ready
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Desired, Observed
from stacklab.wiring import App, build_app

IMAGE_DIR = os.environ.get("STACKLAB_IMAGE_DIR", "/var/lib/stacklab/images")
LAB_PATH = ROOT / "examples" / "cluster.yaml"
BOOT_TIMEOUT_S = 90.0
MIB = 1024 * 1024


def preflight() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("lxc-start", "lxc-stop", "newuidmap", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not lxc.FREEZER_ROOT.is_dir():
        return "no cgroup v1 freezer"
    if not image_ready(image_path(IMAGE_DIR)):
        return f"no base image in {IMAGE_DIR}: run `stacklab image build` first"
    return None


# SSH --------------------------------------------------------------------------------------------------
async def banner(host: str, connect_timeout_s: float = 0.2, read_timeout_s: float = 2.0) -> bool:
    """True when port 22 returns an SSH banner.

    The connect timeout is short on purpose: a SYN sent before the node's interface is up is lost and
    TCP would only retry it after a second; a fresh connection every 200 ms keeps the floor tight.
    """
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, 22), connect_timeout_s)
    except (OSError, TimeoutError):
        return False
    try:
        return (await asyncio.wait_for(reader.readline(), read_timeout_s)).startswith(b"SSH-")
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()


async def all_answer_ssh(hosts: list[str], started: float, timeout_s: float = BOOT_TIMEOUT_S) -> float:
    """Seconds from `started` (perf_counter) until every host returned an SSH banner on port 22.

    A frozen node accepts the TCP connection (the kernel does that) but sends no banner until thawed,
    so a probe that is already waiting returns as soon as sshd runs again.
    """

    async def one(host: str) -> None:
        deadline = time.perf_counter() + timeout_s
        while not await banner(host):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{host}:22 gave no SSH banner within {timeout_s:.0f} s")
            await asyncio.sleep(0.01)

    await asyncio.gather(*(one(host) for host in hosts))
    return time.perf_counter() - started


def hosts_of(record: EnvironmentRecord) -> list[str]:
    return [node["host"] for node in (record.nodes or {}).values()]


# engine -----------------------------------------------------------------------------------------------
async def settle(app: App, env_id: str, want: str) -> EnvironmentRecord:
    record = await app.environments.drive(env_id, timeout_s=BOOT_TIMEOUT_S)
    if record.observed != want:
        provider = app.controller.providers.named("local")
        why = diagnose(provider, record.stack_name) if isinstance(provider, LocalProvider) else ""
        raise RuntimeError(
            f"environment {env_id} is {record.observed}/{record.progress} after {BOOT_TIMEOUT_S:.0f} s, "
            f"wanted {want}: {record.last_reason or ''} {record.last_error or ''}\n{why}"
        )
    return record


def diagnose(provider: LocalProvider, stack: str) -> str:
    """What each node's first boot is doing (read from the host side of its overlay)."""
    lines = []
    d = provider.stack_dir(stack)
    for node_dir in sorted(p for p in d.glob("*") if (p / "upper").is_dir()):
        upper = node_dir / "upper"
        try:
            status = (upper / "var/lib/stacklab/firstboot.status").read_text().strip()
        except OSError:
            status = "not finished"
        try:
            tail = (upper / "var/log/stacklab-firstboot.log").read_text().strip().splitlines()[-1]
        except (OSError, IndexError):
            tail = "-"
        lines.append(f"  node {node_dir.name}: firstboot {status}; last log line: {tail}")
    if any("running setup script" in line and "not finished" in line for line in lines):
        lines.append(
            "  hint: the setup script runs in stacklab-firstboot.service, ordered Before=ssh.service; a "
            "blocking `systemctl reload ssh` in it waits for ssh's start job, which waits for firstboot "
            "(a deadlock until TimeoutStartSec)."
        )
    return "\n".join(lines)


async def engine_launch(app: App, lab_path: Path, learner: str) -> tuple[float, EnvironmentRecord]:
    started = time.perf_counter()
    record = app.environments.launch(lab_path, learner, "bench")
    record = await settle(app, record.id, Observed.RUNNING)
    return time.perf_counter() - started, record


async def engine_delete(app: App, env_id: str) -> float:
    started = time.perf_counter()
    app.environments.request(env_id, Desired.DELETED, "Benchmark")
    await settle(app, env_id, Observed.DELETED)
    return time.perf_counter() - started


async def engine_suspend(app: App, env_id: str) -> float:
    started = time.perf_counter()
    app.environments.request(env_id, Desired.SUSPENDED, "Benchmark")
    await settle(app, env_id, Observed.SUSPENDED)
    return time.perf_counter() - started


async def engine_resume(app: App, record: EnvironmentRecord) -> tuple[float, float]:
    """(seconds until the engine reports the environment resumed, seconds until every node answers SSH)."""
    started = time.perf_counter()
    watcher = asyncio.create_task(all_answer_ssh(hosts_of(record), started))
    await asyncio.sleep(0)
    app.environments.request(record.id, Desired.RUNNING, "Benchmark")
    await settle(app, record.id, Observed.RUNNING)
    total = time.perf_counter() - started
    return total, await watcher


# floor ------------------------------------------------------------------------------------------------
def stack_request(lab: Lab, name: str, public_key: str, lab_dir: str) -> StackRequest:
    assert lab.local is not None
    nodes = tuple(
        NodeSpec(n.name, n.memory_mb, n.pids_max, tuple(n.packages), n.setup) for n in lab.local.nodes
    )
    return StackRequest(
        name=name,
        login_user=lab.login_user,
        public_key=public_key,
        nodes=nodes,
        config={"cloud": None},
        lab_dir=lab_dir,
    )


async def floor_launch(provider: LocalProvider, request: StackRequest) -> float:
    started = time.perf_counter()
    handle = await provider.create(request)
    try:
        return await all_answer_ssh(list(handle["nodes"].values()), started)
    except TimeoutError as exc:
        raise RuntimeError(f"{exc}\n{diagnose(provider, request.name)}") from None


async def floor_delete(provider: LocalProvider, name: str) -> float:
    started = time.perf_counter()
    await provider.delete({"name": name})
    return time.perf_counter() - started


async def raw_suspend(provider: LocalProvider, record: EnvironmentRecord) -> float:
    started = time.perf_counter()
    await provider.suspend(record.handle or {"name": record.stack_name})
    return time.perf_counter() - started


async def raw_resume(provider: LocalProvider, record: EnvironmentRecord) -> tuple[float, float]:
    started = time.perf_counter()
    watcher = asyncio.create_task(all_answer_ssh(hosts_of(record), started))
    await asyncio.sleep(0)
    await provider.resume(record.handle or {"name": record.stack_name})
    thawed = time.perf_counter() - started
    return thawed, await watcher


# memory -----------------------------------------------------------------------------------------------
def _smaps(pid: int) -> dict[str, int]:
    values: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                values[parts[0].rstrip(":")] = int(parts[1]) * 1024
    except OSError:
        pass
    return values


def _cgroup_pids(cgroup: Path) -> list[int]:
    pids: list[int] = []
    for procs in cgroup.rglob("cgroup.procs"):
        try:
            pids += [int(x) for x in procs.read_text().split()]
        except (OSError, ValueError):
            continue
    return pids


def _monitor_pid(root: Path, container: str) -> int | None:
    want = f"[lxc monitor] {root} {container}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if cmd.rstrip(b"\0 ") == want:
            return int(entry)
    return None


def node_memory(root: Path, container: str) -> dict[str, float]:
    cgroup = Path(f"/sys/fs/cgroup/memory/lxc.payload.{container}")
    stat = {}
    for line in (cgroup / "memory.stat").read_text().splitlines():
        key, value = line.split()
        stat[key] = int(value)
    usage = int((cgroup / "memory.usage_in_bytes").read_text())
    pids = _cgroup_pids(cgroup)
    pss = sum(_smaps(pid).get("Pss", 0) for pid in pids)
    monitor = _monitor_pid(root, container)
    mon = _smaps(monitor) if monitor else {}
    return {
        "usage": usage / MIB,
        "rss_cache": (stat.get("total_rss", 0) + stat.get("total_cache", 0)) / MIB,
        "rss": stat.get("total_rss", 0) / MIB,
        "cache": stat.get("total_cache", 0) / MIB,
        "processes": len(pids),
        "pss": pss / MIB,
        "monitor_rss": mon.get("Rss", 0) / MIB,
        "monitor_pss": mon.get("Pss", 0) / MIB,
    }


# the run ----------------------------------------------------------------------------------------------
def lab_without_hooks(source: Path, work: Path) -> Path:
    """A copy of the lab without its lifecycle hooks."""
    data = yaml.safe_load(source.read_text())
    data.pop("hooks", None)
    plain = work / f"{source.stem}-nohooks.yaml"
    plain.write_text(yaml.safe_dump(data, sort_keys=False))
    return plain


def fmt_s(values: list[float]) -> str:
    return f"{median(values) * 1000:.0f} ms (" + ", ".join(f"{v * 1000:.0f}" for v in values) + ")"


async def run(args: argparse.Namespace, work: Path, rows: list[list[str]]) -> None:
    settings = Settings(data_dir=str(work), image_dir=IMAGE_DIR)
    app = build_app(settings)
    provider = app.controller.providers.named("local")
    assert isinstance(provider, LocalProvider)
    lab_path, plain_path = args.lab, lab_without_hooks(args.lab, work)
    lab = load_lab(lab_path)
    lab_dir = str(args.lab.resolve().parent)
    key = generate_keypair("stacklab-bench")
    try:
        print(f"data dir {work}, containers under {provider.root}", flush=True)
        print(f"lab {lab_path}")
        # Warm-up (not counted): host preparation, the image check and page cache for both paths.
        warm = stack_request(lab, "slbench-warm", key.public, lab_dir)
        seconds = await floor_launch(provider, warm)
        await provider.delete({"name": "slbench-warm"})
        print(f"warm-up: bare create until SSH {seconds * 1000:.0f} ms (not counted)", flush=True)

        # (a) launch --------------------------------------------------------------------------------
        engine_s: list[float] = []
        floor_s: list[float] = []
        engine_del: list[float] = []
        floor_del: list[float] = []
        kept: EnvironmentRecord | None = None
        for round_ in range(args.rounds):
            order = ("engine", "floor") if round_ % 2 == 0 else ("floor", "engine")
            for which in order:
                if which == "engine":
                    seconds, record = await engine_launch(app, lab_path, f"ann{round_}")
                    engine_s.append(seconds)
                    print(f"round {round_}: engine launch until SSH {seconds * 1000:.0f} ms", flush=True)
                    if round_ == args.rounds - 1:
                        kept = record
                    else:
                        engine_del.append(await engine_delete(app, record.id))
                else:
                    name = f"slbench-floor{round_}"
                    seconds = await floor_launch(provider, stack_request(lab, name, key.public, lab_dir))
                    floor_s.append(seconds)
                    print(f"round {round_}: bare create until SSH {seconds * 1000:.0f} ms", flush=True)
                    floor_del.append(await floor_delete(provider, name))
        assert kept is not None
        lab_name = args.lab.name
        overhead = median(engine_s) - median(floor_s)
        allowed = max(0.10 * median(floor_s), 0.200)
        rows.append(
            [
                f"(a) launch {lab_name} until SSH, engine",
                fmt_s(engine_s),
                "-",
                f"bare create + SSH poll: {fmt_s(floor_s)}",
            ]
        )
        rows.append(
            [
                "(a) engine overhead on launch",
                f"{overhead * 1000:+.0f} ms ({overhead / median(floor_s) * 100:+.0f}%)",
                f"<= {allowed * 1000:.0f} ms = max(10%, 200 ms) ({verdict(overhead, allowed)})",
                "difference of medians",
            ]
        )
        rows.append(
            [
                "(a) delete a 3-node environment, engine",
                fmt_s(engine_del) if engine_del else "-",
                "-",
                f"provider.delete: {fmt_s(floor_del)}",
            ]
        )

        # (b) suspend / resume ----------------------------------------------------------------------
        seconds, plain = await engine_launch(app, plain_path, "bob")
        print(f"launched the hook-less copy in {seconds * 1000:.0f} ms", flush=True)
        kept = app.repo.get(kept.id)
        results: dict[str, list[float]] = {
            k: []
            for k in (
                "susp_hooks",
                "res_hooks",
                "ssh_hooks",
                "susp_plain",
                "res_plain",
                "ssh_plain",
                "raw_susp",
                "raw_res",
                "raw_ssh",
            )
        }
        for cycle in range(args.cycles):
            results["susp_hooks"].append(await engine_suspend(app, kept.id))
            total, ssh = await engine_resume(app, kept)
            results["res_hooks"].append(total)
            results["ssh_hooks"].append(ssh)
            results["susp_plain"].append(await engine_suspend(app, plain.id))
            total, ssh = await engine_resume(app, plain)
            results["res_plain"].append(total)
            results["ssh_plain"].append(ssh)
            results["raw_susp"].append(await raw_suspend(provider, plain))
            thawed, ssh = await raw_resume(provider, plain)
            results["raw_res"].append(thawed)
            results["raw_ssh"].append(ssh)
            print(
                f"cycle {cycle}: " + ", ".join(f"{k} {v[-1] * 1000:.0f} ms" for k, v in results.items()),
                flush=True,
            )
        r = results
        rows += [
            [
                "(b) suspend, engine (request + drive), lab with hooks",
                fmt_s(r["susp_hooks"]),
                f"100 ms ({verdict(median(r['susp_hooks']), 0.1)})",
                f"raw freeze: {fmt_s(r['raw_susp'])}",
            ],
            [
                "(b) suspend, engine, same lab without hooks",
                fmt_s(r["susp_plain"]),
                f"100 ms ({verdict(median(r['susp_plain']), 0.1)})",
                f"raw freeze: {fmt_s(r['raw_susp'])}",
            ],
            [
                "(b) resume, engine (request + drive), lab with hooks",
                fmt_s(r["res_hooks"]),
                f"100 ms ({verdict(median(r['res_hooks']), 0.1)})",
                f"raw thaw: {fmt_s(r['raw_res'])}",
            ],
            [
                "(b) resume, engine, same lab without hooks",
                fmt_s(r["res_plain"]),
                f"100 ms ({verdict(median(r['res_plain']), 0.1)})",
                f"raw thaw: {fmt_s(r['raw_res'])}",
            ],
            [
                "(b) resume request -> all nodes answer SSH, with hooks",
                fmt_s(r["ssh_hooks"]),
                f"1 s ({verdict(median(r['ssh_hooks']), 1.0)})",
                f"raw thaw -> SSH: {fmt_s(r['raw_ssh'])}",
            ],
            [
                "(b) resume request -> all nodes answer SSH, no hooks",
                fmt_s(r["ssh_plain"]),
                f"1 s ({verdict(median(r['ssh_plain']), 1.0)})",
                f"raw thaw -> SSH: {fmt_s(r['raw_ssh'])}",
            ],
        ]

        # (c) memory --------------------------------------------------------------------------------
        print(f"idling {args.idle:.0f} s before measuring memory ...", flush=True)
        containers = [
            provider.container(record.stack_name, node)
            for record in (app.repo.get(kept.id), app.repo.get(plain.id))
            for node in (record.nodes or {})
        ]
        cpu_before = {c: lxc.cpu_usage_ns(c) or 0 for c in containers}
        await asyncio.sleep(args.idle)
        cpu_ms = {c: ((lxc.cpu_usage_ns(c) or 0) - cpu_before[c]) / 1e6 for c in containers}
        memory = {c: node_memory(provider.root, c) for c in containers}
        print(
            f"{'container':<28} {'usage':>7} {'rss+cache':>9} {'rss':>6} {'cache':>6} {'procs':>5} "
            f"{'PSS':>6} {'mon RSS':>7} {'mon PSS':>7} {'CPU/idle':>8}"
        )
        for c, m in memory.items():
            print(
                f"{c:<28} {m['usage']:7.1f} {m['rss_cache']:9.1f} {m['rss']:6.1f} {m['cache']:6.1f} "
                f"{m['processes']:5.0f} {m['pss']:6.1f} {m['monitor_rss']:7.1f} {m['monitor_pss']:7.1f} "
                f"{cpu_ms[c]:6.1f}ms"
            )
        print("(MiB; cgroup figures from /sys/fs/cgroup/memory/lxc.payload.<container>/)", flush=True)

        def med(field: str) -> float:
            return median([m[field] for m in memory.values()])

        rows += [
            [
                "(c) idle node: memory cgroup total_rss + total_cache",
                f"{med('rss_cache'):.1f} MiB (rss {med('rss'):.1f} + cache {med('cache'):.1f})",
                "-",
                f"usage_in_bytes {med('usage'):.1f} MiB",
            ],
            [
                "(c) idle node: PSS of its processes",
                f"{med('pss'):.1f} MiB ({med('processes'):.0f} processes)",
                "-",
                "local-nodes.md (earlier run): 12.3 MiB",
            ],
            [
                "(c) idle node: lxc-start monitor",
                f"RSS {med('monitor_rss'):.1f} MiB, PSS {med('monitor_pss'):.1f} MiB",
                "-",
                "local-nodes.md (earlier run): 3 MiB",
            ],
            [
                "(c) idle node: total (cgroup rss+cache + monitor PSS)",
                f"{med('rss_cache') + med('monitor_pss'):.1f} MiB",
                "-",
                f"median CPU while idle: {median(list(cpu_ms.values())):.1f} ms per {args.idle:.0f} s",
            ],
        ]
        for record in (kept, plain):
            await engine_delete(app, record.id)
    finally:
        leftovers = await provider.list()
        for name in leftovers:
            try:
                await provider.delete({"name": name})
            except Exception as exc:
                print(f"cleanup: deleting {name} failed: {exc}", file=sys.stderr)
        remaining = await provider.list()
        if remaining:
            print(f"cleanup: still present: {remaining}", file=sys.stderr)
        app.close()


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="launch rounds (engine and floor each)")
    parser.add_argument("--cycles", type=int, default=5, help="suspend/resume cycles")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idling before memory")
    parser.add_argument("--lab", type=Path, default=LAB_PATH, help="the 3-node lab (default: %(default)s)")
    args = parser.parse_args()
    reason = preflight()
    if reason:
        print(f"local lifecycle benchmark skipped: {reason}", file=sys.stderr)
        return 2
    print_machine(
        "local (LXC) lifecycle benchmark",
        {"lxc": lxc_version(), "base image": str(image_path(IMAGE_DIR))},
        postgres=False,
    )
    work = Path(tempfile.mkdtemp(prefix="stacklab-bench-", dir="/var/tmp"))
    work.chmod(0o755)
    rows: list[list[str]] = []
    try:
        await run(args, work, rows)
    except RuntimeError as exc:
        print(f"\nlocal lifecycle benchmark stopped: {exc}", file=sys.stderr)
        return 1
    finally:
        mounted = lxc.mounts_under(work)
        if mounted:
            print(f"cleanup: {work} kept, still mounted: {mounted}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
