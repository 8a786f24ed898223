"""What a lab's Heat template and stacklab agree on: the parameters stacklab fills in, the outputs it reads.

Kept apart from the provider (and free of openstacksdk) so that checking a template offline
(`stacklab template check`, `stacklab lab validate`) reads the same contract the provider follows.
"""

from __future__ import annotations

from collections.abc import Collection

PUBLIC_KEY_PARAMETERS = ("public_key", "ssh_public_key")
SUPPLIED_PARAMETERS = ("run", "login_user", *PUBLIC_KEY_PARAMETERS)
"""Parameters stacklab gives a value when the template declares them."""
SECRET_OUTPUTS = ("private_key", "password")
LOGIN_KEY_OUTPUT = "private_key"


def supplied_parameters(
    declared: Collection[str], *, stack_name: str, login_user: str, public_key: str
) -> dict[str, str]:
    """The values stacklab passes for the SUPPLIED_PARAMETERS the template declares."""
    values = {"run": stack_name, "login_user": login_user}
    values.update(dict.fromkeys(PUBLIC_KEY_PARAMETERS, public_key))
    return {name: value for name, value in values.items() if name in declared}


def address_outputs(index: int, node: str) -> tuple[str, ...]:
    """The outputs, in order of preference, that give node number `index` (from 0) its address."""
    return ("public_ip",) if index == 0 else (f"{node}_public_ip", f"{node}_ip")


def port_output(index: int, node: str) -> str:
    """The optional output that gives the node's SSH port (default 22)."""
    return "ssh_port" if index == 0 else f"{node}_ssh_port"
