"""hastexo's `reboot_on_resume` output: servers a template wants hard-rebooted after every resume (guests
that do not come back well from a suspend, e.g. with nested virtualisation or a clock that must be right).

Decided from the cloud's own record, so that it needs no memory of ours and is safe to repeat: a listed
server whose latest instance action is `resume` has not had its reboot yet (it is asked for now); one that
is rebooting is waited for; any other has been rebooted (or changed since by the learner) and is done.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from stacklab.providers.openstack.contract import REBOOT_OUTPUT

REBOOTING = ("REBOOT", "HARD_REBOOT")


def servers_to_reboot(outputs: dict[str, Any]) -> list[str]:
    """The server ids the template's `reboot_on_resume` output names (a list, or one id)."""
    value = outputs.get(REBOOT_OUTPUT)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        return []
    return [str(item) for item in value if isinstance(item, str) and item.strip()]


def _latest_action(actions: Iterable[Any]) -> str:
    ordered = sorted(actions, key=lambda action: str(action.start_time or ""), reverse=True)
    return str(ordered[0].action) if ordered else ""


def reboot_after_resume(compute: Any, server_ids: list[str]) -> list[str]:
    """Hard-reboot the listed servers that were resumed and not rebooted since; the ids of those still
    rebooting (empty: all done). `compute` is openstacksdk's compute proxy (blocking calls)."""
    busy = []
    for server_id in server_ids:
        if _latest_action(compute.server_actions(server_id)) == "resume":
            compute.reboot_server(server_id, "HARD")
            busy.append(server_id)
        elif compute.get_server(server_id).status in REBOOTING:
            busy.append(server_id)
    return busy
