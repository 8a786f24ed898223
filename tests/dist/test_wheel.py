"""The distributions carry everything: a wheel installed where there is no node serves a working lab.

`python -m build --sdist` from this checkout; the wheel is then built from the unpacked sdist with node and
npm off PATH (so the sdist must carry the built browser pages), installed into a fresh venv, and its own
`stacklab serve` (data dir and SQLite in a temporary dir, run from outside the checkout) opens the demo lab in
chromium: the page, the terminal bundle, a real LXC node and a shell that answers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, ROOT, serving_stacklab
from tests.e2e.helpers import run_in_terminal, wait_connected, wait_output
from tests.support.lxc import require_lxc

from stacklab import __version__

pytestmark = [pytest.mark.dist, pytest.mark.e2e, pytest.mark.lxc]

NODE_TOOLS = ("node", "nodejs", "npm", "npx", "corepack")
LAUNCH_S = 120
PAGES = ("lab.js", "lab-style.css", "admin.js")
EXAMPLES = ("hello.yaml", "cluster.yaml", "heat/lab.yaml", "heat/server.yaml", "bad/unknown-node.yaml")
MIGRATIONS = ("env.py", "script.py.mako", "versions/0001_initial_schema.py")


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout_s: float) -> str:
    """Run a build or install step; its output is the failure message when it fails."""
    result = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout_s)
    assert result.returncode == 0, (
        f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout


def _build(kind: str, source: Path, env: dict[str, str], out: Path) -> Path:
    """`python -m build --sdist|--wheel` of the source tree into `out`: the file it made."""
    _run([sys.executable, "-m", "build", f"--{kind}", "--outdir", str(out), "."], env, source, 300)
    (found,) = out.glob("stacklab-*.whl" if kind == "wheel" else "stacklab-*.tar.gz")
    return found


def _path_without_node(shims: Path) -> str:
    """PATH with every folder that holds node or npm replaced by a folder of links to all the rest."""
    folders = []
    for entry in os.environ["PATH"].split(os.pathsep):
        folder = Path(entry)
        if not any((folder / tool).exists() for tool in NODE_TOOLS):
            folders.append(entry)
            continue
        shim = shims / str(len(folders))
        shim.mkdir(mode=0o755)
        for item in folder.iterdir():
            if item.name not in NODE_TOOLS:
                (shim / item.name).symlink_to(item)
        folders.append(str(shim))
    path = os.pathsep.join(folders)
    assert not [tool for tool in NODE_TOOLS if shutil.which(tool, path=path)], "node is still on PATH"
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A scratch folder for the builds and the venv, removed at the end (a venv is ~160 MB)."""
    path = tmp_path_factory.mktemp("dist")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def no_node_env() -> Iterator[dict[str, str]]:
    """The environment of a machine without node; no PYTHONPATH, so nothing of the checkout leaks in.

    The PATH folders are readable by all: LXC runs its mount hooks as the containers' mapped root, which
    cannot enter pytest's 0700 temporary folders (the hooks' `sh` would not be found).
    """
    shims = Path(tempfile.mkdtemp(prefix="stacklab-no-node-"))
    shims.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = _path_without_node(shims)
    yield env
    shutil.rmtree(shims, ignore_errors=True)


@pytest.fixture(scope="module")
def sdist(work: Path) -> Path:
    """The sdist, built from this checkout as a release would be (npm builds the pages if they are stale)."""
    return _build("sdist", ROOT, dict(os.environ), work / "out")


@pytest.fixture(scope="module")
def wheel(work: Path, sdist: Path, no_node_env: dict[str, str]) -> Path:
    """The wheel, built from the unpacked sdist with no node on PATH."""
    with tarfile.open(sdist) as archive:
        archive.extractall(work / "sdist", filter="data")
    (source,) = (work / "sdist").iterdir()
    return _build("wheel", source, no_node_env, work / "out")


@pytest.fixture(scope="module")
def installed(work: Path, wheel: Path, no_node_env: dict[str, str]) -> Path:
    """A fresh venv with the wheel and its dependencies from the package index; its bin folder."""
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], no_node_env, work, 120)
    _run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], no_node_env, work, 600)
    return venv / "bin"


def test_sdist_carries_frontend_sources_and_the_built_pages(sdist: Path) -> None:
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    expected = {"setup.py", "frontend/package.json", "frontend/package-lock.json", "frontend/src/lab.js"}
    expected |= {f"src/stacklab/web/static/dist/{name}" for name in (*PAGES, ".built")}
    expected |= {f"src/stacklab/examples/{name}" for name in EXAMPLES}
    assert expected <= names, sorted(expected - names)
    assert not [name for name in names if "node_modules" in name]


def test_wheel_carries_pages_examples_and_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"stacklab/web/static/dist/{name}" for name in PAGES}
    expected |= {f"stacklab/web/static/{name}" for name in ("lab.html", "admin.html", "style.css")}
    expected |= {f"stacklab/examples/{name}" for name in EXAMPLES}
    expected |= {f"stacklab/store/migrations/{name}" for name in MIGRATIONS}
    assert expected <= names, sorted(expected - names)
    size_kib = wheel.stat().st_size // 1024
    print(f"\n{wheel.name}: {size_kib} KiB, {len(names)} files")


def test_installed_stacklab_prints_its_version(
    installed: Path, no_node_env: dict[str, str], work: Path
) -> None:
    assert (
        _run([str(installed / "stacklab"), "--version"], no_node_env, work, 60).strip()
        == f"stacklab {__version__}"
    )
    where = _run(
        [str(installed / "python"), "-c", "import stacklab; print(stacklab.__file__)"], no_node_env, work, 60
    )
    assert Path(where.strip()).is_relative_to(installed.parent), where


def test_installed_service_opens_a_lab_with_a_working_terminal(
    installed: Path, no_node_env: dict[str, str], work: Path
) -> None:
    require_lxc()
    from playwright import sync_api

    with (
        serving_stacklab(
            "stacklab-dist-", {"PATH": no_node_env["PATH"]}, [str(installed / "stacklab")], work
        ) as service,
        sync_api.sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(30_000)
            static: dict[str, int] = {}
            page.on("response", lambda r: static.update({r.url: r.status}) if "/static/" in r.url else None)
            page.goto(f"{service.url}/demo")
            page.locator("#lab-title", has_text="Hello, lab").wait_for()  # the example lab of the wheel
            try:
                wait_connected(page, timeout_s=LAUNCH_S)
            except sync_api.Error as exc:
                log = Path(service.env["STACKLAB_DATA_DIR"], "serve.log").read_text(errors="replace")
                log += service.cli("env", "list", "--json")
                pytest.fail(
                    f"no terminal: {exc}\npage:\n{page.inner_text('body')}\nserve.log:\n{log[-3000:]}"
                )
            assert page.locator(".term-host:not([hidden]) .xterm").is_visible()
            run_in_terminal(page, "echo from-the-wheel-$((40+2))")
            wait_output(page, "from-the-wheel-42", timeout_s=60)
            assert [status for url, status in static.items() if "/static/dist/lab.js" in url] == [200], static
            assert not {url: status for url, status in static.items() if status >= 400}
        finally:
            browser.close()
