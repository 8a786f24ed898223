"""Exit 0 when every named cloud authenticates and its Heat engine answers (a validate goes API -> RPC)."""

from __future__ import annotations

import sys

import openstack

TEMPLATE = {"heat_template_version": "2018-08-31", "resources": {"nothing": {"type": "OS::Heat::None"}}}

for cloud in sys.argv[1:]:
    openstack.connect(cloud=cloud).orchestration.validate_template(template=TEMPLATE)
