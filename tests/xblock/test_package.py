"""The XBlock as it ships: the wheel carries its script, style sheet and template, and a real runtime (the
xblock-sdk workbench) serves the script and style sheet to the page by URL, with no code of ours inline."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import pytest
from tests.e2e.conftest import free_port, stop
from tests.xblock.test_workbench import start_workbench

pytestmark = [pytest.mark.e2e]

XBLOCK = Path(__file__).resolve().parents[2] / "xblock"
PACKAGE = XBLOCK / "src" / "stacklab_xblock"
SHIPPED = (
    "static/js/stacklab.js",
    "static/css/stacklab.css",
    "templates/student.html",
    "templates/studio_preview.html",
    "templates/lab_preview.html",
    "templates/author_view.html",
)
SCRIPT_URL = "/resource/stacklab/static/js/stacklab.js"
STYLE_URL = "/resource/stacklab/static/css/stacklab.css"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m build --wheel` of xblock/, as a release would build it."""
    out = tmp_path_factory.mktemp("xblock-wheel")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(XBLOCK)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    shutil.rmtree(XBLOCK / "build", ignore_errors=True)  # setuptools' scratch folder in the source tree
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    (built,) = out.glob("stacklab_xblock-*.whl")
    return built


def test_wheel_carries_the_static_files_and_declares_web_fragments(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for name in SHIPPED:
            assert f"stacklab_xblock/{name}" in names, sorted(names)
            assert archive.read(f"stacklab_xblock/{name}") == (PACKAGE / name).read_bytes()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    requires = [
        line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")
    ]
    assert any(r.startswith("web-fragments") for r in requires), requires


def test_workbench_page_loads_the_script_and_style_by_url(workbench_venv: Path, page) -> None:  # type: ignore[no-untyped-def]
    """With the service unreachable (no lab needed): the page fetches our files, styles the message with the
    style sheet and runs the check button with the script, and no inline script carries our code."""
    proc, bench = start_workbench(workbench_venv, f"http://127.0.0.1:{free_port()}", "x" * 40)
    served: dict[str, int] = {}
    page.on("response", lambda response: served.setdefault(urlparse(response.url).path, response.status))
    try:
        page.goto(bench.scenario(0, "alice"))
        error = page.locator(".stacklab-block .stacklab-error")
        error.wait_for()
        assert served.get(SCRIPT_URL) == 200 and served.get(STYLE_URL) == 200, served
        assert error.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(253, 236, 234)"
        inline = page.evaluate("() => [...document.scripts].filter(s => !s.src).map(s => s.textContent)")
        ours = ("StacklabXBlock", "csrftoken", "stacklab-")
        assert not [body for body in inline if any(word in body for word in ours)], inline
        assert page.evaluate("() => typeof StacklabXBlock") == "function"
        page.get_by_role("button", name="Check my work").click()
        page.locator(".stacklab-block .stacklab-status", has_text="not answering").wait_for()
    finally:
        stop(proc)
        shutil.rmtree(bench.workdir, ignore_errors=True)
