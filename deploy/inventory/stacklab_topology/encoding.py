"""The cluster topology as Nova server metadata: split across numbered keys of at most 255 characters.

Nova keeps server metadata as string pairs and refuses any value longer than 255 characters, so a list of
app servers does not fit in one value once it grows. The cluster template (deploy/heat/cluster.yaml) writes
the topology on the deploy node as:

    stacklab_topology_version  "1"
    topology_count             number of chunks, N
    topology_length            length of the whole text (guards against a torn or stale set of keys)
    topology_0 .. topology_N-1 consecutive slices of the text, each at most 255 characters

The text is a list of ``key=value[,value...]`` fields joined with ``;`` — for instance
``deploy=10.0.0.4;backend=10.0.0.5,10.0.0.6,10.0.0.7;app=10.0.0.8;worker=10.0.0.9;db_vip=10.0.0.10``.
Group fields hold addresses, others hold settings. The template builds the same text and slices with a yaql
expression, so the only ceiling is Nova's per-server metadata quota (128 items by default: about 2,000
servers). Keys beyond topology_count are ignored: they may be left over from a larger topology.
"""

from __future__ import annotations

from collections.abc import Mapping

VERSION = "1"
MAX_VALUE = 255
CHUNK = 255
GROUP_FIELDS = ("deploy", "backend", "app", "worker")


class TopologyError(ValueError):
    """The metadata does not hold a readable topology; the message says what is wrong."""


def to_text(topology: Mapping[str, object]) -> str:
    """The compact text form: groups as comma-separated lists, settings as single values."""
    fields = []
    for key, value in topology.items():
        if not key or any(c in key for c in "=;,"):
            raise TopologyError(f"topology key {key!r}: must be non-empty without '=', ';' or ','")
        values = [value] if isinstance(value, str) else list(value)  # type: ignore[call-overload]
        for item in values:
            if any(c in str(item) for c in "=;,"):
                raise TopologyError(f"topology[{key}]: value {item!r} contains '=', ';' or ','")
        fields.append(f"{key}={','.join(str(v) for v in values)}")
    return ";".join(fields)


def from_text(text: str) -> dict[str, list[str]]:
    topology: dict[str, list[str]] = {}
    for number, field in enumerate(text.split(";")):
        if not field:
            continue
        key, sep, value = field.partition("=")
        if not sep or not key:
            raise TopologyError(f"topology field {number} ({field[:40]!r}): expected key=value")
        topology[key] = [v for v in value.split(",") if v]
    return topology


def encode(topology: Mapping[str, object]) -> dict[str, str]:
    """Metadata items (every value at most 255 characters) that :func:`decode` reads back."""
    text = to_text(topology)
    chunks = [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)]
    items = {
        "stacklab_topology_version": VERSION,
        "topology_count": str(len(chunks)),
        "topology_length": str(len(text)),
    }
    items.update({f"topology_{i}": chunk for i, chunk in enumerate(chunks)})
    return items


def decode(meta: Mapping[str, object]) -> dict[str, list[str]]:
    """The topology from server metadata items; TopologyError names the missing or wrong key."""
    version = meta.get("stacklab_topology_version")
    if version is None:
        raise TopologyError("metadata has no stacklab_topology_version: not a stacklab deploy node")
    if str(version) != VERSION:
        raise TopologyError(f"stacklab_topology_version is {version!r}; this inventory reads {VERSION!r}")
    count = _integer(meta, "topology_count")
    length = _integer(meta, "topology_length")
    parts = []
    for i in range(count):
        key = f"topology_{i}"
        if key not in meta:
            raise TopologyError(f"{key} is missing (topology_count is {count})")
        part = str(meta[key])
        if len(part) > MAX_VALUE:
            raise TopologyError(f"{key} is {len(part)} characters; Nova allows {MAX_VALUE}")
        parts.append(part)
    text = "".join(parts)
    if len(text) != length:
        raise TopologyError(
            f"the topology chunks add up to {len(text)} characters, topology_length says {length}"
        )
    return from_text(text)


def _integer(meta: Mapping[str, object], key: str) -> int:
    if key not in meta:
        raise TopologyError(f"{key} is missing")
    try:
        value = int(str(meta[key]))
    except ValueError:
        raise TopologyError(f"{key} is {meta[key]!r}, not a number") from None
    if value < 0:
        raise TopologyError(f"{key} is negative")
    return value
