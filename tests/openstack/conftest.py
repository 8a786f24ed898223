"""The openstack suite runs against a real Keystone + Heat that scripts/heat-harness starts once per session.

The harness is stopped at the end of the session (STACKLAB_HEAT_KEEP=1 leaves it running for the next run).
Every stack a test leaves behind is deleted afterwards, in both projects.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import openstack
import pytest
from openstack.warnings import RemovedInSDK60Warning

HARNESS = Path(__file__).resolve().parents[2] / "scripts" / "heat-harness"
HOME = Path(os.environ.get("STACKLAB_HEAT_HOME", "/var/lib/stacklab-heat"))
LAB_DIR = Path(__file__).resolve().parent / "lab"


@pytest.fixture(scope="session")
def heat_clouds() -> Iterator[Path]:
    """Start the harness (idempotent) and point openstacksdk at its clouds.yaml; stop it afterwards."""
    started = subprocess.run([str(HARNESS / "start.sh")], capture_output=True, text=True, timeout=900)
    if started.returncode != 0:
        subprocess.run([str(HARNESS / "stop.sh")], check=False)
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
            subprocess.run([str(HARNESS / "stop.sh")], check=False, timeout=120)


def _delete_all(cloud: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RemovedInSDK60Warning)
        heat = openstack.connect(cloud=cloud).orchestration
    stacks = list(heat.stacks())
    for stack in stacks:
        heat.delete_stack(stack)
    for stack in stacks:
        heat.wait_for_delete(stack, wait=120)  # test cleanup only, never in stacklab


@pytest.fixture
async def clean_clouds(heat_clouds: Path) -> Iterator[Path]:
    """No stacks in the demo and small projects before and after the test."""
    for cloud in ("heatbox", "heatbox-small"):
        await asyncio.to_thread(_delete_all, cloud)
    yield heat_clouds
    for cloud in ("heatbox", "heatbox-small"):
        await asyncio.to_thread(_delete_all, cloud)
