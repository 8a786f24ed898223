"""Session hours (labs/hours.py): the syntax, its errors, and open/next-change in a time zone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from stacklab.labs.hours import Schedule, Window, parse_entry, parse_hours, zone

ZURICH = ZoneInfo("Europe/Zurich")


def at(text: str, tz: ZoneInfo = ZURICH) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def test_entries_read_as_windows() -> None:
    assert parse_entry("Mon-Fri 09:00-12:00, 13:30-17:00") == [
        Window(frozenset(range(5)), 540, 720),
        Window(frozenset(range(5)), 810, 1020),
    ]
    assert parse_entry("sat-mon 10:00-24:00")[0] == Window(frozenset({5, 6, 0}), 600, 1440)
    assert parse_entry("Mon,Wed-Thu,friday 8:00-9:00")[0].days == frozenset({0, 2, 3, 4})
    assert parse_entry("daily 22:00-02:00")[0] == Window(frozenset(range(7)), 1320, 120)
    assert parse_hours("always") is None
    assert parse_hours(["Mon 09:00-10:00", "Tue 10:00-11:00"]) is not None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Mon", "needs days and a time range"),
        ("Mon 9-17", "'9-17' is not a time range"),
        ("Funday 09:00-10:00", "unknown day 'Funday'"),
        ("Mon 09:00-09:00", "is empty"),
        ("Mon 25:00-26:00", "is not a time of day"),
        ("Mon 09:60-10:00", "is not a time of day"),
        ("Mon 24:00-01:00", "starts at 24:00"),
    ],
)
def test_bad_entries_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_entry(text)


def test_always_stands_alone_and_zones_are_iana_names() -> None:
    with pytest.raises(ValueError, match="cannot be combined"):
        parse_hours(["always", "Mon 09:00-10:00"])
    with pytest.raises(ValueError, match="lists no session"):
        parse_hours([])
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Base'"):
        zone("Mars/Base")


def test_open_and_next_change_follow_the_zone_and_summer_time() -> None:
    hours = Schedule(parse_hours("Mon-Fri 09:00-17:00"), ZURICH)
    # Winter (UTC+1) and summer (UTC+2): 09:00 in Zurich is 08:00 and 07:00 UTC.
    assert hours.is_open(at("2026-01-05T09:00")) and not hours.is_open(at("2026-01-05T08:59"))
    assert hours.next_change(at("2026-01-05T08:00")) == at("2026-01-05T09:00")
    assert at("2026-07-06T09:00") - at("2026-07-06T07:00", ZoneInfo("UTC")) == 0
    assert hours.next_change(at("2026-07-06T12:00")) == at("2026-07-06T17:00")
    # Friday evening: the next opening is Monday morning, across the switch to summer time.
    assert hours.next_change(at("2026-03-27T17:00")) == at("2026-03-30T09:00")
    assert not hours.is_open(at("2026-03-28T10:00"))


def test_past_midnight_lead_and_always() -> None:
    late = Schedule(parse_hours("Fri 22:00-02:00"), ZURICH, lead_s=600)
    assert late.is_open(at("2026-01-10T01:59"))  # Saturday night, in Friday's session
    assert not late.is_open(at("2026-01-10T02:00"))
    assert late.is_open(at("2026-01-09T21:50")) and not late.is_open(at("2026-01-09T21:49"))
    assert late.next_change(at("2026-01-09T12:00")) == at("2026-01-09T21:50")
    joined = Schedule(parse_hours(["Mon 09:00-12:00", "Mon 12:00-14:00"]), ZURICH)
    assert joined.next_change(at("2026-01-05T10:00")) == at("2026-01-05T14:00")  # one session, not two
    always = Schedule(None, ZURICH)
    assert always.is_open(0.0) and always.next_change(0.0) is None
