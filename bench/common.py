"""Shared by the benchmarks: the machine they ran on, timing statistics and a figures table.

Benchmarks print figures and compare them with a floor or a peer measured in the same run; they never
pass or fail on time.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_ADMIN_URL = os.environ.get(
    "STACKLAB_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/{db}"
)


# machine ----------------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def postgres_version(url: str | None = None) -> str:
    """The server's version, or why it could not be asked."""
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(url or POSTGRES_ADMIN_URL.format(db="postgres"))
        try:
            with engine.connect() as connection:
                return str(connection.execute(text("SHOW server_version")).scalar())
        finally:
            engine.dispose()
    except Exception as exc:
        return f"not reachable ({type(exc).__name__})"


def lxc_version() -> str:
    import subprocess

    try:
        return subprocess.run(["lxc-start", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "not installed"


def machine(extra: dict[str, str] | None = None, *, postgres: bool = True) -> dict[str, str]:
    import sqlalchemy

    load = os.getloadavg()
    info = {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": _memory_gib(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "sqlalchemy": sqlalchemy.__version__,
        "sqlite": sqlite3.sqlite_version,
        "load avg (1/5/15 min)": " ".join(f"{x:.2f}" for x in load),
    }
    if postgres:
        info["postgresql"] = postgres_version()
    info.update(extra or {})
    return info


def print_machine(title: str, extra: dict[str, str] | None = None, *, postgres: bool = True) -> None:
    print(f"# {title}")
    print(f"# run at {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    for key, value in machine(extra, postgres=postgres).items():
        print(f"#   {key:<22} {value}")
    print(flush=True)


# timing -----------------------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def p50(values: Sequence[float]) -> float:
    return percentile(values, 50)


def p99(values: Sequence[float]) -> float:
    return percentile(values, 99)


def summary_ms(values: Sequence[float]) -> str:
    """`median (p99, n)` of durations given in seconds, shown in milliseconds."""
    return f"{median(values) * 1000:.2f} ms (p99 {p99(values) * 1000:.2f}, n={len(values)})"


class Stopwatch:
    """Elapsed seconds of a `with` block: `with timed() as t: ...; t.seconds`."""

    seconds: float = 0.0


@contextmanager
def timed() -> Iterator[Stopwatch]:
    watch = Stopwatch()
    start = time.perf_counter()
    try:
        yield watch
    finally:
        watch.seconds = time.perf_counter() - start


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# output -----------------------------------------------------------------------------------------------
def print_table(
    rows: Sequence[Sequence[str]], header: Sequence[str] = ("figure", "value", "target", "floor/peer")
) -> None:
    """A plain-text table, columns as wide as their widest cell."""
    table = [list(header), *[list(map(str, row)) for row in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    line = "+-" + "-+-".join("-" * w for w in widths) + "-+"
    print(line)
    for index, row in enumerate(table):
        print("| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |")
        if index == 0:
            print(line)
    print(line, flush=True)


def verdict(value: float, target: float, lower_is_better: bool = True) -> str:
    met = value <= target if lower_is_better else value >= target
    return "met" if met else "MISSED"
