"""The real Keystone + Heat of scripts/heat-harness: one session fixture for tests/openstack and tests/deploy.

``heat_clouds`` starts the harness (idempotent: start.sh reuses a running one), points openstacksdk at its
clouds.yaml through ``OS_CLIENT_CONFIG_FILE`` and yields that path; at the end of the session it restores the
variable and stops the harness, unless ``STACKLAB_HEAT_KEEP=1`` leaves it running for the next run.
A conftest uses it with ``from tests.support.heat_harness import heat_clouds as heat_clouds``.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openstack
import pytest
from openstack.warnings import RemovedInSDK60Warning

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


# single services, for chaos tests -----------------------------------------------------------------------
SERVICES = ("keystone", "heat-api", "heat-engine", "heat-small-api", "heat-small-engine")


def stop_service(name: str, *, crash: bool = False) -> None:
    """Stop one service of the harness (SIGTERM with a grace period; `crash`: SIGKILL at once)."""
    if name not in SERVICES:
        raise ValueError(f"no harness service {name!r}")
    args = [str(HARNESS / "stop.sh"), *(["--kill"] if crash else []), name]
    subprocess.run(args, check=True, capture_output=True, timeout=STOP_TIMEOUT_S)


def start_services() -> None:
    """Start again whatever is not running and wait until Keystone and both Heats answer (start.sh)."""
    started = subprocess.run(
        [str(HARNESS / "start.sh")], capture_output=True, text=True, timeout=START_TIMEOUT_S
    )
    if started.returncode != 0:
        raise RuntimeError(f"heat harness failed to start again:\n{started.stdout}\n{started.stderr}")


def stack_names(cloud: str) -> list[str]:
    """Every stack of the cloud's project, whoever created it (what a leak check must see). A stack
    DELETE_COMPLETE is not one: Heat lists it a moment longer (~1.3 s) while it lets go of its trust, and
    stacklab's delete returns at DELETE_COMPLETE as the SDK's does."""
    stacks = _orchestration(cloud).stacks()
    return sorted(stack.name for stack in stacks if stack.status != "DELETE_COMPLETE")


def delete_all_stacks(cloud: str, wait_s: int = 120) -> None:
    """Test cleanup only (it waits in the SDK's blocking helper, which stacklab never does)."""
    heat = _orchestration(cloud)
    stacks = list(heat.stacks())
    for stack in stacks:
        heat.delete_stack(stack)
    for stack in stacks:
        heat.wait_for_delete(stack, wait=wait_s)


def _orchestration(cloud: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RemovedInSDK60Warning)
        return openstack.connect(cloud=cloud).orchestration
