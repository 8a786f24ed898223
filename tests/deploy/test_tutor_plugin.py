"""tutor-stacklab: with the plugin enabled, `tutor config save` renders the stacklab service, its Caddy route
and the XBlock install into Tutor's generated environment."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

PLUGIN = Path(__file__).resolve().parents[2] / "deploy/tutor-plugin"


def run(cmd: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.deploy
def test_tutor_config_save_renders_the_stacklab_service(tutor_venv: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "TUTOR_ROOT": str(tmp_path / "root"),
        "TUTOR_PLUGINS_ROOT": str(tmp_path / "plugins"),
    }
    env.pop("VIRTUAL_ENV", None)
    bin_ = tutor_venv / "bin"
    run([str(bin_ / "pip"), "install", "-q", "--no-deps", "--force-reinstall", str(PLUGIN)], env)
    run([str(bin_ / "tutor"), "plugins", "enable", "stacklab"], env)
    run(
        [
            str(bin_ / "tutor"),
            "config",
            "save",
            "--set",
            "LMS_HOST=learn.example.org",
            "--set",
            "STACKLAB_PIP_REQUIREMENT=git+https://git.example.org/stacklab.git@main",
        ],
        env,
    )
    root = tmp_path / "root"
    compose = yaml.safe_load((root / "env/local/docker-compose.yml").read_text())
    service = compose["services"]["stacklab"]
    assert "stacklab serve --host 0.0.0.0 --port 8080" in service["command"]
    assert "git+https://git.example.org/stacklab.git@main" in service["command"]
    assert service["environment"]["STACKLAB_SECRET_KEY"]
    caddyfile = (root / "env/apps/caddy/Caddyfile").read_text()
    assert "labs.learn.example.org{$default_site_port} {" in caddyfile
    assert "reverse_proxy stacklab:8080" in caddyfile
    dockerfile = (root / "env/build/openedx/Dockerfile").read_text()
    assert "pip install 'stacklab-xblock'" in dockerfile
    config = yaml.safe_load((root / "config.yml").read_text())
    assert "stacklab" in config["PLUGINS"]
