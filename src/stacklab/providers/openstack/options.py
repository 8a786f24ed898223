"""The OpenStack provider's settings an operator may give (the service setting `openstack`), checked when
the service starts so that a misspelt name or a bad number fails then, naming the setting, instead of at a
lab's first launch. Kept apart from provider.py, which imports openstacksdk, so that checking is cheap."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from stacklab.errors import ConfigError

EVERY = "*"
"""The key whose settings apply to every OpenStack provider (a provider's own key overrides them)."""
OPTIONS: dict[str, type] = {
    "api_timeout_s": float,
    "delete_wait_s": float,
    "delete_attempts": int,
    "delete_resend_s": float,
    "api_threads": int,
    "api_writes": int,
    "api_deletes": int,
    "status_wait_s": float,
    "fast_poll_s": float,
    "polls_in_flight": int,
    "write_retries": int,
    "write_backoff_s": float,
    "write_backoff_max_s": float,
}
"""Name -> type; meanings and defaults in docs/openstack.md ("Provider settings")."""


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
