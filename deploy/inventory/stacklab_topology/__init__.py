"""The stacklab cluster topology: its metadata encoding, registrations and the Ansible inventory."""

from .encoding import TopologyError, decode, encode
from .registry import RegistryError, registrations

__all__ = ["RegistryError", "TopologyError", "decode", "encode", "registrations"]
