"""Read a lab file and report every problem in it as `FILE:LINE: field.path: problem`.

The YAML is composed once (SafeLoader) into a node tree, from which a map of value path -> line number is
taken; the same tree is then constructed into plain data and validated by the pydantic models and by the
cross-field rules. Every problem found is reported together in one `LabError`; none leaks a traceback.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import typing
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from stacklab.errors import LabError
from stacklab.labs.rules import Path, cross_field_problems
from stacklab.labs.schema import LAB_DIR, SKIP_CROSS_CHECKS, Lab, format_path, type_word
from stacklab.labs.yamlmap import line_of, read_yaml, yaml_problem

_Problem = tuple[int, Path, str]
"""(line, path, message) before formatting."""


def lab_digest(text: str) -> str:
    """A stable fingerprint of a lab file's text (sha256, hex)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_lab(path: str | os.PathLike[str]) -> Lab:
    """Read and validate the lab file at `path`; messages name the path as given."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise LabError([f"{source}: cannot read lab file: {exc.strerror or exc}"]) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise LabError([f"{source}:{line}: not UTF-8 text (byte {exc.start})"]) from exc
    return parse_lab(text, source=source, lab_dir=os.path.dirname(source) or ".")


def parse_lab(text: str, source: str = "<string>", lab_dir: str | None = None) -> Lab:
    """Validate lab YAML `text`; raise `LabError` listing every problem as `SOURCE:LINE: field: problem`.

    The Heat template's existence is checked only when `lab_dir` (the folder templates are relative to)
    is given.
    """
    try:
        data, lines, problems = read_yaml(text)
    except yaml.YAMLError as exc:
        raise LabError([yaml_problem(exc, text, source)]) from None
    except RecursionError:
        raise LabError([f"{source}:1: invalid YAML: nested too deeply"]) from None
    if data is None:
        raise LabError(
            [f"{source}:1: empty lab file: expected fields such as schema, id, title and login_user"]
        )
    if not isinstance(data, Mapping):
        raise LabError(
            [
                f"{source}:{lines[()]}: a lab file must be a mapping of fields (such as 'id: my-lab'), "
                f"got {type_word(data)}"
            ]
        )
    lab: Lab | None = None
    try:
        lab = Lab.model_validate(
            data, context={SKIP_CROSS_CHECKS: True, LAB_DIR: lab_dir}, by_alias=True, by_name=False
        )
    except ValidationError as exc:
        for err in exc.errors():
            path = _clean_loc(err["loc"])
            if err["type"] == "invalid_key" or (err["loc"] and err["loc"][-1] == "[key]"):
                path = path[:-1]  # a bad key: reported on its mapping, at the key's line
            elif err["type"] == "extra_forbidden":
                path = path[:-1]  # reported on the mapping that has the key, at the key's line
            problems.append((_line_of(err["loc"], lines), path, _describe(err)))
    problems += [
        (_line_of(path, lines), path, message) for path, message in cross_field_problems(data, lab_dir)
    ]
    if problems or lab is None:
        raise LabError(_format(problems, source))
    return lab


# --- pydantic errors -> human words -------------------------------------------------------------------


def _clean_loc(loc: tuple[str | int, ...]) -> Path:
    return tuple(part for part in loc if part != "[key]")


def _line_of(loc: tuple[str | int, ...], lines: dict[Path, int]) -> int:
    """The line of the deepest part of `loc` present in the file (a missing field: its parent's line)."""
    return line_of(_clean_loc(loc), lines)


def _describe(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    got = type_word(value)
    if kind == "missing":
        return "required field missing"
    if kind == "extra_forbidden":
        key = error["loc"][-1]
        message = f"unknown field {key!r}"
        known = _known_fields(error["loc"][:-1])
        close = difflib.get_close_matches(str(key), known, n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        elif known:
            message += f" (known: {', '.join(known)})"
        return message
    if kind == "invalid_key":
        return f"field names must be text, got {type_word(error['loc'][-1])}"
    if error["loc"] and error["loc"][-1] == "[key]":
        return f"keys must be strings, got {got}"
    if kind == "value_error" and "error" in ctx:
        return str(ctx["error"])
    simple = {
        "string_type": "must be a string",
        "int_type": "must be a whole number",
        "float_type": "must be a number",
        "bool_type": "must be true or false",
        "tuple_type": "must be a list",
        "list_type": "must be a list",
        "dict_type": "must be a mapping (key: value)",
        "model_type": "must be a mapping (key: value)",
        "model_attributes_type": "must be a mapping (key: value)",
    }
    if kind in simple:
        return f"{simple[kind]}, got {got}"
    if kind == "literal_error":
        return f"must be {ctx.get('expected', 'one of the allowed values')}, got {got}"
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("greater than", "gt"),
        "less_than_equal": ("at most", "le"),
        "less_than": ("less than", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"must be {words} {_number(ctx.get(key))}, got {_number(value)}"
    if kind in ("string_too_short", "too_short"):
        return "must not be empty"
    message = error["msg"]
    return message[:1].lower() + message[1:]


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


def _known_fields(loc: tuple[str | int, ...]) -> list[str]:
    """The YAML keys allowed in the mapping at `loc` (empty if that is not a model)."""
    model: Any = Lab
    for part in loc:
        if isinstance(part, int):
            continue  # list index: the item type was already unwrapped
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        field = next(
            (f for name, f in model.model_fields.items() if (f.alias or name) == part),
            None,
        )
        if field is None:
            return []
        model = _model_in(field.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or name for name, f in model.model_fields.items()]
    return []


def _model_in(annotation: Any) -> Any:
    """The pydantic model inside `X`, `X | None` or `tuple[X, ...]`, else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _format(problems: list[_Problem], source: str) -> list[str]:
    out: list[str] = []
    for line, path, message in sorted(problems, key=lambda p: p[0]):
        field = format_path(path)
        text = f"{source}:{line}: {field}: {message}" if field else f"{source}:{line}: {message}"
        if text not in out:
            out.append(text)
    return out
