"""The stacklab cluster topology: its metadata encoding and the Ansible dynamic inventory built from it."""

from .encoding import TopologyError, decode, encode

__all__ = ["TopologyError", "decode", "encode"]
