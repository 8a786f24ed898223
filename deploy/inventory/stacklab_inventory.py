#!/usr/bin/env python3
"""Ansible dynamic inventory for a stacklab Open edX cluster: `stacklab_inventory.py --list | --host ADDR`.

Runs from a checkout (this file next to the stacklab_topology package) or installed
(`pip install deploy/inventory` gives the `stacklab-inventory` command).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from stacklab_topology.inventory import main

if __name__ == "__main__":
    sys.exit(main())
