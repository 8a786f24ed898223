"""How each node of a lab may be opened from the browser: a terminal (SSH, as always) and/or a desktop.

The lab file's `access:` section maps node names to what they offer:

    access:
      desk:
        terminal: true            # the default
        desktop:
          protocol: vnc           # the only protocol served today (RDP: docs/desktops.md)
          port: 5901              # where the node's VNC server listens, on the node's localhost
          password_secret: password   # optional: the environment secret that holds the VNC password

A node left out of `access:` offers a terminal only. The service reaches the desktop port through the
node's SSH connection, so it need listen on localhost only. The local provider's desktop recipe
(`local.nodes[].desktop: true`) serves VNC on `LOCAL_DESKTOP_PORT` without a password.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

Path = tuple[str | int, ...]

LOCAL_DESKTOP_PORT = 5901
"""Where the local provider's desktop recipe (Xvnc on display :1) listens, on the node's localhost."""


class Desktop(BaseModel):
    """A graphical desktop served by the node, relayed to the browser over the node's SSH connection."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    protocol: Literal["vnc"]
    port: StrictInt = Field(LOCAL_DESKTOP_PORT, ge=1, le=65535)
    password_secret: Literal["password"] | None = None
    """The environment secret holding the VNC password (an OpenStack stack's secret `password` output);
    None when the server asks for none. The service answers the VNC challenge: the browser never sees it."""


class NodeAccess(BaseModel):
    """What the browser may open on one node."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    terminal: StrictBool = True
    desktop: Desktop | None = None


TERMINAL_ONLY = NodeAccess()


def access_problems(
    data: Mapping[str, Any], check_node: Callable[[Path, object], None], add: Callable[[Path, str], None]
) -> None:
    """Rules of `access:` that span fields: known nodes, something to open, the local recipe's port."""
    access = data.get("access")
    for name, entry in access.items() if isinstance(access, Mapping) else ():
        check_node(("access", name), name)
        if not isinstance(entry, Mapping):
            continue
        desktop = entry.get("desktop")
        if entry.get("terminal") is False and desktop is None:
            add(("access", name), "offers nothing to open: set terminal: true or declare a desktop")
    local = data.get("local")
    nodes = local.get("nodes") if isinstance(local, Mapping) else None
    for i, node in enumerate(nodes if isinstance(nodes, list | tuple) else ()):
        if not isinstance(node, Mapping) or node.get("desktop") is not True:
            continue
        _check_local_recipe(access, node.get("name"), ("local", "nodes", i, "desktop"), add)


def _check_local_recipe(access: object, name: object, path: Path, add: Callable[[Path, str], None]) -> None:
    """A node running the local desktop recipe declares that desktop, on the recipe's port, without a
    password (the recipe's VNC server listens on the node's localhost only and asks for none)."""
    entry = access.get(name) if isinstance(access, Mapping) and isinstance(name, str) else None
    desktop = entry.get("desktop") if isinstance(entry, Mapping) else None
    if not isinstance(desktop, Mapping):
        add(
            path,
            f"the desktop recipe needs access.{name}.desktop (protocol: vnc, port: {LOCAL_DESKTOP_PORT}) "
            "so that the browser may open it",
        )
        return
    port = desktop.get("port", LOCAL_DESKTOP_PORT)
    if isinstance(port, int) and port != LOCAL_DESKTOP_PORT:
        add(
            ("access", name, "desktop", "port"),
            f"the local desktop recipe serves VNC on port {LOCAL_DESKTOP_PORT}, not {port}",
        )
    if desktop.get("password_secret") is not None:
        add(
            ("access", name, "desktop", "password_secret"),
            "the local desktop recipe asks for no password (it listens on the node's localhost only)",
        )


def desktop_of(access: Mapping[str, NodeAccess], node: str) -> Desktop | None:
    """The desktop `node` offers, or None."""
    return access.get(node, TERMINAL_ONLY).desktop


def offers_terminal(access: Mapping[str, NodeAccess], node: str) -> bool:
    return access.get(node, TERMINAL_ONLY).terminal
