"""Validate a cloud-config (JSON on stdin) against cloud-init's schema (path in argv); print the errors."""

import json
import sys

import jsonschema

with open(sys.argv[1], encoding="utf-8") as stream:
    schema = json.load(stream)
validator = jsonschema.Draft4Validator(schema)
config = json.load(sys.stdin)
errors = [
    f"{'.'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}" for e in validator.iter_errors(config)
]
print(json.dumps(errors))
