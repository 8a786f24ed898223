"""A resource's properties against its type's schema in Heat's catalogue: names, support status, required
ones, literal values' types and allowed values, nested maps and list items (the template check's part)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from stacklab.labs import heat_catalogue as heat
from stacklab.labs.schema import type_word
from stacklab.labs.yamlmap import Path


class PropertyCheck:
    """A resource's properties against the type's property schema (nested maps and list items too)."""

    def __init__(self, add: Callable[[Path, str], None], name: str, kind: str) -> None:
        self.add, self.name, self.kind = add, name, kind

    def check(self, where: Path, values: dict[str, Any], schema: dict[str, Any]) -> None:
        deprecated_used = False
        for key, value in values.items():
            spec = schema.get(key)
            label = ".".join(str(p) for p in (*where[3:], key))
            if spec is None:
                self.add(
                    (*where, key),
                    f"resource {self.name!r}: {self.kind} has no property {label!r}"
                    f"{heat.similar(str(key), schema)}",
                )
                continue
            if spec.get("status"):
                deprecated_used = True
                self.add((*where, key), f"resource {self.name!r}: property {status_words(label, spec)}")
            self._value((*where, key), label, value, spec)
        if not deprecated_used:  # a deprecated property may stand for a required one (Heat translates it)
            for key, spec in schema.items():
                if spec.get("required") and key not in values:
                    label = ".".join(str(p) for p in (*where[3:], key))
                    self.add(where, f"resource {self.name!r}: {self.kind} needs property {label!r}")

    def _value(self, where: Path, label: str, value: Any, spec: dict[str, Any]) -> None:
        if heat.is_call(value) or value is None:
            return
        wrong = type_problem(spec["type"], value)
        if wrong:
            self.add(where, f"resource {self.name!r}: {label} {wrong}, got {type_word(value)}")
            return
        allowed = spec.get("allowed")
        if allowed and not isinstance(value, dict | list) and value not in allowed:
            self.add(
                where,
                f"resource {self.name!r}: {label} must be one of {', '.join(map(str, allowed))}, "
                f"got {value!r}",
            )
        if "schema" in spec and isinstance(value, dict):
            self.check(where, value, spec["schema"])
        elif "item" in spec and isinstance(value, list):
            for i, item in enumerate(value):
                self._value((*where, i), f"{label}[{i}]", item, spec["item"])


BOOLEAN_WORDS = ("true", "false", "yes", "no", "on", "off", "1", "0", "t", "f", "y", "n")
"""The strings Heat takes for a Boolean property (oslo's strict bool_from_string)."""


def type_problem(kind: str, value: Any) -> str | None:
    """What is wrong with a literal `value` for a property of Heat type `kind` (Heat converts numbers in text
    and text to booleans as here); None when Heat would take it."""
    if kind == "String" and isinstance(value, dict | list):
        return "must be a string"
    if kind == "Map" and not isinstance(value, dict):
        return "must be a mapping"
    if kind == "List" and not isinstance(value, list):
        return "must be a list"
    if kind == "Boolean" and not (isinstance(value, bool) or str(value).lower() in BOOLEAN_WORDS):
        return "must be true or false"
    if kind in ("Integer", "Number"):
        try:
            number = float(value) if not isinstance(value, bool | dict | list) else None
        except ValueError:
            number = None
        if number is None or (kind == "Integer" and not number.is_integer()):
            return "must be a whole number" if kind == "Integer" else "must be a number"
    return None


def status_words(what: str, spec: Mapping[str, Any]) -> str:
    """ "X is hidden in current Heat: message; use Y instead"."""
    status = str(spec["status"]).lower()
    words = f"{what} is {status} in Heat {heat.heat_version()}"
    if spec.get("replacement"):  # ours, where Heat's message names nothing current
        words += f": use {spec['replacement']} instead"
    elif spec.get("message"):
        words += f": {spec['message'].rstrip('.')}"
    return words
