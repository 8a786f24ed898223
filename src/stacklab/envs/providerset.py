"""The provider instances the engine talks to, built on first use from a lab's provider entries."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from stacklab.errors import ConfigError
from stacklab.labs.schema import ProviderEntry
from stacklab.providers.base import Provider

ProviderFactory = Callable[[ProviderEntry], Provider]


class ProviderSet:
    """One instance per provider name; the composition root supplies a factory per provider type."""

    def __init__(
        self, factories: Mapping[str, ProviderFactory], defaults: tuple[ProviderEntry, ...] = ()
    ) -> None:
        self._factories = dict(factories)
        self._instances: dict[str, Provider] = {}
        for entry in defaults:
            self.get(entry)

    def get(self, entry: ProviderEntry) -> Provider:
        instance = self._instances.get(entry.name)
        if instance is None:
            factory = self._factories.get(entry.type)
            if factory is None:
                raise ConfigError(f"provider {entry.name!r}: type {entry.type!r} is not available here")
            instance = self._instances[entry.name] = factory(entry)
        return instance

    def named(self, name: str) -> Provider | None:
        return self._instances.get(name)

    def all(self) -> list[Provider]:
        return list(self._instances.values())
