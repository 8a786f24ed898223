"""The real Keystone + Heat of scripts/heat-harness: one session fixture for tests/openstack and tests/deploy.

``heat_clouds`` starts the harness (idempotent: start.sh reuses a running one), points openstacksdk at its
clouds.yaml through ``OS_CLIENT_CONFIG_FILE`` and yields that path; at the end of the session it restores the
variable and stops the harness, unless ``STACKLAB_HEAT_KEEP=1`` leaves it running for the next run.
A conftest uses it with ``from tests.support.heat_harness import heat_clouds as heat_clouds``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[2] / "scripts" / "heat-harness"
HOME = Path(os.environ.get("STACKLAB_HEAT_HOME", "/var/lib/stacklab-heat"))
START_TIMEOUT_S = 900
STOP_TIMEOUT_S = 120


@pytest.fixture(scope="session")
def heat_clouds() -> Iterator[Path]:
    """Start the harness and point openstacksdk at its clouds.yaml; stop it afterwards."""
    started = subprocess.run(
        [str(HARNESS / "start.sh")], capture_output=True, text=True, timeout=START_TIMEOUT_S
    )
    if started.returncode != 0:
        subprocess.run([str(HARNESS / "stop.sh")], check=False, timeout=STOP_TIMEOUT_S)
        pytest.fail(f"heat harness failed to start:\n{started.stdout}\n{started.stderr}")
    clouds = HOME / "etc" / "clouds.yaml"
    previous = os.environ.get("OS_CLIENT_CONFIG_FILE")
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(clouds)
    try:
        yield clouds
    finally:
        if previous is None:
            os.environ.pop("OS_CLIENT_CONFIG_FILE", None)
        else:
            os.environ["OS_CLIENT_CONFIG_FILE"] = previous
        if os.environ.get("STACKLAB_HEAT_KEEP") != "1":
            subprocess.run([str(HARNESS / "stop.sh")], check=False, timeout=STOP_TIMEOUT_S)
