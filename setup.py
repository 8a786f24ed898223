"""Puts the built browser pages into stacklab's distributions, so that installing a wheel needs no node.

Everything else is declared in pyproject.toml. This file adds one step before `build_py` and `sdist`: when
the bundle in src/stacklab/web/static/dist/ (xterm.js and our page modules, bundled by esbuild) is missing or
older than its sources in frontend/, run `npm ci` (when node_modules is missing or older than the lock file)
and `npm run build`. The sdist carries frontend/ and the built bundle with its stamp, so a wheel built from it
needs no node either. Editable installs (`pip install -e .`) skip the step: they serve the pages from the
checkout, where `scripts/dev setup` builds them (after installing node, which it does after pip).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist
from setuptools.errors import ExecError, SetupError

ROOT = Path(__file__).resolve().parent
FRONTEND = ROOT / "frontend"
BUNDLE_DIR = ROOT / "src" / "stacklab" / "web" / "static" / "dist"
STAMP = BUNDLE_DIR / ".built"  # touched after each build, as scripts/dev does
PAGES_LOAD = ("lab.js", "lab-style.css", "admin.js")
SOURCES = ("src", "package.json", "package-lock.json", "build.mjs")


def _missing() -> list[str]:
    """The bundle files the pages load that are not there."""
    return [name for name in PAGES_LOAD if not (BUNDLE_DIR / name).is_file()]


def _newest_source() -> float:
    """The latest change to the frontend's sources (0 when frontend/ is not there to rebuild from)."""
    paths = [FRONTEND / name for name in SOURCES]
    files = [f for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()]
    return max((f.stat().st_mtime for f in files), default=0.0)


def bundle_is_current() -> bool:
    """Built, stamped, and no source changed since: what an sdist unpacked anywhere carries."""
    return not _missing() and STAMP.is_file() and _newest_source() <= STAMP.stat().st_mtime


def _npm(npm: str, *args: str) -> None:
    try:
        subprocess.run([npm, *args], cwd=FRONTEND, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ExecError(f"stacklab: `npm {' '.join(args)}` in {FRONTEND} failed: {exc}") from exc


def build_frontend() -> None:
    """Build the bundle when it is missing or stale; fail in one line when it cannot be had at all."""
    if bundle_is_current():
        return
    npm = shutil.which("npm")
    if npm is None or not FRONTEND.is_dir():
        missing = _missing()
        if missing:
            raise SetupError(
                f"stacklab: the browser terminal is not built ({BUNDLE_DIR.relative_to(ROOT)}/{missing[0]} "
                "is missing) and npm is not on PATH to build it: install Node.js and npm "
                "(Debian: apt-get install nodejs npm), or build from stacklab's sdist, which carries it"
            )
        print("stacklab: npm is not on PATH; packaging the browser pages as built, though frontend/ is newer")
        return
    lock = FRONTEND / "node_modules" / ".package-lock.json"
    if not lock.is_file() or lock.stat().st_mtime < (FRONTEND / "package-lock.json").stat().st_mtime:
        _npm(npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
    _npm(npm, "run", "--silent", "build", "--", "--quiet")
    STAMP.touch()


class BuildPyWithFrontend(build_py):
    """build_py that first makes sure the browser bundle is there to be copied as package data."""

    def run(self) -> None:
        if not self.editable_mode:
            build_frontend()
        super().run()


class SdistWithFrontend(sdist):
    """sdist that carries a current bundle, so that building a wheel from it needs no node."""

    def run(self) -> None:
        build_frontend()
        super().run()


setup(cmdclass={"build_py": BuildPyWithFrontend, "sdist": SdistWithFrontend})
