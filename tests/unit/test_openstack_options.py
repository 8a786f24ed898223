"""Operators tune the OpenStack provider through the service setting `openstack` (by provider name, "*" for
all): the provider gets those values, and a misspelt name or a bad value stops the service at start with
an error that names it."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from stacklab.config import Settings
from stacklab.errors import ConfigError
from stacklab.labs.schema import ProviderEntry
from stacklab.providers.openstack.options import ProviderOptions, provider_options
from stacklab.wiring import default_factories


def test_the_provider_gets_every_providers_settings_then_its_own() -> None:
    settings = Settings(openstack={"*": {"api_writes": 2, "fast_poll_s": 0.2}, "heat": {"api_writes": 6}})
    provider = default_factories(settings)["openstack"](
        ProviderEntry(name="heat", type="openstack", cloud="heatbox")
    )
    assert provider.room.most == 6  # its own entry wins
    assert provider.watch.durations.fast_poll_s == 0.2  # from "*"
    assert provider.cloud == "heatbox"
    other = default_factories(settings)["openstack"](ProviderEntry(name="other", type="openstack"))
    assert other.room.most == 2


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"*": {"api_write": 8}}, "unknown setting 'api_write' (did you mean 'api_writes'?)"),
        ({"heat": {"colour": 1}}, "provider 'heat': unknown setting 'colour'; known: api_timeout_s"),
        ({"*": {"api_writes": 0}}, "api_writes must be a positive int, not 0"),
        ({"*": {"api_writes": 2.5}}, "api_writes must be a positive int, not 2.5"),
        ({"*": {"fast_poll_s": "soon"}}, "fast_poll_s must be a positive float, not 'soon'"),
        ({"*": {"api_writes": True}}, "api_writes must be a positive int, not True"),
        ({"*": 8}, "provider '*': expected an object of settings"),
    ],
)
def test_a_bad_setting_stops_the_service_at_start_naming_it(options: dict, named: str) -> None:
    with pytest.raises(ConfigError) as refused:
        default_factories(Settings(openstack=options))
    assert "setting openstack" in str(refused.value) and named in str(refused.value), str(refused.value)


def test_no_settings_leave_the_providers_defaults() -> None:
    assert provider_options({}, "heat") == {}
    provider = default_factories(Settings())["openstack"](ProviderEntry(name="heat", type="openstack"))
    assert provider.room.most == 4


def test_the_docs_give_every_setting_with_its_default() -> None:
    """docs/openstack.md's list of provider settings is what operators read: each setting is there, with
    the default the provider uses."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "openstack.md").read_text()
    listed = docs[docs.index("Provider settings (") : docs.index("## Waiting for Heat")]
    for field in fields(ProviderOptions):
        assert re.search(rf"`{field.name}`\s+\({field.default:g}\b", listed), field.name
