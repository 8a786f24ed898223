"""Evaluate a yaql expression as Heat does (same limits): expression in argv, data as JSON on stdin."""

import collections.abc  # noqa: F401 - yaql 3 uses collections.abc without importing it
import json
import sys

import yaql

HEAT_DEFAULTS = {"yaql.limitIterators": 200, "yaql.memoryQuota": 10000}  # heat.conf [yaql] defaults

engine = yaql.YaqlFactory().create(HEAT_DEFAULTS)
context = yaql.create_context().create_child_context()
print(json.dumps(engine(sys.argv[1]).evaluate({"data": json.load(sys.stdin)}, context)))
