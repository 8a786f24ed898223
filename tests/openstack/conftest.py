"""The openstack suite runs against a real Keystone + Heat that scripts/heat-harness starts once per session.

The harness is stopped at the end of the session (STACKLAB_HEAT_KEEP=1 leaves it running for the next run).
Every stack a test leaves behind is deleted afterwards, in both projects.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator
from pathlib import Path

import openstack
import pytest
from openstack.warnings import RemovedInSDK60Warning
from tests.support.heat_harness import heat_clouds as heat_clouds

LAB_DIR = Path(__file__).resolve().parent / "lab"


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
