"""The name rules every layer shares: lab ids (slugs), node names and login users, each defined once.

A node name becomes a hostname, part of a container name and a key in URLs; a lab id a path segment and a
stack tag; a login user a Linux account. The lab schema, the web API and the local provider all check
names against these rules, so a name one accepts is never refused by another. (The XBlock, a separate
distribution that cannot import stacklab, keeps a copy in `stacklab_xblock.olx`; a test keeps them equal.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, StrictStr, WithJsonSchema


@dataclass(frozen=True)
class NameRule:
    """A name's pattern and how to say it to a person."""

    kind: str
    regex: str
    description: str

    def problem(self, value: object) -> str | None:
        """Why `value` breaks the rule, or None when it follows it."""
        if not isinstance(value, str) or not re.fullmatch(self.regex, value):
            return f"must be {self.description}, got {value!r}"
        return None

    def check(self, value: str) -> str:
        """`value` itself; ValueError naming the rule when it breaks it (a pydantic validator)."""
        problem = self.problem(value)
        if problem:
            raise ValueError(problem)
        return value

    def json_schema(self) -> WithJsonSchema:
        """The rule as published in OpenAPI: its pattern and its description."""
        return WithJsonSchema(
            {"type": "string", "pattern": f"^{self.regex}$", "description": self.description}
        )


SLUG = NameRule(
    "slug",
    r"[a-z0-9][a-z0-9-]{0,39}",
    "a slug (lowercase letters, digits and '-', starting with a letter or digit, at most 40 characters)",
)
NODE_NAME = NameRule(
    "node name",
    r"[a-z][a-z0-9-]{0,19}",
    "a hostname-safe node name (lowercase letters, digits and '-', starting with a letter, "
    "at most 20 characters)",
)
LOGIN_USER = NameRule(
    "login user",
    r"[a-z_][a-z0-9_-]{0,31}",
    "a Linux user name (lowercase letters, digits, '_' and '-', starting with a letter or '_', "
    "at most 32 characters)",
)


def _ordinary_user(value: str) -> str:
    if value == "root":
        raise ValueError("must not be root: the learner logs in as an ordinary user (with sudo)")
    return value


Slug = Annotated[StrictStr, AfterValidator(SLUG.check), SLUG.json_schema()]
NodeName = Annotated[StrictStr, AfterValidator(NODE_NAME.check), NODE_NAME.json_schema()]
LoginUser = Annotated[
    StrictStr, AfterValidator(LOGIN_USER.check), AfterValidator(_ordinary_user), LOGIN_USER.json_schema()
]
