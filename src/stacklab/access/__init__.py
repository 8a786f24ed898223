"""Reaching nodes: SSH sessions (and, later, the browser terminal bridge and access tokens)."""
