"""What Heat knows of resource types and template versions, from the catalogue shipped beside this module.

`heat_catalogue.json` is written by `scripts/heat-catalogue` from the Heat release the tests run (its
resource registry: properties, attributes, support status), so that checking a template needs neither an
OpenStack nor a Heat install. A test regenerates it and compares.
"""

from __future__ import annotations

import difflib
import functools
import json
from importlib import resources
from typing import Any

FILE_NAME = "heat_catalogue.json"


@functools.cache
def catalogue() -> dict[str, Any]:
    """The whole catalogue (read once)."""
    text = resources.files("stacklab.labs").joinpath(FILE_NAME).read_text(encoding="utf-8")
    return json.loads(text)


def heat_version() -> str:
    """The Heat release the catalogue was generated from, e.g. "27.0.1"."""
    return str(catalogue()["heat_version"])


def resource_type(name: str) -> dict[str, Any] | None:
    """properties, attributes, status, message, replacement, dynamic_attributes of a type; None if unknown."""
    return catalogue()["resource_types"].get(name)


def template_version(version: str) -> dict[str, Any] | None:
    """sections, resource_keys, functions, condition_functions of a HOT version; None if unknown."""
    return catalogue()["template_versions"].get(version)


def template_versions() -> list[str]:
    return sorted(catalogue()["template_versions"])


@functools.cache
def all_functions() -> frozenset[str]:
    """Every intrinsic function of any HOT version (a one-key mapping with such a key is a call)."""
    names: set[str] = set()
    for version in catalogue()["template_versions"].values():
        names.update(version["functions"], version["condition_functions"])
    return frozenset(names)


def first_version_with(function: str) -> str | None:
    """The oldest HOT version that has `function`."""
    for version in template_versions():
        spec = catalogue()["template_versions"][version]
        if function in spec["functions"] or function in spec["condition_functions"]:
            return version
    return None


def similar(word: str, choices: list[str] | dict[str, Any]) -> str:
    """ " (did you mean 'X'?)" when one of `choices` is close to `word`, else ""."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def is_call(value: Any) -> bool:
    """Is `value` an intrinsic function call (a one-key mapping whose key is a function)?"""
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in all_functions()
