"""Usage limits without a database: the lab file's section, the week, the learner's sentence, the policy."""

from __future__ import annotations

import calendar
import textwrap

import pytest

from stacklab.envs.allowance import WEEK_S, Allowance, week_start
from stacklab.envs.policies import apply_policies, policy_deadline
from stacklab.envs.transitions import Journal
from stacklab.errors import LabError
from stacklab.labs.loader import parse_lab
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Desired, Observed

LAB = """\
schema: 1
id: demo
title: Demo
login_user: learner
local: {{nodes: [{{name: main}}]}}
usage_limit:
{limit}
"""
NOW = 1_800_000_000.0


def lab_with(limit: str):  # type: ignore[no-untyped-def]
    return parse_lab(LAB.format(limit=textwrap.indent(textwrap.dedent(limit), "  ")), "lab.yaml")


def test_the_section_has_defaults_and_per_course_allowances() -> None:
    limit = lab_with("hours: 10\ncourses:\n  course-v1:Org+C1+2026: {hours: 20, policy: warn}\n").usage_limit
    assert limit is not None and (limit.hours, limit.per, limit.policy, limit.scope) == (
        10,
        "week",
        "block",
        "lab",
    )
    run = limit.for_course("course-v1:Org+C1+2026")
    assert (run.hours, run.per, run.policy) == (20, "week", "warn")
    assert limit.for_course("another") == limit
    assert parse_lab(LAB.format(limit="  null"), "lab.yaml").usage_limit is None


def test_a_bad_section_is_refused_naming_the_line_and_field() -> None:
    with pytest.raises(LabError) as raised:
        lab_with("hours: 0\nper: month\npolicy: stop\n")
    text = str(raised.value)
    for field in ("usage_limit.hours", "usage_limit.per", "usage_limit.policy"):
        assert field in text, text
    assert "lab.yaml:7:" in text  # the line of `hours: 0`


def test_weeks_start_on_monday_at_midnight_utc() -> None:
    monday = calendar.timegm((2026, 11, 30, 0, 0, 0))  # Monday 30 November 2026
    assert week_start(monday) == monday
    assert week_start(monday + WEEK_S - 1) == monday  # Sunday 23:59:59
    assert week_start(monday + WEEK_S) == monday + WEEK_S
    assert week_start(monday - 1) == monday - WEEK_S


def allowance(**changes: object) -> Allowance:
    values: dict[str, object] = {
        "hours": 2.0,
        "per": "week",
        "policy": "block",
        "scope": "lab",
        "used_s": 7200.0,
        "granted_s": 0.0,
        "period_ends_at": calendar.timegm((2026, 12, 7, 0, 0, 0)),
    }
    return Allowance(**{**values, **changes})  # type: ignore[arg-type]


def test_the_learners_sentence_says_what_happened_and_what_to_do() -> None:
    assert allowance(used_s=3600.0).sentence() == ""
    blocked = allowance()
    assert blocked.over and blocked.blocked and blocked.remaining_s == 0
    assert blocked.sentence() == (
        "You have used all 2h of lab time on this lab this week. Your lab stays paused, so you can read your "
        "last check results but not work in it. It can run again from Monday 07 December, 00:00 UTC. If you "
        "need more time, ask your course staff."
    )
    total = allowance(per="total", scope="course", period_ends_at=None, granted_s=1800.0, used_s=9000.0)
    assert total.sentence().startswith("You have used all 2h30m of lab time on this course's labs. Your")
    assert "run again" not in total.sentence()
    warned = allowance(policy="warn")
    assert warned.over and not warned.blocked and "You may go on working" in warned.sentence()
    assert allowance(granted_s=3600.0).remaining_s == 3600.0


def record(desired: str, observed: str, limit_at: float | None) -> EnvironmentRecord:
    return EnvironmentRecord(
        id="0000beef",
        desired=desired,
        observed=observed,
        last_activity_at=NOW,
        idle_suspend_s=3600.0,
        delete_after_s=86400.0,
        usage_limit_at=limit_at,
    )


def test_the_policy_pauses_at_the_limit_and_its_deadline_is_the_limit() -> None:
    early = record(Desired.RUNNING, Observed.RUNNING, NOW + 60)
    assert policy_deadline(early) == NOW + 60  # before the idle deadline (an hour)
    journal = Journal(record(Desired.RUNNING, Observed.RUNNING, NOW), NOW)
    apply_policies(journal)
    assert [(e.to_state, e.reason) for e in journal.entries] == [(Desired.SUSPENDED, "UsageLimit")]
    resuming = Journal(record(Desired.RUNNING, Observed.SUSPENDED, NOW - 5), NOW)  # turned back
    apply_policies(resuming)
    assert resuming.record.desired == Desired.SUSPENDED
    paused = record(Desired.SUSPENDED, Observed.SUSPENDED, NOW - 5)
    assert policy_deadline(paused) == NOW + 86400.0  # a stale limit is no deadline once paused
