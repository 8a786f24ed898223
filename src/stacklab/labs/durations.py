"""Durations as course authors write them: `30s`, `5m`, `2h`, `7d`, `1h30m`, `500ms`, or bare seconds.

`parse_duration` turns one into seconds (a float) and raises `ValueError` with a message fit to show an
author; `format_duration` turns seconds back into the short form for display (5400 -> "1h30m").
"""

from __future__ import annotations

import math
import re

UNIT_SECONDS: dict[str, float] = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
"""Seconds per unit, largest first (the order units must appear in)."""

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_EXAMPLES = "30s, 5m, 2h, 7d, 1h30m, 500ms or a number of seconds"


def parse_duration(value: object) -> float:
    """Return `value` in seconds; `value` is a duration string or a non-negative number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"must be a duration such as {_EXAMPLES}, not a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"must be a non-negative duration, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"must be a duration such as {_EXAMPLES}")
    text = value.strip()
    if not text:
        raise ValueError(f"must be a duration such as {_EXAMPLES}, got an empty string")
    if text.startswith("-"):
        raise ValueError(f"must not be negative, got {value!r}")
    if _NUMBER.fullmatch(text):
        return float(text)
    total = 0.0
    position = 0
    last_rank = -1
    ranks = list(UNIT_SECONDS)
    for match in _PART.finditer(text):
        if match.start() != position:
            break
        rank = ranks.index(match.group(2))
        if rank <= last_rank:
            raise ValueError(f"invalid duration {value!r}: units must go from largest to smallest, each once")
        last_rank = rank
        total += float(match.group(1)) * UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(text) or position == 0:
        raise ValueError(f"invalid duration {value!r}: expected something like {_EXAMPLES}")
    return total


def format_duration(seconds: float) -> str:
    """Render seconds in the short form: 5400 -> "1h30m", 0.5 -> "500ms", 0 -> "0s"."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format duration {seconds!r}")
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    parts = []
    for unit, size in UNIT_SECONDS.items():
        unit_ms = round(size * 1000)
        count, millis = divmod(millis, unit_ms)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
