"""Tools for the deploy/ tests, installed once into venvs under /var/lib/stacklab-deploy (fast when present).

- ``deploy_venv``: ansible-core, ansible-lint, jsonschema, yaql (Heat's own yaql, to evaluate the templates'
  expressions as Heat does) and PyYAML.
- ``tutor_venv``: Tutor from PyPI (it pins many packages, so it lives apart from the project venv).
- ``cloud_init_schema``: cloud-init's JSON schema, extracted from Debian's package without installing it.

Each venv carries a stamp with the requirements it was built from; a changed list rebuilds it. A lock file
keeps two pytest processes from building the same venv at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.deploy.nova_metadata import MetadataService
from tests.support.heat_harness import heat_clouds as heat_clouds

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
HOME = Path(os.environ.get("STACKLAB_DEPLOY_HOME", "/var/lib/stacklab-deploy"))

DEPLOY_REQUIREMENTS = ["ansible-core>=2.16", "ansible-lint>=24", "jsonschema>=4", "yaql>=3", "PyYAML>=6"]
TUTOR_REQUIREMENTS = ["tutor>=18"]


def _venv(name: str, requirements: list[str]) -> Path:
    """A venv under HOME with exactly these requirements installed (rebuilt when the list changes)."""
    HOME.mkdir(parents=True, exist_ok=True)
    venv = HOME / name
    stamp = venv / "stacklab-requirements.json"
    wanted = json.dumps(sorted(requirements))
    with open(HOME / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == wanted:
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        result = subprocess.run(
            [str(venv / "bin/pip"), "install", "-q", "--disable-pip-version-check", *requirements],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            pytest.fail(f"pip install {' '.join(requirements)} into {venv} failed:\n{result.stderr[-3000:]}")
        stamp.write_text(wanted)
    return venv


@pytest.fixture(scope="session")
def deploy_venv() -> Path:
    return _venv("venv", DEPLOY_REQUIREMENTS)


@pytest.fixture(scope="session")
def tutor_venv() -> Path:
    return _venv("tutor-venv", TUTOR_REQUIREMENTS)


@pytest.fixture(scope="session")
def cloud_init_schema() -> Path:
    """cloud-init's cloud-config JSON schema from Debian's package (apt-get download + dpkg-deb -x)."""
    target = HOME / "cloud-init"
    schema = target / "usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json"
    HOME.mkdir(parents=True, exist_ok=True)
    with open(HOME / ".cloud-init.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not schema.exists():
            with tempfile.TemporaryDirectory() as tmp:
                download = subprocess.run(
                    ["apt-get", "download", "cloud-init"], cwd=tmp, capture_output=True, text=True
                )
                if download.returncode != 0:
                    pytest.fail(f"apt-get download cloud-init failed: {download.stderr[-2000:]}")
                (deb,) = Path(tmp).glob("cloud-init_*.deb")
                shutil.rmtree(target, ignore_errors=True)
                subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], check=True)
        if not schema.exists():
            pytest.fail(f"the cloud-init package has no {schema.relative_to(target)}")
    json.loads(schema.read_text())  # readable JSON
    return schema


@pytest.fixture
def deploy_env(deploy_venv: Path) -> Iterator[dict[str, str]]:
    """Environment for running the venv's tools: its bin first, ansible quiet and local to a temp dir."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        env["PATH"] = f"{deploy_venv / 'bin'}:{env['PATH']}"
        env["ANSIBLE_LOCAL_TEMP"] = f"{tmp}/tmp"
        env["ANSIBLE_HOME"] = f"{tmp}/home"
        env["ANSIBLE_NOCOLOR"] = "1"
        env["ANSIBLE_DEPRECATION_WARNINGS"] = "0"
        env.pop("VIRTUAL_ENV", None)
        yield env


@pytest.fixture(scope="session")
def heat_python() -> Path:
    """A Python with openstack-heat: the heat harness's venv if present, else one of our own (once)."""
    harness = Path(os.environ.get("STACKLAB_HEAT_HOME", "/var/lib/stacklab-heat")) / "venv/bin/python"
    if harness.exists():
        return harness
    constraints = ROOT / "scripts/heat-harness/constraints.txt"
    extra = ["-c", str(constraints)] if constraints.exists() else []
    return _venv("heat-venv", [*extra, "openstack-heat"]) / "bin/python"


@pytest.fixture
def metadata() -> Iterator[MetadataService]:
    service = MetadataService()
    thread = threading.Thread(target=service.server.serve_forever, daemon=True)
    thread.start()
    yield service
    service.server.shutdown()
    service.server.server_close()
