"""The `local` provider: labs as unprivileged LXC containers on this host (see provider.py)."""

from .provider import LocalProvider

__all__ = ["LocalProvider"]
