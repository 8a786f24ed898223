"""Author scripts (checks, solves, hooks): a script starting with `#!` names its interpreter, as on any
Unix; one without is a bash script. The lab schema checks the `#!` line here; `stacklab.checks.scripts`
runs the script accordingly."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, StrictStr


def shebang(script: str) -> str | None:
    """The `#!` line's command (`/usr/bin/env python3`), or None for a bash script."""
    if not script.startswith("#!"):
        return None
    return script.split("\n", 1)[0][2:].strip()


def _script(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    command = shebang(value)
    if command is not None and not command.startswith("/"):
        raise ValueError(
            f"the '#!' line must name an interpreter by its absolute path, e.g. '#!/usr/bin/env python3' "
            f"(got '#!{command}')"
        )
    return value


Script = Annotated[StrictStr, AfterValidator(_script)]
"""A script's text: bash, or whatever its `#!` line names."""
