"""Pruning base images of older recipes: only what nothing uses goes (a real overlay mount, a recorded stack).

Runs as root (it mounts an overlay) on fake image trees in a temp dir; the CLI is the real `stacklab`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stacklab.providers.local.image import IMAGE_PREFIX, STAMP_FILE, image_path

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting an overlay needs root")


def fake_image(path: Path) -> Path:
    (path / "rootfs" / "sbin").mkdir(parents=True)
    (path / "rootfs" / "sbin" / "init").write_text("#!/bin/sh\n")
    (path / STAMP_FILE).write_text("{}\n")
    return path


def stacklab(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STACKLAB_DATA_DIR": str(data_dir), "STACKLAB_IMAGE_DIR": str(data_dir / "images")}
    return subprocess.run(
        [sys.executable, "-m", "stacklab.cli", *args], capture_output=True, text=True, env=env, check=False
    )


@pytest.fixture
def host(tmp_path: Path) -> Iterator[dict[str, Path]]:
    images = tmp_path / "images"
    paths = {
        "current": fake_image(image_path(images)),
        "mounted": fake_image(images / f"{IMAGE_PREFIX}0000000mounted"),
        "recorded": fake_image(images / f"{IMAGE_PREFIX}000000recorded"),
        "unused": fake_image(images / f"{IMAGE_PREFIX}0000000unused"),
    }
    node = tmp_path / "node"
    for part in ("upper", "work", "rootfs"):
        (node / part).mkdir(parents=True)
    lower = paths["mounted"] / "rootfs"
    options = f"lowerdir={lower},upperdir={node / 'upper'},workdir={node / 'work'}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(node / "rootfs")], check=True)
    stack = tmp_path / "local" / "sl-0000beef"
    stack.mkdir(parents=True)
    (stack / "stack.json").write_text(json.dumps({"name": "sl-0000beef", "image": str(paths["recorded"])}))
    try:
        yield paths
    finally:
        subprocess.run(["umount", str(node / "rootfs")], check=False)


def test_prune_removes_only_old_images_that_nothing_uses(tmp_path: Path, host: dict[str, Path]) -> None:
    listing = json.loads(stacklab(tmp_path, "image", "list", "--json").stdout)
    states = {Path(row["path"]): (row["current"], row["used_by"]) for row in listing}
    assert states[host["current"]] == (True, [])
    assert any("mounted at" in why for why in states[host["mounted"]][1])
    assert any("stack sl-0000beef" in why for why in states[host["recorded"]][1])
    assert states[host["unused"]] == (False, [])

    dry = stacklab(tmp_path, "image", "prune", "--dry-run")
    assert dry.returncode == 0 and f"would remove {host['unused']}" in dry.stdout
    assert host["unused"].exists()

    done = stacklab(tmp_path, "image", "prune")
    assert done.returncode == 0, done.stderr
    assert not host["unused"].exists()
    assert all(host[name].exists() for name in ("current", "mounted", "recorded"))
    again = stacklab(tmp_path, "image", "prune")
    assert "nothing to remove" in again.stdout
