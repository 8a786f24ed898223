"""The real Tutor of the deploy venv on a TUTOR_ROOT of its own, and readers of what it renders: the XBlock's
settings as the LMS computes them and env files as docker compose reads them. Shared by the Tutor plugin's and
the Ansible role's tests (both give the LMS its settings through a Tutor plugin)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

PLUGIN = Path(__file__).resolve().parents[2] / "deploy/tutor-plugin"


def run(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    result = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


class Tutor:
    """The real `tutor` of the deploy venv, with the plugin installed, on a TUTOR_ROOT of its own."""

    def __init__(self, venv: Path, tmp: Path) -> None:
        self.venv = venv
        self.root = tmp / "root"
        self.env = {**os.environ, "TUTOR_ROOT": str(self.root), "TUTOR_PLUGINS_ROOT": str(tmp / "plugins")}
        self.env.pop("VIRTUAL_ENV", None)

    def __call__(self, *args: str) -> str:
        return run([str(self.venv / "bin/tutor"), *args], self.env)

    def install_plugin(self) -> None:
        run(
            [str(self.venv / "bin/pip"), "install", "-q", "--no-deps", "--force-reinstall", str(PLUGIN)],
            self.env,
        )
        self("plugins", "enable", "stacklab")

    def file(self, relative: str) -> str:
        return (self.root / relative).read_text()

    def init_tasks(self, service: str) -> list[str]:
        """The init tasks the plugin gives `tutor local do init` for `service`, from Tutor's own hook."""
        code = (
            "import json; from tutor import hooks, plugins; hooks.Actions.CORE_READY.do(); "
            "plugins.load_all(['stacklab']); "
            "print(json.dumps(list(hooks.Filters.CLI_DO_INIT_TASKS.iterate())))"
        )
        tasks = json.loads(run([str(self.venv / "bin/python"), "-c", code], self.env))
        return [task for name, task in tasks if name == service]

    def rendered(self, template: str) -> str:
        """`template` rendered with the saved configuration, as Tutor renders a task before running it."""
        code = (
            "import sys; from tutor import config, env, hooks, plugins; hooks.Actions.CORE_READY.do(); "
            "plugins.load_all(['stacklab']); "
            "print(env.render_str(config.load(sys.argv[1]), sys.stdin.read()).strip())"
        )
        return subprocess.run(
            [str(self.venv / "bin/python"), "-c", code, str(self.root)],
            input=template,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout


def xblock_settings(settings_py: str) -> dict[str, str]:
    """XBLOCK_SETTINGS["stacklab"] as the LMS computes it: the plugin's statement run on an empty dict."""
    lines = [line for line in settings_py.splitlines() if line.startswith("XBLOCK_SETTINGS")]
    assert len(lines) == 1, lines
    namespace: dict = {"XBLOCK_SETTINGS": {}}
    exec(lines[0], namespace)  # the rendered line, as Django's settings module runs it
    return dict(namespace["XBLOCK_SETTINGS"]["stacklab"])


def env_file(text: str) -> dict[str, str]:
    """KEY=value lines as docker compose reads an unquoted env_file (comments and blank lines skipped)."""
    pairs = (line.split("=", 1) for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}
