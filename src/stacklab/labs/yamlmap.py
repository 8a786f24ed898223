"""YAML text to plain data plus where each value sits (its line), for messages that name FILE:LINE.

The text is composed once into a node tree, from which a map of value path -> line number is taken; the
same tree is then constructed into plain data. Lab files and Heat templates are read this way.
"""

from __future__ import annotations

from typing import Any

import yaml

Path = tuple[str | int, ...]
"""Where a value sits: keys and list indices from the top, e.g. ("checks", 1, "node")."""
Located = tuple[int, Path, str]
"""(line, path, message)."""


class HotLoader(yaml.SafeLoader):
    """Heat's reading of YAML: a date-like scalar stays a string (heat_template_version: 2021-04-16)."""


HotLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def read_yaml(
    text: str, loader_class: type[yaml.SafeLoader] = yaml.SafeLoader
) -> tuple[Any, dict[Path, int], list[Located]]:
    """(data, lines, duplicate keys) of one YAML document; raises yaml.YAMLError on invalid YAML."""
    loader = loader_class(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, {}, []
        lines: dict[Path, int] = {(): root.start_mark.line + 1}
        duplicates: list[Located] = []
        _map_lines(root, (), lines, duplicates, set())
        data = loader.construct_document(root)
    finally:
        loader.dispose()
    return data, lines, duplicates


def line_of(path: Path, lines: dict[Path, int]) -> int:
    """The line of `path`, or of its nearest ancestor present in the file (1 if none)."""
    while path not in lines and path:
        path = path[:-1]
    return lines.get(path, 1)


def _map_lines(
    node: yaml.Node, path: Path, lines: dict[Path, int], duplicates: list[Located], visited: set[int]
) -> None:
    """Record the line of each value under `node`: a mapping value at its key, a list item where it starts."""
    if id(node) in visited:  # an alias met again: its lines are those of the anchor, already recorded
        return
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[object, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = _scalar_key(key_node)
            line = key_node.start_mark.line + 1
            if key in first_line:
                duplicates.append((line, path, f"duplicate key {key!r} (first at line {first_line[key]})"))
            else:
                first_line[key] = line
            lines[(*path, key)] = line
            _map_lines(value_node, (*path, key), lines, duplicates, visited)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _map_lines(item, (*path, index), lines, duplicates, visited)


def _scalar_key(node: yaml.ScalarNode) -> Any:
    if node.tag == "tag:yaml.org,2002:str":
        return node.value
    try:
        key = yaml.safe_load(node.value)
    except yaml.YAMLError:
        return node.value
    return key if isinstance(key, str | int | float | bool) else node.value


def yaml_problem(exc: yaml.YAMLError, text: str, source: str) -> str:
    """`SOURCE:LINE: invalid YAML: ...` for a YAML error."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        message = exc.problem or "invalid YAML"
        if exc.context and exc.context_mark is not None:
            message += f" ({exc.context} at line {exc.context_mark.line + 1})"
        elif exc.context:
            message += f" ({exc.context})"
        return f"{source}:{exc.problem_mark.line + 1}: invalid YAML: {message}"
    if isinstance(exc, yaml.reader.ReaderError):
        line = text[: exc.position].count("\n") + 1
        character = exc.character
        shown = f"U+{character:04X}" if isinstance(character, int) else repr(character)
        return f"{source}:{line}: invalid YAML: character {shown} is not allowed"
    return f"{source}:1: invalid YAML: {exc}"
