"""Run with Heat's own Python (openstack-heat installed): check templates against Heat's resource registry.

    python heat_check.py TEMPLATE.yaml...   prints a JSON list of problems (empty when all is well)

For every resource: its type is registered in Heat's global environment (or is a file next to the
template) and its support status is SUPPORTED; every property set exists in the type's schema and is not
hidden or deprecated; every get_attr names an attribute the type has (nested templates: their outputs).
Then Heat's template parser validates each template's sections, functions and their arguments.
"""

import json
import sys
from pathlib import Path
from unittest import mock

import yaml
from oslo_config import cfg

cfg.CONF([], project="heat", default_config_files=[])

from heat.common import context, template_format  # noqa: E402
from heat.engine import constraints, environment, resource, resources, support  # noqa: E402
from heat.engine import stack as heat_stack  # noqa: E402
from heat.engine import template as heat_template  # noqa: E402

resources.initialise()
GLOBAL = resources.global_env()


def resource_class(rtype):
    info = GLOBAL.registry.get_resource_info(rtype)
    return None if info is None else info.value


def walk(node, found):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "get_attr" and isinstance(value, list) and len(value) >= 2:
                found.append((value[0], value[1]))
            walk(value, found)
    elif isinstance(node, list):
        for item in node:
            walk(item, found)


def check(path):
    problems = []
    text = path.read_text()
    template_format.parse(text)  # Heat's own YAML rules (raises on what Heat would reject)
    data = yaml.safe_load(text)
    files = {}
    for name, res in data.get("resources", {}).items():
        rtype = res["type"]
        props = res.get("properties") or {}
        if rtype.endswith(".yaml"):
            nested = (path.parent / rtype).resolve()
            if not nested.exists():
                problems.append(f"{path.name}: {name}: nested template {rtype} does not exist")
                continue
            nested_data = yaml.safe_load(nested.read_text())
            for prop in props:
                if prop not in nested_data.get("parameters", {}):
                    problems.append(f"{path.name}: {name}: {rtype} has no parameter {prop}")
            continue
        cls = resource_class(rtype)
        if cls is None:
            problems.append(f"{path.name}: {name}: {rtype} is not a Heat resource type")
            continue
        status = cls.support_status.status
        if status != support.SUPPORTED:
            problems.append(f"{path.name}: {name}: {rtype} is {status}")
        schema = cls.properties_schema
        for prop in props:
            if prop not in schema:
                problems.append(f"{path.name}: {name}: {rtype} has no property {prop}")
            elif (
                schema[prop].get("support_status")
                and schema[prop]["support_status"].status != support.SUPPORTED
            ):
                problems.append(
                    f"{path.name}: {name}: {rtype}.{prop} is {schema[prop]['support_status'].status}"
                )
        # nested resource definitions (ResourceGroup / AutoScalingGroup) are checked as nested templates
        inner = props.get("resource_def") or props.get("resource")
        if isinstance(inner, dict) and str(inner.get("type", "")).endswith(".yaml"):
            nested = (path.parent / inner["type"]).resolve()
            files[inner["type"]] = nested
    attrs = []
    walk(data.get("resources", {}), attrs)
    walk(data.get("outputs", {}), attrs)
    for target, attr in attrs:
        res = data.get("resources", {}).get(target)
        if res is None:
            continue  # the reference check in test_templates reports it
        rtype = res["type"]
        if rtype.endswith(".yaml"):
            outputs = yaml.safe_load((path.parent / rtype).read_text()).get("outputs", {})
            if attr not in outputs:
                problems.append(f"{path.name}: get_attr {target}.{attr}: {rtype} has no output {attr}")
            continue
        cls = resource_class(rtype)
        if cls is None:
            continue
        if (
            rtype in ("OS::Heat::ResourceGroup", "OS::Heat::AutoScalingGroup")
            and attr not in cls.attributes_schema
        ):
            inner = res["properties"].get("resource_def") or res["properties"].get("resource")
            outputs = yaml.safe_load((path.parent / inner["type"]).read_text()).get("outputs", {})
            if attr not in outputs:
                problems.append(f"{path.name}: get_attr {target}.{attr}: not an attribute of {rtype}")
            continue
        if attr in ("outputs_list", "outputs") and rtype == "OS::Heat::AutoScalingGroup":
            continue
        if attr not in cls.attributes_schema and attr not in ("show",):
            problems.append(f"{path.name}: get_attr {target}.{attr}: {rtype} has no attribute {attr}")
        elif attr in cls.attributes_schema:
            st = cls.attributes_schema[attr].support_status
            if st is not None and st.status != support.SUPPORTED:
                problems.append(f"{path.name}: get_attr {target}.{attr} is {st.status}")
    problems.extend(engine_validate(path))
    return problems


def engine_validate(path):
    """Heat's own Stack.validate (as the validate API runs it), with no cloud behind it: service
    availability and custom constraints (does this image/network exist?) are assumed to pass."""
    tmpl = template_format.parse(path.read_text())
    files = {str(f.relative_to(path.parent)): f.read_text() for f in path.parent.rglob("*") if f.is_file()}
    params = {}
    samples = {"string": "x", "number": 1, "comma_delimited_list": "a,b", "json": {}, "boolean": True}
    for name, param in (tmpl.get("parameters") or {}).items():
        if "default" not in param:
            allowed = [c["allowed_values"] for c in param.get("constraints", []) if "allowed_values" in c]
            params[name] = allowed[0][0] if allowed else samples[param.get("type", "string")]
    env = environment.Environment({"parameters": params})
    ctx = context.RequestContext(user_id="u", project_id="p", is_admin=False, auth_token="t")
    try:
        with (
            mock.patch.object(resource.Resource, "_validate_service_availability", lambda *a, **k: None),
            mock.patch.object(constraints.CustomConstraint, "validate", lambda *a, **k: True),
        ):
            stack = heat_stack.Stack(ctx, "validate", heat_template.Template(tmpl, files=files, env=env))
            stack.validate(validate_res_tmpl_only=True)
    except Exception as error:
        return [f"{path.name}: Heat's validation: {type(error).__name__}: {error}"]
    return []


if __name__ == "__main__":
    out = []
    for arg in sys.argv[1:]:
        out.extend(check(Path(arg)))
    print(json.dumps(out, indent=1))
