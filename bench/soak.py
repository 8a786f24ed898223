"""Soak: many learners at random against a controller that meets provider faults, hangs and kills.

The same driver as tests/reliability/test_soak.py (tests/support/soak.py), run longer: learners launch,
use, suspend, resume, reset and delete labs on the in-memory provider (nodes answer on a real SSH server
on loopback) while the controller process is killed and restarted; the clock is fake, so idle suspends
and age deletes happen within the run. At the end the invariants are checked (one environment per
course/lab/learner, every stack owned, nothing lost or stuck) and the figures printed. **Peer:** the same
seed and steps without any fault or kill, on SQLite, in the same run: the cost of the faults in passes
and time. It exits 1 when an invariant is broken (never on time).

    .venv/bin/python bench/soak.py [--learners 200] [--steps 5000] [--seed N] [--database-url URL] [--no-peer]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import print_machine, print_table
from tests.support.soak import NO_FAULTS, Figures, Rates, Soak, soak_settings
from tests.support.sshd import start_sshd


async def soak(url: str | None, work: Path, args: argparse.Namespace, rates: Rates) -> Figures:
    work.mkdir()
    server, port = await start_sshd()
    settings = soak_settings(work / "data", url or f"sqlite:///{work / 'soak.db'}")
    run = Soak(settings, work, ("127.0.0.1", port), args.learners, args.seed, rates)
    try:
        return await run.run(args.steps)
    finally:
        run.close()
        server.close()
        await server.wait_closed()


def rows(label: str, figures: Figures) -> list[list[str]]:
    must_be_zero = (
        f"leaks {figures.leaks}, lost {figures.lost}, stuck {figures.stuck}, swept live {figures.victims}"
    )
    return [
        [f"{label}: wall time", f"{figures.wall_s:.1f} s", "-", f"{figures.fake_hours:.1f} h fake"],
        [f"{label}: learner operations", str(sum(figures.operations.values())), "-", "-"],
        [f"{label}: passes / environment passes", f"{figures.passes} / {figures.reconciles}", "-", "-"],
        [f"{label}: kills and restarts", str(figures.kills), "-", "-"],
        [f"{label}: stacks created / deleted", f"{figures.creates} / {figures.deletes}", "-", "-"],
        [f"{label}: violations", str(figures.violations), "0", must_be_zero],
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--learners", type=int, default=200)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one (printed)")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary dir")
    parser.add_argument("--no-peer", action="store_true", help="skip the fault-free run")
    args = parser.parse_args()
    logging.getLogger("stacklab").setLevel(logging.CRITICAL)  # the injected errors are logged as they happen
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**32)
    print_machine("soak", {"seed": str(args.seed)}, postgres=bool(args.database_url))
    if args.database_url:
        print("# note: a server database must be empty; the run creates the schema in it\n")
    table: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="stacklab-soak-") as tmp:
        figures = await soak(args.database_url, Path(tmp) / "faults", args, Rates())
        print("\n".join(figures.lines()), end="\n\n", flush=True)
        table += rows("with faults", figures)
        if not args.no_peer:
            peer = await soak(None, Path(tmp) / "peer", args, NO_FAULTS)  # SQLite: a fresh database
            print("\n".join(peer.lines()), end="\n\n", flush=True)
            table += rows("peer, no faults, SQLite", peer)
    print_table(table)
    if figures.violations:
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
