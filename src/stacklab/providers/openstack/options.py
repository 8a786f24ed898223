"""The OpenStack provider's settings an operator may give (the service setting `openstack`), checked when
the service starts so that a misspelt name or a bad number fails then, naming the setting, instead of at a
lab's first launch. Kept apart from provider.py, which imports openstacksdk, so that checking is cheap."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stacklab.errors import ConfigError

EVERY = "*"
"""The key whose settings apply to every OpenStack provider (a provider's own key overrides them)."""


@dataclass(frozen=True)
class ProviderOptions:
    """The settings with their defaults; why each is what it is: docs/openstack.md ("Provider settings")."""

    api_timeout_s: float = 30.0
    """One HTTP request's bound: a Heat whose engine is gone answers only after its RPC timeout (60 s),
    and keystoneauth has no timeout of its own; a hung call would hold the environment's lease."""
    delete_wait_s: float = 60.0
    delete_attempts: int = 3
    delete_resend_s: float = 10.0
    """A stack that shows no DELETE_ status this long after its DELETE is sent it again: Heat can drop a
    DELETE that meets a create as it fails (the stack stays CREATE_FAILED, seen in CI)."""
    api_threads: int = 16
    """Threads for status reads: a burst of creates must not delay noticing a finished stack."""
    api_writes: int = 4
    """Requests that change stacks (create, suspend, resume) sent at once at most (room.py)."""
    api_deletes: int = 16
    """Threads for deletes: Heat answers a DELETE at once and deletes in the background, so deletes held
    to the creates' slots took twice as long as the SDK's 16 at once (bench/heat_launch.py)."""
    status_wait_s: float = 30.0
    """Longest a `status` call waits for an operation expected to finish soon (below the service's
    provider_timeout_s, 100 s)."""
    fast_poll_s: float = 0.1
    polls_in_flight: int = 1
    write_retries: int = 4
    write_backoff_s: float = 0.5
    write_backoff_max_s: float = 30.0

    @classmethod
    def of(cls, settings: Mapping[str, Any]) -> ProviderOptions:
        """A provider's options from its settings (which also name its `cloud`)."""
        return cls(**{name: kind(settings[name]) for name, kind in OPTIONS.items() if name in settings})


OPTIONS: dict[str, type] = {
    name: {"float": float, "int": int}[kind] for name, kind in ProviderOptions.__annotations__.items()
}
"""Name -> type of every setting."""


def provider_options(by_provider: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The settings of the provider `name`: those under "*", then its own; each name and value checked."""
    merged: dict[str, Any] = {}
    for key in (EVERY, name):
        merged.update(_checked(key, by_provider.get(key) or {}))
    return merged


def check_options(by_provider: Mapping[str, Any]) -> None:
    """Raise ConfigError for the first unknown name or bad value under any provider."""
    for key, options in by_provider.items():
        _checked(key, options)


def _checked(key: str, options: Any) -> dict[str, Any]:
    where = f"setting openstack: provider {key!r}"
    if not isinstance(options, Mapping):
        raise ConfigError(f'{where}: expected an object of settings, e.g. {{"api_writes": 8}}')
    checked: dict[str, Any] = {}
    for option, value in options.items():
        kind = OPTIONS.get(option)
        if kind is None:
            near = difflib.get_close_matches(option, OPTIONS, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else f"; known: {', '.join(OPTIONS)}"
            raise ConfigError(f"{where}: unknown setting {option!r}{hint}")
        try:
            number = kind(value)
        except (TypeError, ValueError):
            number = None
        if isinstance(value, bool) or number is None or number <= 0 or (kind is int and number != value):
            raise ConfigError(f"{where}: {option} must be a positive {kind.__name__}, not {value!r}")
        checked[option] = number
    return checked
