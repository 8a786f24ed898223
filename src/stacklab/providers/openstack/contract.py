"""What a lab's Heat template and stacklab agree on: the parameters stacklab fills in, the outputs it reads.

Kept apart from the provider (and free of openstacksdk) so that checking a template offline
(`stacklab template check`, `stacklab lab validate`) reads the same contract the provider follows.
"""

from __future__ import annotations

from collections.abc import Collection

PUBLIC_KEY_PARAMETERS = ("public_key", "ssh_public_key")
STACK_NAME_PARAMETER = "stacklab_stack_name"
"""Our own parameter: the stack's name (`sl-<environment id>`), unique per environment."""
SUPPLIED_PARAMETERS = ("run", STACK_NAME_PARAMETER, "login_user", *PUBLIC_KEY_PARAMETERS)
"""Parameters stacklab gives a value when the template declares them."""
REBOOT_OUTPUT = "reboot_on_resume"
"""hastexo's output naming the servers to hard-reboot after every resume (see reboot.py)."""
SECRET_OUTPUTS = ("private_key", "password")
LOGIN_KEY_OUTPUT = "private_key"


def course_run(course: str) -> str:
    """What hastexo passes as `run`: the run of an Open edX course key (`course-v1:Org+Num+Run`, or the
    old `Org/Num/Run`), or the whole course id when it is neither."""
    if course.startswith("course-v1:") and course.count("+") == 2:
        return course.rsplit("+", 1)[1]
    if course.count("/") == 2:
        return course.rsplit("/", 1)[1]
    return course


def supplied_parameters(
    declared: Collection[str], *, stack_name: str, course: str, login_user: str, public_key: str
) -> dict[str, str]:
    """The values stacklab passes for the SUPPLIED_PARAMETERS the template declares: hastexo's (`run`,
    the course run) and ours."""
    values = {"run": course_run(course), STACK_NAME_PARAMETER: stack_name, "login_user": login_user}
    values.update(dict.fromkeys(PUBLIC_KEY_PARAMETERS, public_key))
    return {name: value for name, value in values.items() if name in declared}


def address_outputs(index: int, node: str) -> tuple[str, ...]:
    """The outputs, in order of preference, that give node number `index` (from 0) its address."""
    return ("public_ip",) if index == 0 else (f"{node}_public_ip", f"{node}_ip")


def port_output(index: int, node: str) -> str:
    """The optional output that gives the node's SSH port (default 22)."""
    return "ssh_port" if index == 0 else f"{node}_ssh_port"
