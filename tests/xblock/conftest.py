"""Tests of the stacklab XBlock distribution (xblock/): its OLX and hastexo import modules need no XBlock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

XBLOCK_SRC = Path(__file__).resolve().parents[2] / "xblock" / "src"
if str(XBLOCK_SRC) not in sys.path:
    sys.path.insert(0, str(XBLOCK_SRC))

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("STACKLAB_XBLOCK_VENV", "/var/lib/stacklab-xblock/venv"))
REQUIREMENTS = ["xblock-sdk", "django>=4.2,<5", "django-pyfs", "lazy"]
STAMP = VENV / ".stacklab-xblock-stamp"
ARTIFACTS = Path(os.environ.get("STACKLAB_TEST_ARTIFACTS", ROOT / "tests" / "artifacts"))
"""Where screenshots are kept after a run (gitignored; CI may upload the folder)."""


def _venv_python() -> Path:
    return VENV / "bin" / "python"


@pytest.fixture(scope="session")
def workbench_venv() -> Path:
    """The workbench venv with the XBlock installed (rebuilt only when the requirements change)."""
    wanted = json.dumps({"requirements": REQUIREMENTS, "xblock": str(ROOT / "xblock")})
    if STAMP.exists() and STAMP.read_text() == wanted and _venv_python().exists():
        return VENV
    VENV.parent.mkdir(parents=True, exist_ok=True)
    if not _venv_python().exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(_venv_python()), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, *REQUIREMENTS], check=True, timeout=900)
    subprocess.run([*pip, "-e", str(ROOT / "xblock")], check=True, timeout=600)
    STAMP.write_text(wanted)
    return VENV


def migrate_workbench(python: str, workdir: str | Path, env: dict[str, str]) -> None:
    """Create the workbench's database in `workdir` (Django's migrate, for the settings `env` names)."""
    subprocess.run(
        [python, "-m", "django", "migrate", "--run-syncdb", "--noinput"],
        cwd=workdir,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def page() -> Iterator[object]:
    """A chromium page (one per module) for the workbench's pages."""
    from playwright import sync_api
    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        context.set_default_timeout(30_000)
        yield context.new_page()
        context.close()
        browser.close()


@pytest.fixture(scope="module")
def artifacts(request: pytest.FixtureRequest) -> Path:
    """This module's folder of kept test artefacts (screenshots), emptied of a previous run's files."""
    folder = ARTIFACTS / request.module.__name__.rsplit(".", 1)[-1]
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    print(f"screenshots in {folder}")
    return folder
