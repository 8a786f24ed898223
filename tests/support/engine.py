"""An engine on a real database with in-memory providers and a clock the test moves: shared by the
controller, race, fault and soak tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.support.memory_provider import MemoryProvider

from stacklab.config import Settings
from stacklab.wiring import App, build_app


class Clock:
    """A clock that moves only when the test moves it."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def write_lab(tmp_path: Path, providers: str = "- {name: a, type: local}", extra: str = "") -> Path:
    """A one-node lab with one check, on the given providers (YAML list items)."""
    path = tmp_path / "lab.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            schema: 1
            id: demo
            title: Demo
            login_user: learner
            providers:
            {providers}
            local:
              nodes:
                - name: main
            checks:
              - name: marker
                node: main
                script: test -f "$HOME/.stacklab-marker-$(id -u)" || test -f /tmp/stacklab-marker
                weight: 2
                hint: create the marker
            timeouts: {{launch: 30s, idle_suspend: 10m, delete_after: 1d}}
            {extra}
            """
        ).format(providers=providers, extra=extra)
    )
    return path


def memory_app(settings: Settings, providers: dict[str, MemoryProvider], clock: Clock) -> App:
    """An App whose every provider entry is the memory provider of that name, on the test's clock."""
    # serving=False: these tests drive every pass themselves, on their own clock (none behind their back)
    built = build_app(
        settings, {"local": lambda entry: providers[entry.name]}, follow_requeue=False, serving=False
    )
    built.controller.clock = clock
    built.environments.clock = clock
    return built


async def settle(app: App, env_id: str) -> str:
    record = await app.environments.drive(env_id, timeout_s=60)
    return record.observed
