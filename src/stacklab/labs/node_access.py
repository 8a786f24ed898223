"""How each node of a lab may be opened from the browser: a terminal (SSH, as always) and/or a desktop.

The lab file's `access:` section maps node names to what they offer:

    access:
      desk:
        terminal: true            # the default
        desktop:
          protocol: vnc           # or rdp
          port: 5901              # where the node's VNC server listens, on the node's localhost
          password_secret: password   # optional: the environment secret that holds the VNC password
      win:
        desktop:
          protocol: rdp           # an RDP server, bridged to VNC on the node (stacklab.access.rdp)
          port: 3389              # the default for rdp
          username: learner       # the RDP login
          password_secret: password   # the environment secret that holds its password

A node left out of `access:` offers a terminal only. The service reaches the desktop port through the
node's SSH connection, so it need listen on localhost only. The local provider's desktop recipe
(`local.nodes[].desktop: true`) serves VNC on `LOCAL_DESKTOP_PORT` without a password; its RDP recipe
(`desktop: rdp`) serves RDP on `LOCAL_RDP_PORT` for the login user, with the environment's `password`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator

Path = tuple[str | int, ...]

LOCAL_DESKTOP_PORT = 5901
"""Where the local provider's desktop recipe (Xvnc on display :1) listens, on the node's localhost."""
LOCAL_RDP_PORT = 3389
"""Where an RDP server listens by default (and the local provider's RDP recipe, xrdp, does)."""


class Desktop(BaseModel):
    """A graphical desktop served by the node, relayed to the browser over the node's SSH connection."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    protocol: Literal["vnc", "rdp"]
    port: StrictInt = Field(LOCAL_DESKTOP_PORT, ge=1, le=65535)
    """On the node's localhost; default 5901 for vnc, 3389 for rdp."""
    username: StrictStr | None = Field(None, pattern=r"^\S{1,128}$")
    """rdp only: the user the RDP server is logged in to as (required)."""
    password_secret: Literal["password"] | None = None
    """The environment secret holding the password (an OpenStack stack's secret `password` output, the
    local RDP recipe's generated one); for vnc, None when the server asks for none. The service answers
    the VNC challenge, or hands the RDP password to the node's bridge on its stdin: the browser never
    sees it."""

    @model_validator(mode="before")
    @classmethod
    def _rdp_port(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("protocol") == "rdp" and "port" not in data:
            data = {**data, "port": LOCAL_RDP_PORT}
        return data

    @model_validator(mode="after")
    def _rdp_login(self) -> Desktop:
        if self.protocol == "rdp" and (self.username is None or self.password_secret is None):
            raise ValueError(
                "an rdp desktop needs username and password_secret (the login it is opened with)"
            )
        if self.protocol == "vnc" and self.username is not None:
            raise ValueError("username is for rdp only (a VNC server asks for a password alone)")
        return self


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
        if not isinstance(node, Mapping):
            continue
        path = ("local", "nodes", i, "desktop")
        if node.get("desktop") is True:
            _check_local_recipe(access, node.get("name"), path, add)
        elif node.get("desktop") == "rdp":
            _check_rdp_recipe(access, node.get("name"), data.get("login_user"), path, add)


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


def _check_rdp_recipe(
    access: object, name: object, login_user: object, path: Path, add: Callable[[Path, str], None]
) -> None:
    """A node running the local RDP recipe declares an rdp desktop on its port, logged in to as the lab's
    login user with the environment's `password` (the recipe sets that user's password to it)."""
    entry = access.get(name) if isinstance(access, Mapping) and isinstance(name, str) else None
    desktop = entry.get("desktop") if isinstance(entry, Mapping) else None
    wanted = f"protocol: rdp, port: {LOCAL_RDP_PORT}, username: {login_user}, password_secret: password"
    if not isinstance(desktop, Mapping):
        add(path, f"the RDP recipe needs access.{name}.desktop ({wanted}) so that the browser may open it")
        return
    at = ("access", name, "desktop")
    if desktop.get("protocol") != "rdp":
        add((*at, "protocol"), "the local RDP recipe serves rdp")
        return
    port = desktop.get("port", LOCAL_RDP_PORT)
    if isinstance(port, int) and port != LOCAL_RDP_PORT:
        add((*at, "port"), f"the local RDP recipe serves RDP on port {LOCAL_RDP_PORT}, not {port}")
    if isinstance(login_user, str) and desktop.get("username") not in (None, login_user):
        add((*at, "username"), f"the local RDP recipe logs in the lab's login user ({login_user})")
    if desktop.get("password_secret") not in (None, "password"):
        add((*at, "password_secret"), "the local RDP recipe's password is the secret 'password'")


def desktop_of(access: Mapping[str, NodeAccess], node: str) -> Desktop | None:
    """The desktop `node` offers, or None."""
    return access.get(node, TERMINAL_ONLY).desktop


def offers_terminal(access: Mapping[str, NodeAccess], node: str) -> bool:
    return access.get(node, TERMINAL_ONLY).terminal
