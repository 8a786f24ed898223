"""The parameters stacklab gives a lab's Heat template: hastexo's `run` (the course run) and our own."""

from __future__ import annotations

import pytest

from stacklab.providers.openstack.contract import course_run, supplied_parameters


@pytest.mark.parametrize(
    ("course", "run"),
    [
        ("course-v1:Org+Intro+2026_T1", "2026_T1"),
        ("Org/Intro/2014", "2014"),  # an old-style course id
        ("c1", "c1"),  # not an Open edX course key: the whole id
        ("course-v1:Org+Intro", "course-v1:Org+Intro"),
    ],
)
def test_run_is_the_course_run(course: str, run: str) -> None:
    assert course_run(course) == run


def test_only_declared_parameters_are_given() -> None:
    given = supplied_parameters(
        ["run", "stacklab_stack_name", "ssh_public_key"],
        stack_name="sl-1a2b3c4d",
        course="course-v1:Org+Intro+2026_T1",
        login_user="learner",
        public_key="ssh-ed25519 AAAA",
    )
    assert given == {
        "run": "2026_T1",
        "stacklab_stack_name": "sl-1a2b3c4d",
        "ssh_public_key": "ssh-ed25519 AAAA",
    }
