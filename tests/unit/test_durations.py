import math

import pytest

from stacklab.labs.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("7d", 604800.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1d2h3m4s", 93784.0),
        ("1.5h", 5400.0),
        (" 10s ", 10.0),
        ("45", 45.0),
        ("0", 0.0),
        (30, 30.0),
        (2.5, 2.5),
        (0, 0.0),
    ],
)
def test_parse_valid(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5 minutes", "invalid duration '5 minutes': expected something like 30s, 5m, 2h, 7d, 1h30m, 500ms"),
        ("abc", "invalid duration 'abc'"),
        ("", "got an empty string"),
        ("   ", "got an empty string"),
        ("-1s", "must not be negative, got '-1s'"),
        (-1, "must be a non-negative duration, got -1"),
        (math.inf, "must be a non-negative duration, got inf"),
        (True, "not a boolean"),
        (False, "not a boolean"),
        ("30m1h", "units must go from largest to smallest, each once"),
        ("1m1m", "units must go from largest to smallest, each once"),
        ("1h 30m", "invalid duration '1h 30m'"),
        ("s", "invalid duration 's'"),
        ("10x", "invalid duration '10x'"),
        (None, "must be a duration such as 30s"),
        ([1], "must be a duration such as 30s"),
    ],
)
def test_parse_invalid(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5400, "1h30m"),
        (0, "0s"),
        (0.5, "500ms"),
        (30, "30s"),
        (604800, "7d"),
        (93784, "1d2h3m4s"),
        (61.25, "1m1s250ms"),
    ],
)
def test_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0.5, 30, 5400, 604800, 93784])
def test_round_trip(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_format_rejects_negative() -> None:
    with pytest.raises(ValueError, match="cannot format duration -1"):
        format_duration(-1)
