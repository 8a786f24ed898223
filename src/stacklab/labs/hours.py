"""Session hours: when a course's lab sessions run, as a course author writes them.

    hours:
      - Mon-Fri 09:00-12:00, 13:30-17:00    # days, then one or more time ranges
      - Sat 10:00-12:00
      - Mon,Wed 18:00-21:00
      - Fri 22:00-02:00                      # past midnight: ends Saturday 02:00
    timezone: Europe/Zurich                  # IANA name (summer time followed); default UTC

Days are `Mon`..`Sun` (any case, or full names), a range `Mon-Fri` (wrapping: `Sat-Mon`), a list
`Mon,Wed,Fri` (ranges allowed inside), or `daily`. A range is `HH:MM-HH:MM`; `24:00` ends at midnight; an end
before its start runs past midnight into the next day. `always` (the default) means every hour of every day.

`parse_hours` turns the text into `Window`s and raises ValueError with a message fit for an author;
`Schedule` answers "open at t?" and "when does that next change?" in UTC epoch seconds, which is what
deadlines in the database are made of.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_RANGE = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
_EXAMPLE = "'Mon-Fri 09:00-17:00' (days, then HH:MM-HH:MM ranges separated by commas)"
ALWAYS = "always"
HORIZON_DAYS = 8
"""Windows are looked for this many days around a time: a week's schedule repeats within it."""


@dataclass(frozen=True)
class Window:
    """One weekly window: on each of `days` (0 = Monday), from `start_min` to `end_min` minutes after
    local midnight; an end at or before the start is on the next day."""

    days: frozenset[int]
    start_min: int
    end_min: int


def _day(token: str) -> int:
    name = token.strip().lower()
    if name in DAY_NAMES:
        return DAY_NAMES.index(name)
    if name in _FULL_NAMES:
        return _FULL_NAMES.index(name)
    raise ValueError(f"unknown day {token.strip()!r} (use Mon, Tue, Wed, Thu, Fri, Sat, Sun or daily)")


def _days(text: str) -> frozenset[int]:
    if text.lower() == "daily":
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.split(","):
        if "-" in part:
            first, last = (_day(p) for p in part.split("-", 1))
            days.update((first + i) % 7 for i in range((last - first) % 7 + 1))
        else:
            days.add(_day(part))
    return frozenset(days)


def _minutes(hour: str, minute: str, whole: str) -> int:
    h, m = int(hour), int(minute)
    if m > 59 or h > 24 or (h == 24 and m):
        raise ValueError(f"{whole!r} is not a time of day (00:00 to 24:00)")
    return h * 60 + m


def parse_entry(entry: str) -> list[Window]:
    """`Mon-Fri 09:00-12:00, 13:30-17:00` -> its windows; ValueError naming what is wrong."""
    text = entry.strip()
    if " " not in text:
        raise ValueError(f"{entry!r} needs days and a time range, such as {_EXAMPLE}")
    days_text, ranges_text = text.split(None, 1)
    days = _days(days_text)
    windows = []
    for piece in ranges_text.split(","):
        match = _RANGE.match(piece.strip())
        if not match:
            raise ValueError(f"{piece.strip()!r} is not a time range HH:MM-HH:MM, in {entry!r}")
        start = _minutes(match[1], match[2], piece.strip())
        end = _minutes(match[3], match[4], piece.strip())
        if start == 24 * 60:
            raise ValueError(f"{piece.strip()!r} starts at 24:00: write 00:00 on the next day")
        if start == end:
            raise ValueError(f"{piece.strip()!r} is empty (it starts where it ends)")
        windows.append(Window(days, start, end))
    return windows


def parse_hours(entries: str | Sequence[str]) -> tuple[Window, ...] | None:
    """Windows of `entries` (one string or a list); None for `always`."""
    items = [entries] if isinstance(entries, str) else list(entries)
    if not items:
        raise ValueError(f"lists no session: write {ALWAYS!r} or entries such as {_EXAMPLE}")
    if any(isinstance(item, str) and item.strip().lower() == ALWAYS for item in items):
        if len(items) > 1:
            raise ValueError(f"{ALWAYS!r} cannot be combined with other entries")
        return None
    windows: list[Window] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"each entry must be text such as {_EXAMPLE}")
        windows += parse_entry(item)
    return tuple(windows)


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; ValueError when this machine does not know it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as Europe/Zurich or UTC)") from exc


@dataclass(frozen=True)
class Schedule:
    """Session windows in a time zone, each opened `lead_s` early; None windows = always open."""

    windows: tuple[Window, ...] | None
    tz: ZoneInfo
    lead_s: float = 0.0

    def intervals(self, around: float) -> list[tuple[float, float]]:
        """The open intervals (UTC epoch seconds, merged, sorted) within HORIZON_DAYS of `around`."""
        if self.windows is None:
            return [(float("-inf"), float("inf"))]
        today = datetime.fromtimestamp(around, self.tz).date()
        spans = sorted(
            self._span(day, window)
            for offset in range(-HORIZON_DAYS, HORIZON_DAYS + 1)
            for day in [today + timedelta(days=offset)]
            for window in self.windows
            if day.weekday() in window.days
        )
        return _merged(spans)

    def _span(self, day: date, window: Window) -> tuple[float, float]:
        start = self._at(day, window.start_min)
        end_day = day if window.end_min > window.start_min else day + timedelta(days=1)
        return start - self.lead_s, self._at(end_day, window.end_min)

    def _at(self, day: date, minutes: int) -> float:
        day += timedelta(days=minutes // (24 * 60))
        minutes %= 24 * 60
        return datetime.combine(day, time(minutes // 60, minutes % 60), self.tz).timestamp()

    def is_open(self, t: float) -> bool:
        return any(start <= t < end for start, end in self.intervals(t))

    def next_change(self, t: float) -> float | None:
        """The first time after `t` at which `is_open` changes; None if it never does (always open, or
        no window at all)."""
        if self.windows is None:
            return None
        for start, end in self.intervals(t):
            if start > t:
                return start
            if end > t:
                return end
        return None


def _merged(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
