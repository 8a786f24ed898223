"""Fixtures: real LXC containers (marked `lxc`) on a temporary root dir; the engine on memory providers.

The base image is cached in STACKLAB_IMAGE_DIR (default /var/lib/stacklab/images) so that its one-minute build
happens once per machine, not once per run. Every stack a test creates is deleted afterwards, even on failure.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.support.engine import Clock, memory_app
from tests.support.lxc import IMAGE_DIR, require_lxc, run_sync, sweep_stacks
from tests.support.memory_provider import MemoryProvider

from stacklab.config import Settings
from stacklab.wiring import App


@pytest.fixture(scope="session")
def lxc_root() -> Iterator[Path]:
    """A temporary LXC root dir for this session; whatever is left in it is deleted at the end."""
    require_lxc()
    root = Path(tempfile.mkdtemp(prefix="stacklab-lxc-", dir="/var/tmp"))
    root.chmod(0o755)
    yield root
    sweep_stacks(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def base_image(lxc_root: Path) -> Path:
    from stacklab.providers.local.image import ensure_base_image

    return run_sync(ensure_base_image(IMAGE_DIR, progress=lambda msg: print(f"[image] {msg}", flush=True)))


@pytest.fixture
def local_provider(lxc_root: Path, base_image: Path):  # type: ignore[no-untyped-def]
    from stacklab.providers.local import LocalProvider

    return LocalProvider("local-test", {"root_dir": str(lxc_root), "image_dir": IMAGE_DIR})


@pytest.fixture
def new_stack_name(local_provider) -> Iterator[Callable[[], str]]:  # type: ignore[no-untyped-def]
    """Call it for a fresh stack name; every stack named so is deleted after the test, even on failure."""
    names: list[str] = []

    def new() -> str:
        name = f"slt-{uuid.uuid4().hex[:8]}"
        names.append(name)
        return name

    yield new
    errors = []

    async def cleanup() -> None:
        for name in names:
            try:
                await local_provider.delete({"name": name})
            except Exception as e:  # report all, delete the rest first
                errors.append(f"{name}: {e}")

    run_sync(cleanup())
    assert not errors, errors


@pytest.fixture
def providers(sshd_port: int) -> dict[str, MemoryProvider]:
    """In-memory providers named local, a and b, whose nodes are a real SSH server."""
    return {name: MemoryProvider(name, {"ssh": ("127.0.0.1", sshd_port)}) for name in ("local", "a", "b")}


@pytest.fixture
def app(settings: Settings, providers: dict[str, MemoryProvider]) -> Iterator[App]:
    """The engine on each real database, with the memory providers and a clock the test moves."""
    built = memory_app(settings, providers, Clock())
    yield built
    built.close()
